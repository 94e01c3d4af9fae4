#include <doctest/doctest.h>

#include "cloud/backend/slurm/slurm_backend.hpp"
#include "cloud/backend/slurm/slurm_reasons.hpp"
#include "cloud/backend/slurm/slurm_transport.hpp"
#include "util/exit_code.hpp"

using namespace gpurun::cloud;
using namespace gpurun::cloud::slurm;

TEST_CASE("slurm transport: sbatch's options for a job (the script and environment go elsewhere)") {
  JobSubmit job;
  job.script = "#!/bin/bash\necho hi\n";
  job.name = "gpurun-app-fn";
  job.partition = "gpu";
  job.gres = "gpu:a100:2";
  job.time_limit_minutes = 5;
  job.standard_output = "/scratch/r.slurm.out";
  job.signal = "TERM@10";
  job.environment = {{"SECRET", "v"}};
  job.extra = {{"begin_time", "now+3"}, {"exclusive", true}, {"nice", 10}};
  CHECK(sbatch_arguments(job) ==
        std::vector<std::string>{"--parsable", "--export=ALL", "--job-name=gpurun-app-fn", "--partition=gpu", "--gres=gpu:a100:2",
                                 "--time=5", "--output=/scratch/r.slurm.out", "--signal=TERM@10", "--requeue",
                                 "--open-mode=append", "--begin=now+3", "--exclusive", "--nice=10"});
}

TEST_CASE("slurm transport: squeue --json lists every job; only the ones asked for come back") {
  const std::string body = R"({"meta": {}, "errors": [], "jobs": [
    {"job_id": 7, "job_state": "RUNNING", "state_reason": "None", "exit_code": 0, "restart_cnt": 1, "start_time": 100},
    {"job_id": 8, "job_state": "FAILED", "state_reason": "NonZeroExitCode", "exit_code": 768},
    {"job_id": 9, "job_state": "PENDING", "state_reason": "Priority"}]})";
  const long long ids[] = {8, 7, 42};
  auto jobs = jobs_from_squeue_json(body, ids);
  REQUIRE(jobs.ok());
  REQUIRE(jobs->size() == 2);
  CHECK(jobs->at(7).state == "RUNNING");
  CHECK(jobs->at(7).restart_cnt == 1);
  CHECK(jobs->at(8).exit_code == 3);
  CHECK(jobs->count(42) == 0);
  auto bad = jobs_from_squeue_json("squeue: error: oops", ids);
  REQUIRE(!bad.ok());
}

TEST_CASE("slurm transport: sbatch's failures as gpurun errors") {
  const auto impossible = sbatch_failure(
      "sbatch: error: Batch job submission failed: Requested node configuration is not available\n", "aws");
  CHECK(impossible.code == gpurun::util::ExitCode::unschedulable);
  const auto partition = sbatch_failure("sbatch: error: invalid partition specified: nope\n", "aws");
  CHECK(partition.code == gpurun::util::ExitCode::backend);
  CHECK(partition.message ==
        "slurm: job submission rejected: sbatch: error: invalid partition specified: nope; check the partition of cloud "
        "'aws' in the config (sinfo lists the cluster's partitions)");
}

TEST_CASE("slurm transport: unknown transports are usage errors") {
  TransportOptions options;
  options.transport = "carrier-pigeon";
  options.cloud = "aws";
  auto t = open_transport(options);
  REQUIRE(!t.ok());
  CHECK(t.error().message == "cloud 'aws': unknown transport 'carrier-pigeon'; use rest, cli or ssh");
}

TEST_CASE("slurm reasons: which pending reasons never clear") {
  CHECK(never_satisfiable("PartitionTimeLimit"));
  CHECK(never_satisfiable("PartitionNodeLimit"));
  // The user's own running jobs hold the QOS's GPUs: it clears when they end.
  CHECK_FALSE(never_satisfiable("QOSMaxGRESPerUser"));
  CHECK_FALSE(never_satisfiable("Resources"));
  CHECK_FALSE(never_satisfiable("Priority"));
  CHECK_FALSE(never_satisfiable("ReqNodeNotAvail"));
  CHECK(never_satisfiable("ReqNodeNotAvail", true));
  CHECK(unavailable_nodes("ReqNodeNotAvail, UnavailableNodes:gpu7,gpu9") == std::vector<std::string>{"gpu7", "gpu9"});
  CHECK(unavailable_nodes("ReqNodeNotAvail, UnavailableNodes:gpu[7-9]").empty());
  CHECK(unavailable_nodes("ReqNodeNotAvail").empty());
}

TEST_CASE("slurm backend: partitions map GPU types to partitions, else the cloud's partition") {
  CloudConfig cloud;
  auto settings = std::make_shared<SlurmSettings>();
  settings->partition = "default";
  settings->partitions = {{"A100", "gpu-a100"}, {"T4", "gpu-small"}};
  cloud.settings = settings;
  CHECK(slurm_partition(cloud, "a100") == "gpu-a100");
  CHECK(slurm_partition(cloud, "T4") == "gpu-small");
  CHECK(slurm_partition(cloud, "H100") == "default");
  CHECK(slurm_partition(cloud, "") == "default");
}
