#include <CLI/CLI.hpp>

#include "commands/context.hpp"
#include "completion_scripts.hpp"  // generated from completions/ by completions/embed.cmake

namespace gpurun::commands {

namespace {

struct CompletionOptions {
  std::string shell;
};

int run_completion(Context& ctx, const CompletionOptions& options) {
  if (options.shell == "bash") ctx.out << generated::completion_bash;
  if (options.shell == "zsh") ctx.out << generated::completion_zsh;
  if (options.shell == "fish") ctx.out << generated::completion_fish;
  return 0;
}

}  // namespace

void add_completion(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<CompletionOptions>();
  auto* cmd = root.add_subcommand("completion", "Print the shell completion script for bash, zsh or fish (see docs/completion.md)");
  cmd->add_option("shell", options->shell, "bash, zsh or fish")
      ->required()
      ->type_name("SHELL")
      ->check(CLI::IsMember({"bash", "zsh", "fish"}));
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_completion(ctx, *options); }; });
}

}  // namespace gpurun::commands
