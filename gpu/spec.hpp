#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpu/catalog.hpp"
#include "util/result.hpp"

namespace gpurun::gpu {

// One alternative of a GPU request: `any` (type empty) or a catalog type, an optional memory
// variant (nullopt = the type's default, larger variants also satisfy it) and a count.
struct GpuChoice {
  bool any = false;
  std::string type;                 // canonical catalog name; empty when any
  std::optional<int> memory_gb;     // as asked; nullopt = default variant
  int count = 1;

  bool operator==(const GpuChoice&) const = default;
};

// A whole request: an ordered list of alternatives (one for a plain spec, several for a
// fallback list). An empty list means CPU only.
struct GpuRequest {
  std::vector<GpuChoice> alternatives;
  bool cpu_only() const { return alternatives.empty(); }
};

// A concrete GPU: what a cloud offers and what placement picks.
struct GpuSlot {
  std::string type;   // canonical catalog name
  int memory_gb = 0;  // a variant of the type
  int count = 1;      // for offers: the most per function; for choices: how many
  bool operator==(const GpuSlot&) const = default;
};

// Parses one string spec: "any", "any:2", "T4", "a10g:4", "A100-20GB", "A100-80GB:2",
// "A100:40", "A100:40GB", "A100:40:2", "A100:40GB:2". Errors say what is allowed, e.g.
// "A10G supports at most 4 GPUs per function (asked 8)", "A100 comes with 20, 40 or 80 GB (asked 60)",
// "unknown GPU type 'A200' (did you mean 'A100'?)". The error's code is ExitCode::usage.
util::Result<GpuChoice> parse_gpu_choice(std::string_view text, const Catalog& catalog);

// The object form {type, memory, count}: same checks as the string form.
util::Result<GpuChoice> make_gpu_choice(std::string_view type, std::optional<int> memory_gb, std::optional<int> count,
                                        const Catalog& catalog);

// Parses the command-line form (--gpu): "none" = CPU only, a single spec, or a comma-separated
// fallback list ("H100,A100-80GB,any").
util::Result<GpuRequest> parse_gpu_request(std::string_view text, const Catalog& catalog);

// Canonical text: "any", "any:2", "T4", "A10G:4", "A100-40GB" (memory shown when asked), "A100-80GB:2".
std::string to_string(const GpuChoice& choice);
// "A100-40GB:2"-style text for a concrete slot (count omitted when 1 unless `always_count`); the
// memory is shown for types with several variants ("T4:4", "A100-80GB:8"). Judged by the builtin catalog.
std::string to_string(const GpuSlot& slot, bool always_count = false);
// The same, judging "several variants" by `catalog` (types it lacks show their memory).
std::string to_string(const GpuSlot& slot, const Catalog& catalog, bool always_count = false);

// Parses a cloud's offer "T4:4", "A100-40GB:2", "A100:8" (no memory size = the default variant).
// The number after ':' is the most per function (default 1); it may not exceed max_count.
util::Result<GpuSlot> parse_offer(std::string_view text, const Catalog& catalog);

// The concrete alternatives a choice expands to, in preference order: `any` becomes the
// catalog's any_pool entries (default variants) with the choice's count, leaving out pool entries
// the catalog lacks or that allow fewer GPUs per function; a concrete choice is returned as is.
std::vector<GpuChoice> expand(const GpuChoice& choice, const Catalog& catalog);

// True when `slot` (type, memory variant, max count) can serve a concrete (non-any) choice:
// same type, memory >= the asked (or default) size, count <= slot.count. For `any`: when one of
// its expansions is satisfied.
bool satisfies(const GpuSlot& offer, const GpuChoice& choice, const Catalog& catalog);

// The memory a concrete choice asks for: its memory_gb, else its type's default (0 for `any` or a
// type the catalog lacks).
int effective_memory_gb(const GpuChoice& choice, const Catalog& catalog);

}  // namespace gpurun::gpu
