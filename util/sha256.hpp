#pragma once

#include <cstddef>
#include <string>
#include <string_view>

struct evp_md_ctx_st;  // OpenSSL's EVP_MD_CTX, kept out of this header

namespace gpurun::util {

// Incremental SHA-256 (OpenSSL EVP). Feed bytes with update(); finish() returns "sha256:<hex>"
// (lowercase) once, after which the hash must not be used again.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // Adds `size` bytes at `data` to the hash.
  void update(const void* data, std::size_t size);
  // Adds a byte string to the hash.
  void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
  // The digest of everything added, as "sha256:<64 lowercase hex digits>".
  std::string finish();

 private:
  evp_md_ctx_st* context_;
};

// "sha256:<hex>" of a byte string.
std::string sha256_digest(std::string_view bytes);

}  // namespace gpurun::util
