#pragma once

// The one registry of backends: `backend:` name -> factory, an explicit map in registry.cpp.

#include <memory>
#include <optional>
#include <string_view>
#include <string>
#include <vector>

#include "cloud/backend/backend.hpp"
#include "cloud/plan/config.hpp"
#include "cloud/state/state.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// The names of every backend, sorted.
std::vector<std::string> backend_names();

// Every backend's config key parser, by name.
const BackendKeyParsers& backend_key_parsers();

// cloud/plan's load_config and parse_config with every backend's config keys.
util::Result<Config> load_config(const std::optional<std::string>& explicit_path, std::vector<util::Diagnostic>& diagnostics);
util::Result<Config> parse_config(std::string_view text, const std::string& path, std::vector<util::Diagnostic>& diagnostics);

// The backend `name` configured for `cloud` (null: the built-in local cloud). `config` (may be
// null) gives secret values when a backend resubmits a run on its own. Unknown names are a usage
// error listing the known ones.
util::Result<std::unique_ptr<Backend>> make_backend(const std::string& name, const CloudConfig* cloud,
                                                    const Config* config = nullptr);

// The backend of a recorded run, configured by its cloud in `config`.
util::Result<std::unique_ptr<Backend>> backend_for(const Run& run, const Config& config);

}  // namespace gpurun::cloud
