// libFuzzer target for OCI image references and `base:` values:
//   gpurun_oci_reference_fuzz -max_total_time=60 tests/fuzz/corpus/oci_reference
// A parsed reference has a registry, a repository of lowercase components (never "." or ".."
// that could walk a registry URL) and a tag or digest, and its text parses back to itself.
// Built by hand until the fuzz build lands in CMake:
//   clang++ -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined -I. -Ibuild/generated \
//     tests/fuzz/oci_reference_fuzz.cpp cloud/images/{image_store,libarchive,image_layer,oci,registry}.cpp \
//     cloud/net/http.cpp util/*.cpp -lfmt -larchive -lz -lcrypto -lcurl -ldl -o oci_reference_fuzz
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cloud/images/oci.hpp"
#include "util/strings.hpp"

namespace {

void check_reference(const gpurun::cloud::oci::Reference& r) {
  if (r.registry.empty() || r.repository.empty() || (r.tag.empty() && r.digest.empty())) __builtin_trap();
  for (const auto& part : gpurun::util::split(r.repository, '/')) {
    if (part.empty() || part == "." || part == "..") __builtin_trap();
  }
  if (r.registry.find('/') != std::string::npos || r.tag.find('/') != std::string::npos) __builtin_trap();
  auto again = gpurun::cloud::oci::parse_reference(r.to_string(), "registry.invalid");
  if (!again.ok() || again->registry != r.registry || again->repository != r.repository || again->tag != r.tag ||
      again->digest != r.digest) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto reference = gpurun::cloud::oci::parse_reference(text); reference.ok()) {
    check_reference(*reference);
  } else if (reference.error().message.empty()) {
    __builtin_trap();
  }
  if (auto base = gpurun::cloud::oci::parse_base(text); base.ok()) {
    using Kind = gpurun::cloud::oci::BaseSpec::Kind;
    if (base->kind == Kind::registry) check_reference(base->reference);
    if (base->kind == Kind::layout && base->layout_path.empty()) __builtin_trap();
  }
  return 0;
}
