#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fmt/format.h>
#include <optional>
#include <utility>

#include "cloud/plan/config.hpp"
#include "cloud/images/image_store.hpp"
#include "cloud/images/registry.hpp"
#include "cloud/exec/process.hpp"
#include "cloud/exec/sandbox.hpp"
#include "cloud/state/logs.hpp"
#include "commands/common.hpp"
#include "util/strings.hpp"
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
  std::string log;  // write the workload's output as log records here (see run_logged)
};

pid_t g_sandbox = 0;  // the bubblewrap child (negative: the workload's process group), for the signal forwarder

extern "C" void forward_signal(int sig) {
  if (g_sandbox != 0) ::kill(g_sandbox, sig);
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

int run_logged(Context& ctx, const NodeExecOptions& options);

// With --log: run_logged. Else (batch scripts of runs launched by an older gpurun) pulls the
// image into the node's cache and runs the workload inside it, its output going to Slurm's.
int run_node_exec(Context& ctx, const NodeExecOptions& options) {
  if (!options.log.empty()) return run_logged(ctx, options);
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


// What run_logged starts: the command line, its environment, and whether it is a bubblewrap sandbox.
struct Workload {
  cloud::ProcessSpec process;
  bool sandboxed = false;
};

std::string host_name() {
  char name[256] = {};
  ::gethostname(name, sizeof name - 1);
  return name;
}

// The workload of `options` on this node: pulls its image first (a marker in `log` says so).
util::Result<Workload> prepare_workload(const NodeExecOptions& options, cloud::LogWriter& log,
                                        const std::vector<std::string>& environ_entries) {
  Workload workload;
  workload.process.env = environ_entries;
  if (options.registry.empty()) {
    workload.sandboxed = !options.binds.empty();
    std::error_code ec;
    const auto cwd = std::filesystem::current_path(ec);
    workload.process.argv =
        workload.sandboxed ? cloud::host_sandbox_argv(options.binds, ec ? std::string() : cwd.string(), options.argv) : options.argv;
    return workload;
  }
  if (options.repository.empty() || options.digest.empty() || options.cache.empty()) {
    return util::Error{util::ExitCode::usage, "node-exec: --registry needs --repository, --digest and --cache"};
  }
  const auto started = std::chrono::steady_clock::now();
  cloud::registry::Options registry_options;
  registry_options.credentials = cloud::registry::find_credentials(options.registry);
  auto pulled = cloud::pull_image(options.registry, options.repository, options.digest, options.cache, registry_options);
  if (!pulled) return util::Error{util::ExitCode::backend, pulled.error().message};
  if (!pulled->was_cached) {
    const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
    (void)log.marker(fmt::format("pulled image {}@{} on {} in {}", options.repository, options.digest.substr(0, 19),
                                 host_name(), util::format_duration(took)));
  }
  cloud::ImageSandbox sandbox;
  sandbox.rootfs = pulled->rootfs;
  sandbox.workdir = pulled->workdir;
  sandbox.gpus = options.gpus;
  sandbox.binds = options.binds;
  workload.sandboxed = true;
  workload.process.argv = cloud::image_sandbox_argv(sandbox, options.argv);
  workload.process.env = cloud::image_environment(pulled->env, environ_entries, options.gpus);
  return workload;
}

// Copies what the child wrote (waiting up to 50 ms) into `log`, keeping stderr's last 4 KiB in
// `stderr_tail`, and closes a pipe at its end. True when it read anything.
bool pump_output(cloud::ChildProcess& child, cloud::LogWriter& log, std::vector<char>& buffer, std::string& stderr_tail) {
  return child.pump_output(buffer, 50, [&](bool from_stderr, const char* data, std::size_t size) {
    (void)log.write(from_stderr ? cloud::LogStream::err : cloud::LogStream::out, data, size);
    if (!from_stderr) return;
    stderr_tail.append(data, size);
    if (stderr_tail.size() > 4096) stderr_tail.erase(0, stderr_tail.size() - 4096);
  });
}

// Logs the child's output until it exited and its pipes are drained (what it left running is
// killed 200 ms after it exited with nothing more to read); returns its exit code.
int follow_child(cloud::ChildProcess& child, cloud::LogWriter& log, std::string& stderr_tail) {
  std::vector<char> buffer(1 << 16);
  std::optional<int> code;
  std::chrono::steady_clock::time_point exited_at;
  while (child.stdout_fd() >= 0 || child.stderr_fd() >= 0 || !code) {
    const bool read_any = pump_output(child, log, buffer, stderr_tail);
    if (!read_any) (void)log.flush();
    if (!code && (code = child.try_wait())) exited_at = std::chrono::steady_clock::now();
    if (code && !read_any && std::chrono::steady_clock::now() - exited_at > std::chrono::milliseconds(200)) {
      child.signal_group(SIGKILL);
      child.close_stdout();
      child.close_stderr();
      break;
    }
  }
  return *code;
}

// Ends a logged run that failed before its workload ran: the reason as a marker in `log` (and on
// stderr, Slurm's output file), the error's exit code.
int fail_logged(Context& ctx, cloud::LogWriter& log, const util::Error& error) {
  (void)log.marker("error: " + error.message);
  (void)log.close();
  return report(ctx, error);
}

// Runs the workload as a child and writes its output to options.log as records stamped when
// written, secret values (GPURUN_MASK_ENV) masked, attempt GPURUN_ATTEMPT (a marker from the
// second on). Returns the workload's exit code (128+N on signal N), 125 for node-exec's own
// failures, 126/127 when the command cannot run.
int run_logged(Context& ctx, const NodeExecOptions& options) {
  const auto environ_entries = cloud::process_environment();
  const char* attempt_text = std::getenv("GPURUN_ATTEMPT");
  const int attempt = std::max(1, attempt_text != nullptr ? std::atoi(attempt_text) : 1);
  auto log = cloud::LogWriter::open(options.log, attempt, cloud::masked_values(environ_entries));
  if (!log) {
    return report(ctx, util::Error{util::ExitCode::backend, fmt::format("node-exec: cannot write the run log: {}; check that "
                                                                        "log_dir is writable from the nodes",
                                                                        log.error().message)});
  }
  if (attempt > 1) (void)log->marker(fmt::format("attempt {} started", attempt));
  (void)log->flush();
  auto workload = prepare_workload(options, *log, environ_entries);
  if (!workload) return fail_logged(ctx, *log, workload.error());
  std::optional<cloud::SandboxStatus> sandbox;
  if (workload->sandboxed) {
    auto attached = cloud::SandboxStatus::attach(workload->process.argv);
    if (!attached) return fail_logged(ctx, *log, attached.error());
    sandbox.emplace(std::move(*attached));
  }
  auto child = cloud::ChildProcess::spawn(workload->process);
  if (sandbox) sandbox->started();
  if (!child) return fail_logged(ctx, *log, child.error());
  g_sandbox = -child->pid();
  struct sigaction action {};
  action.sa_handler = forward_signal;
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGCONT}) ::sigaction(sig, &action, nullptr);
  std::string stderr_tail;
  int code = follow_child(*child, *log, stderr_tail);
  if (sandbox && code != 0 && code < 128 && !sandbox->workload_ran()) {
    const auto failure = cloud::sandbox_failure(stderr_tail);
    (void)log->marker(failure.exit_code == util::to_int(util::ExitCode::backend)
                          ? "error: the sandbox could not be set up (bubblewrap's message is above); check the function's "
                            "volume mount paths against the image"
                          : "error: " + failure.reason);
    code = failure.exit_code;
  }
  (void)log->close();
  return code;
}

}  // namespace

void add_node_exec(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<NodeExecOptions>();
  auto* cmd = root.add_subcommand("node-exec", "Run a command on a cluster node, in an image or with volumes, logging its output (used by gpurun's Slurm jobs)");
  cmd->group("");  // hidden: the batch scripts gpurun generates call it
  cmd->add_option("--log", options->log, "Write the command's output to this log as records, secrets masked");
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
