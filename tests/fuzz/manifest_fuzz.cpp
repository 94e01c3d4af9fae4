// libFuzzer target: the manifest (YAML tree + validation), small inputs (see manifest.options).
// scripts/fuzz manifest SECONDS; invariants in manifest_check.hpp.
#include "manifest_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  gpurun::fuzz::check_manifest(data, size);
  return 0;
}
