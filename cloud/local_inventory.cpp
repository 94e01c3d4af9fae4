#include "cloud/local_inventory.hpp"

#include <cstdlib>
#include <fmt/format.h>

#include "util/strings.hpp"

namespace gpurun::cloud {

util::Result<std::vector<gpu::GpuSlot>> parse_declared_gpus(std::string_view text, const gpu::Catalog& catalog) {
  std::vector<gpu::GpuSlot> out;
  if (util::trim(text).empty()) return out;
  for (const auto& part : util::split(text, ',')) {
    auto slot = gpu::parse_offer(util::trim(part), catalog);
    if (!slot) {
      return util::make_error(util::ExitCode::usage, fmt::format("GPURUN_LOCAL_GPUS: '{}': {}; write it like \"T4:2,A100-40GB:1\"",
                                                                 std::string(util::trim(part)), slot.error().message));
    }
    out.push_back(*slot);
  }
  return out;
}

util::Result<LocalInventory> local_inventory(const Config& config) {
  LocalInventory inventory;
  if (const char* declared = std::getenv("GPURUN_LOCAL_GPUS"); declared != nullptr) {
    auto parsed = parse_declared_gpus(declared, config.catalog);
    if (!parsed) return parsed.error();
    inventory.devices = *parsed;
    inventory.source = "GPURUN_LOCAL_GPUS";
    return inventory;
  }
  if (const auto* local = config.find_cloud("local"); local != nullptr && local->gpus_declared) {
    inventory.devices = local->gpus;
    inventory.source = "config";
    return inventory;
  }
  inventory.source = "none";
  return inventory;
}

}  // namespace gpurun::cloud
