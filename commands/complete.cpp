#include <CLI/CLI.hpp>

#include "commands/completer.hpp"
#include "commands/context.hpp"

namespace gpurun::commands {

int run_complete(CLI::App& root, const std::vector<std::string>& words, Context& ctx) {
  ctx.out << format_completion(complete(root, words));
  return 0;
}

void add_complete(CLI::App& root, Context& ctx) {
  auto* cmd = root.add_subcommand(std::string(complete_command), "Print completion candidates (used by the shell scripts)");
  cmd->group("");  // hidden from --help
  cmd->prefix_command();
  cmd->allow_extras();
  cmd->callback([&root, &ctx, cmd] {
    ctx.action = [&root, &ctx, words = cmd->remaining()] { return run_complete(root, words, ctx); };
  });
}

}  // namespace gpurun::commands
