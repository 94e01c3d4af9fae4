#include <doctest/doctest.h>


#include <nlohmann/json.hpp>

#include "cloud/backend/slurm/slurm_api.hpp"
#include "util/files.hpp"

using namespace gpurun::cloud::slurm;
using gpurun::util::ExitCode;

namespace {

std::string capture(const std::string& name) {
  auto text = gpurun::util::read_file(std::string(GPURUN_SOURCE_DIR) + "/tests/data/slurm/" + name);
  REQUIRE_MESSAGE(text.ok(), "missing capture " << name << ": " << text.error().message);
  return *text;
}

const ApiDialect& v38() {
  static auto dialect = dialect_for("v0.0.38");
  REQUIRE(dialect.ok());
  return **dialect;
}

JobInfo job_from(const std::string& name) {
  auto job = v38().parse_job(200, capture(name));
  REQUIRE(job.ok());
  REQUIRE(job->has_value());
  return **job;
}

}  // namespace

TEST_CASE("slurm dialect: versions and paths") {
  CHECK(v38().version() == "v0.0.38");
  CHECK(v38().path("/job/submit") == "/slurm/v0.0.38/job/submit");
  auto unknown = dialect_for("v0.0.41");
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().code == ExitCode::usage);
  CHECK(unknown.error().message ==
        "slurm: api_version 'v0.0.41' is not supported; use v0.0.38 (slurmrestd -s openapi/v0.0.38, Slurm 22.05)");
}

TEST_CASE("slurm dialect v0.0.38: submit body") {
  JobSubmit job;
  job.script = "#!/bin/bash\necho hi\n";
  job.name = "gpurun-example";
  job.partition = "gcp";
  job.gres = "gpu:a100:1";
  job.time_limit_minutes = 10;
  job.current_working_directory = "/srv/slurm-test/jobs";
  job.standard_output = "/srv/slurm-test/jobs/example-%j.out";
  job.standard_error = "/srv/slurm-test/jobs/example-%j.err";
  job.environment = {{"PATH", "/usr/bin:/bin"}, {"GPURUN_TASK", "demo"}};
  auto body = nlohmann::json::parse(v38().submit_body(job));

  // Every field of the captured request that slurmrestd accepted, with the same values.
  auto captured = nlohmann::json::parse(capture("04-submit-gpu.request.json"));
  for (const auto& [key, value] : captured["job"].items()) {
    CHECK_MESSAGE(body["job"][key] == value, key);
  }
  CHECK(body["script"] == "#!/bin/bash\necho hi\n");
  CHECK(body["job"]["requeue"] == true);
  CHECK(body["job"]["open_mode"] == "append");
  CHECK_FALSE(body["job"].contains("account"));
  CHECK_FALSE(body["job"].contains("cpus_per_task"));

  job.cpus_per_task = 4;
  job.memory_per_node_mb = 16000;
  job.account = "ml";
  job.qos = "high";
  job.constraint = "nvlink";
  job.signal = "B:TERM@60";
  job.requeue = false;
  job.append_output = false;
  job.extra = {{"exclusive", "user"}, {"time_limit", 5}};
  body = nlohmann::json::parse(v38().submit_body(job));
  CHECK(body["job"]["cpus_per_task"] == 4);
  CHECK(body["job"]["memory_per_node"] == 16000);
  CHECK(body["job"]["account"] == "ml");
  CHECK(body["job"]["qos"] == "high");
  CHECK(body["job"]["constraints"] == "nvlink");
  CHECK(body["job"]["signal"] == "B:TERM@60");
  CHECK(body["job"]["requeue"] == false);
  CHECK(body["job"]["open_mode"] == "truncate");
  CHECK(body["job"]["exclusive"] == "user");
  CHECK(body["job"]["time_limit"] == 5);  // extra wins

  JobSubmit bare;
  bare.script = "#!/bin/sh\ntrue\n";
  body = nlohmann::json::parse(v38().submit_body(bare));
  // slurmrestd rejects an empty environment object as if it were missing (capture 32).
  CHECK(body["job"]["environment"] == nlohmann::json{{"PATH", "/usr/local/bin:/usr/bin:/bin"}});
  auto empty = v38().parse_submit(400, capture("32-empty-environment.response.json"));
  REQUIRE_FALSE(empty.ok());
  CHECK(empty.error().message.find("environment must be set (Slurm error 2127)") != std::string::npos);
  CHECK_FALSE(body["job"].contains("gres"));
}

TEST_CASE("slurm dialect v0.0.38: submit responses") {
  auto ok = v38().parse_submit(200, capture("04-submit-gpu.response.json"));
  REQUIRE(ok.ok());
  CHECK(*ok == 1);

  const std::string unschedulable =
      "slurm: job submission rejected: Requested node configuration is not available (Slurm error 2014); no node "
      "of the partition has that many GPUs of that type (or the CPUs and memory asked for): ask for what the "
      "partition offers or pick another cloud";
  for (const char* name : {"10-too-many-gpus.response.json", "11-unknown-gpu-type.response.json",
                           "12-type-not-in-partition.response.json"}) {
    CAPTURE(name);
    auto rejected = v38().parse_submit(500, capture(name));
    REQUIRE_FALSE(rejected.ok());
    CHECK(rejected.error().code == ExitCode::unschedulable);
    CHECK(rejected.error().message == unschedulable);
  }

  auto partition = v38().parse_submit(500, capture("13-unknown-partition.response.json"));
  REQUIRE_FALSE(partition.ok());
  CHECK(partition.error().code == ExitCode::backend);
  CHECK(partition.error().message ==
        "slurm: job submission rejected: Invalid partition name specified (Slurm error 2000); check the partition "
        "in the cloud's config (sinfo lists the cluster's partitions)");

  auto environment = v38().parse_submit(400, capture("14-missing-environment.response.json"));
  REQUIRE_FALSE(environment.ok());
  CHECK(environment.error().code == ExitCode::backend);
  CHECK(environment.error().message ==
        "slurm: job submission rejected: environment must be set (Slurm error 2127), Failure during parsing "
        "(Slurm error 9001); see slurmctld's log or ask the cluster's administrator");

  auto text = v38().parse_submit(401, capture("28-jwt-no-token.response.txt"));
  REQUIRE_FALSE(text.ok());
  CHECK(text.error().message ==
        "slurm: job submission failed: slurmrestd answered HTTP 401 with 'Authentication failure' instead of "
        "JSON; check the endpoint URL and api_version");

  auto no_id = v38().parse_submit(200, R"({"errors": []})");
  REQUIRE_FALSE(no_id.ok());
  CHECK(no_id.error().message ==
        "slurm: job submission rejected: slurmrestd answered HTTP 200 without details; see slurmctld's log or "
        "ask the cluster's administrator");
}

TEST_CASE("slurm dialect v0.0.38: running and completed jobs") {
  auto running = job_from("05-job-running.response.json");
  CHECK(running.job_id == 1);
  CHECK(running.state == "RUNNING");
  CHECK(running.state_reason == "None");
  CHECK(running.partition == "gcp");
  CHECK(running.nodes == "gcp-node1");
  CHECK(running.batch_host == "gcp-node1");
  CHECK(running.start_time == 1795552612);
  CHECK(running.restart_cnt == 0);
  CHECK(running.gres_detail == std::vector<std::string>{"gpu:a100:1(IDX:0)"});
  CHECK(running.standard_output == "/tmp/slurmlab/cluster/jobs/example-%j.out");
  auto view = map_state(running);
  CHECK(view.status == JobStatus::running);
  CHECK(view.reason == "");

  auto completed = job_from("06-job-completed.response.json");
  CHECK(completed.state == "COMPLETED");
  CHECK(completed.raw_exit_code == 0);
  CHECK(completed.exit_code == 0);
  CHECK_FALSE(completed.exit_signal.has_value());
  CHECK(completed.end_time == 1795552617);
  CHECK(map_state(completed).status == JobStatus::succeeded);
}

TEST_CASE("slurm dialect v0.0.38: failed, pending and cancelled jobs") {
  auto failed = job_from("09-job-failed.response.json");
  CHECK(failed.job_id == 3);
  CHECK(failed.raw_exit_code == 768);
  CHECK(failed.exit_code == 3);
  CHECK(failed.state_reason == "NonZeroExitCode");
  auto view = map_state(failed);
  CHECK(view.status == JobStatus::failed);
  CHECK(view.reason == "exit code 3");

  auto pending = job_from("17-job-pending-resources.response.json");
  CHECK(pending.state == "PENDING");
  CHECK(pending.nodes == "");
  view = map_state(pending);
  CHECK(view.status == JobStatus::queued);
  CHECK(view.reason == "Resources");

  auto cancelled = job_from("24-job-cancelled.response.json");
  CHECK(cancelled.raw_exit_code == 15);
  CHECK_FALSE(cancelled.exit_code.has_value());
  CHECK(cancelled.exit_signal == 15);
  CHECK(cancelled.restart_cnt == 1);
  view = map_state(cancelled);
  CHECK(view.status == JobStatus::cancelled);
  CHECK(view.reason == "");
}

TEST_CASE("slurm dialect v0.0.38: a requeued job goes COMPLETING, PENDING BeginTime, RUNNING") {
  auto right_after = job_from("21-job-right-after-requeue.response.json");
  CHECK(right_after.state == "COMPLETING");
  CHECK(right_after.restart_cnt == 1);
  CHECK(map_state(right_after).status == JobStatus::running);

  auto pending = job_from("22-job-requeued-pending.response.json");
  CHECK(pending.restart_cnt == 1);
  auto view = map_state(pending);
  CHECK(view.status == JobStatus::queued);
  CHECK(view.reason == "BeginTime");

  auto again = job_from("23-job-requeued-running.response.json");
  CHECK(again.restart_cnt == 1);
  CHECK(again.gres_detail == std::vector<std::string>{"gpu:a100:2(IDX:0-1)"});
  CHECK(map_state(again).status == JobStatus::running);
}

TEST_CASE("slurm dialect v0.0.38: unknown job ids and cancel") {
  auto unknown = v38().parse_job(500, capture("26-get-unknown.response.json"));
  REQUIRE(unknown.ok());
  CHECK_FALSE(unknown->has_value());
  auto errors = v38().parse_errors(capture("26-get-unknown.response.json"));
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].code == kErrorInvalidJobId);
  CHECK(errors[0].message == "Invalid job id specified");
  CHECK(errors[0].description == "Unable to find JobId=999999");

  auto cancel = v38().parse_cancel(200, capture("24-cancel.response.json"));
  REQUIRE(cancel.ok());
  CHECK(*cancel == CancelOutcome::cancelled);
  cancel = v38().parse_cancel(200, capture("20-cancel-pending.response.json"));
  REQUIRE(cancel.ok());
  CHECK(*cancel == CancelOutcome::cancelled);
  cancel = v38().parse_cancel(500, capture("25-cancel-unknown.response.json"));
  REQUIRE(cancel.ok());
  CHECK(*cancel == CancelOutcome::unknown_job);
  cancel = v38().parse_cancel(500, R"({"errors": [{"error_number": 2021, "error": "Job/step already completing or completed"}]})");
  REQUIRE(cancel.ok());
  CHECK(*cancel == CancelOutcome::already_done);

  auto broken = v38().parse_cancel(500, R"({"errors": [{"error_number": 1, "error": "Unexpected error", "description": "boom"}]})");
  REQUIRE_FALSE(broken.ok());
  CHECK(broken.error().code == ExitCode::backend);
  CHECK(broken.error().message ==
        "slurm: cancelling the job failed: Unexpected error (Slurm error 1: boom); see slurmctld's log or ask the "
        "cluster's administrator");

  auto other = v38().parse_job(500, R"({"errors": [{"error_number": 1, "error": "Unexpected error"}], "jobs": []})");
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().message ==
        "slurm: reading the job's status failed: Unexpected error (Slurm error 1); see slurmctld's log or ask the "
        "cluster's administrator");
}

TEST_CASE("slurm dialect v0.0.38: what a bad JWT looks like") {
  auto ping = v38().parse_ping(500, capture("29-jwt-bad-token-ping.response.json"));
  REQUIRE_FALSE(ping.ok());
  CHECK(ping.error().message ==
        "slurm: pinging slurmctld failed: Unspecified error (Slurm error -1: slurmctld config is unable to load); "
        "see slurmctld's log or ask the cluster's administrator");
  auto nodes = v38().parse_errors(capture("30-jwt-bad-token-nodes.response.json"));
  REQUIRE(nodes.size() == 1);
  CHECK(nodes[0].code == -1);  // spelled "errno" there
  auto submit = v38().parse_submit(500, capture("31-jwt-bad-token-submit.response.json"));
  REQUIRE_FALSE(submit.ok());
  CHECK(submit.error().code == ExitCode::backend);
  CHECK(submit.error().message ==
        "slurm: job submission rejected: Zero Bytes were transmitted or received (Slurm error 5005); see "
        "slurmctld's log or ask the cluster's administrator");
}

TEST_CASE("slurm dialect v0.0.38: ping") {
  CHECK(v38().parse_ping(200, capture("01-ping.response.json")).ok());
  auto down = v38().parse_ping(200, R"({"errors": [], "pings": [{"hostname": "c", "ping": "DOWN"}]})");
  REQUIRE_FALSE(down.ok());
  CHECK(down.error().message ==
        "slurm: pinging slurmctld failed: slurmrestd answers but no slurmctld is UP; check the controller "
        "(scontrol ping) or ask the cluster's administrator");
}

TEST_CASE("slurm dialect v0.0.38: nodes and per-partition GPU offers") {
  auto nodes = v38().parse_nodes(200, capture("02-nodes.response.json"));
  REQUIRE(nodes.ok());
  REQUIRE(nodes->size() == 2);
  CHECK((*nodes)[0].name == "aws-node1");
  CHECK((*nodes)[0].state == "idle");
  CHECK((*nodes)[0].partitions == std::vector<std::string>{"aws"});
  CHECK((*nodes)[0].gres == "gpu:t4:4,gpu:a10g:4");
  CHECK((*nodes)[0].gres_used == "gpu:t4:0(IDX:N/A),gpu:a10g:0(IDX:N/A)");
  CHECK((*nodes)[0].cpus == 8);
  CHECK((*nodes)[0].real_memory_mb == 4000);
  CHECK((*nodes)[1].name == "gcp-node1");

  auto offers = partition_gpu_offers(*nodes);
  REQUIRE(offers.size() == 2);
  CHECK(describe_gpu_offers(offers["aws"]) == "t4:4, a10g:4");
  CHECK(describe_gpu_offers(offers["gcp"]) == "a100:2");
  CHECK(describe_gpu_offers({}) == "no GPUs");

  // A partition over two nodes: the most one node gives, per type.
  std::vector<NodeInfo> pair{{"n1", "idle", {"p"}, "gpu:a100:2", "", 8, 1000},
                             {"n2", "idle", {"p", "q"}, "gpu:a100:4,gpu:h100:1", "", 8, 1000}};
  auto merged = partition_gpu_offers(pair);
  CHECK(describe_gpu_offers(merged["p"]) == "a100:4, h100:1");
  CHECK(describe_gpu_offers(merged["q"]) == "a100:4, h100:1");
}

TEST_CASE("slurm: GRES strings") {
  auto offers = parse_gpu_gres("gpu:t4:4(S:0-1),shard:8,gpu:2,gpu:a10g:4,gpu:bad:x,gpu:h100");
  REQUIRE(offers.size() == 4);
  CHECK(offers[0].type == "t4");
  CHECK(offers[0].count == 4);
  CHECK(offers[1].type == "");
  CHECK(offers[1].count == 2);
  CHECK(offers[2].type == "a10g");
  CHECK(offers[3].type == "h100");
  CHECK(offers[3].count == 1);
  CHECK(parse_gpu_gres("").empty());
  CHECK(parse_gpu_gres("(null)").empty());
  auto used = parse_gpu_gres("gpu:a100:1(IDX:0),gpu:a100_20g:0(IDX:N/A)");
  REQUIRE(used.size() == 2);
  CHECK(used[1].type == "a100_20g");
  CHECK(used[1].count == 0);
}

TEST_CASE("slurm: wait statuses and state mapping") {
  CHECK(decode_wait_status(0).exit_code == 0);
  CHECK(decode_wait_status(768).exit_code == 3);
  CHECK(decode_wait_status(9).signal == 9);
  CHECK_FALSE(decode_wait_status(9).exit_code.has_value());
  CHECK_FALSE(decode_wait_status(4294967294LL).exit_code.has_value());
  CHECK_FALSE(decode_wait_status(-1).signal.has_value());

  auto state = [](const char* name, const char* reason = "None", long long raw = 0, const char* nodes = "") {
    JobInfo job;
    job.state = name;
    job.state_reason = reason;
    job.raw_exit_code = raw;
    auto wait = decode_wait_status(raw);
    job.exit_code = wait.exit_code;
    job.exit_signal = wait.signal;
    job.nodes = nodes;
    return map_state(job);
  };
  CHECK(state("CONFIGURING").status == JobStatus::running);
  CHECK(state("FAILED", "NonZeroExitCode", 9).reason == "killed by signal 9");
  CHECK(state("FAILED", "JobLaunchFailure", 256).reason == "exit code 1; Slurm reason: JobLaunchFailure");
  CHECK(state("OUT_OF_MEMORY").status == JobStatus::failed);
  CHECK(state("OUT_OF_MEMORY").reason == "out of memory");
  CHECK(state("NODE_FAIL", "None", 0, "gcp-node1").reason == "node failure on gcp-node1");
  CHECK(state("BOOT_FAIL").status == JobStatus::failed);
  CHECK(state("CANCELLED", "Prolog").reason == "Slurm reason: Prolog");
  CHECK(state("TIMEOUT").status == JobStatus::timeout);
  CHECK(state("TIMEOUT").reason == "time limit reached");
  CHECK(state("DEADLINE").status == JobStatus::timeout);
  for (const char* name : {"PREEMPTED", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"}) {
    CHECK_MESSAGE(state(name).status == JobStatus::preempted, name);
  }
  CHECK(state("REQUEUE_HOLD").reason == "requeued and held");
  CHECK(state("WEIRD").status == JobStatus::unknown);
  CHECK(state("WEIRD").reason == "Slurm state WEIRD");
  CHECK(to_string(JobStatus::succeeded) == "succeeded");
  CHECK(to_string(JobStatus::unknown) == "unknown");
}
