#include "cloud/backend/kubernetes/kubernetes_backend.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <unistd.h>
#include <map>
#include <span>
#include <nlohmann/json.hpp>

#include "cloud/backend/kubernetes/kubernetes_api.hpp"
#include "cloud/backend/kubernetes/kubernetes_follow.hpp"
#include "cloud/backend/kubernetes/kubernetes_kubeconfig.hpp"
#include "cloud/backend/kubernetes/kubernetes_logs.hpp"
#include "cloud/backend/kubernetes/kubernetes_objects.hpp"
#include "cloud/images/registry.hpp"
#include "gpu/spec.hpp"
#include "util/clock.hpp"
#include "util/files.hpp"
#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::cloud {

namespace {

using json = nlohmann::json;
using util::ExitCode;

// The image name of a host function's directory on default_image (its repository APP/host.files;
// '.' keeps it apart from the manifest's image names).
constexpr const char* host_image_name = "host.files";

// The settings the registry's key parser stored in the cloud (defaults without).
KubernetesSettings settings_of(const CloudConfig& cloud) {
  if (const auto* settings = dynamic_cast<const KubernetesSettings*>(cloud.settings.get())) return *settings;
  return KubernetesSettings{};
}

std::string registry_host(const std::string& url) {
  std::string host = url;
  if (auto scheme = host.find("://"); scheme != std::string::npos) host = host.substr(scheme + 3);
  while (!host.empty() && host.back() == '/') host.pop_back();
  return host;
}

// "2x A100-40GB", "1x any GPU", "a node".
std::string wanted(const RunSpec& spec) {
  if (spec.gpu_alternatives.empty()) return "a node";
  const auto& a = spec.gpu_alternatives.front();
  if (a.type.empty()) return fmt::format("{}x any GPU", a.count);
  return fmt::format("{}x {}", a.count, gpu::to_string(gpu::GpuSlot{a.type, a.min_memory_gb, 1}));
}

// The node label values of the spec's GPU type (empty: any GPU node).
std::vector<std::string> products_for(const RunSpec& spec, const KubernetesSettings& settings) {
  std::vector<std::string> values;
  if (spec.gpu_alternatives.empty() || spec.gpu_alternatives.front().type.empty()) return values;
  const auto& a = spec.gpu_alternatives.front();
  for (const auto& product : settings.gpu_products) {
    if (!util::iequals(product.type, a.type)) continue;
    if (a.min_memory_gb != 0 && product.memory_gb != 0 && product.memory_gb < a.min_memory_gb) continue;
    if (a.max_memory_gb != 0 && product.memory_gb > a.max_memory_gb) continue;
    values.insert(values.end(), product.values.begin(), product.values.end());
  }
  return values;
}

std::int64_t time_ms(const json& object, const char* key, std::int64_t fallback) {
  if (!object.is_object() || !object.contains(key) || !object[key].is_string()) return fallback;
  return parse_rfc3339_ms(object[key].get<std::string>()).value_or(fallback);
}

std::int64_t created_ms(const json& object) {
  return time_ms(object.value("metadata", json::object()), "creationTimestamp", 0);
}

std::string label_of(const json& object, const std::string& key) {
  const json& labels = object.value("metadata", json::object()).value("labels", json::object());
  return labels.value(key, std::string());
}

std::string name_of(const json& object) { return object.value("metadata", json::object()).value("name", std::string()); }

// A Job's condition of `type` ("Complete", "Failed") with status True, or null.
const json* job_condition(const json& job, const std::string& type) {
  // Pointers into `job` itself (json::value() would return a copy).
  auto status = job.find("status");
  if (status == job.end() || !status->is_object()) return nullptr;
  auto conditions = status->find("conditions");
  if (conditions == status->end() || !conditions->is_array()) return nullptr;
  for (const auto& condition : *conditions) {
    if (condition.value("type", "") == type && condition.value("status", "") == "True") return &condition;
  }
  return nullptr;
}

// The newest pod of Job `job` among `pods`.
const json* pod_of(const std::vector<json>& pods, const std::string& job) {
  const json* found = nullptr;
  for (const auto& pod : pods) {
    if (label_of(pod, "job-name") != job) continue;
    if (found == nullptr || created_ms(pod) >= created_ms(*found)) {
      found = &pod;
    }
  }
  return found;
}

std::optional<int> exit_code_of_pod(const json* pod) {
  if (pod == nullptr) return std::nullopt;
  for (const auto& container : pod->value("status", json::object()).value("containerStatuses", json::array())) {
    const json& terminated = container.value("state", json::object()).value("terminated", json::object());
    if (!terminated.contains("exitCode")) continue;
    return start_error_code(terminated.value("reason", ""), terminated.value("message", ""))
        .value_or(terminated["exitCode"].get<int>());
  }
  return std::nullopt;
}

std::vector<std::pair<std::string, std::string>> secret_variables(const SecretValues& secrets) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [name, values] : secrets) out.insert(out.end(), values.begin(), values.end());
  return out;
}

std::shared_ptr<std::atomic<std::uint64_t>> process_refreshes() {
  static const auto counter = std::make_shared<std::atomic<std::uint64_t>>(0);
  return counter;
}

// A run's log: each attempt's pod log (timestamps=true) as records, "attempt N started" markers
// between them, secret values masked (PodLogRecords). A running pod's log is fetched whole once,
// then followed over the API's stream on a thread (PodLogFollow, resumed with sinceTime when
// dropped); once the pod ended the rest is fetched from the second of its last line on (sinceTime). The log only grows:
// an attempt's records follow once every earlier attempt's log is complete. It is fetched again
// when a reader has read all of it and the backend refreshed a run since (so the read after a
// refresh that saw the end is complete), or 1 s has passed. With `complete`, every pod counts as
// ended (a snapshot of what the pods hold now).
class PodLogBytes final : public LogBytes {
 public:
  PodLogBytes(std::shared_ptr<KubernetesApi> api, Run run, std::vector<std::string> secrets,
              std::shared_ptr<std::atomic<std::uint64_t>> refreshes, bool complete = false)
      : api_(std::move(api)), run_(std::move(run)), secrets_(std::move(secrets)), refreshes_(std::move(refreshes)),
        complete_(complete) {}

  util::Result<std::size_t> read(std::uint64_t offset, char* out, std::size_t max) override {
    if (offset >= text_.size()) {
      if (auto fresh = update(); !fresh) return fresh.error();
    }
    if (offset >= text_.size()) return std::size_t{0};
    const std::size_t n = std::min<std::size_t>(max, text_.size() - offset);
    std::memcpy(out, text_.data() + offset, n);
    return n;
  }
  util::Result<std::uint64_t> size() override {
    if (auto fresh = update(); !fresh) return fresh.error();
    return static_cast<std::uint64_t>(text_.size());
  }
  std::string describe() const override {
    return fmt::format("the pod logs of run {} in namespace {}", run_.id, api_->namespace_name());
  }

 private:
  // One attempt's records on their way to text_.
  struct Attempt {
    Attempt(int attempt, std::vector<std::string> secrets) : log(attempt, std::move(secrets)) {}
    PodLogRecords log;
    std::unique_ptr<PodLogFollow> follow;  // while its pod runs
    std::string ready;  // records not in text_ yet (an earlier attempt's log is not complete)
    bool done = false;  // its pod ended and its log was read to the end, or the pod is gone
  };

  util::Result<void> update() {
    const std::int64_t now = util::now_unix_ms();
    const std::uint64_t refreshes = refreshes_->load();
    if (refreshes == seen_refreshes_ && now - built_ms_ < 1000) return {};
    built_ms_ = now;
    seen_refreshes_ = refreshes;
    return build();
  }

  util::Result<void> build() {
    auto pods = api_->expect("GET", api_->collection("pods") + "?labelSelector=" + http::url_encode(run_selector(run_.id)));
    if (!pods) return pods.error();
    std::map<int, json> by_attempt;
    for (const auto& pod : pods->body.value("items", json::array())) {
      auto attempt = util::parse_uint(label_of(pod, "gpurun.dev/attempt"));
      if (!attempt) continue;
      auto& slot = by_attempt[static_cast<int>(*attempt)];
      if (slot.is_null() || created_ms(pod) >= created_ms(slot)) slot = pod;
    }
    for (const auto& [number, pod] : by_attempt) {
      if (attempts_.count(number) != 0) continue;
      auto& attempt = attempts_.try_emplace(number, number, secrets_).first->second;
      const json& status = pod.value("status", json::object());
      if (number > 1) attempt.ready = marker_record(time_ms(status, "startTime", created_ms(pod)), number,
                                                    fmt::format("attempt {} started", number));
    }
    for (auto& [number, attempt] : attempts_) {
      if (!attempt.done) {
        auto pod = by_attempt.find(number);
        if (pod == by_attempt.end()) {
          attempt.done = true;  // the pod is gone: its log as last seen stays
        } else if (auto fetched = fetch(attempt, pod->second); !fetched) {
          return fetched.error();
        }
      }
      text_ += attempt.ready;
      attempt.ready.clear();
      if (!attempt.done) break;
    }
    return {};
  }

  // The part of the pod's log not taken yet: while the pod runs, what was there when it was first
  // seen (so a one-time read is complete), then what its follow brought; once it ended the rest.
  util::Result<void> fetch(Attempt& attempt, const json& pod) {
    const json& status = pod.value("status", json::object());
    const std::string phase = status.value("phase", "");
    const bool ended = complete_ || phase == "Succeeded" || phase == "Failed";
    if ((phase == "Pending" || phase.empty()) && !ended) return {};
    const std::string log_path = api_->collection("pods") + "/" + name_of(pod) + "/log";
    const std::int64_t started = time_ms(status, "startTime", created_ms(pod));
    if (attempt.follow) {  // what the stream brought
      attempt.log.take(attempt.follow->take_lines(), started, false);
      if (ended) attempt.follow.reset();
    }
    if (!attempt.follow) {
      if (auto got = fetch_rest(attempt, pod, log_path, started, ended); !got) return got.error();
    }
    if (phase == "Running" && !ended && !attempt.follow) {
      attempt.follow = std::make_unique<PodLogFollow>(api_->fork(), log_path, attempt.log.since_ms());
    }
    attempt.ready += attempt.log.take_records();
    attempt.done = ended;
    return {};
  }

  // One GET of the pod's log from the second of its last line taken on (all of it the first time).
  util::Result<void> fetch_rest(Attempt& attempt, const json& pod, const std::string& log_path, std::int64_t started,
                                bool ended) {
    std::string path = log_path + "?timestamps=true";
    if (auto since = attempt.log.since_ms()) path += "&sinceTime=" + http::url_encode(format_rfc3339(*since));
    auto log = api_->call("GET", path);
    if (!log) return log.error();
    // 400: the container never started; 404: the pod is gone. Other failures are asked again
    // later; a snapshot must not leave a part out.
    if (!log->ok() && log->status != 400 && log->status != 404) {
      if (!complete_) return {};
      return util::make_error(ExitCode::backend, fmt::format("cannot read the log of pod {} (HTTP {}): {}", name_of(pod),
                                                             log->status, log->text.substr(0, 200)));
    }
    attempt.log.take(log->ok() ? std::string_view(log->text) : std::string_view(), started, ended);
    return {};
  }

  std::shared_ptr<KubernetesApi> api_;
  Run run_;
  std::vector<std::string> secrets_;
  std::shared_ptr<std::atomic<std::uint64_t>> refreshes_;
  bool complete_ = false;
  std::map<int, Attempt> attempts_;
  std::uint64_t seen_refreshes_ = 0;
  std::string text_;
  std::int64_t built_ms_ = -1'000'000;
};

// The path of the masked copy of an ended run's log (written when it ends, read by later `logs`).
std::string saved_log_path(const StateStore& store, const Run& run) { return run_dir(store.dir(), run.id) + "/log"; }

class KubernetesBackend final : public Backend {
 public:
  KubernetesBackend(CloudConfig cloud, KubernetesSettings settings, const Config* config)
      : cloud_(std::move(cloud)), settings_(std::move(settings)) {
    if (config != nullptr) config_ = *config;  // a copy: callers' configs may not outlive the backend
  }

  std::string_view name() const override { return "kubernetes"; }
  bool remote() const override { return true; }

  // A volume is a PersistentVolumeClaim in the cloud's namespace: its name stands for the path.
  util::Result<std::string> volume_path(const std::string& /*state_dir*/, const std::string& app,
                                        const std::string& volume) const override {
    return claim_name(app, volume);
  }

  // A volume is a PersistentVolumeClaim, made when a run first mounts it (launch): nothing here.
  util::Result<std::string> prepare_volume(PrepareContext& ctx, const RunSpec& spec, const std::string& volume,
                                           const std::optional<Volume>& /*existing*/) override {
    return volume_path(ctx.store.dir(), spec.app, volume);
  }

  util::Result<void> prepare_image(PrepareContext& ctx, const PlacedFunction& placed, RunSpec& spec) override {
    if (placed.gpu) spec.gpu_alternatives = {{placed.gpu->type, placed.gpu->memory_gb, placed.gpu->count}};
    if (!spec.image.empty()) return prepare_registry_image(ctx, *this, cloud_, spec);
    // A host function: default_image with the manifest's directory as a layer at the same path
    // (its working directory), pushed to the cloud's registry. Without a registry, default_image
    // runs as given in that directory (the files must reach the nodes some other way).
    if (cloud_.registry.empty()) return {};
    if (auto image = pod_image(spec, settings_, cloud_.name); !image) return image.error();
    manifest::Image host;
    host.name = host_image_name;
    host.base = settings_.default_image;
    host.add = {{".", spec.cwd}};
    host.workdir = spec.cwd;
    if (auto prepared = prepare_registry_image(ctx, *this, cloud_, spec, host); !prepared) return prepared.error();
    spec.image = host.name;
    return {};
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
    if (auto image = pod_image(spec, settings_, cloud_.name); !image) return image.error();
    auto api = connect();
    if (!api) return api.error();
    NewRun fresh;
    fresh.app = spec.app;
    fresh.function = spec.function;
    fresh.cloud = spec.cloud;
    fresh.backend = "kubernetes";
    fresh.gpus = spec.gpu_text;
    fresh.spec_json = to_json(spec);
    fresh.status_reason = fmt::format("submitting to {}", cloud_.name);
    auto created = store.create_run(fresh);
    if (!created) return created.error();
    Run run = created->run;
    created->lock.release();
    auto started = start(**api, store, run, spec, secrets);
    if (!started) {
      (void)store.update_status(run.id, RunStatus::failed, started.error().message, util::to_int(started.error().code));
      (void)delete_secret(**api, run);
      return started.error();
    }
    return store.get_run(run.id);
  }

  util::Result<std::string> dry_run(const RunSpec& spec, const SecretValues& secrets) override {
    auto image = pod_image(spec, settings_, cloud_.name);
    if (!image) return image.error();
    SecretValues redacted;
    for (const auto& [name, values] : secrets) {
      std::vector<std::pair<std::string, std::string>> hidden;
      for (const auto& [k, v] : values) hidden.emplace_back(k, "***");
      redacted.emplace_back(name, hidden);
    }
    const std::string ns = settings_.namespace_name.empty() ? "<the context's namespace>" : settings_.namespace_name;
    const JobRequest request = job_request(spec, "DRYRUN", 1, ns, *image, secrets.empty() ? "" : secret_name("DRYRUN"));
    std::string out = fmt::format("# cloud {} (kubernetes, namespace {})\n", cloud_.name, ns);
    if (!secrets.empty()) {
      out += "# --- Secret ---\n" + secret_json(secret_name("DRYRUN"), ns, "DRYRUN", redacted).dump(2) + "\n";
    }
    out += "# --- Job ---\n" + job_json(spec, settings_, request).dump(2) + "\n";
    return out;
  }

  util::Result<void> cancel(StateStore& store, const Run& run) override {
    if (!run.remote_id.empty()) {
      auto api = connect();
      if (!api) return api.error();
      save_log(store, run);  // deleting the Job deletes its pods and their logs
      const json options = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Foreground"}};
      auto deleted = (*api)->expect("DELETE", (*api)->collection("jobs") + "/" + current_job(run), options, 404);
      if (!deleted) return deleted.error();
      if (auto gone = delete_secret(**api, run); !gone) return gone.error();
    }
    auto updated = store.update_status(run.id, RunStatus::cancelled, "cancelled", util::to_int(ExitCode::cancelled));
    if (!updated) return updated.error();
    return {};
  }

  util::Result<Run> refresh(StateStore& store, const Run& run) override {
    auto runs = refresh_many(store, std::span<const Run>(&run, 1));
    if (!runs) return runs.error();
    return runs->front();
  }

  // One LIST of Jobs and one of Pods (by the runs' labels) bring every run of `runs` up to date.
  util::Result<std::vector<Run>> refresh_many(StateStore& store, std::span<const Run> runs) override {
    std::vector<std::string> ids;
    for (const auto& run : runs) {
      if (!is_terminal(run.status) && !run.remote_id.empty()) ids.push_back(label_value(run.id));
    }
    std::vector<Run> out(runs.begin(), runs.end());
    ++*refreshes_;
    if (ids.empty()) return out;
    auto api = connect();
    if (!api) return api.error();
    const std::string selector = http::url_encode("gpurun.dev/run in (" + util::join(ids, ",") + ")");
    auto jobs = (*api)->expect("GET", (*api)->collection("jobs") + "?labelSelector=" + selector);
    if (!jobs) return jobs.error();
    auto pods = (*api)->expect("GET", (*api)->collection("pods") + "?labelSelector=" + selector);
    if (!pods) return pods.error();
    const auto job_items = jobs->body.value("items", std::vector<json>{});
    const auto pod_items = pods->body.value("items", std::vector<json>{});
    for (auto& run : out) {
      if (is_terminal(run.status) || run.remote_id.empty()) continue;
      update(**api, store, run, job_items, pod_items);
      auto now = store.get_run(run.id);
      if (!now) return now.error();
      run = *now;
    }
    return out;
  }

  std::string remote_id(const Run& run) const override { return current_job(run); }

  // An ended run's log as saved when it ended (masked with the run's secret values); else the pod
  // logs, masked with the values of the run's Secret and those this process knows.
  util::Result<LogSource> open_log(const StateStore& store, const Run& run) const override {
    LogSource source;
    source.format = LogFormat::records;
    if (const std::string saved = saved_log_path(store, run); ::access(saved.c_str(), F_OK) == 0) {
      source.bytes = file_log_bytes(saved);
      return source;
    }
    auto api = connect();
    if (!api) return api.error();
    source.bytes = std::make_unique<PodLogBytes>(*api, run, mask_values(**api, run), refreshes_);
    return source;
  }

  // Free and total GPUs per gpu_products type: the nodes' allocatable minus the pods bound there.
  util::Result<Capacity> capacity(StateStore& /*store*/) override {
    auto api = connect();
    if (!api) return api.error();
    auto nodes = (*api)->call("GET", "/api/v1/nodes");
    if (!nodes) return nodes.error();
    Capacity capacity;
    if (!nodes->ok()) {
      capacity.note = fmt::format("cannot list the nodes of cloud '{}' (HTTP {}); grant list on nodes", cloud_.name, nodes->status);
      return capacity;
    }
    auto pods = (*api)->call("GET", "/api/v1/pods?fieldSelector=" + http::url_encode("status.phase!=Succeeded,status.phase!=Failed"));
    if (!pods) return pods.error();
    if (!pods->ok()) {
      capacity.note = fmt::format("cannot list the pods of cloud '{}' (HTTP {}); grant list on pods in all namespaces",
                                  cloud_.name, pods->status);
      return capacity;
    }
    capacity.known = true;
    capacity.note = "nodes' allocatable nvidia.com/gpu minus the pods bound to them";
    for (const auto& g : node_gpus(nodes->body.value("items", json::array()), pods->body.value("items", json::array()), settings_, &catalog())) {
      capacity.gpus.push_back({g.type, g.memory_gb, g.free, g.total});
    }
    return capacity;
  }

  // Deletes the run's Jobs (every attempt's; their pods by background propagation) and its Secret
  // if one is left (a run that ended while no gpurun process watched it).
  util::Result<void> forget_remote(const Run& run) override {
    if (run.remote_id.empty()) return {};
    auto api = connect();
    if (!api) return api.error();
    auto jobs = (*api)->expect("GET", (*api)->collection("jobs") + "?labelSelector=" + http::url_encode(run_selector(run.id)));
    if (!jobs) return jobs.error();
    const json options = {{"kind", "DeleteOptions"}, {"apiVersion", "v1"}, {"propagationPolicy", "Background"}};
    for (const auto& job : jobs->body.value("items", json::array())) {
      auto deleted = (*api)->expect("DELETE", (*api)->collection("jobs") + "/" + name_of(job), options, 404);
      if (!deleted) return deleted.error();
    }
    return delete_secret(**api, run);
  }

  // Offers from the nodes' gpu_label values and allocatable nvidia.com/gpu (a cloud without gpus:).
  util::Result<DiscoveredOffers> discover_offers() override {
    auto nodes = list_nodes();
    if (!nodes) return nodes.error();
    DiscoveredOffers found;
    found.offers = node_offers(*nodes, settings_, catalog(), found.skipped);
    found.note = fmt::format("from the labels {} and allocatable nvidia.com/gpu of its nodes", settings_.gpu_label);
    return found;
  }

 private:
  const gpu::Catalog& catalog() const {
    static const gpu::Catalog builtin = gpu::Catalog::builtin();
    return config_ ? config_->catalog : builtin;
  }

  // The cluster's nodes (the API's list items); an error names the cloud and how to fix it.
  util::Result<json> list_nodes() const {
    auto api = connect();
    if (!api) return api.error();
    auto nodes = (*api)->call("GET", "/api/v1/nodes");
    if (!nodes) {
      return util::make_error(ExitCode::backend, fmt::format("cannot list the GPU nodes of cloud '{}': {}; check that its API "
                                                             "server is up, or declare its GPUs with 'gpus:'",
                                                             cloud_.name, nodes.error().message));
    }
    if (!nodes->ok()) {
      auto refused = api_error(cloud_.name, "GET", "/api/v1/nodes", *nodes);
      refused.message += "; or declare the cloud's GPUs with 'gpus:'";
      return refused;
    }
    return nodes->body.value("items", json::array());
  }

  util::Result<std::shared_ptr<KubernetesApi>> connect() const {
    if (api_) return api_;
    auto api = KubernetesApi::connect(settings_, cloud_.name);
    if (!api) return api.error();
    api_ = std::make_shared<KubernetesApi>(std::move(*api));
    return api_;
  }

  static std::string current_job(const Run& run) {
    const std::string& id = run.remote_id;
    return id.rfind("claim:", 0) == 0 ? id.substr(6) : id;
  }

  JobRequest job_request(const RunSpec& spec, const std::string& run_id, int attempt, const std::string& ns,
                         const std::string& image, const std::string& secret) const {
    JobRequest request;
    request.run_id = run_id;
    request.attempt = attempt;
    request.namespace_name = ns;
    request.image = image;
    request.secret = secret;
    if (!spec.gpu_alternatives.empty()) request.gpu_count = spec.gpu_alternatives.front().count;
    request.gpu_products = products_for(spec, settings_);
    request.cpu = spec.cpu;
    request.memory_bytes = spec.memory_bytes;
    for (const auto& mount : spec.mounts) request.claims.emplace_back(mount.path, claim_name(spec.app, mount.volume));
    return request;
  }

  // The run's claims and Secret, then attempt 1's Job.
  util::Result<void> start(KubernetesApi& api, StateStore& store, const Run& run, const RunSpec& spec,
                           const SecretValues& secrets) {
    for (const auto& mount : spec.mounts) {
      if (auto claim = ensure_claim(api, spec.app, mount.volume); !claim) return claim.error();
    }
    const bool has_secrets = !secret_variables(secrets).empty();
    if (has_secrets) {
      const json secret = secret_json(secret_name(run.id), api.namespace_name(), run.id, secrets);
      if (auto made = api.expect("POST", api.collection("secrets"), secret); !made) return made.error();
    }
    return submit(api, store, run, spec, 1, has_secrets);
  }

  util::Result<void> submit(KubernetesApi& api, StateStore& store, const Run& run, const RunSpec& spec, int attempt,
                            bool has_secrets) {
    auto image = pod_image(spec, settings_, cloud_.name);
    if (!image) return image.error();
    const JobRequest request =
        job_request(spec, run.id, attempt, api.namespace_name(), *image, has_secrets ? secret_name(run.id) : "");
    JobRequest asked = request;
    if (auto values = discovered_products(spec, asked); !values) return values.error();
    const json job = job_json(spec, settings_, asked);
    if (auto made = api.expect("POST", api.collection("jobs"), job); !made) return made.error();
    const std::string name = job["metadata"]["name"];
    if (auto set = store.set_remote_id(run.id, name); !set) return set.error();
    if (attempt != run.attempt) (void)store.set_attempt(run.id, attempt);
    (void)store.update_status(run.id, RunStatus::queued,
                              fmt::format("waiting for {} on {}: submitted as Job {}", wanted(spec), cloud_.name, name));
    return {};
  }

  // A GPU type gpu_products does not name: the node label values that mean it (from the nodes), so
  // that the pod's affinity still keeps it to that type.
  util::Result<void> discovered_products(const RunSpec& spec, JobRequest& request) const {
    if (!request.gpu_products.empty() || spec.gpu_alternatives.empty() || spec.gpu_alternatives.front().type.empty()) return {};
    const auto& a = spec.gpu_alternatives.front();
    auto nodes = list_nodes();
    if (!nodes) return nodes.error();
    request.gpu_products = node_label_values(*nodes, settings_, catalog(), a.type, a.min_memory_gb, a.max_memory_gb);
    if (request.gpu_products.empty()) {
      return util::make_error(ExitCode::unschedulable, fmt::format("no node of cloud '{}' has {} GPUs (label {}); map its "
                                                                   "label value in gpu_products",
                                                                   cloud_.name, a.type, settings_.gpu_label));
    }
    return {};
  }

  util::Result<void> ensure_claim(KubernetesApi& api, const std::string& app, const std::string& volume) {
    const std::string name = claim_name(app, volume);
    auto existing = api.expect("GET", api.collection("persistentvolumeclaims") + "/" + name, std::nullopt, 404);
    if (!existing) return existing.error();
    if (existing->ok()) return {};
    auto made = api.expect("POST", api.collection("persistentvolumeclaims"), claim_json(name, api.namespace_name(), app, settings_), 409);
    if (!made) return made.error();
    return {};
  }

  util::Result<void> delete_secret(KubernetesApi& api, const Run& run) const {
    auto deleted = api.expect("DELETE", api.collection("secrets") + "/" + secret_name(run.id), std::nullopt, 404);
    if (!deleted) return deleted.error();
    return {};
  }

  // Ends the run as `status` and deletes its Secret (best effort: a later cancel deletes it too),
  // its log saved first (save_log).
  void finish(KubernetesApi& api, StateStore& store, const Run& run, RunStatus status, const std::string& reason, int code) {
    save_log(store, run);
    (void)store.update_status(run.id, status, reason, code);
    (void)delete_secret(api, run);
  }

  // The values that mask a run's log: its Kubernetes Secret's (while the run has one) and those of
  // its secrets this process knows (the config, GPURUN_SECRET_* variables).
  // `complete` (when given) tells whether every value of the run's secrets is among them: it has
  // none, or its Secret was read.
  std::vector<std::string> mask_values(KubernetesApi& api, const Run& run, bool* complete = nullptr) const {
    std::vector<std::string> values;
    if (complete != nullptr) *complete = false;
    auto spec = run_spec_from_json(run.spec_json);
    if (spec && spec->secrets.empty()) {
      if (complete != nullptr) *complete = true;
      return values;
    }
    if (spec && config_) {
      const auto environ_entries = process_environment();
      for (const auto& name : spec->secrets) {
        for (const auto& [key, value] : secret_values(*config_, name, environ_entries)) values.push_back(value);
      }
    }
    auto secret = api.call("GET", api.collection("secrets") + "/" + secret_name(run.id));
    if (!secret || !secret->ok() || !secret->body.is_object()) return values;
    auto data = secret->body.find("data");
    if (data == secret->body.end() || !data->is_object()) return values;
    for (auto value = data->begin(); value != data->end(); ++value) {
      if (!value->is_string()) continue;
      if (auto decoded = decode_base64(value->get<std::string>())) values.push_back(std::move(*decoded));
    }
    if (complete != nullptr) *complete = true;
    return values;
  }

  // Saves the run's log (what its pods hold now) masked with the run's secret values, while its
  // Secret still has them, into the run's directory, where open_log finds it: the values are gone
  // once the run ended, and a reader may not know them. Best effort. The first copy stays: a
  // process that sees the end after another one deleted the Secret knows fewer values, so it saves
  // nothing (and never replaces a copy).
  void save_log(const StateStore& store, const Run& run) const {
    const std::string path = saved_log_path(store, run);
    if (run.remote_id.empty() || ::access(path.c_str(), F_OK) == 0) return;
    auto api = connect();
    if (!api) return;
    bool complete = false;
    auto values = mask_values(**api, run, &complete);
    if (!complete) return;
    PodLogBytes bytes(*api, run, std::move(values), refreshes_, true);
    auto size = bytes.size();
    if (!size) return;
    std::string text(*size, '\0');
    auto got = bytes.read(0, text.data(), text.size());
    if (!got || *got != text.size()) return;
    const std::string temporary = fmt::format("{}.{}.tmp", path, ::getpid());
    if (!util::write_file_atomically(temporary, text)) return;
    (void)::link(temporary.c_str(), path.c_str());  // fails when another process saved it first
    ::unlink(temporary.c_str());
  }

  void update(KubernetesApi& api, StateStore& store, const Run& run, const std::vector<json>& jobs, const std::vector<json>& pods) {
    auto spec = run_spec_from_json(run.spec_json);
    if (!spec) {
      finish(api, store, run, RunStatus::lost, spec.error().message, util::to_int(ExitCode::backend));
      return;
    }
    const std::string job_name_now = current_job(run);
    auto job = std::find_if(jobs.begin(), jobs.end(), [&](const json& j) { return name_of(j) == job_name_now; });
    if (job == jobs.end()) {
      if (run.remote_id.rfind("claim:", 0) == 0) return;  // another process is starting the next attempt
      finish(api, store, run, RunStatus::lost,
             fmt::format("Job {} is gone from namespace {} of cloud '{}' (deleted outside gpurun?)", job_name_now,
                         api.namespace_name(), cloud_.name),
             util::to_int(ExitCode::backend));
      return;
    }
    const json* pod = pod_of(pods, job_name_now);
    if (job_condition(*job, "Complete") != nullptr) {
      finish(api, store, run, RunStatus::succeeded, "", 0);
    } else if (const json* failed = job_condition(*job, "Failed")) {
      failed_attempt(api, store, run, *spec, *failed, pod);
    } else {
      active(api, store, run, *spec, pod);
    }
  }

  // The asked type's GPUs on the nodes (nullopt when the nodes or pods cannot be listed).
  std::optional<NodeGpus> gpus_of_type(KubernetesApi& api, const RunSpec& spec) const {
    if (spec.gpu_alternatives.empty()) return std::nullopt;
    const auto& asked = spec.gpu_alternatives.front();
    auto nodes = api.call("GET", "/api/v1/nodes");
    auto pods = api.call("GET", "/api/v1/pods?fieldSelector=" + http::url_encode("status.phase!=Succeeded,status.phase!=Failed"));
    if (!nodes || !pods || !nodes->ok() || !pods->ok()) return std::nullopt;
    for (const auto& g : node_gpus(nodes->body.value("items", json::array()), pods->body.value("items", json::array()), settings_, &catalog())) {
      if (util::iequals(g.type, asked.type) && (g.memory_gb == 0 || asked.min_memory_gb == 0 || g.memory_gb >= asked.min_memory_gb)) {
        return g;
      }
    }
    return std::nullopt;
  }

  void active(KubernetesApi& api, StateStore& store, const Run& run, const RunSpec& spec, const json* pod) {
    const std::string phase = pod != nullptr ? pod->value("status", json::object()).value("phase", "") : "";
    if (phase == "Running" || phase == "Succeeded" || phase == "Failed") {
      if (run.status != RunStatus::running) {
        (void)store.update_status(run.id, RunStatus::running, "");
        const std::string node = pod->value("spec", json::object()).value("nodeName", "");
        if (!node.empty() && !spec.gpu_alternatives.empty()) (void)store.set_gpus(run.id, spec.gpu_text + " on " + node);
      }
      return;
    }
    const int gpus = spec.gpu_alternatives.empty() ? 0 : spec.gpu_alternatives.front().count;
    std::string words = pod != nullptr ? pod_waiting_reason(*pod, gpus) : std::string();
    if (words == gpu_shortage_words(gpus, std::nullopt)) words = gpu_shortage_words(gpus, gpus_of_type(api, spec));
    if (words.empty()) words = pod != nullptr ? "starting" : "creating the pod";
    const std::string reason = fmt::format("waiting for {} on {}: {}", wanted(spec), cloud_.name, words);
    if (reason != run.status_reason || run.status != RunStatus::queued) (void)store.update_status(run.id, RunStatus::queued, reason);
  }

  void failed_attempt(KubernetesApi& api, StateStore& store, const Run& run, const RunSpec& spec, const json& failed,
                      const json* pod) {
    // The kubelet ends a pod past its activeDeadlineSeconds as Failed, reason DeadlineExceeded (the
    // Job then fails with BackoffLimitExceeded); a Job's own deadline says so on the Job.
    const bool deadline = failed.value("reason", "") == "DeadlineExceeded" ||
                          (pod != nullptr && pod->value("status", json::object()).value("reason", "") == "DeadlineExceeded");
    const int code = exit_code_of_pod(pod).value_or(1);
    std::string reason, cause;
    if (deadline) {
      const std::string limit = spec.timeout ? util::format_duration(*spec.timeout) : "its activeDeadlineSeconds";
      reason = "timed out after " + limit;
      cause = "timing out after " + limit;
    } else {
      reason = fmt::format("failed with exit code {}", code);
      cause = fmt::format("exit code {}", code);
    }
    const int retry = run.attempt;  // retry number that follows attempt `run.attempt`
    if (retry <= spec.max_retries) {
      // The API's times are whole seconds: the end of that second keeps the retry no earlier
      // than the manifest's backoff (and at most 1 s after it).
      const std::int64_t failed_at = time_ms(failed, "lastTransitionTime", util::now_unix_ms()) + 999;
      const auto delay = retry_delay(spec, retry);
      if (util::now_unix_ms() < failed_at + delay.count()) {
        const std::string waiting = fmt::format("waiting for {} on {}: retry {} of {} in {} (after {})", wanted(spec),
                                                cloud_.name, retry, spec.max_retries, util::format_duration(delay), cause);
        if (waiting != run.status_reason) (void)store.update_status(run.id, RunStatus::queued, waiting);
        return;
      }
      next_attempt(api, store, run, spec, reason);
      return;
    }
    if (deadline) {
      finish(api, store, run, RunStatus::timeout, reason, util::to_int(ExitCode::timeout));
    } else {
      finish(api, store, run, RunStatus::failed, reason, code);
    }
  }

  // A new Job for the next attempt; the claim on the remote id makes one process do it.
  void next_attempt(KubernetesApi& api, StateStore& store, const Run& run, const RunSpec& spec, const std::string& why) {
    const std::string claim = "claim:" + run.remote_id;
    auto claimed = store.replace_remote_id(run.id, run.remote_id, claim);
    if (!claimed || !*claimed) return;
    // The run's Secret stays until the run ends: the new Job reads it as the first did, so a retry
    // needs no secret values here.
    auto secret = api.call("GET", api.collection("secrets") + "/" + secret_name(run.id));
    const bool has_secrets = secret && secret->ok();
    Run claimed_run = run;
    claimed_run.remote_id = claim;
    auto submitted = submit(api, store, claimed_run, spec, run.attempt + 1, has_secrets);
    if (!submitted) finish(api, store, run, RunStatus::failed, why + "; starting the retry failed: " + submitted.error().message,
                           util::to_int(submitted.error().code));
  }

  CloudConfig cloud_;
  KubernetesSettings settings_;
  std::optional<Config> config_;
  mutable std::shared_ptr<KubernetesApi> api_;
  // Counts the refreshes of every kubernetes backend of this process (a command may refresh through
  // another instance than the one it opened the log with): logs fetch again after each.
  std::shared_ptr<std::atomic<std::uint64_t>> refreshes_ = process_refreshes();
};

}  // namespace

util::Result<std::string> pod_image(const RunSpec& spec, const KubernetesSettings& settings, const std::string& cloud) {
  if (!spec.image.empty()) {
    if (spec.image_registry.empty() || spec.image_repository.empty() || spec.image_digest.empty()) {
      return util::make_error(ExitCode::usage, fmt::format("function '{}' runs in image '{}', which is not in the registry "
                                                           "of cloud '{}'; run 'gpurun deploy' first",
                                                           spec.function, spec.image, cloud));
    }
    return fmt::format("{}/{}@{}", registry_host(spec.image_registry), spec.image_repository, spec.image_digest);
  }
  if (settings.default_image.empty()) {
    return util::make_error(ExitCode::usage, fmt::format("function '{}' has no image and cloud '{}' sets no default_image; "
                                                         "add default_image: \"ubuntu:22.04\" (or the image its command "
                                                         "needs) to the cloud",
                                                         spec.function, cloud));
  }
  return settings.default_image;
}


util::Result<std::unique_ptr<Backend>> make_kubernetes_backend(const CloudConfig* cloud, const Config* config) {
  if (cloud == nullptr || cloud->backend != "kubernetes") {
    return util::make_error(ExitCode::usage, "the kubernetes backend needs a cloud with backend: kubernetes");
  }
  return std::unique_ptr<Backend>(std::make_unique<KubernetesBackend>(*cloud, settings_of(*cloud), config));
}

}  // namespace gpurun::cloud
