#pragma once

// `run --dry-run`: what would be started, in words, before the backend's own details.

#include <string>

#include "cloud/plan/run_spec.hpp"

namespace gpurun::commands {

// The run `spec` describes as lines a person reads (function, cloud, GPU, command, directory,
// image, env, secrets by name, volumes, timeout, retries); no secret value appears.
std::string dry_run_summary(const cloud::RunSpec& spec, const cloud::SecretValues& secrets);

}  // namespace gpurun::commands
