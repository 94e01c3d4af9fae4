#include "cloud/plan/config.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <set>

#include "manifest/checker.hpp"
#include "manifest/yaml_tree.hpp"
#include "util/files.hpp"
#include "util/strings.hpp"

extern char** environ;  // NOLINT

namespace gpurun::cloud {

using manifest::Checker;
using manifest::join_path;
using manifest::YamlNode;

const CloudConfig* Config::find_cloud(std::string_view name) const {
  for (const auto& c : clouds) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

const Secret* Config::find_secret(std::string_view name) const {
  for (const auto& s : secrets) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

std::vector<std::string> Config::cloud_names() const {
  std::vector<std::string> names;
  for (const auto& c : clouds) names.push_back(c.name);
  return names;
}

std::vector<const CloudConfig*> Config::placement_order() const {
  std::vector<const CloudConfig*> order;
  if (const auto* d = find_cloud(default_cloud)) order.push_back(d);
  for (const auto& c : clouds) {
    if (c.name != default_cloud) order.push_back(&c);
  }
  return order;
}

namespace {

const char* env(const char* name) {
  const char* value = std::getenv(name);
  return (value != nullptr && *value != '\0') ? value : nullptr;
}

bool valid_cloud_name(std::string_view name) {
  if (name.empty() || name.size() > 63) return false;
  for (char c : name) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_')) return false;
  }
  return name.front() != '-' && name.front() != '_';
}

void parse_catalog(Checker& check, const YamlNode& node, gpu::Catalog& catalog) {
  if (!check.expect_map(node, "catalog")) return;
  for (const auto& [key, value] : node.entries) {
    const std::string path = join_path("catalog", key.value);
    if (!check.expect_map(value, path)) continue;
    check.check_keys(value, path, {"memory", "default", "max"});
    gpu::GpuType type;
    if (const auto* existing = catalog.find(key.value)) type = *existing;
    type.name = type.name.empty() ? key.value : type.name;
    if (const auto* memory = value.find("memory")) {
      type.memory_gb.clear();
      if (memory->is_scalar()) {
        if (auto gb = check.integer(*memory, path + ".memory")) type.memory_gb.push_back(static_cast<int>(*gb));
      } else if (check.expect_sequence(*memory, path + ".memory")) {
        for (std::size_t i = 0; i < memory->items.size(); ++i) {
          if (auto gb = check.integer(memory->items[i], fmt::format("{}.memory[{}]", path, i))) {
            type.memory_gb.push_back(static_cast<int>(*gb));
          }
        }
      }
      std::sort(type.memory_gb.begin(), type.memory_gb.end());
      if (type.memory_gb.empty() || type.memory_gb.front() <= 0) {
        check.error(*memory, path + ".memory", "give the memory sizes in GB, e.g. [40, 80]");
        continue;
      }
      type.default_memory_gb = type.memory_gb.front();
    } else if (type.memory_gb.empty()) {
      check.error(value, path, "a new GPU type needs 'memory' (sizes in GB, e.g. [40, 80])");
      continue;
    }
    if (const auto* def = value.find("default")) {
      if (auto gb = check.integer(*def, path + ".default")) {
        if (std::find(type.memory_gb.begin(), type.memory_gb.end(), *gb) == type.memory_gb.end()) {
          std::vector<std::string> sizes;
          for (int m : type.memory_gb) sizes.push_back(std::to_string(m));
          check.error(*def, path + ".default", fmt::format("the default must be one of the sizes ({} GB)", util::join_list(sizes)));
        } else {
          type.default_memory_gb = static_cast<int>(*gb);
        }
      }
    } else if (std::find(type.memory_gb.begin(), type.memory_gb.end(), type.default_memory_gb) == type.memory_gb.end()) {
      type.default_memory_gb = type.memory_gb.front();
    }
    if (const auto* max = value.find("max")) {
      if (auto count = check.integer(*max, path + ".max")) {
        if (*count < 1 || *count > 64) {
          check.error(*max, path + ".max", "the most GPUs per function must be between 1 and 64");
        } else {
          type.max_count = static_cast<int>(*count);
        }
      }
    }
    catalog.put(std::move(type));
  }
}

// The names of the backends in `backends`, for messages ("local, slurm").
std::vector<std::string> names_of(const BackendKeyParsers& backends) {
  std::vector<std::string> names;
  for (const auto& [name, parser] : backends) names.push_back(name);
  return names;
}

// backend: required (except for the cloud named local), one of `backends`. Returns its key
// parser; null when the backend is missing or unknown.
const BackendKeyParser* parse_cloud_backend(Checker& check, const YamlNode& value, const std::string& path,
                                            const BackendKeyParsers& backends, CloudConfig& cloud) {
  const auto names = names_of(backends);
  const YamlNode* backend = value.find("backend");
  if (backend == nullptr) {
    if (cloud.name != "local") {
      check.error(value, path, fmt::format("missing required key 'backend' ({})", util::join_list(names)));
    }
  } else {
    read_text_key(check, value, path, "backend", cloud.backend);
  }
  if (auto it = backends.find(cloud.backend); it != backends.end()) return &it->second;
  if (backend != nullptr && backend->is_scalar()) {
    const auto suggestion = util::did_you_mean(cloud.backend, names);
    check.error(*backend, path + ".backend",
                suggestion ? fmt::format("unknown backend '{}' (did you mean '{}'?)", cloud.backend, *suggestion)
                           : fmt::format("unknown backend '{}'; use {}", cloud.backend, util::join_list(names)));
  }
  return nullptr;
}

void check_registry_url(Checker& check, const YamlNode& value, const std::string& path) {
  const auto* registry = value.find("registry");
  if (registry == nullptr || !registry->is_scalar()) return;
  const auto& r = registry->value;
  if (r.rfind("http://", 0) != 0 && r.rfind("https://", 0) != 0) {
    check.error(*registry, path + ".registry", fmt::format("registry '{}' must be a URL: http://host:port or https://host", r));
  }
}

// gpus: a list of GPU offers ("A100:80:8").
void parse_cloud_gpus(Checker& check, const YamlNode& value, const std::string& path, const gpu::Catalog& catalog,
                      CloudConfig& cloud) {
  const auto* gpus = value.find("gpus");
  if (gpus == nullptr) return;
  cloud.gpus_declared = true;
  if (!check.expect_sequence(*gpus, path + ".gpus")) return;
  for (std::size_t i = 0; i < gpus->items.size(); ++i) {
    const std::string item_path = fmt::format("{}.gpus[{}]", path, i);
    auto s = check.string(gpus->items[i], item_path);
    if (!s) continue;
    auto offer = gpu::parse_offer(*s, catalog);
    if (!offer) {
      check.error(gpus->items[i], item_path, offer.error().message);
      continue;
    }
    cloud.gpus.push_back(*offer);
    cloud.gpus_as_written.push_back(*s);
  }
}

void parse_cloud(Checker& check, const YamlNode& key, const YamlNode& value, const gpu::Catalog& catalog,
                 const BackendKeyParsers& backends, CloudConfig& cloud) {
  const std::string path = join_path("clouds", key.value);
  cloud.name = key.value;
  cloud.line = key.line;
  if (!valid_cloud_name(key.value)) {
    check.error(key, path, fmt::format("invalid cloud name '{}'; use lower-case letters, digits, '-' and '_'", key.value));
  }
  if (value.is_null()) {
    if (auto it = backends.find(cloud.backend); it != backends.end()) it->second.parse(check, value, path, catalog, cloud);
    return;
  }
  if (!check.expect_map(value, path)) return;
  const BackendKeyParser* parser = parse_cloud_backend(check, value, path, backends, cloud);
  // The keys every cloud may have, and its backend's (any backend's while that is unknown).
  std::vector<std::string> keys = {"backend", "registry", "gpus"};
  for (const auto& [name, candidate] : backends) {
    if (parser == nullptr || parser == &candidate) keys.insert(keys.end(), candidate.keys.begin(), candidate.keys.end());
  }
  std::sort(keys.begin() + 3, keys.end());
  keys.erase(std::unique(keys.begin() + 3, keys.end()), keys.end());
  check.check_keys(value, path, keys);
  read_text_key(check, value, path, "registry", cloud.registry);
  check_registry_url(check, value, path);
  parse_cloud_gpus(check, value, path, catalog, cloud);
  if (parser != nullptr) parser->parse(check, value, path, catalog, cloud);
}

}  // namespace

util::Result<std::optional<std::string>> resolve_config_path(const std::optional<std::string>& explicit_path) {
  namespace fs = std::filesystem;
  auto must_exist = [](const std::string& p, std::string_view how) -> util::Result<std::optional<std::string>> {
    std::error_code ec;
    if (!fs::exists(p, ec)) {
      return util::make_error(util::ExitCode::usage,
                              fmt::format("config file '{}' ({}) does not exist; check the path or create it", p, how));
    }
    return std::optional<std::string>(p);
  };
  if (explicit_path) return must_exist(*explicit_path, "--config");
  if (const char* p = env("GPURUN_CONFIG")) return must_exist(p, "$GPURUN_CONFIG");
  std::string candidate;
  if (const char* xdg = env("XDG_CONFIG_HOME")) {
    candidate = fmt::format("{}/gpurun/config.yaml", xdg);
  } else if (const char* home = env("HOME")) {
    candidate = fmt::format("{}/.config/gpurun/config.yaml", home);
  }
  std::error_code ec;
  if (!candidate.empty() && fs::exists(candidate, ec)) return std::optional<std::string>(candidate);
  return std::optional<std::string>();
}

void read_text_key(Checker& check, const YamlNode& map, const std::string& path, std::string_view key, std::string& out) {
  if (const auto* n = map.find(key)) {
    if (auto s = check.string(*n, join_path(path, key))) out = *s;
  }
}

util::Result<Config> parse_config(std::string_view text, const std::string& path, std::vector<util::Diagnostic>& diagnostics,
                                  const BackendKeyParsers& backends) {
  const std::size_t before = diagnostics.size();
  Config config;
  config.path = path;
  auto doc = manifest::parse_yaml(text, path);
  diagnostics.insert(diagnostics.end(), doc.errors.begin(), doc.errors.end());
  Checker check(path, diagnostics);
  const YamlNode& root = doc.root;
  if (doc.errors.empty() && !root.is_null() && check.expect_map(root, "")) {
    check.check_keys(root, "", {"default_cloud", "any", "catalog", "clouds", "secrets"});
    if (const auto* catalog = root.find("catalog")) parse_catalog(check, *catalog, config.catalog);
    if (const auto* any = root.find("any")) {
      if (auto list = check.string_list(*any, "any")) {
        std::vector<std::string> pool;
        for (std::size_t i = 0; i < list->size(); ++i) {
          const auto* type = config.catalog.find((*list)[i]);
          if (type == nullptr) {
            check.error(any->items[i], fmt::format("any[{}]", i), gpu::unknown_type_message((*list)[i], config.catalog));
          } else {
            pool.push_back(type->name);
          }
        }
        if (list->empty()) check.error(*any, "any", "the 'any' pool needs at least one GPU type, e.g. [T4, A10G]");
        config.catalog.any_pool = pool;
      }
    }
    if (const auto* clouds = root.find("clouds")) {
      if (check.expect_map(*clouds, "clouds")) {
        for (const auto& [key, value] : clouds->entries) {
          CloudConfig cloud;
          parse_cloud(check, key, value, config.catalog, backends, cloud);
          if (cloud.name == "local" && cloud.backend != "local") {
            check.error(key, "clouds.local", "the cloud named 'local' always uses backend 'local'");
          }
          config.clouds.push_back(std::move(cloud));
        }
      }
    }
    if (const auto* def = root.find("default_cloud")) {
      if (auto name = check.string(*def, "default_cloud")) {
        config.default_cloud = *name;
        bool known = *name == "local";
        for (const auto& c : config.clouds) known = known || c.name == *name;
        if (!known) {
          std::vector<std::string> names = {"local"};
          for (const auto& c : config.clouds) names.push_back(c.name);
          const auto suggestion = util::did_you_mean(*name, names);
          check.error(*def, "default_cloud",
                      suggestion ? fmt::format("unknown cloud '{}' (did you mean '{}'?)", *name, *suggestion)
                                 : fmt::format("unknown cloud '{}'; define it under 'clouds:' or use one of: {}", *name,
                                               util::join(names, ", ")));
        }
      }
    }
    if (const auto* secrets = root.find("secrets")) {
      if (check.expect_secret_map(*secrets, "secrets")) {
        for (const auto& [key, value] : secrets->entries) {
          Secret secret;
          secret.name = key.value;
          const std::string spath = join_path("secrets", key.value);
          if (!value.is_null()) {
            if (!check.expect_secret_map(value, spath)) continue;
            for (const auto& [k, v] : value.entries) {
              if (v.is_null()) {
                secret.values.emplace_back(k.value, "");
              } else if (v.is_scalar()) {
                if (!v.value.empty() && v.value.size() < min_secret_bytes) {
                  check.error(v, join_path(spath, k.value),
                              fmt::format("the value is shorter than {} bytes (not shown); masking it in output would "
                                          "hide ordinary text: use the full secret, or leave it empty (\"\") and set {}{}",
                                          min_secret_bytes, secret_env_prefix(key.value), k.value));
                }
                secret.values.emplace_back(k.value, v.value);
              } else {
                // Never echo a secret's value, not even its shape beyond the kind.
                check.error(v, join_path(spath, k.value), "expected a string value; quote it (\"...\")");
              }
            }
          }
          config.secrets.push_back(std::move(secret));
        }
      }
    }
  }
  if (config.find_cloud("local") == nullptr) config.clouds.push_back(builtin_local_cloud());
  if (diagnostics.size() != before) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("{}: {} error{} in the config", path, diagnostics.size() - before,
                                        diagnostics.size() - before == 1 ? "" : "s"));
  }
  return config;
}

CloudConfig builtin_local_cloud() {
  CloudConfig local;
  local.name = "local";
  local.probe_gpus = true;
  return local;
}

util::Result<Config> load_config(const std::optional<std::string>& explicit_path, std::vector<util::Diagnostic>& diagnostics,
                                 const BackendKeyParsers& backends) {
  auto resolved = resolve_config_path(explicit_path);
  if (!resolved) return resolved.error();
  if (!resolved->has_value()) {
    Config config;
    config.clouds.push_back(builtin_local_cloud());
    return config;
  }
  const std::string& path = **resolved;
  std::string text;
  if (const int error = manifest::read_yaml_file(path, text); error != 0) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("cannot read config file '{}': {}; check its permissions", path, std::strerror(error)));
  }
  auto config = parse_config(text, path, diagnostics, backends);
  if (!config) return config;
  bool holds_secrets = false;
  for (const auto& s : config->secrets) {
    for (const auto& [k, v] : s.values) holds_secrets = holds_secrets || !v.empty();
  }
  struct stat st {};
  if (holds_secrets && ::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("config file '{}' holds secrets but others can read it (mode {:04o}); "
                                        "restrict it with: chmod 600 '{}'",
                                        path, st.st_mode & 07777, path));
  }
  return config;
}

std::string secret_env_prefix(std::string_view name) {
  std::string upper = util::to_upper(name);
  for (char& c : upper) {
    if (c == '-') c = '_';
  }
  return "GPURUN_SECRET_" + upper + "_";
}

std::vector<std::string> known_secret_names(const Config& config, const std::vector<std::string>& environ_entries) {
  std::vector<std::string> names;
  std::set<std::string> seen;
  for (const auto& s : config.secrets) {
    if (seen.insert(s.name).second) names.push_back(s.name);
  }
  static constexpr std::string_view prefix = "GPURUN_SECRET_";
  for (const auto& entry : environ_entries) {
    if (entry.rfind(prefix, 0) != 0) continue;
    const auto key = entry.substr(prefix.size(), entry.find('=') - prefix.size());
    // GPURUN_SECRET_A_B_C may be secret "a" (key B_C) or "a_b" (key C); offer every split.
    for (std::size_t pos = key.find('_'); pos != std::string::npos; pos = key.find('_', pos + 1)) {
      auto name = util::to_lower(key.substr(0, pos));
      if (seen.insert(name).second) names.push_back(name);
      std::string dashed = name;
      std::replace(dashed.begin(), dashed.end(), '_', '-');
      if (seen.insert(dashed).second) names.push_back(dashed);
    }
  }
  return names;
}

std::vector<std::pair<std::string, std::string>> secret_values(const Config& config, std::string_view name,
                                                               const std::vector<std::string>& environ_entries) {
  std::vector<std::pair<std::string, std::string>> values;
  if (const auto* secret = config.find_secret(name)) values = secret->values;
  const std::string prefix = secret_env_prefix(name);
  for (const auto& entry : environ_entries) {
    if (entry.rfind(prefix, 0) != 0) continue;
    const auto eq = entry.find('=');
    if (eq == std::string::npos || eq == prefix.size()) continue;
    const std::string key = entry.substr(prefix.size(), eq - prefix.size());
    const std::string value = entry.substr(eq + 1);
    bool replaced = false;
    for (auto& [k, v] : values) {
      if (k == key) {
        v = value;
        replaced = true;
      }
    }
    if (!replaced) values.emplace_back(key, value);
  }
  return values;
}

std::vector<std::string> process_environment() {
  std::vector<std::string> out;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) out.emplace_back(*e);
  return out;
}

}  // namespace gpurun::cloud
