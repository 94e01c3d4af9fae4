#include "cloud/backend/slurm/slurm_settings.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "util/strings.hpp"

namespace gpurun::cloud {

using manifest::Checker;
using manifest::join_path;
using manifest::YamlNode;

namespace {

// The plain string keys, and sbatch_options.
void parse_texts(Checker& check, const YamlNode& value, const std::string& path, SlurmSettings& cloud) {
  const std::pair<std::string_view, std::string*> texts[] = {
      {"endpoint", &cloud.endpoint},       {"partition", &cloud.partition},
      {"log_dir", &cloud.log_dir},
      {"token_env", &cloud.token_env},     {"user", &cloud.user},
      {"api_version", &cloud.api_version}, {"account", &cloud.account},
      {"qos", &cloud.qos},                 {"constraint", &cloud.constraint},
      {"container_runtime", &cloud.container_runtime}, {"image_cache", &cloud.image_cache},
      {"node_gpurun", &cloud.node_gpurun}, {"volume_dir", &cloud.volume_dir},
  };
  for (const auto& [k, out] : texts) read_text_key(check, value, path, k, *out);
}

void check_container_runtime(Checker& check, const YamlNode& value, const std::string& path, const SlurmSettings& cloud) {
  const auto* runtime = value.find("container_runtime");
  if (runtime == nullptr || !runtime->is_scalar()) return;
  static const std::vector<std::string> runtimes = {"bubblewrap", "pyxis", "apptainer"};
  if (std::find(runtimes.begin(), runtimes.end(), cloud.container_runtime) != runtimes.end()) return;
  const auto suggestion = util::did_you_mean(cloud.container_runtime, runtimes);
  check.error(*runtime, path + ".container_runtime",
              suggestion ? fmt::format("unknown container runtime '{}' (did you mean '{}'?)", cloud.container_runtime, *suggestion)
                         : fmt::format("unknown container runtime '{}'; use bubblewrap, pyxis or apptainer",
                                       cloud.container_runtime));
}

// Paths on the cluster's nodes must be absolute.
void check_node_paths(Checker& check, const YamlNode& value, const std::string& path) {
  for (const char* name : {"image_cache", "node_gpurun", "volume_dir"}) {
    const auto* node = value.find(name);
    if (node != nullptr && node->is_scalar() && (node->value.empty() || node->value[0] != '/')) {
      check.error(*node, join_path(path, name), fmt::format("{} '{}' must be an absolute path on the cluster's nodes", name, node->value));
    }
  }
}

// A slurm cloud needs an endpoint (unix://, http:// or https://) and a partition.
void check_slurm_keys(Checker& check, const YamlNode& value, const std::string& path) {
  if (value.find("endpoint") == nullptr) check.error(value, path, "missing required key 'endpoint' (unix:///path.sock or http://host:port)");
  if (const auto* ep = value.find("endpoint"); ep != nullptr && ep->is_scalar()) {
    const auto& e = ep->value;
    if (e.rfind("unix://", 0) != 0 && e.rfind("http://", 0) != 0 && e.rfind("https://", 0) != 0) {
      check.error(*ep, path + ".endpoint", fmt::format("endpoint '{}' must start with unix://, http:// or https://", e));
    }
  }
  if (value.find("partition") == nullptr) check.error(value, path, "missing required key 'partition'");
}

// gres: GPU type (catalog name, optionally "-<memory>") -> the cluster's GRES type.
void parse_cloud_gres(Checker& check, const YamlNode& value, const std::string& path, const gpu::Catalog& catalog,
                      SlurmSettings& cloud) {
  const auto* gres = value.find("gres");
  if (gres == nullptr) return;
  auto map = check.string_map(*gres, path + ".gres");
  if (!map) return;
  for (const auto& [k, v] : *map) {
    const std::string base = catalog.find(k) != nullptr ? k : k.substr(0, k.rfind('-'));
    if (catalog.find(base) == nullptr) {
      for (const auto& [gk, gv] : gres->entries) {
        if (gk.value == k) check.error(gk, join_path(path + ".gres", k), gpu::unknown_type_message(k, catalog));
      }
    }
    cloud.gres.emplace_back(k, v);
  }
}

// The GRES type a slurm cloud sends for an offer: its "TYPE-NNGB" entry, else its "TYPE" entry,
// else the lower-case type (as the slurm backend does).
std::string gres_of(const CloudConfig& cloud, const gpu::GpuSlot& offer) {
  return slurm_gres_type(cloud, offer.type, offer.memory_gb);
}

// Two memory variants of one type must reach Slurm as different GRES types, else a request for
// the larger one could land on a node with the smaller (one variant alone may use the plain type).
void check_gres_variants(Checker& check, const YamlNode& value, const std::string& path, const CloudConfig& cloud) {
  const YamlNode* gpus = value.find("gpus");
  if (gpus == nullptr) return;
  for (std::size_t i = 0; i < cloud.gpus.size(); ++i) {
    for (std::size_t j = 0; j < i; ++j) {
      const auto& a = cloud.gpus[j];
      const auto& b = cloud.gpus[i];
      if (!util::iequals(a.type, b.type) || a.memory_gb == b.memory_gb) continue;
      const std::string gres = gres_of(cloud, a);
      if (gres != gres_of(cloud, b)) continue;
      const std::string first = fmt::format("{}-{}GB", a.type, a.memory_gb);
      const std::string second = fmt::format("{}-{}GB", b.type, b.memory_gb);
      check.error(*gpus, path + ".gpus",
                  fmt::format("cloud '{}' offers {} and {}, which Slurm would both receive as GRES type '{}', so a request for one "
                              "could land on the other; map each variant to its own GRES type, e.g. gres: {{{}: {}_{}g, {}: {}_{}g}}",
                              cloud.name, first, second, gres, first, util::to_lower(a.type), a.memory_gb, second,
                              util::to_lower(b.type), b.memory_gb));
    }
  }
}

const std::vector<std::string> slurm_keys = {
    "endpoint", "partition", "log_dir", "token_env", "user", "api_version", "gres", "account", "qos", "constraint",
    "sbatch_options", "container_runtime", "image_cache", "node_gpurun", "volume_dir"};

void parse_slurm_keys(Checker& check, const YamlNode& value, const std::string& path, const gpu::Catalog& catalog,
                      CloudConfig& cloud) {
  auto settings = std::make_shared<SlurmSettings>();
  cloud.settings = settings;
  if (value.is_null()) {
    check.error(value, path, "missing required key 'endpoint' (unix:///path.sock or http://host:port)");
    return;
  }
  parse_texts(check, value, path, *settings);
  check_container_runtime(check, value, path, *settings);
  check_node_paths(check, value, path);
  if (const auto* opts = value.find("sbatch_options")) {
    if (auto list = check.string_list(*opts, path + ".sbatch_options")) settings->sbatch_options = *list;
  }
  check_slurm_keys(check, value, path);
  parse_cloud_gres(check, value, path, catalog, *settings);
  check_gres_variants(check, value, path, cloud);
}

}  // namespace

const SlurmSettings& slurm_settings(const CloudConfig& cloud) {
  static const SlurmSettings defaults;
  const auto* settings = dynamic_cast<const SlurmSettings*>(cloud.settings.get());
  return settings != nullptr ? *settings : defaults;
}

BackendKeyParser slurm_config_keys() { return {slurm_keys, &parse_slurm_keys}; }

std::string slurm_gres_type(const CloudConfig& cloud, const std::string& type, int memory_gb) {
  const auto& gres = slurm_settings(cloud).gres;
  const std::string variant = fmt::format("{}-{}GB", type, memory_gb);
  for (const auto& [key, value] : gres) {
    if (memory_gb > 0 && util::iequals(key, variant)) return value;
  }
  for (const auto& [key, value] : gres) {
    if (util::iequals(key, type)) return value;
  }
  return util::to_lower(type);
}

}  // namespace gpurun::cloud
