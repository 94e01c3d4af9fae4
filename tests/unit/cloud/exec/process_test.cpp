#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <thread>

#include "cloud/exec/process.hpp"
#include "util/process_group.hpp"

using namespace gpurun::cloud;
namespace util = gpurun::util;

namespace {

ProcessSpec sleeper() {
  ProcessSpec spec;
  spec.argv = {"/bin/sh", "-c", "sleep 30"};
  spec.env = {"PATH=/usr/bin:/bin"};
  return spec;
}

}  // namespace

TEST_CASE("process: a child dies with the thread that started it") {
  std::optional<ChildProcess> child;
  std::thread starter([&] {
    auto spawned = ChildProcess::spawn(sleeper());
    if (spawned.ok()) child.emplace(std::move(*spawned));
  });
  starter.join();
  REQUIRE(child.has_value());
  CHECK(child->wait() == 128 + SIGKILL);
}

TEST_CASE("process: on_forked sees the child's group before it runs, and its error stops the child") {
  ProcessSpec spec = sleeper();
  std::optional<util::ProcessGroup> seen;
  spec.on_forked = [&](pid_t pid) -> util::Result<void> {
    seen = util::ProcessGroup{pid, *util::process_start_ticks(pid)};
    return {};
  };
  auto child = ChildProcess::spawn(spec);
  REQUIRE(child.ok());
  REQUIRE(seen.has_value());
  CHECK(seen->pgid == child->pid());
  CHECK(::getpgid(child->pid()) == child->pid());
  CHECK(util::process_group_alive(*seen));
  child->signal_group(SIGKILL);
  CHECK(child->wait() == 128 + SIGKILL);
  // The shell's own child (if it forked one) dies as soon as the kernel delivers its SIGKILL.
  for (int i = 0; i < 200 && util::process_group_alive(*seen); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  CHECK_FALSE(util::process_group_alive(*seen));

  pid_t refused_pid = 0;
  spec.on_forked = [&](pid_t pid) -> util::Result<void> {
    refused_pid = pid;
    return util::make_error(util::ExitCode::backend, "disk full");
  };
  auto refused = ChildProcess::spawn(spec);
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message == "disk full");
  CHECK(refused_pid > 0);
  CHECK(::kill(refused_pid, 0) != 0);  // killed and reaped
}
