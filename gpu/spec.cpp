#include "gpu/spec.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <utility>

#include "util/strings.hpp"

namespace gpurun::gpu {

namespace {

using util::Error;
using util::ExitCode;

constexpr std::string_view kForms =
    "write TYPE[:COUNT], TYPE-MEMGB[:COUNT] or TYPE:MEM[:COUNT] (e.g. 'T4', 'A100-80GB:2', 'A100:40:2', 'any:2')";

Error usage(std::string message) { return util::make_error(ExitCode::usage, std::move(message)); }

Error malformed(std::string_view text, std::string_view why) {
  return usage(fmt::format("invalid GPU spec '{}': {}; {}", text, why, kForms));
}

// "20, 40 or 80 GB"
std::string memory_list(const GpuType& type) {
  std::vector<std::string> sizes;
  for (int size : type.memory_gb) sizes.push_back(std::to_string(size));
  if (sizes.empty()) sizes.push_back(std::to_string(type.default_memory_gb));
  return util::join_list(sizes) + " GB";
}

std::string count_range(const GpuType& type) {
  return type.max_count <= 1 ? std::string("only 1") : fmt::format("1 to {}", type.max_count);
}

bool has_memory(const GpuType& type, int memory_gb) {
  return std::find(type.memory_gb.begin(), type.memory_gb.end(), memory_gb) != type.memory_gb.end();
}

std::string gpus_word(int count) { return count == 1 ? "GPU" : "GPUs"; }

// A number field after the type: "2", "40", "40GB", "-1". `error` is set when it is none of them.
struct Field {
  int value = 0;
  bool gb = false;
  std::string error;
};

Field parse_field(std::string_view raw) {
  Field field;
  const std::string_view text = util::trim(raw);
  if (text.empty()) {
    field.error = "a field after ':' is empty";
    return field;
  }
  std::string_view digits = text;
  if (digits.size() >= 2 && util::iequals(digits.substr(digits.size() - 2), "gb")) {
    field.gb = true;
    digits = util::trim(digits.substr(0, digits.size() - 2));
  }
  const bool negative = !digits.empty() && digits.front() == '-';
  if (negative) digits.remove_prefix(1);
  const bool all_digits = !digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!all_digits) {
    field.error = fmt::format("'{}' is not a number", text);
    return field;
  }
  if (digits.size() > 9) {
    field.error = fmt::format("'{}' is out of range", text);
    return field;
  }
  const int value = static_cast<int>(*util::parse_uint(digits));
  field.value = negative ? -value : value;
  return field;
}

Error unknown_type(std::string_view name, const Catalog& catalog, bool allow_any) {
  const auto names = catalog.names();
  auto candidates = names;
  if (allow_any) candidates.emplace_back("any");
  if (const auto suggestion = util::did_you_mean(name, candidates)) {
    return usage(fmt::format("unknown GPU type '{}' (did you mean '{}'?)", name, *suggestion));
  }
  return usage(fmt::format("unknown GPU type '{}'; known types: {}", name, util::join(names, ", ")));
}

Error any_in_offer() { return usage("a cloud offers concrete GPU types, not 'any'"); }

// The part before the first ':': "any", "A100" or "A100-80GB".
struct Head {
  bool any = false;
  const GpuType* type = nullptr;
  std::optional<int> memory_gb;
};

util::Result<Head> parse_head(std::string_view text, std::string_view raw_head, const Catalog& catalog, bool allow_any) {
  const std::string_view head = util::trim(raw_head);
  if (head.empty()) return malformed(text, "the GPU type is missing");
  Head out;
  if (util::iequals(head, "any")) {
    if (!allow_any) return any_in_offer();
    out.any = true;
    return out;
  }
  if ((out.type = catalog.find(head)) != nullptr) return out;
  const auto dash = head.rfind('-');
  if (dash == std::string_view::npos) return unknown_type(head, catalog, allow_any);
  const std::string_view prefix = util::trim(head.substr(0, dash));
  const std::string_view suffix = head.substr(dash + 1);
  const bool prefix_any = util::iequals(prefix, "any");
  const GpuType* type = prefix_any ? nullptr : catalog.find(prefix);
  if (prefix_any && !allow_any) return any_in_offer();
  const Field memory = parse_field(suffix);
  if (!memory.error.empty()) {
    if (prefix_any || type != nullptr) {
      if (util::trim(suffix).empty()) return malformed(text, "the memory size after '-' is missing");
      return malformed(text, fmt::format("'{}' after '-' is not a memory size like '40GB'", util::trim(suffix)));
    }
    return unknown_type(head, catalog, allow_any);
  }
  if (!prefix_any && type == nullptr) return unknown_type(prefix, catalog, allow_any);
  out.any = prefix_any;
  out.type = type;
  out.memory_gb = memory.value;
  return out;
}

util::Result<GpuChoice> check(const Head& head, std::optional<int> memory_gb, int count, const Catalog& catalog) {
  GpuChoice choice;
  choice.count = count;
  if (head.any) {
    if (memory_gb) return usage(fmt::format("'any' takes no memory size (asked {} GB); name a GPU type instead", *memory_gb));
    if (count < 1) return usage(fmt::format("GPU count must be at least 1 (asked {})", count));
    int most = 0;
    for (const auto& name : catalog.any_pool) {
      if (const GpuType* type = catalog.find(name)) most = std::max(most, type->max_count);
    }
    if (most == 0) return usage("'any' is not available: the GPU catalog's any pool is empty; name a GPU type instead");
    if (count > most) return usage(fmt::format("any supports at most {} {} per function (asked {})", most, gpus_word(most), count));
    choice.any = true;
    return choice;
  }
  const GpuType& type = *head.type;
  if (memory_gb && !has_memory(type, *memory_gb)) {
    return usage(fmt::format("{} comes with {} (asked {})", type.name, memory_list(type), *memory_gb));
  }
  if (count < 1) return usage(fmt::format("GPU count must be at least 1 (asked {})", count));
  if (count > type.max_count) {
    return usage(fmt::format("{} supports at most {} {} per function (asked {})", type.name, type.max_count,
                             gpus_word(type.max_count), count));
  }
  choice.type = type.name;
  choice.memory_gb = memory_gb;
  return choice;
}

util::Result<GpuChoice> parse_choice(std::string_view input, const Catalog& catalog, bool allow_any) {
  const std::string_view text = util::trim(input);
  if (text.empty()) return usage(fmt::format("empty GPU spec; {}", kForms));
  std::string_view fields[3];
  std::size_t field_count = 0;
  std::size_t start = 0;
  while (true) {
    const auto colon = text.find(':', start);
    if (field_count == 3) return malformed(text, "too many ':' fields");
    fields[field_count++] = text.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start);
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  auto head = parse_head(text, fields[0], catalog, allow_any);
  if (!head) return head.error();
  std::optional<int> memory_gb = head->memory_gb;
  int count = 1;
  if (field_count == 2) {
    const Field field = parse_field(fields[1]);
    if (!field.error.empty()) return malformed(text, field.error);
    if (field.gb) {
      if (memory_gb) return malformed(text, "the memory size is given twice");
      memory_gb = field.value;
    } else if (memory_gb || head->any) {
      count = field.value;
    } else {
      const GpuType& type = *head->type;
      if (has_memory(type, field.value)) {
        memory_gb = field.value;
      } else if (field.value <= type.max_count || field.value < type.memory_gb.front()) {
        count = field.value;  // below 1 and above the type's limit are reported as bad counts
      } else {
        return usage(fmt::format("{}: {} is neither a memory size of {} ({}) nor a GPU count it allows ({})", text,
                                 field.value, type.name, memory_list(type), count_range(type)));
      }
    }
  } else if (field_count == 3) {
    const Field memory = parse_field(fields[1]);
    if (!memory.error.empty()) return malformed(text, memory.error);
    if (memory_gb) return malformed(text, "the memory size is given twice");
    const Field number = parse_field(fields[2]);
    if (!number.error.empty()) return malformed(text, number.error);
    if (number.gb) return malformed(text, fmt::format("'{}' is not a GPU count", util::trim(fields[2])));
    memory_gb = memory.value;
    count = number.value;
  }
  return check(*head, memory_gb, count, catalog);
}

}  // namespace

util::Result<GpuChoice> parse_gpu_choice(std::string_view text, const Catalog& catalog) {
  return parse_choice(text, catalog, true);
}

util::Result<GpuChoice> make_gpu_choice(std::string_view type, std::optional<int> memory_gb, std::optional<int> count,
                                        const Catalog& catalog) {
  const std::string_view name = util::trim(type);
  if (name.empty()) return usage(fmt::format("the GPU type is empty; known types: {}", util::join(catalog.names(), ", ")));
  auto head = parse_head(name, name, catalog, true);
  if (!head) return head.error();
  if (head->memory_gb && memory_gb) {
    return usage(fmt::format("GPU type '{}' already names a memory size; leave out the separate memory ({} GB) or write the type without '-{}GB'",
                             name, *memory_gb, *head->memory_gb));
  }
  return check(*head, memory_gb ? memory_gb : head->memory_gb, count.value_or(1), catalog);
}

util::Result<GpuRequest> parse_gpu_request(std::string_view input, const Catalog& catalog) {
  const std::string_view text = util::trim(input);
  if (text.empty()) {
    return usage("empty GPU request; write 'none' for CPU only, a GPU spec such as 'A100-80GB:2' or a fallback list such as 'H100,A100-80GB,any'");
  }
  GpuRequest request;
  if (util::iequals(text, "none")) return request;
  std::size_t start = 0;
  std::size_t entry = 0;
  while (true) {
    const auto comma = text.find(',', start);
    const std::string_view item =
        util::trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    ++entry;
    if (item.empty()) {
      return usage(fmt::format("invalid GPU request '{}': entry {} of the fallback list is empty; write a list such as 'H100,A100-80GB,any'",
                               text, entry));
    }
    if (util::iequals(item, "none")) {
      return usage(fmt::format("invalid GPU request '{}': 'none' cannot be combined with GPU types; write 'none' alone for CPU only", text));
    }
    auto choice = parse_gpu_choice(item, catalog);
    if (!choice) return choice.error();
    request.alternatives.push_back(std::move(*choice));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return request;
}

std::string to_string(const GpuChoice& choice) {
  std::string out = choice.any ? std::string("any") : choice.type;
  if (!choice.any && choice.memory_gb) out += fmt::format("-{}GB", *choice.memory_gb);
  if (choice.count != 1) out += fmt::format(":{}", choice.count);
  return out;
}

std::string to_string(const GpuSlot& slot, const Catalog& catalog, bool always_count) {
  std::string out = slot.type;
  const GpuType* type = catalog.find(slot.type);
  const bool several = type == nullptr ? slot.memory_gb > 0 : type->memory_gb.size() > 1;
  if (several) out += fmt::format("-{}GB", slot.memory_gb);
  if (always_count || slot.count != 1) out += fmt::format(":{}", slot.count);
  return out;
}

std::string to_string(const GpuSlot& slot, bool always_count) {
  static const Catalog builtin = Catalog::builtin();
  return to_string(slot, builtin, always_count);
}

util::Result<GpuSlot> parse_offer(std::string_view text, const Catalog& catalog) {
  auto choice = parse_choice(text, catalog, false);
  if (!choice) return choice.error();
  const GpuType* type = catalog.find(choice->type);
  return GpuSlot{type->name, choice->memory_gb.value_or(type->default_memory_gb), choice->count};
}

std::vector<GpuChoice> expand(const GpuChoice& choice, const Catalog& catalog) {
  if (!choice.any) return {choice};
  std::vector<GpuChoice> out;
  for (const auto& name : catalog.any_pool) {
    const GpuType* type = catalog.find(name);
    if (type == nullptr || type->max_count < choice.count) continue;
    out.push_back(GpuChoice{false, type->name, std::nullopt, choice.count});
  }
  return out;
}

bool satisfies(const GpuSlot& offer, const GpuChoice& choice, const Catalog& catalog) {
  if (choice.any) {
    const auto alternatives = expand(choice, catalog);
    return std::any_of(alternatives.begin(), alternatives.end(),
                       [&](const GpuChoice& alternative) { return satisfies(offer, alternative, catalog); });
  }
  return util::iequals(offer.type, choice.type) && offer.memory_gb >= effective_memory_gb(choice, catalog) &&
         choice.count <= offer.count;
}

int effective_memory_gb(const GpuChoice& choice, const Catalog& catalog) {
  if (choice.memory_gb) return *choice.memory_gb;
  if (choice.any) return 0;
  const GpuType* type = catalog.find(choice.type);
  return type == nullptr ? 0 : type->default_memory_gb;
}

}  // namespace gpurun::gpu
