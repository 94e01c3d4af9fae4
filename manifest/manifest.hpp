#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "gpu/spec.hpp"
#include "util/diagnostic.hpp"
#include "util/result.hpp"

namespace gpurun::manifest {

// A source position in the manifest, for errors found after parsing (placement, deploy).
struct Position {
  int line = 0;
  int column = 0;
};

// One `add:` entry of an image: `src` relative to the manifest's directory; `dst` absolute, or
// empty for a plain path (it lands under workdir keeping its relative path).
struct ImageAdd {
  std::string src;
  std::string dst;
};

struct Image {
  std::string name;
  std::string base;  // OCI reference, "scratch", or "oci:PATH[:TAG]"
  std::vector<ImageAdd> add;
  std::vector<std::pair<std::string, std::string>> env;  // file order
  std::string workdir = "/app";
  Position position;
};

struct Volume {
  std::string name;
  Position position;
};

// `retries: N` or `{max, backoff, initial_delay, max_delay}`; defaults as Modal's Retries.
struct RetryPolicy {
  int max_retries = 0;
  double backoff = 2.0;
  std::chrono::milliseconds initial_delay{1000};
  std::chrono::milliseconds max_delay{60'000};
};

struct VolumeMount {
  std::string path;    // absolute mount path in the function
  std::string volume;  // a name from `volumes:`
};

struct Function {
  std::string name;
  std::vector<std::string> argv;  // set when `command` is a list
  std::string shell;              // set when `command` is a string (run by /bin/sh -c)
  std::optional<std::string> image;
  std::vector<VolumeMount> volumes;  // file order
  std::optional<std::string> cloud;
  gpu::GpuRequest gpu;           // empty = CPU only
  std::optional<std::string> gpu_as_written;  // the manifest's text, for plan output ("A100:40", "[H100, any]")
  std::optional<std::chrono::milliseconds> timeout;  // per attempt; none = no limit
  RetryPolicy retries;
  std::vector<std::pair<std::string, std::string>> env;
  std::vector<std::string> secrets;
  std::optional<double> cpu;
  std::optional<std::uint64_t> memory_bytes;
  Position position;          // of the function's key
  Position gpu_position;      // of the gpu value (when present)
  Position cloud_position;    // of the cloud value (when present)
};

struct Manifest {
  std::string path;  // as given (for messages)
  std::string dir;   // absolute directory of the manifest file
  std::string app;
  std::vector<Image> images;        // file order
  std::vector<Volume> volumes;      // file order
  std::vector<Function> functions;  // file order

  const Function* find_function(std::string_view name) const;
  const Image* find_image(std::string_view name) const;
};

// What the manifest may refer to outside itself; comes from the config.
struct ManifestContext {
  const gpu::Catalog* catalog = nullptr;       // required
  std::vector<std::string> clouds;             // cloud names (always includes "local")
  std::vector<std::string> secrets;            // secret names defined in the config
};

// Parses and validates manifest text. On failure returns every problem found (not just the
// first), each with file:line:col, key path and a fix.
util::Result<Manifest> parse_manifest(std::string_view text, const std::string& path, const ManifestContext& context,
                                      std::vector<util::Diagnostic>& diagnostics);

// Reads the file then parse_manifest. A missing/unreadable file is an Error (exit 2).
util::Result<Manifest> load_manifest(const std::string& path, const ManifestContext& context,
                                     std::vector<util::Diagnostic>& diagnostics);

}  // namespace gpurun::manifest
