#include "commands/loading.hpp"

#include <CLI/CLI.hpp>
#include <fmt/format.h>

#include "cloud/backend/registry.hpp"
#include "commands/report.hpp"

namespace gpurun::commands {

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

void add_manifest_args(CLI::App& command, ManifestArgs& args) {
  command.add_option("manifest", args.positional, "Manifest file (default ./gpurun.yaml)")->type_name("MANIFEST");
  command.add_option("-f,--file", args.file, "Manifest file (same as the positional argument)")->type_name("FILE");
}

std::optional<Loaded> load_config_and_manifest(Context& ctx, const ManifestArgs& args, int& exit_code) {
  auto config = load_config(ctx, exit_code);
  if (!config) return std::nullopt;
  auto path = manifest_path(args.positional, args.file);
  if (!path) {
    exit_code = report(ctx, path.error());
    return std::nullopt;
  }
  auto manifest = load_manifest(ctx, *config, *path, exit_code);
  if (!manifest) return std::nullopt;
  return Loaded{std::move(*config), std::move(*manifest), *path};
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
  discover_offers(ctx, config, inputs);
  return inputs;
}

void discover_offers(Context& ctx, const cloud::Config& config, cloud::PlanInputs& inputs) {
  for (const auto& c : config.clouds) {
    if (!c.discover_gpus) continue;
    auto backend = cloud::make_backend(c.backend, &c, &config);
    auto found = backend ? (*backend)->discover_offers() : util::Result<cloud::DiscoveredOffers>(backend.error());
    if (!found) {
      inputs.discovered_notes[c.name] = found.error().message;
      ctx.err << "gpurun: warning: " << found.error().message << '\n';
      continue;
    }
    inputs.discovered_offers[c.name] = found->offers;
    inputs.discovered_notes[c.name] = found->note;
    for (const auto& skipped : found->skipped) ctx.err << fmt::format("gpurun: note: cloud '{}': {}\n", c.name, skipped);
  }
}

util::Result<cloud::StateStore> open_store() {
  auto store = cloud::StateStore::open();
  if (!store) return store.error();
  (void)store->reconcile_lost();
  return store;
}

util::Result<std::map<std::string, std::set<std::string>>> images_present(cloud::StateStore& store, const std::string& app,
                                                                          const std::map<std::string, std::string>& digests) {
  auto locations = store.list_image_locations(app);
  if (!locations) return locations.error();
  std::map<std::string, std::set<std::string>> present;
  for (const auto& l : *locations) {
    auto it = digests.find(l.image);
    if (it != digests.end() && it->second == l.digest) present[l.image].insert(l.cloud);
  }
  return present;
}

}  // namespace gpurun::commands
