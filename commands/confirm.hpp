#pragma once

// Asking before deleting (app delete, prune, volume rm).

#include <string>

#include "commands/context.hpp"
#include "util/result.hpp"

namespace gpurun::commands {

// True when the user may go on: `yes` given, or the answer to `question` on a terminal starts
// with y. Without a terminal and without --yes: a usage error that names --yes (`what` says
// what would be deleted).
util::Result<bool> confirmed(Context& ctx, bool yes, const std::string& question, const std::string& what);

}  // namespace gpurun::commands
