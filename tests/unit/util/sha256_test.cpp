#include <doctest/doctest.h>

#include <string>

#include "util/sha256.hpp"

using namespace gpurun::util;

TEST_CASE("sha256_digest gives the FIPS 180-2 test vectors as sha256:<hex>") {
  CHECK(sha256_digest("") == "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  CHECK(sha256_digest("abc") == "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST_CASE("Sha256 hashes bytes fed in pieces like the whole") {
  const std::string text = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  Sha256 hash;
  hash.update(std::string_view(text).substr(0, 7));
  hash.update(text.data() + 7, text.size() - 7);
  CHECK(hash.finish() == "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  CHECK(sha256_digest(text) == "sha256:248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
}
