#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/result.hpp"

namespace gpurun::cloud::oci {

inline constexpr std::string_view manifest_media_type = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view index_media_type = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view config_media_type = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view layer_media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view docker_manifest_media_type = "application/vnd.docker.distribution.manifest.v2+json";
inline constexpr std::string_view default_registry = "docker.io";

// A content descriptor (config, layer, manifest).
struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<hex>"
  std::uint64_t size = 0;
  bool operator==(const Descriptor&) const = default;
};

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

// A base image resolved to its layers and config.
struct BaseImage {
  std::vector<Descriptor> layers;     // compressed blobs, manifest order
  std::vector<std::string> diff_ids;  // the config's rootfs.diff_ids
  nlohmann::json config = nlohmann::json::object();  // the base image config
  std::string blob_dir;               // layout images: PATH/blobs/sha256 holding the layers
};

// Reads an image from an OCI image layout directory (index.json, blobs/sha256/); `tag` picks
// the manifest by its org.opencontainers.image.ref.name annotation.
util::Result<BaseImage> read_layout(const std::string& path, const std::string& tag);

// The image config: the base's config (if any) with `env` merged by name, WorkingDir set,
// architecture amd64, os linux, and rootfs.diff_ids = base diff_ids + `diff_ids`.
nlohmann::json image_config(const BaseImage& base, const std::vector<std::pair<std::string, std::string>>& env,
                            const std::string& workdir, const std::vector<std::string>& diff_ids);

// An OCI image manifest (schemaVersion 2) for a config and layers.
nlohmann::json image_manifest(const Descriptor& config, const std::vector<Descriptor>& layers);

// Canonical serialisation (sorted keys, no whitespace) so that digests are stable.
std::string canonical(const nlohmann::json& value);

// The descriptor of a serialised document.
Descriptor describe(std::string_view media_type, std::string_view bytes);

}  // namespace gpurun::cloud::oci
