#pragma once

#include "commands/context.hpp"

namespace gpurun::commands {

// `deployments` and `app list`: the newest version of each app (every version with `all`).
int show_deployments(Context& ctx, bool all, bool json);

}  // namespace gpurun::commands
