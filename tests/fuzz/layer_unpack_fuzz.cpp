// libFuzzer target for unpacking a layer (tar, optionally compressed) into a root filesystem:
//   gpurun_layer_unpack_fuzz -max_total_time=60 tests/fuzz/corpus/layer_unpack
// Each input is applied onto a fresh rootfs under GPURUN_FUZZ_DIR (default /tmp/gpurun-layer-fuzz)
// next to files it must not touch; afterwards everything outside the rootfs is as before, the
// working directory is unchanged, and the rootfs holds no device node, FIFO or set-ID file.
// Run it in a sandbox whose only writable place is that directory, e.g.
//   bwrap --ro-bind / / --dev /dev --proc /proc --bind DIR DIR --bind CORPUS CORPUS -- ...
// Built by hand until the fuzz build lands in CMake:
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. -Ibuild/generated \
//     tests/fuzz/layer_unpack_fuzz.cpp cloud/images/{image_store,libarchive,image_layer,oci,registry}.cpp \
//     cloud/net/http.cpp util/*.cpp -lfmt -larchive -lz -lcrypto -lcurl -ldl -o layer_unpack_fuzz
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include "cloud/images/image_store.hpp"

namespace fs = std::filesystem;

namespace {

std::string fuzz_dir() {
  const char* dir = std::getenv("GPURUN_FUZZ_DIR");
  return dir != nullptr && *dir != '\0' ? dir : "/tmp/gpurun-layer-fuzz";
}

// Every path under `dir` (not entering `skip`) with its type, mode, size and, for links, target.
std::map<std::string, std::string> snapshot(const std::string& dir, const std::string& skip) {
  std::map<std::string, std::string> out;
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(dir, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    const std::string path = it->path().string();
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) continue;
    std::string what = std::to_string(st.st_mode) + ":" + std::to_string(st.st_ino);
    if (path != skip) what += ":" + std::to_string(st.st_size);  // the rootfs's own size grows with its entries
    if (S_ISLNK(st.st_mode)) what += ":" + fs::read_symlink(path, ec).string();
    out[path] = what;
    if (path == skip) it.disable_recursion_pending();
  }
  return out;
}

void check_rootfs(const std::string& root) {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(root, ec); it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    struct stat st {};
    if (::lstat(it->path().c_str(), &st) != 0) continue;
    if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode)) __builtin_trap();
    if (!S_ISLNK(st.st_mode) && (st.st_mode & 06000) != 0) __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const std::string base = fuzz_dir();
  const std::string layer = base + "/layer";
  const std::string area = base + "/area";  // what the rootfs sits in, with things to protect
  const std::string root = area + "/rootfs/new";
  std::error_code ec;
  fs::remove_all(area, ec);
  fs::create_directories(root, ec);
  fs::create_directories(area + "/rootfs/other-image/etc", ec);
  fs::create_directories(area + "/outside", ec);
  std::ofstream(area + "/rootfs/other-image/etc/passwd") << "root:x:0:0::/root:/bin/sh\n";
  std::ofstream(area + "/outside/victim") << "keep me";
  std::ofstream(layer, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  const auto before = snapshot(base, root);
  const auto cwd = fs::current_path(ec);

  (void)gpurun::cloud::apply_layer(layer, root);

  if (fs::current_path(ec) != cwd) __builtin_trap();
  if (snapshot(base, root) != before) __builtin_trap();
  check_rootfs(root);
  return 0;
}
