#include <doctest/doctest.h>


#include "cloud/backend/registry.hpp"
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

manifest::Function fn(const std::string& name, const std::string& gpu_spec, const cloud::Config& config) {
  manifest::Function f;
  f.name = name;
  f.argv = {"true"};
  if (!gpu_spec.empty()) {
    auto request = gpu::parse_gpu_request(gpu_spec, config.catalog);
    REQUIRE_MESSAGE(request.ok(), gpu_spec);
    f.gpu = *request;
    f.gpu_as_written = gpu_spec;
  }
  return f;
}

const cloud::PlacedFunction& placed(const cloud::Plan& plan, const std::string& name) {
  for (const auto& f : plan.functions) {
    if (f.name == name) return f;
  }
  FAIL("function not placed: " << name);
  return plan.functions.front();
}

}  // namespace

TEST_CASE("placement: GPU functions go to the first cloud that offers them (the Modal scenario)") {
  const auto config = modal_config();
  manifest::Manifest m;
  m.app = "mnist";
  m.functions = {fn("train", "A100", config), fn("small", "A100:20", config), fn("infer", "T4:2", config),
                 fn("cheap", "any", config), fn("big", "A10G:4", config)};
  auto plan = cloud::make_plan(m, config, {});
  REQUIRE_MESSAGE(plan.ok(), plan.error().message);
  CHECK(placed(*plan, "train").cloud == "gcp");
  CHECK(placed(*plan, "train").gpu == gpu::GpuSlot{"A100", 40, 1});
  CHECK(placed(*plan, "small").gpu == gpu::GpuSlot{"A100", 20, 1});
  CHECK(placed(*plan, "infer").cloud == "aws");
  CHECK(placed(*plan, "infer").gpu == gpu::GpuSlot{"T4", 16, 2});
  CHECK(placed(*plan, "cheap").cloud == "aws");
  CHECK(placed(*plan, "cheap").gpu == gpu::GpuSlot{"T4", 16, 1});
  CHECK(placed(*plan, "big").gpu == gpu::GpuSlot{"A10G", 24, 4});
  CHECK(placed(*plan, "train").backend == "slurm");
}

TEST_CASE("placement: fallback lists try entries in order across all clouds") {
  const auto config = modal_config();
  manifest::Manifest m;
  m.app = "a";
  m.functions = {fn("f", "H100,A100-80GB,A100,any", config), fn("g", "H100,any:2", config)};
  auto plan = cloud::make_plan(m, config, {});
  REQUIRE(plan.ok());
  CHECK(placed(*plan, "f").gpu == gpu::GpuSlot{"A100", 40, 1});
  CHECK(placed(*plan, "f").cloud == "gcp");
  CHECK(placed(*plan, "g").gpu == gpu::GpuSlot{"T4", 16, 2});
}

TEST_CASE("placement: a larger memory variant satisfies a request, a smaller never; exact preferred") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config("clouds:\n  big: {backend: slurm, endpoint: \"http://h:1\", partition: p, gpus: [\"A100-80GB:8\"]}\n",
                                    "c.yaml", diagnostics);
  REQUIRE(config.ok());
  manifest::Manifest m;
  m.app = "a";
  m.functions = {fn("default", "A100", *config), fn("twenty", "A100-20GB", *config)};
  auto plan = cloud::make_plan(m, *config, {});
  REQUIRE(plan.ok());
  CHECK(placed(*plan, "default").gpu == gpu::GpuSlot{"A100", 80, 1});
  CHECK(placed(*plan, "twenty").gpu == gpu::GpuSlot{"A100", 80, 1});

  auto both = cloud::parse_config(
      "clouds:\n  c: {backend: slurm, endpoint: \"http://h:1\", partition: p, gpus: [\"A100-80GB:8\", \"A100-40GB:8\"],\n"
      "      gres: {A100-80GB: a100_80g, A100-40GB: a100_40g}}\n", "c.yaml",
      diagnostics);
  REQUIRE(both.ok());
  auto exact = cloud::make_plan(m, *both, {});
  REQUIRE(exact.ok());
  CHECK(placed(*exact, "default").gpu == gpu::GpuSlot{"A100", 40, 1});

  manifest::Manifest small;
  small.app = "a";
  small.functions = {fn("huge", "A100-80GB", config.value())};
  auto config40 = cloud::parse_config("clouds:\n  c: {backend: slurm, endpoint: \"http://h:1\", partition: p, gpus: [\"A100-40GB:8\"]}\n",
                                      "c.yaml", diagnostics);
  REQUIRE(config40.ok());
  auto none = cloud::make_plan(small, *config40, {});
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == util::ExitCode::unschedulable);
}

TEST_CASE("placement: CPU functions go to the default cloud unless pinned; pins are honoured") {
  auto config = modal_config();
  manifest::Manifest m;
  m.app = "a";
  auto cpu = fn("cpu", "", config);
  auto pinned = fn("pinned", "", config);
  pinned.cloud = "gcp";
  auto pinned_gpu = fn("pinned_gpu", "any", config);
  pinned_gpu.cloud = "gcp";
  m.functions = {cpu, pinned};
  auto plan = cloud::make_plan(m, config, {});
  REQUIRE(plan.ok());
  CHECK(placed(*plan, "cpu").cloud == "aws");
  CHECK(placed(*plan, "cpu").gpu == std::nullopt);
  CHECK(placed(*plan, "pinned").cloud == "gcp");

  m.functions = {pinned_gpu};
  auto bad = cloud::make_plan(m, config, {});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == util::ExitCode::unschedulable);
  CHECK(bad.error().message ==
        "function 'pinned_gpu' asks for GPU any; cloud 'gcp' cannot run it: gcp offers A100-20GB:2, A100-40GB:2; "
        "ask for a GPU a cloud offers, or add it to a cloud's 'gpus:' in the config");
}

TEST_CASE("placement: --cloud pins every function; an unknown one is a usage error") {
  auto config = modal_config();
  manifest::Manifest m;
  m.app = "a";
  m.functions = {fn("cpu", "", config), fn("t4", "T4", config)};
  cloud::PlanInputs inputs;
  inputs.cloud_override = "aws";
  auto plan = cloud::make_plan(m, config, inputs);
  REQUIRE(plan.ok());
  CHECK(placed(*plan, "cpu").cloud == "aws");
  inputs.cloud_override = "gpc";
  auto bad = cloud::make_plan(m, config, inputs);
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().code == util::ExitCode::usage);
  CHECK(bad.error().message == "--cloud: unknown cloud 'gpc' (did you mean 'gcp'?)");
}

TEST_CASE("placement: unschedulable names what was asked and what each cloud offers") {
  auto config = modal_config();
  manifest::Manifest m;
  m.app = "a";
  m.functions = {fn("f", "H100:8", config)};
  cloud::PlanInputs inputs;
  inputs.local_offers_note = "none found on this machine";
  auto plan = cloud::make_plan(m, config, inputs);
  REQUIRE_FALSE(plan.ok());
  CHECK(plan.error().message ==
        "function 'f' asks for GPU H100:8; no cloud can run it: aws offers T4:4, A10G:4; gcp offers A100-20GB:2, "
        "A100-40GB:2; local offers no GPUs (none found on this machine); ask for a GPU a cloud offers, or add it to a "
        "cloud's 'gpus:' in the config");
}

TEST_CASE("placement: a cloud without gpus: whose backend discovers offers takes them from PlanInputs") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config("clouds:\n  k8s: {backend: kubernetes, default_image: \"busybox\"}\n"
                                    "  k8s-fixed: {backend: kubernetes, gpus: [\"T4:1\"]}\n",
                                    "c.yaml", diagnostics);
  REQUIRE(config.ok());
  CHECK(config->find_cloud("k8s")->discover_gpus);
  CHECK_FALSE(config->find_cloud("k8s-fixed")->discover_gpus);
  manifest::Manifest m;
  m.app = "a";
  m.functions = {fn("a100", "A100-40GB:2", *config)};
  cloud::PlanInputs inputs;
  inputs.discovered_offers["k8s"] = {{"T4", 16, 4}, {"A100", 40, 2}};
  inputs.discovered_notes["k8s"] = "from its nodes";
  auto plan = cloud::make_plan(m, *config, inputs);
  REQUIRE_MESSAGE(plan.ok(), plan.error().message);
  CHECK(placed(*plan, "a100").cloud == "k8s");
  CHECK(placed(*plan, "a100").gpu == gpu::GpuSlot{"A100", 40, 2});

  inputs.discovered_offers.erase("k8s");
  inputs.discovered_notes["k8s"] = "cannot list the GPU nodes of cloud 'k8s': refused";
  inputs.cloud_override = "k8s";
  auto refused = cloud::make_plan(m, *config, inputs);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("k8s offers no GPUs (cannot list the GPU nodes of cloud 'k8s': refused)") !=
        std::string::npos);
}

TEST_CASE("placement: local offers come from the inventory") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config("", "c.yaml", diagnostics);
  REQUIRE(config.ok());
  manifest::Manifest m;
  m.app = "a";
  m.functions = {fn("f", "T4:2", *config)};
  cloud::PlanInputs inputs;
  inputs.local_offers = {gpu::GpuSlot{"T4", 16, 2}};
  auto plan = cloud::make_plan(m, *config, inputs);
  REQUIRE(plan.ok());
  CHECK(placed(*plan, "f").cloud == "local");
  CHECK(placed(*plan, "f").backend == "local");
}

TEST_CASE("placement: GPUs a backend found on a cloud's machines join its configured ones") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config(
      "default_cloud: lab\nclouds:\n  lab:\n    backend: ssh\n    hosts:\n      - {host: gpu1, gpus: [\"T4:1\"]}\n"
      "      - {host: gpu2}\n",
      "c.yaml", diagnostics);
  REQUIRE(config.ok());
  manifest::Manifest m;
  m.app = "a";
  m.functions = {fn("two", "T4:2", *config), fn("big", "A100", *config)};
  cloud::PlanInputs inputs;
  CHECK_FALSE(cloud::make_plan(m, *config, inputs).ok());  // only the declared T4:1
  inputs.discovered_offers["lab"] = {gpu::GpuSlot{"T4", 16, 2}, gpu::GpuSlot{"A100", 80, 1}};
  CHECK(cloud::describe_offers(cloud::cloud_offers(*config->find_cloud("lab"), inputs)) == "T4:2, A100-80GB:1");
  auto plan = cloud::make_plan(m, *config, inputs);
  REQUIRE_MESSAGE(plan.ok(), plan.error().message);
  CHECK(placed(*plan, "two").cloud == "lab");
  CHECK(placed(*plan, "big").cloud == "lab");
}

TEST_CASE("placement: volumes live with the GPU functions that mount them; others get a warning") {
  auto config = modal_config();
  manifest::Manifest m;
  m.app = "a";
  m.volumes = {{"datasets", {}}, {"scratch", {}}, {"tie", {}}};
  auto prep = fn("prep", "", config);
  prep.volumes = {{"/data", "datasets"}, {"/s", "scratch"}};
  auto train = fn("train", "A100", config);
  train.volumes = {{"/data", "datasets"}, {"/t", "tie"}};
  auto train2 = fn("train2", "A100:20", config);
  train2.volumes = {{"/data", "datasets"}};
  auto infer = fn("infer", "T4", config);
  infer.volumes = {{"/data", "datasets"}, {"/t", "tie"}};
  m.functions = {prep, train, train2, infer};
  auto plan = cloud::make_plan(m, config, {});
  REQUIRE(plan.ok());
  REQUIRE(plan->volumes.size() == 3);
  CHECK(plan->volumes[0].cloud == "gcp");     // 2 A100 functions vs 1 T4
  CHECK(plan->volumes[1].cloud == "aws");     // only CPU users: default cloud
  CHECK(plan->volumes[2].cloud == "aws");     // tie: config order (aws before gcp)
  REQUIRE(plan->warnings.size() >= 2);
  CHECK(plan->warnings[0].function == "prep");
  CHECK(plan->warnings[0].message == "prep mounts volume 'datasets' which lives in gcp; add 'cloud: gcp' to run next to it");

  cloud::PlanInputs inputs;
  inputs.existing_volumes = {{"datasets", "aws"}};
  auto again = cloud::make_plan(m, config, inputs);
  REQUIRE(again.ok());
  CHECK(again->volumes[0].cloud == "aws");
  CHECK(again->volumes[0].existing);
}

TEST_CASE("placement: images list the clouds that run them and which still need an upload") {
  auto config = modal_config();
  manifest::Manifest m;
  m.app = "a";
  manifest::Image image;
  image.name = "trainer";
  m.images = {image};
  auto train = fn("train", "A100", config);
  train.image = "trainer";
  auto infer = fn("infer", "T4", config);
  infer.image = "trainer";
  m.functions = {train, infer};
  auto plan = cloud::make_plan(m, config, {});
  REQUIRE(plan.ok());
  CHECK(plan->images[0].clouds == std::vector<std::string>{"aws", "gcp"});
  CHECK(plan->images[0].upload_to == std::vector<std::string>{"aws", "gcp"});
  cloud::PlanInputs inputs;
  inputs.images_present = {{"trainer", {"gcp"}}};
  auto later = cloud::make_plan(m, config, inputs);
  REQUIRE(later.ok());
  CHECK(later->images[0].upload_to == std::vector<std::string>{"aws"});
}

TEST_CASE("placement: on the local machine `any` also takes a GPU outside the any pool") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config("", "c.yaml", diagnostics);
  REQUIRE(config.ok());
  manifest::Manifest m;
  m.app = "a";
  m.functions = {fn("f", "any", *config), fn("g", "T4,any", *config)};
  cloud::PlanInputs inputs;
  inputs.local_offers = {gpu::GpuSlot{"H100", 80, 1}};
  auto plan = cloud::make_plan(m, *config, inputs);
  REQUIRE_MESSAGE(plan.ok(), plan.error().message);
  CHECK(placed(*plan, "f").gpu == gpu::GpuSlot{"H100", 80, 1});
  CHECK(placed(*plan, "g").gpu == gpu::GpuSlot{"H100", 80, 1});
  m.functions = {fn("two", "any:2", *config)};
  CHECK_FALSE(cloud::make_plan(m, *config, inputs).ok());
}

TEST_CASE("placement: count ranges take the largest count offered; memory-first specs the smallest memory that fits") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::parse_config(
      "clouds:\n  c: {backend: slurm, endpoint: \"http://h:1\", partition: p,\n"
      "      gpus: [\"H100:4\", \"A100-40GB:8\", \"A100-80GB:2\", \"L4:8\"],\n"
      "      gres: {A100-40GB: a100_40g, A100-80GB: a100_80g}}\n",
      "c.yaml", diagnostics);
  REQUIRE_MESSAGE(config.ok(), util::format_diagnostics(diagnostics));
  manifest::Manifest m;
  m.app = "a";
  m.functions = {fn("range", "H100:1..8", *config),   fn("open", "H100:2..", *config),     fn("mem", "24GB", *config),
                 fn("mem80", "80GB:2", *config),       fn("typed", "A100:40GB+:4", *config), fn("big", "A100:80GB..", *config),
                 fn("set", "{B200:8, A100:8}", *config), fn("shared", "A10,L4:8", *config),  fn("exact", "A100-40GB!", *config),
                 fn("nv", "nvidia:L4", *config)};
  auto plan = cloud::make_plan(m, *config, {});
  REQUIRE_MESSAGE(plan.ok(), plan.error().message);
  CHECK(placed(*plan, "range").gpu == gpu::GpuSlot{"H100", 80, 4});
  CHECK(placed(*plan, "range").gpu_requested == std::optional<std::string>("H100:1..8"));
  CHECK(placed(*plan, "open").gpu == gpu::GpuSlot{"H100", 80, 4});
  CHECK(placed(*plan, "mem").gpu == gpu::GpuSlot{"L4", 24, 1});
  CHECK(placed(*plan, "mem80").gpu == gpu::GpuSlot{"A100", 80, 2});
  CHECK(placed(*plan, "typed").gpu == gpu::GpuSlot{"A100", 40, 4});
  CHECK(placed(*plan, "big").gpu == gpu::GpuSlot{"A100", 80, 1});
  CHECK(placed(*plan, "set").gpu == gpu::GpuSlot{"A100", 40, 8});
  CHECK(placed(*plan, "shared").gpu == gpu::GpuSlot{"L4", 24, 8});
  CHECK(placed(*plan, "exact").gpu == gpu::GpuSlot{"A100", 40, 1});
  CHECK(placed(*plan, "nv").gpu == gpu::GpuSlot{"L4", 24, 1});

  // An exact variant the cloud lacks is not replaced by a larger one.
  manifest::Manifest strict;
  strict.app = "a";
  strict.functions = {fn("h", "H100!", *config)};
  auto only94 = cloud::parse_config("clouds:\n  c: {backend: slurm, endpoint: \"http://h:1\", partition: p, gpus: [\"H100-94GB:8\"]}\n",
                                    "c.yaml", diagnostics);
  REQUIRE(only94.ok());
  auto refused = cloud::make_plan(strict, *only94, {});
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message ==
        "function 'h' asks for GPU H100!; no cloud can run it: local offers no GPUs; c offers H100-94GB:8; ask for a GPU a cloud offers, "
        "or add it to a cloud's 'gpus:' in the config");
  // A count range whose lower bound no offer holds is unschedulable.
  strict.functions = {fn("many", "H100:5..8", *config)};
  auto few = cloud::make_plan(strict, *config, {});
  REQUIRE_FALSE(few.ok());
  CHECK(few.error().message ==
        "function 'many' asks for GPU H100:5..8; no cloud can run it: local offers no GPUs; c offers H100-80GB:4, A100-40GB:8, "
        "A100-80GB:2, L4:8; ask for a GPU a cloud offers, or add it to a cloud's 'gpus:' in the config");
}

TEST_CASE("placement: on the local machine a memory-first spec or a count range takes a probed GPU of any type") {
  const auto config = modal_config();
  manifest::Manifest m;
  m.app = "a";
  m.functions = {fn("f", "20GB:1..4", config)};
  cloud::PlanInputs inputs;
  inputs.cloud_override = "local";
  inputs.local_offers = {gpu::GpuSlot{"RTX4090", 24, 2}};
  auto plan = cloud::make_plan(m, config, inputs);
  REQUIRE_MESSAGE(plan.ok(), plan.error().message);
  CHECK(placed(*plan, "f").gpu == gpu::GpuSlot{"RTX4090", 24, 2});
  m.functions = {fn("g", "32GB", config)};
  CHECK_FALSE(cloud::make_plan(m, config, inputs).ok());
}
