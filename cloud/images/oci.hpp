#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "manifest/image_reference.hpp"
#include "util/result.hpp"

namespace gpurun::cloud::oci {

// Image references have one grammar, the manifest's (manifest/image_reference.hpp).
using manifest::BaseSpec;
using manifest::default_registry;
using manifest::parse_base;
using manifest::parse_reference;
using manifest::Reference;

inline constexpr std::string_view manifest_media_type = "application/vnd.oci.image.manifest.v1+json";
inline constexpr std::string_view index_media_type = "application/vnd.oci.image.index.v1+json";
inline constexpr std::string_view config_media_type = "application/vnd.oci.image.config.v1+json";
inline constexpr std::string_view layer_media_type = "application/vnd.oci.image.layer.v1.tar+gzip";
inline constexpr std::string_view docker_manifest_media_type = "application/vnd.docker.distribution.manifest.v2+json";

// A content descriptor (config, layer, manifest).
struct Descriptor {
  std::string media_type;
  std::string digest;  // "sha256:<hex>"
  std::uint64_t size = 0;
  bool operator==(const Descriptor&) const = default;
};

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
