#include <CLI/CLI.hpp>

#include "cloud/local_backend.hpp"
#include "commands/context.hpp"

namespace gpurun::commands {

namespace {

struct SuperviseOptions {
  std::string state_dir;
  int lock_fd = -1;
  std::string run_id;
};

}  // namespace

void add_supervise(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<SuperviseOptions>();
  // Hidden (empty group): started by `gpurun run` as the detached supervisor of one local run.
  auto* cmd = root.add_subcommand("__supervise", "Supervise one local run (internal)")->group("");
  cmd->add_option("--state-dir", options->state_dir)->required();
  cmd->add_option("--lock-fd", options->lock_fd)->required();
  cmd->add_option("run", options->run_id)->required();
  cmd->callback([&ctx, options] {
    ctx.action = [options] { return cloud::supervise(options->state_dir, options->run_id, options->lock_fd); };
  });
}

}  // namespace gpurun::commands
