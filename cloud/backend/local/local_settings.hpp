#pragma once

// A local cloud's config keys (README "Config reference").

#include "cloud/plan/config.hpp"

namespace gpurun::cloud {

// A local cloud's config keys: none of its own; without `gpus:` its offers are this machine's
// probed devices (registered in cloud/backend/registry.cpp).
BackendKeyParser local_config_keys();

}  // namespace gpurun::cloud
