#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands/common.hpp"

namespace gpurun::commands {

namespace {

struct ValidateOptions {
  ManifestArgs args;
};

int run_validate(Context& ctx, const ValidateOptions& options) {
  int exit_code = 0;
  auto loaded = load_config_and_manifest(ctx, options.args, exit_code);
  if (!loaded) return exit_code;
  const manifest::Manifest* manifest = &loaded->manifest;
  const std::string* path = &loaded->path;
  ctx.err << fmt::format("{}: valid (app '{}', {} function{})\n", *path, manifest->app, manifest->functions.size(),
                         manifest->functions.size() == 1 ? "" : "s");
  return 0;
}

}  // namespace

void add_validate(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<ValidateOptions>();
  auto* cmd = root.add_subcommand("validate", "Check a manifest; print every error with file:line:col");
  add_manifest_args(*cmd, options->args);
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_validate(ctx, *options); }; });
}

}  // namespace gpurun::commands
