#include "cloud/backend/kubernetes/kubernetes_objects.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <ctime>
#include <regex>

#include "gpu/discovery.hpp"
#include "util/sha256.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace {

using json = nlohmann::json;

constexpr std::size_t max_name = 63;

// `text` cut to 54 characters + '-' + 8 hex digits of its SHA-256 when longer than 63.
std::string fit(std::string text, std::string_view whole, bool (*ok_end)(char)) {
  if (text.size() <= max_name) return text;
  const std::string hash = util::sha256_digest(whole).substr(7, 8);
  text.resize(max_name - hash.size() - 1);
  while (!text.empty() && !ok_end(text.back())) text.pop_back();
  return text + "-" + hash;
}

bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool any_alnum(char c) { return lower_alnum(c) || (c >= 'A' && c <= 'Z'); }

std::string cores_quantity(double cores) {
  const auto milli = static_cast<long long>(std::llround(cores * 1000));
  return milli % 1000 == 0 ? std::to_string(milli / 1000) : std::to_string(milli) + "m";
}

json labels(const RunSpec& spec, const std::string& run_id, int attempt) {
  return json{{"app.kubernetes.io/managed-by", "gpurun"},
              {"gpurun.dev/app", label_value(spec.app)},
              {"gpurun.dev/function", label_value(spec.function)},
              {"gpurun.dev/run", label_value(run_id)},
              {"gpurun.dev/attempt", std::to_string(attempt)}};
}

json toleration_json(const Toleration& t) {
  json out = {{"operator", t.op}};
  if (!t.key.empty()) out["key"] = t.key;
  if (!t.value.empty()) out["value"] = t.value;
  if (!t.effect.empty()) out["effect"] = t.effect;
  if (t.toleration_seconds) out["tolerationSeconds"] = *t.toleration_seconds;
  return out;
}

// Kubernetes expands $(VAR) in a container's command, args and env values and turns $$ into $:
// every '$' doubled keeps the text verbatim.
std::string verbatim(std::string_view text) {
  std::string out;
  for (char c : text) {
    out += c;
    if (c == '$') out += '$';
  }
  return out;
}

json container_json(const RunSpec& spec, const JobRequest& request) {
  json env = json::array();
  for (const auto& [name, value] : spec.env) env.push_back({{"name", name}, {"value", verbatim(value)}});
  const std::pair<const char*, std::string> gpurun_vars[] = {{"GPURUN_RUN_ID", request.run_id},
                                                             {"GPURUN_APP", spec.app},
                                                             {"GPURUN_FUNCTION", spec.function},
                                                             {"GPURUN_ATTEMPT", std::to_string(request.attempt)}};
  for (const auto& [name, value] : gpurun_vars) env.push_back({{"name", name}, {"value", value}});
  json command = json::array();
  for (const auto& arg : spec.argv) command.push_back(verbatim(arg));
  json container = {{"name", "main"}, {"image", request.image}, {"command", command}, {"env", env}};
  if (!request.secret.empty()) container["envFrom"] = json::array({{{"secretRef", {{"name", request.secret}}}}});
  // An image's WorkingDir; a host function starts in the manifest's directory, as on other backends.
  if (!spec.image_workdir.empty()) {
    container["workingDir"] = spec.image_workdir;
  } else if (spec.image.empty() && !spec.cwd.empty()) {
    container["workingDir"] = spec.cwd;
  }
  // Memory's limit is its request (a run past it is OOM-killed at the size it asked, never evicted
  // for using more than it asked); cpu has no limit (a limit would throttle, not protect).
  json resources = json::object();
  json limits = json::object();
  json requests = json::object();
  if (request.gpu_count > 0) limits["nvidia.com/gpu"] = std::to_string(request.gpu_count);
  if (request.cpu) requests["cpu"] = cores_quantity(*request.cpu);
  if (request.memory_bytes) {
    requests["memory"] = std::to_string(*request.memory_bytes);
    limits["memory"] = requests["memory"];
  }
  if (!limits.empty()) resources["limits"] = limits;
  if (!requests.empty()) resources["requests"] = requests;
  container["resources"] = resources;
  json mounts = json::array({{{"name", "dshm"}, {"mountPath", "/dev/shm"}}});
  for (std::size_t i = 0; i < request.claims.size(); ++i) {
    mounts.push_back({{"name", fmt::format("volume-{}", i)}, {"mountPath", request.claims[i].first}});
  }
  container["volumeMounts"] = mounts;
  return container;
}

json pod_spec_json(const RunSpec& spec, const KubernetesSettings& settings, const JobRequest& request) {
  json volumes = json::array({{{"name", "dshm"}, {"emptyDir", {{"medium", "Memory"}}}}});
  for (std::size_t i = 0; i < request.claims.size(); ++i) {
    volumes.push_back({{"name", fmt::format("volume-{}", i)},
                       {"persistentVolumeClaim", {{"claimName", request.claims[i].second}}}});
  }
  json pod = {{"restartPolicy", "Never"},
              {"terminationGracePeriodSeconds", (spec.kill_grace.count() + 999) / 1000},
              {"enableServiceLinks", false},
              {"containers", json::array({container_json(spec, request)})},
              {"volumes", volumes}};
  if (request.gpu_count > 0 && !request.gpu_products.empty()) {
    json expression = {{"key", settings.gpu_label}, {"operator", "In"}, {"values", request.gpu_products}};
    pod["affinity"] = {{"nodeAffinity",
                        {{"requiredDuringSchedulingIgnoredDuringExecution",
                          {{"nodeSelectorTerms", json::array({{{"matchExpressions", json::array({expression})}}})}}}}}};
  }
  if (request.gpu_count > 0 && !settings.tolerations.empty()) {
    json tolerations = json::array();
    for (const auto& t : settings.tolerations) tolerations.push_back(toleration_json(t));
    pod["tolerations"] = tolerations;
  }
  if (!settings.image_pull_secret.empty()) {
    pod["imagePullSecrets"] = json::array({{{"name", settings.image_pull_secret}}});
  }
  return pod;
}

}  // namespace

std::string kubernetes_name(std::string_view text) {
  std::string out;
  for (char c : util::to_lower(text)) {
    if (lower_alnum(c)) {
      out += c;
    } else if (!out.empty() && out.back() != '-') {
      out += '-';
    }
  }
  while (!out.empty() && out.back() == '-') out.pop_back();
  if (out.empty()) out = "x";
  return fit(out, text, lower_alnum);
}

std::string label_value(std::string_view text) {
  std::string out;
  for (char c : text) out += any_alnum(c) || c == '-' || c == '_' || c == '.' ? c : '-';
  while (!out.empty() && !any_alnum(out.front())) out.erase(out.begin());
  while (!out.empty() && !any_alnum(out.back())) out.pop_back();
  return fit(out, text, any_alnum);
}

std::string job_name(const std::string& app, const std::string& function, const std::string& run_id, int attempt) {
  // The run id and attempt come last and must survive truncation: the hash keeps names unique.
  std::string tail = fmt::format("-{}-{}", util::to_lower(run_id), attempt);
  std::string head = kubernetes_name(fmt::format("gpurun-{}-{}", app, function));
  if (head.size() + tail.size() > max_name) {
    const std::string hash = util::sha256_digest(head).substr(7, 6);
    head.resize(max_name - tail.size() - hash.size() - 1);
    while (!head.empty() && head.back() == '-') head.pop_back();
    head += "-" + hash;
  }
  return kubernetes_name(head + tail);
}

std::string secret_name(const std::string& run_id) { return kubernetes_name("gpurun-" + run_id + "-secrets"); }

std::string claim_name(const std::string& app, const std::string& volume) {
  return kubernetes_name(fmt::format("gpurun-{}-{}", app, volume));
}

std::string run_selector(const std::string& run_id) { return "gpurun.dev/run=" + label_value(run_id); }

nlohmann::json job_json(const RunSpec& spec, const KubernetesSettings& settings, const JobRequest& request) {
  json pod_spec = pod_spec_json(spec, settings, request);
  // The timeout is the POD's deadline: the kubelet kills the containers and the pod stays (Failed,
  // reason DeadlineExceeded) with its log. A Job's own deadline would make the Job controller
  // delete the pod, and its log with it.
  if (spec.timeout) pod_spec["activeDeadlineSeconds"] = std::max<long long>(1, (spec.timeout->count() + 999) / 1000);
  json job_spec = {{"backoffLimit", 0},
                   {"template",
                    {{"metadata", {{"labels", labels(spec, request.run_id, request.attempt)}}}, {"spec", pod_spec}}}};
  return json{{"apiVersion", "batch/v1"},
              {"kind", "Job"},
              {"metadata",
               {{"name", job_name(spec.app, spec.function, request.run_id, request.attempt)},
                {"namespace", request.namespace_name},
                {"labels", labels(spec, request.run_id, request.attempt)}}},
              {"spec", job_spec}};
}

nlohmann::json secret_json(const std::string& name, const std::string& namespace_name, const std::string& run_id,
                           const SecretValues& secrets) {
  json data = json::object();
  for (const auto& [secret, values] : secrets) {
    for (const auto& [key, value] : values) data[key] = value;
  }
  return json{{"apiVersion", "v1"},
              {"kind", "Secret"},
              {"type", "Opaque"},
              {"metadata",
               {{"name", name},
                {"namespace", namespace_name},
                {"labels", {{"app.kubernetes.io/managed-by", "gpurun"}, {"gpurun.dev/run", label_value(run_id)}}}}},
              {"stringData", data}};
}

nlohmann::json claim_json(const std::string& name, const std::string& namespace_name, const std::string& app,
                          const KubernetesSettings& settings) {
  json spec = {{"accessModes", json::array({settings.volume_access_mode})},
               {"resources", {{"requests", {{"storage", settings.volume_size}}}}}};
  if (!settings.storage_class.empty()) spec["storageClassName"] = settings.storage_class;
  return json{{"apiVersion", "v1"},
              {"kind", "PersistentVolumeClaim"},
              {"metadata",
               {{"name", name},
                {"namespace", namespace_name},
                {"labels", {{"app.kubernetes.io/managed-by", "gpurun"}, {"gpurun.dev/app", label_value(app)}}}}},
              {"spec", spec}};
}

std::string scheduling_reason(std::string_view message, int gpu_count) {
  const std::string text(message);
  if (text.find("Insufficient nvidia.com/gpu") != std::string::npos) {
    return fmt::format("no node has {} free", gpu_count);
  }
  if (text.find("node affinity") != std::string::npos || text.find("node selector") != std::string::npos) {
    if (text.find("Insufficient") == std::string::npos && text.find("taint") == std::string::npos) {
      return "no node has the asked GPU type";
    }
  }
  static const std::regex insufficient(R"(Insufficient (cpu|memory))");
  if (std::smatch match; std::regex_search(text, match, insufficient)) {
    return fmt::format("no node has enough {} free", match[1].str());
  }
  if (text.find("taint") != std::string::npos) return "the fitting nodes have taints the pod does not tolerate";
  std::string trimmed(util::trim(text));
  while (!trimmed.empty() && trimmed.back() == '.') trimmed.pop_back();
  return trimmed;
}

std::string pod_waiting_reason(const nlohmann::json& pod, int gpu_count) {
  const json& status = pod.value("status", json::object());
  for (const auto& container : status.value("containerStatuses", json::array())) {
    const json& waiting = container.value("state", json::object()).value("waiting", json::object());
    const std::string reason = waiting.value("reason", "");
    if (reason == "ErrImagePull" || reason == "ImagePullBackOff" || reason == "InvalidImageName") {
      std::string message = waiting.value("message", "");
      return fmt::format("cannot pull image {} ({}){}", container.value("image", ""), reason,
                         message.empty() ? "" : ": " + message);
    }
  }
  for (const auto& condition : status.value("conditions", json::array())) {
    if (condition.value("type", "") == "PodScheduled" && condition.value("status", "") == "False") {
      return scheduling_reason(condition.value("message", condition.value("reason", "")), gpu_count);
    }
  }
  return "";
}

namespace {

int gpu_quantity(const json& resources) {
  if (!resources.is_object() || !resources.contains("nvidia.com/gpu")) return 0;
  const json& value = resources["nvidia.com/gpu"];
  if (value.is_number_integer()) return value.get<int>();
  if (value.is_string()) return static_cast<int>(util::parse_uint(value.get<std::string>()).value_or(0));
  return 0;
}

// GPUs held on each node by the pods bound there that have not ended.
std::map<std::string, int> gpus_in_use(const json& pods) {
  std::map<std::string, int> used;
  for (const auto& pod : pods) {
    const std::string phase = pod.value("status", json::object()).value("phase", "");
    const json& spec = pod.value("spec", json::object());
    const std::string node = spec.value("nodeName", "");
    if (node.empty() || phase == "Succeeded" || phase == "Failed") continue;
    for (const auto& container : spec.value("containers", json::array())) {
      used[node] += gpu_quantity(container.value("resources", json::object()).value("limits", json::object()));
    }
  }
  return used;
}

}  // namespace

std::vector<NodeGpus> node_gpus(const json& nodes, const json& pods, const KubernetesSettings& settings,
                                const gpu::Catalog* catalog) {
  std::vector<NodeGpus> out;
  for (const auto& product : settings.gpu_products) out.push_back({product.type, product.memory_gb, 0, 0});
  const auto used = gpus_in_use(pods);
  for (const auto& node : nodes) {
    const json& labels = node.value("metadata", json::object()).value("labels", json::object());
    const std::string value = labels.value(settings.gpu_label, "");
    const int total = gpu_quantity(node.value("status", json::object()).value("allocatable", json::object()));
    if (value.empty() || total == 0) continue;
    auto in_use = used.find(node.value("metadata", json::object()).value("name", ""));
    const int free = std::max(0, total - (in_use == used.end() ? 0 : in_use->second));
    auto named = std::find_if(settings.gpu_products.begin(), settings.gpu_products.end(), [&](const GpuProduct& p) {
      return std::find(p.values.begin(), p.values.end(), value) != p.values.end();
    });
    std::optional<std::size_t> slot;
    if (named != settings.gpu_products.end()) {
      slot = static_cast<std::size_t>(named - settings.gpu_products.begin());
    } else if (catalog != nullptr) {  // a type only the node's label names (offers without gpus:)
      auto type = node_gpu_type(node, settings, *catalog);
      if (!type) continue;
      auto same = std::find_if(out.begin() + static_cast<std::ptrdiff_t>(settings.gpu_products.size()), out.end(),
                               [&](const NodeGpus& g) { return g.type == type->type && g.memory_gb == type->memory_gb; });
      slot = static_cast<std::size_t>(same - out.begin());
      if (same == out.end()) out.push_back({type->type, type->memory_gb, 0, 0});
    }
    if (!slot) continue;
    out[*slot].total += total;
    out[*slot].free += free;
  }
  return out;
}

namespace {

// `value` without a vendor prefix ("NVIDIA-", "Tesla-", GKE's "nvidia-tesla-"), any case.
std::string_view without_vendor(std::string_view value) {
  for (bool stripped = true; stripped;) {
    stripped = false;
    for (std::string_view prefix : {"nvidia-", "nvidia ", "tesla-", "tesla "}) {
      if (value.size() > prefix.size() && util::iequals(value.substr(0, prefix.size()), prefix)) {
        value.remove_prefix(prefix.size());
        stripped = true;
      }
    }
  }
  return value;
}

// A variant of `type` holding `memory_mib` (0: unknown -> the catalog's default).
std::optional<int> variant_of(const gpu::GpuType& type, std::uint64_t memory_mib) {
  if (memory_mib == 0) return type.default_memory_gb;
  if (auto mapped = gpu::map_device_name(type.name, memory_mib << 20); mapped && util::iequals(mapped->first, type.name)) {
    return mapped->second;
  }
  // Types the device table does not know: the smallest variant at least as large (1 GB slack).
  for (int gb : type.memory_gb) {
    if (static_cast<std::uint64_t>(gb) * 1024 + 1024 >= memory_mib) return gb;
  }
  return std::nullopt;
}

// A catalog type (and variant when the name carries one) for a label value.
std::optional<std::pair<const gpu::GpuType*, int>> type_of_value(std::string_view value, std::uint64_t memory_mib,
                                                                 const gpu::Catalog& catalog) {
  const std::string bare(without_vendor(value));
  std::string spaced = bare;  // labels spell the driver's "H100 80GB HBM3" as "H100-80GB-HBM3"
  std::replace(spaced.begin(), spaced.end(), '-', ' ');
  for (const auto& name : {bare, spaced}) {
    if (auto mapped = gpu::map_device_name(name, memory_mib << 20)) {
      if (const auto* type = catalog.find(mapped->first)) return std::pair{type, mapped->second};
    }
  }
  if (const auto* type = catalog.find(bare)) return std::pair{type, 0};
  static const std::regex sized(R"(^(.+)-(\d+)gb$)", std::regex::icase);  // GKE: nvidia-a100-80gb
  if (std::smatch m; std::regex_match(bare, m, sized)) {
    if (const auto* type = catalog.find(m[1].str())) {
      const int gb = std::stoi(m[2].str());
      if (std::find(type->memory_gb.begin(), type->memory_gb.end(), gb) != type->memory_gb.end()) return std::pair{type, gb};
    }
  }
  return std::nullopt;
}

bool in_range(int gb, int min_gb, int max_gb) { return (min_gb == 0 || gb >= min_gb) && (max_gb == 0 || gb <= max_gb); }

}  // namespace

std::optional<gpu::GpuSlot> node_gpu_type(const nlohmann::json& node, const KubernetesSettings& settings,
                                          const gpu::Catalog& catalog, std::string* why) {
  const json& labels = node.value("metadata", json::object()).value("labels", json::object());
  const std::string value = labels.value(settings.gpu_label, "");
  const int count = gpu_quantity(node.value("status", json::object()).value("allocatable", json::object()));
  if (count == 0) return std::nullopt;
  const std::string name = node.value("metadata", json::object()).value("name", "");
  if (value.empty()) {
    if (why != nullptr) *why = fmt::format("node {} has {} nvidia.com/gpu but no label {}", name, count, settings.gpu_label);
    return std::nullopt;
  }
  const std::uint64_t memory_mib = util::parse_uint(labels.value("nvidia.com/gpu.memory", "")).value_or(0);
  for (const auto& product : settings.gpu_products) {
    if (std::find(product.values.begin(), product.values.end(), value) == product.values.end()) continue;
    const auto* type = catalog.find(product.type);
    if (type == nullptr) continue;
    auto gb = product.memory_gb != 0 ? std::optional<int>(product.memory_gb) : variant_of(*type, memory_mib);
    if (gb) return gpu::GpuSlot{type->name, *gb, count};
  }
  if (auto found = type_of_value(value, memory_mib, catalog)) {
    auto gb = found->second != 0 ? std::optional<int>(found->second) : variant_of(*found->first, memory_mib);
    if (gb) return gpu::GpuSlot{found->first->name, *gb, count};
  }
  if (why != nullptr) {
    *why = fmt::format("node {}: {}={} is no GPU type of the catalog; map it in gpu_products (e.g. T4: {})", name,
                       settings.gpu_label, value, value);
  }
  return std::nullopt;
}

std::vector<gpu::GpuSlot> node_offers(const nlohmann::json& nodes, const KubernetesSettings& settings,
                                      const gpu::Catalog& catalog, std::vector<std::string>& skipped) {
  std::vector<gpu::GpuSlot> offers;
  for (const auto& node : nodes) {
    std::string why;
    auto slot = node_gpu_type(node, settings, catalog, &why);
    if (!slot) {
      if (!why.empty()) skipped.push_back(why);
      continue;
    }
    auto same = std::find_if(offers.begin(), offers.end(),
                             [&](const gpu::GpuSlot& o) { return o.type == slot->type && o.memory_gb == slot->memory_gb; });
    if (same == offers.end()) {
      offers.push_back(*slot);
    } else {
      same->count = std::max(same->count, slot->count);
    }
  }
  const auto rank = [&](const gpu::GpuSlot& o) {
    const auto& types = catalog.types();
    auto at = std::find_if(types.begin(), types.end(), [&](const gpu::GpuType& t) { return t.name == o.type; });
    return std::pair{at - types.begin(), o.memory_gb};
  };
  std::sort(offers.begin(), offers.end(), [&](const auto& a, const auto& b) { return rank(a) < rank(b); });
  return offers;
}

std::vector<std::string> node_label_values(const nlohmann::json& nodes, const KubernetesSettings& settings,
                                           const gpu::Catalog& catalog, const std::string& type, int min_gb, int max_gb) {
  std::vector<std::string> values;
  for (const auto& node : nodes) {
    auto slot = node_gpu_type(node, settings, catalog);
    if (!slot || !util::iequals(slot->type, type) || !in_range(slot->memory_gb, min_gb, max_gb)) continue;
    values.push_back(node.value("metadata", json::object()).value("labels", json::object()).value(settings.gpu_label, ""));
  }
  std::sort(values.begin(), values.end());
  values.erase(std::unique(values.begin(), values.end()), values.end());
  return values;
}

std::string gpu_shortage_words(int count, const std::optional<NodeGpus>& gpus) {
  if (gpus && gpus->total > 0 && gpus->free == 0) return fmt::format("all {} in use", gpus->total);
  return fmt::format("no node has {} free", count);
}

std::optional<int> start_error_code(std::string_view reason, std::string_view message) {
  if (reason != "StartError" && reason != "ContainerCannotRun") return std::nullopt;
  const std::string text = util::to_lower(message);
  if (text.find("permission denied") != std::string::npos) return 126;
  if (text.find("not found") != std::string::npos || text.find("no such file") != std::string::npos) return 127;
  return std::nullopt;
}

std::optional<std::int64_t> parse_rfc3339_ms(std::string_view text) {
  static const std::regex pattern(R"(^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$)");
  std::match_results<std::string_view::const_iterator> m;
  if (!std::regex_match(text.begin(), text.end(), m, pattern)) return std::nullopt;
  std::tm tm{};
  tm.tm_year = std::stoi(m[1].str()) - 1900;
  tm.tm_mon = std::stoi(m[2].str()) - 1;
  tm.tm_mday = std::stoi(m[3].str());
  tm.tm_hour = std::stoi(m[4].str());
  tm.tm_min = std::stoi(m[5].str());
  tm.tm_sec = std::stoi(m[6].str());
  std::int64_t ms = static_cast<std::int64_t>(timegm(&tm)) * 1000;
  if (m[7].matched) ms += std::stoi((m[7].str().substr(1) + "000").substr(0, 3));
  if (const std::string zone = m[8].str(); zone != "Z") {
    const int minutes = std::stoi(zone.substr(1, 2)) * 60 + std::stoi(zone.substr(4, 2));
    ms -= (zone[0] == '+' ? 1 : -1) * static_cast<std::int64_t>(minutes) * 60'000;
  }
  return ms;
}

std::string format_rfc3339(std::int64_t unix_ms) {
  const std::time_t seconds = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  return fmt::format("{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
                     tm.tm_min, tm.tm_sec);
}

}  // namespace gpurun::cloud
