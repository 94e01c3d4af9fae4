#include <doctest/doctest.h>
#include <cstring>
#include <sys/un.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "cloud/ssh/directory_sync.hpp"
#include "cloud/ssh/remote_gpurun.hpp"
#include "util/sha256.hpp"

using namespace gpurun;
using namespace gpurun::cloud;
namespace fs = std::filesystem;

namespace {

struct TempDir {
  fs::path path;
  TempDir() {
    char pattern[] = "/tmp/gpurun-sync-unit-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    path = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  void write(const std::string& relative, const std::string& text, bool executable = false) const {
    fs::create_directories((path / relative).parent_path());
    std::ofstream(path / relative) << text;
    ::chmod((path / relative).c_str(), executable ? 0755 : 0644);
  }
};

std::string hex(const std::string& text) { return util::sha256_digest(text).substr(7); }

}  // namespace

TEST_CASE("the sync listing names kind, mode, object and path; its hash is the tree hash") {
  std::vector<SyncEntry> entries = {
      {"run.sh", SyncEntry::Kind::file, true, hex("run"), "", 3},
      {"a", SyncEntry::Kind::directory, true, "", "", 0},
      {"a/b.txt", SyncEntry::Kind::file, false, hex("b"), "", 1},
      {"a/link", SyncEntry::Kind::symlink, false, "", "b.txt", 0},
  };
  const SyncTree tree = make_sync_tree(entries);
  CHECK(tree.listing == "d\t755\t-\ta\n"
                        "f\t644\t" + hex("b") + "\ta/b.txt\n"
                        "l\t777\tb.txt\ta/link\n"
                        "f\t755\t" + hex("run") + "\trun.sh\n");
  CHECK(tree.hash == hex(tree.listing));
  std::reverse(entries.begin(), entries.end());
  CHECK(make_sync_tree(entries).hash == tree.hash);  // order of discovery does not matter
  for (auto& e : entries) e.executable = e.path == "run.sh" ? false : e.executable;
  CHECK(make_sync_tree(entries).hash != tree.hash);  // a mode is part of the tree
}

TEST_CASE("scanning a directory honours .gpurunignore, keeps the exec bit and inside symlinks") {
  TempDir dir;
  dir.write(".gpurunignore", "*.log\nbuild/\n!keep.log\n");
  dir.write("main.py", "print(1)\n");
  dir.write("run.sh", "#!/bin/sh\n", true);
  dir.write("debug.log", "noise");
  dir.write("keep.log", "kept");
  dir.write("build/out.o", "binary");
  dir.write("src/util.py", "print(1)\n");
  fs::create_directory(dir.path / "empty");
  fs::create_directory_symlink("src", dir.path / "src-link");
  fs::create_directory(dir.path / ".git");
  dir.write(".git/HEAD", "ref");
  auto tree = scan_sync_tree(dir.path.string());
  REQUIRE_MESSAGE(tree.ok(), (tree.ok() ? "" : tree.error().message));
  CHECK(tree->listing == "f\t644\t" + hex("*.log\nbuild/\n!keep.log\n") + "\t.gpurunignore\n"
                         "d\t755\t-\tempty\n"
                         "f\t644\t" + hex("kept") + "\tkeep.log\n"
                         "f\t644\t" + hex("print(1)\n") + "\tmain.py\n"
                         "f\t755\t" + hex("#!/bin/sh\n") + "\trun.sh\n"
                         "d\t755\t-\tsrc\n"
                         "l\t777\tsrc\tsrc-link\n"
                         "f\t644\t" + hex("print(1)\n") + "\tsrc/util.py\n");
  const std::string before = tree->hash;
  auto again = scan_sync_tree(dir.path.string());
  REQUIRE(again.ok());
  CHECK(again->hash == before);  // an unchanged directory is the same tree
  dir.write("debug.log", "more noise");
  CHECK(scan_sync_tree(dir.path.string())->hash == before);  // ignored files do not count
  dir.write("main.py", "print(2)\n");
  CHECK(scan_sync_tree(dir.path.string())->hash != before);
}

TEST_CASE("scanning refuses symlinks that leave the directory, special files and tab names") {
  TempDir dir;
  dir.write("a.txt", "a");
  fs::create_symlink("../outside", dir.path / "up");
  auto up = scan_sync_tree(dir.path.string());
  REQUIRE_FALSE(up.ok());
  CHECK(up.error().code == util::ExitCode::usage);
  CHECK(up.error().message == "sync: symlink 'up' in " + dir.path.string() +
                                  " points outside the directory (../outside); replace it with the file, or list it in "
                                  ".gpurunignore");
  fs::remove(dir.path / "up");
  fs::create_symlink("/etc/passwd", dir.path / "abs");
  CHECK(scan_sync_tree(dir.path.string()).error().message ==
        "sync: symlink 'abs' in " + dir.path.string() +
            " points outside the directory (/etc/passwd); replace it with the file, or list it in .gpurunignore");
  dir.write(".gpurunignore", "abs\n");
  CHECK(scan_sync_tree(dir.path.string()).ok());  // an ignored symlink is never looked at
  REQUIRE(::mkfifo((dir.path / "pipe").c_str(), 0600) == 0);
  CHECK(scan_sync_tree(dir.path.string()).error().message ==
        "sync: 'pipe' in " + dir.path.string() +
            " is not a regular file, directory or symlink; remove it or list it in .gpurunignore");
  fs::remove(dir.path / "pipe");
  {
    // A unix socket is skipped: it has no content to send.
    const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    const std::string socket_path = (dir.path / "live.sock").string();
    REQUIRE(socket_path.size() < sizeof(address.sun_path));
    std::strncpy(address.sun_path, socket_path.c_str(), sizeof(address.sun_path) - 1);
    REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);  // NOLINT
    auto with_socket = scan_sync_tree(dir.path.string());
    ::close(fd);
    REQUIRE(with_socket.ok());
    for (const auto& entry : with_socket->entries) CHECK(entry.path != "live.sock");
    fs::remove(dir.path / "live.sock");
  }
  {
    // A directory named in `skip` (gpurun's state dir inside the project) is left out.
    fs::create_directories(dir.path / "state" / "runs");
    dir.write("state/state.db", "live");
    auto skipped = scan_sync_tree(dir.path.string(), {(dir.path / "state").string()});
    REQUIRE(skipped.ok());
    for (const auto& entry : skipped->entries) CHECK(entry.path.rfind("state", 0) != 0);
    auto kept = scan_sync_tree(dir.path.string());
    REQUIRE(kept.ok());
    CHECK(std::any_of(kept->entries.begin(), kept->entries.end(), [](const auto& e) { return e.path == "state/state.db"; }));
    fs::remove_all(dir.path / "state");
  }
  dir.write("tab\tname", "x");
  CHECK(scan_sync_tree(dir.path.string()).error().message ==
        "sync: the name of 'tab\tname' in " + dir.path.string() +
            " holds a tab or newline; rename it or list it in .gpurunignore");
  CHECK(scan_sync_tree((dir.path / "a.txt").string()).error().message ==
        "sync: " + (dir.path / "a.txt").string() + " is not a directory; give the directory to copy to the remote host");
}

TEST_CASE("local_uname is `uname -sm` of this machine") {
  FILE* pipe = ::popen("uname -sm", "r");
  REQUIRE(pipe != nullptr);
  char line[256] = {};
  REQUIRE(std::fgets(line, sizeof line, pipe) != nullptr);
  ::pclose(pipe);
  std::string expected = line;
  while (!expected.empty() && expected.back() == '\n') expected.pop_back();
  CHECK(local_uname() == expected);
}
