#pragma once

// Images kept in the local image store beyond one build: a deployment freezes its images there
// (every layer copied in, so the source folder is never read again), later runs read them back
// by digest, and prune removes what nothing references.

#include <cstdint>
#include <set>
#include <string>
#include <vector>

#include "cloud/images/image_store.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// Copies every layer of `image` that lies outside the store (an oci: base layout's) into the
// store's blobs and points the image at the copies.
util::Result<void> freeze_image(BuiltImage& image, const std::string& store_dir);

// Image `name` with manifest `digest` as the store holds it (its manifest and config must be
// there; a layer that is not has an empty path). The error says how to get it back.
util::Result<BuiltImage> load_stored_image(const std::string& store_dir, const std::string& name, const std::string& digest);

// The layers of `image` that have no file (not in the store).
std::vector<std::string> missing_layers(const BuiltImage& image);

// What pruning the store removed (or, for a dry run, would remove).
struct StorePruneReport {
  int rootfs_removed = 0;
  int blobs_removed = 0;
  std::uint64_t bytes = 0;  // of blobs (root filesystems are counted by number)
};

// Removes the unpacked root filesystems and blobs that none of the manifests `keep` (digests)
// references, nor their configs and layers. With `dry_run` only counts.
util::Result<StorePruneReport> prune_image_store(const std::string& store_dir, const std::set<std::string>& keep, bool dry_run);

}  // namespace gpurun::cloud
