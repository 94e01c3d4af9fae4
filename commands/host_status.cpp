// gpurun host-status (hidden): the status side of `backend: ssh`. Prints, as one JSON object, the
// runs RUN_ID... of the state dir --state-dir (the host-wide lease dir) and how many of the
// host's GPUs are leased (with --gpu-use also how many others processes outside gpurun use, from
// NVML/nvidia-smi): one call per host answers for all of a client's runs there.

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>
#include <set>

#include "commands/common.hpp"
#include "gpu/discovery.hpp"

namespace gpurun::commands {

namespace {

struct HostStatusOptions {
  std::string state_dir;
  std::vector<std::string> runs;
  bool gpu_use = false;
};

nlohmann::json run_json(const cloud::Run& run) {
  nlohmann::json j{{"id", run.id},         {"status", cloud::to_string(run.status)}, {"reason", run.status_reason},
                   {"gpus", run.gpus},     {"attempt", run.attempt}};
  j["exit_code"] = run.exit_code ? nlohmann::json(*run.exit_code) : nlohmann::json(nullptr);
  return j;
}

// How many GPUs processes outside gpurun use (NVML/nvidia-smi): those with compute processes
// that no lease holds.
int busy_outside(const std::vector<std::pair<cloud::LeaseDevice, std::string>>& leased) {
  std::set<std::string> leased_uuids;
  for (const auto& [device, run] : leased) leased_uuids.insert(device.uuid);
  int busy = 0;
  for (const auto& device : gpu::find_compute_processes(gpu::discovery_options_from_env())) {
    if (!device.uuid.empty() && leased_uuids.count(device.uuid) == 0) ++busy;
  }
  return busy;
}

int run_host_status(Context& ctx, const HostStatusOptions& options) {
  auto store = cloud::StateStore::open(options.state_dir);
  if (!store) return report(ctx, store.error());
  (void)store->reconcile_lost();  // a supervisor that died: its run is lost, its GPUs free
  nlohmann::json out{{"runs", nlohmann::json::object()}};
  for (const auto& id : options.runs) {
    auto run = store->get_run(id);
    out["runs"][id] = run ? run_json(*run) : nlohmann::json(nullptr);
  }
  auto leased = store->leased_devices("local");
  out["leased"] = leased ? static_cast<int>(leased->size()) : 0;
  if (options.gpu_use) {
    const std::vector<std::pair<cloud::LeaseDevice, std::string>> none;
    out["busy_outside"] = busy_outside(leased ? *leased : none);
  }
  ctx.out << out.dump() << '\n';
  return 0;
}

}  // namespace

void add_host_status(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<HostStatusOptions>();
  auto* cmd = root.add_subcommand("host-status", "Print runs of a host's state dir as JSON (used by gpurun's ssh backend)");
  cmd->group("");  // hidden: the ssh backend calls it on the host
  cmd->add_option("--state-dir", options->state_dir, "The host-wide state (lease) directory")->required();
  cmd->add_option("runs", options->runs, "Run ids");
  cmd->add_flag("--gpu-use", options->gpu_use, "Also count the GPUs processes outside gpurun use (asks the driver)");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_host_status(ctx, *options); }; });
}

}  // namespace gpurun::commands
