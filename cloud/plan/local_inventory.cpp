#include "cloud/plan/local_inventory.hpp"

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

std::vector<gpu::GpuSlot> offers_of(const std::vector<gpu::LocalDevice>& devices) {
  std::vector<gpu::GpuSlot> offers;
  for (const auto& d : devices) {
    if (!d.type) continue;
    bool merged = false;
    for (auto& o : offers) {
      if (o.type == *d.type && o.memory_gb == d.memory_gb) {
        ++o.count;
        merged = true;
      }
    }
    if (!merged) offers.push_back({*d.type, d.memory_gb, 1});
  }
  return offers;
}

namespace {

std::vector<gpu::LocalDevice> synthesize(const std::vector<gpu::GpuSlot>& declared) {
  std::vector<gpu::DeclaredGpu> list;
  for (const auto& slot : declared) list.push_back({slot.type, slot.memory_gb, slot.count});
  return gpu::declared_devices(list);
}

}  // namespace

util::Result<LocalInventory> local_inventory(const Config& config) {
  LocalInventory inventory;
  if (const char* declared = std::getenv("GPURUN_LOCAL_GPUS"); declared != nullptr) {
    auto parsed = parse_declared_gpus(declared, config.catalog);
    if (!parsed) return parsed.error();
    inventory.devices = synthesize(*parsed);
    inventory.source = "GPURUN_LOCAL_GPUS";
  } else if (const auto* local = config.find_cloud("local"); local != nullptr && local->gpus_declared) {
    inventory.devices = synthesize(local->gpus);
    inventory.source = "config";
  } else {
    auto found = gpu::discover_local_gpus();
    inventory.devices = std::move(found.devices);
    inventory.source = found.source;
    inventory.notes = std::move(found.notes);
  }
  inventory.offers = offers_of(inventory.devices);
  return inventory;
}

}  // namespace gpurun::cloud
