#include "cloud/images/image_layer.hpp"

#include "cloud/images/libarchive.hpp"
#include "util/files.hpp"
#include "util/sha256.hpp"

#include <sys/stat.h>
#include <zlib.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>

namespace gpurun::cloud {

namespace fs = std::filesystem;

namespace {

// A file's identity and change times: any write, rename over or chmod changes one of them.
std::string fmt_stat(const struct stat& st) {
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec) + ":" + std::to_string(st.st_ctim.tv_sec) +
         "." + std::to_string(st.st_ctim.tv_nsec) + ":" + std::to_string(st.st_mode);
}

// ---- ignore globs -----------------------------------------------------------------------

bool match_class(std::string_view& pattern, char c) {
  // pattern starts after '['; consumes through ']'.
  std::size_t i = 0;
  bool negate = false;
  if (i < pattern.size() && (pattern[i] == '!' || pattern[i] == '^')) {
    negate = true;
    ++i;
  }
  bool matched = false;
  bool first = true;
  for (; i < pattern.size() && (first || pattern[i] != ']'); ++i, first = false) {
    if (i + 2 < pattern.size() && pattern[i + 1] == '-' && pattern[i + 2] != ']') {
      if (c >= pattern[i] && c <= pattern[i + 2]) matched = true;
      i += 2;
    } else if (pattern[i] == c) {
      matched = true;
    }
  }
  pattern.remove_prefix(std::min(i + 1, pattern.size()));
  return matched != negate;
}

bool glob_match(std::string_view pattern, std::string_view text) {
  while (!pattern.empty()) {
    if (pattern.substr(0, 2) == "**") {
      if (pattern.size() == 2) return true;
      if (pattern[2] == '/') {
        std::string_view rest = pattern.substr(3);
        for (std::size_t i = 0; i <= text.size(); ++i) {
          if ((i == 0 || text[i - 1] == '/') && glob_match(rest, text.substr(i))) return true;
        }
        return false;
      }
      pattern.remove_prefix(1);  // "a**b" behaves as "a*b"
      continue;
    }
    char p = pattern.front();
    if (p == '*') {
      std::string_view rest = pattern.substr(1);
      for (std::size_t i = 0; i <= text.size(); ++i) {
        if (glob_match(rest, text.substr(i))) return true;
        if (i < text.size() && text[i] == '/') break;
      }
      return false;
    }
    if (text.empty()) return false;
    if (p == '?') {
      if (text.front() == '/') return false;
      pattern.remove_prefix(1);
    } else if (p == '[') {
      pattern.remove_prefix(1);
      if (text.front() == '/' || !match_class(pattern, text.front())) return false;
    } else {
      if (p == '\\' && pattern.size() > 1) pattern.remove_prefix(1);
      if (pattern.front() != text.front()) return false;
      pattern.remove_prefix(1);
    }
    text.remove_prefix(1);
  }
  return text.empty();
}

// ---- the tar + gzip sink ----------------------------------------------------------------

struct Sink {
  std::FILE* file = nullptr;
  z_stream zs{};
  util::Sha256 tar_hash;
  util::Sha256 blob_hash;
  std::uint64_t tar_size = 0;
  std::uint64_t blob_size = 0;
  bool failed = false;

  bool emit(const unsigned char* data, std::size_t size) {
    blob_hash.update(data, size);
    blob_size += size;
    if (std::fwrite(data, 1, size, file) != size) failed = true;
    return !failed;
  }
  bool deflate_some(const void* data, std::size_t size, int flush) {
    zs.next_in = static_cast<Bytef*>(const_cast<void*>(data));
    zs.avail_in = static_cast<uInt>(size);
    unsigned char out[65536];
    int status = Z_OK;
    do {
      zs.next_out = out;
      zs.avail_out = sizeof out;
      status = deflate(&zs, flush);
      if (status == Z_STREAM_ERROR) return false;
      if (!emit(out, sizeof out - zs.avail_out)) return false;
    } while (zs.avail_out == 0 || (flush == Z_FINISH && status != Z_STREAM_END));
    return true;
  }
};

la_ssize_t sink_write(struct archive*, void* user, const void* data, size_t size) {
  auto* sink = static_cast<Sink*>(user);
  sink->tar_hash.update(data, size);
  sink->tar_size += size;
  if (!sink->deflate_some(data, size, Z_NO_FLUSH)) return -1;
  return static_cast<la_ssize_t>(size);
}

// ---- collecting entries -----------------------------------------------------------------

enum class Kind { directory, file, symlink };

struct Entry {
  Kind kind = Kind::file;
  fs::path source;  // empty for implied parent directories
  std::string link_target;
  bool executable = false;
  std::uint64_t size = 0;
};

util::Error usage_error(std::string message) { return util::Error{util::ExitCode::usage, std::move(message)}; }

// The lexically normal relative form of `path`, or nullopt when it climbs out ("../").
std::optional<std::string> contained(const fs::path& path) {
  fs::path normal = path.lexically_normal();
  std::string text = normal.generic_string();
  if (text == "." || text.empty()) return std::string();
  if (text == ".." || text.rfind("../", 0) == 0) return std::nullopt;
  if (!text.empty() && text.back() == '/') text.pop_back();
  return text;
}

class Collector {
 public:
  Collector(fs::path root, IgnoreRules rules) : root_(std::move(root)), rules_(std::move(rules)) {}

  std::map<std::string, Entry> entries;
  std::vector<std::string> warnings;

  // Adds `relative` (inside the manifest dir) at archive path `target` (no leading slash).
  util::Result<void> add(const std::string& relative, const std::string& target, bool apply_ignore) {
    fs::path source = root_ / relative;
    std::error_code ec;
    auto status = fs::symlink_status(source, ec);
    if (ec || !fs::exists(status)) {
      return usage_error("image add: '" + relative + "' does not exist in " + root_.string() +
                         "; sources are relative to the manifest's directory");
    }
    if (apply_ignore && !relative.empty() && rules_.ignored(relative, fs::is_directory(status))) return {};
    if (fs::is_symlink(status)) {
      std::string link = fs::read_symlink(source, ec).string();
      fs::path link_path(link);
      auto inside = contained(fs::path(relative).parent_path() / link_path);
      if (link_path.is_absolute() || !inside) {
        return usage_error("image add: symlink '" + relative + "' points outside the manifest's directory (" + link +
                           "); replace it with the file or add the target explicitly");
      }
      return put(target, Entry{Kind::symlink, source, link, false, 0});
    }
    if (fs::is_directory(status)) {
      if (!target.empty()) {
        if (auto r = put(target, Entry{Kind::directory, source, "", true, 0}); !r) return r;
      }
      std::vector<std::string> names;
      for (const auto& child : fs::directory_iterator(source, ec)) names.push_back(child.path().filename().string());
      if (ec) return usage_error("image add: cannot read directory '" + relative + "': " + ec.message());
      for (const auto& name : names) {
        std::string child_relative = relative.empty() ? name : relative + "/" + name;
        std::string child_target = target.empty() ? name : target + "/" + name;
        if (auto r = add(child_relative, child_target, true); !r) return r;
      }
      return {};
    }
    if (!fs::is_regular_file(status)) {
      return usage_error("image add: '" + relative + "' is not a regular file, directory or symlink; remove it or list it in .gpurunignore");
    }
    std::uint64_t size = fs::file_size(source, ec);
    auto perms = status.permissions();
    bool executable = (perms & (fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec)) != fs::perms::none;
    if (size > large_file_warning_bytes) {
      warnings.push_back("image add: '" + relative + "' is " + std::to_string(size / 1'000'000) +
                         " MB; large files slow every push, consider a volume or .gpurunignore");
    }
    return put(target, Entry{Kind::file, source, "", executable, size});
  }

 private:
  util::Result<void> put(const std::string& target, Entry entry) {
    auto it = entries.find(target);
    if (it != entries.end() && (it->second.kind == Kind::directory) != (entry.kind == Kind::directory)) {
      return usage_error("image add: '/" + target + "' is added both as a directory and as a file; give one of them another dst");
    }
    if (it != entries.end() && entry.kind == Kind::directory) return {};
    entries[target] = std::move(entry);
    return {};
  }

  fs::path root_;
  IgnoreRules rules_;
};

}  // namespace

// ---- IgnoreRules ------------------------------------------------------------------------

IgnoreRules IgnoreRules::parse(std::string_view text) {
  IgnoreRules rules;
  std::size_t start = 0;
  while (start <= text.size()) {
    std::size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    std::string line(text.substr(start, end - start));
    start = end + 1;
    while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t')) {
      if (line.size() >= 2 && line[line.size() - 2] == '\\') break;
      line.pop_back();
    }
    if (line.empty() || line[0] == '#') continue;
    Rule rule;
    if (line[0] == '!') {
      rule.negated = true;
      line.erase(0, 1);
    } else if (line[0] == '\\' && line.size() > 1 && (line[1] == '#' || line[1] == '!')) {
      line.erase(0, 1);
    }
    if (!line.empty() && line.back() == '/') {
      rule.directory_only = true;
      line.pop_back();
    }
    if (line.empty()) continue;
    bool anchored = line.find('/') != std::string::npos;
    if (line[0] == '/') line.erase(0, 1);
    rule.glob = anchored ? line : "**/" + line;
    rules.rules_.push_back(std::move(rule));
  }
  return rules;
}

bool IgnoreRules::ignored(std::string_view relative_path, bool is_directory) const {
  std::string_view base = relative_path.substr(relative_path.rfind('/') == std::string_view::npos ? 0 : relative_path.rfind('/') + 1);
  if (is_directory && base == ".git") return true;
  bool result = false;
  for (const auto& rule : rules_) {
    if (rule.directory_only && !is_directory) continue;
    if (glob_match(rule.glob, relative_path)) result = !rule.negated;
  }
  return result;
}

// ---- build_layer ------------------------------------------------------------------------

namespace {

// What a layer holds: every archive path (parents included) with its source, and the warnings.
struct Collected {
  std::map<std::string, Entry> entries;
  std::vector<std::string> warnings;
};

util::Result<Collected> collect_entries(const std::string& manifest_dir, const std::vector<manifest::ImageAdd>& add,
                                        const std::string& workdir) {
  std::error_code ec;
  fs::path root = fs::canonical(manifest_dir, ec);
  if (ec) return usage_error("image add: cannot open the manifest's directory " + manifest_dir + ": " + ec.message());
  IgnoreRules rules;
  if (fs::exists(root / ".gpurunignore")) {
    auto text = util::read_file((root / ".gpurunignore").string());
    if (!text) return usage_error("image add: " + text.error().message + "; check its permissions");
    rules = IgnoreRules::parse(*text);
  }
  Collector collector(root, rules);

  for (const auto& item : add) {
    fs::path src(item.src);
    if (src.is_absolute()) {
      return usage_error("image add: '" + item.src + "' is an absolute path; sources are relative to the manifest's directory");
    }
    auto relative = contained(src);
    if (!relative) {
      return usage_error("image add: '" + item.src + "' is outside the manifest's directory; move it next to the manifest or use a volume");
    }
    // A source reached through a symlinked parent must still resolve inside the directory.
    fs::path unresolved = root / *relative;
    fs::path resolved = relative->empty() ? root : fs::weakly_canonical(unresolved.parent_path(), ec) / unresolved.filename();
    auto rel_to_root = contained(resolved.lexically_relative(root));
    if (!ec && (resolved.lexically_relative(root).empty() || !rel_to_root)) {
      return usage_error("image add: '" + item.src + "' resolves outside the manifest's directory (" + resolved.string() +
                         "); move it next to the manifest or use a volume");
    }
    fs::path destination;
    if (item.dst.empty()) {
      destination = fs::path(workdir) / *relative;
    } else {
      destination = fs::path(item.dst).is_absolute() ? fs::path(item.dst) : fs::path(workdir) / item.dst;
      if (item.dst.back() == '/' && !fs::is_directory(root / *relative)) destination /= src.filename();
    }
    auto target = contained(destination.lexically_normal().relative_path());
    if (!target) return usage_error("image add: dst '" + item.dst + "' climbs above the image's root");
    if (auto r = collector.add(*relative, *target, false); !r) return r.error();
  }

  // Parent directories of every entry.
  std::map<std::string, Entry> entries = collector.entries;
  for (const auto& [path, entry] : collector.entries) {
    for (auto slash = path.rfind('/'); slash != std::string::npos && slash > 0; slash = path.rfind('/', slash - 1)) {
      auto parent = path.substr(0, slash);
      auto it = entries.find(parent);
      if (it == entries.end()) {
        entries[parent] = Entry{Kind::directory, {}, "", true, 0};
      } else if (it->second.kind != Kind::directory) {
        return usage_error("image add: '/" + parent + "' is added as a file and also holds '/" + path + "'; give one of them another dst");
      }
    }
  }
  return Collected{std::move(entries), collector.warnings};
}

}  // namespace

util::Result<LayerInputs> layer_inputs(const std::string& manifest_dir, const std::vector<manifest::ImageAdd>& add,
                                       const std::string& workdir) {
  auto collected = collect_entries(manifest_dir, add, workdir);
  if (!collected) return collected.error();
  util::Sha256 hash;
  auto put = [&](const std::string& text) { hash.update(text.data(), text.size() + 1); };  // with its NUL
  put("gpurun-layer-v1");  // bump when build_layer's output format changes
  put(workdir);
  for (const auto& [path, item] : collected->entries) {
    put(path);
    put(std::to_string(static_cast<int>(item.kind)) + (item.executable ? "x" : "-") + std::to_string(item.size));
    put(item.link_target);
    if (item.kind != Kind::file) continue;
    struct stat st {};
    if (::stat(item.source.c_str(), &st) != 0) return usage_error("image add: cannot read " + item.source.string() + "; check its permissions");
    put(fmt_stat(st));
  }
  return LayerInputs{hash.finish(), std::move(collected->warnings)};
}

util::Result<Layer> build_layer(const std::string& manifest_dir, const std::vector<manifest::ImageAdd>& add,
                                const std::string& workdir, const std::string& output_path) {
  auto collected = collect_entries(manifest_dir, add, workdir);
  if (!collected) return collected.error();
  const std::map<std::string, Entry>& entries = collected->entries;

  Sink sink;
  sink.file = std::fopen(output_path.c_str(), "wb");
  if (sink.file == nullptr) {
    return util::Error{util::ExitCode::backend, "image layer: cannot write " + output_path + "; check that the directory exists and is writable"};
  }
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file_guard(sink.file, std::fclose);
  // zlib's gzip wrapper writes a fixed header: no name, mtime 0, OS unix.
  if (deflateInit2(&sink.zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) {
    return util::Error{util::ExitCode::backend, "image layer: zlib initialisation failed"};
  }
  std::unique_ptr<z_stream, int (*)(z_stream*)> zlib_guard(&sink.zs, deflateEnd);

  if (!libarchive::api().error.empty()) return util::Error{util::ExitCode::backend, "image layer: " + libarchive::api().error};
  std::unique_ptr<archive, int (*)(archive*)> writer(libarchive::api().archive_write_new(), libarchive::api().archive_write_free);
  libarchive::api().archive_write_set_format_pax_restricted(writer.get());
  libarchive::api().archive_write_set_bytes_per_block(writer.get(), 10240);
  libarchive::api().archive_write_set_bytes_in_last_block(writer.get(), 1);
  if (libarchive::api().archive_write_open(writer.get(), &sink, nullptr, sink_write, nullptr) != ARCHIVE_OK) {
    return util::Error{util::ExitCode::backend, std::string("image layer: ") + libarchive::api().archive_error_string(writer.get())};
  }
  auto archive_failure = [&](const std::string& what) {
    const char* reason = libarchive::api().archive_error_string(writer.get());
    return util::Error{util::ExitCode::backend, "image layer: cannot write " + what + ": " +
                                                    (reason != nullptr ? reason : "write error") + "; check free disk space"};
  };

  std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry(libarchive::api().archive_entry_new(), libarchive::api().archive_entry_free);
  std::vector<char> buffer(1 << 16);
  for (const auto& [path, item] : entries) {
    libarchive::api().archive_entry_clear(entry.get());
    libarchive::api().archive_entry_set_pathname(entry.get(), path.c_str());
    libarchive::api().archive_entry_set_uid(entry.get(), 0);
    libarchive::api().archive_entry_set_gid(entry.get(), 0);
    libarchive::api().archive_entry_set_mtime(entry.get(), 0, 0);
    switch (item.kind) {
      case Kind::directory:
        libarchive::api().archive_entry_set_filetype(entry.get(), AE_IFDIR);
        libarchive::api().archive_entry_set_perm(entry.get(), 0755);
        break;
      case Kind::symlink:
        libarchive::api().archive_entry_set_filetype(entry.get(), AE_IFLNK);
        libarchive::api().archive_entry_set_perm(entry.get(), 0777);
        libarchive::api().archive_entry_set_symlink(entry.get(), item.link_target.c_str());
        break;
      case Kind::file:
        libarchive::api().archive_entry_set_filetype(entry.get(), AE_IFREG);
        libarchive::api().archive_entry_set_perm(entry.get(), item.executable ? 0755 : 0644);
        libarchive::api().archive_entry_set_size(entry.get(), static_cast<la_int64_t>(item.size));
        break;
    }
    if (libarchive::api().archive_write_header(writer.get(), entry.get()) != ARCHIVE_OK) return archive_failure("/" + path);
    if (item.kind != Kind::file) continue;
    std::ifstream in(item.source, std::ios::binary);
    if (!in) return usage_error("image add: cannot read " + item.source.string() + "; check its permissions");
    std::uint64_t left = item.size;
    while (left > 0) {
      in.read(buffer.data(), static_cast<std::streamsize>(std::min<std::uint64_t>(left, buffer.size())));
      auto got = static_cast<std::size_t>(in.gcount());
      if (got == 0) {
        return usage_error("image add: " + item.source.string() + " changed while it was being read; build again");
      }
      if (libarchive::api().archive_write_data(writer.get(), buffer.data(), got) < 0) return archive_failure("/" + path);
      left -= got;
    }
  }
  if (libarchive::api().archive_write_close(writer.get()) != ARCHIVE_OK) return archive_failure("the archive end");
  if (!sink.deflate_some(nullptr, 0, Z_FINISH) || sink.failed || std::fflush(sink.file) != 0) {
    return util::Error{util::ExitCode::backend, "image layer: cannot write " + output_path + "; check free disk space"};
  }

  Layer layer;
  layer.path = output_path;
  layer.diff_id = sink.tar_hash.finish();
  layer.digest = sink.blob_hash.finish();
  layer.size = sink.blob_size;
  layer.tar_size = sink.tar_size;
  layer.entries = entries.size();
  layer.warnings = collected->warnings;
  return layer;
}

}  // namespace gpurun::cloud
