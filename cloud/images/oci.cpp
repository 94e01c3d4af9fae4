#include "cloud/images/oci.hpp"

#include <filesystem>
#include <regex>

#include "util/files.hpp"
#include "util/sha256.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud::oci {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

util::Error reference_error(std::string_view text, const std::string& why) {
  return util::Error{util::ExitCode::usage, "image base: '" + std::string(text) + "' is not a valid image reference: " +
                                                why + "; use [registry/]repository[:tag][@sha256:digest], e.g. ubuntu:22.04"};
}

util::Error layout_error(const std::string& path, const std::string& why) {
  return util::Error{util::ExitCode::usage,
                     "image base: oci:" + path + ": " + why + "; point it at an OCI image layout directory (with index.json)"};
}

bool looks_like_registry(std::string_view component) {
  return component.find('.') != std::string_view::npos || component.find(':') != std::string_view::npos ||
         component == "localhost";
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

std::string Reference::to_string() const {
  std::string text = registry + "/" + repository;
  if (!tag.empty()) text += ":" + tag;
  if (!digest.empty()) text += "@" + digest;
  return text;
}

util::Result<Reference> parse_reference(std::string_view text, std::string_view registry) {
  static const std::regex component("[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*");
  static const std::regex tag_pattern("[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
  static const std::regex digest_pattern("sha256:[a-f0-9]{64}");
  static const std::regex host_pattern("[A-Za-z0-9.-]+(?::[0-9]+)?|\\[[0-9a-fA-F:]+\\](?::[0-9]+)?");
  if (text.empty()) return reference_error(text, "it is empty");
  Reference reference;
  std::string rest(text);
  if (auto at = rest.find('@'); at != std::string::npos) {
    reference.digest = rest.substr(at + 1);
    rest.erase(at);
    if (!std::regex_match(reference.digest, digest_pattern)) {
      return reference_error(text, "the digest must be sha256: followed by 64 lowercase hex digits");
    }
  }
  auto slash = rest.find('/');
  if (slash != std::string::npos && looks_like_registry(std::string_view(rest).substr(0, slash))) {
    reference.registry = rest.substr(0, slash);
    rest.erase(0, slash + 1);
    if (!std::regex_match(reference.registry, host_pattern)) return reference_error(text, "the registry host is malformed");
  } else {
    reference.registry = std::string(registry);
  }
  if (auto colon = rest.rfind(':'); colon != std::string::npos) {
    reference.tag = rest.substr(colon + 1);
    rest.erase(colon);
    if (!std::regex_match(reference.tag, tag_pattern)) {
      return reference_error(text, "the tag '" + reference.tag + "' may only hold letters, digits, '_', '.' and '-'");
    }
  }
  if (rest.empty()) return reference_error(text, "the repository name is missing");
  for (const auto& part : util::split(rest, '/')) {
    if (!std::regex_match(part, component)) {
      return reference_error(text, "the repository '" + rest + "' must be lowercase letters, digits and separators");
    }
  }
  if ((reference.registry == "docker.io" || reference.registry == "index.docker.io") &&
      rest.find('/') == std::string::npos) {
    rest = "library/" + rest;
  }
  reference.repository = rest;
  if (reference.tag.empty() && reference.digest.empty()) reference.tag = "latest";
  return reference;
}

util::Result<BaseSpec> parse_base(std::string_view text, std::string_view registry) {
  BaseSpec spec;
  if (text == "scratch") return spec;
  if (text.substr(0, 4) == "oci:") {
    spec.kind = BaseSpec::Kind::layout;
    std::string rest(text.substr(4));
    auto colon = rest.rfind(':');
    if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
      spec.layout_tag = rest.substr(colon + 1);
      rest.erase(colon);
    }
    if (rest.empty()) {
      return util::Error{util::ExitCode::usage, "image base: 'oci:' needs a directory; write oci:PATH or oci:PATH:TAG"};
    }
    spec.layout_path = rest;
    return spec;
  }
  auto reference = parse_reference(text, registry);
  if (!reference) return reference.error();
  spec.kind = BaseSpec::Kind::registry;
  spec.reference = *reference;
  return spec;
}

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
