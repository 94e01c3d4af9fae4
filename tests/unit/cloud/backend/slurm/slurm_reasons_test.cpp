#include <doctest/doctest.h>

#include "cloud/backend/slurm/slurm_api.hpp"
#include "cloud/backend/slurm/slurm_reasons.hpp"
#include "util/files.hpp"

using namespace gpurun::cloud::slurm;

namespace {

NodeInfo node(std::string name, std::vector<std::string> partitions, std::string gres, std::string used) {
  NodeInfo n;
  n.name = std::move(name);
  n.partitions = std::move(partitions);
  n.gres = std::move(gres);
  n.gres_used = std::move(used);
  return n;
}

}  // namespace

TEST_CASE("slurm pending reasons: phrases for the raw reasons") {
  CHECK(pending_reason_phrase("Priority") == "higher-priority jobs go first");
  CHECK(pending_reason_phrase("Resources") == "waiting for free resources");
  CHECK(pending_reason_phrase("BeginTime") == "its start time has not come yet");
  CHECK(pending_reason_phrase("Dependency") == "waiting for the jobs it depends on");
  CHECK(pending_reason_phrase("JobHeldUser") == "held by its user (scontrol release starts it)");
  CHECK(pending_reason_phrase("ReqNodeNotAvail") == "the nodes it needs are down, drained or reserved");
  CHECK(pending_reason_phrase("QOSMaxGRESPerUser") == "its QOS allows this user no more GPUs at once");
  CHECK(pending_reason_phrase("QOSGrpCpuLimit") == "a limit of its QOS is reached");
  CHECK(pending_reason_phrase("AssocGrpCpuLimit") == "a limit of its account is reached");
  CHECK(pending_reason_phrase("None").empty());
  CHECK(pending_reason_phrase("SomethingNew").empty());
}

TEST_CASE("slurm pending reasons: the words after 'waiting for X on CLOUD: '") {
  const GpuCapacity full{2, 2};
  const GpuCapacity half{2, 1};
  CHECK(describe_pending("Resources", full, std::nullopt, 1) == "all 2 in use (Resources)");
  CHECK(describe_pending("Resources", half, std::nullopt, 2) == "1 of 2 free, 2 needed (Resources)");
  CHECK(describe_pending("Resources", std::nullopt, std::nullopt, 1) == "waiting for free resources (Resources)");
  CHECK(describe_pending("Priority", full, std::nullopt, 1) == "all 2 in use, higher-priority jobs go first (Priority)");
  CHECK(describe_pending("Priority", std::nullopt, std::nullopt, 1) == "higher-priority jobs go first (Priority)");
  CHECK(describe_pending("BeginTime", std::nullopt, ScheduledRetry{1, 2, 4, "exit code 7"}, 1) ==
        "retry 1 of 2 in 4s (after exit code 7) (BeginTime)");
  CHECK(describe_pending("BeginTime", std::nullopt, ScheduledRetry{2, 2, -3, "timing out after 2s"}, 1) ==
        "retry 2 of 2 in 0s (after timing out after 2s) (BeginTime)");
  CHECK(describe_pending("BeginTime", std::nullopt, ScheduledRetry{1, 1, 90, "exit code 1"}, 1) ==
        "retry 1 of 1 in 90s (after exit code 1) (BeginTime)");
  CHECK(describe_pending("BeginTime", std::nullopt, ScheduledRetry{1, 1, 5, ""}, 1) == "retry 1 of 1 in 5s (BeginTime)");
  CHECK(describe_pending("BeginTime", std::nullopt, std::nullopt, 1) == "its start time has not come yet (BeginTime)");
  CHECK(describe_pending("QOSMaxGRESPerUser", full, std::nullopt, 1) ==
        "its QOS allows this user no more GPUs at once (QOSMaxGRESPerUser)");
  CHECK(describe_pending("SomethingNew", std::nullopt, std::nullopt, 1) == "queued (SomethingNew)");
  CHECK(describe_pending("None", std::nullopt, std::nullopt, 1) == "queued");
  CHECK(describe_pending("", std::nullopt, std::nullopt, 1) == "queued");
}

TEST_CASE("slurm pending reasons: GPU capacity of a partition from the nodes' GRES") {
  const std::vector<NodeInfo> nodes = {
      node("aws-node1", {"aws"}, "gpu:t4:4,gpu:a10g:4", "gpu:t4:3(IDX:0-2),gpu:a10g:0(IDX:N/A)"),
      node("gcp-node1", {"gcp"}, "gpu:a100:2,gpu:a100_20g:2", "gpu:a100:2(IDX:0-1),gpu:a100_20g:0(IDX:N/A)"),
      node("gcp-node2", {"gcp", "all"}, "gpu:a100:2", "gpu:a100:1(IDX:1)"),
  };
  auto a100 = gpu_capacity(nodes, "gcp", "a100");
  REQUIRE(a100.has_value());
  CHECK(a100->total == 4);
  CHECK(a100->used == 3);
  auto t4 = gpu_capacity(nodes, "aws", "T4");
  REQUIRE(t4.has_value());
  CHECK(t4->total == 4);
  CHECK(t4->used == 3);
  auto everywhere = gpu_capacity(nodes, "", "a100");
  REQUIRE(everywhere.has_value());
  CHECK(everywhere->total == 4);
  CHECK_FALSE(gpu_capacity(nodes, "aws", "a100").has_value());
  CHECK_FALSE(gpu_capacity(nodes, "gcp", "h100").has_value());
}

TEST_CASE("slurm pending reasons: the captured cluster's idle nodes have all GPUs free") {
  auto dialect = dialect_for("v0.0.38");
  REQUIRE(dialect.ok());
  auto text = gpurun::util::read_file(std::string(GPURUN_SOURCE_DIR) + "/tests/data/slurm/02-nodes.response.json");
  REQUIRE(text.ok());
  auto nodes = (*dialect)->parse_nodes(200, *text);
  REQUIRE(nodes.ok());
  auto a100 = gpu_capacity(*nodes, "gcp", "a100");
  REQUIRE(a100.has_value());
  CHECK(a100->total == 2);
  CHECK(a100->used == 0);
  CHECK(describe_pending("Resources", a100, std::nullopt, 4) == "2 of 2 free, 4 needed (Resources)");
}
