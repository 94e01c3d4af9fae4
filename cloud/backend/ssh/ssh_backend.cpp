#include "cloud/backend/ssh/ssh_backend.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>
#include <nlohmann/json.hpp>
#include <algorithm>
#include <chrono>
#include <map>
#include <span>
#include <optional>

#include "cloud/backend/ssh/ssh_hosts.hpp"
#include "cloud/backend/ssh/ssh_settings.hpp"
#include "cloud/images/image_store.hpp"
#include "cloud/images/push.hpp"
#include "cloud/images/registry.hpp"
#include "cloud/ssh/directory_sync.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

using util::ExitCode;

// The local copy of a run's log, locked (flock) while open: one process at a time appends to it.
class LocalLogCopy {
 public:
  explicit LocalLogCopy(const std::string& path)
      : path_(path), fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) {
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  LocalLogCopy(const LocalLogCopy&) = delete;
  LocalLogCopy& operator=(const LocalLogCopy&) = delete;
  ~LocalLogCopy() {
    if (fd_ >= 0) ::close(fd_);
  }
  bool ok() const { return fd_ >= 0; }
  // Bytes copied so far.
  std::uint64_t size() const {
    struct stat info {};
    return ::fstat(fd_, &info) == 0 ? static_cast<std::uint64_t>(info.st_size) : 0;
  }
  // Appends `bytes`.
  util::Result<void> append(const std::string& bytes) {
    std::size_t done = 0;
    while (done < bytes.size()) {
      const auto n = ::write(fd_, bytes.data() + done, bytes.size() - done);
      if (n <= 0) return util::make_error(ExitCode::backend, fmt::format("cannot write {}: {}", path_, std::strerror(errno)));
      done += static_cast<std::size_t>(n);
    }
    return {};
  }

 private:
  std::string path_;
  int fd_ = -1;
};

// Copies what the host's log of remote run `id` has beyond the local copy at `path` (locked: one
// process at a time; best effort, the next call catches up).
void pull_log_copy(HostConnection& host, const std::string& id, const std::string& path) {
  LocalLogCopy copy(path);
  if (!copy.ok()) return;
  auto bytes = host.read_log(id, copy.size());
  if (bytes && !bytes->empty()) (void)copy.append(*bytes);
}

// A run's log for readers: the local copy, topped up from the host's log (one SSH round trip,
// at most every 200 ms) when a read reaches its end while the run may still write.
class SshLogBytes final : public LogBytes {
 public:
  SshLogBytes(const SshHost& host, std::string remote_run, std::string local_path, bool complete)
      : host_(host), remote_run_(std::move(remote_run)), local_path_(local_path), local_(file_log_bytes(std::move(local_path))),
        complete_(complete) {}

  util::Result<std::size_t> read(std::uint64_t offset, char* out, std::size_t max) override {
    auto got = local_->read(offset, out, max);
    if (!got || *got > 0 || complete_ || !pull()) return got;
    return local_->read(offset, out, max);
  }
  util::Result<std::uint64_t> size() override {
    if (!complete_) pull();
    return local_->size();
  }
  std::string describe() const override {
    return fmt::format("{}:{}/runs/{}/log", host_.label(), host_.host().lease_dir, remote_run_);
  }

 private:
  // Tops up the local copy unless that was done in the last 200 ms; true when it was.
  bool pull() {
    const auto now = std::chrono::steady_clock::now();
    if (pulled_ && now - *pulled_ < std::chrono::milliseconds(200)) return false;
    pulled_ = now;
    pull_log_copy(host_, remote_run_, local_path_);
    return true;
  }

  HostConnection host_;
  std::string remote_run_;
  std::string local_path_;
  std::unique_ptr<LogBytes> local_;
  bool complete_;
  std::optional<std::chrono::steady_clock::time_point> pulled_;
};

class SshBackend final : public Backend {
 public:
  SshBackend(CloudConfig cloud, const SshCloudSettings& settings, gpu::Catalog catalog)
      : cloud_(std::move(cloud)), catalog_(std::move(catalog)), hosts_(cloud_.name, settings, catalog_) {}

  std::string_view name() const override { return "ssh"; }
  bool remote() const override { return true; }

  // A volume lives on the host that first ran a function that mounts it, recorded as
  // "HOST[:PORT]:PATH" (PATH under that host's lease dir): made at that run, not at deploy.
  util::Result<std::string> volume_path(const std::string& /*state_dir*/, const std::string& /*app*/,
                                        const std::string& /*volume*/) const override {
    return std::string();
  }

  bool reaches_volume(const std::string& /*state_dir*/, const Volume& volume) const override {
    return volume.cloud == cloud_.name && volume_host(volume).has_value();
  }

  // The GPUs of hosts without declared ones: as cached when found within the hour, else asked
  // from the host's gpurun now (and cached). A host with none, or that cannot be asked, says so.
  util::Result<DiscoveredOffers> discover_offers() override {
    DiscoveredOffers found;
    found.note = "declared, and found on its hosts without gpus:";
    for (auto* host : hosts_.all()) {
      if (!host->host().discover) continue;
      if (!host->load_found_gpus(catalog_)) {
        auto notes = host->find_gpus(catalog_);
        if (!notes) {
          found.skipped.push_back(fmt::format("host {}: its GPUs are unknown ({}); it offers {} until it answers", host->label(),
                                              notes.error().message,
                                              host->host().gpus.empty() ? std::string("none") : "what it had last"));
        } else if (host->host().gpus.empty()) {
          found.skipped.push_back(fmt::format("host {} has no GPU{}; it runs only functions without one", host->label(),
                                              notes->empty() ? "" : " (" + util::join(*notes, "; ") + ")"));
        }
      }
      for (const auto& slot : host->host().gpus) add_offer(found.offers, slot);
    }
    return found;
  }

  // "hosts: A, B": the hosts that can serve `placed` (all for CPU only), or the one that holds a
  // volume it mounts.
  std::string plan_note(const PlacedFunction& placed, const std::vector<Volume>& volumes) const override {
    for (const auto& v : volumes) {
      if (std::find(placed.volumes.begin(), placed.volumes.end(), v.name) == placed.volumes.end()) continue;
      if (auto host = volume_host(v)) return fmt::format("host: {}, which holds volume '{}'", (*host)->label(), v.name);
    }
    std::vector<LeaseAlternative> wanted;
    if (placed.gpu) wanted.push_back({placed.gpu->type, placed.gpu->memory_gb, placed.gpu->count, placed.gpu->memory_gb});
    std::vector<std::string> labels;
    for (auto* host : hosts_.all()) {
      if (host->can_serve(wanted)) labels.push_back(host->label());
    }
    return labels.empty() ? std::string("no host has it") : "hosts: " + util::join(labels, ", ");
  }

  std::string volume_note(const std::string& /*name*/, const std::optional<Volume>& existing) const override {
    if (!existing) return "made on the host that first runs a function that mounts it";
    auto host = volume_host(*existing);
    if (!host) return fmt::format("at {}, on no host of cloud '{}' now", existing->path, cloud_.name);
    return fmt::format("on host {}", (*host)->label());
  }

  // The run goes to the host that holds the volume (or, for a new one, to the host chosen for the
  // run), where the host's gpurun makes it; with ctx.dry_run no host is asked.
  util::Result<std::string> prepare_volume(PrepareContext& ctx, const RunSpec& spec, const std::string& volume,
                                           const std::optional<Volume>& existing) override {
    if (ctx.dry_run) return existing ? existing->path : std::string();
    if (auto pinned = pin_to_volumes(ctx, spec); !pinned) return pinned.error();
    if (auto chosen = choose_host(ctx, spec); !chosen) return chosen.error();
    auto made = chosen_->host->make_volume(spec.app, volume);
    if (!made) return made.error();
    return fmt::format("{}:{}", chosen_->host->label(), *made);
  }

  // Picks the host (said on stderr with the reason), unless a volume pinned it already; an image
  // is built here and its blobs the host lacks are sent into its image cache (host-run unpacks it
  // there). With ctx.dry_run no host is asked (asking may copy gpurun there).
  util::Result<void> prepare_image(PrepareContext& ctx, const PlacedFunction& /*placed*/, RunSpec& spec) override {
    if (!ctx.dry_run) {
      if (auto chosen = choose_host(ctx, spec); !chosen) return chosen.error();
    }
    if (spec.image.empty()) return {};
    const auto* image = ctx.manifest.find_image(spec.image);
    if (image == nullptr) {
      return util::make_error(ExitCode::usage, fmt::format("function '{}': image '{}' is not defined", spec.function, spec.image));
    }
    const std::string store_dir = image_store_dir(ctx.store.dir());
    auto built = build_image(ctx.manifest, *image, store_dir);
    if (!built) return built.error();
    for (const auto& w : built->warnings) {
      if (ctx.warn) ctx.warn(fmt::format("image '{}': {}", spec.image, w));
    }
    spec.image_digest = built->digest;
    spec.image_env = built->env;
    spec.image_workdir = built->workdir;
    spec.cwd = built->workdir;
    spec.image_repository = cloud_.registry.empty() ? built->name : image_repository(ctx.manifest.app, image->name);
    spec.image_registry = cloud_.registry;
    if (ctx.dry_run) return {};
    if (!cloud_.registry.empty()) return push_once(ctx, *built, spec.image_repository);
    if (auto fetched = fetch_base_layers(*built, store_dir); !fetched) return fetched.error();
    auto sent = chosen_->host->send_image(store_dir, *built);
    if (!sent) return sent.error();
    return {};
  }

  // Images go to the cloud's registry when it names one, else over SSH: always possible.
  util::Result<void> check_image_target(const Config& /*config*/, const std::string& /*image*/) const override { return {}; }

  // deploy: the image's blobs go to every reachable host (a blob a host has is never sent again).
  util::Result<ImagePlacement> place_image(PrepareContext& ctx, BuiltImage& image, int version) override {
    if (!cloud_.registry.empty()) return place_registry_image(ctx, cloud_, image, version);
    const std::string store_dir = image_store_dir(ctx.store.dir());
    if (auto fetched = fetch_base_layers(image, store_dir); !fetched) return fetched.error();
    ImagePlacement placement;
    placement.location = {ctx.manifest.app, image.name, image.digest, cloud_.name, "", "", 0};
    placement.report.digest = image.digest;
    for (auto* host : hosts_.all()) {
      auto sent = host->send_image(store_dir, image);
      if (!sent) {
        if (ctx.warn) ctx.warn(fmt::format("host {} of cloud '{}' did not get image '{}': {}", host->label(), cloud_.name, image.name,
                                           sent.error().message));
        continue;
      }
      placement.report.bytes_uploaded += sent->bytes_uploaded;
      placement.report.blobs_uploaded += sent->blobs_uploaded;
      placement.report.blobs_skipped += sent->blobs_skipped;
    }
    return placement;
  }

  util::Result<Run> launch(StateStore& store, const RunSpec& spec, const SecretValues& secrets) override {
    if (!chosen_) {
      auto chosen = hosts_.choose(spec.gpu_alternatives, {});
      if (!chosen) return chosen.error();
      chosen_ = std::move(*chosen);
    }
    HostConnection& host = *chosen_->host;
    RunSpec remote_spec = spec;
    for (auto& mount : remote_spec.mounts) mount.host_path = path_on_host(mount.host_path);
    if (spec.image.empty() && !spec.cwd.empty()) {  // an image brings its own files
      // gpurun's own state directory, when it lies inside the project, is live and not the project's.
      auto synced = sync_directory(host.client(), spec.cwd, "~/.cache/gpurun/sync", {store.dir()});
      if (!synced) return synced.error();
      remote_spec.cwd = synced->remote_path;
    }
    NewRun fresh{spec.app, spec.function, spec.cloud, "ssh", spec.gpu_text, to_json(spec), "",
                 fmt::format("starting on host {}", host.label())};
    auto created = store.create_run(fresh);
    if (!created) return created.error();
    created->lock.release();  // the host's supervisor owns the run; refresh mirrors it
    Run run = created->run;
    auto remote_id = host.start_run(remote_spec, secrets);
    if (!remote_id) {
      (void)store.update_status(run.id, RunStatus::failed, remote_id.error().message, util::to_int(remote_id.error().code));
      return remote_id.error();
    }
    const std::string id = fmt::format("{}:{}", host.label(), *remote_id);
    if (auto set = store.set_remote_id(run.id, id); !set) return set.error();
    return store.get_run(run.id);
  }

  util::Result<std::string> dry_run(const RunSpec& spec, const SecretValues& /*secrets*/) override {
    return to_json(spec) + "\n";
  }

  util::Result<void> cancel(StateStore& store, const Run& run) override {
    auto where = locate(run);
    if (!where) {
      (void)store.update_status(run.id, RunStatus::cancelled, "cancelled", util::to_int(ExitCode::cancelled));
      return {};
    }
    return where->first->cancel_run(where->second);
  }

  util::Result<Run> refresh(StateStore& store, const Run& run) override {
    auto runs = refresh_runs(store, {run}, true);
    if (!runs) return runs.error();
    return runs->front();
  }

  // Brings `runs` up to date with one host-status call per host (their logs copied first: a run
  // the host calls ended has written all of it). A host that cannot be asked leaves its runs as
  // recorded; its error is returned only when `strict`.
  util::Result<std::vector<Run>> refresh_runs(StateStore& store, const std::vector<Run>& runs, bool strict) {
    std::map<HostConnection*, std::vector<std::string>> asked;
    for (const auto& run : runs) {
      if (auto where = locate(run); where && !is_terminal(run.status)) asked[where->first].push_back(where->second);
    }
    std::map<HostConnection*, HostStatus> answers;
    for (const auto& [host, ids] : asked) {
      auto status = host->statuses(ids);
      if (!status && strict) return status.error();
      if (status) answers[host] = std::move(*status);
    }
    std::vector<Run> fresh;
    for (const auto& run : runs) {
      auto where = locate(run);
      auto answer = where ? answers.find(where->first) : answers.end();
      if (answer != answers.end() && !is_terminal(run.status)) {
        if (auto it = answer->second.runs.find(where->second); it != answer->second.runs.end()) {
          pull_log(store, run);
          mirror(store, run, it->second);
        } else {
          (void)store.update_status(run.id, RunStatus::lost,
                                    fmt::format("host {} no longer knows run {}", where->first->label(), where->second),
                                    util::to_int(ExitCode::backend));
        }
      }
      auto now = store.get_run(run.id);
      if (!now) return now.error();
      fresh.push_back(std::move(*now));
    }
    return fresh;
  }

  util::Result<std::vector<Run>> refresh_many(StateStore& store, std::span<const Run> runs) override {
    return refresh_runs(store, std::vector<Run>(runs.begin(), runs.end()), false);
  }

  // Free and total GPUs by type: each host's GPUs less those its lease dir has leased and those
  // processes outside gpurun use (one round trip per host); an unreachable host has none free.
  util::Result<Capacity> capacity(StateStore& /*store*/) override {
    Capacity capacity;
    capacity.known = true;
    std::vector<std::string> unreachable;
    for (auto* host : hosts_.all()) {
      auto status = host->statuses({}, /*gpu_use=*/true);
      int leased = status ? status->in_use() : host->total_gpus();
      if (!status) unreachable.push_back(host->label());
      for (const auto& slot : host->host().gpus) {
        const int busy = std::min(leased, slot.count);
        leased -= busy;
        add_capacity(capacity, slot, slot.count - busy);
      }
    }
    capacity.note = unreachable.empty() ? "leases on each host"
                                        : fmt::format("leases on each host; unreachable: {}", util::join(unreachable, ", "));
    return capacity;
  }

  // The run's log: the local copy, topped up from the host's while the run is not recorded as
  // ended (once it is, refresh has copied all of it).
  util::Result<LogSource> open_log(const StateStore& store, const Run& run) const override {
    const std::string local = run_dir(store.dir(), run.id) + "/log";
    auto where = locate(run);
    if (!where) return LogSource{file_log_bytes(local), LogFormat::records};
    return LogSource{std::make_unique<SshLogBytes>(where->first->host(), where->second, local, is_terminal(run.status)),
                     LogFormat::records};
  }

  std::string remote_id(const Run& run) const override { return run.remote_id; }

 private:
  // Pushes `built` to the cloud's registry unless the state says it holds that digest already.
  util::Result<void> push_once(PrepareContext& ctx, BuiltImage& built, const std::string& repository) {
    auto locations = ctx.store.list_image_locations(ctx.manifest.app);
    if (!locations) return locations.error();
    for (const auto& l : *locations) {
      if (l.image == built.name && l.digest == built.digest && l.cloud == cloud_.name && l.registry == cloud_.registry) return {};
    }
    auto pushed = push_image({cloud_.name, cloud_.registry, repository}, built, registry::default_tags(built.digest, ""), ctx.progress);
    if (!pushed) return pushed.error();
    return ctx.store.record_image_locations({{ctx.manifest.app, built.name, built.digest, cloud_.name, cloud_.registry, repository, 0}});
  }

  // Chooses the run's host among those that can serve it, once (said on stderr with the reason).
  util::Result<void> choose_host(PrepareContext& ctx, const RunSpec& spec) {
    if (chosen_) return {};
    auto chosen = hosts_.choose(spec.gpu_alternatives, ctx.warn);
    if (!chosen) return chosen.error();
    chosen_ = std::move(*chosen);
    if (ctx.progress.on_done) ctx.progress.on_done(fmt::format("host {} chosen: {}", chosen_->host->label(), chosen_->why));
    return {};
  }

  // Pins the run to the host that holds its volumes made before (said on stderr); an error when
  // they lie on different hosts, or that host lacks the GPUs asked for.
  util::Result<void> pin_to_volumes(PrepareContext& ctx, const RunSpec& spec) {
    for (const auto& mount : spec.mounts) {
      auto existing = ctx.store.get_volume(spec.app, mount.volume);
      if (!existing) return existing.error();
      if (!*existing) continue;
      auto host = volume_host(**existing);
      if (!host) return unreachable_volume_error(**existing, spec.function, spec.cloud);
      if (chosen_ && chosen_->host == *host) continue;
      if (chosen_) {
        return util::make_error(ExitCode::usage, fmt::format("function '{}' mounts volumes that live on two hosts of cloud '{}' ({} "
                                                             "and {}); a run has one host: keep its volumes on one",
                                                             spec.function, cloud_.name, chosen_->host->label(), (*host)->label()));
      }
      if (!(*host)->can_serve(spec.gpu_alternatives)) {
        return util::make_error(ExitCode::unschedulable, fmt::format("function '{}' mounts volume '{}', which lives on host {} of "
                                                                     "cloud '{}', and that host has no {}; ask for a GPU it has",
                                                                     spec.function, mount.volume, (*host)->label(), cloud_.name,
                                                                     spec.gpu_text));
      }
      chosen_ = HostChoice{*host, fmt::format("it holds volume '{}'", mount.volume)};
      if (ctx.progress.on_done) ctx.progress.on_done(fmt::format("host {} chosen: {}", chosen_->host->label(), chosen_->why));
    }
    return {};
  }

  // The host that holds `volume` (recorded as "LABEL:PATH"), or nullopt.
  std::optional<HostConnection*> volume_host(const Volume& volume) const {
    const auto at = volume.path.find(":/");
    if (at == std::string::npos) return std::nullopt;
    HostConnection* host = hosts_.find(volume.path.substr(0, at));
    if (host == nullptr) return std::nullopt;
    return host;
  }

  // PATH of a recorded "LABEL:PATH".
  static std::string path_on_host(const std::string& recorded) {
    const auto at = recorded.find(":/");
    return at == std::string::npos ? recorded : recorded.substr(at + 1);
  }

  // The host and remote run id of `run` (remote_id "LABEL:RUN_ID"); nullopt before it started.
  std::optional<std::pair<HostConnection*, std::string>> locate(const Run& run) const {
    const auto colon = run.remote_id.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    HostConnection* host = hosts_.find(run.remote_id.substr(0, colon));
    if (host == nullptr) return std::nullopt;
    return std::pair{host, run.remote_id.substr(colon + 1)};
  }

  // Appends what the host's log of `run` has beyond the local copy.
  void pull_log(const StateStore& store, const Run& run) const {
    if (auto where = locate(run)) pull_log_copy(*where->first, where->second, run_dir(store.dir(), run.id) + "/log");
  }

  // Adds `slot` to `offers` unless its type and memory are there (then the larger count wins).
  static void add_offer(std::vector<gpu::GpuSlot>& offers, const gpu::GpuSlot& slot) {
    for (auto& o : offers) {
      if (o.type == slot.type && o.memory_gb == slot.memory_gb) {
        o.count = std::max(o.count, slot.count);
        return;
      }
    }
    offers.push_back(slot);
  }

  // Adds `free` of `slot`'s GPUs (and slot.count in all) to the capacity's entry for its type.
  static void add_capacity(Capacity& capacity, const gpu::GpuSlot& slot, int free) {
    for (auto& entry : capacity.gpus) {
      if (entry.type == slot.type && entry.memory_gb == slot.memory_gb) {
        entry.free += free;
        entry.total += slot.count;
        return;
      }
    }
    capacity.gpus.push_back({slot.type, slot.memory_gb, free, slot.count});
  }

  // Records what the host says of the run when it differs from what is recorded.
  static void mirror(StateStore& store, const Run& run, const RemoteRunStatus& remote) {
    if (remote.attempt != run.attempt) (void)store.set_attempt(run.id, remote.attempt);
    if (!remote.gpus.empty() && remote.gpus != run.gpus) (void)store.set_gpus(run.id, remote.gpus);
    if (remote.status != run.status || remote.reason != run.status_reason) {
      std::string reason = remote.reason;
      for (const std::string from : {" on local:", " on local"}) {
        if (auto at = reason.find(from); at != std::string::npos) reason.replace(at, from.size(), " on " + run.cloud + (from.back() == ':' ? ":" : ""));
      }
      (void)store.update_status(run.id, remote.status, reason, remote.exit_code);
    }
  }

  CloudConfig cloud_;
  gpu::Catalog catalog_;
  mutable SshHosts hosts_;  // connections open lazily, also from const reads of the log
  std::optional<HostChoice> chosen_;
};

}  // namespace

util::Result<std::unique_ptr<Backend>> make_ssh_backend(const CloudConfig* cloud, const Config* config) {
  const SshCloudSettings* settings = cloud != nullptr ? ssh_settings_of(*cloud) : nullptr;
  if (settings == nullptr) {
    return util::make_error(ExitCode::usage, "backend ssh needs a cloud with 'hosts:' in the config (README \"GPU servers over SSH\")");
  }
  return std::unique_ptr<Backend>(new SshBackend(*cloud, *settings, config != nullptr ? config->catalog : gpu::Catalog::builtin()));
}

}  // namespace gpurun::cloud
