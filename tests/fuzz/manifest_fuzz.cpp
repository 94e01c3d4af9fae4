// libFuzzer target for parse_manifest (built only with clang; not part of ctest):
//   build/tests/gpurun_manifest_fuzz -max_total_time=60 CORPUS_DIR
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "gpu/catalog.hpp"
#include "manifest/manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const gpurun::gpu::Catalog catalog = gpurun::gpu::Catalog::builtin();
  static const gpurun::manifest::ManifestContext context{&catalog, {"local", "gcp"}, {"wandb"}};
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  std::vector<gpurun::util::Diagnostic> diagnostics;
  auto result = gpurun::manifest::parse_manifest(text, "fuzz.yaml", context, diagnostics);
  if (result.ok() != diagnostics.empty()) __builtin_trap();
  for (const auto& d : diagnostics) {
    if (d.line < 1 || d.column < 1) __builtin_trap();
  }
  return 0;
}
