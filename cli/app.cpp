#include "cli/app.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "util/exit_code.hpp"
#include "util/result.hpp"

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
  commands::add_images(app, ctx);
  commands::add_ps(app, ctx);
  commands::add_logs(app, ctx);
  commands::add_cancel(app, ctx);
  commands::add_wait(app, ctx);
  commands::add_completion(app, ctx);
  commands::add_complete(app, ctx);
  commands::add_node_exec(app, ctx);
}

}  // namespace

int run_cli(const std::vector<std::string>& args, commands::Context& ctx) {
  CLI::App app{"gpurun: put GPU functions on GPUs (local machine, Slurm clusters)", "gpurun"};
  build(app, ctx);
  if (!args.empty() && args.front() == commands::complete_command) {
    return commands::run_complete(app, std::vector<std::string>(args.begin() + 1, args.end()), ctx);
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
    return util::to_int(util::ExitCode::usage);
  } catch (const CLI::ParseError& e) {
    const auto subs = app.get_subcommands();
    const std::string help = subs.empty() ? "gpurun --help" : fmt::format("gpurun {} --help", subs.front()->get_name());
    ctx.err << fmt::format("gpurun: error: {}; see '{}'\n", e.what(), help);
    return util::to_int(util::ExitCode::usage);
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
