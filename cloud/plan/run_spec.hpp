#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "util/result.hpp"

namespace gpurun::cloud {

// One way to satisfy a run's GPU request: `count` devices of `type` (case-insensitive; empty =
// any type) with memory >= min_memory_gb and, when max_memory_gb > 0, <= max_memory_gb (an exact
// variant: "H100!", "16GB..24GB").
struct LeaseAlternative {
  std::string type;
  int min_memory_gb = 0;
  int count = 1;
  int max_memory_gb = 0;
};

// Secret values for one run: name -> variables. Handed to the backend in memory, never stored
// or logged.
using SecretValues = std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>;

// A bind mount into the run: a host directory at an absolute path.
struct RunMount {
  std::string host_path;
  std::string path;
  std::string volume;
};

// Everything a supervisor needs to run a function; stored as the run's spec_json. Holds the
// names of secrets, never their values.
struct RunSpec {
  std::string app;
  std::string function;
  std::string cloud;
  std::string backend;
  std::vector<std::string> argv;  // the final command (a string command is /bin/sh -c CMD)
  std::string cwd;                // the manifest's directory
  std::vector<std::pair<std::string, std::string>> env;  // manifest env, then --env
  std::vector<std::string> secrets;                      // secret names
  std::vector<RunMount> mounts;
  std::vector<LeaseAlternative> gpu_alternatives;  // empty = CPU only
  std::string gpu_text;                            // as asked, e.g. "A100-40GB:1" or "any"
  std::optional<std::chrono::milliseconds> timeout;
  int max_retries = 0;
  double backoff = 2.0;
  std::chrono::milliseconds initial_delay{1000};
  std::chrono::milliseconds max_delay{60'000};
  std::chrono::milliseconds kill_grace{10'000};
  // The function's `cpu` (cores) and `memory` (bytes); backends that schedule by them request them.
  std::optional<double> cpu;
  std::optional<std::uint64_t> memory_bytes;
  // Functions with `image:`: the image's name and manifest digest; for the local backend also
  // its unpacked root filesystem (the run's `/`), its config Env and WorkingDir (then `cwd`).
  std::string image;
  std::string image_digest;
  std::string image_rootfs;
  std::vector<std::pair<std::string, std::string>> image_env;
  std::string image_workdir;
  // Remote backends: the registry URL and repository the nodes pull the image from.
  std::string image_registry;
  std::string image_repository;
};

// JSON text of a spec (stable key order).
std::string to_json(const RunSpec& spec);
// Parses to_json's output; a malformed spec is an Error (ExitCode::backend).
util::Result<RunSpec> run_spec_from_json(const std::string& text);

// The delay before retry number `retry` (1-based): initial_delay * backoff^(retry-1), capped.
std::chrono::milliseconds retry_delay(const RunSpec& spec, int retry);

}  // namespace gpurun::cloud
