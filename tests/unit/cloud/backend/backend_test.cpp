#include <doctest/doctest.h>

#include <nlohmann/json.hpp>
#include <variant>

#include "cloud/backend/local/local_backend.hpp"
#include "cloud/backend/registry.hpp"
#include "cloud/plan/run_builder.hpp"
#include "cloud/backend/slurm/slurm_backend.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun::cloud;
using gpurun::util::ExitCode;

namespace {

// The slurm settings of `cloud`, made its own to edit.
SlurmSettings& slurm_of(CloudConfig& cloud) {
  auto copy = std::make_shared<SlurmSettings>(slurm_settings(cloud));
  cloud.settings = copy;
  return *copy;
}

CloudConfig gcp() {
  CloudConfig cloud;
  cloud.name = "gcp";
  cloud.backend = "slurm";
  slurm_of(cloud).endpoint = "unix:///nonexistent/slurmrestd.sock";
  slurm_of(cloud).partition = "gcp";
  slurm_of(cloud).log_dir = "/scratch/logs";
  slurm_of(cloud).gres = {{"A100-20GB", "a100_20g"}, {"a100", "a100"}};
  slurm_of(cloud).account = "ml";
  slurm_of(cloud).qos = "high";
  slurm_of(cloud).constraint = "ib";
  slurm_of(cloud).sbatch_options = {"--exclusive", "--nice=10", "--comment=hi"};
  return cloud;
}

RunSpec spec() {
  RunSpec s;
  s.app = "mnist";
  s.function = "train";
  s.cloud = "gcp";
  s.backend = "slurm";
  s.argv = {"python", "it's"};
  s.cwd = "/home/me/mnist";
  s.env = {{"MODE", "fast"}};
  s.secrets = {"hf"};
  s.gpu_alternatives = {{"A100", 20, 2}};
  s.timeout = std::chrono::milliseconds(61'000);
  return s;
}

}  // namespace

TEST_CASE("backend: registry makes local and slurm backends and names the known ones") {
  auto local = make_backend("local", nullptr);
  REQUIRE(local.ok());
  CHECK((*local)->name() == "local");
  const CloudConfig cloud = gcp();
  auto slurm = make_backend("slurm", &cloud);
  REQUIRE(slurm.ok());
  CHECK((*slurm)->name() == "slurm");
  auto unknown = make_backend("slurn", nullptr);
  REQUIRE_FALSE(unknown.ok());
  CHECK(unknown.error().code == ExitCode::usage);
  CHECK(unknown.error().message == "unknown backend 'slurn'; use kubernetes, local, slurm or ssh");
  auto no_cloud = make_backend("slurm", nullptr);
  REQUIRE_FALSE(no_cloud.ok());
  CHECK(no_cloud.error().message == "the slurm backend needs a cloud with 'backend: slurm' in the config");
}

TEST_CASE("backend: slurm gres types come from the cloud's map, variants first, else lower case") {
  const CloudConfig cloud = gcp();
  CHECK(slurm_gres_type(cloud, "A100", 20) == "a100_20g");
  CHECK(slurm_gres_type(cloud, "A100", 40) == "a100");
  CHECK(slurm_gres_type(cloud, "A10G", 24) == "a10g");
}

TEST_CASE("backend: slurm job fields for a run") {
  const CloudConfig cloud = gcp();
  auto job = slurm_job_for(cloud, spec(), "rabc", {{"hf", {{"HF_TOKEN", "sekrit"}}}}, 0);
  REQUIRE_MESSAGE(job.ok(), job.error().message);
  CHECK(job->name == "gpurun-mnist-train");
  CHECK(job->partition == "gcp");
  CHECK(job->gres == "gpu:a100_20g:2");
  CHECK(job->time_limit_minutes == 2);  // 61 s rounded up
  CHECK(job->signal == "TERM@10");
  CHECK(job->account == "ml");
  CHECK(job->qos == "high");
  CHECK(job->constraint == "ib");
  CHECK(job->extra == nlohmann::json{{"exclusive", true}, {"nice", 10}, {"comment", "hi"}});
  CHECK(job->current_working_directory == "/home/me/mnist");
  CHECK(job->standard_output == "/scratch/logs/rabc.slurm.out");
  CHECK(job->append_output);
  CHECK(job->environment.at("HF_TOKEN") == "sekrit");
  CHECK(job->environment.at("GPURUN_MASK_ENV") == "HF_TOKEN");
  CHECK(job->environment.at("MODE") == "fast");
  CHECK(job->environment.at("GPURUN_FUNCTION") == "train");
  CHECK(job->script.find("sekrit") == std::string::npos);
  CHECK(job->script.find(" node-exec --log /scratch/logs/rabc.log -- python 'it'\\''s'\n") != std::string::npos);
  CHECK_FALSE(job->cpus_per_task.has_value());
  CHECK_FALSE(job->memory_per_node_mb.has_value());
  RunSpec sized = spec();
  sized.cpu = 1.5;
  sized.memory_bytes = (1ULL << 30) + 1;
  job = slurm_job_for(cloud, sized, "rabc", {}, 0);
  REQUIRE(job.ok());
  CHECK(job->cpus_per_task == std::optional<int>(2));
  CHECK(job->memory_per_node_mb == std::optional<long>(1025));
}

TEST_CASE("backend: slurm dry run redacts secret values") {
  const CloudConfig cloud = gcp();
  auto backend = make_backend("slurm", &cloud);
  REQUIRE(backend.ok());
  auto text = (*backend)->dry_run(spec(), {{"hf", {{"HF_TOKEN", "sekrit"}}}});
  REQUIRE(text.ok());
  CHECK(text->find("sekrit") == std::string::npos);
  CHECK(text->find("\"HF_TOKEN\": \"***\"") != std::string::npos);
  CHECK(text->find("#!/bin/bash\n") != std::string::npos);
}

TEST_CASE("backend: slurm launch against an unreachable endpoint records a failed run and exits 125") {
  gpurun::test::TempDir dir;
  CloudConfig cloud = gcp();
  slurm_of(cloud).log_dir = dir.path() + "/logs";
  auto store = StateStore::open(dir.path() + "/state");
  REQUIRE(store.ok());
  auto backend = make_backend("slurm", &cloud);
  REQUIRE(backend.ok());
  auto run = (*backend)->launch(*store, spec(), {});
  REQUIRE_FALSE(run.ok());
  CHECK(run.error().code == ExitCode::backend);
  CHECK(run.error().message ==
        "slurm: cannot reach slurmrestd at unix:///nonexistent/slurmrestd.sock: the socket does not exist; check that "
        "slurmrestd runs there and the cloud's endpoint is right");
  auto runs = store->list_runs(true);
  REQUIRE(runs.ok());
  CHECK(runs->size() == 1);
  CHECK(runs->front().status == RunStatus::failed);
  CHECK(runs->front().backend == "slurm");

  // A run launched now is logged by node-exec as records; one launched before (no marker in its
  // spec) has Slurm's plain output at the same path.
  Run run_now = runs->front();
  const auto source = (*backend)->open_log(*store, run_now);
  REQUIRE(source.ok());
  CHECK(source->bytes->describe() == slurm_settings(cloud).log_dir + "/" + run_now.id + ".log");
  CHECK(source->format == LogFormat::records);
  Run before = run_now;
  auto old_spec = nlohmann::json::parse(before.spec_json);
  CHECK(old_spec.at("slurm_log_records") == true);
  old_spec.erase("slurm_log_records");
  before.spec_json = old_spec.dump();
  CHECK((*backend)->open_log(*store, before)->format == LogFormat::plain);
  CHECK(run_spec_from_json(run_now.spec_json).ok());
}

TEST_CASE("backend: a slurm job in an image runs node-exec; names, not values, pass into the image") {
  CloudConfig cloud = gcp();
  cloud.registry = "http://reg.example:5000";
  slurm_of(cloud).node_gpurun = "/opt/gpurun/bin/gpurun";
  slurm_of(cloud).image_cache = "/local/cache";
  RunSpec s = spec();
  s.image = "trainer";
  s.image_digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  s.image_registry = cloud.registry;
  s.image_repository = "mnist/trainer";
  s.image_workdir = "/app";
  ::setenv("GPURUN_REGISTRY_USER", "puller", 1);
  ::setenv("GPURUN_REGISTRY_PASSWORD", "pull-secret", 1);
  auto job = slurm_job_for(cloud, s, "rabc", {{"hf", {{"HF_TOKEN", "sekrit"}}}}, 0);
  REQUIRE_MESSAGE(job.ok(), job.error().message);
  CHECK(job->script.find("/opt/gpurun/bin/gpurun node-exec --log /scratch/logs/rabc.log --registry http://reg.example:5000 --repository mnist/trainer "
                         "--digest sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef --cache "
                         "/local/cache --gpus -- python 'it'\\''s'\n") != std::string::npos);
  CHECK(job->environment.at("GPURUN_PASS_ENV") == "MODE,HF_TOKEN");
  CHECK(job->environment.at("GPURUN_REGISTRY_USER") == "puller");
  CHECK(job->environment.at("GPURUN_MASK_ENV") == "HF_TOKEN,GPURUN_REGISTRY_PASSWORD");
  CHECK(job->script.find("pull-secret") == std::string::npos);

  auto backend = make_backend("slurm", &cloud);
  REQUIRE(backend.ok());
  auto text = (*backend)->dry_run(s, {{"hf", {{"HF_TOKEN", "sekrit"}}}});
  REQUIRE(text.ok());
  CHECK(text->find("pull-secret") == std::string::npos);
  CHECK(text->find("\"GPURUN_REGISTRY_PASSWORD\": \"***\"") != std::string::npos);

  slurm_of(cloud).container_runtime = "apptainer";
  job = slurm_job_for(cloud, s, "rabc", {}, 0);
  REQUIRE(job.ok());
  CHECK(job->script.find("\n/opt/gpurun/bin/gpurun node-exec --log /scratch/logs/rabc.log -- apptainer exec --nohttps --nv --pwd /app "
                         "docker://reg.example:5000/mnist/trainer@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                         " python 'it'\\''s'\n") != std::string::npos);
  CHECK(job->environment.at("APPTAINER_DOCKER_PASSWORD") == "pull-secret");
  CHECK(job->environment.count("GPURUN_REGISTRY_PASSWORD") == 0);

  slurm_of(cloud).container_runtime = "pyxis";
  job = slurm_job_for(cloud, s, "rabc", {}, 0);
  REQUIRE(job.ok());
  CHECK(job->script.find("\n/opt/gpurun/bin/gpurun node-exec --log /scratch/logs/rabc.log -- srun --ntasks=1 '--container-image=reg.example:5000#mnist/trainer:0123456789ab' "
                         "--container-workdir=/app python 'it'\\''s'\n") != std::string::npos);
  ::unsetenv("GPURUN_REGISTRY_USER");
  ::unsetenv("GPURUN_REGISTRY_PASSWORD");

  s.image_registry.clear();
  auto missing = slurm_job_for(cloud, s, "rabc", {}, 0);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message ==
        "function 'train' runs in image 'trainer', which is not in the registry of cloud 'gcp'; run 'gpurun deploy' first");
}

TEST_CASE("backend: slurm volumes are bound at their paths by node-exec, on hosts and in images") {
  CloudConfig cloud = gcp();
  slurm_of(cloud).node_gpurun = "/opt/gpurun";
  RunSpec s = spec();
  s.mounts = {{"/scratch/logs/volumes/mnist/data", "/data", "data"}};
  auto job = slurm_job_for(cloud, s, "rabc", {}, 0);
  REQUIRE(job.ok());
  CHECK(job->script.find("\n/opt/gpurun node-exec --log /scratch/logs/rabc.log --bind /scratch/logs/volumes/mnist/data /data -- python 'it'\\''s'\n") !=
        std::string::npos);
  s.image = "trainer";
  s.image_digest = "sha256:abc";
  s.image_registry = "https://reg.example";
  s.image_repository = "mnist/trainer";
  slurm_of(cloud).container_runtime = "pyxis";
  job = slurm_job_for(cloud, s, "rabc", {}, 0);
  REQUIRE(job.ok());
  CHECK(job->script.find(" --container-mounts=/scratch/logs/volumes/mnist/data:/data python") != std::string::npos);
}

TEST_CASE("backend: where volumes live per cloud") {
  CloudConfig cloud = gcp();
  auto slurm = [&] { return make_backend("slurm", &cloud).value(); };
  CHECK(slurm()->volume_path("/state", "mnist", "data").value() == "/scratch/logs/volumes/mnist/data");
  slurm_of(cloud).volume_dir = "/shared/vols/";
  CHECK(slurm()->volume_path("/state", "mnist", "data").value() == "/shared/vols/mnist/data");
  CHECK(make_backend("local", nullptr).value()->volume_path("/state", "mnist", "data").value() == "/state/volumes/mnist/data");
  slurm_of(cloud).volume_dir.clear();
  slurm_of(cloud).log_dir.clear();
  auto missing = slurm()->volume_path("/state", "mnist", "data");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message ==
        "volume 'data' lives on cloud 'gcp', which has no volume_dir (or log_dir); set volume_dir to a directory that this "
        "machine and the cluster's nodes share");
}

TEST_CASE("backend: local capacity is this machine's devices less those leased on the cloud") {
  gpurun::test::TempDir dir;
  auto store = StateStore::open(dir.path() + "/state");
  REQUIRE(store.ok());
  Config config;
  CloudConfig local = builtin_local_cloud();
  local.probe_gpus = false;
  local.gpus_declared = true;
  local.gpus = {gpurun::gpu::GpuSlot{"T4", 16, 2}};
  config.clouds.push_back(local);
  auto backend = make_backend("local", &config.clouds.front(), &config);
  REQUIRE(backend.ok());
  auto idle = (*backend)->capacity(*store);
  REQUIRE(idle.ok());
  CHECK(idle->known);
  REQUIRE(idle->gpus.size() == 1);
  CHECK(idle->gpus[0].type == "T4");
  CHECK(idle->gpus[0].total == 2);
  CHECK(idle->gpus[0].free == 2);

  NewRun fresh;
  fresh.app = "a";
  fresh.function = "f";
  fresh.cloud = "local";
  auto created = store->create_run(fresh);
  REQUIRE(created.ok());
  auto ticket = store->enqueue_lease(created->run.id, "local", {LeaseAlternative{"T4", 16, 1}});
  REQUIRE(ticket.ok());
  auto granted = store->try_grant(*ticket, lease_devices(config));
  REQUIRE(granted.ok());
  REQUIRE(std::holds_alternative<LeaseGranted>(*granted));
  auto busy = (*backend)->capacity(*store);
  REQUIRE(busy.ok());
  CHECK(busy->gpus[0].free == 1);
  CHECK(busy->gpus[0].total == 2);
}
