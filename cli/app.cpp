#include "cli/app.hpp"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <fmt/format.h>
#include <optional>

#include "util/exit_code.hpp"
#include "util/result.hpp"
#include "util/strings.hpp"

namespace gpurun::cli {

namespace {

void build(CLI::App& app, commands::Context& ctx) {
  app.set_version_flag("--version", std::string("gpurun ") + GPURUN_VERSION);
  app.add_option("--config", ctx.global.config_path, "Config file (default: $GPURUN_CONFIG, then ~/.config/gpurun/config.yaml)")
      ->type_name("FILE");
  app.fallthrough();
  app.require_subcommand(1);
  commands::add_validate(app, ctx);
  commands::add_plan(app, ctx);
  commands::add_gpus(app, ctx);
  commands::add_run(app, ctx);
  commands::add_deploy(app, ctx);
  commands::add_deployments(app, ctx);
  commands::add_app(app, ctx);
  commands::add_prune(app, ctx);
  commands::add_volume(app, ctx);
  commands::add_images(app, ctx);
  commands::add_ps(app, ctx);
  commands::add_logs(app, ctx);
  commands::add_cancel(app, ctx);
  commands::add_wait(app, ctx);
  commands::add_attach(app, ctx);
  commands::add_completion(app, ctx);
  commands::add_complete(app, ctx);
  commands::add_node_exec(app, ctx);
  commands::add_monitor(app, ctx);
  commands::add_host_run(app, ctx);
  commands::add_host_status(app, ctx);
  commands::add_host_volume(app, ctx);
  commands::add_host_gpus(app, ctx);
}

// Whether `word` is an option that takes a value as the next word (not written as --opt=value).
bool takes_next_word(const CLI::App& command, const std::string& word) {
  if (word.find('=') != std::string::npos) return false;
  const CLI::Option* option = command.get_option_no_throw(word);
  return option != nullptr && option->get_type_size_max() > 0;
}

// `run`'s words after FUNCTION and before `--`: its own options are fine (`run train --gpu
// A100:40`), but --help, --version and unknown options are not gpurun's to act on. Returns the
// usage error that says to pass them to the function after `--`.
std::optional<std::string> misplaced_after_function(CLI::App& root, const std::vector<std::string>& args) {
  std::size_t i = 0;
  while (i < args.size() && args[i] != "run") i += takes_next_word(root, args[i]) ? 2 : 1;
  if (i >= args.size()) return std::nullopt;
  const CLI::App* run = root.get_subcommand("run");
  std::optional<std::string> function;
  for (++i; i < args.size() && args[i] != "--"; ++i) {
    const std::string& word = args[i];
    const bool option = word.size() > 1 && word[0] == '-';
    if (!option) {
      if (!function) function = word;
      continue;
    }
    const std::string name = word.substr(0, word.find('='));
    const bool own = name != "-h" && name != "--help" && (run->get_option_no_throw(name) != nullptr || name == "--config");
    if (function && !own) {
      std::vector<std::string> rest(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
      rest.erase(std::remove(rest.begin(), rest.end(), "--"), rest.end());
      return fmt::format("'{}' after FUNCTION '{}' is not an option of 'gpurun run'; to pass it to the function, put it "
                         "after '--': gpurun run {} -- {}",
                         word, *function, *function, util::join(rest, " "));
    }
    if (own && takes_next_word(name == "--config" ? root : *run, word)) ++i;
  }
  return std::nullopt;
}

// The exit code of a usage error: 125 for the commands that return a workload's code.
int usage_code(const std::vector<std::string>& args) {
  return util::to_int(commands::returns_workload_code(args) ? util::ExitCode::backend : util::ExitCode::usage);
}

}  // namespace

int run_cli(const std::vector<std::string>& args, commands::Context& ctx) {
  CLI::App app{"gpurun: put GPU functions on GPUs (local machine, Slurm clusters)", "gpurun"};
  build(app, ctx);
  if (!args.empty() && args.front() == commands::complete_command) {
    return commands::run_complete(app, std::vector<std::string>(args.begin() + 1, args.end()), ctx);
  }
  if (auto misplaced = misplaced_after_function(app, args)) {
    ctx.err << "gpurun: error: " << *misplaced << '\n';
    return usage_code(args);
  }
  std::vector<std::string> reversed(args.rbegin(), args.rend());
  try {
    app.parse(reversed);
  } catch (const CLI::CallForHelp&) {
    ctx.out << app.help();
    return 0;
  } catch (const CLI::CallForAllHelp&) {
    ctx.out << app.help("", CLI::AppFormatMode::All);
    return 0;
  } catch (const CLI::CallForVersion& e) {
    ctx.out << e.what() << '\n';
    return 0;
  } catch (const CLI::RequiredError& e) {
    if (app.get_subcommands().empty()) {
      ctx.err << app.help();
      ctx.err << "gpurun: error: a command is required; see the list above\n";
      return util::to_int(util::ExitCode::usage);
    }
    ctx.err << fmt::format("gpurun: error: {}; see 'gpurun {} --help'\n", e.what(), app.get_subcommands().front()->get_name());
    return usage_code(args);
  } catch (const CLI::ParseError& e) {
    const auto subs = app.get_subcommands();
    const std::string help = subs.empty() ? "gpurun --help" : fmt::format("gpurun {} --help", subs.front()->get_name());
    ctx.err << fmt::format("gpurun: error: {}; see '{}'\n", e.what(), help);
    return usage_code(args);
  }
  if (!ctx.action) return util::to_int(util::ExitCode::usage);
  try {
    return ctx.action();
  } catch (const std::exception& e) {
    ctx.err << fmt::format("gpurun: error: {}\n", e.what());
    return util::to_int(util::ExitCode::backend);
  }
}

}  // namespace gpurun::cli
