#include "cloud/backend/slurm/slurm_backend.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <span>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "cloud/images/image_store.hpp"
#include "cloud/images/push.hpp"
#include "cloud/images/registry.hpp"
#include "cloud/exec/sandbox.hpp"
#include "cloud/ssh/remote_gpurun.hpp"
#include "cloud/ssh/ssh_client.hpp"
#include "cloud/backend/slurm/slurm_client.hpp"
#include "cloud/backend/slurm/slurm_reasons.hpp"
#include "cloud/backend/slurm/slurm_script.hpp"
#include "cloud/backend/slurm/slurm_transport.hpp"
#include "gpu/spec.hpp"
#include "util/clock.hpp"
#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::cloud {

namespace {

using util::ExitCode;

struct RemoteId {
  long long job_id = 0;
  int offset = 0;   // attempts before this job (failures and requeues)
  int retries = 0;  // gpurun-level resubmissions after failures so far
};

// "JOBID" or "JOBID+OFFSET+RETRIES"; nullopt while a submission is in progress ("claim:...").
std::optional<RemoteId> parse_remote_id(const std::string& text) {
  if (text.empty()) return std::nullopt;
  RemoteId id;
  const auto parts = util::split(text, '+');
  try {
    id.job_id = std::stoll(parts.at(0));
    if (parts.size() == 3) {
      id.offset = std::stoi(parts[1]);
      id.retries = std::stoi(parts[2]);
    }
  } catch (const std::exception&) {
    return std::nullopt;
  }
  return id;
}

std::string format_remote_id(long long job_id, int offset, int retries) {
  return offset == 0 && retries == 0 ? std::to_string(job_id) : fmt::format("{}+{}+{}", job_id, offset, retries);
}

// The cause a retry's waiting reason names: X in "...: retry 1 of 2 in 4s (after X)"; empty when
// the reason has none.
std::string retry_cause(const std::string& reason) {
  const auto start = reason.find("(after ");
  if (start == std::string::npos) return "";
  int depth = 0;
  for (std::size_t i = start; i < reason.size(); ++i) {
    if (reason[i] == '(') ++depth;
    if (reason[i] == ')' && --depth == 0) return reason.substr(start + 7, i - start - 7);
  }
  return "";
}

// The code in a run's exit file on the cluster; nullopt when it is missing or unreadable.
std::optional<int> read_exit_file(slurm::Transport& transport, const std::string& path) {
  auto text = transport.read_file(path, 0, 64);
  if (!text || !*text) return std::nullopt;
  std::istringstream in(**text);
  int code = 0;
  if (in >> code) return code;
  return std::nullopt;
}

// The key in a run's spec_json that says node-exec writes its log as records (runs launched
// before that have plain Slurm output logs).
constexpr const char* records_marker = "slurm_log_records";

std::string with_records_marker(const std::string& spec_json) {
  auto j = nlohmann::json::parse(spec_json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return spec_json;
  j[records_marker] = true;
  return j.dump();
}

bool has_records_marker(const std::string& spec_json) {
  const auto j = nlohmann::json::parse(spec_json, nullptr, false);
  return j.is_object() && j.value(records_marker, false);
}

// sbatch_options ("--exclusive", "--nice=10") as job fields.
nlohmann::json extra_fields(const std::vector<std::string>& options) {
  nlohmann::json extra = nlohmann::json::object();
  for (std::string option : options) {
    while (!option.empty() && option[0] == '-') option.erase(0, 1);
    if (option.empty()) continue;
    const auto eq = option.find('=');
    std::string key = option.substr(0, eq);
    for (char& c : key) {
      if (c == '-') c = '_';
    }
    if (eq == std::string::npos) {
      extra[key] = true;
      continue;
    }
    const std::string value = option.substr(eq + 1);
    if (auto n = util::parse_uint(value)) {
      extra[key] = *n;
    } else {
      extra[key] = value;
    }
  }
  return extra;
}

// This gpurun's absolute path (what the nodes run when the cloud names no node_gpurun).
std::string self_executable() {
  std::error_code ec;
  auto path = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string("gpurun") : path.string();
}

// A run's log file on the cluster, read through the cloud's transport (over SSH for `ssh`).
class TransportLogBytes final : public LogBytes {
 public:
  TransportLogBytes(std::shared_ptr<slurm::Transport> transport, std::string path, std::string host)
      : transport_(std::move(transport)), path_(std::move(path)), host_(std::move(host)) {}
  util::Result<std::size_t> read(std::uint64_t offset, char* out, std::size_t max) override {
    auto bytes = transport_->read_file(path_, offset, max);
    if (!bytes) return bytes.error();
    if (!*bytes) return std::size_t{0};
    const std::size_t n = std::min(max, (*bytes)->size());
    std::memcpy(out, (*bytes)->data(), n);
    return n;
  }
  util::Result<std::uint64_t> size() override { return transport_->file_size(path_); }
  std::string describe() const override { return host_ + ":" + path_; }

 private:
  std::shared_ptr<slurm::Transport> transport_;
  std::string path_;
  std::string host_;
};

class SlurmBackend final : public Backend {
 public:
  SlurmBackend(CloudConfig cloud, std::optional<Config> config) : cloud_(std::move(cloud)), config_(std::move(config)) {}

  std::string_view name() const override { return "slurm"; }
  bool remote() const override { return true; }

  // <volume_dir>/<app>/<volume> on the cluster's shared filesystem (volume_dir defaults to
  // <log_dir>/volumes).
  util::Result<std::string> volume_path(const std::string& /*state_dir*/, const std::string& app,
                                        const std::string& volume) const override {
    std::string dir = slurm().volume_dir;
    if (dir.empty() && !slurm().log_dir.empty()) dir = slurm().log_dir + "/volumes";
    if (dir.empty() || dir[0] != '/') {
      return util::make_error(ExitCode::usage, fmt::format("volume '{}' lives on cloud '{}', which has no volume_dir (or "
                                                           "log_dir); set volume_dir to a directory that this machine and "
                                                           "the cluster's nodes share",
                                                           volume, cloud_.name));
    }
    while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
    return fmt::format("{}/{}/{}", dir, app, volume);
  }

  // Over ssh the cluster's files are not this machine's: the volume's directory is made on the
  // cluster in the submit's round trip (JobSubmit::directories), not here.
  util::Result<std::string> prepare_volume(PrepareContext& ctx, const RunSpec& spec, const std::string& volume,
                                           const std::optional<Volume>& existing) override {
    if (slurm().transport != "ssh") return Backend::prepare_volume(ctx, spec, volume, existing);
    return volume_path(ctx.store.dir(), spec.app, volume);
  }

  // Slurm gets the one GPU slot placement chose on this cloud; the nodes pull the function's
  // image from the cloud's registry: built (content addressed), and pushed unless the state says
  // the cloud already holds that digest (with ctx.dry_run: built only).
  util::Result<void> prepare_image(PrepareContext& ctx, const PlacedFunction& placed, RunSpec& spec) override {
    if (placed.gpu) spec.gpu_alternatives = {{placed.gpu->type, placed.gpu->memory_gb, placed.gpu->count}};
    if (spec.image.empty()) return {};
    return prepare_registry_image(ctx, *this, cloud_, spec);
  }

  util::Result<void> check_image_target(const Config& config, const std::string& image) const override {
    if (cloud_.registry.empty()) return missing_registry_error(config, cloud_, image);
    return {};
  }

  util::Result<ImagePlacement> place_image(PrepareContext& ctx, BuiltImage& image, int version) override {
    if (auto target = check_image_target(ctx.config, image.name); !target) return target.error();
    return place_registry_image(ctx, cloud_, image, version);
  }

  util::Result<Run> launch(StateStore& store, const RunSpec& spec, const SecretValues& secrets) override {
    if (slurm().log_dir.empty() || slurm().log_dir[0] != '/') {
      return util::make_error(ExitCode::usage,
                              fmt::format("cloud '{}' has no absolute log_dir; set log_dir to a directory that this "
                                          "machine and the cluster's nodes share",
                                          cloud_.name));
    }
    auto client = open_client();
    if (!client) return client.error();
    std::error_code ec;
    if ((*client)->local_files()) std::filesystem::create_directories(slurm().log_dir, ec);
    if (ec) {
      return util::make_error(ExitCode::backend, fmt::format("cannot create the log directory {} of cloud '{}': {}; check "
                                                             "log_dir in the config",
                                                             slurm().log_dir, cloud_.name, ec.message()));
    }
    NewRun fresh;
    fresh.app = spec.app;
    fresh.function = spec.function;
    fresh.cloud = spec.cloud;
    fresh.backend = "slurm";
    fresh.gpus = spec.gpu_text;
    fresh.spec_json = with_records_marker(to_json(spec));
    fresh.log_dir = slurm().log_dir;
    fresh.status_reason = fmt::format("submitting to {}", cloud_.name);
    auto created = store.create_run(fresh);
    if (!created) return created.error();
    Run run = created->run;
    created->lock.release();
    auto submitted = submit(**client, store, run, spec, secrets, 0);
    if (!submitted) {
      // Best effort: the submit error returned is what the user needs to see.
      (void)store.update_status(run.id, RunStatus::failed, submitted.error().message, util::to_int(submitted.error().code));
      return submitted.error();
    }
    auto fresh_run = store.get_run(run.id);
    if (!fresh_run) return fresh_run.error();
    return *fresh_run;
  }

  util::Result<std::string> dry_run(const RunSpec& spec, const SecretValues& secrets) override {
    auto job = slurm_job_for(cloud_, spec, "DRYRUN", secrets, 0);
    if (!job) return job.error();
    for (const auto& [name, values] : secrets) {
      for (const auto& [k, v] : values) job->environment[k] = "***";
    }
    for (const char* login : {"GPURUN_REGISTRY_PASSWORD", "APPTAINER_DOCKER_PASSWORD"}) {
      if (job->environment.count(login) != 0) job->environment[login] = "***";
    }
    if (slurm().transport != "rest") return command_dry_run(*job);
    auto dialect = slurm::dialect_for(slurm().api_version);
    if (!dialect) return dialect.error();
    const auto body = nlohmann::json::parse((*dialect)->submit_body(*job));
    std::string out = fmt::format("# POST {}{} (cloud {})\n", slurm().endpoint, (*dialect)->path("/job/submit"), cloud_.name);
    out += "# --- batch script ---\n" + job->script;
    nlohmann::json request = body;
    request["script"] = "<the batch script above>";
    out += "# --- request ---\n" + request.dump(2) + "\n";
    return out;
  }

  util::Result<void> cancel(StateStore& store, const Run& run) override {
    auto remote = parse_remote_id(run.remote_id);
    if (remote) {
      auto client = open_client();
      if (!client) return client.error();
      const long long ids[] = {remote->job_id};
      auto outcome = (*client)->cancel(ids);
      if (!outcome) return outcome.error();
    }
    auto updated = store.update_status(run.id, RunStatus::cancelled, "cancelled", util::to_int(ExitCode::cancelled));
    if (!updated) return updated.error();
    return {};
  }

  // The state writes here ((void) below) cache what Slurm says: one that fails is made again by
  // the next refresh, and the get_run at the end reports a database that cannot be used.
  util::Result<Run> refresh(StateStore& store, const Run& run) override {
    if (is_terminal(run.status)) return run;
    auto remote = parse_remote_id(run.remote_id);
    if (!remote) return run;  // still being submitted
    auto transport = open_client();
    if (!transport) return transport.error();
    const long long ids[] = {remote->job_id};
    auto jobs = (*transport)->jobs(ids);
    if (!jobs) return jobs.error();
    return refresh_from(**transport, store, run, *jobs);
  }

  // refresh() with the status of the cluster's jobs already read (`jobs`: those Slurm knows).
  util::Result<Run> refresh_from(slurm::Transport& transport, StateStore& store, const Run& run,
                                 const std::map<long long, slurm::JobInfo>& all_jobs) {
    if (is_terminal(run.status)) return run;
    auto remote = parse_remote_id(run.remote_id);
    if (!remote) return run;  // still being submitted
    slurm::Transport* client = &transport;
    const long long ids[] = {remote->job_id};
    const auto* jobs = &all_jobs;
    auto spec = run_spec_from_json(run.spec_json);
    const std::string exit_path = slurm::run_exit_path(run.log_dir, run.id);
    const auto found = jobs->find(remote->job_id);
    if (found == jobs->end()) {
      // Slurm forgot the job (MinJobAge after its end): its exit file tells how it ended.
      if (auto code = read_exit_file(*client, exit_path)) {
        if (*code == 0) {
          (void)store.update_status(run.id, RunStatus::succeeded, "", 0);
        } else {
          (void)store.update_status(run.id, RunStatus::failed, fmt::format("failed with exit code {}", *code), *code);
        }
      } else {
        (void)store.update_status(run.id, RunStatus::lost,
                                  fmt::format("Slurm no longer knows job {} and it left no exit code in {}",
                                              remote->job_id, run.log_dir),
                                  util::to_int(ExitCode::backend));
      }
      return store.get_run(run.id);
    }
    const slurm::JobInfo& info = found->second;
    const int attempt = remote->offset + info.restart_cnt + 1;
    if (attempt != run.attempt) (void)store.set_attempt(run.id, attempt);
    const auto view = slurm::map_state(info);
    const std::string what = spec ? wanted(*spec) : std::string("a node");
    switch (view.status) {
      case slurm::JobStatus::queued: {
        const bool pending = util::to_upper(info.state) == "PENDING";
        if (pending && end_unschedulable(*client, store, run, info)) break;
        const std::string words = pending ? pending_words(*client, info, run, spec ? &*spec : nullptr, *remote) : view.reason;
        std::string reason = fmt::format("waiting for {} on {}: {}", what, run.cloud, words);
        if (info.restart_cnt > 0) reason += fmt::format(" (requeued, attempt {})", attempt);
        if (reason != run.status_reason || run.status != RunStatus::queued) {
          (void)store.update_status(run.id, RunStatus::queued, reason);
        }
        break;
      }
      case slurm::JobStatus::preempted:
        (void)store.update_status(run.id, RunStatus::queued,
                                  fmt::format("{} on {}; Slurm requeues it (attempt {})", view.reason, run.cloud, attempt + 1));
        break;
      case slurm::JobStatus::running: {
        if (run.status != RunStatus::running) {
          (void)store.update_status(run.id, RunStatus::running, "");
          if (!info.gres_detail.empty()) (void)store.set_gpus(run.id, util::join(info.gres_detail, ","));
        }
        if (spec && spec->timeout && info.start_time) {
          const auto elapsed_ms = util::now_unix_ms() - *info.start_time * 1000;
          if (elapsed_ms >= spec->timeout->count() + 1000) {
            (void)client->cancel(ids);  // the next refresh cancels again if this one failed
            timed_out(*client, store, run, *spec, *remote, attempt);
          }
        }
        break;
      }
      case slurm::JobStatus::succeeded:
        (void)store.update_status(run.id, RunStatus::succeeded, "", 0);
        break;
      case slurm::JobStatus::failed: {
        int code = info.exit_code.value_or(1);
        if (info.exit_signal) code = 128 + *info.exit_signal;
        if (auto file = read_exit_file(*client, exit_path); file && info.state == "FAILED") code = *file;
        std::string reason = view.reason.empty() ? fmt::format("failed with exit code {}", code) : view.reason;
        if (info.state == "FAILED" && !info.exit_signal) reason = fmt::format("failed with exit code {}", code);
        const std::string cause = info.state == "FAILED" && !info.exit_signal ? fmt::format("exit code {}", code) : reason;
        if (spec && retry(*client, store, run, *spec, *remote, attempt, reason, cause)) break;
        (void)store.update_status(run.id, RunStatus::failed, reason, code);
        break;
      }
      case slurm::JobStatus::cancelled:
        if (spec && cancelled_at_timeout(*spec, info)) {
          timed_out(*client, store, run, *spec, *remote, attempt);
          break;
        }
        (void)store.update_status(run.id, RunStatus::cancelled,
                                  view.reason.empty() ? "cancelled in Slurm" : "cancelled in Slurm; " + view.reason,
                                  util::to_int(ExitCode::cancelled));
        break;
      case slurm::JobStatus::timeout:
        if (spec && spec->timeout) {
          timed_out(*client, store, run, *spec, *remote, attempt);
          break;
        }
        (void)store.update_status(run.id, RunStatus::timeout, view.reason, util::to_int(ExitCode::timeout));
        break;
      case slurm::JobStatus::unknown:
        break;
    }
    return store.get_run(run.id);
  }

  // The job id part of the recorded remote id ("JOBID+OFFSET+RETRIES"); none while submitting.
  // Free/total per GPU type the cloud offers, from the partition's nodes (one nodes request).
  util::Result<Capacity> capacity(StateStore& /*store*/) override {
    auto client = open_client();
    if (!client) return client.error();
    auto nodes = (*client)->nodes();
    if (!nodes) return nodes.error();
    Capacity capacity{true, {}, fmt::format("Slurm node states of partition {}", slurm().partition)};
    for (const auto& offer : cloud_.gpus) {
      const auto counted = slurm::gpu_capacity(*nodes, slurm_partition(cloud_, offer.type),
                                               slurm_gres_type(cloud_, offer.type, offer.memory_gb));
      if (!counted) continue;
      capacity.gpus.push_back({offer.type, offer.memory_gb, static_cast<int>(counted->total - counted->used),
                               static_cast<int>(counted->total)});
    }
    return capacity;
  }

  std::string remote_id(const Run& run) const override {
    const auto remote = parse_remote_id(run.remote_id);
    return remote ? std::to_string(remote->job_id) : std::string();
  }

  // The run's log, exit file and Slurm output under log_dir, besides its run dir.
  std::vector<std::string> run_files(const StateStore& store, const Run& run) const override {
    const std::string dir = run.log_dir.empty() ? slurm().log_dir : run.log_dir;
    return {run_dir(store.dir(), run.id), slurm::run_log_path(dir, run.id), slurm::run_exit_path(dir, run.id),
            slurm::slurm_output_path(dir, run.id)};
  }

  // The run's log under log_dir: records written by node-exec, or Slurm's plain output for a run
  // launched before every run went through node-exec (no records marker in its spec).
  // With `transport: ssh` the file is read on the cluster, over SSH, by offset.
  util::Result<LogSource> open_log(const StateStore& /*store*/, const Run& run) const override {
    const std::string path = slurm::run_log_path(run.log_dir.empty() ? slurm().log_dir : run.log_dir, run.id);
    const LogFormat format = has_records_marker(run.spec_json) ? LogFormat::records : LogFormat::plain;
    if (slurm().transport != "ssh") return LogSource{file_log_bytes(path), format};
    auto transport = open_client();
    if (!transport) return transport.error();
    return LogSource{std::make_unique<TransportLogBytes>(std::shared_ptr<slurm::Transport>(std::move(*transport)), path,
                                                         slurm().ssh.host),
                     format};
  }

  // One status request (squeue --json on cli and ssh) for every run's job.
  util::Result<std::vector<Run>> refresh_many(StateStore& store, std::span<const Run> runs) override {
    std::vector<long long> ids;
    for (const auto& run : runs) {
      if (is_terminal(run.status)) continue;
      if (auto remote = parse_remote_id(run.remote_id)) ids.push_back(remote->job_id);
    }
    std::vector<Run> out;
    if (ids.empty()) {
      out.assign(runs.begin(), runs.end());
      return out;
    }
    auto transport = open_client();
    if (!transport) return transport.error();
    auto jobs = (*transport)->jobs(ids);
    if (!jobs) return jobs.error();
    for (const auto& run : runs) {
      auto fresh = refresh_from(**transport, store, run, *jobs);
      if (!fresh) return fresh.error();
      out.push_back(std::move(*fresh));
    }
    return out;
  }

 private:
  // What `transport: cli|ssh` runs: sbatch's command line, the script on its stdin, the environment
  // it passes (values already redacted by the caller).
  std::string command_dry_run(const slurm::JobSubmit& job) const {
    std::vector<std::string> words;
    for (const auto& a : slurm::sbatch_arguments(job)) words.push_back(util::shell_quote(a));
    std::string out = fmt::format("# sbatch {} (cloud {}, transport {}{})\n", util::join(words, " "), cloud_.name, slurm().transport,
                                  slurm().transport == "ssh" ? " to " + slurm().ssh.host : "");
    out += "# --- batch script (sbatch's stdin) ---\n" + job.script;
    out += "# --- environment ---\n";
    for (const auto& [k, v] : job.environment) out += k + "=" + util::shell_quote(v) + "\n";
    return out;
  }

  // The cloud as the job sees it: for ssh without node_gpurun, gpurun copied onto the cluster's
  // shared filesystem (<log_dir>/bin). Where it is stays in <state>/slurm-ssh/<cloud>.gpurun,
  // keyed by this binary's size and mtime, so a submit costs no extra round trip.
  util::Result<CloudConfig> node_cloud(const std::string& state_dir) {
    if (slurm().transport != "ssh" || !slurm().node_gpurun.empty()) return cloud_;
    const std::string cache = fmt::format("{}/slurm-ssh/{}.gpurun", state_dir, cloud_.name);
    const std::string key = binary_key();
    if (remote_gpurun_.empty()) {
      std::ifstream in(cache);
      std::string cached_key, cached_host, cached_path;
      if (std::getline(in, cached_key) && std::getline(in, cached_host) && std::getline(in, cached_path) &&
          cached_key == key && cached_host == slurm().ssh.host + " " + slurm().log_dir) {
        remote_gpurun_ = cached_path;
      }
    }
    if (remote_gpurun_.empty()) {
      auto client = SshClient::open(slurm().ssh);
      if (!client) return client.error();
      RemoteGpurunOptions options;
      options.directory = slurm().log_dir + "/bin";
      options.setting = "node_gpurun";
      auto remote = ensure_remote_gpurun(*client, options);
      if (!remote) return remote.error();
      remote_gpurun_ = remote->path;
      std::error_code ec;
      std::filesystem::create_directories(std::filesystem::path(cache).parent_path(), ec);
      std::ofstream out(cache, std::ios::trunc);
      out << key << "\n" << slurm().ssh.host << " " << slurm().log_dir << "\n" << remote_gpurun_ << "\n";  // best effort
    }
    CloudConfig cloud = cloud_;
    auto settings = std::make_shared<SlurmSettings>(slurm());
    settings->node_gpurun = remote_gpurun_;
    cloud.settings = settings;
    return cloud;
  }

  // Forgets where gpurun's copy on the cluster is (it was deleted there): the next node_cloud
  // checks and uploads it again.
  void forget_remote_gpurun(const std::string& state_dir) {
    remote_gpurun_.clear();
    std::error_code ec;
    std::filesystem::remove(fmt::format("{}/slurm-ssh/{}.gpurun", state_dir, cloud_.name), ec);
  }

  // This binary's identity for the cache above: path, size and mtime.
  static std::string binary_key() {
    const std::string self = self_executable();
    std::error_code ec;
    const auto size = std::filesystem::file_size(self, ec);
    const auto mtime = std::filesystem::last_write_time(self, ec).time_since_epoch().count();
    return fmt::format("{} {} {}", self, ec ? 0 : size, ec ? 0 : mtime);
  }

  // The cloud's transport (rest, cli or ssh).
  util::Result<std::unique_ptr<slurm::Transport>> open_client() const {
    slurm::TransportOptions options;
    options.transport = slurm().transport;
    options.endpoint = slurm().endpoint;
    options.api_version = slurm().api_version;
    options.user = slurm().user;
    options.token_env = slurm().token_env;
    options.cloud = cloud_.name;
    options.ssh = slurm().ssh;
    if (!slurm().node_gpurun.empty()) options.ssh.gpurun_path = slurm().node_gpurun;
    return slurm::open_transport(options);
  }

  // What a run waits for, as every backend says it: "1x A100-40GB" (the slot placement chose),
  // "a node" without GPUs.
  static std::string wanted(const RunSpec& spec) {
    if (spec.gpu_alternatives.empty()) return "a node";
    const auto& a = spec.gpu_alternatives.front();
    if (a.type.empty()) return fmt::format("{}x any GPU", a.count);
    return fmt::format("{}x {}", a.count, gpu::to_string(gpu::GpuSlot{a.type, a.min_memory_gb, 1}));
  }

  // A pending job's reason in words: capacity from the cluster's nodes for Resources/Priority,
  // the scheduled retry for BeginTime after a resubmission.
  std::string pending_words(slurm::Transport& client, const slurm::JobInfo& info, const Run& run,
                            const RunSpec* spec, const RemoteId& remote) const {
    const std::string& raw = info.state_reason;
    std::optional<slurm::GpuCapacity> capacity;
    long needed = 1;
    if (spec && !spec->gpu_alternatives.empty()) {
      const auto& a = spec->gpu_alternatives.front();
      needed = a.count;
      if (raw == "Resources" || raw == "Priority") {
        // Best effort: without the node list the reason is said without capacity.
        if (auto nodes = client.nodes()) {
          capacity = slurm::gpu_capacity(*nodes, info.partition.empty() ? slurm().partition : info.partition,
                                         slurm_gres_type(cloud_, a.type, a.min_memory_gb));
        }
      }
    }
    std::optional<slurm::ScheduledRetry> retry;
    if (raw == "BeginTime" && remote.retries > 0 && info.restart_cnt == 0 && spec) {  // not a requeue
      // The delay as scheduled (not a countdown, so the reason stays put while it waits).
      const long long delay = info.eligible_time && info.submit_time ? *info.eligible_time - *info.submit_time : 0;
      retry = slurm::ScheduledRetry{remote.retries, spec->max_retries, delay, retry_cause(run.status_reason)};
    }
    return slurm::describe_pending(raw, capacity, retry, needed);
  }

  // A pending job whose reason never clears (it asks for more than its partition or QOS allows,
  // or for nodes the cluster does not have): cancelled, the run ends unschedulable with the reason
  // in words. False (nothing done) for every other job.
  bool end_unschedulable(slurm::Transport& client, StateStore& store, const Run& run, const slurm::JobInfo& info) const {
    const std::string& raw = info.state_reason;
    bool missing_nodes = false;
    std::string phrase = slurm::pending_reason_phrase(raw);
    if (raw == "ReqNodeNotAvail") {
      const auto wanted_nodes = slurm::unavailable_nodes(info.state_description);
      auto nodes = wanted_nodes.empty() ? util::Result<std::vector<slurm::NodeInfo>>(std::vector<slurm::NodeInfo>{}) : client.nodes();
      if (!nodes || wanted_nodes.empty()) return false;
      std::vector<std::string> absent;
      for (const auto& name : wanted_nodes) {
        const bool known = std::any_of(nodes->begin(), nodes->end(), [&](const slurm::NodeInfo& n) { return n.name == name; });
        if (!known) absent.push_back(name);
      }
      missing_nodes = !absent.empty();
      phrase = fmt::format("it needs node {}, which the cluster does not have", util::join(absent, ", "));
    }
    if (!slurm::never_satisfiable(raw, missing_nodes)) return false;
    const long long ids[] = {info.job_id};
    if (auto cancelled = client.cancel(ids); !cancelled) return false;  // the next refresh tries again
    (void)store.update_status(run.id, RunStatus::failed,
                              fmt::format("Slurm can never start it on {}: {} ({})", run.cloud, phrase, raw),
                              util::to_int(ExitCode::unschedulable));
    return true;
  }

  // Whether a cancelled job is one gpurun cancelled at the run's timeout (it ran past it).
  static bool cancelled_at_timeout(const RunSpec& spec, const slurm::JobInfo& info) {
    if (!spec.timeout || !info.start_time || !info.end_time) return false;
    return (*info.end_time - *info.start_time) * 1000 >= spec.timeout->count();
  }

  // An attempt ran past the manifest's timeout (its job is cancelled or ended): resubmitted with
  // the backoff while retries are left, else the run ends `timeout` (exit 124).
  void timed_out(slurm::Transport& client, StateStore& store, const Run& run, const RunSpec& spec, const RemoteId& remote,
                 int attempt) {
    const std::string reason = fmt::format("timed out after {}", util::format_duration(*spec.timeout));
    const std::string cause = "timing out after " + util::format_duration(*spec.timeout);
    if (retry(client, store, run, spec, remote, attempt, reason, cause)) return;
    (void)store.update_status(run.id, RunStatus::timeout, reason, util::to_int(ExitCode::timeout));
  }

  util::Result<void> submit(slurm::Transport& client, StateStore& store, const Run& run, const RunSpec& spec,
                            const SecretValues& secrets, int offset) {
    auto id = submit_attempt(client, store.dir(), spec, run.id, secrets, offset, std::chrono::milliseconds(0));
    if (!id) return id.error();
    if (auto set = store.set_remote_id(run.id, format_remote_id(*id, offset, 0)); !set) return set.error();
    const std::string what = wanted(spec);
    // Only the reason text: the remote id recorded above is what later refreshes need.
    (void)store.update_status(run.id, RunStatus::queued, fmt::format("waiting for {} on {}: submitted as job {}", what, cloud_.name, *id));
    return {};
  }

  // A failed or timed-out attempt with retries left: resubmits the run with the next attempt
  // number, starting after the manifest's backoff (Slurm's begin_time); `why` ends the run if that
  // fails, `cause` is said in the waiting reason. Returns false when it did not retry. It runs
  // inside refresh, which has no one to report to: its state writes are best effort as there.
  bool retry(slurm::Transport& client, StateStore& store, const Run& run, const RunSpec& spec, const RemoteId& remote,
             int failed_attempt, const std::string& why, const std::string& cause) {
    if (!config_ || remote.retries >= spec.max_retries) return false;
    const std::string claim = "claim:" + run.remote_id;
    auto claimed = store.replace_remote_id(run.id, run.remote_id, claim);
    if (!claimed || !*claimed) return true;  // another process is resubmitting it
    auto secrets = retry_secrets(run, spec);
    if (!secrets) {
      (void)store.update_status(run.id, RunStatus::lost, why + "; " + secrets.error().message, util::to_int(ExitCode::backend));
      return true;
    }
    const int retries = remote.retries + 1;
    const auto delay = retry_delay(spec, retries);
    auto id = submit_attempt(client, store.dir(), spec, run.id, *secrets, failed_attempt, delay);
    if (!id) {
      (void)store.update_status(run.id, RunStatus::failed, why + "; resubmitting failed: " + id.error().message,
                                util::to_int(id.error().code));
      return true;
    }
    (void)store.set_remote_id(run.id, format_remote_id(*id, failed_attempt, retries));
    (void)store.set_attempt(run.id, failed_attempt + 1);
    (void)store.update_status(run.id, RunStatus::queued,
                              fmt::format("waiting for {} on {}: retry {} of {} in {} (after {})", wanted(spec), cloud_.name,
                                          retries, spec.max_retries, util::format_duration(delay), cause));
    return true;
  }

  // Builds and submits one attempt's job, to start no earlier than `delay` from now. Over ssh, a
  // submit refused because gpurun's cached copy on the cluster is gone installs it again once.
  util::Result<long long> submit_attempt(slurm::Transport& client, const std::string& state_dir, const RunSpec& spec,
                                         const std::string& run_id, const SecretValues& secrets, int offset,
                                         std::chrono::milliseconds delay) {
    for (int tries = 0;; ++tries) {
      auto cloud = node_cloud(state_dir);
      if (!cloud) return cloud.error();
      auto job = slurm_job_for(*cloud, spec, run_id, secrets, offset);
      if (!job) return job.error();
      job->runner = remote_gpurun_;  // only gpurun's own copy: a configured node_gpurun may live on the nodes only
      // Slurm counts "now+N" from its clock's whole second, up to 1 s before the real now: one second
      // more makes the attempt start no earlier than the manifest's backoff (and at most 1 s after it).
      const auto delay_s = (delay.count() + 999) / 1000;
      if (delay_s > 0) job->extra["begin_time"] = fmt::format("now+{}", delay_s + 1);
      auto id = client.submit(*job);
      if (id || tries > 0 || !slurm::is_runner_missing(id.error()) || remote_gpurun_.empty()) return id;
      forget_remote_gpurun(state_dir);
    }
  }

  // The secret values a resubmission gets: the monitor's (secret_lookup_), else the config's
  // and this process's GPURUN_SECRET_* variables. An error names the secrets nobody has.
  util::Result<SecretValues> retry_secrets(const Run& run, const RunSpec& spec) const {
    if (secret_lookup_) {
      if (auto known = secret_lookup_(run)) return *known;
      if (spec.secrets.empty()) return SecretValues{};
      return util::make_error(ExitCode::backend,
                              fmt::format("the retry needs the values of secret{} {}, which the run monitor no longer has "
                                          "(it was restarted); run it again",
                                          spec.secrets.size() == 1 ? "" : "s", util::join_list(spec.secrets)));
    }
    SecretValues secrets;
    const auto environ_entries = process_environment();
    for (const auto& name : spec.secrets) secrets.emplace_back(name, secret_values(*config_, name, environ_entries));
    return secrets;
  }

  const SlurmSettings& slurm() const { return slurm_settings(cloud_); }

  CloudConfig cloud_;
  std::optional<Config> config_;
  std::string remote_gpurun_;  // ssh: gpurun's path on the cluster, once known
};

}  // namespace

util::Result<slurm::JobSubmit> slurm_job_for(const CloudConfig& cloud, const RunSpec& spec, const std::string& run_id,
                                             const SecretValues& secrets, int attempt_offset) {
  const SlurmSettings& settings = slurm_settings(cloud);
  slurm::JobSubmit job;
  job.name = fmt::format("gpurun-{}-{}", spec.app, spec.function);
  job.partition = settings.partition;
  if (!spec.gpu_alternatives.empty()) {
    const auto& a = spec.gpu_alternatives.front();
    job.partition = slurm_partition(cloud, a.type);
    if (a.type.empty()) {
      job.gres = fmt::format("gpu:{}", a.count);
    } else {
      job.gres = fmt::format("gpu:{}:{}", slurm_gres_type(cloud, a.type, a.min_memory_gb), a.count);
    }
  }
  if (spec.timeout) {
    const long long ms = spec.timeout->count();
    job.time_limit_minutes = std::max<long>(1, static_cast<long>((ms + 59'999) / 60'000));
    const long grace = std::max<long>(10, static_cast<long>(spec.kill_grace.count() / 1000));
    job.signal = fmt::format("TERM@{}", grace);
  }
  // The function's cpu and memory, rounded up to whole cores and MiB (--cpus-per-task, --mem).
  if (spec.cpu) job.cpus_per_task = static_cast<int>(std::ceil(*spec.cpu));
  if (spec.memory_bytes) job.memory_per_node_mb = static_cast<long>((*spec.memory_bytes + (1ULL << 20) - 1) >> 20);
  job.current_working_directory = spec.cwd;
  job.account = settings.account;
  job.qos = settings.qos;
  job.constraint = settings.constraint;
  job.extra = extra_fields(settings.sbatch_options);

  std::map<std::string, std::string> environment;
  for (const char* name : {"PATH", "HOME", "USER", "LANG", "LC_ALL", "TZ"}) {
    if (const char* value = std::getenv(name); value != nullptr) environment[name] = value;
  }
  slurm::BatchScript script;
  for (const auto& [k, v] : spec.env) {
    environment[k] = v;
    script.env_names.push_back(k);
  }
  environment["GPURUN_APP"] = spec.app;
  environment["GPURUN_FUNCTION"] = spec.function;
  std::vector<std::string> masked;  // node-exec masks these variables' values in the log
  for (const auto& [name, values] : secrets) {
    for (const auto& [k, v] : values) {
      environment[k] = v;
      masked.push_back(k);
    }
  }
  script.argv = spec.argv;
  if (!spec.image.empty()) {
    if (spec.image_registry.empty() || spec.image_repository.empty() || spec.image_digest.empty()) {
      return util::make_error(ExitCode::usage, fmt::format("function '{}' runs in image '{}', which is not in the registry of "
                                                           "cloud '{}'; run 'gpurun deploy' first",
                                                           spec.function, spec.image, cloud.name));
    }
    slurm::ImageRun image;
    image.runtime = settings.container_runtime;
    image.registry = spec.image_registry;
    image.repository = spec.image_repository;
    image.digest = spec.image_digest;
    image.tag = registry::default_tags(spec.image_digest, "").front();
    image.cache_dir = settings.image_cache;
    image.workdir = spec.image_workdir;
    image.gpus = !spec.gpu_alternatives.empty();
    script.image = image;
    std::vector<std::string> pass = script.env_names;
    for (const auto& [name, values] : secrets) {
      for (const auto& [k, v] : values) pass.push_back(k);
    }
    environment[pass_env_variable] = util::join(pass, ",");
    if (auto login = registry::find_credentials(spec.image_registry)) {
      const bool apptainer = image.runtime == "apptainer";
      environment[apptainer ? "APPTAINER_DOCKER_USERNAME" : "GPURUN_REGISTRY_USER"] = login->username;
      environment[apptainer ? "APPTAINER_DOCKER_PASSWORD" : "GPURUN_REGISTRY_PASSWORD"] = login->password;
      masked.push_back(apptainer ? "APPTAINER_DOCKER_PASSWORD" : "GPURUN_REGISTRY_PASSWORD");
    }
  }
  if (!masked.empty()) environment[mask_env_variable] = util::join(masked, ",");
  script.gpurun = settings.node_gpurun.empty() ? self_executable() : settings.node_gpurun;
  for (const auto& m : spec.mounts) {
    script.binds.emplace_back(m.host_path, m.path);
    job.directories.push_back(m.host_path);
  }
  script.log_dir = settings.log_dir;
  script.run_id = run_id;
  script.attempt_offset = attempt_offset;
  if (auto prepared = slurm::prepare_job(job, script, environment); !prepared) return prepared.error();
  return job;
}

util::Result<std::unique_ptr<Backend>> make_slurm_backend(const CloudConfig* cloud, const Config* config) {
  if (cloud == nullptr || cloud->backend != "slurm") {
    return util::make_error(ExitCode::usage, "the slurm backend needs a cloud with 'backend: slurm' in the config");
  }
  return std::unique_ptr<Backend>(new SlurmBackend(*cloud, config ? std::optional<Config>(*config) : std::nullopt));
}

}  // namespace gpurun::cloud
