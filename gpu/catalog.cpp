#include "gpu/catalog.hpp"

#include <utility>

#include "util/strings.hpp"

namespace gpurun::gpu {

Catalog Catalog::builtin() {
  Catalog catalog;
  catalog.types_ = {
      GpuType{"T4", {16}, 16, 4},
      GpuType{"A10G", {24}, 24, 4},
      GpuType{"L4", {24}, 24, 8},
      GpuType{"A100", {20, 40, 80}, 40, 8},
      GpuType{"L40S", {48}, 48, 8},
      GpuType{"H100", {80}, 80, 8},
      GpuType{"H200", {141}, 141, 8},
  };
  return catalog;
}

const GpuType* Catalog::find(std::string_view name) const {
  for (const auto& type : types_) {
    if (util::iequals(type.name, name)) return &type;
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
