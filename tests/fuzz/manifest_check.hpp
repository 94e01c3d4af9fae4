// The manifest fuzz targets' shared check (manifest: small inputs; manifest_large: up to ~1 MB).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "gpu/catalog.hpp"
#include "manifest/manifest.hpp"
#include "manifest/yaml_tree.hpp"
#include "yaml_print.hpp"

namespace gpurun::fuzz {

// Invariants: ok <=> no diagnostics; every position >= 1:1; a YAML tree read without errors
// prints and reads back as the same tree.
inline void check_manifest(const std::uint8_t* data, std::size_t size) {
  static const gpu::Catalog catalog = gpu::Catalog::builtin();
  static const manifest::ManifestContext context{&catalog, {"local", "gcp"}, {"wandb"}};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<util::Diagnostic> diagnostics;
  auto result = manifest::parse_manifest(text, "fuzz.yaml", context, diagnostics);
  if (result.ok() != diagnostics.empty()) fail("manifest: ok <=> no diagnostics");
  for (const auto& d : diagnostics) {
    if (d.line < 1 || d.column < 1) fail("manifest: a position before 1:1");
    if (d.message.empty()) fail("manifest: an empty message");
  }
  const auto doc = manifest::parse_yaml(text, "fuzz.yaml");
  if (!doc.errors.empty()) return;
  const auto again = printed(doc.root);
  if (!again) return;
  const auto reread = manifest::parse_yaml(*again, "printed.yaml");
  if (!reread.errors.empty()) fail("yaml: the printed tree does not read back");
  if (!same_tree(doc.root, reread.root)) fail("yaml: parse(print(tree)) != tree");
}

}  // namespace gpurun::fuzz
