#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <utility>

#include "cloud/plan/config.hpp"
#include "cloud/images/image_store.hpp"
#include "cloud/images/registry.hpp"
#include "cloud/exec/process.hpp"
#include "cloud/exec/sandbox.hpp"
#include "commands/common.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

struct NodeExecOptions {
  std::string registry;
  std::string repository;
  std::string digest;
  std::string cache;
  bool gpus = false;
  std::vector<std::pair<std::string, std::string>> binds;
  std::vector<std::string> argv;
};

pid_t g_sandbox = 0;  // the bubblewrap child, for the signal forwarder

extern "C" void forward_signal(int sig) {
  if (g_sandbox > 0) ::kill(g_sandbox, sig);
}

// Runs bubblewrap command line `argv` with environment `env` as a child (Slurm's signals passed
// on) and returns its exit code; a sandbox bubblewrap could not set up is gpurun's failure (125,
// bwrap's message is already in the log), not the workload's exit code.
int run_sandbox(Context& ctx, std::vector<std::string> argv, const std::vector<std::string>& env) {
  auto status = cloud::SandboxStatus::attach(argv);
  if (!status) return report(ctx, status.error());
  std::vector<char*> c_argv;
  for (const auto& a : argv) c_argv.push_back(const_cast<char*>(a.c_str()));  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  c_argv.push_back(nullptr);
  std::vector<char*> c_env;
  for (const auto& e : env) c_env.push_back(const_cast<char*>(e.c_str()));  // NOLINT(cppcoreguidelines-pro-type-const-cast)
  c_env.push_back(nullptr);
  ctx.err.flush();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::execve(c_argv[0], c_argv.data(), c_env.data());
    const std::string message = fmt::format("gpurun: error: cannot start {}: {}; install bubblewrap on the node\n", argv[0],
                                            std::strerror(errno));
    [[maybe_unused]] auto n = ::write(2, message.data(), message.size());
    ::_exit(util::to_int(util::ExitCode::backend));
  }
  status->started();
  if (pid < 0) return report(ctx, util::Error{util::ExitCode::backend, fmt::format("fork: {}", std::strerror(errno))});
  g_sandbox = pid;
  struct sigaction action {};
  action.sa_handler = forward_signal;
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT}) ::sigaction(sig, &action, nullptr);
  int wait_status = 0;
  while (::waitpid(pid, &wait_status, 0) < 0 && errno == EINTR) {
  }
  const int code = cloud::exit_code_from_status(wait_status);
  if (code != 0 && code < 128 && code != util::to_int(util::ExitCode::backend) && !status->workload_ran()) {
    return report(ctx, util::Error{util::ExitCode::backend,
                                   "the sandbox could not be set up (bubblewrap's message is above); check the function's "
                                   "volume mount paths against the image"});
  }
  return code;
}

// Pulls the image into the node's cache and replaces this process with the workload inside it.
int run_node_exec(Context& ctx, const NodeExecOptions& options) {
  if (options.registry.empty()) {
    // No image: the host, with the volumes bound at their mount paths.
    std::error_code ec;
    const auto cwd = std::filesystem::current_path(ec);
    return run_sandbox(ctx, cloud::host_sandbox_argv(options.binds, ec ? std::string() : cwd.string(), options.argv),
                        cloud::process_environment());
  }
  if (options.repository.empty() || options.digest.empty() || options.cache.empty()) {
    return report(ctx, util::Error{util::ExitCode::usage, "node-exec: --registry needs --repository, --digest and --cache"});
  }
  const auto started = std::chrono::steady_clock::now();
  cloud::registry::Options registry_options;
  registry_options.credentials = cloud::registry::find_credentials(options.registry);
  auto pulled = cloud::pull_image(options.registry, options.repository, options.digest, options.cache, registry_options);
  if (!pulled) return report(ctx, util::Error{util::ExitCode::backend, pulled.error().message});
  if (!pulled->was_cached) {
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    ctx.err << fmt::format("gpurun: pulled image {}@{} on {} in {}\n", options.repository, options.digest.substr(0, 19),
                           [] {
                             char name[256] = {};
                             ::gethostname(name, sizeof name - 1);
                             return std::string(name);
                           }(),
                           util::format_duration(took));
  }
  cloud::ImageSandbox sandbox;
  sandbox.rootfs = pulled->rootfs;
  sandbox.workdir = pulled->workdir;
  sandbox.gpus = options.gpus;
  sandbox.binds = options.binds;
  return run_sandbox(ctx, cloud::image_sandbox_argv(sandbox, options.argv),
                      cloud::image_environment(pulled->env, cloud::process_environment(), options.gpus));
}

}  // namespace

void add_node_exec(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<NodeExecOptions>();
  auto* cmd = root.add_subcommand("node-exec", "Run a command inside an image on a cluster node (used by gpurun's Slurm jobs)");
  cmd->group("");  // hidden: the batch scripts gpurun generates call it
  cmd->add_option("--registry", options->registry, "Registry URL (none: run on the host)");
  cmd->add_option("--repository", options->repository, "Repository in the registry");
  cmd->add_option("--digest", options->digest, "Manifest digest");
  cmd->add_option("--cache", options->cache, "Node-local image cache directory");
  cmd->add_option("--bind", options->binds, "Bind HOST_PATH at PATH (repeatable)")->type_name("HOST_PATH PATH")->allow_extra_args(false);
  cmd->add_flag("--gpus", options->gpus, "Bind the NVIDIA devices and driver libraries");
  cmd->add_option("argv", options->argv, "The command")->required();
  cmd->positionals_at_end(false);
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_node_exec(ctx, *options); }; });
}

}  // namespace gpurun::commands
