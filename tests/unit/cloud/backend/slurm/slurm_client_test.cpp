#include <doctest/doctest.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cloud/backend/slurm/slurm_client.hpp"
#include "cloud/backend/slurm/slurm_script.hpp"
#include "tests/unit/loopback_http.hpp"
#include "tests/unit/read_text.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun::cloud::slurm;
using gpurun::test::http_response;
using gpurun::test::LoopbackHttp;
using gpurun::test::SeenRequest;
using gpurun::test::TempDir;
using gpurun::util::ExitCode;

namespace {

std::string capture(const std::string& name) {
  return gpurun::test::read_text(std::string(GPURUN_SOURCE_DIR) + "/tests/data/slurm/" + name);
}

// Sets an environment variable for one scope.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = std::getenv(name)) old_ = old;
    if (value) {
      ::setenv(name, value, 1);
    } else {
      ::unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (old_) {
      ::setenv(name_.c_str(), old_->c_str(), 1);
    } else {
      ::unsetenv(name_.c_str());
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

Client open_client(const ClientOptions& options) {
  auto client = Client::open(options);
  REQUIRE_MESSAGE(client.ok(), (client.ok() ? "" : client.error().message));
  return std::move(*client);
}

}  // namespace

TEST_CASE("slurm client: endpoint, api_version and token are checked when opening") {
  auto message = [](const ClientOptions& options, ExitCode code) {
    auto client = Client::open(options);
    REQUIRE_FALSE(client.ok());
    CHECK(client.error().code == code);
    return client.error().message;
  };
  ClientOptions options;
  options.endpoint = "ftp://cluster";
  CHECK(message(options, ExitCode::usage) ==
        "slurm: endpoint 'ftp://cluster' is neither unix:///path.sock nor http(s)://host:port; fix the cloud's "
        "endpoint in the config");
  options.endpoint = "unix://relative.sock";
  CHECK(message(options, ExitCode::usage) ==
        "slurm: endpoint 'unix://relative.sock' names no absolute socket path; write "
        "unix:///path/to/slurmrestd.sock");
  options.endpoint = "unix:///run/slurmrestd.sock";
  options.api_version = "v0.0.36";
  CHECK(message(options, ExitCode::usage) ==
        "slurm: api_version 'v0.0.36' is not supported; use v0.0.38 (slurmrestd -s openapi/v0.0.38, Slurm 22.05)");

  ScopedEnv token("GPURUN_UNIT_SLURM_TOKEN", nullptr);
  options.api_version = "v0.0.38";
  options.endpoint = "https://slurm.example.org:6820";
  options.token_env = "GPURUN_UNIT_SLURM_TOKEN";
  CHECK(message(options, ExitCode::backend) ==
        "slurm: no token for https://slurm.example.org:6820: $GPURUN_UNIT_SLURM_TOKEN is not set; run `scontrol "
        "token lifespan=86400` on the cluster and export GPURUN_UNIT_SLURM_TOKEN=<token>");
  options.endpoint = "unix:///run/slurmrestd.sock";
  CHECK(Client::open(options).ok());  // a socket needs no token
}

TEST_CASE("slurm client: unreachable endpoints are backend errors naming the endpoint") {
  TempDir dir;
  ClientOptions options;
  options.endpoint = "unix://" + dir.path() + "/missing.sock";
  auto client = open_client(options);
  auto ping = client.ping();
  REQUIRE_FALSE(ping.ok());
  CHECK(ping.error().code == ExitCode::backend);
  CHECK(ping.error().message == "slurm: cannot reach slurmrestd at " + options.endpoint +
                                    ": the socket does not exist; check that slurmrestd runs there and the "
                                    "cloud's endpoint is right");

  // Something else holds the path: a plain file is no socket.
  std::ofstream(dir.path() + "/file.sock") << "x";
  options.endpoint = "unix://" + dir.path() + "/file.sock";
  auto file = open_client(options).ping();
  REQUIRE_FALSE(file.ok());
  CHECK(file.error().message == "slurm: cannot reach slurmrestd at " + options.endpoint +
                                    ": Couldn't connect to server; check that slurmrestd runs there and the "
                                    "cloud's endpoint is right");
}

TEST_CASE("slurm client: JWT headers, paths and bodies on the wire; the token never in messages") {
  std::vector<SeenRequest> seen;
  LoopbackHttp server([](const SeenRequest& request) {
    if (request.target == "/slurm/v0.0.38/ping") return http_response(200, capture("01-ping.response.json"));
    if (request.target == "/slurm/v0.0.38/job/submit") return http_response(200, capture("04-submit-gpu.response.json"));
    if (request.target == "/slurm/v0.0.38/job/3") return http_response(200, capture("09-job-failed.response.json"));
    if (request.target == "/slurm/v0.0.38/job/7") return http_response(200, capture("24-cancel.response.json"));
    return http_response(401, "Authentication failure");
  });
  ScopedEnv token("GPURUN_UNIT_SLURM_TOKEN", "SLURM_JWT=eyJ.secret.token");
  ClientOptions options;
  options.endpoint = "http://127.0.0.1:" + std::to_string(server.port()) + "/";
  options.token_env = "GPURUN_UNIT_SLURM_TOKEN";
  options.user = "alice";
  auto client = open_client(options);

  CHECK(client.ping().ok());
  JobSubmit job;
  job.script = "#!/bin/bash\ntrue\n";
  job.partition = "gcp";
  job.environment = {{"HF_TOKEN", "hf_value"}};
  auto id = client.submit(job);
  REQUIRE(id.ok());
  CHECK(*id == 1);
  auto failed = client.job(3);
  REQUIRE(failed.ok());
  REQUIRE(failed->has_value());
  CHECK((*failed)->exit_code == 3);
  auto cancelled = client.cancel(7);
  REQUIRE(cancelled.ok());
  CHECK(*cancelled == CancelOutcome::cancelled);

  auto nodes = client.nodes();  // answered 401
  REQUIRE_FALSE(nodes.ok());
  CHECK(nodes.error().code == ExitCode::backend);
  CHECK(nodes.error().message ==
        "slurm: slurmrestd at " + options.endpoint +
            " refused the credentials of user 'alice' (HTTP 401); check that $GPURUN_UNIT_SLURM_TOKEN holds a "
            "current token for that user (scontrol token lifespan=86400) and that `user` in the config is right");
  CHECK(nodes.error().message.find("eyJ") == std::string::npos);

  auto requests = server.requests();
  REQUIRE(requests.size() == 5);
  CHECK(requests[0].method == "GET");
  CHECK(requests[1].method == "POST");
  CHECK(requests[1].header("Content-Type") == "application/json");
  CHECK(nlohmann::json::parse(requests[1].body)["job"]["environment"]["HF_TOKEN"] == "hf_value");
  CHECK(requests[3].method == "DELETE");
  CHECK(requests[3].target == "/slurm/v0.0.38/job/7");
  for (const auto& request : requests) {
    CHECK(request.header("X-SLURM-USER-NAME") == "alice");
    CHECK(request.header("X-SLURM-USER-TOKEN") == "eyJ.secret.token");
  }
}

TEST_CASE("slurm client: a socket sends no JWT headers and explains a refusal") {
  TempDir dir;
  std::string socket = dir.path() + "/rest.sock";
  LoopbackHttp server([](const SeenRequest&) { return http_response(403, "Forbidden"); }, socket);
  ClientOptions options;
  options.endpoint = "unix://" + socket;
  auto client = open_client(options);
  auto ping = client.ping();
  REQUIRE_FALSE(ping.ok());
  CHECK(ping.error().message == "slurm: slurmrestd at " + options.endpoint +
                                    " refused this user (HTTP 403); a socket slurmrestd (rest_auth/local) serves "
                                    "only its own user: use the cluster's JWT endpoint instead");
  auto requests = server.requests();
  REQUIRE(requests.size() == 1);
  CHECK(requests[0].header("X-SLURM-USER-TOKEN") == "");
  CHECK(requests[0].target == "/slurm/v0.0.38/ping");
}

// ---------------------------------------------------------------------------------------------
// Against the real cluster of tests/fixtures/slurm_cluster.sh. Skipped by default; run by
// tests/integration/test_slurm_client.sh with --no-skip and the fixture's environment.

namespace {

std::string need_env(const char* name) {
  const char* value = std::getenv(name);
  REQUIRE_MESSAGE(value != nullptr, name << " is not set: run tests/integration/test_slurm_client.sh");
  return value;
}

Client live_client() {
  ClientOptions options;
  options.endpoint = "unix://" + need_env("GPURUN_TEST_SLURM_SOCKET");
  return open_client(options);
}

// Polls the job until `done` says so (30 s at most).
JobInfo wait_job(Client& client, long long id, const std::function<bool(const JobInfo&)>& done) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(40);
  JobInfo last;
  while (std::chrono::steady_clock::now() < deadline) {
    auto job = client.job(id);
    REQUIRE_MESSAGE(job.ok(), (job.ok() ? "" : job.error().message));
    REQUIRE(job->has_value());
    last = **job;
    if (done(last)) {
      return last;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  FAIL("job " << id << " stuck in " << last.state);
  return last;
}

bool is_final(const JobInfo& job) {
  auto status = map_state(job).status;
  return status != JobStatus::queued && status != JobStatus::running;
}

}  // namespace

TEST_CASE("slurm live: ping and nodes over the socket and over JWT" * doctest::skip()) {
  auto client = live_client();
  CHECK(client.ping().ok());
  auto nodes = client.nodes();
  REQUIRE(nodes.ok());
  auto offers = partition_gpu_offers(*nodes);
  CHECK(describe_gpu_offers(offers["aws"]) == "t4:4, a10g:4");
  CHECK(describe_gpu_offers(offers["gcp"]) == "a100:2, a100_20g:2");

  ClientOptions jwt;
  jwt.endpoint = need_env("GPURUN_TEST_SLURM_URL");
  jwt.user = need_env("GPURUN_TEST_SLURM_USER");
  jwt.token_env = "GPURUN_TEST_SLURM_TOKEN";
  need_env("GPURUN_TEST_SLURM_TOKEN");
  auto over_jwt = open_client(jwt);
  CHECK(over_jwt.ping().ok());
  auto jwt_nodes = over_jwt.nodes();
  REQUIRE(jwt_nodes.ok());
  CHECK(jwt_nodes->size() == 2);

  ScopedEnv bad("GPURUN_TEST_SLURM_BAD_TOKEN", "not-a-token");
  jwt.token_env = "GPURUN_TEST_SLURM_BAD_TOKEN";
  auto refused = open_client(jwt).ping();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().code == ExitCode::backend);
  CHECK(refused.error().message ==
        "slurm: slurmrestd at " + jwt.endpoint + " could not act for user '" + jwt.user +
            "' on slurmctld: Unspecified error (Slurm error -1: slurmctld config is unable to load); check that "
            "$GPURUN_TEST_SLURM_BAD_TOKEN holds a current token for that user (scontrol token lifespan=86400); if "
            "it does, check the controller (scontrol ping)");
  JobSubmit job;
  job.script = "#!/bin/bash\ntrue\n";
  auto submit = open_client(jwt).submit(job);
  REQUIRE_FALSE(submit.ok());
  CHECK(submit.error().message ==
        "slurm: slurmrestd at " + jwt.endpoint + " could not act for user '" + jwt.user +
            "' on slurmctld: Zero Bytes were transmitted or received (Slurm error 5005); check that "
            "$GPURUN_TEST_SLURM_BAD_TOKEN holds a current token for that user (scontrol token lifespan=86400); if "
            "it does, check the controller (scontrol ping)");
}

TEST_CASE("slurm live: nasty argv runs verbatim; env values reach the job; exit file" * doctest::skip()) {
  auto client = live_client();
  std::string log_dir = need_env("GPURUN_TEST_SLURM_JOBS") + "/100%/logs";
  std::filesystem::create_directories(log_dir);

  const std::vector<std::string> words = {"it's", "$(touch /tmp/gpurun-pwned)", "`id`", "line1\nline2", "",
                                          "a  b", "*", "$HOME", "--flag=x;y", "\\", "\"q\"", "%j"};
  BatchScript script;
  script.argv = {"printf", "[%s]\\n"};
  script.argv.insert(script.argv.end(), words.begin(), words.end());
  script.log_dir = log_dir;
  script.run_id = "rnasty";
  JobSubmit job;
  job.name = "gpurun-nasty";
  job.partition = "aws";
  job.gres = "gpu:t4:1";
  job.time_limit_minutes = 1;
  job.current_working_directory = log_dir;
  REQUIRE(prepare_job(job, script, {}).ok());
  auto id = client.submit(job);
  REQUIRE_MESSAGE(id.ok(), (id.ok() ? "" : id.error().message));
  auto done = wait_job(client, *id, is_final);
  CHECK(done.state == "COMPLETED");
  CHECK(map_state(done).status == JobStatus::succeeded);

  std::string expected = attempt_marker(1) + "\n";
  for (const auto& word : words) {
    expected += "[" + word + "]\n";
  }
  CHECK(gpurun::test::read_text(run_log_path(log_dir, "rnasty")) == expected);
  CHECK(gpurun::test::read_text(run_exit_path(log_dir, "rnasty")) == "0\n");
  CHECK_FALSE(std::filesystem::exists("/tmp/gpurun-pwned"));

  // A shell string, secret values only in the submission, a failing exit code, attempt offset.
  BatchScript shell;
  shell.shell = "echo \"secret=$MY_SECRET run=$GPURUN_RUN_ID attempt=$GPURUN_ATTEMPT gpus=$CUDA_VISIBLE_DEVICES\"; exit 3";
  shell.env_names = {"MY_SECRET"};
  shell.log_dir = log_dir;
  shell.run_id = "rshell";
  shell.attempt_offset = 1;
  JobSubmit failing;
  failing.partition = "gcp";
  failing.gres = "gpu:a100_20g:1";
  failing.current_working_directory = log_dir;
  REQUIRE(prepare_job(failing, shell, {{"MY_SECRET", "s3cr3t 'value' $(x)"}}).ok());
  CHECK(failing.script.find("s3cr3t") == std::string::npos);
  id = client.submit(failing);
  REQUIRE_MESSAGE(id.ok(), (id.ok() ? "" : id.error().message));
  done = wait_job(client, *id, is_final);
  auto view = map_state(done);
  CHECK(view.status == JobStatus::failed);
  CHECK(view.reason == "exit code 3");
  CHECK(done.exit_code == 3);
  CHECK(gpurun::test::read_text(run_log_path(log_dir, "rshell")) ==
        "=== gpurun: attempt 2 ===\nsecret=s3cr3t 'value' $(x) run=rshell attempt=2 gpus=2\n");
  CHECK(gpurun::test::read_text(run_exit_path(log_dir, "rshell")) == "3\n");
}

TEST_CASE("slurm live: impossible requests, unknown partitions and ids, cancel" * doctest::skip()) {
  auto client = live_client();
  JobSubmit job;
  job.script = "#!/bin/bash\ntrue\n";
  job.partition = "gcp";
  job.gres = "gpu:a100:3";
  job.current_working_directory = "/tmp";
  auto too_many = client.submit(job);
  REQUIRE_FALSE(too_many.ok());
  CHECK(too_many.error().code == ExitCode::unschedulable);
  CHECK(too_many.error().message ==
        "slurm: partition 'gcp' cannot run gres gpu:a100:3: Requested node configuration is not available (Slurm "
        "error 2014); it offers at most a100:2, a100_20g:2 per node: ask for that or pick another cloud");

  job.partition = "azure";
  job.gres = "gpu:a100:1";
  auto partition = client.submit(job);
  REQUIRE_FALSE(partition.ok());
  CHECK(partition.error().code == ExitCode::backend);
  CHECK(partition.error().message ==
        "slurm: job submission rejected: Invalid partition name specified (Slurm error 2000); check the partition "
        "in the cloud's config (sinfo lists the cluster's partitions)");

  auto unknown = client.job(999999);
  REQUIRE(unknown.ok());
  CHECK_FALSE(unknown->has_value());
  auto cancel_unknown = client.cancel(999999);
  REQUIRE(cancel_unknown.ok());
  CHECK(*cancel_unknown == CancelOutcome::unknown_job);

  job.partition = "aws";
  job.gres = "gpu:a10g:1";
  job.script = "#!/bin/bash\nsleep 300\n";
  auto id = client.submit(job);
  REQUIRE(id.ok());
  wait_job(client, *id, [](const JobInfo& j) { return j.state == "RUNNING"; });
  auto cancelled = client.cancel(*id);
  REQUIRE(cancelled.ok());
  CHECK(*cancelled == CancelOutcome::cancelled);
  auto done = wait_job(client, *id, is_final);
  CHECK(map_state(done).status == JobStatus::cancelled);
}

TEST_CASE("slurm live: a requeued job appends a second attempt to the same log" * doctest::skip()) {
  auto client = live_client();
  std::string log_dir = need_env("GPURUN_TEST_SLURM_JOBS") + "/requeue";
  std::filesystem::create_directories(log_dir);
  BatchScript script;
  script.shell = "echo started; [ \"$GPURUN_ATTEMPT\" = 2 ] && exit 0; sleep 300";
  script.log_dir = log_dir;
  script.run_id = "rrequeue";
  JobSubmit job;
  job.partition = "gcp";
  job.gres = "gpu:a100:1";
  job.current_working_directory = log_dir;
  REQUIRE(prepare_job(job, script, {}).ok());
  auto id = client.submit(job);
  REQUIRE(id.ok());
  wait_job(client, *id, [&](const JobInfo&) { return gpurun::test::read_text(run_log_path(log_dir, "rrequeue")).find("started") != std::string::npos; });
  std::string command = "scontrol requeue " + std::to_string(*id);
  REQUIRE(std::system(command.c_str()) == 0);
  auto done = wait_job(client, *id, [](const JobInfo& j) { return j.state == "COMPLETED"; });
  CHECK(done.restart_cnt == 1);
  std::string log = gpurun::test::read_text(run_log_path(log_dir, "rrequeue"));
  auto first = log.find("=== gpurun: attempt 1 ===\nstarted\n");
  auto second = log.find("=== gpurun: attempt 2 ===\nstarted\n");
  CHECK(first == 0);
  CHECK(second != std::string::npos);
  CHECK(log.find("DUE TO JOB REQUEUE") != std::string::npos);
  CHECK(gpurun::test::read_text(run_exit_path(log_dir, "rrequeue")) == "0\n");
}
