#include "gpu/catalog.hpp"

#include <utility>

#include "util/strings.hpp"

namespace gpurun::gpu {

Catalog Catalog::builtin() {
  Catalog catalog;
  catalog.types_ = {
      GpuType{"T4", {16}, 16, 8, {}},
      GpuType{"A10G", {24}, 24, 8, {}},
      GpuType{"L4", {24}, 24, 8, {}},
      GpuType{"A100", {20, 40, 80}, 40, 16, {}},
      GpuType{"L40S", {48}, 48, 8, {}},
      GpuType{"H100", {80, 94}, 80, 8, {}},
      GpuType{"H200", {141}, 141, 8, {}},
      GpuType{"V100", {16, 32}, 16, 8, {}},
      GpuType{"A10", {24}, 24, 8, {}},
      GpuType{"A40", {48}, 48, 8, {}},
      GpuType{"L40", {48}, 48, 8, {}},
      GpuType{"A6000", {48}, 48, 8, {"RTXA6000", "RTX-A6000"}},
      GpuType{"RTX6000Ada", {48}, 48, 8, {"RTX-6000-Ada", "RTX6000-Ada"}},
      GpuType{"RTXPRO6000", {96}, 96, 8, {"RTX-PRO-6000", "RTXPRO-6000"}},
      GpuType{"GH200", {96, 144}, 96, 4, {}},
      GpuType{"B200", {180}, 180, 8, {}},
  };
  return catalog;
}

const GpuType* Catalog::find(std::string_view name) const {
  for (const auto& type : types_) {
    if (util::iequals(type.name, name)) return &type;
  }
  for (const auto& type : types_) {
    for (const auto& alias : type.aliases) {
      if (util::iequals(alias, name)) return &type;
    }
  }
  return nullptr;
}

void Catalog::put(GpuType type) {
  for (auto& existing : types_) {
    if (util::iequals(existing.name, type.name)) {
      existing = std::move(type);
      return;
    }
  }
  types_.push_back(std::move(type));
}

std::vector<std::string> Catalog::names() const {
  std::vector<std::string> out;
  out.reserve(types_.size());
  for (const auto& type : types_) out.push_back(type.name);
  return out;
}

}  // namespace gpurun::gpu
