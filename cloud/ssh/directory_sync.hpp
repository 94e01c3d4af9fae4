#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "cloud/ssh/ssh_client.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// One entry of a directory to sync, by its path relative to the directory ("a/b.txt").
struct SyncEntry {
  enum class Kind { directory, file, symlink };
  std::string path;
  Kind kind = Kind::file;
  bool executable = false;   // files: synced as 0755, else 0644
  std::string digest;        // files: the hex sha256 of the content (the object's name)
  std::string link_target;   // symlinks: relative, inside the directory
  std::uint64_t size = 0;    // files: bytes
};

// A local directory as it will appear remotely: its entries sorted by path, the listing sent to
// the remote side (one tab-separated line per entry: kind, mode, object or target, path) and the
// tree hash (hex sha256 of the listing: paths, modes and content hashes).
struct SyncTree {
  std::vector<SyncEntry> entries;
  std::string listing;
  std::string hash;
};

// Reads `local_dir` honouring its `.gpurunignore` (the rules of image `add:`) and hashes every
// file. Symlinks are kept when they point inside the directory; others, special files and names
// with a tab or newline are usage errors naming the path and the fix. Directories in `skip`
// (absolute paths, e.g. gpurun's own state directory when it lies inside) are left out.
util::Result<SyncTree> scan_sync_tree(const std::string& local_dir, const std::vector<std::string>& skip = {});

// The listing and tree hash of `entries` (sorted by path).
SyncTree make_sync_tree(std::vector<SyncEntry> entries);

// What one sync did.
struct SyncResult {
  std::string remote_path;     // <remote_root>/trees/<tree hash> (as the remote shell reads it)
  std::string tree_hash;
  std::size_t files = 0;       // files in the tree
  std::size_t objects_sent = 0;
  std::uint64_t bytes_sent = 0;  // content bytes of the objects sent
  bool tree_existed = false;   // the same tree was there already: one round trip, nothing sent
};

// Makes a copy of `local_dir` on the host at <remote_root>/trees/<tree hash>/: one round trip asks
// which objects (<remote_root>/objects/<sha256>) are missing, one sends them with the listing as a
// tar stream; the tree is built from copies of the objects and renamed into place atomically.
// `skip` as for scan_sync_tree.
util::Result<SyncResult> sync_directory(const SshClient& client, const std::string& local_dir, const std::string& remote_root,
                                        const std::vector<std::string>& skip = {});

}  // namespace gpurun::cloud
