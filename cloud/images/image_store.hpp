#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "cloud/images/oci.hpp"
#include "cloud/images/registry.hpp"
#include "manifest/manifest.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// The local image store under the state directory: an OCI layout (blobs/sha256/<hex>) plus
// unpacked root filesystems (rootfs/<hex of the manifest digest>).
std::string image_store_dir(const std::string& state_dir);

// One image of a manifest, built: its config, its layers and its manifest.
struct BuiltImage {
  std::string name;
  std::string digest;    // the manifest's
  std::string manifest;  // canonical bytes
  std::string config;    // canonical bytes
  oci::BaseSpec base;
  std::vector<registry::Blob> blobs;  // config, base layers, the `add:` layer; a registry base's
                                      // layers have an empty path until fetched
  std::size_t base_layers = 0;        // how many of blobs[1..] come from the base
  std::vector<std::pair<std::string, std::string>> env;  // the config's Env, in order
  std::string workdir;
  std::vector<std::string> warnings;
};

// Builds `image` of `manifest`: resolves its base (scratch, oci:PATH relative to the manifest's
// directory, or a registry reference whose manifest and config are fetched), writes the `add:`
// layer, config and manifest into the store. Registry base layers are not downloaded here.
util::Result<BuiltImage> build_image(const manifest::Manifest& manifest, const manifest::Image& image,
                                     const std::string& store_dir, const registry::Options& options = {});

// Downloads the base layers of a registry base into the store (those not there yet) and sets
// their paths in `image.blobs`.
util::Result<void> fetch_base_layers(BuiltImage& image, const std::string& store_dir, const registry::Options& options = {});

// What pushing an image to one registry did, blob by blob.
struct PushReport {
  std::string digest;
  std::uint64_t bytes_uploaded = 0;
  int blobs_uploaded = 0;
  int blobs_skipped = 0;
  int blobs_mounted = 0;
};

// Pushes `image` to `repository` of `client`'s registry: blobs already there are skipped, a
// registry base on the same registry is mounted, other base layers are uploaded from the store
// when there, else streamed from the base's registry (not stored); then the manifest by digest,
// then `tags` (so a failure tags nothing).
// `on_blob` is told each blob's outcome.
util::Result<PushReport> push_built_image(
    registry::Client& client, BuiltImage& image, const std::string& repository, const std::vector<std::string>& tags,
    const registry::Options& options,
    const std::function<void(const oci::Descriptor&, registry::BlobOutcome::How, std::uint64_t)>& on_blob = {});

// Applies one gzip'd (or plain) layer tarball onto directory `root`: `.wh.NAME` removes NAME,
// `.wh..wh..opq` empties its directory of what earlier layers put there, other entries are
// extracted (never outside `root`).
util::Result<void> apply_layer(const std::string& layer_path, const std::string& root);

// The image's root filesystem, unpacked once per manifest digest under the store (a temporary
// directory renamed into place); fetches a registry base's layers first. Returns its path.
util::Result<std::string> unpack_rootfs(BuiltImage& image, const std::string& store_dir,
                                        const registry::Options& options = {});

// An image pulled onto a node: its unpacked root filesystem, the config's Env and WorkingDir.
struct PulledImage {
  std::string rootfs;
  std::vector<std::pair<std::string, std::string>> env;
  std::string workdir;
  bool was_cached = false;  // the rootfs was unpacked already: nothing was fetched
};

// Pulls manifest `digest` of `repository` from the registry at `registry_url` into `cache_dir`
// (blobs/sha256 by digest, each checked; nothing fetched that is there already) and unpacks it
// once under rootfs/. Concurrent pulls into one cache wait for each other.
util::Result<PulledImage> pull_image(const std::string& registry_url, const std::string& repository,
                                     const std::string& digest, const std::string& cache_dir,
                                     const registry::Options& options = {});

}  // namespace gpurun::cloud
