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
  int max_count = 8;
};

// The GPU catalog, kept as data: built in, overridable from the config.
class Catalog {
 public:
  // T4 16, A10G 24, L4 24, A100 20/40(default)/80, L40S 48, H100 80, H200 141; T4/A10G max 4.
  static Catalog builtin();

  // The type named `name` (case-insensitive), or nullptr.
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
