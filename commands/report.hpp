#pragma once

// How commands report failures: messages on stderr, exit codes (125 for gpurun's own failures
// where the code is otherwise a workload's), JSON errors.

#include <string>
#include <vector>

#include "commands/context.hpp"
#include "util/diagnostic.hpp"
#include "util/result.hpp"

namespace gpurun::commands {

// Prints "gpurun: error: <message>" to ctx.err and returns the error's exit code.
int report(Context& ctx, const util::Error& error);

// Prints diagnostics (file:line:col) then the error; returns its exit code.
int report(Context& ctx, const util::Error& error, const std::vector<util::Diagnostic>& diagnostics);


}  // namespace gpurun::commands
