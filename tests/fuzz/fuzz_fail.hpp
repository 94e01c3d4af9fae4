// Shared by the fuzz targets: how a broken invariant is reported. Not part of gpurun.
#pragma once

#include <cstdio>

namespace gpurun::fuzz {

// A trap with a reason on stderr (libFuzzer then saves the input as a crash).
[[noreturn]] inline void fail(const char* what) {
  std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
  __builtin_trap();
}

}  // namespace gpurun::fuzz
