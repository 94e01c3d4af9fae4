// gpurun host-gpus (hidden): the GPU discovery side of `backend: ssh`. Prints this host's GPUs as
// its local backend sees them ($GPURUN_LOCAL_GPUS, else NVML, else nvidia-smi; names mapped to
// the catalog as local probing does) as one JSON object: {"offers": ["T4:2"], "source", "notes"}.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cloud/plan/local_inventory.hpp"
#include "commands/common.hpp"

namespace gpurun::commands {

namespace {

int run_host_gpus(Context& ctx) {
  const cloud::Config config;  // the host's own GPUs: no client config applies there
  auto inventory = cloud::local_inventory(config);
  if (!inventory) return report(ctx, inventory.error());
  nlohmann::json out{{"offers", nlohmann::json::array()}, {"source", inventory->source}, {"notes", inventory->notes}};
  for (const auto& offer : inventory->offers) out["offers"].push_back(gpu::to_string(offer, config.catalog, true));
  ctx.out << out.dump() << '\n';
  return 0;
}

}  // namespace

void add_host_gpus(CLI::App& root, Context& ctx) {
  auto* cmd = root.add_subcommand("host-gpus", "Print this host's GPUs as JSON (used by gpurun's ssh backend)");
  cmd->group("");  // hidden: the ssh backend calls it on the host
  cmd->callback([&ctx] { ctx.action = [&ctx] { return run_host_gpus(ctx); }; });
}

}  // namespace gpurun::commands
