#include <doctest/doctest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <archive.h>
#include <archive_entry.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>

#include "cloud/images/image_layer.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun;
namespace fs = std::filesystem;

namespace {

void write(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

// The project tree the layer tests share; `variant` changes mtimes, creation order and umask.
void make_tree(const fs::path& root, int variant) {
  mode_t old_mask = ::umask(variant == 0 ? 022 : 077);
  if (variant == 0) {
    write(root / "main.py", "print('hi')\n");
    write(root / "lib/util.py", "X = 1\n");
    write(root / "lib/data/table.csv", "a,b\n1,2\n");
    write(root / "run.sh", "#!/bin/sh\necho run\n");
  } else {
    write(root / "run.sh", "#!/bin/sh\necho run\n");
    write(root / "lib/data/table.csv", "a,b\n1,2\n");
    write(root / "lib/util.py", "X = 1\n");
    write(root / "main.py", "print('hi')\n");
  }
  fs::permissions(root / "run.sh", variant == 0 ? fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec
                                               : fs::perms::owner_read | fs::perms::owner_exec);
  write(root / "build/out.o", "object");
  write(root / "notes.log", "log");
  write(root / "keep.log", "kept");
  write(root / ".git/HEAD", "ref: refs/heads/main\n");
  write(root / "config/settings.json", "{}\n");
  fs::create_symlink("lib/util.py", root / "util_link.py");
  write(root / ".gpurunignore", "# build output\nbuild/\n*.log\n!keep.log\n");
  ::umask(old_mask);
  auto when = fs::file_time_type::clock::now() - std::chrono::hours(variant == 0 ? 1 : 1000);
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (!entry.is_symlink()) fs::last_write_time(entry.path(), when);
  }
  if (variant == 1 && ::geteuid() == 0) {
    for (const auto& entry : fs::recursive_directory_iterator(root)) {
      if (::lchown(entry.path().c_str(), 1234, 4321) != 0) FAIL("lchown failed");
    }
  }
}

struct TarEntry {
  std::string type;
  int mode = 0;
  long long uid = -1, gid = -1, mtime = -1;
  std::string uname, gname, link;
  std::string content;
};

std::map<std::string, TarEntry> read_tar(const std::string& path) {
  std::map<std::string, TarEntry> out;
  archive* reader = archive_read_new();
  archive_read_support_filter_gzip(reader);
  archive_read_support_format_tar(reader);
  REQUIRE(archive_read_open_filename(reader, path.c_str(), 10240) == ARCHIVE_OK);
  archive_entry* entry = nullptr;
  while (archive_read_next_header(reader, &entry) == ARCHIVE_OK) {
    TarEntry item;
    auto type = archive_entry_filetype(entry);
    item.type = type == AE_IFDIR ? "dir" : type == AE_IFLNK ? "link" : "file";
    item.mode = static_cast<int>(archive_entry_perm(entry));
    item.uid = archive_entry_uid(entry);
    item.gid = archive_entry_gid(entry);
    item.mtime = archive_entry_mtime(entry);
    item.uname = archive_entry_uname(entry) ? archive_entry_uname(entry) : "";
    item.gname = archive_entry_gname(entry) ? archive_entry_gname(entry) : "";
    item.link = archive_entry_symlink(entry) ? archive_entry_symlink(entry) : "";
    char buffer[4096];
    la_ssize_t got;
    while ((got = archive_read_data(reader, buffer, sizeof buffer)) > 0) item.content.append(buffer, static_cast<std::size_t>(got));
    std::string name = archive_entry_pathname(entry);
    if (name.back() == '/') name.pop_back();
    out[name] = item;
  }
  archive_read_free(reader);
  return out;
}

std::string error_of(const std::string& dir, std::vector<manifest::ImageAdd> add) {
  auto layer = cloud::build_layer(dir, add, "/app", dir + "/../layer.tar.gz");
  REQUIRE_FALSE(layer.ok());
  CHECK(layer.error().code == util::ExitCode::usage);
  return layer.error().message;
}

}  // namespace

TEST_CASE("image layer: the same tree gives the same digest whatever the mtimes, umask and owner") {
  test::TempDir dir;
  fs::path a = fs::path(dir.path()) / "a";
  fs::path b = fs::path(dir.path()) / "b";
  make_tree(a, 0);
  make_tree(b, 1);
  std::vector<manifest::ImageAdd> add = {{".", ""}, {"config/settings.json", "/etc/app/settings.json"}};
  auto first = cloud::build_layer(a.string(), add, "/app", dir.path() + "/a.tar.gz");
  auto second = cloud::build_layer(b.string(), add, "/app", dir.path() + "/b.tar.gz");
  REQUIRE_MESSAGE(first.ok(), first.error().message);
  REQUIRE_MESSAGE(second.ok(), second.error().message);
  CHECK(first->digest == second->digest);
  CHECK(first->diff_id == second->diff_id);
  CHECK(first->size == second->size);
  CHECK(first->size == fs::file_size(dir.path() + "/a.tar.gz"));
  CHECK(first->warnings.empty());
  // A format change (tar layout, gzip header, modes) must be a deliberate decision. The blob
  // digest also depends on zlib's deflate output (Debian 12: zlib 1.2.13).
  CHECK(first->digest == "sha256:d5290e719cc33cb6caf80b58c817884d44114a2b6ac8b9363049dbaad95648cc");
  CHECK(first->diff_id == "sha256:a1d5986b48ce8c3a926082cb97b8ac8b5557c87502eba79d2e1d3bf19596d8c7");

  auto entries = read_tar(first->path);
  std::vector<std::string> names;
  for (const auto& [name, entry] : entries) names.push_back(name);
  CHECK(names == std::vector<std::string>{"app", "app/.gpurunignore", "app/config", "app/config/settings.json",
                                          "app/keep.log", "app/lib", "app/lib/data", "app/lib/data/table.csv",
                                          "app/lib/util.py", "app/main.py", "app/run.sh", "app/util_link.py", "etc",
                                          "etc/app", "etc/app/settings.json"});
  CHECK(entries["app/run.sh"].mode == 0755);
  CHECK(entries["app/main.py"].mode == 0644);
  CHECK(entries["app/lib"].mode == 0755);
  CHECK(entries["app/lib"].type == "dir");
  CHECK(entries["app/util_link.py"].type == "link");
  CHECK(entries["app/util_link.py"].link == "lib/util.py");
  CHECK(entries["etc/app/settings.json"].content == "{}\n");
  for (const auto& [name, entry] : entries) {
    CHECK(entry.uid == 0);
    CHECK(entry.gid == 0);
    CHECK(entry.mtime == 0);
    CHECK(entry.uname.empty());
    CHECK(entry.gname.empty());
  }
  // gzip header: no name flag, mtime 0.
  std::ifstream in(first->path, std::ios::binary);
  unsigned char header[10];
  in.read(reinterpret_cast<char*>(header), 10);
  CHECK(header[0] == 0x1f);
  CHECK(header[1] == 0x8b);
  CHECK(header[3] == 0);
  CHECK((header[4] | header[5] | header[6] | header[7]) == 0);
}

TEST_CASE("image layer: a changed file changes the digest") {
  test::TempDir dir;
  write(dir.path() + "/src/main.py", "v1");
  auto first = cloud::build_layer(dir.path() + "/src", {{"main.py", ""}}, "/app", dir.path() + "/1.tar.gz");
  write(dir.path() + "/src/main.py", "v2");
  auto second = cloud::build_layer(dir.path() + "/src", {{"main.py", ""}}, "/app", dir.path() + "/2.tar.gz");
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  CHECK(first->digest != second->digest);
  CHECK(first->entries == 2);
}

TEST_CASE("image layer: the inputs key changes with content, mode, names and workdir, not with nothing") {
  test::TempDir dir;
  const std::string src = dir.path() + "/src";
  write(src + "/main.py", "v1");
  write(src + "/lib/util.py", "u");
  const std::vector<manifest::ImageAdd> add{{".", ""}};
  auto key = [&](const std::string& workdir = "/app") {
    auto inputs = cloud::layer_inputs(src, add, workdir);
    REQUIRE_MESSAGE(inputs.ok(), inputs.error().message);
    return inputs->key;
  };
  const std::string first = key();
  CHECK(first.rfind("sha256:", 0) == 0);
  CHECK(key() == first);
  CHECK(key("/srv") != first);

  SUBCASE("same size, new content (mtime moves)") {
    const auto old_time = fs::last_write_time(src + "/main.py");
    write(src + "/main.py", "v2");
    fs::last_write_time(src + "/main.py", old_time + std::chrono::seconds(1));
    CHECK(key() != first);
  }
  SUBCASE("the executable bit") {
    fs::permissions(src + "/lib/util.py", fs::perms::owner_exec, fs::perm_options::add);
    CHECK(key() != first);
  }
  SUBCASE("a new file, and an ignored one") {
    write(src + "/.gpurunignore", "*.log\n");
    const std::string with_ignore = key();
    CHECK(with_ignore != first);
    write(src + "/run.log", "ignored");
    CHECK(key() == with_ignore);
    write(src + "/data.txt", "new");
    CHECK(key() != with_ignore);
  }
  SUBCASE("errors are build_layer's") {
    auto missing = cloud::layer_inputs(src, {{"nope.py", ""}}, "/app");
    REQUIRE_FALSE(missing.ok());
    CHECK(missing.error().message == "image add: 'nope.py' does not exist in " + fs::canonical(src).string() +
                                         "; sources are relative to the manifest's directory");
  }
}

TEST_CASE("image layer: ignore rules") {
  auto rules = cloud::IgnoreRules::parse(
      "# comment\n\n*.pyc\n/top.txt\nbuild/\ndocs/**/*.md\n**/cache\n!important.pyc\ndata/*\n!data/keep\n\\#hash\nlogs/**\n");
  CHECK(rules.ignored("a.pyc", false));
  CHECK(rules.ignored("deep/dir/a.pyc", false));
  CHECK_FALSE(rules.ignored("important.pyc", false));
  CHECK_FALSE(rules.ignored("sub/important.pyc", false) == true);
  CHECK(rules.ignored("top.txt", false));
  CHECK_FALSE(rules.ignored("sub/top.txt", false));
  CHECK(rules.ignored("build", true));
  CHECK(rules.ignored("src/build", true));
  CHECK_FALSE(rules.ignored("build", false));
  CHECK(rules.ignored("docs/a.md", false));
  CHECK(rules.ignored("docs/x/y/a.md", false));
  CHECK_FALSE(rules.ignored("docs/a.txt", false));
  CHECK(rules.ignored("cache", true));
  CHECK(rules.ignored("a/b/cache", false));
  CHECK(rules.ignored("data/x", false));
  CHECK_FALSE(rules.ignored("data/keep", false));
  CHECK(rules.ignored("#hash", false));
  CHECK(rules.ignored("logs/a/b", false));
  CHECK_FALSE(rules.ignored("logs", true));
  CHECK(rules.ignored(".git", true));
  CHECK(rules.ignored("sub/.git", true));
  CHECK_FALSE(rules.ignored(".github", true));
  auto classes = cloud::IgnoreRules::parse("file[0-9].txt\n?.tmp\n");
  CHECK(classes.ignored("file3.txt", false));
  CHECK_FALSE(classes.ignored("filex.txt", false));
  CHECK(classes.ignored("a.tmp", false));
  CHECK_FALSE(classes.ignored("ab.tmp", false));
}

TEST_CASE("image layer: sources outside the manifest's directory are errors naming the path") {
  test::TempDir dir;
  std::string project = dir.path() + "/project";
  write(project + "/main.py", "x");
  write(dir.path() + "/secret.txt", "s");
  CHECK(error_of(project, {{"../secret.txt", ""}}) ==
        "image add: '../secret.txt' is outside the manifest's directory; move it next to the manifest or use a volume");
  CHECK(error_of(project, {{"/etc/passwd", ""}}) ==
        "image add: '/etc/passwd' is an absolute path; sources are relative to the manifest's directory");
  CHECK(error_of(project, {{"missing.py", ""}}) ==
        "image add: 'missing.py' does not exist in " + fs::canonical(project).string() +
            "; sources are relative to the manifest's directory");
  fs::create_symlink("../secret.txt", project + "/link.txt");
  CHECK(error_of(project, {{".", ""}}) ==
        "image add: symlink 'link.txt' points outside the manifest's directory (../secret.txt); replace it with the "
        "file or add the target explicitly");
  fs::remove(project + "/link.txt");
  fs::create_symlink("/etc/hostname", project + "/abs.txt");
  CHECK(error_of(project, {{"abs.txt", ""}}) ==
        "image add: symlink 'abs.txt' points outside the manifest's directory (/etc/hostname); replace it with the "
        "file or add the target explicitly");
  fs::remove(project + "/abs.txt");
  fs::create_directories(dir.path() + "/elsewhere");
  write(dir.path() + "/elsewhere/x.py", "x");
  fs::create_symlink(dir.path() + "/elsewhere", project + "/other");
  CHECK(error_of(project, {{"other/x.py", ""}}) ==
        "image add: 'other/x.py' resolves outside the manifest's directory (" +
            fs::canonical(dir.path() + "/elsewhere/x.py").string() + "); move it next to the manifest or use a volume");
}

TEST_CASE("image layer: dst placement and large-file warnings") {
  test::TempDir dir;
  std::string project = dir.path() + "/project";
  write(project + "/model/weights.bin", "w");
  write(project + "/tool", "t");
  fs::resize_file(project + "/model/weights.bin", cloud::large_file_warning_bytes + 1);
  auto layer = cloud::build_layer(project, {{"model", "/opt/model"}, {"tool", "/usr/local/bin/"}}, "/app",
                                  dir.path() + "/layer.tar.gz");
  REQUIRE_MESSAGE(layer.ok(), layer.error().message);
  REQUIRE(layer->warnings.size() == 1);
  CHECK(layer->warnings[0] ==
        "image add: 'model/weights.bin' is 100 MB; large files slow every push, consider a volume or .gpurunignore");
  auto entries = read_tar(layer->path);
  CHECK(entries.count("opt/model/weights.bin") == 1);
  CHECK(entries.count("usr/local/bin/tool") == 1);
  CHECK(entries.count("usr/local") == 1);
  CHECK(entries.count("app") == 0);
}
