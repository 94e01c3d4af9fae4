#include <doctest/doctest.h>

#include <string>

#include "util/dynamic_library.hpp"

using namespace gpurun::util;

namespace {
using ZlibVersionFn = const char* (*)();
}

TEST_CASE("DynamicLibrary opens a library by soname and finds its symbols") {
  auto zlib = DynamicLibrary::open("libz.so.1");
  REQUIRE_MESSAGE(zlib.ok(), zlib.error().message);
  auto version = zlib->symbol<ZlibVersionFn>("zlibVersion");
  const bool found = version != nullptr;
  REQUIRE(found);
  CHECK(std::string(version()).substr(0, 2) == "1.");
  ZlibVersionFn missing = nullptr;
  CHECK_FALSE(zlib->load("no_such_function_in_zlib", missing));
  const bool cleared = missing == nullptr;
  CHECK(cleared);
  CHECK(zlib->address("no_such_function_in_zlib") == nullptr);
}

TEST_CASE("DynamicLibrary says which library cannot be loaded and why") {
  auto missing = DynamicLibrary::open("/nonexistent/libgpurun-missing.so");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().message ==
        "cannot load /nonexistent/libgpurun-missing.so: cannot open shared object file: No such file or directory");
}
