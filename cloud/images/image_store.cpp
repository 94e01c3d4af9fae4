#include "cloud/images/image_store.hpp"

#include "cloud/images/libarchive.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <optional>
#include <random>
#include <set>

#include "cloud/images/image_layer.hpp"
#include "util/files.hpp"
#include "util/sha256.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

std::string hex_of(const std::string& digest) { return digest.substr(digest.find(':') + 1); }

std::string unique_suffix() {
  std::random_device device;
  return fmt::format("{}-{:08x}", ::getpid(), device());
}

util::Error image_error(const std::string& image, const util::Error& error) {
  return util::Error{error.code, fmt::format("image '{}': {}", image, error.message)};
}

// Writes a content-addressed file once: one already there holds the same bytes.
util::Result<void> write_file(const std::string& path, const std::string& bytes) {
  if (fs::exists(path)) return {};
  return util::write_file_atomically(path, bytes);
}

// The Env of an image config as (name, value) pairs, in order.
std::vector<std::pair<std::string, std::string>> config_env(const json& config) {
  std::vector<std::pair<std::string, std::string>> env;
  if (!config.contains("config") || !config["config"].is_object() || !config["config"].contains("Env")) return env;
  for (const auto& item : config["config"]["Env"]) {
    if (!item.is_string()) continue;
    const std::string text = item.get<std::string>();
    const auto eq = text.find('=');
    if (eq != std::string::npos) env.emplace_back(text.substr(0, eq), text.substr(eq + 1));
  }
  return env;
}

// The bytes of blob `digest` from the cache's blobs/sha256, when present and intact.
std::optional<std::string> cached_blob(const std::string& cache_dir, const std::string& digest) {
  int error_number = 0;
  auto bytes = util::read_file(cache_dir + "/blobs/sha256/" + hex_of(digest), error_number);
  if (!bytes || util::sha256_digest(*bytes) != digest) return std::nullopt;
  return bytes;
}

// A layer built before from the same inputs, when its record and blob are intact.
std::optional<Layer> read_layer_record(const std::string& record_path, const std::string& blob_dir) {
  int error_number = 0;
  auto text = util::read_file(record_path, error_number);
  if (!text) return std::nullopt;
  auto record = json::parse(*text, nullptr, false);
  if (record.is_discarded() || !record.is_object() || !record.contains("digest") || !record["digest"].is_string() ||
      !record.contains("diff_id") || !record["diff_id"].is_string() || !record.contains("size") ||
      !record["size"].is_number_unsigned()) {
    return std::nullopt;
  }
  Layer layer;
  layer.digest = record["digest"].get<std::string>();
  layer.diff_id = record["diff_id"].get<std::string>();
  layer.size = record["size"].get<std::uint64_t>();
  layer.path = blob_dir + "/" + hex_of(layer.digest);
  std::error_code ec;
  if (layer.digest.rfind("sha256:", 0) != 0 || fs::file_size(layer.path, ec) != layer.size || ec) return std::nullopt;
  return layer;
}

// Best effort: without a record the layer is built again next time.
void write_layer_record(const std::string& record_path, const Layer& layer) {
  std::error_code ec;
  fs::create_directories(fs::path(record_path).parent_path(), ec);
  const std::string record = json{{"digest", layer.digest}, {"diff_id", layer.diff_id}, {"size", layer.size}}.dump();
  (void)util::write_file_atomically(record_path, record);  // best effort, see above
}

registry::Options with_credentials(registry::Options options, const std::string& registry_name) {
  if (!options.credentials) options.credentials = registry::find_credentials(registry_name);
  return options;
}

bool is_index(const json& manifest, const std::string& media_type) {
  return media_type == oci::index_media_type || media_type == "application/vnd.docker.distribution.manifest.list.v2+json" ||
         manifest.contains("manifests");
}

util::Result<oci::Descriptor> descriptor_from(const json& value, const std::string& what) {
  if (!value.is_object() || !value.contains("digest") || !value["digest"].is_string()) {
    return util::make_error(util::ExitCode::backend, fmt::format("{}: a descriptor without a digest", what));
  }
  return oci::Descriptor{value.value("mediaType", ""), value["digest"].get<std::string>(), value.value("size", std::uint64_t{0})};
}

// Reads a registry base: manifest (index -> linux/amd64), config.
util::Result<oci::BaseImage> read_remote_base(const oci::Reference& reference, const registry::Options& options) {
  registry::Client client(reference.registry, with_credentials(options, reference.registry));
  const std::string what = "base image " + reference.to_string();
  auto fetched = client.get_manifest(reference.repository, reference.digest.empty() ? reference.tag : reference.digest);
  if (!fetched) return fetched.error();
  json manifest = json::parse(fetched->bytes, nullptr, false);
  if (manifest.is_discarded() || !manifest.is_object()) {
    return util::make_error(util::ExitCode::backend, fmt::format("{}: the registry answered a manifest that is not JSON", what));
  }
  if (is_index(manifest, fetched->media_type)) {
    const json* chosen = nullptr;
    for (const auto& entry : manifest.value("manifests", json::array())) {
      if (entry.contains("platform") && entry["platform"].value("os", "") == "linux" &&
          entry["platform"].value("architecture", "") == "amd64") {
        chosen = &entry;
        break;
      }
    }
    if (chosen == nullptr) {
      return util::make_error(util::ExitCode::backend, fmt::format("{}: the image index has no linux/amd64 image; pick another base", what));
    }
    auto inner = descriptor_from(*chosen, what);
    if (!inner) return inner.error();
    fetched = client.get_manifest(reference.repository, inner->digest);
    if (!fetched) return fetched.error();
    manifest = json::parse(fetched->bytes, nullptr, false);
    if (manifest.is_discarded() || !manifest.is_object()) {
      return util::make_error(util::ExitCode::backend, fmt::format("{}: the platform manifest is not JSON", what));
    }
  }
  if (!manifest.contains("config") || !manifest.contains("layers") || !manifest["layers"].is_array()) {
    return util::make_error(util::ExitCode::backend,
                            fmt::format("{}: the manifest has no config or layers (schema 1 images are not supported)", what));
  }
  auto config_descriptor = descriptor_from(manifest["config"], what);
  if (!config_descriptor) return config_descriptor.error();
  auto config_bytes = client.get_small_blob(reference.repository, config_descriptor->digest);
  if (!config_bytes) return config_bytes.error();
  oci::BaseImage base;
  base.config = json::parse(*config_bytes, nullptr, false);
  if (base.config.is_discarded() || !base.config.is_object()) {
    return util::make_error(util::ExitCode::backend, fmt::format("{}: the image config is not JSON", what));
  }
  for (const auto& layer : manifest["layers"]) {
    auto descriptor = descriptor_from(layer, what);
    if (!descriptor) return descriptor.error();
    base.layers.push_back(*descriptor);
  }
  if (base.config.contains("rootfs") && base.config["rootfs"].contains("diff_ids")) {
    for (const auto& id : base.config["rootfs"]["diff_ids"]) base.diff_ids.push_back(id.get<std::string>());
  }
  return base;
}

// True when a component of directory `relative` under `root` is a symlink (it could lead
// outside). With `replace_files`, components that are plain files are removed: the layer makes
// them directories.
bool crosses_symlink(const std::string& root, const std::string& relative, bool replace_files = true) {
  std::string path = root;
  for (const auto& part : util::split(relative, '/')) {
    if (part.empty()) continue;
    path += "/" + part;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) return false;
    if (S_ISLNK(st.st_mode)) return true;
    if (!S_ISDIR(st.st_mode) && replace_files) ::unlink(path.c_str());
  }
  return false;
}

// "a/b" from "./a/b/", "/a/b"; nullopt for paths with "..".
std::optional<std::string> clean_path(std::string path) {
  std::vector<std::string> parts;
  for (const auto& part : util::split(path, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return std::nullopt;
    parts.push_back(part);
  }
  return util::join(parts, "/");
}

// Restores the working directory when it goes out of scope.
class CwdGuard {
 public:
  CwdGuard() : fd_(::open(".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) {}
  ~CwdGuard() {
    if (fd_ >= 0) {
      (void)::fchdir(fd_);
      ::close(fd_);
    }
  }
  CwdGuard(const CwdGuard&) = delete;
  CwdGuard& operator=(const CwdGuard&) = delete;

 private:
  int fd_;
};

// A temporary file or directory of this process, flock'ed while it lives so that
// remove_stale_temporaries leaves it alone; the lock goes with the descriptor.
class HeldTemporary {
 public:
  HeldTemporary(const std::string& path, bool directory)
      : fd_(directory ? ::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW)
                      : ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644)) {
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~HeldTemporary() {
    if (fd_ >= 0) ::close(fd_);
  }
  HeldTemporary(const HeldTemporary&) = delete;
  HeldTemporary& operator=(const HeldTemporary&) = delete;

 private:
  int fd_;
};

// Removes the entries of `dir` named `prefix`* that a killed gpurun left: older than a minute (a
// writer takes its lock right after creating one) and locked by no live process.
void remove_stale_temporaries(const std::string& dir, const std::string& prefix) {
  std::error_code ec;
  const auto now = fs::file_time_type::clock::now();
  std::vector<fs::path> stale;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (entry.path().filename().string().rfind(prefix, 0) != 0) continue;
    std::error_code time_ec;
    const auto written = fs::last_write_time(entry.path(), time_ec);
    if (time_ec || now - written < std::chrono::minutes(1)) continue;
    const int fd = ::open(entry.path().c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0) continue;
    if (::flock(fd, LOCK_EX | LOCK_NB) == 0) stale.push_back(entry.path());
    ::close(fd);
  }
  for (const auto& path : stale) fs::remove_all(path, ec);
}

// Creates directory `dir` and its missing parents private to this user (0700) and checks that
// nobody else can change what is in it: it belongs to this user and is writable by no one else;
// every directory above belongs to this user or root and is writable by no one else or sticky.
util::Result<void> private_directory(const std::string& dir) {
  const auto refuse = [](const std::string& why) { return util::make_error(util::ExitCode::backend, why); };
  std::error_code ec;
  const fs::path absolute = fs::absolute(dir, ec);
  fs::path prefix;
  for (const auto& part : absolute) {
    prefix /= part;
    if (::mkdir(prefix.c_str(), 0700) != 0 && errno != EEXIST) {
      return refuse(fmt::format("cannot create the image cache {}: {}", dir, std::strerror(errno)));
    }
  }
  const fs::path real = fs::canonical(absolute, ec);
  if (ec) return refuse(fmt::format("cannot use the image cache {}: {}", dir, ec.message()));
  const uid_t me = ::geteuid();
  struct stat st {};
  if (::lstat(real.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return refuse(fmt::format("the image cache {} is not a directory", dir));
  if (st.st_uid != me) {
    return refuse(fmt::format("the image cache {} belongs to user {}, not to you (user {}): another user could have put "
                              "images in it; remove it or set the cloud's image_cache to a directory of your own",
                              real.string(), st.st_uid, me));
  }
  if ((st.st_mode & 022) != 0) {
    return refuse(fmt::format("the image cache {} is writable by other users (mode {:04o}); run 'chmod go-w {}' or set the "
                              "cloud's image_cache to a private directory",
                              real.string(), st.st_mode & 07777, real.string()));
  }
  for (fs::path parent = real.parent_path();; parent = parent.parent_path()) {
    if (::lstat(parent.c_str(), &st) != 0) return refuse(fmt::format("cannot use the image cache {}: {} is gone", dir, parent.string()));
    const bool others_write = (st.st_mode & 022) != 0 && (st.st_mode & S_ISVTX) == 0;
    if ((st.st_uid != me && st.st_uid != 0) || others_write) {
      return refuse(fmt::format("the image cache {} lies in {} (owner user {}, mode {:04o}), which another user can change; "
                                "set the cloud's image_cache to a directory that only you and root control",
                                real.string(), parent.string(), st.st_uid, st.st_mode & 07777));
    }
    if (parent == parent.root_path()) break;
  }
  return {};
}

// The completion marker of a node cache's unpacked rootfs: the image config's Env and WorkingDir,
// written once the rootfs is complete (the cache is private, so it is trusted as it is).
std::string marker_path(const std::string& rootfs) { return rootfs + ".json"; }

util::Result<void> write_marker(const std::string& rootfs, const PulledImage& pulled) {
  json env = json::array();
  for (const auto& [key, value] : pulled.env) env.push_back(json::array({key, value}));
  return write_file(marker_path(rootfs), json{{"env", env}, {"workdir", pulled.workdir}}.dump());
}

std::optional<PulledImage> read_marker(const std::string& rootfs) {
  auto text = util::read_file(marker_path(rootfs));
  if (!text || !fs::is_directory(rootfs)) return std::nullopt;
  const json marker = json::parse(*text, nullptr, false);
  if (marker.is_discarded() || !marker.is_object() || !marker.contains("env") || !marker["env"].is_array() ||
      !marker.contains("workdir") || !marker["workdir"].is_string()) {
    return std::nullopt;
  }
  PulledImage pulled;
  for (const auto& pair : marker["env"]) {
    if (!pair.is_array() || pair.size() != 2 || !pair[0].is_string() || !pair[1].is_string()) return std::nullopt;
    pulled.env.emplace_back(pair[0].get<std::string>(), pair[1].get<std::string>());
  }
  pulled.workdir = marker["workdir"].get<std::string>();
  pulled.rootfs = rootfs;
  pulled.was_cached = true;
  return pulled;
}

// libarchive's error text; it may have none.
std::string error_text(const libarchive::Api& api, archive* handle) {
  const char* text = api.archive_error_string(handle);
  return text != nullptr ? text : "libarchive gave no reason";
}

}  // namespace

std::string image_store_dir(const std::string& state_dir) { return state_dir + "/images"; }

util::Result<BuiltImage> build_image(const manifest::Manifest& manifest, const manifest::Image& image,
                                     const std::string& store_dir, const registry::Options& options) {
  BuiltImage built;
  built.name = image.name;
  built.workdir = image.workdir;
  auto base_spec = oci::parse_base(image.base);
  if (!base_spec) return image_error(image.name, base_spec.error());
  built.base = *base_spec;
  oci::BaseImage base;
  if (built.base.kind == oci::BaseSpec::Kind::layout) {
    fs::path path(built.base.layout_path);
    if (path.is_relative()) path = fs::path(manifest.dir) / path;
    built.base.layout_path = path.lexically_normal().string();
    auto read = oci::read_layout(built.base.layout_path, built.base.layout_tag);
    if (!read) return image_error(image.name, read.error());
    base = *read;
  } else if (built.base.kind == oci::BaseSpec::Kind::registry) {
    auto read = read_remote_base(built.base.reference, options);
    if (!read) return image_error(image.name, read.error());
    base = *read;
  }

  const std::string blob_dir = store_dir + "/blobs/sha256";
  std::error_code ec;
  fs::create_directories(blob_dir, ec);
  fs::create_directories(store_dir + "/tmp", ec);
  if (ec) return util::make_error(util::ExitCode::backend, fmt::format("cannot create the image store {}: {}", store_dir, ec.message()));
  (void)write_file(store_dir + "/oci-layout", R"({"imageLayoutVersion":"1.0.0"})");

  // The add: layer is reused while its inputs are unchanged (a record under layers/ keyed by
  // them), so an unchanged image is neither re-read nor re-compressed.
  auto inputs = layer_inputs(manifest.dir, image.add, image.workdir);
  if (!inputs) return image_error(image.name, inputs.error());
  const std::string record_path = store_dir + "/layers/" + hex_of(inputs->key);
  std::optional<Layer> layer = read_layer_record(record_path, blob_dir);
  if (!layer) {
    remove_stale_temporaries(store_dir + "/tmp", "layer-");
    const std::string layer_temp = store_dir + "/tmp/layer-" + unique_suffix() + ".tar.gz";
    HeldTemporary held(layer_temp, false);
    auto fresh = build_layer(manifest.dir, image.add, image.workdir, layer_temp);
    if (!fresh) {
      fs::remove(layer_temp, ec);
      return image_error(image.name, fresh.error());
    }
    const std::string fresh_path = blob_dir + "/" + hex_of(fresh->digest);
    fs::rename(layer_temp, fresh_path, ec);
    if (ec) return util::make_error(util::ExitCode::backend, fmt::format("cannot write {}: {}", fresh_path, ec.message()));
    write_layer_record(record_path, *fresh);
    layer = std::move(fresh).value();
  }
  const std::string layer_path = blob_dir + "/" + hex_of(layer->digest);
  built.warnings = inputs->warnings;

  json config = oci::image_config(base, image.env, image.workdir, {layer->diff_id});
  built.config = oci::canonical(config);
  const auto config_descriptor = oci::describe(oci::config_media_type, built.config);
  std::vector<oci::Descriptor> layers = base.layers;
  const oci::Descriptor add_layer{std::string(oci::layer_media_type), layer->digest, layer->size};
  layers.push_back(add_layer);
  built.manifest = oci::canonical(oci::image_manifest(config_descriptor, layers));
  built.digest = oci::describe(oci::manifest_media_type, built.manifest).digest;
  if (auto w = write_file(blob_dir + "/" + hex_of(config_descriptor.digest), built.config); !w) return w.error();
  if (auto w = write_file(blob_dir + "/" + hex_of(built.digest), built.manifest); !w) return w.error();

  built.blobs.push_back(registry::Blob{config_descriptor, "", built.config});
  for (const auto& descriptor : base.layers) {
    std::string path;
    if (built.base.kind == oci::BaseSpec::Kind::layout) {
      path = base.blob_dir + "/" + hex_of(descriptor.digest);
    } else if (fs::exists(blob_dir + "/" + hex_of(descriptor.digest))) {
      path = blob_dir + "/" + hex_of(descriptor.digest);
    }
    built.blobs.push_back(registry::Blob{descriptor, path, ""});
  }
  built.base_layers = base.layers.size();
  built.blobs.push_back(registry::Blob{add_layer, layer_path, ""});
  built.env = config_env(config);
  return built;
}

util::Result<void> fetch_base_layers(BuiltImage& image, const std::string& store_dir, const registry::Options& options) {
  if (image.base.kind != oci::BaseSpec::Kind::registry) return {};
  const auto& reference = image.base.reference;
  std::optional<registry::Client> client;
  for (std::size_t i = 1; i <= image.base_layers; ++i) {
    auto& blob = image.blobs[i];
    if (!blob.path.empty()) continue;
    const std::string path = store_dir + "/blobs/sha256/" + hex_of(blob.descriptor.digest);
    if (!fs::exists(path)) {
      if (!client) client.emplace(reference.registry, with_credentials(options, reference.registry));
      if (auto got = client->get_blob(reference.repository, blob.descriptor, path); !got) {
        return image_error(image.name, got.error());
      }
    }
    blob.path = path;
  }
  return {};
}

util::Result<PushReport> push_built_image(
    registry::Client& client, BuiltImage& image, const std::string& repository, const std::vector<std::string>& tags,
    const registry::Options& options,
    const std::function<void(const oci::Descriptor&, registry::BlobOutcome::How, std::uint64_t)>& on_blob) {
  PushReport report;
  const bool registry_base = image.base.kind == oci::BaseSpec::Kind::registry;
  bool same_registry = false;
  if (registry_base) {
    auto base_url = registry::base_url(image.base.reference.registry, false);
    same_registry = base_url && *base_url == client.url();
  }
  auto count = [&](const oci::Descriptor& descriptor, registry::BlobOutcome::How how, std::uint64_t bytes) {
    report.bytes_uploaded += bytes;
    switch (how) {
      case registry::BlobOutcome::How::skipped: ++report.blobs_skipped; break;
      case registry::BlobOutcome::How::mounted: ++report.blobs_mounted; break;
      case registry::BlobOutcome::How::uploaded: ++report.blobs_uploaded; break;
    }
    if (on_blob) on_blob(descriptor, how, bytes);
  };
  // A registry accepts a manifest only once it holds all its blobs: when the manifest is there,
  // so is everything else, and only missing tags are written (a no-change redeploy: 2 HEADs + 1 PUT).
  auto held = client.manifest_digest(repository, image.digest);
  if (!held) return held.error();
  if (*held && **held == image.digest) {
    for (const auto& blob : image.blobs) count(blob.descriptor, registry::BlobOutcome::How::skipped, 0);
    for (const auto& tag : tags) {
      auto current = client.manifest_digest(repository, tag);
      if (!current) return current.error();
      if (*current && **current == image.digest) continue;
      auto tagged = client.put_manifest(repository, tag, image.manifest, oci::manifest_media_type);
      if (!tagged) return tagged.error();
    }
    report.digest = image.digest;
    return report;
  }
  std::optional<registry::Client> source;
  for (std::size_t i = 0; i < image.blobs.size(); ++i) {
    auto& blob = image.blobs[i];
    const bool from_base = i >= 1 && i <= image.base_layers;
    if (from_base && registry_base) {
      auto exists = client.blob_exists(repository, blob.descriptor.digest);
      if (!exists) return exists.error();
      if (*exists) {
        count(blob.descriptor, registry::BlobOutcome::How::skipped, 0);
        continue;
      }
      if (same_registry) {
        auto mounted = client.mount_blob(repository, blob.descriptor.digest, image.base.reference.repository);
        if (!mounted) return mounted.error();
        if (*mounted) {
          count(blob.descriptor, registry::BlobOutcome::How::mounted, 0);
          continue;
        }
      }
      if (blob.path.empty()) {
        // Not in the local store: streamed from the base's registry straight into this one.
        if (!source) source.emplace(image.base.reference.registry, with_credentials(options, image.base.reference.registry));
        auto copied = client.copy_blob(*source, image.base.reference.repository, repository, blob.descriptor);
        if (!copied) return image_error(image.name, copied.error());
        count(blob.descriptor, copied->how, copied->bytes_uploaded);
        continue;
      }
    }
    auto outcome = client.push_blob(repository, blob);
    if (!outcome) return outcome.error();
    count(blob.descriptor, outcome->how, outcome->bytes_uploaded);
  }
  auto stored = client.put_manifest(repository, image.digest, image.manifest, oci::manifest_media_type);
  if (!stored) return stored.error();
  for (const auto& tag : tags) {
    auto tagged = client.put_manifest(repository, tag, image.manifest, oci::manifest_media_type);
    if (!tagged) return tagged.error();
  }
  report.digest = image.digest;
  return report;
}

util::Result<void> apply_layer(const std::string& layer_path, const std::string& root) {
  auto failure = [&](const std::string& why) {
    return util::make_error(util::ExitCode::backend, fmt::format("cannot unpack layer {}: {}", layer_path, why));
  };
  if (!libarchive::api().error.empty()) return failure(libarchive::api().error);
  std::unique_ptr<archive, int (*)(archive*)> reader(libarchive::api().archive_read_new(), libarchive::api().archive_read_free);
  libarchive::api().archive_read_support_filter_all(reader.get());
  libarchive::api().archive_read_support_format_tar(reader.get());
  if (libarchive::api().archive_read_open_filename(reader.get(), layer_path.c_str(), 1 << 16) != ARCHIVE_OK) {
    return failure(error_text(libarchive::api(), reader.get()));
  }
  int flags = ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_TIME | ARCHIVE_EXTRACT_UNLINK | ARCHIVE_EXTRACT_SECURE_SYMLINKS |
              ARCHIVE_EXTRACT_SECURE_NODOTDOT | ARCHIVE_EXTRACT_SECURE_NOABSOLUTEPATHS;
  if (::geteuid() == 0) flags |= ARCHIVE_EXTRACT_OWNER;
  std::unique_ptr<archive, int (*)(archive*)> writer(libarchive::api().archive_write_disk_new(), libarchive::api().archive_write_free);
  libarchive::api().archive_write_disk_set_options(writer.get(), flags);
  libarchive::api().archive_write_disk_set_standard_lookup(writer.get());

  CwdGuard guard;
  if (::chdir(root.c_str()) != 0) return failure("cannot enter " + root);
  std::set<std::string> written;  // paths this layer created (an opaque marker keeps them)
  archive_entry* entry = nullptr;
  while (true) {
    const int rc = libarchive::api().archive_read_next_header(reader.get(), &entry);
    if (rc == ARCHIVE_EOF) break;
    if (rc < ARCHIVE_WARN) return failure(error_text(libarchive::api(), reader.get()));
    const char* name_in_archive = libarchive::api().archive_entry_pathname(entry);
    if (name_in_archive == nullptr) return failure("an entry has no name (or one libarchive cannot read); the layer is malformed");
    auto path = clean_path(name_in_archive);
    if (!path) return failure(fmt::format("the entry '{}' leads outside the image", name_in_archive));
    if (path->empty()) continue;
    const auto slash = path->rfind('/');
    const std::string dir = slash == std::string::npos ? "" : path->substr(0, slash);
    const std::string name = slash == std::string::npos ? *path : path->substr(slash + 1);
    if (crosses_symlink(".", dir)) return failure(fmt::format("the entry '{}' goes through a symbolic link", *path));
    if (name == ".wh..wh..opq") {
      std::error_code ec;
      const fs::path target = dir.empty() ? fs::path(".") : fs::path(dir);
      std::vector<fs::path> doomed;
      for (const auto& child : fs::directory_iterator(target, ec)) {
        const std::string child_path = (dir.empty() ? "" : dir + "/") + child.path().filename().string();
        if (written.count(child_path) == 0) doomed.push_back(child.path());
      }
      for (const auto& d : doomed) fs::remove_all(d, ec);
      continue;
    }
    if (name.rfind(".wh.", 0) == 0) {
      const std::string target = name.substr(4);
      if (target.empty() || target == "." || target == "..") {
        return failure(fmt::format("the whiteout '{}' names '{}', not an entry of its directory; the layer is malformed", *path,
                                   target));
      }
      std::error_code ec;
      fs::remove_all(fs::path(dir.empty() ? "." : dir) / target, ec);
      continue;
    }
    const auto kind = libarchive::api().archive_entry_filetype(entry);
    // Device nodes, FIFOs and sockets are never made: /dev comes from the sandbox, and an image
    // must not hand its runs a device of the host. Set-user/group-ID bits are dropped.
    if (kind == AE_IFCHR || kind == AE_IFBLK || kind == AE_IFIFO || kind == AE_IFSOCK) continue;
    libarchive::api().archive_entry_set_perm(entry, libarchive::api().archive_entry_perm(entry) & 01777);
    struct stat existing {};
    const bool is_dir = kind == AE_IFDIR;
    if (::lstat(path->c_str(), &existing) == 0 && S_ISDIR(existing.st_mode) != is_dir) {
      std::error_code ec;
      fs::remove_all(*path, ec);
    }
    libarchive::api().archive_entry_set_pathname(entry, path->c_str());
    if (const char* link = libarchive::api().archive_entry_hardlink(entry); link != nullptr) {
      auto target = clean_path(link);
      if (!target || crosses_symlink(".", fs::path(*target).parent_path().string(), false)) {
        return failure(fmt::format("the hard link '{}' points outside the image", *path));
      }
      libarchive::api().archive_entry_set_hardlink(entry, target->c_str());
    }
    const int header = libarchive::api().archive_write_header(writer.get(), entry);
    if (header < ARCHIVE_WARN) return failure(fmt::format("{}: {}", *path, error_text(libarchive::api(), writer.get())));
    if (libarchive::api().archive_entry_size(entry) > 0 && kind == AE_IFREG) {
      const void* block = nullptr;
      size_t size = 0;
      la_int64_t offset = 0;
      while (true) {
        const int r = libarchive::api().archive_read_data_block(reader.get(), &block, &size, &offset);
        if (r == ARCHIVE_EOF) break;
        if (r < ARCHIVE_WARN) return failure(error_text(libarchive::api(), reader.get()));
        if (libarchive::api().archive_write_data_block(writer.get(), block, size, offset) < ARCHIVE_WARN) {
          return failure(fmt::format("{}: {}", *path, error_text(libarchive::api(), writer.get())));
        }
      }
    }
    if (libarchive::api().archive_write_finish_entry(writer.get()) < ARCHIVE_WARN) {
      return failure(fmt::format("{}: {}", *path, error_text(libarchive::api(), writer.get())));
    }
    written.insert(*path);
  }
  if (libarchive::api().archive_write_close(writer.get()) < ARCHIVE_WARN) return failure(error_text(libarchive::api(), writer.get()));
  return {};
}

util::Result<std::string> unpack_rootfs(BuiltImage& image, const std::string& store_dir, const registry::Options& options) {
  const std::string final_dir = store_dir + "/rootfs/" + hex_of(image.digest);
  if (fs::is_directory(final_dir)) return final_dir;
  if (auto fetched = fetch_base_layers(image, store_dir, options); !fetched) return fetched.error();
  remove_stale_temporaries(store_dir + "/rootfs", ".tmp-");
  const std::string temporary = store_dir + "/rootfs/.tmp-" + hex_of(image.digest).substr(0, 12) + "-" + unique_suffix();
  std::error_code ec;
  fs::create_directories(temporary, ec);
  if (ec) return util::make_error(util::ExitCode::backend, fmt::format("cannot create {}: {}", temporary, ec.message()));
  HeldTemporary held(temporary, true);
  auto abandon = [&](const util::Error& error) -> util::Result<std::string> {
    std::error_code ignored;
    fs::remove_all(temporary, ignored);
    return image_error(image.name, error);
  };
  for (std::size_t i = 1; i < image.blobs.size(); ++i) {
    if (auto applied = apply_layer(image.blobs[i].path, temporary); !applied) return abandon(applied.error());
  }
  for (const char* dir : {"proc", "dev", "sys", "tmp"}) {
    const std::string path = temporary + "/" + dir;
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) ::mkdir(path.c_str(), std::string_view(dir) == "tmp" ? 01777 : 0755);
  }
  if (auto workdir = clean_path(image.workdir); workdir && !crosses_symlink(temporary, *workdir)) {
    fs::create_directories(temporary + "/" + *workdir, ec);
  }
  ::chmod(temporary.c_str(), 0755);
  fs::rename(temporary, final_dir, ec);
  if (ec) {
    std::error_code ignored;
    fs::remove_all(temporary, ignored);
    if (fs::is_directory(final_dir)) return final_dir;  // another process unpacked it first
    return util::make_error(util::ExitCode::backend, fmt::format("cannot move the unpacked image to {}: {}", final_dir, ec.message()));
  }
  return final_dir;
}

util::Result<PulledImage> pull_image(const std::string& registry_url, const std::string& repository,
                                     const std::string& digest, const std::string& cache_dir, const registry::Options& options) {
  const auto fail = [&](const std::string& what, const util::Error& error) -> util::Result<PulledImage> {
    return util::make_error(error.code, fmt::format("pulling {} of {} from {}: {}: {}; check that this node reaches the registry",
                                                    digest, repository, registry_url, what, error.message));
  };
  // The cache is trusted as it is (no re-hashing on every run) only because nobody else can
  // write it: a directory another user made or can change is refused.
  if (auto checked = private_directory(cache_dir); !checked) return checked.error();
  std::error_code ec;
  fs::create_directories(cache_dir + "/blobs/sha256", ec);
  fs::create_directories(cache_dir + "/rootfs", ec);
  if (ec) return util::make_error(util::ExitCode::backend, fmt::format("cannot create the image cache {}: {}", cache_dir, ec.message()));
  // One pull at a time per node cache: concurrent jobs of the same image wait instead of
  // downloading it twice.
  const int lock = ::open((cache_dir + "/pull.lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (lock >= 0) ::flock(lock, LOCK_EX);
  struct Unlock {
    int fd;
    ~Unlock() {
      if (fd >= 0) ::close(fd);
    }
  } unlock{lock};

  const std::string final_dir = cache_dir + "/rootfs/" + hex_of(digest);
  if (auto done = read_marker(final_dir)) return *done;
  // Not complete: whatever a killed pull left is thrown away (no other pull runs: we hold the lock).
  fs::remove_all(final_dir, ec);
  remove_stale_temporaries(cache_dir + "/rootfs", ".tmp-");
  for (const auto& entry : fs::directory_iterator(cache_dir + "/blobs/sha256", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.find(".part-") != std::string::npos || name.find(".tmp-") != std::string::npos) fs::remove(entry.path(), ec);
  }

  std::optional<registry::Client> client;
  auto connect = [&]() -> registry::Client& {
    if (!client) client.emplace(registry_url, options);
    return *client;
  };
  auto manifest_bytes = cached_blob(cache_dir, digest);
  if (!manifest_bytes) {
    auto got = connect().get_manifest(repository, digest);
    if (!got) return fail("the manifest", got.error());
    if (util::sha256_digest(got->bytes) != digest) {
      return util::make_error(util::ExitCode::backend,
                              fmt::format("pulling {} of {} from {}: the registry sent a manifest with digest {}", digest,
                                          repository, registry_url, util::sha256_digest(got->bytes)));
    }
    if (auto written = write_file(cache_dir + "/blobs/sha256/" + hex_of(digest), got->bytes); !written) return written.error();
    manifest_bytes = std::move(got->bytes);
  }
  const json manifest = json::parse(*manifest_bytes, nullptr, false);
  if (manifest.is_discarded() || !manifest.contains("config") || !manifest.contains("layers") || !manifest["layers"].is_array()) {
    return util::make_error(util::ExitCode::backend, fmt::format("pulling {} of {} from {}: not an image manifest (an index or "
                                                                 "malformed); push the image with gpurun deploy",
                                                                 digest, repository, registry_url));
  }
  auto config_descriptor = descriptor_from(manifest["config"], "config");
  if (!config_descriptor) return fail("the manifest", config_descriptor.error());
  auto config_bytes = cached_blob(cache_dir, config_descriptor->digest);
  if (!config_bytes) {
    auto got = connect().get_small_blob(repository, config_descriptor->digest);
    if (!got) return fail("the image config", got.error());
    if (auto written = write_file(cache_dir + "/blobs/sha256/" + hex_of(config_descriptor->digest), *got); !written) {
      return written.error();
    }
    config_bytes = std::move(*got);
  }
  const json config = json::parse(*config_bytes, nullptr, false);
  if (config.is_discarded()) {
    return util::make_error(util::ExitCode::backend,
                            fmt::format("pulling {} of {} from {}: the image config is not JSON", digest, repository, registry_url));
  }

  BuiltImage image;
  image.name = repository;
  image.digest = digest;
  image.blobs.push_back(registry::Blob{*config_descriptor, "", ""});
  for (const auto& layer : manifest["layers"]) {
    auto descriptor = descriptor_from(layer, "layer");
    if (!descriptor) return fail("the manifest", descriptor.error());
    // A blob in the cache was checked against its digest before it was renamed into place.
    const std::string path = cache_dir + "/blobs/sha256/" + hex_of(descriptor->digest);
    if (!fs::exists(path)) {
      if (auto got = connect().get_blob(repository, *descriptor, path); !got) return fail("layer " + descriptor->digest, got.error());
    }
    image.blobs.push_back(registry::Blob{*descriptor, path, ""});
  }
  PulledImage pulled;
  pulled.env = config_env(config);
  if (config.contains("config") && config["config"].is_object() && config["config"].contains("WorkingDir") &&
      config["config"]["WorkingDir"].is_string()) {
    pulled.workdir = config["config"]["WorkingDir"].get<std::string>();
  }
  image.workdir = pulled.workdir;
  auto rootfs = unpack_rootfs(image, cache_dir, options);
  if (!rootfs) return rootfs.error();
  pulled.rootfs = *rootfs;
  if (auto marked = write_marker(*rootfs, pulled); !marked) return marked.error();
  return pulled;
}

}  // namespace gpurun::cloud
