// The SSH layer against a real sshd (tests/fixtures/sshd.sh), run by
// tests/integration/test_ssh_layer.sh with GPURUN_TEST_SSH_* set. Without them every case fails.
#define DOCTEST_CONFIG_IMPLEMENT_WITH_MAIN
#include <doctest/doctest.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <dirent.h>
#include <fmt/format.h>
#include <fstream>
#include <sstream>
#include <string>
#include <mutex>
#include <thread>

#include "cloud/ssh/directory_sync.hpp"
#include "cloud/ssh/remote_gpurun.hpp"
#include "cloud/ssh/ssh_client.hpp"
#include "util/sha256.hpp"
#include <filesystem>
#include <sys/stat.h>

using namespace gpurun;
using namespace gpurun::cloud;

namespace {

std::string env(const char* name) {
  const char* value = std::getenv(name);
  REQUIRE_MESSAGE(value != nullptr, name, " is not set: run tests/integration/test_ssh_layer.sh");
  return value;
}

// The fixture's host as the user would configure it.
SshSettings fixture(const std::string& key = env("GPURUN_TEST_SSH_KEY"),
                    const std::string& known_hosts = env("GPURUN_TEST_SSH_KNOWN_HOSTS")) {
  SshSettings s;
  s.host = env("GPURUN_TEST_SSH_HOST");
  s.port = std::stoi(env("GPURUN_TEST_SSH_PORT"));
  s.user = env("GPURUN_TEST_SSH_USER");
  s.identity_file = key;
  s.ssh_options = {"IdentitiesOnly=yes", "UserKnownHostsFile=" + known_hosts, "GlobalKnownHostsFile=/dev/null"};
  return s;
}

// A fresh, short control directory so that each case counts its own connections.
SshClientOptions fresh_options() {
  char dir[] = "/tmp/gpurun-sshtest-XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  SshClientOptions options;
  options.control_dir = dir;
  options.control_persist_seconds = 30;
  return options;
}

SshClient client(const SshSettings& s = fixture(), const SshClientOptions& options = fresh_options()) {
  auto c = SshClient::open(s, options);
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
  return std::move(*c);
}

RemoteResult run_ok(const SshClient& c, const std::string& body) {
  auto r = c.run(RemoteScript{body, {}, std::nullopt});
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  return *r;
}

std::size_t count_in_file(const std::string& path, const std::string& needle) {
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string s = text.str();
  std::size_t n = 0;
  for (auto at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
  return n;
}

// Every process's command line (NULs as spaces).
std::string all_command_lines() {
  std::string all;
  DIR* proc = ::opendir("/proc");
  while (dirent* entry = ::readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::ifstream in(std::string("/proc/") + entry->d_name + "/cmdline");
    std::string line((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    for (char& c : line) c = c == '\0' ? ' ' : c;
    all += line + "\n";
  }
  ::closedir(proc);
  return all;
}

// Kills sshd's per-connection processes (the listener stays): every connection drops.
void drop_connections() {
  std::ifstream pid_file(env("GPURUN_TEST_SSH_PID_FILE"));
  int listener = 0;
  pid_file >> listener;
  REQUIRE(listener > 0);
  DIR* proc = ::opendir("/proc");
  int killed = 0;
  while (dirent* entry = ::readdir(proc)) {
    if (entry->d_name[0] < '0' || entry->d_name[0] > '9') continue;
    std::ifstream in(std::string("/proc/") + entry->d_name + "/stat");
    std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto close = stat.rfind(')');
    if (close == std::string::npos) continue;
    std::istringstream rest(stat.substr(close + 2));
    std::string state;
    int ppid = 0;
    rest >> state >> ppid;
    if (ppid == listener) killed += ::kill(std::atoi(entry->d_name), SIGKILL) == 0 ? 1 : 0;
  }
  ::closedir(proc);
  REQUIRE(killed > 0);
}

std::string expected_host() {
  return fmt::format("{}@{}:{}", env("GPURUN_TEST_SSH_USER"), env("GPURUN_TEST_SSH_HOST"), env("GPURUN_TEST_SSH_PORT"));
}

}  // namespace

TEST_CASE("the exit status comes back unchanged and rc-file text is dropped (fish login shell)") {
  const SshClient c = client();
  const RemoteResult r = run_ok(c, "echo out; echo err >&2; exit 7");
  CHECK(r.exit_code == 7);
  CHECK(r.out == "out\n");
  CHECK(r.err == "err\n");
  CHECK(run_ok(c, "exit 0").exit_code == 0);
  CHECK(run_ok(c, "kill -9 $$").exit_code == 255);  // the shell itself killed: as ssh reports it
  c.close_master();
}

TEST_CASE("values are quoted for the remote shell; input reaches the script's stdin") {
  const SshClient c = client();
  const std::string tricky = "it's \"quoted\" $HOME `id` \\ ; newline\nend";
  auto r = c.run(RemoteScript{"printf '%s' \"$TRICKY\"", {{"TRICKY", tricky}}, std::nullopt});
  REQUIRE(r.ok());
  CHECK(r->out == tricky);
  auto in = c.run(RemoteScript{"cat; echo done", {}, std::string("line1\nline2\n")});
  REQUIRE(in.ok());
  CHECK(in->out == "line1\nline2\ndone\n");
  auto bad = c.run(RemoteScript{"true", {{"BAD-NAME", "x"}}, std::nullopt});
  REQUIRE_FALSE(bad.ok());
  CHECK(bad.error().message == "'BAD-NAME' is not a valid environment variable name; use letters, digits and '_'");
  c.close_master();
}

TEST_CASE("remote_setup runs before every command without touching stdout") {
  SshSettings s = fixture();
  s.remote_setup = std::vector<std::string>{"echo setup-noise", "export FROM_SETUP=yes"};
  const SshClient c = client(s);
  const RemoteResult r = run_ok(c, "echo \"$FROM_SETUP\"");
  CHECK(r.out == "yes\n");
  CHECK(r.err == "setup-noise\n");
  c.close_master();
}

TEST_CASE("secrets travel on stdin only: never on a command line, local or remote") {
  const SshClient c = client();
  const std::string secret = fmt::format("s3cr3t-{}-{}", ::getpid(), std::chrono::steady_clock::now().time_since_epoch().count());
  std::atomic<bool> done{false};
  util::Result<RemoteResult> result = util::make_error(util::ExitCode::failure, "not run");
  std::thread runner([&] {
    result = c.run(RemoteScript{"sleep 1.5; printf '%s' \"$API_TOKEN\"", {{"API_TOKEN", secret}}, std::nullopt});
    done = true;
  });
  int scans = 0;
  bool seen_in_argv = false;
  bool saw_remote_sleep = false;
  while (!done) {
    const std::string lines = all_command_lines();
    seen_in_argv = seen_in_argv || lines.find(secret) != std::string::npos;
    saw_remote_sleep = saw_remote_sleep || lines.find("sleep 1.5") != std::string::npos ||
                       lines.find("exec /bin/sh -s") != std::string::npos;
    ++scans;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  runner.join();
  REQUIRE(result.ok());
  CHECK(result->out == secret);  // the remote side had it
  CHECK(scans > 10);
  CHECK(saw_remote_sleep);
  CHECK_FALSE(seen_in_argv);
  c.close_master();
}

TEST_CASE("a shared connection: the second command opens no new SSH connection") {
  const std::string log = env("GPURUN_TEST_SSH_LOG");
  const SshClientOptions options = fresh_options();
  const std::size_t before = count_in_file(log, "Accepted publickey");
  {
    const SshClient c = client(fixture(), options);
    run_ok(c, "true");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(count_in_file(log, "Accepted publickey") == before + 1);
  const SshClient again = client(fixture(), options);  // another client (as another gpurun process would)
  run_ok(again, "true");
  run_ok(again, "true");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(count_in_file(log, "Accepted publickey") == before + 1);
  again.close_master();
  run_ok(again, "true");
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(count_in_file(log, "Accepted publickey") == before + 2);
  again.close_master();
}

TEST_CASE("an unknown host key is an error naming the fix, and is not accepted") {
  const SshClient c = client(fixture(env("GPURUN_TEST_SSH_KEY"), env("GPURUN_TEST_SSH_EMPTY_KNOWN_HOSTS")));
  auto r = c.run(RemoteScript{"true", {}, std::nullopt});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == util::ExitCode::backend);
  CHECK(r.error().message ==
        fmt::format("ssh to {}: the host key is not known (Host key verification failed.); verify the host's fingerprint, "
                    "then add it to ~/.ssh/known_hosts (e.g. connect once with `ssh 127.0.0.1`); gpurun never accepts "
                    "unknown host keys by itself",
                    expected_host()));
  CHECK(count_in_file(env("GPURUN_TEST_SSH_EMPTY_KNOWN_HOSTS"), "ssh-ed25519") == 0);
}

TEST_CASE("a changed host key is an error naming ssh-keygen -R") {
  char path[] = "/tmp/gpurun-sshtest-kh-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  ::close(fd);
  std::ifstream other(env("GPURUN_TEST_SSH_OTHER_KEY") + ".pub");
  std::string type, key;
  other >> type >> key;
  std::ofstream(path) << fmt::format("[127.0.0.1]:{} {} {}\n", env("GPURUN_TEST_SSH_PORT"), type, key);
  const SshClient c = client(fixture(env("GPURUN_TEST_SSH_KEY"), path));
  auto r = c.run(RemoteScript{"true", {}, std::nullopt});
  ::unlink(path);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message ==
        fmt::format("ssh to {}: the host key has CHANGED since it was recorded in known_hosts; if the host was reinstalled, "
                    "remove the old key with `ssh-keygen -R 127.0.0.1` and verify the new one, otherwise do not connect",
                    expected_host()));
}

TEST_CASE("a refused key is an error naming identity_file") {
  const SshClient c = client(fixture(env("GPURUN_TEST_SSH_OTHER_KEY")));
  auto r = c.run(RemoteScript{"true", {}, std::nullopt});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == util::ExitCode::backend);
  CHECK(r.error().message ==
        fmt::format("ssh to {0}: the server refused the key ({1}@127.0.0.1: Permission denied (publickey).); check `user` and "
                    "`identity_file` in the SSH settings and that the public key is in the remote ~/.ssh/authorized_keys "
                    "(gpurun runs ssh in batch mode: no passwords)",
                    expected_host(), env("GPURUN_TEST_SSH_USER")));
}

TEST_CASE("an unreachable host is an error naming host and port") {
  SshSettings s = fixture();
  s.port = 1;  // nothing listens on port 1 of loopback
  const SshClient c = client(s);
  auto r = c.run(RemoteScript{"true", {}, std::nullopt});
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().message ==
        fmt::format("ssh to {}@127.0.0.1:1: the host is unreachable (ssh: connect to host 127.0.0.1 port 1: Connection "
                    "refused); check `host` and `port` and that sshd runs there",
                    env("GPURUN_TEST_SSH_USER")));
}

TEST_CASE("remote files: write a stream, read from an offset, a missing file") {
  const SshClient c = client();
  char path[] = "/tmp/gpurun-sshtest-blob-XXXXXX";
  const int fd = ::mkstemp(path);
  REQUIRE(fd >= 0);
  std::string blob;
  for (unsigned i = 0; i < 300000; ++i) blob += static_cast<char>((i * 7919u) % 256u);
  REQUIRE(::write(fd, blob.data(), blob.size()) == static_cast<ssize_t>(blob.size()));
  ::lseek(fd, 0, SEEK_SET);
  auto sent = c.write_file("~/blobs/sub dir/blob.bin", fd);
  ::close(fd);
  ::unlink(path);
  REQUIRE_MESSAGE(sent.ok(), (sent.ok() ? "" : sent.error().message));
  CHECK(*sent == blob.size());
  auto back = c.read_file("~/blobs/sub dir/blob.bin");
  REQUIRE(back.ok());
  REQUIRE(back->has_value());
  CHECK(**back == blob);
  auto tail = c.read_file("~/blobs/sub dir/blob.bin", 299990);
  REQUIRE_MESSAGE(tail.ok(), (tail.ok() ? "" : tail.error().message));
  REQUIRE(tail->has_value());
  CHECK(**tail == blob.substr(299990));
  auto missing = c.read_file("~/no/such/file");
  REQUIRE(missing.ok());
  CHECK_FALSE(missing->has_value());
  c.close_master();
}

TEST_CASE("following a file survives a dropped connection without loss or repeats") {
  const SshClient c = client();
  run_ok(c, "rm -f ~/follow.log; printf 'line1\\nline2\\nline3\\n' >> ~/follow.log");
  std::string seen;
  std::mutex lock;
  std::atomic<bool> stop{false};
  auto lines = [&] {
    std::lock_guard<std::mutex> guard(lock);
    return seen;
  };
  util::Result<std::uint64_t> reached = util::make_error(util::ExitCode::failure, "not run");
  struct Joiner {
    std::thread thread;
    std::atomic<bool>& stop;
    ~Joiner() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } follower{{}, stop};
  follower.thread = std::thread([&] {
    FollowOptions options;
    options.on_data = [&](std::string_view data) {
      std::lock_guard<std::mutex> guard(lock);
      seen.append(data);
      return true;
    };
    options.keep_going = [&] { return !stop.load(); };
    reached = c.follow_file("~/follow.log", options);
  });
  auto wait_for = [&](const std::string& text) {
    for (int i = 0; i < 200 && lines() != text; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    return lines();
  };
  CHECK(wait_for("line1\nline2\nline3\n") == "line1\nline2\nline3\n");
  run_ok(c, "printf 'line4-par' >> ~/follow.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(lines() == "line1\nline2\nline3\n");  // part of a line is held back
  drop_connections();
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  run_ok(c, "printf 'tial\\nline5\\n' >> ~/follow.log");  // through a new connection
  CHECK(wait_for("line1\nline2\nline3\nline4-partial\nline5\n") == "line1\nline2\nline3\nline4-partial\nline5\n");
  run_ok(c, "printf 'line6\\nlast-no-newline' >> ~/follow.log");
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  stop = true;
  follower.thread.join();
  REQUIRE_MESSAGE(reached.ok(), (reached.ok() ? "" : reached.error().message));
  CHECK(lines() == "line1\nline2\nline3\nline4-partial\nline5\nline6\nlast-no-newline");
  CHECK(*reached == lines().size());
  c.close_master();
}

namespace {

// The hex sha256 of a local file.
std::string file_hex(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  REQUIRE_FALSE(bytes.empty());
  return util::sha256_digest(bytes).substr(7);
}

std::uint64_t file_size(const std::string& path) { return std::filesystem::file_size(path); }

}  // namespace

TEST_CASE("gpurun on the remote side: uploaded once under its sha256, then reused") {
  const SshClient c = client();
  const std::string gpurun = env("GPURUN");
  const std::string dir = fmt::format("~/gpurun-test-bin-{}", ::getpid());
  run_ok(c, "rm -rf " + remote_path_word(dir));
  RemoteGpurunOptions options;
  options.local_binary = gpurun;
  options.directory = dir + "/";
  auto first = ensure_remote_gpurun(c, options);
  REQUIRE_MESSAGE(first.ok(), (first.ok() ? "" : first.error().message));
  CHECK(first->path == dir + "/gpurun-" + file_hex(gpurun));
  CHECK(first->uploaded);
  CHECK(first->bytes_sent == file_size(gpurun));
  CHECK(first->version.rfind("gpurun ", 0) == 0);
  // Only the keyed file is there (no temporary left), executable.
  CHECK(run_ok(c, "cd " + remote_path_word(dir) + " && ls -A && test -x gpurun-" + file_hex(gpurun) + " && echo x").out ==
        "gpurun-" + file_hex(gpurun) + "\nx\n");
  auto second = ensure_remote_gpurun(c, options);
  REQUIRE_MESSAGE(second.ok(), (second.ok() ? "" : second.error().message));
  CHECK_FALSE(second->uploaded);
  CHECK(second->bytes_sent == 0);
  CHECK(second->path == first->path);
  CHECK(second->version == first->version);

  // An explicitly configured path is used as is: only its --version is checked.
  RemoteGpurunOptions configured;
  configured.configured_path = first->path;
  configured.local_binary = "/nonexistent/never-read";
  auto used = ensure_remote_gpurun(c, configured);
  REQUIRE_MESSAGE(used.ok(), (used.ok() ? "" : used.error().message));
  CHECK(used->path == first->path);
  CHECK_FALSE(used->uploaded);
  configured.configured_path = "/opt/no/gpurun";
  configured.setting = "node_gpurun";
  auto missing = ensure_remote_gpurun(c, configured);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == util::ExitCode::backend);
  CHECK(missing.error().message == fmt::format("`node_gpurun` is /opt/no/gpurun but there is no executable file there on {}; "
                                               "install gpurun there or fix `node_gpurun`",
                                               expected_host()));
  run_ok(c, "rm -rf " + remote_path_word(dir));
  c.close_master();
}

TEST_CASE("gpurun on the remote side: the default directory is ~/.cache/gpurun/bin") {
  const SshClient c = client();
  run_ok(c, "rm -rf ~/.cache/gpurun/bin");
  RemoteGpurunOptions options;
  options.local_binary = env("GPURUN");
  auto r = ensure_remote_gpurun(c, options);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  CHECK(r->path == "~/.cache/gpurun/bin/gpurun-" + file_hex(env("GPURUN")));
  CHECK(r->uploaded);
  CHECK(run_ok(c, "test -x ~/.cache/gpurun/bin/gpurun-" + file_hex(env("GPURUN")) + " && echo yes").out == "yes\n");
  c.close_master();
}

TEST_CASE("gpurun on the remote side: the gpurun_dir and gpurun_path settings") {
  const std::string dir = fmt::format("~/gpurun-test-setting-{}", ::getpid());
  SshSettings s = fixture();
  s.gpurun_dir = dir;
  const SshClient c = client(s);
  run_ok(c, "rm -rf " + remote_path_word(dir));
  RemoteGpurunOptions options;
  options.local_binary = env("GPURUN");
  auto uploaded = ensure_remote_gpurun(c, options);
  REQUIRE_MESSAGE(uploaded.ok(), (uploaded.ok() ? "" : uploaded.error().message));
  CHECK(uploaded->path == dir + "/gpurun-" + file_hex(env("GPURUN")));
  CHECK(uploaded->uploaded);
  s.gpurun_path = uploaded->path;
  const SshClient configured = client(s);
  options.local_binary = "/nonexistent/never-read";
  auto used = ensure_remote_gpurun(configured, options);
  REQUIRE_MESSAGE(used.ok(), (used.ok() ? "" : used.error().message));
  CHECK(used->path == uploaded->path);
  CHECK_FALSE(used->uploaded);
  run_ok(c, "rm -rf " + remote_path_word(dir));
  c.close_master();
  configured.close_master();
}

TEST_CASE("gpurun on the remote side: another OS/arch and a missing library are errors naming the setting") {
  const SshClient c = client();
  const std::string dir = fmt::format("~/gpurun-test-bad-{}", ::getpid());
  run_ok(c, "rm -rf " + remote_path_word(dir));
  RemoteGpurunOptions options;
  options.local_binary = env("GPURUN");
  options.directory = dir;
  options.local_system = "Linux riscv64";  // as if this gpurun were built for another machine
  auto other = ensure_remote_gpurun(c, options);
  REQUIRE_FALSE(other.ok());
  CHECK(other.error().code == util::ExitCode::backend);
  CHECK(other.error().message ==
        fmt::format("{} is `{}` but this gpurun is built for `Linux riscv64`; install a gpurun built for that host there and "
                    "set `gpurun_path` to its path",
                    expected_host(), local_uname()));
  CHECK(run_ok(c, "ls -A " + remote_path_word(dir) + " 2>/dev/null | wc -l").out == "0\n");  // nothing was sent

  const std::string broken = env("GPURUN_TEST_NEEDS_ABSENT");
  options.local_binary = broken;
  options.local_system.clear();
  options.setting = "node_gpurun";
  auto fails = ensure_remote_gpurun(c, options);
  REQUIRE_FALSE(fails.ok());
  CHECK(fails.error().message ==
        fmt::format("gpurun {}/gpurun-{} does not run on {} (exit 127: error while loading shared libraries: "
                    "libgpurun_test_absent.so: cannot open shared object file: No such file or directory); install what it "
                    "needs there (e.g. the missing library) or set `node_gpurun` to a gpurun that runs on that host",
                    dir, file_hex(broken), expected_host()));
  CHECK(run_ok(c, "ls -A " + remote_path_word(dir) + " | wc -l").out == "0\n");  // the upload was not kept
  run_ok(c, "rm -rf " + remote_path_word(dir));
  c.close_master();
}

namespace {

struct LocalDir {
  std::filesystem::path path;
  LocalDir() {
    char pattern[] = "/tmp/gpurun-sshtest-sync-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    path = pattern;
  }
  ~LocalDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  void write(const std::string& relative, const std::string& text, mode_t mode = 0644) const {
    std::filesystem::create_directories((path / relative).parent_path());
    std::ofstream(path / relative, std::ios::trunc) << text;
    ::chmod((path / relative).c_str(), mode);
  }
};

SyncResult sync_ok(const SshClient& c, const LocalDir& dir, const std::string& root) {
  auto r = sync_directory(c, dir.path.string(), root);
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  return *r;
}

}  // namespace

TEST_CASE("sync_directory: a content-addressed copy; unchanged files are never sent again") {
  const SshClient c = client();
  const std::string root = fmt::format("~/sync-test-{}", ::getpid());
  run_ok(c, "rm -rf " + remote_path_word(root));
  LocalDir dir;
  dir.write(".gpurunignore", "*.log\ndata/\n");
  dir.write("main.py", "print('hi')\n");
  dir.write("run.sh", "#!/bin/sh\necho ran \"$@\"\n", 0755);
  dir.write("copy of main.py", "print('hi')\n");
  dir.write("sub/dir/b.txt", "b\n");
  dir.write("secret.log", "never leaves this machine\n");
  dir.write("data/big.bin", "big data\n");
  std::filesystem::create_directory(dir.path / "empty");
  std::filesystem::create_symlink("sub/dir/b.txt", dir.path / "b-link");

  const SyncResult first = sync_ok(c, dir, root);
  CHECK_FALSE(first.tree_existed);
  CHECK(first.files == 5);
  CHECK(first.objects_sent == 4);  // main.py and its copy are one object
  CHECK(first.remote_path == root + "/trees/" + first.tree_hash);
  const std::string tree = remote_path_word(first.remote_path);
  CHECK(run_ok(c, "cd " + tree + " && find . | LC_ALL=C sort").out ==
        ".\n./.gpurunignore\n./b-link\n./copy of main.py\n./empty\n./main.py\n./run.sh\n./sub\n./sub/dir\n./sub/dir/b.txt\n");
  CHECK(run_ok(c, "cd " + tree + " && ./run.sh ok && cat main.py && readlink b-link && cat b-link && stat -c %a main.py run.sh")
            .out == "ran ok\nprint('hi')\nsub/dir/b.txt\nb\n644\n755\n");
  CHECK(run_ok(c, "ls " + remote_path_word(root) + "/objects | wc -l; ls -A " + remote_path_word(root) + " | tr '\\n' ' '")
            .out == "4\nobjects trees ");  // no incoming directory left behind

  const SyncResult second = sync_ok(c, dir, root);
  CHECK(second.tree_existed);
  CHECK(second.objects_sent == 0);
  CHECK(second.bytes_sent == 0);
  CHECK(second.remote_path == first.remote_path);

  dir.write("secret.log", "changed, still ignored\n");
  CHECK(sync_ok(c, dir, root).tree_existed);

  dir.write("sub/dir/b.txt", "b changed\n");
  const SyncResult third = sync_ok(c, dir, root);
  CHECK_FALSE(third.tree_existed);
  CHECK(third.objects_sent == 1);
  CHECK(third.bytes_sent == 10);
  CHECK(third.tree_hash != first.tree_hash);
  CHECK(run_ok(c, "cat " + remote_path_word(third.remote_path) + "/sub/dir/b.txt " + tree + "/sub/dir/b.txt").out ==
        "b changed\nb\n");  // the earlier tree is untouched

  ::chmod((dir.path / "main.py").c_str(), 0755);  // a mode change: a new tree, no new object
  const SyncResult fourth = sync_ok(c, dir, root);
  CHECK_FALSE(fourth.tree_existed);
  CHECK(fourth.objects_sent == 0);
  CHECK(run_ok(c, "stat -c %a " + remote_path_word(fourth.remote_path) + "/main.py").out == "755\n");
  run_ok(c, "rm -rf " + remote_path_word(root));
  c.close_master();
}

TEST_CASE("sync_directory: a symlink leaving the directory is refused before anything is sent") {
  const SshClient c = client();
  const std::string root = fmt::format("~/sync-test-out-{}", ::getpid());
  LocalDir dir;
  dir.write("a.txt", "a");
  std::filesystem::create_symlink("/etc/hostname", dir.path / "host");
  auto r = sync_directory(c, dir.path.string(), root);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == util::ExitCode::usage);
  CHECK(r.error().message == "sync: symlink 'host' in " + dir.path.string() +
                                 " points outside the directory (/etc/hostname); replace it with the file, or list it in "
                                 ".gpurunignore");
  CHECK(run_ok(c, "test -e " + remote_path_word(root) + " && echo there || echo absent").out == "absent\n");
  c.close_master();
}
