#include "commands/common.hpp"

#include <fmt/format.h>

namespace gpurun::commands {

int report(Context& ctx, const util::Error& error) {
  ctx.err << "gpurun: error: " << error.message << '\n';
  return util::to_int(error.code);
}

int report(Context& ctx, const util::Error& error, const std::vector<util::Diagnostic>& diagnostics) {
  if (!diagnostics.empty()) {
    ctx.err << util::format_diagnostics(diagnostics) << '\n';
    ctx.err << fmt::format("gpurun: {} error{} found\n", diagnostics.size(), diagnostics.size() == 1 ? "" : "s");
    return util::to_int(error.code);
  }
  return report(ctx, error);
}

std::optional<cloud::Config> load_config(Context& ctx, int& exit_code) {
  std::vector<util::Diagnostic> diagnostics;
  auto config = cloud::load_config(ctx.global.config_path, diagnostics);
  if (!config) {
    exit_code = report(ctx, config.error(), diagnostics);
    return std::nullopt;
  }
  return std::move(config).value();
}

util::Result<std::string> manifest_path(const std::string& positional, const std::string& file_option) {
  if (!positional.empty() && !file_option.empty() && positional != file_option) {
    return util::make_error(util::ExitCode::usage,
                            fmt::format("two manifests given ('{}' and -f '{}'); pass one", positional, file_option));
  }
  if (!positional.empty()) return positional;
  if (!file_option.empty()) return file_option;
  return std::string("gpurun.yaml");
}

std::optional<manifest::Manifest> load_manifest(Context& ctx, const cloud::Config& config, const std::string& path,
                                                int& exit_code) {
  manifest::ManifestContext context;
  context.catalog = &config.catalog;
  context.clouds = config.cloud_names();
  context.secrets = cloud::known_secret_names(config, cloud::process_environment());
  std::vector<util::Diagnostic> diagnostics;
  auto loaded = manifest::load_manifest(path, context, diagnostics);
  if (!loaded) {
    exit_code = report(ctx, loaded.error(), diagnostics);
    return std::nullopt;
  }
  return std::move(loaded).value();
}

std::optional<cloud::PlanInputs> plan_inputs(Context& ctx, const cloud::Config& config, int& exit_code) {
  auto inventory = cloud::local_inventory(config);
  if (!inventory) {
    exit_code = report(ctx, inventory.error());
    return std::nullopt;
  }
  cloud::PlanInputs inputs;
  inputs.local_offers = inventory->offers;
  if (inventory->source == "none") {
    inputs.local_offers_note = "none found on this machine; declare them with GPURUN_LOCAL_GPUS";
  } else {
    inputs.local_offers_note = fmt::format("from {}", inventory->source);
  }
  return inputs;
}

}  // namespace gpurun::commands
