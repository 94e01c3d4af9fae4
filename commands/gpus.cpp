#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands/table.hpp"
#include "commands/common.hpp"
#include "util/strings.hpp"

namespace gpurun::commands {

namespace {

struct GpusOptions {
  bool json = false;
};

int run_gpus(Context& ctx, const GpusOptions& options) {
  int exit_code = 0;
  auto config = load_config(ctx, exit_code);
  if (!config) return exit_code;
  auto inventory = cloud::local_inventory(*config);
  if (!inventory) return report(ctx, inventory.error());
  cloud::PlanInputs inputs;
  inputs.local_offers = inventory->offers;
  discover_offers(ctx, *config, inputs);

  nlohmann::json types = nlohmann::json::array();
  Table table({"GPU", "MEMORY (GB)", "MAX", "OFFERED BY"});
  for (const auto& type : config->catalog.types()) {
    std::vector<std::string> sizes;
    for (int m : type.memory_gb) sizes.push_back(m == type.default_memory_gb && type.memory_gb.size() > 1 ? fmt::format("{}*", m) : std::to_string(m));
    nlohmann::json clouds = nlohmann::json::array();
    std::vector<std::string> offered;
    for (const auto* c : config->placement_order()) {
      std::vector<std::string> offers;
      for (const auto& o : cloud::cloud_offers(*c, inputs)) {
        if (util::iequals(o.type, type.name)) offers.push_back(gpu::to_string(o, true));
      }
      if (offers.empty()) continue;
      clouds.push_back({{"cloud", c->name}, {"offers", offers}});
      offered.push_back(fmt::format("{} ({})", c->name, util::join(offers, ", ")));
    }
    table.add({type.name, util::join(sizes, "/"), std::to_string(type.max_count), offered.empty() ? "-" : util::join(offered, "; ")});
    types.push_back({{"name", type.name},
                     {"memory_gb", type.memory_gb},
                     {"default_memory_gb", type.default_memory_gb},
                     {"max_count", type.max_count},
                     {"clouds", clouds}});
  }
  nlohmann::json local_devices = nlohmann::json::array();
  for (const auto& d : inventory->devices) {
    local_devices.push_back({{"index", d.index}, {"uuid", d.uuid}, {"name", d.name}, {"type", d.type ? nlohmann::json(*d.type) : nlohmann::json(nullptr)}, {"memory_gb", d.memory_gb}});
  }
  if (options.json) {
    nlohmann::json out;
    out["types"] = types;
    out["any"] = config->catalog.any_pool;
    out["local"] = {{"source", inventory->source}, {"devices", local_devices}, {"notes", inventory->notes}};
    ctx.out << out.dump(2) << '\n';
    return 0;
  }
  ctx.out << table.render();
  ctx.out << fmt::format("\n'any' means: {} (in that order). * = default memory variant.\n",
                         util::join(config->catalog.any_pool, ", "));
  if (inventory->devices.empty()) {
    ctx.out << "Local GPUs: none found (declare them with GPURUN_LOCAL_GPUS=\"T4:2\" where probing is impossible)\n";
  } else {
    ctx.out << fmt::format("Local GPUs (from {}): {}\n", inventory->source, cloud::describe_offers(inventory->offers));
  }
  for (const auto& note : inventory->notes) ctx.err << "gpurun: note: " << note << '\n';
  return 0;
}

}  // namespace

void add_gpus(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<GpusOptions>();
  auto* cmd = root.add_subcommand("gpus", "List the GPU catalog, which clouds offer each type, and the local GPUs");
  cmd->add_flag("--json", options->json, "Print as JSON on stdout");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_gpus(ctx, *options); }; });
}

}  // namespace gpurun::commands
