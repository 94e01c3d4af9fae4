#pragma once

// The one grammar of image references, used by the manifest's validation (`images.*.base`) and by
// the OCI code that pulls bases: what the manifest accepts, `run` can fetch.

#include <optional>
#include <string>
#include <string_view>

#include "util/result.hpp"

namespace gpurun::manifest {

inline constexpr std::string_view default_registry = "docker.io";

// A registry image reference: registry host[:port], repository path, and a tag and/or digest.
struct Reference {
  std::string registry;
  std::string repository;
  std::string tag;     // empty when only a digest was given
  std::string digest;  // "sha256:<hex>" or empty
  // "registry/repository[:tag][@digest]".
  std::string to_string() const;
};

// Parses "registry/repo:tag", "repo@sha256:...", and Docker Hub short names ("ubuntu:22.04" ->
// `registry`/library/ubuntu:22.04). A missing tag and digest means "latest". Errors: ExitCode::usage.
util::Result<Reference> parse_reference(std::string_view text, std::string_view registry = default_registry);

// Why `text` is not an image reference parse_reference accepts ("the digest must be sha256: ..."),
// or nullopt when it is one.
std::optional<std::string> reference_problem(std::string_view text);

// An image's `base:`: scratch, an OCI image layout directory, or a registry reference.
struct BaseSpec {
  enum class Kind { scratch, layout, registry };
  Kind kind = Kind::scratch;
  std::string layout_path;  // Kind::layout: the directory (relative paths are the caller's business)
  std::string layout_tag;   // Kind::layout: empty = the layout's only image (or "latest")
  Reference reference;      // Kind::registry
};

// Parses "scratch", "oci:PATH[:TAG]" or a registry reference.
util::Result<BaseSpec> parse_base(std::string_view text, std::string_view registry = default_registry);

}  // namespace gpurun::manifest
