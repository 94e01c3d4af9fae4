#pragma once

// Pushing a built image to a cloud's registry, with progress reported through callbacks (the
// CLI draws them; tests and the monitor pass none).

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "cloud/images/image_store.hpp"
#include "cloud/images/registry.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// Where an image goes: the cloud (named in messages), its registry URL and the repository.
struct PushTarget {
  std::string cloud;
  std::string registry;
  std::string repository;
};

// What a push tells while it runs. `label` is "IMAGE -> CLOUD". Every callback may be empty.
struct PushProgress {
  // Bytes of one blob sent so far (called often; keep it cheap).
  std::function<void(const std::string& label, const std::string& digest, std::uint64_t sent, std::uint64_t total)> on_bytes;
  // One blob is done: uploaded (with its size), mounted, or already there.
  std::function<void(const std::string& label, const oci::Descriptor& blob, registry::BlobOutcome::How how,
                     std::uint64_t bytes)>
      on_blob;
  // The whole image is pushed: one line saying where and what moved.
  std::function<void(const std::string& line)> on_done;
};

// The repository an app's image gets in every cloud's registry: "<app>/<image>", lower case.
std::string image_repository(const std::string& app, const std::string& image);

// Pushes `image` to `target` with `tags`, skipping blobs already there. Errors name the image,
// cloud, registry and repository, what the server answered and what to check.
util::Result<PushReport> push_image(const PushTarget& target, BuiltImage& image, const std::vector<std::string>& tags,
                                    const PushProgress& progress);

}  // namespace gpurun::cloud
