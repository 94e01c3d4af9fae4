#include "cloud/images/stored_image.hpp"

#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "util/files.hpp"

namespace gpurun::cloud {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string hex(const std::string& digest) {
  const auto colon = digest.find(':');
  return colon == std::string::npos ? digest : digest.substr(colon + 1);
}

std::string blob_path(const std::string& store_dir, const std::string& digest) {
  return store_dir + "/blobs/sha256/" + hex(digest);
}

util::Error not_stored(const std::string& name, const std::string& digest, const std::string& what) {
  return util::Error{util::ExitCode::backend,
                     fmt::format("image '{}' ({}) is no longer in the local image store ({}); deploy the app again "
                                 "('gpurun deploy MANIFEST') or roll back to a version whose images are there",
                                 name, digest, what)};
}

// The config and layer digests a stored manifest names (empty when it is not there or unreadable).
std::vector<std::string> referenced_blobs(const std::string& store_dir, const std::string& manifest_digest) {
  std::vector<std::string> digests;
  auto text = util::read_file(blob_path(store_dir, manifest_digest));
  if (!text) return digests;
  auto manifest = json::parse(*text, nullptr, false);
  if (!manifest.is_object()) return digests;
  if (manifest.contains("config") && manifest["config"].is_object()) digests.push_back(manifest["config"].value("digest", ""));
  if (manifest.contains("layers") && manifest["layers"].is_array()) {
    for (const auto& layer : manifest["layers"]) {
      if (layer.is_object()) digests.push_back(layer.value("digest", ""));
    }
  }
  return digests;
}

}  // namespace

util::Result<void> freeze_image(BuiltImage& image, const std::string& store_dir) {
  const std::string blob_dir = store_dir + "/blobs/sha256/";
  for (auto& blob : image.blobs) {
    if (blob.path.empty() || blob.path.rfind(blob_dir, 0) == 0) continue;
    const std::string target = blob_path(store_dir, blob.descriptor.digest);
    std::error_code ec;
    if (!fs::exists(target, ec)) {
      const std::string temporary = target + ".freeze-tmp";
      fs::copy_file(blob.path, temporary, fs::copy_options::overwrite_existing, ec);
      if (!ec) fs::rename(temporary, target, ec);
      if (ec) {
        return util::make_error(util::ExitCode::backend, fmt::format("image '{}': cannot copy layer {} into the image store: {}",
                                                                     image.name, blob.path, ec.message()));
      }
    }
    blob.path = target;
  }
  return {};
}

util::Result<BuiltImage> load_stored_image(const std::string& store_dir, const std::string& name, const std::string& digest) {
  auto manifest_text = util::read_file(blob_path(store_dir, digest));
  if (!manifest_text) return not_stored(name, digest, "its manifest is gone");
  auto manifest = json::parse(*manifest_text, nullptr, false);
  if (!manifest.is_object() || !manifest.contains("config") || !manifest.contains("layers")) {
    return not_stored(name, digest, "its manifest is damaged");
  }
  BuiltImage image;
  image.name = name;
  image.digest = digest;
  image.manifest = *manifest_text;
  const oci::Descriptor config{manifest["config"].value("mediaType", ""), manifest["config"].value("digest", ""),
                               manifest["config"].value("size", std::uint64_t{0})};
  auto config_text = util::read_file(blob_path(store_dir, config.digest));
  if (!config_text) return not_stored(name, digest, "its config is gone");
  image.config = *config_text;
  image.blobs.push_back(registry::Blob{config, "", image.config});
  for (const auto& layer : manifest["layers"]) {
    const oci::Descriptor descriptor{layer.value("mediaType", ""), layer.value("digest", ""), layer.value("size", std::uint64_t{0})};
    const std::string path = blob_path(store_dir, descriptor.digest);
    std::error_code ec;
    image.blobs.push_back(registry::Blob{descriptor, fs::exists(path, ec) ? path : std::string(), ""});
  }
  image.base_layers = image.blobs.size() > 1 ? image.blobs.size() - 2 : 0;
  auto parsed = json::parse(image.config, nullptr, false);
  if (parsed.is_object() && parsed.contains("config") && parsed["config"].is_object()) {
    const auto& c = parsed["config"];
    if (c.contains("Env") && c["Env"].is_array()) {
      for (const auto& item : c["Env"]) {
        if (!item.is_string()) continue;
        const std::string text = item.get<std::string>();
        const auto eq = text.find('=');
        if (eq != std::string::npos) image.env.emplace_back(text.substr(0, eq), text.substr(eq + 1));
      }
    }
    if (c.contains("WorkingDir") && c["WorkingDir"].is_string()) image.workdir = c["WorkingDir"].get<std::string>();
  }
  return image;
}

std::vector<std::string> missing_layers(const BuiltImage& image) {
  std::vector<std::string> missing;
  for (std::size_t i = 1; i < image.blobs.size(); ++i) {
    if (image.blobs[i].path.empty()) missing.push_back(image.blobs[i].descriptor.digest);
  }
  return missing;
}

util::Result<StorePruneReport> prune_image_store(const std::string& store_dir, const std::set<std::string>& keep, bool dry_run) {
  std::set<std::string> keep_hex;
  for (const auto& digest : keep) {
    keep_hex.insert(hex(digest));
    for (const auto& blob : referenced_blobs(store_dir, digest)) keep_hex.insert(hex(blob));
  }
  StorePruneReport report;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(store_dir + "/rootfs", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.rfind(".tmp-", 0) == 0 || keep_hex.count(name) != 0) continue;
    ++report.rootfs_removed;
    std::error_code removed;
    if (!dry_run) fs::remove_all(entry.path(), removed);
    if (removed) return util::make_error(util::ExitCode::backend, fmt::format("cannot remove {}: {}", entry.path().string(), removed.message()));
  }
  ec.clear();
  for (const auto& entry : fs::directory_iterator(store_dir + "/blobs/sha256", ec)) {
    const std::string name = entry.path().filename().string();
    if (keep_hex.count(name) != 0) continue;
    std::error_code size_error;
    const auto size = entry.file_size(size_error);
    ++report.blobs_removed;
    if (!size_error) report.bytes += size;
    std::error_code removed;
    if (!dry_run) fs::remove(entry.path(), removed);
    if (removed) return util::make_error(util::ExitCode::backend, fmt::format("cannot remove {}: {}", entry.path().string(), removed.message()));
  }
  return report;
}

}  // namespace gpurun::cloud
