#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gpu/catalog.hpp"
#include "gpu/spec.hpp"
#include "util/diagnostic.hpp"
#include "util/result.hpp"

namespace gpurun::manifest {
class Checker;
struct YamlNode;
}  // namespace gpurun::manifest

namespace gpurun::cloud {

// A backend's own settings, parsed by the backend's key parser (BackendKeyParser).
struct BackendSettings {
  virtual ~BackendSettings() = default;
};

// One cloud: where functions can run (a backend plus its settings) and what GPUs it offers.
struct CloudConfig {
  std::string name;
  std::string backend = "local";  // "local" or "slurm"
  std::string endpoint;           // slurm: unix:///path.sock or http(s)://host:port
  std::string partition;          // slurm partition
  std::string registry;           // where this cloud's images live
  std::vector<gpu::GpuSlot> gpus;     // what it offers (type, memory variant, most per function)
  std::vector<std::string> gpus_as_written;
  bool gpus_declared = false;     // local: `gpus:` given (else the devices are probed)
  std::string log_dir;            // slurm: shared by login and compute nodes
  std::string token_env = "SLURM_JWT";
  std::string user;               // slurm user; default $USER
  std::string api_version = "v0.0.38";
  std::vector<std::pair<std::string, std::string>> gres;  // catalog type[-memory] -> GRES type
  std::string account;
  std::string qos;
  std::string constraint;
  std::vector<std::string> sbatch_options;
  // slurm, functions with `image:`: how the node runs the image (bubblewrap via `gpurun node-exec`,
  // pyxis or apptainer), the node-local cache it pulls into, and gpurun's path on the nodes.
  std::string container_runtime = "bubblewrap";
  std::string image_cache;  // empty: /tmp/gpurun-<uid>/images on the node
  std::string node_gpurun;  // empty: the path of the gpurun that submits (a shared install)
  std::string volume_dir;   // slurm: where volumes live on the shared filesystem; empty: <log_dir>/volumes
  std::shared_ptr<const BackendSettings> settings;  // the backend's own keys (BackendKeyParser)
  int line = 0;
};

// A backend's config keys: `keys` are allowed besides backend/registry/gpus; `parse` checks them
// with positioned diagnostics and stores settings in cloud.settings (and may fill cloud.gpus).
struct BackendKeyParser {
  std::vector<std::string> keys;
  std::function<void(manifest::Checker&, const manifest::YamlNode& value, const std::string& path, const gpu::Catalog&,
                     CloudConfig&)>
      parse;
};

// TEMPORARY glue until the registry owns key parsers (issue 11): the parser of backend `name`, or
// null. The backend registry installs the lookup; parse_config asks it for backends it does not know.
using BackendKeyParserLookup = const BackendKeyParser* (*)(std::string_view name);
void set_backend_key_parser_lookup(BackendKeyParserLookup lookup);

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
util::Result<Config> parse_config(std::string_view text, const std::string& path, std::vector<util::Diagnostic>& diagnostics);

// Resolves and reads the config (no file: the built-in defaults with only `local`). A file
// holding secrets that group/others can read is refused with the chmod 600 fix.
util::Result<Config> load_config(const std::optional<std::string>& explicit_path, std::vector<util::Diagnostic>& diagnostics);

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
