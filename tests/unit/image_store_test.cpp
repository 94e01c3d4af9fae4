#include <doctest/doctest.h>

#include <archive.h>
#include <archive_entry.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cloud/image_store.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun;
using namespace gpurun::cloud;
namespace fs = std::filesystem;

namespace {

struct TarEntry {
  std::string path;
  char kind = 'f';  // f file, d directory, l symlink
  std::string data;  // file contents or link target
};

// Writes a plain tar of `entries` (in order) to `path`.
void write_tar(const std::string& path, const std::vector<TarEntry>& entries) {
  std::unique_ptr<archive, int (*)(archive*)> writer(archive_write_new(), archive_write_free);
  archive_write_set_format_pax_restricted(writer.get());
  REQUIRE(archive_write_open_filename(writer.get(), path.c_str()) == ARCHIVE_OK);
  for (const auto& e : entries) {
    std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry(archive_entry_new(), archive_entry_free);
    archive_entry_set_pathname(entry.get(), e.path.c_str());
    if (e.kind == 'd') {
      archive_entry_set_filetype(entry.get(), AE_IFDIR);
      archive_entry_set_perm(entry.get(), 0755);
    } else if (e.kind == 'l') {
      archive_entry_set_filetype(entry.get(), AE_IFLNK);
      archive_entry_set_perm(entry.get(), 0777);
      archive_entry_set_symlink(entry.get(), e.data.c_str());
    } else {
      archive_entry_set_filetype(entry.get(), AE_IFREG);
      archive_entry_set_perm(entry.get(), 0644);
      archive_entry_set_size(entry.get(), static_cast<la_int64_t>(e.data.size()));
    }
    REQUIRE(archive_write_header(writer.get(), entry.get()) == ARCHIVE_OK);
    if (e.kind == 'f' && !e.data.empty()) archive_write_data(writer.get(), e.data.data(), e.data.size());
  }
  REQUIRE(archive_write_close(writer.get()) == ARCHIVE_OK);
}

std::string read(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

// Sorted names under `dir`, recursively, relative to it ("a", "a/b").
std::vector<std::string> tree(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) names.push_back(fs::relative(entry.path(), dir).string());
  std::sort(names.begin(), names.end());
  return names;
}

}  // namespace

TEST_CASE("apply_layer: .wh. files remove what lower layers made, files and directories alike") {
  test::TempDir temp;
  const std::string root = temp.path() + "/root";
  fs::create_directories(root);
  write_tar(temp.path() + "/lower.tar", {{"etc", 'd', ""},
                                         {"etc/keep.txt", 'f', "keep"},
                                         {"etc/gone.txt", 'f', "gone"},
                                         {"var/cache/a", 'f', "a"},
                                         {"var/cache/sub/b", 'f', "b"}});
  write_tar(temp.path() + "/upper.tar", {{"etc/.wh.gone.txt", 'f', ""}, {"var/.wh.cache", 'f', ""}, {"etc/new.txt", 'f', "new"}});
  REQUIRE(apply_layer(temp.path() + "/lower.tar", root).ok());
  REQUIRE(apply_layer(temp.path() + "/upper.tar", root).ok());
  CHECK(tree(root) == std::vector<std::string>{"etc", "etc/keep.txt", "etc/new.txt", "var"});
  CHECK(read(root + "/etc/keep.txt") == "keep");
}

TEST_CASE("apply_layer: an opaque marker empties its directory of lower layers only") {
  test::TempDir temp;
  const std::string root = temp.path() + "/root";
  fs::create_directories(root);
  write_tar(temp.path() + "/lower.tar", {{"opt/old.txt", 'f', "old"}, {"opt/deep/older.txt", 'f', "older"}, {"srv/x", 'f', "x"}});
  // The same layer's own entries survive the marker, before and after it.
  write_tar(temp.path() + "/upper.tar",
            {{"opt", 'd', ""}, {"opt/before.txt", 'f', "1"}, {"opt/.wh..wh..opq", 'f', ""}, {"opt/after.txt", 'f', "2"}});
  REQUIRE(apply_layer(temp.path() + "/lower.tar", root).ok());
  REQUIRE(apply_layer(temp.path() + "/upper.tar", root).ok());
  CHECK(tree(root) == std::vector<std::string>{"opt", "opt/after.txt", "opt/before.txt", "srv", "srv/x"});
}

TEST_CASE("apply_layer: a file replaces a directory and a directory a file") {
  test::TempDir temp;
  const std::string root = temp.path() + "/root";
  fs::create_directories(root);
  write_tar(temp.path() + "/lower.tar", {{"thing/inside", 'f', "i"}, {"other", 'f', "o"}});
  write_tar(temp.path() + "/upper.tar", {{"thing", 'f', "now a file"}, {"other/child", 'f', "c"}});
  REQUIRE(apply_layer(temp.path() + "/lower.tar", root).ok());
  REQUIRE(apply_layer(temp.path() + "/upper.tar", root).ok());
  CHECK(read(root + "/thing") == "now a file");
  CHECK(read(root + "/other/child") == "c");
}

TEST_CASE("apply_layer: entries never land outside the root") {
  test::TempDir temp;
  const std::string root = temp.path() + "/root";
  const std::string outside = temp.path() + "/outside";
  fs::create_directories(root);
  fs::create_directories(outside);
  std::ofstream(outside + "/victim") << "safe";

  write_tar(temp.path() + "/dotdot.tar", {{"../outside/victim", 'f', "owned"}});
  auto dotdot = apply_layer(temp.path() + "/dotdot.tar", root);
  REQUIRE_FALSE(dotdot.ok());
  CHECK(dotdot.error().message ==
        "cannot unpack layer " + temp.path() + "/dotdot.tar: the entry '../outside/victim' leads outside the image");

  write_tar(temp.path() + "/link.tar", {{"escape", 'l', outside}, {"escape/victim", 'f', "owned"}});
  auto through = apply_layer(temp.path() + "/link.tar", root);
  REQUIRE_FALSE(through.ok());
  CHECK(through.error().message ==
        "cannot unpack layer " + temp.path() + "/link.tar: the entry 'escape/victim' goes through a symbolic link");

  write_tar(temp.path() + "/whiteout.tar", {{"escape/.wh.victim", 'f', ""}});
  CHECK_FALSE(apply_layer(temp.path() + "/whiteout.tar", root).ok());
  CHECK(read(outside + "/victim") == "safe");
}
