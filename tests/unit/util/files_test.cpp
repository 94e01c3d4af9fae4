#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <string>

#include "tests/unit/temp_dir.hpp"
#include "util/files.hpp"

using namespace gpurun;
namespace fs = std::filesystem;

TEST_CASE("read_file reads a whole file, binary bytes included") {
  test::TempDir dir;
  const std::string path = dir.path() + "/data";
  const std::string bytes = std::string("a\0b\n", 4) + std::string(200000, 'x');
  REQUIRE(util::write_file_atomically(path, bytes).ok());
  auto text = util::read_file(path);
  REQUIRE_MESSAGE(text.ok(), text.error().message);
  CHECK(*text == bytes);
}

TEST_CASE("read_file names the path and the reason when it cannot read") {
  test::TempDir dir;
  auto missing = util::read_file(dir.path() + "/nope");
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == util::ExitCode::backend);
  CHECK(missing.error().message == "cannot read " + dir.path() + "/nope: No such file or directory");
  auto as_usage = util::read_file(dir.path() + "/nope", util::ExitCode::usage);
  REQUIRE_FALSE(as_usage.ok());
  CHECK(as_usage.error().code == util::ExitCode::usage);
  int error_number = 0;
  CHECK_FALSE(util::read_file(dir.path() + "/nope", error_number).has_value());
  CHECK(error_number == ENOENT);
  auto directory = util::read_file(dir.path());
  REQUIRE_FALSE(directory.ok());
  CHECK(directory.error().message == "cannot read " + dir.path() + ": Is a directory");
}

TEST_CASE("write_file_atomically replaces a file whole and leaves no temporary behind") {
  test::TempDir dir;
  const std::string path = dir.path() + "/snapshot.yaml";
  REQUIRE(util::write_file_atomically(path, "old").ok());
  REQUIRE(util::write_file_atomically(path, "new contents").ok());
  CHECK(util::read_file(path).value() == "new contents");
  int files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir.path())) ++files;
  CHECK(files == 1);
}

TEST_CASE("write_file_atomically says which file it cannot write and why") {
  test::TempDir dir;
  const std::string path = dir.path() + "/missing-dir/file";
  auto written = util::write_file_atomically(path, "x");
  REQUIRE_FALSE(written.ok());
  CHECK(written.error().code == util::ExitCode::backend);
  CHECK(written.error().message == "cannot write " + path + ": No such file or directory");
}
