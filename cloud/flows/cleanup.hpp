#pragma once

// Removing what gpurun no longer needs from registries: image manifests of app versions that no
// longer exist (app delete --purge-images, prune).

#include <functional>
#include <string>
#include <vector>

#include "cloud/state/state.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// What deleting registry manifests did (or, for a dry run, would do).
struct RegistryCleanup {
  int deleted = 0;                // manifests deleted (every tag on each went with it)
  int kept = 0;                   // skipped: a live tag points at it, or the registry refuses deletes
  std::vector<std::string> notes; // why each was kept, each reason once
};

// Deletes manifest `digest` of each location from its registry (Distribution deletes by digest),
// unless a live tag points at it: a tag other than the digest's short tag and the `vN` tags of
// versions that no longer hold that digest. A registry that answers 405 UNSUPPORTED is skipped
// with a note. Locations whose manifest is gone are forgotten; those without a registry (the
// local store) are forgotten at once. With `dry_run` nothing is deleted or forgotten.
util::Result<RegistryCleanup> delete_registry_manifests(StateStore& store, const std::vector<ImageLocation>& locations,
                                                        bool dry_run);

}  // namespace gpurun::cloud
