#pragma once

#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace CLI {
class App;
}

namespace gpurun::commands {

// Options every command accepts (before or after the subcommand).
struct GlobalOptions {
  std::optional<std::string> config_path;  // --config FILE
};

// What a command needs from the outside world; tests pass string streams.
struct Context {
  GlobalOptions global;
  std::ostream& out = std::cout;  // results only (tables, JSON)
  std::ostream& err = std::cerr;  // progress, warnings, errors
  bool out_is_tty = false;
  bool err_is_tty = false;
  // Set by the chosen subcommand's parse callback; run after parsing succeeded.
  std::function<int()> action;
  // Set by the commands whose exit code is a workload's (run, wait, logs -f): every failure of
  // gpurun itself then exits 125 (see util/exit_code.hpp); with `json_errors` it is also printed
  // on stdout as {"id", "status", "exit_code", "error": {"kind", "message"}}.
  bool workload_exit_codes = false;
  bool json_errors = false;
  // Where a command asks for confirmation (app delete, prune, volume rm) when stdin is a terminal.
  std::istream& in = std::cin;
  bool in_is_tty = false;
};

// Whether `args` (gpurun's arguments, without argv[0]) name a command whose exit code is a
// workload's: run, wait, attach, or logs with -f/--follow. Their usage errors exit 125, not 2.
bool returns_workload_code(const std::vector<std::string>& args);

// Each command adds its subcommand to `root`; the callback stores the command's action in ctx.
void add_validate(CLI::App& root, Context& ctx);
void add_plan(CLI::App& root, Context& ctx);
void add_gpus(CLI::App& root, Context& ctx);
void add_run(CLI::App& root, Context& ctx);
void add_deploy(CLI::App& root, Context& ctx);
void add_deployments(CLI::App& root, Context& ctx);
void add_app(CLI::App& root, Context& ctx);
void add_prune(CLI::App& root, Context& ctx);
void add_volume(CLI::App& root, Context& ctx);
void add_images(CLI::App& root, Context& ctx);
void add_ps(CLI::App& root, Context& ctx);
void add_logs(CLI::App& root, Context& ctx);
void add_cancel(CLI::App& root, Context& ctx);
void add_wait(CLI::App& root, Context& ctx);
void add_attach(CLI::App& root, Context& ctx);
void add_completion(CLI::App& root, Context& ctx);
void add_complete(CLI::App& root, Context& ctx);  // hidden: __complete
void add_node_exec(CLI::App& root, Context& ctx);  // hidden: run inside an image on a node
void add_monitor(CLI::App& root, Context& ctx);    // hidden: the state dir's run monitor
void add_host_run(CLI::App& root, Context& ctx);     // hidden: start an ssh backend's run on its host
void add_host_status(CLI::App& root, Context& ctx);  // hidden: runs of a host's state dir as JSON
void add_host_volume(CLI::App& root, Context& ctx);  // hidden: make a volume in a host's state dir
void add_host_gpus(CLI::App& root, Context& ctx);    // hidden: a host's GPUs as JSON

// The hidden command the completion scripts call: `gpurun __complete WORD...`.
inline constexpr std::string_view complete_command = "__complete";
// Prints the candidates for words.back() (see commands/completer.hpp); always returns 0. run_cli hands
// it the raw words before CLI11 parses, so words like --help or --config are never acted on.
int run_complete(CLI::App& root, const std::vector<std::string>& words, Context& ctx);

}  // namespace gpurun::commands
