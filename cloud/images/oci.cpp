#include "cloud/images/oci.hpp"

#include <filesystem>

#include "util/files.hpp"
#include "util/sha256.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud::oci {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

util::Error layout_error(const std::string& path, const std::string& why) {
  return util::Error{util::ExitCode::usage,
                     "image base: oci:" + path + ": " + why + "; point it at an OCI image layout directory (with index.json)"};
}

util::Result<json> read_json(const fs::path& file, const std::string& layout) {
  auto text = util::read_file(file.string());
  if (!text) return layout_error(layout, text.error().message);
  json value = json::parse(*text, nullptr, false);
  if (value.is_discarded() || !value.is_object()) return layout_error(layout, file.string() + " is not a JSON object");
  return value;
}

fs::path blob_path(const std::string& layout, const std::string& digest) {
  return fs::path(layout) / "blobs" / "sha256" / digest.substr(digest.find(':') + 1);
}

util::Result<Descriptor> descriptor_of(const json& value, const std::string& layout) {
  if (!value.is_object() || !value.contains("digest") || !value["digest"].is_string() ||
      value["digest"].get<std::string>().rfind("sha256:", 0) != 0) {
    return layout_error(layout, "a descriptor without a sha256 digest");
  }
  Descriptor descriptor;
  descriptor.digest = value["digest"].get<std::string>();
  descriptor.media_type = value.value("mediaType", "");
  descriptor.size = value.value("size", std::uint64_t{0});
  return descriptor;
}

}  // namespace

util::Result<BaseImage> read_layout(const std::string& path, const std::string& tag) {
  auto index = read_json(fs::path(path) / "index.json", path);
  if (!index) return index.error();
  if (!index->contains("manifests") || !(*index)["manifests"].is_array() || (*index)["manifests"].empty()) {
    return layout_error(path, "index.json lists no manifests");
  }
  const json& manifests = (*index)["manifests"];
  const json* chosen = nullptr;
  std::vector<std::string> names;
  for (const auto& entry : manifests) {
    std::string name;
    if (entry.contains("annotations") && entry["annotations"].is_object()) {
      name = entry["annotations"].value("org.opencontainers.image.ref.name", "");
    }
    if (!name.empty()) names.push_back(name);
    if (!tag.empty() ? name == tag : (manifests.size() == 1 || name == "latest")) {
      chosen = &entry;
      break;
    }
  }
  if (chosen == nullptr) {
    std::string why = tag.empty() ? "it holds several images and none is tagged 'latest'" : "no image is tagged '" + tag + "'";
    if (!names.empty()) why += " (tags: " + util::join(names, ", ") + ")";
    return layout_error(path, why);
  }
  auto descriptor = descriptor_of(*chosen, path);
  if (!descriptor) return descriptor.error();
  auto manifest = read_json(blob_path(path, descriptor->digest), path);
  if (!manifest) return manifest.error();
  if (manifest->value("mediaType", "") == index_media_type || manifest->contains("manifests")) {
    // A multi-platform index: take linux/amd64.
    const json* platform_manifest = nullptr;
    for (const auto& entry : (*manifest)["manifests"]) {
      if (entry.contains("platform") && entry["platform"].value("os", "") == "linux" &&
          entry["platform"].value("architecture", "") == "amd64") {
        platform_manifest = &entry;
        break;
      }
    }
    if (platform_manifest == nullptr) return layout_error(path, "the image index has no linux/amd64 image");
    auto inner = descriptor_of(*platform_manifest, path);
    if (!inner) return inner.error();
    manifest = read_json(blob_path(path, inner->digest), path);
    if (!manifest) return manifest.error();
  }
  if (!manifest->contains("config") || !manifest->contains("layers") || !(*manifest)["layers"].is_array()) {
    return layout_error(path, "the manifest " + descriptor->digest + " has no config or layers");
  }
  auto config_descriptor = descriptor_of((*manifest)["config"], path);
  if (!config_descriptor) return config_descriptor.error();
  auto config = read_json(blob_path(path, config_descriptor->digest), path);
  if (!config) return config.error();

  BaseImage base;
  base.config = *config;
  base.blob_dir = (fs::path(path) / "blobs" / "sha256").string();
  for (const auto& layer : (*manifest)["layers"]) {
    auto layer_descriptor = descriptor_of(layer, path);
    if (!layer_descriptor) return layer_descriptor.error();
    if (!fs::exists(blob_path(path, layer_descriptor->digest))) {
      return layout_error(path, "the layer blob " + layer_descriptor->digest + " is missing");
    }
    base.layers.push_back(*layer_descriptor);
  }
  if (config->contains("rootfs") && (*config)["rootfs"].contains("diff_ids")) {
    for (const auto& id : (*config)["rootfs"]["diff_ids"]) base.diff_ids.push_back(id.get<std::string>());
  }
  if (base.diff_ids.size() != base.layers.size()) {
    return layout_error(path, "the config lists " + std::to_string(base.diff_ids.size()) + " diff_ids for " +
                                  std::to_string(base.layers.size()) + " layers");
  }
  return base;
}

json image_config(const BaseImage& base, const std::vector<std::pair<std::string, std::string>>& env,
                  const std::string& workdir, const std::vector<std::string>& diff_ids) {
  json config = base.config.is_object() ? base.config : json::object();
  config.erase("history");  // would no longer match the layers
  config["architecture"] = "amd64";
  config["os"] = "linux";
  json& runtime = config["config"];
  if (!runtime.is_object()) runtime = json::object();
  std::vector<std::string> merged;
  if (runtime.contains("Env") && runtime["Env"].is_array()) {
    for (const auto& item : runtime["Env"]) {
      if (item.is_string()) merged.push_back(item.get<std::string>());
    }
  }
  for (const auto& [name, value] : env) {
    std::string prefix = name + "=";
    std::erase_if(merged, [&](const std::string& item) { return item.rfind(prefix, 0) == 0; });
    merged.push_back(prefix + value);
  }
  if (!merged.empty()) runtime["Env"] = merged;
  runtime["WorkingDir"] = workdir;
  json ids = json::array();
  for (const auto& id : base.diff_ids) ids.push_back(id);
  for (const auto& id : diff_ids) ids.push_back(id);
  config["rootfs"] = json{{"type", "layers"}, {"diff_ids", ids}};
  return config;
}

json image_manifest(const Descriptor& config, const std::vector<Descriptor>& layers) {
  auto to_json = [](const Descriptor& d) { return json{{"mediaType", d.media_type}, {"digest", d.digest}, {"size", d.size}}; };
  json layer_list = json::array();
  for (const auto& layer : layers) layer_list.push_back(to_json(layer));
  return json{{"schemaVersion", 2}, {"mediaType", manifest_media_type}, {"config", to_json(config)}, {"layers", layer_list}};
}

std::string canonical(const json& value) { return value.dump(-1, ' ', false, json::error_handler_t::replace); }

Descriptor describe(std::string_view media_type, std::string_view bytes) {
  return Descriptor{std::string(media_type), util::sha256_digest(bytes), bytes.size()};
}

}  // namespace gpurun::cloud::oci
