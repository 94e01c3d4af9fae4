#include "cloud/ssh/directory_sync.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fmt/format.h>
#include <memory>
#include <set>

#include "cloud/images/image_layer.hpp"
#include "cloud/images/libarchive.hpp"
#include "util/files.hpp"
#include "util/sha256.hpp"
#include "util/strings.hpp"

namespace gpurun::cloud {

namespace fs = std::filesystem;

namespace {

util::Error usage_error(std::string message) { return util::make_error(util::ExitCode::usage, std::move(message)); }
util::Error backend_error(std::string message) { return util::make_error(util::ExitCode::backend, std::move(message)); }

// The hex sha256 and size of a local file.
util::Result<std::pair<std::string, std::uint64_t>> hash_file(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return usage_error(fmt::format("sync: cannot read {}: {}; check its permissions", path.string(), std::strerror(errno)));
  util::Sha256 hash;
  std::uint64_t size = 0;
  char buffer[1 << 16];
  ssize_t got = 0;
  while ((got = ::read(fd, buffer, sizeof buffer)) > 0) {
    hash.update(buffer, static_cast<std::size_t>(got));
    size += static_cast<std::uint64_t>(got);
  }
  const int error = errno;
  ::close(fd);
  if (got < 0) return usage_error(fmt::format("sync: cannot read {}: {}", path.string(), std::strerror(error)));
  return std::make_pair(hash.finish().substr(7), size);
}

bool plain_name(std::string_view text) { return text.find_first_of("\t\n") == std::string_view::npos; }

// Walks the directory in path order, applying the ignore rules.
class Scanner {
 public:
  Scanner(fs::path root, IgnoreRules rules, std::vector<fs::path> skip)
      : root_(std::move(root)), rules_(std::move(rules)), skip_(std::move(skip)) {}
  std::vector<SyncEntry> entries;

  util::Result<void> scan(const std::string& relative) {
    std::error_code ec;
    std::vector<std::string> names;
    for (const auto& child : fs::directory_iterator(root_ / relative, ec)) names.push_back(child.path().filename().string());
    if (ec) return usage_error(fmt::format("sync: cannot read directory {}: {}", (root_ / relative).string(), ec.message()));
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      if (auto r = add(relative.empty() ? name : relative + "/" + name); !r) return r;
    }
    return {};
  }

 private:
  util::Result<void> add(const std::string& relative) {
    std::error_code ec;
    const fs::path source = root_ / relative;
    const auto status = fs::symlink_status(source, ec);
    if (ec) return usage_error(fmt::format("sync: cannot read {}: {}", source.string(), ec.message()));
    if (rules_.ignored(relative, fs::is_directory(status))) return {};
    if (fs::is_directory(status)) {
      for (const auto& skipped : skip_) {
        if (fs::equivalent(source, skipped, ec)) return {};
      }
    }
    if (!plain_name(relative)) {
      return usage_error(fmt::format("sync: the name of '{}' in {} holds a tab or newline; rename it or list it in .gpurunignore",
                                     relative, root_.string()));
    }
    if (fs::is_symlink(status)) return add_symlink(relative, fs::read_symlink(source, ec).string());
    if (fs::is_directory(status)) {
      entries.push_back(SyncEntry{relative, SyncEntry::Kind::directory, true, "", "", 0});
      return scan(relative);
    }
    // A unix socket (a running program's, e.g. gpurun's own monitor.sock) holds no content: skipped.
    if (fs::is_socket(status)) return {};
    if (!fs::is_regular_file(status)) {
      return usage_error(fmt::format("sync: '{}' in {} is not a regular file, directory or symlink; remove it or list it in "
                                     ".gpurunignore",
                                     relative, root_.string()));
    }
    auto hashed = hash_file(source);
    if (!hashed) return hashed.error();
    const auto exec = fs::perms::owner_exec | fs::perms::group_exec | fs::perms::others_exec;
    const bool executable = (status.permissions() & exec) != fs::perms::none;
    entries.push_back(SyncEntry{relative, SyncEntry::Kind::file, executable, hashed->first, "", hashed->second});
    return {};
  }

  util::Result<void> add_symlink(const std::string& relative, const std::string& target) {
    const std::string normal = (fs::path(relative).parent_path() / target).lexically_normal().generic_string();
    if (target.empty() || fs::path(target).is_absolute() || normal == ".." || normal.rfind("../", 0) == 0 || !plain_name(target)) {
      return usage_error(fmt::format("sync: symlink '{}' in {} points outside the directory ({}); replace it with the file, or "
                                     "list it in .gpurunignore",
                                     relative, root_.string(), target));
    }
    entries.push_back(SyncEntry{relative, SyncEntry::Kind::symlink, false, "", target, 0});
    return {};
  }

  fs::path root_;
  IgnoreRules rules_;
  std::vector<fs::path> skip_;  // directories left out
};

}  // namespace

SyncTree make_sync_tree(std::vector<SyncEntry> entries) {
  std::sort(entries.begin(), entries.end(), [](const SyncEntry& a, const SyncEntry& b) { return a.path < b.path; });
  SyncTree tree;
  for (const auto& e : entries) {
    switch (e.kind) {
      case SyncEntry::Kind::directory: tree.listing += fmt::format("d\t755\t-\t{}\n", e.path); break;
      case SyncEntry::Kind::file: tree.listing += fmt::format("f\t{}\t{}\t{}\n", e.executable ? 755 : 644, e.digest, e.path); break;
      case SyncEntry::Kind::symlink: tree.listing += fmt::format("l\t777\t{}\t{}\n", e.link_target, e.path); break;
    }
  }
  tree.hash = util::sha256_digest(tree.listing).substr(7);
  tree.entries = std::move(entries);
  return tree;
}

util::Result<SyncTree> scan_sync_tree(const std::string& local_dir, const std::vector<std::string>& skip) {
  std::error_code ec;
  if (!fs::is_directory(local_dir, ec)) {
    return usage_error(fmt::format("sync: {} is not a directory; give the directory to copy to the remote host", local_dir));
  }
  IgnoreRules rules;
  const fs::path ignore_file = fs::path(local_dir) / ".gpurunignore";
  if (fs::exists(ignore_file, ec)) {
    auto text = util::read_file(ignore_file.string(), util::ExitCode::usage);
    if (!text) return text.error();
    rules = IgnoreRules::parse(*text);
  }
  Scanner scanner(local_dir, std::move(rules), std::vector<fs::path>(skip.begin(), skip.end()));
  if (auto r = scanner.scan(""); !r) return r.error();
  return make_sync_tree(std::move(scanner.entries));
}

namespace {

// The digests the host lacks (nullopt when the whole tree is there already).
util::Result<std::optional<std::vector<std::string>>> missing_objects(const SshClient& client, const std::string& root,
                                                                       const SyncTree& tree) {
  std::set<std::string> digests;
  for (const auto& e : tree.entries) {
    if (e.kind == SyncEntry::Kind::file) digests.insert(e.digest);
  }
  std::string input;
  for (const auto& d : digests) input += d + "\n";
  const std::string body = fmt::format(
      "root={}\ntree={}\nif [ -d \"$root/trees/$tree\" ]; then echo tree=present; exit 0; fi\necho tree=absent\n"
      "while read -r h; do [ -f \"$root/objects/$h\" ] || echo \"$h\"; done\n",
      remote_path_word(root), tree.hash);
  auto result = client.run(RemoteScript{body, {}, input});
  if (!result) return result.error();
  const auto lines = util::split(result->out, '\n');
  if (result->exit_code != 0 || lines.empty() || (lines[0] != "tree=present" && lines[0] != "tree=absent")) {
    return backend_error(fmt::format("sync: cannot list the objects under {} on {} (exit {}): {}", root,
                                     describe_ssh_host(client.settings()), result->exit_code, util::trim(result->err)));
  }
  if (lines[0] == "tree=present") return std::optional<std::vector<std::string>>();
  std::vector<std::string> missing;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    if (!lines[i].empty()) missing.push_back(lines[i]);
  }
  return std::optional<std::vector<std::string>>(std::move(missing));
}

la_ssize_t write_to_fd(struct archive*, void* user, const void* data, size_t size) {
  const int fd = *static_cast<int*>(user);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::write(fd, static_cast<const char*>(data) + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    done += static_cast<std::size_t>(n);
  }
  return static_cast<la_ssize_t>(size);
}

// Writes one tar entry: `name` with `content` read from `source` (checked against `digest`) or
// the bytes of `text`.
util::Result<void> put_entry(archive* writer, archive_entry* entry, const std::string& name, const SyncEntry* source,
                             const std::string& root, const std::string* text) {
  const auto& api = libarchive::api();
  api.archive_entry_clear(entry);
  api.archive_entry_set_pathname(entry, name.c_str());
  api.archive_entry_set_filetype(entry, AE_IFREG);
  api.archive_entry_set_perm(entry, 0644);
  api.archive_entry_set_mtime(entry, 0, 0);
  api.archive_entry_set_size(entry, static_cast<la_int64_t>(source != nullptr ? source->size : text->size()));
  auto failed = [&] { return backend_error(fmt::format("sync: cannot write the archive to send: {}", api.archive_error_string(writer))); };
  if (api.archive_write_header(writer, entry) != ARCHIVE_OK) return failed();
  if (text != nullptr) {
    if (api.archive_write_data(writer, text->data(), text->size()) < 0) return failed();
    return {};
  }
  const std::string path = (fs::path(root) / source->path).string();
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return usage_error(fmt::format("sync: cannot read {}: {}", path, std::strerror(errno)));
  std::unique_ptr<int, void (*)(int*)> closer(new int(fd), [](int* p) { ::close(*p); delete p; });
  util::Sha256 hash;
  std::uint64_t left = source->size;
  char buffer[1 << 16];
  while (left > 0) {
    const ssize_t got = ::read(fd, buffer, static_cast<std::size_t>(std::min<std::uint64_t>(left, sizeof buffer)));
    if (got <= 0) break;
    hash.update(buffer, static_cast<std::size_t>(got));
    if (api.archive_write_data(writer, buffer, static_cast<std::size_t>(got)) < 0) return failed();
    left -= static_cast<std::uint64_t>(got);
  }
  char extra = 0;
  if (left != 0 || ::read(fd, &extra, 1) != 0 || hash.finish().substr(7) != source->digest) {
    return usage_error(fmt::format("sync: {} changed while it was being synced; run again", path));
  }
  return {};
}

// An unlinked temporary file holding a tar of the missing objects (objects/<hex>) and tree.list.
util::Result<int> write_archive(const std::string& local_dir, const SyncTree& tree, const std::vector<std::string>& missing) {
  const auto& api = libarchive::api();
  if (!api.error.empty()) return backend_error("sync: " + api.error);
  const char* tmpdir = std::getenv("TMPDIR");
  std::string pattern = std::string(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp") + "/gpurun-sync-XXXXXX";
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) return backend_error(fmt::format("sync: cannot create a temporary file in {}: {}", pattern, std::strerror(errno)));
  ::unlink(pattern.c_str());
  int sink = fd;
  std::unique_ptr<archive, int (*)(archive*)> writer(api.archive_write_new(), api.archive_write_free);
  std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry(api.archive_entry_new(), api.archive_entry_free);
  api.archive_write_set_format_pax_restricted(writer.get());
  auto result = [&]() -> util::Result<void> {
    if (api.archive_write_open(writer.get(), &sink, nullptr, write_to_fd, nullptr) != ARCHIVE_OK) {
      return backend_error(std::string("sync: ") + api.archive_error_string(writer.get()));
    }
    const std::set<std::string> wanted(missing.begin(), missing.end());
    std::set<std::string> written;
    for (const auto& e : tree.entries) {
      if (e.kind != SyncEntry::Kind::file || !wanted.count(e.digest) || !written.insert(e.digest).second) continue;
      if (auto r = put_entry(writer.get(), entry.get(), "objects/" + e.digest, &e, local_dir, nullptr); !r) return r;
    }
    if (auto r = put_entry(writer.get(), entry.get(), "tree.list", nullptr, local_dir, &tree.listing); !r) return r;
    if (api.archive_write_close(writer.get()) != ARCHIVE_OK) {
      return backend_error(fmt::format("sync: cannot write the archive to send: {}; check free space in the temporary directory",
                                       api.archive_error_string(writer.get())));
    }
    return {};
  }();
  if (!result || ::lseek(fd, 0, SEEK_SET) != 0) {
    ::close(fd);
    return result ? backend_error("sync: cannot rewind the temporary archive") : result.error();
  }
  return fd;
}

// The remote side of the send: unpack, keep the objects, build the tree, rename it into place.
std::string build_tree_body(const std::string& root, const std::string& hash) {
  return fmt::format(
      "root={}\ntree={}\nmkdir -p \"$root/objects\" \"$root/trees\" || exit 1\n"
      "inc=$(mktemp -d \"$root/incoming.XXXXXX\") || exit 1\ntrap 'rm -rf \"$inc\"' EXIT\n"
      "cd \"$inc\" && tar -xf - || exit 1\n"
      "for o in objects/*; do [ -f \"$o\" ] || continue; mv -f \"$o\" \"$root/objects/\" || exit 1; done\n"
      "mkdir \"$inc/tree\" || exit 1\n"
      "while IFS='\t' read -r kind mode ref path; do\n"
      "  t=\"$inc/tree/$path\"\n"
      "  case \"$kind\" in\n"
      "    d) mkdir -p \"$t\" ;;\n"
      "    f) cp \"$root/objects/$ref\" \"$t\" && chmod \"$mode\" \"$t\" ;;\n"
      "    l) ln -s \"$ref\" \"$t\" ;;\n"
      "    *) false ;;\n"
      "  esac || {{ echo \"cannot create $path\" >&2; exit 1; }}\n"
      "done < tree.list\n"
      "chmod 755 \"$inc/tree\" || exit 1\n"
      "mv -T \"$inc/tree\" \"$root/trees/$tree\" 2>/dev/null || [ -d \"$root/trees/$tree\" ] || exit 1\n",
      remote_path_word(root), hash);
}

}  // namespace

util::Result<SyncResult> sync_directory(const SshClient& client, const std::string& local_dir, const std::string& remote_root,
                                        const std::vector<std::string>& skip) {
  auto tree = scan_sync_tree(local_dir, skip);
  if (!tree) return tree.error();
  std::string root = remote_root;
  while (root.size() > 1 && root.back() == '/') root.pop_back();
  SyncResult result;
  result.tree_hash = tree->hash;
  result.remote_path = root + "/trees/" + tree->hash;
  for (const auto& e : tree->entries) result.files += e.kind == SyncEntry::Kind::file ? 1 : 0;
  auto missing = missing_objects(client, root, *tree);
  if (!missing) return missing.error();
  if (!*missing) {
    result.tree_existed = true;
    return result;
  }
  auto fd = write_archive(local_dir, *tree, **missing);
  if (!fd) return fd.error();
  auto sent = client.run(RemoteScript{build_tree_body(root, tree->hash), {}, std::nullopt}, *fd);
  ::close(*fd);
  if (!sent) return sent.error();
  if (sent->exit_code != 0) {
    return backend_error(fmt::format("sync: cannot build {} on {}: {}; check the permissions and free space under {}",
                                     result.remote_path, describe_ssh_host(client.settings()), util::trim(sent->err), root));
  }
  const std::set<std::string> unique((*missing)->begin(), (*missing)->end());
  std::set<std::string> counted;
  for (const auto& e : tree->entries) {
    if (e.kind == SyncEntry::Kind::file && unique.count(e.digest) && counted.insert(e.digest).second) result.bytes_sent += e.size;
  }
  result.objects_sent = unique.size();
  return result;
}

}  // namespace gpurun::cloud
