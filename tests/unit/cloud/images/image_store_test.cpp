#include <doctest/doctest.h>

#include <archive.h>
#include <archive_entry.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cloud/images/image_store.hpp"
#include "cloud/images/registry.hpp"
#include "tests/unit/read_text.hpp"
#include "tests/unit/registry_server.hpp"
#include "tests/unit/require_tool.hpp"
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

// Sorted names under `dir`, recursively, relative to it ("a", "a/b").
std::vector<std::string> tree(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) names.push_back(fs::relative(entry.path(), dir).string());
  std::sort(names.begin(), names.end());
  return names;
}

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// An app of one image (base scratch, add: ./src) in `dir`.
manifest::Manifest scratch_app(const std::string& dir) {
  manifest::Manifest manifest;
  manifest.dir = dir;
  manifest.app = "demo";
  manifest::Image image;
  image.name = "tiny";
  image.base = "scratch";
  image.add = {{"./src", ""}};
  manifest.images.push_back(image);
  return manifest;
}

}  // namespace

TEST_CASE("build_image: an unchanged add: layer is reused, a changed one rebuilt") {
  test::TempDir dir;
  write_file(dir.path() + "/src/main.py", "print('v1')\n");
  const auto manifest = scratch_app(dir.path());
  const std::string store = dir.path() + "/store";
  auto first = build_image(manifest, manifest.images[0], store);
  REQUIRE_MESSAGE(first.ok(), first.error().message);
  const std::string layer_path = first->blobs.back().path;
  // A reused layer is not written again: its blob keeps an old mtime.
  const auto old_time = fs::last_write_time(layer_path) - std::chrono::hours(1);
  fs::last_write_time(layer_path, old_time);

  auto second = build_image(manifest, manifest.images[0], store);
  REQUIRE_MESSAGE(second.ok(), second.error().message);
  CHECK(second->digest == first->digest);
  CHECK(second->blobs.back().path == layer_path);
  CHECK(fs::last_write_time(layer_path) == old_time);

  SUBCASE("a changed file builds a new layer") {
    write_file(dir.path() + "/src/main.py", "print('v2')\n");
    auto changed = build_image(manifest, manifest.images[0], store);
    REQUIRE_MESSAGE(changed.ok(), changed.error().message);
    CHECK(changed->digest != first->digest);
    CHECK(changed->blobs.back().descriptor.digest != first->blobs.back().descriptor.digest);
  }
  SUBCASE("a record whose blob is gone builds the layer again") {
    fs::remove(layer_path);
    auto rebuilt = build_image(manifest, manifest.images[0], store);
    REQUIRE_MESSAGE(rebuilt.ok(), rebuilt.error().message);
    CHECK(rebuilt->digest == first->digest);
    CHECK(fs::exists(layer_path));
  }
}

TEST_CASE("push_built_image: a no-change push is a HEAD of the manifest, a HEAD per tag and one PUT for the new tag") {
  if (!test::require_tool("docker-registry", "docker-registry")) return;
  test::LoopbackRegistry server;
  test::TempDir dir;
  write_file(dir.path() + "/src/main.py", "print('v1')\n");
  const auto manifest = scratch_app(dir.path());
  const std::string store = dir.path() + "/store";
  auto image = build_image(manifest, manifest.images[0], store);
  REQUIRE_MESSAGE(image.ok(), image.error().message);

  registry::Client client(server.address());
  auto first = push_built_image(client, *image, "demo/tiny", registry::default_tags(image->digest, "v1"), {});
  REQUIRE_MESSAGE(first.ok(), first.error().message);
  CHECK(first->blobs_uploaded == 2);

  registry::Client again(server.address());
  auto second = push_built_image(again, *image, "demo/tiny", registry::default_tags(image->digest, "v2"), {});
  REQUIRE_MESSAGE(second.ok(), second.error().message);
  CHECK(second->digest == image->digest);
  CHECK(second->blobs_skipped == 2);
  CHECK(second->bytes_uploaded == 0);
  CHECK(again.request_counts() == registry::RequestCounts{{"HEAD", 3}, {"PUT", 1}});
  auto tagged = again.manifest_digest("demo/tiny", "v2");
  REQUIRE(tagged.ok());
  CHECK(*tagged == std::optional<std::string>(image->digest));
  auto missing = again.manifest_digest("demo/tiny", "v9");
  REQUIRE(missing.ok());
  CHECK_FALSE(missing->has_value());
}

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
  CHECK(test::read_text(root + "/etc/keep.txt") == "keep");
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
  CHECK(test::read_text(root + "/thing") == "now a file");
  CHECK(test::read_text(root + "/other/child") == "c");
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
  CHECK(test::read_text(outside + "/victim") == "safe");
}
