#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "manifest/manifest.hpp"
#include "util/result.hpp"

namespace gpurun::cloud {

// .gitignore-style rules (`*`, `?`, `[...]`, `**`, `/anchored`, `dir/`, `!negation`, `#`
// comments) over paths relative to the manifest's directory. `.git/` is always ignored.
class IgnoreRules {
 public:
  // Parses the text of a .gpurunignore file.
  static IgnoreRules parse(std::string_view text);
  // True when `relative_path` ("a/b.txt", no leading slash) is ignored; the last matching rule wins.
  bool ignored(std::string_view relative_path, bool is_directory) const;

 private:
  struct Rule {
    std::string glob;  // always matched against the whole relative path
    bool negated = false;
    bool directory_only = false;
  };
  std::vector<Rule> rules_;
};

// One image layer as written to disk.
struct Layer {
  std::string path;             // the gzip-compressed tar
  std::string digest;           // "sha256:<hex>" of the compressed blob (manifest, upload)
  std::string diff_id;          // "sha256:<hex>" of the uncompressed tar (config rootfs)
  std::uint64_t size = 0;       // compressed bytes
  std::uint64_t tar_size = 0;   // uncompressed bytes
  std::size_t entries = 0;      // tar entries, parent directories included
  std::vector<std::string> warnings;  // e.g. files over 100 MB
};

// Files over this size are reported in Layer::warnings.
inline constexpr std::uint64_t large_file_warning_bytes = 100ull * 1000 * 1000;

// Writes one reproducible layer (sorted pax tar, uid/gid 0, mtime 0, modes 0755/0644 from the
// executable bit, gzip without name/time) holding the image's `add:` entries to `output_path`.
// Sources must stay inside `manifest_dir` (also through symlinks); `.gpurunignore` there applies.
util::Result<Layer> build_layer(const std::string& manifest_dir, const std::vector<manifest::ImageAdd>& add,
                                const std::string& workdir, const std::string& output_path);

// What build_layer would read, fingerprinted: each entry's archive path, kind, mode and size, and
// each source file's inode, size, mtime and ctime (ns). Equal keys mean an equal layer, so a
// built layer can be reused without reading its files. Errors are those build_layer reports.
struct LayerInputs {
  std::string key;  // "sha256:<hex>"
  std::vector<std::string> warnings;
};
util::Result<LayerInputs> layer_inputs(const std::string& manifest_dir, const std::vector<manifest::ImageAdd>& add,
                                       const std::string& workdir);

}  // namespace gpurun::cloud
