#pragma once

#include <string>
#include <vector>

#include "commands/context.hpp"

namespace gpurun::cli {

// Parses argv, runs the chosen command and returns the process exit code. Never throws:
// usage errors exit 2, expected failures print "gpurun: error: ..." with their own code.
int run_cli(const std::vector<std::string>& args, commands::Context& ctx);

}  // namespace gpurun::cli
