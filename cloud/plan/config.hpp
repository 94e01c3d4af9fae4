#pragma once

#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gpu/catalog.hpp"
#include "gpu/spec.hpp"
#include "manifest/checker.hpp"
#include "manifest/yaml_tree.hpp"
#include "util/diagnostic.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// A backend's own settings of one cloud (e.g. SlurmSettings), parsed by its BackendKeyParser.
struct BackendSettings {
  virtual ~BackendSettings() = default;
};

// One cloud: where functions can run (a backend plus its settings) and what GPUs it offers.
struct CloudConfig {
  std::string name;
  std::string backend = "local";  // a name in the backend registry (cloud/backend/registry.cpp)
  std::string registry;           // where this cloud's images live
  std::vector<gpu::GpuSlot> gpus;     // what it offers (type, memory variant, most per function)
  std::vector<std::string> gpus_as_written;
  bool gpus_declared = false;     // `gpus:` given
  bool probe_gpus = false;        // its offers are this machine's probed devices (set by its backend)
  bool discover_gpus = false;     // its offers come from its backend at plan time (Backend::discover_offers)
  std::shared_ptr<const BackendSettings> settings;  // the backend's own keys; may be null
  int line = 0;
};

// A backend's config keys: `keys` are allowed besides backend/registry/gpus; `parse` checks them
// (diagnostics at their positions) and stores the backend's settings in cloud.settings. It runs
// after the common keys, also for a cloud given without keys (`value` null then).
struct BackendKeyParser {
  std::vector<std::string> keys;
  std::function<void(manifest::Checker& check, const manifest::YamlNode& value, const std::string& path,
                     const gpu::Catalog& catalog, CloudConfig& cloud)>
      parse;
};

// The key parser of each backend, by `backend:` name (the registry has the one map of them).
using BackendKeyParsers = std::map<std::string, BackendKeyParser>;

// A named set of environment variables given to the functions that list it. Values are
// secret: never printed, logged or stored.
struct Secret {
  std::string name;
  std::vector<std::pair<std::string, std::string>> values;
};

struct Config {
  std::string path;  // the file read; empty when none
  std::string default_cloud = "local";
  gpu::Catalog catalog = gpu::Catalog::builtin();
  std::vector<CloudConfig> clouds;  // config order; `local` always present (appended if absent)
  std::vector<Secret> secrets;

  const CloudConfig* find_cloud(std::string_view name) const;
  const Secret* find_secret(std::string_view name) const;
  std::vector<std::string> cloud_names() const;
  // Clouds in placement order: default_cloud first, then config order.
  std::vector<const CloudConfig*> placement_order() const;
};

// Which file to read: `explicit_path` (--config), else $GPURUN_CONFIG, else
// $XDG_CONFIG_HOME/gpurun/config.yaml, else ~/.config/gpurun/config.yaml. nullopt: no config.
// A path named explicitly (flag or variable) that does not exist is an error (exit 2).
util::Result<std::optional<std::string>> resolve_config_path(const std::optional<std::string>& explicit_path);

// Parses config text; problems go to `diagnostics` (file:line:col) and make the result an
// Error (exit 2); a secret value shorter than min_secret_bytes is one (named, never shown). Secret
// values may also come from GPURUN_SECRET_<NAME>_<KEY> variables.
util::Result<Config> parse_config(std::string_view text, const std::string& path, std::vector<util::Diagnostic>& diagnostics,
                                  const BackendKeyParsers& backends);

// Resolves and reads the config (no file: the built-in defaults with only `local`). A file
// holding secrets that group/others can read is refused with the chmod 600 fix.
util::Result<Config> load_config(const std::optional<std::string>& explicit_path, std::vector<util::Diagnostic>& diagnostics,
                                 const BackendKeyParsers& backends);

// The cloud `local` every config has (added when the file names none): this machine.
CloudConfig builtin_local_cloud();

// Reads the string key `key` of `map` into `out` when present (a non-string is an error at `path`.key).
void read_text_key(manifest::Checker& check, const manifest::YamlNode& map, const std::string& path, std::string_view key,
                   std::string& out);

// The shortest secret value accepted (in bytes): masking a shorter one would hide ordinary output.
inline constexpr std::size_t min_secret_bytes = 4;

// The environment variable prefix for secret `name`: GPURUN_SECRET_<NAME>_ (upper case, '-' -> '_').
std::string secret_env_prefix(std::string_view name);

// Names the manifest may list under `secrets:`: the config's secrets plus every name that
// GPURUN_SECRET_<NAME>_<KEY> variables in `environ_entries` ("KEY=VALUE" strings) can stand for.
std::vector<std::string> known_secret_names(const Config& config, const std::vector<std::string>& environ_entries);

// The variables of secret `name`: the config's values, overridden or extended by
// GPURUN_SECRET_<NAME>_<KEY> variables. Empty when the secret is defined nowhere.
std::vector<std::pair<std::string, std::string>> secret_values(const Config& config, std::string_view name,
                                                               const std::vector<std::string>& environ_entries);

// The process environment as "KEY=VALUE" strings.
std::vector<std::string> process_environment();

}  // namespace gpurun::cloud
