#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "commands/common.hpp"

namespace gpurun::commands {

namespace {

struct ValidateOptions {
  std::string manifest;
  std::string file;
};

int run_validate(Context& ctx, const ValidateOptions& options) {
  int exit_code = 0;
  auto config = load_config(ctx, exit_code);
  if (!config) return exit_code;
  auto path = manifest_path(options.manifest, options.file);
  if (!path) return report(ctx, path.error());
  auto manifest = load_manifest(ctx, *config, *path, exit_code);
  if (!manifest) return exit_code;
  ctx.err << fmt::format("{}: valid (app '{}', {} function{})\n", *path, manifest->app, manifest->functions.size(),
                         manifest->functions.size() == 1 ? "" : "s");
  return 0;
}

}  // namespace

void add_validate(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<ValidateOptions>();
  auto* cmd = root.add_subcommand("validate", "Check a manifest; print every error with file:line:col");
  cmd->add_option("manifest", options->manifest, "Manifest file (default ./gpurun.yaml)")->type_name("MANIFEST");
  cmd->add_option("-f,--file", options->file, "Manifest file (same as the positional argument)")->type_name("FILE");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_validate(ctx, *options); }; });
}

}  // namespace gpurun::commands
