#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gpu/catalog.hpp"
#include "util/result.hpp"

namespace gpurun::gpu {

// One alternative of a GPU request. `any` without memory: the catalog's any pool; `any` with
// memory (a memory-first spec such as "24GB"): every catalog type with a variant in the bounds.
// Otherwise a catalog type. Memory is a lower bound ("A100-40GB": 40 GB or a larger variant);
// `exact` ("H100!") allows only the asked (or default) variant. Counts may be a range ("1..2").
struct GpuChoice {
  bool any = false;
  std::string type;                  // canonical catalog name; empty when any
  std::optional<int> memory_gb;      // at least this much; nullopt = the type's default variant
  int count = 1;                     // how many; the lower bound of a count range
  std::optional<int> max_memory_gb;  // at most this much ("16GB..24GB"); nullopt = no upper bound
  bool memory_range = false;         // written as a range ("40GB+", "16GB..24GB", "..24GB")
  bool exact = false;                // "H100!": no upgrade to a larger variant
  std::optional<int> max_count;      // a count range's upper bound ("1..2"); nullopt = exactly count
  bool open_count = false;           // written without an upper bound ("2.."); max_count = the limit

  bool operator==(const GpuChoice&) const = default;
};

// A whole request: an ordered list of alternatives (one for a plain spec, several for a
// fallback list or an any-of set). An empty list means CPU only.
struct GpuRequest {
  std::vector<GpuChoice> alternatives;
  bool any_of = false;  // written as SkyPilot's set "{H100:8, A100:8}" (tried in written order)
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
// "A100:40", "A100:40GB:2", "A100:40GB+", "24GB", "24GB+", "16GB..24GB", "80GB:8", "H100:1..2",
// "1..8", "H100!", "nvidia:T4". Errors say what is allowed, e.g. "A10G supports at most 8 GPUs per
// function (asked 16)", "A100 comes with 20, 40 or 80 GB (asked 60)". The error's code is ExitCode::usage.
util::Result<GpuChoice> parse_gpu_choice(std::string_view text, const Catalog& catalog);

// The object form {type, memory, count}: same checks as the string form.
util::Result<GpuChoice> make_gpu_choice(std::string_view type, std::optional<int> memory_gb, std::optional<int> count,
                                        const Catalog& catalog);
// The same with memory and count as written ("40GB+", "1..2"); nullopt = not given.
util::Result<GpuChoice> make_gpu_choice(std::string_view type, std::optional<std::string_view> memory,
                                        std::optional<std::string_view> count, const Catalog& catalog);

// Parses a whole request (`gpu:` scalars and --gpu): "none" = CPU only, a single spec, a
// comma-separated fallback list ("H100,A100-80GB,any"; a count or memory after the last entry
// applies to every bare entry: "A10,A10G:2" = A10:2 or A10G:2, as in dstack) or an any-of set
// "{H100:8, A100:8}" (SkyPilot).
util::Result<GpuRequest> parse_gpu_request(std::string_view text, const Catalog& catalog);

// Why `name` is no catalog type: other accelerators are refused plainly; a near miss in case or
// punctuation gets "did you mean"; else the catalog is listed with how to add a type.
std::string unknown_type_message(std::string_view name, const Catalog& catalog);

// Canonical text: "any", "any:2", "T4", "A10G:4", "A100-40GB" (memory shown when asked), "A100-80GB:2",
// "H100!", "A100:40GB+", "24GB:2", "16GB..24GB", "H100:1..2", "any:2..".
std::string to_string(const GpuChoice& choice);
// "A100-40GB:2"-style text for a concrete slot (count omitted when 1 unless `always_count`); the
// memory is shown for types with several variants ("T4:4", "A100-80GB:8"). Judged by the builtin catalog.
std::string to_string(const GpuSlot& slot, bool always_count = false);
// The same, judging "several variants" by `catalog` (types it lacks show their memory).
std::string to_string(const GpuSlot& slot, const Catalog& catalog, bool always_count = false);

// Parses a cloud's offer "T4:4", "A100-40GB:2", "A100:8" (no memory size = the default variant).
// The number after ':' is the most per function (default 1); it may not exceed max_count.
util::Result<GpuSlot> parse_offer(std::string_view text, const Catalog& catalog);

// The concrete alternatives a choice expands to, in preference order (no `any`, no ranges left):
// a count range gives its counts from the largest down; for each count, `any` becomes the any
// pool's types (default variants; pool entries the catalog lacks or that allow fewer GPUs are left
// out), a memory range or memory-first spec every catalog variant in its bounds (smallest memory
// first, then catalog order) as an exact variant; a plain choice is kept as is.
std::vector<GpuChoice> expand(const GpuChoice& choice, const Catalog& catalog);

// The counts a choice asks for, largest first ("1..3" -> 3, 2, 1; "2" -> 2).
std::vector<int> counts_descending(const GpuChoice& choice);

// True when `slot` (type, memory variant, max count) can serve a concrete (non-any) choice:
// same type, memory >= the asked (or default) size (equal for `exact`, <= max_memory_gb when set),
// count <= slot.count. For `any` and ranges: when one of its expansions is satisfied.
bool satisfies(const GpuSlot& offer, const GpuChoice& choice, const Catalog& catalog);

// What an `any` choice takes from an offer of a type the catalog may lack (a probed local GPU):
// the largest count in its range the offer holds, if its memory is in the choice's bounds.
std::optional<GpuSlot> take_any(const GpuSlot& offer, const GpuChoice& choice);

// The memory a concrete choice asks for: its memory_gb, else its type's default (0 for `any` or a
// type the catalog lacks).
int effective_memory_gb(const GpuChoice& choice, const Catalog& catalog);
// The most memory a concrete choice accepts: effective_memory_gb for `exact`, else its
// max_memory_gb; 0 = no upper bound.
int max_memory_gb(const GpuChoice& choice, const Catalog& catalog);

}  // namespace gpurun::gpu
