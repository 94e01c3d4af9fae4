#include <doctest/doctest.h>

#include "cloud/backend/registry.hpp"
#include "cloud/flows/run_flow.hpp"
#include "cloud/plan/placement.hpp"
#include "util/files.hpp"

using namespace gpurun;

namespace {

cloud::Config modal_config() {
  std::vector<util::Diagnostic> diagnostics;
  auto text = util::read_file(std::string(GPURUN_SOURCE_DIR) + "/examples/config.yaml");
  REQUIRE_MESSAGE(text.ok(), text.error().message);
  auto config = cloud::parse_config(*text, "config.yaml", diagnostics);
  REQUIRE(config.ok());
  return *config;
}

manifest::Function fn(const std::string& gpu_spec, const cloud::Config& config) {
  manifest::Function f;
  f.name = "train";
  f.argv = {"true"};
  auto request = gpu::parse_gpu_request(gpu_spec, config.catalog);
  REQUIRE_MESSAGE(request.ok(), gpu_spec);
  f.gpu = *request;
  f.gpu_as_written = gpu_spec;
  return f;
}

std::vector<std::string> described(const std::vector<cloud::PlacedFunction>& candidates) {
  std::vector<std::string> out;
  for (const auto& c : candidates) out.push_back(gpu::to_string(*c.gpu, true) + "@" + c.cloud);
  return out;
}

cloud::Capacity capacity(std::vector<cloud::GpuCapacity> gpus) { return cloud::Capacity{true, std::move(gpus), ""}; }

}  // namespace

TEST_CASE("placement_candidates: every alternative in order on each eligible cloud; pins and volumes narrow them") {
  const auto config = modal_config();
  const auto f = fn("[A100-80GB, A100, any]", config);
  // A100-80GB is offered nowhere; A100 (40 GB) on gcp; any = T4 then A10G on aws.
  CHECK(described(cloud::placement_candidates(f, config, {})) ==
        std::vector<std::string>{"A100-40GB:1@gcp", "T4:1@aws", "A10G:1@aws"});
  cloud::PlanInputs pinned;
  pinned.cloud_override = "aws";
  CHECK(described(cloud::placement_candidates(f, config, pinned)) == std::vector<std::string>{"T4:1@aws", "A10G:1@aws"});
  auto with_volume = f;
  with_volume.volumes.push_back({"/data", "datasets"});
  cloud::PlanInputs volume_on_gcp;
  volume_on_gcp.existing_volumes["datasets"] = "gcp";
  CHECK(described(cloud::placement_candidates(with_volume, config, volume_on_gcp)) == std::vector<std::string>{"A100-40GB:1@gcp"});
  CHECK(cloud::placement_candidates(manifest::Function{}, config, {}).empty());
}

TEST_CASE("choose_at_run_time: the first that can start now, else the first; says why") {
  const auto config = modal_config();
  const auto candidates = cloud::placement_candidates(fn("[A100, any]", config), config, {});
  REQUIRE(described(candidates) == std::vector<std::string>{"A100-40GB:1@gcp", "T4:1@aws", "A10G:1@aws"});
  std::map<std::string, cloud::Capacity> clouds{
      {"gcp", capacity({{"A100", 20, 1, 2}, {"A100", 40, 0, 2}})},
      {"aws", capacity({{"T4", 16, 0, 4}, {"A10G", 24, 3, 4}})},
  };
  int asked = 0;
  auto capacity_of = [&](const std::string& cloud) {
    ++asked;
    return clouds.at(cloud);
  };
  auto choice = cloud::choose_at_run_time(candidates, capacity_of);
  CHECK(choice.index == 2);
  CHECK(choice.can_start);
  CHECK(choice.why == "A100-40GB:1: all 2 busy on gcp; T4:1: all 4 busy on aws; took A10G:1 on aws");
  CHECK(asked == 2);  // once per cloud

  clouds["aws"] = capacity({{"T4", 16, 0, 4}});
  clouds["gcp"] = capacity({{"A100", 40, 1, 4}});
  const auto two = cloud::placement_candidates(fn("[A100:40:2, any]", config), config, {});
  REQUIRE(described(two).front() == "A100-40GB:2@gcp");
  choice = cloud::choose_at_run_time(two, capacity_of);
  CHECK(choice.index == 0);
  CHECK_FALSE(choice.can_start);
  CHECK(choice.why == "A100-40GB:2: only 1 of 4 free on gcp; T4:1: all 4 busy on aws; A10G:1: none on aws; "
                      "none can start now: queued for A100-40GB:2 on gcp");

  clouds["gcp"] = cloud::Capacity{};  // unknown: counts as able to start
  choice = cloud::choose_at_run_time(candidates, capacity_of);
  CHECK(choice.index == 0);
  CHECK(choice.why == "took A100-40GB:1 on gcp (its free GPUs are unknown)");
}
