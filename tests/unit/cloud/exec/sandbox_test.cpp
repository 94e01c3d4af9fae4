#include <doctest/doctest.h>

#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "cloud/exec/process.hpp"
#include "cloud/exec/sandbox.hpp"
#include "tests/unit/temp_dir.hpp"

using namespace gpurun::cloud;
namespace fs = std::filesystem;

namespace {


TEST_CASE("sandbox: an image run's environment is the image's plus what the job passes in") {
  const std::vector<std::pair<std::string, std::string>> image = {{"PATH", "/usr/bin:/bin"}, {"MODE", "image"}, {"LD_LIBRARY_PATH", "/opt/lib"}};
  const std::vector<std::string> job = {"PATH=/host/bin", "HOME=/home/me", "MODE=function", "HF_TOKEN=t0k",
                                        "SLURM_JOB_ID=42", "CUDA_VISIBLE_DEVICES=0,1", "GPURUN_ATTEMPT=2",
                                        "GPURUN_PASS_ENV=MODE,HF_TOKEN", "GPURUN_REGISTRY_PASSWORD=pull-secret",
                                        "UNRELATED=host"};
  CHECK(image_environment(image, job, false) ==
        std::vector<std::string>{"PATH=/usr/bin:/bin", "MODE=function", "LD_LIBRARY_PATH=/opt/lib", "HF_TOKEN=t0k",
                                 "SLURM_JOB_ID=42", "CUDA_VISIBLE_DEVICES=0,1", "GPURUN_ATTEMPT=2"});
  CHECK(image_environment(image, job, true)[2] == "LD_LIBRARY_PATH=/usr/local/nvidia/lib64:/opt/lib");
  CHECK(image_environment({}, {}, true) == std::vector<std::string>{"LD_LIBRARY_PATH=/usr/local/nvidia/lib64"});
}

// A tiny unpacked image: directories, a file, a symbolic link, busybox as /bin/sh.
std::string make_rootfs(const std::string& dir) {
  const std::string root = dir + "/rootfs";
  for (const char* sub : {"bin", "etc", "usr/lib", "usr/local", "proc", "dev", "tmp", "app"}) fs::create_directories(root + "/" + sub);
  std::ofstream(root + "/etc/passwd") << "root:x:0:0::/root:/bin/sh\n";
  fs::create_symlink("usr/lib", root + "/lib");
  std::error_code ec;
  fs::copy_file("/usr/bin/busybox", root + "/bin/sh", ec);
  return root;
}

// Every path under `dir` with its type and size: what a run must leave as it was.
std::vector<std::string> listing(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& entry : fs::recursive_directory_iterator(dir)) {
    const auto status = entry.symlink_status();
    out.push_back(fs::relative(entry.path(), dir).string() + ":" + std::to_string(static_cast<int>(status.type())));
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace

TEST_CASE("sandbox: `/` is a tmpfs of read-only rootfs binds; missing mount points get a tmpfs parent") {
  gpurun::test::TempDir dir;
  const std::string root = make_rootfs(dir.path());
  ImageSandbox sandbox;
  sandbox.rootfs = root;
  sandbox.workdir = "/app";
  sandbox.binds = {{"/tmp/run1", "/tmp/run1"}, {"/vol/data", "/data"}, {"/vol/extra", "/usr/local/share/extra"},
                   {"/vol/libs", "/lib/extra"}, {"/vol/pw", "/etc/passwd"}};
  const auto argv = image_sandbox_argv(sandbox, {"sh", "-c", "echo hi"});
  REQUIRE(argv.size() > 4);
  CHECK(argv[0].find("bwrap") != std::string::npos);
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  CHECK(rest == std::vector<std::string>{
                    "--die-with-parent", "--ro-bind", root + "/app", "/app", "--ro-bind", root + "/bin", "/bin",
                    "--ro-bind", root + "/etc", "/etc", "--symlink", "usr/lib", "/lib", "--ro-bind", root + "/usr", "/usr",
                    "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", "/tmp/run1", "/tmp/run1",
                    // /usr/lib (through the /lib link) and /usr/local: tmpfs holding their entries
                    "--tmpfs", "/usr/lib", "--tmpfs", "/usr/local",
                    "--bind", "/vol/data", "/data", "--bind", "/vol/extra", "/usr/local/share/extra", "--bind", "/vol/libs",
                    "/usr/lib/extra", "--bind", "/vol/pw", "/etc/passwd", "--remount-ro", "/", "--chdir", "/app", "--",
                    "sh", "-c", "echo hi"});
}

TEST_CASE("sandbox: an image run leaves the unpacked rootfs as it was, mount points included") {
  REQUIRE_MESSAGE(::access("/usr/bin/busybox", X_OK) == 0, "install busybox-static");
  gpurun::test::TempDir dir;
  const std::string root = make_rootfs(dir.path());
  fs::create_directories(dir.path() + "/vol");
  std::ofstream(dir.path() + "/vol/file") << "volume";
  const auto before = listing(root);
  ImageSandbox sandbox;
  sandbox.rootfs = root;
  sandbox.binds = {{dir.path() + "/vol", "/data/deep"}, {dir.path() + "/vol", "/etc/conf.d"}, {dir.path() + "/vol", "/lib/x"}};
  ProcessSpec spec;
  spec.argv = image_sandbox_argv(sandbox, {"/bin/sh", "-c", "cat /data/deep/file /etc/conf.d/file /lib/x/file; "
                                                            "sh -c 'head -c4 /etc/passwd'; touch /usr/new 2>/dev/null || echo ro"});
  auto status = SandboxStatus::attach(spec.argv);
  REQUIRE(status.ok());
  auto child = ChildProcess::spawn(spec);
  REQUIRE_MESSAGE(child.ok(), child.error().message);
  status->started();
  std::string out;
  char buffer[4096];
  ssize_t got = 0;
  while ((got = ::read(child->stdout_fd(), buffer, sizeof buffer)) > 0) out.append(buffer, static_cast<std::size_t>(got));
  CHECK(child->wait() == 0);
  CHECK(status->workload_ran());
  CHECK(out == "volumevolumevolumerootro\n");
  CHECK(listing(root) == before);
}

TEST_CASE("sandbox: a sandbox that cannot be set up is gpurun's failure with bubblewrap's message") {
  gpurun::test::TempDir dir;
  const std::string root = make_rootfs(dir.path());
  fs::create_directories(dir.path() + "/vol");
  ImageSandbox sandbox;
  sandbox.rootfs = root;
  sandbox.binds = {{dir.path() + "/vol", "/etc/passwd/x"}};
  ProcessSpec spec;
  spec.argv = image_sandbox_argv(sandbox, {"/bin/sh", "-c", "exit 1"});
  auto status = SandboxStatus::attach(spec.argv);
  REQUIRE(status.ok());
  auto child = ChildProcess::spawn(spec);
  REQUIRE(child.ok());
  status->started();
  std::string err;
  char buffer[4096];
  ssize_t got = 0;
  while ((got = ::read(child->stderr_fd(), buffer, sizeof buffer)) > 0) err.append(buffer, static_cast<std::size_t>(got));
  CHECK(child->wait() == 1);
  CHECK_FALSE(status->workload_ran());
  const auto failure = sandbox_failure(err);
  CHECK(failure.exit_code == 125);
  CHECK(failure.reason == "failed to set up its sandbox: bwrap: Can't mkdir parents for /etc/passwd/x: Not a directory");

  SUBCASE("a workload that fails is the workload's failure") {
    ProcessSpec plain;
    plain.argv = image_sandbox_argv(ImageSandbox{root, "", {}, false}, {"/bin/sh", "-c", "exit 1"});
    auto ran = SandboxStatus::attach(plain.argv);
    REQUIRE(ran.ok());
    auto failing = ChildProcess::spawn(plain);
    REQUIRE(failing.ok());
    ran->started();
    CHECK(failing->wait() == 1);
    CHECK(ran->workload_ran());
  }
  CHECK(sandbox_failure("bwrap: execvp nope: No such file or directory\n").exit_code == 127);
}
