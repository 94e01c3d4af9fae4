// libFuzzer target: the manifest with inputs up to ~1 MB (manifest_large.options), where the
// size, depth, anchor and alias limits are reached; each input must finish within the per-input
// timeout and the malloc limit. scripts/fuzz manifest_large SECONDS.
#include "manifest_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  gpurun::fuzz::check_manifest(data, size);
  return 0;
}
