#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace gpurun::gpu {

// One GPU type: its memory variants in GB (ascending), the default variant and the most that
// one function may ask for.
struct GpuType {
  std::string name;              // canonical spelling: "A100"
  std::vector<int> memory_gb;    // {20, 40, 80}
  int default_memory_gb = 0;     // 40
  int max_count = 8;             // the most on one node, so the most one function may ask for
  std::vector<std::string> aliases;  // other spellings users bring: "RTX-PRO-6000"
};

// The GPU catalog, kept as data: built in, overridable from the config.
class Catalog {
 public:
  // The GPUs users name most (T4, A10G, L4, A100 20/40/80, L40S, H100 80/94, H200, V100 16/32,
  // A10, A40, L40, A6000, RTX6000Ada, RTXPRO6000, GH200 96/144, B200), with per-node maximums.
  static Catalog builtin();

  // The type named `name` or one of its aliases (case-insensitive), or nullptr.
  const GpuType* find(std::string_view name) const;
  // Adds a type or replaces the one with the same name (case-insensitive).
  void put(GpuType type);
  const std::vector<GpuType>& types() const { return types_; }
  // Canonical names in catalog order.
  std::vector<std::string> names() const;

  // What `any` means, in order (default {"T4", "A10G"}); entries name catalog types.
  std::vector<std::string> any_pool{"T4", "A10G"};

 private:
  std::vector<GpuType> types_;
};

}  // namespace gpurun::gpu
