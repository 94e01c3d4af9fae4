#include <doctest/doctest.h>

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/sysmacros.h>

#include <chrono>
#include <fmt/format.h>
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
  char kind = 'f';  // f file, d directory, l symlink, h hard link, c/b char/block device, p FIFO
  std::string data;  // file contents or link target
  unsigned mode = 0;  // permission bits; 0 = the kind's usual
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
    } else if (e.kind == 'h') {
      archive_entry_set_filetype(entry.get(), AE_IFREG);
      archive_entry_set_perm(entry.get(), 0644);
      archive_entry_set_hardlink(entry.get(), e.data.c_str());
    } else if (e.kind == 'c' || e.kind == 'b' || e.kind == 'p') {
      archive_entry_set_filetype(entry.get(), e.kind == 'c' ? AE_IFCHR : e.kind == 'b' ? AE_IFBLK : AE_IFIFO);
      archive_entry_set_perm(entry.get(), 0666);
      archive_entry_set_rdev(entry.get(), makedev(8, 0));  // the host's first disk
    } else {
      archive_entry_set_filetype(entry.get(), AE_IFREG);
      archive_entry_set_perm(entry.get(), 0644);
      archive_entry_set_size(entry.get(), static_cast<la_int64_t>(e.data.size()));
    }
    if (e.mode != 0) archive_entry_set_perm(entry.get(), e.mode);
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

TEST_CASE("apply_layer: a whiteout of '.' or '..' is refused and removes nothing") {
  test::TempDir temp;
  const std::string store = temp.path() + "/rootfs";
  const std::string root = store + "/.tmp-new";
  const std::string other = store + "/other-image";
  fs::create_directories(root);
  fs::create_directories(other);
  std::ofstream(other + "/bin") << "another image";
  for (const std::string& entry : {".wh...", "./.wh...", "sub/.wh...", ".wh..", "sub/.wh.."}) {
    CAPTURE(entry);
    write_tar(temp.path() + "/layer.tar", {{"sub", 'd', ""}, {"sub/keep", 'f', "k"}, {entry, 'f', ""}});
    auto applied = apply_layer(temp.path() + "/layer.tar", root);
    REQUIRE_FALSE(applied.ok());
    const std::string cleaned = entry.rfind("./", 0) == 0 ? entry.substr(2) : entry;
    CHECK(applied.error().message ==
          fmt::format("cannot unpack layer {}/layer.tar: the whiteout '{}' names '{}', not an entry of its directory; "
                      "the layer is malformed",
                      temp.path(), cleaned, cleaned.substr(cleaned.rfind(".wh.") + 4)));
    CHECK(test::read_text(other + "/bin") == "another image");
    CHECK(test::read_text(root + "/sub/keep") == "k");
  }
}

TEST_CASE("apply_layer: device nodes and FIFOs are skipped, set-user/group-ID bits dropped") {
  test::TempDir temp;
  const std::string root = temp.path() + "/root";
  fs::create_directories(root);
  write_tar(temp.path() + "/layer.tar", {{"dev", 'd', ""},
                                        {"dev/sda", 'b', ""},
                                        {"dev/tty0", 'c', ""},
                                        {"run/fifo", 'p', ""},
                                        {"bin/su", 'f', "#!/bin/sh\n", 04755},
                                        {"bin/wall", 'f', "#!/bin/sh\n", 02755},
                                        {"bin/su-again", 'h', "bin/su"},
                                        {"tmp", 'd', "", 01777}});
  auto applied = apply_layer(temp.path() + "/layer.tar", root);
  REQUIRE_MESSAGE(applied.ok(), applied.error().message);
  CHECK(tree(root) == std::vector<std::string>{"bin", "bin/su", "bin/su-again", "bin/wall", "dev", "tmp"});
  CHECK((fs::status(root + "/bin/su").permissions() & fs::perms::mask) == (fs::perms::owner_all | fs::perms::group_read |
                                                                           fs::perms::group_exec | fs::perms::others_read |
                                                                           fs::perms::others_exec));
  struct stat st {};
  REQUIRE(::stat((root + "/bin/wall").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0755);
  REQUIRE(::stat((root + "/tmp").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 01777);
}

TEST_CASE("apply_layer: a hard link through a symbolic link is refused") {
  test::TempDir temp;
  const std::string root = temp.path() + "/root";
  const std::string outside = temp.path() + "/outside";
  fs::create_directories(root);
  fs::create_directories(outside);
  std::ofstream(outside + "/secret") << "host";
  write_tar(temp.path() + "/layer.tar", {{"out", 'l', outside}, {"stolen", 'h', "out/secret"}});
  auto applied = apply_layer(temp.path() + "/layer.tar", root);
  REQUIRE_FALSE(applied.ok());
  CHECK(applied.error().message ==
        "cannot unpack layer " + temp.path() + "/layer.tar: the hard link 'stolen' points outside the image");
  CHECK_FALSE(fs::exists(root + "/stolen"));
}

TEST_CASE("build_image and unpack_rootfs: temporaries a killed gpurun left are removed, live ones kept") {
  test::TempDir dir;
  write_file(dir.path() + "/src/main.py", "print('v1')\n");
  const auto manifest = scratch_app(dir.path());
  const std::string store = dir.path() + "/store";
  fs::create_directories(store + "/tmp");
  fs::create_directories(store + "/rootfs/.tmp-abc-1-dead/etc");
  const auto old = fs::file_time_type::clock::now() - std::chrono::minutes(5);
  for (const char* name : {"layer-1-dead.tar.gz", "layer-2-live.tar.gz", "layer-3-new.tar.gz", "other"}) {
    write_file(store + "/tmp/" + name, std::string(1000, 'x'));
    if (std::string(name) != "layer-3-new.tar.gz") fs::last_write_time(store + "/tmp/" + name, old);
  }
  fs::last_write_time(store + "/rootfs/.tmp-abc-1-dead", old);
  // A live writer holds its temporary locked.
  const int live = ::open((store + "/tmp/layer-2-live.tar.gz").c_str(), O_RDONLY | O_CLOEXEC);
  REQUIRE(live >= 0);
  REQUIRE(::flock(live, LOCK_EX) == 0);

  auto image = build_image(manifest, manifest.images[0], store);
  REQUIRE_MESSAGE(image.ok(), image.error().message);
  CHECK(tree(store + "/tmp") == std::vector<std::string>{"layer-2-live.tar.gz", "layer-3-new.tar.gz", "other"});
  auto rootfs = unpack_rootfs(*image, store);
  REQUIRE_MESSAGE(rootfs.ok(), rootfs.error().message);
  CHECK_FALSE(fs::exists(store + "/rootfs/.tmp-abc-1-dead"));
  ::close(live);
}

TEST_CASE("pull_image: the node cache is made private; one another user owns or can change is refused") {
  test::TempDir dir;
  const std::string cache = dir.path() + "/gpurun-0/images";
  const std::string digest = "sha256:" + std::string(64, 'a');
  // Nothing listens on port 1: the pull fails after the cache is made.
  auto pulled = pull_image("http://127.0.0.1:1", "demo/tiny", digest, cache);
  REQUIRE_FALSE(pulled.ok());
  struct stat st {};
  REQUIRE(::stat(cache.c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);
  REQUIRE(::stat((dir.path() + "/gpurun-0").c_str(), &st) == 0);
  CHECK((st.st_mode & 07777) == 0700);

  SUBCASE("writable by others") {
    fs::permissions(cache, fs::perms::all);
    auto refused = pull_image("http://127.0.0.1:1", "demo/tiny", digest, cache);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().message == fmt::format("the image cache {} is writable by other users (mode 0777); run 'chmod go-w "
                                                 "{}' or set the cloud's image_cache to a private directory",
                                                 cache, cache));
  }
  SUBCASE("owned by another user") {
    if (::geteuid() != 0) {
      MESSAGE("needs root to give the directory away (chown)");
      return;
    }
    REQUIRE(::chown(cache.c_str(), 65534, 65534) == 0);
    auto refused = pull_image("http://127.0.0.1:1", "demo/tiny", digest, cache);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().message == fmt::format("the image cache {} belongs to user 65534, not to you (user 0): another user "
                                                 "could have put images in it; remove it or set the cloud's image_cache to "
                                                 "a directory of your own",
                                                 cache));
  }
  SUBCASE("in a directory another user can change") {
    fs::permissions(dir.path() + "/gpurun-0", fs::perms::all);
    auto refused = pull_image("http://127.0.0.1:1", "demo/tiny", digest, cache);
    REQUIRE_FALSE(refused.ok());
    CHECK(refused.error().message == fmt::format("the image cache {} lies in {}/gpurun-0 (owner user {}, mode 0777), which "
                                                 "another user can change; set the cloud's image_cache to a directory that "
                                                 "only you and root control",
                                                 cache, dir.path(), ::geteuid()));
  }
}

TEST_CASE("pull_image: a rootfs without its completion marker is replaced; with it, nothing is read again") {
  if (!test::require_tool("docker-registry", "docker-registry")) return;
  test::LoopbackRegistry server;
  test::TempDir dir;
  write_file(dir.path() + "/src/main.py", "print('v1')\n");
  const auto manifest = scratch_app(dir.path());
  auto image = build_image(manifest, manifest.images[0], dir.path() + "/store");
  REQUIRE_MESSAGE(image.ok(), image.error().message);
  registry::Client client(server.address());
  REQUIRE(push_built_image(client, *image, "demo/tiny", {"v1"}, {}).ok());

  const std::string cache = dir.path() + "/cache";
  const std::string hex = image->digest.substr(7);
  // Planted (or half-unpacked) before: no marker, so it is not trusted.
  write_file(cache + "/rootfs/" + hex + "/app/src/main.py", "print('planted')\n");
  fs::permissions(cache, fs::perms::owner_all);
  auto pulled = pull_image("http://" + server.address(), "demo/tiny", image->digest, cache);
  REQUIRE_MESSAGE(pulled.ok(), pulled.error().message);
  CHECK_FALSE(pulled->was_cached);
  CHECK(test::read_text(pulled->rootfs + "/app/src/main.py") == "print('v1')\n");
  CHECK(fs::exists(cache + "/rootfs/" + hex + ".json"));

  // With the marker, the blobs are not even read: removing them changes nothing.
  fs::remove_all(cache + "/blobs/sha256");
  auto again = pull_image("http://127.0.0.1:1", "demo/tiny", image->digest, cache);
  REQUIRE_MESSAGE(again.ok(), again.error().message);
  CHECK(again->was_cached);
  CHECK(again->rootfs == pulled->rootfs);
  CHECK(again->env == pulled->env);
  CHECK(again->workdir == pulled->workdir);
}

TEST_CASE("apply_layer: every seed of the layer fuzz corpus unpacks or fails cleanly, inside the root") {
  // Includes the input the fuzzer found: a header libarchive gives no pathname for (it threw
  // std::logic_error from std::string(nullptr) and took the process down).
  const std::string corpus = std::string(GPURUN_SOURCE_DIR) + "/tests/fuzz/corpus/layer_unpack";
  REQUIRE(fs::exists(corpus + "/regression-entry-without-name"));
  for (const auto& seed : fs::directory_iterator(corpus)) {
    CAPTURE(seed.path().string());
    test::TempDir temp;
    fs::create_directories(temp.path() + "/root");
    fs::create_directories(temp.path() + "/outside");
    std::ofstream(temp.path() + "/outside/victim") << "keep";
    const auto applied = apply_layer(seed.path().string(), temp.path() + "/root");
    if (!applied.ok()) CHECK(applied.error().message.rfind("cannot unpack layer " + seed.path().string() + ": ", 0) == 0);
    CHECK(test::read_text(temp.path() + "/outside/victim") == "keep");
    CHECK(tree(temp.path() + "/outside") == std::vector<std::string>{"victim"});
  }
  test::TempDir temp;
  auto nameless = apply_layer(corpus + "/regression-entry-without-name", temp.path());
  REQUIRE_FALSE(nameless.ok());
  CHECK(nameless.error().message == "cannot unpack layer " + corpus +
                                        "/regression-entry-without-name: an entry has no name (or one libarchive cannot "
                                        "read); the layer is malformed");
}
