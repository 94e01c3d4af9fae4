#include "cloud/flows/cleanup.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <map>
#include <memory>
#include <tuple>
#include <set>

#include "cloud/images/registry.hpp"

namespace gpurun::cloud {

namespace {

// True when tag `tag` of `app` must keep `digest`: it is not gpurun's short digest tag, nor the
// `vN` tag of a version that no longer holds that digest.
util::Result<bool> live_tag(StateStore& store, const std::string& app, const std::string& tag, const std::string& digest) {
  const auto short_tags = registry::default_tags(digest, "");
  if (std::find(short_tags.begin(), short_tags.end(), tag) != short_tags.end()) return false;
  if (tag.size() < 2 || tag[0] != 'v' || !std::all_of(tag.begin() + 1, tag.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return true;
  }
  auto version = store.get_deployment(app, std::stoi(tag.substr(1)));
  if (!version) return version.error();
  if (!*version) return false;
  for (const auto& image : (*version)->images) {
    if (image.digest == digest) return true;
  }
  return false;
}

struct Target {
  std::string app, registry, repository, digest;
  auto key() const { return std::tie(registry, repository, digest); }
  bool operator<(const Target& other) const { return key() < other.key(); }
};

// Why `target` must stay (a live tag's name), or empty when it may go.
util::Result<std::string> reason_to_keep(StateStore& store, registry::Client& client, const Target& target) {
  auto tags = client.list_tags(target.repository);
  if (!tags) return tags.error();
  for (const auto& tag : *tags) {
    auto points_at = client.manifest_digest(target.repository, tag);
    if (!points_at) return points_at.error();
    if (!*points_at || **points_at != target.digest) continue;
    auto live = live_tag(store, target.app, tag, target.digest);
    if (!live) return live.error();
    if (*live) return fmt::format("tag '{}' still points at it", tag);
  }
  return std::string();
}

util::Result<void> forget(StateStore& store, const std::vector<ImageLocation>& locations, const Target& target) {
  for (const auto& l : locations) {
    if (l.registry == target.registry && l.repository == target.repository && l.digest == target.digest) {
      if (auto forgotten = store.forget_image_location(l); !forgotten) return forgotten.error();
    }
  }
  return {};
}

}  // namespace

util::Result<RegistryCleanup> delete_registry_manifests(StateStore& store, const std::vector<ImageLocation>& locations,
                                                        bool dry_run) {
  RegistryCleanup cleanup;
  std::set<Target> targets;
  for (const auto& l : locations) {
    if (!l.registry.empty()) {
      targets.insert({l.app, l.registry, l.repository, l.digest});
    } else if (!dry_run) {
      if (auto forgotten = store.forget_image_location(l); !forgotten) return forgotten.error();
    }
  }
  std::set<std::string> notes;
  auto note = [&](std::string text) {
    if (notes.insert(text).second) cleanup.notes.push_back(std::move(text));
  };
  auto idle_timeout = registry::idle_timeout_from_env();
  if (!idle_timeout) return idle_timeout.error();
  std::map<std::string, std::unique_ptr<registry::Client>> clients;
  for (const auto& target : targets) {
    auto it = clients.find(target.registry);
    if (it == clients.end()) {
      registry::Options options;
      options.idle_timeout = *idle_timeout;
      options.credentials = registry::find_credentials(target.registry);
      it = clients.emplace(target.registry, std::make_unique<registry::Client>(target.registry, options)).first;
    }
    auto keep = reason_to_keep(store, *it->second, target);
    if (!keep) return keep.error();
    if (!keep->empty()) {
      ++cleanup.kept;
      note(fmt::format("kept {}/{}@{}: {}", target.registry, target.repository, target.digest, *keep));
      continue;
    }
    if (dry_run) {
      ++cleanup.deleted;
      continue;
    }
    auto outcome = it->second->delete_manifest(target.repository, target.digest);
    if (!outcome) return outcome.error();
    if (outcome->unsupported) {
      ++cleanup.kept;
      note(fmt::format("registry {} does not allow deletes (HTTP 405 UNSUPPORTED): its manifests were kept; set "
                       "storage.delete.enabled: true in its config to let gpurun remove them",
                       target.registry));
      continue;
    }
    if (outcome->deleted) ++cleanup.deleted;
    if (auto forgotten = forget(store, locations, target); !forgotten) return forgotten.error();
  }
  return cleanup;
}

}  // namespace gpurun::cloud
