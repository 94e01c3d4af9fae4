#include <doctest/doctest.h>

#include "cloud/exec/sandbox.hpp"

using namespace gpurun::cloud;

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

TEST_CASE("sandbox: bubblewrap gets the rootfs as /, the binds, the workdir and the command last") {
  ImageSandbox sandbox;
  sandbox.rootfs = "/cache/rootfs/abc";
  sandbox.workdir = "/app";
  sandbox.binds = {{"/scratch/run1", "/scratch/run1"}, {"/vol/data", "/data"}};
  const auto argv = image_sandbox_argv(sandbox, {"sh", "-c", "echo hi"});
  REQUIRE(argv.size() > 4);
  CHECK(argv[0].find("bwrap") != std::string::npos);
  const std::vector<std::string> rest(argv.begin() + 1, argv.end());
  CHECK(rest == std::vector<std::string>{"--die-with-parent", "--bind", "/cache/rootfs/abc", "/", "--proc", "/proc", "--dev",
                                         "/dev", "--tmpfs", "/tmp", "--bind", "/scratch/run1", "/scratch/run1", "--bind",
                                         "/vol/data", "/data", "--remount-ro", "/", "--chdir", "/app", "--", "sh", "-c",
                                         "echo hi"});
}
