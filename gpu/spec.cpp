#include "gpu/spec.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cctype>
#include <utility>

#include "util/strings.hpp"

namespace gpurun::gpu {

namespace {

using util::Error;
using util::ExitCode;

constexpr std::string_view kForms =
    "write TYPE[:COUNT], TYPE-MEMGB[:COUNT], TYPE:MEM[:COUNT] or MEMGB[:COUNT] (e.g. 'T4', 'A100-80GB:2', "
    "'A100:40GB+', '24GB:1..2', 'any:2')";

constexpr int kMostGpus = 1024;    // a count field above this is out of range
constexpr int kMostMemory = 100000;  // GB

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

bool is_digit(char c) { return c >= '0' && c <= '9'; }

// ---- fields: "2", "40", "40GB", "-1", "1..2", "2..", "24GB+", "16GB..24GB", "..24GB" ----

struct Field {
  std::optional<int> low;   // nullopt: open below ("..24GB")
  std::optional<int> high;  // nullopt: open above ("2..", "24GB+")
  bool range = false;
  bool gb = false;
  std::string text;
  std::string error;
  bool fraction = false;    // "0.5": a part of a GPU
};

// One bound: "40", "40GB", "-1". Sets field.error (or field.fraction) when it is not a number.
std::optional<int> parse_bound(std::string_view raw, Field& field) {
  std::string_view digits = util::trim(raw);
  if (digits.size() >= 2 && util::iequals(digits.substr(digits.size() - 2), "gb")) {
    field.gb = true;
    digits = util::trim(digits.substr(0, digits.size() - 2));
  }
  const bool negative = !digits.empty() && digits.front() == '-' && !field.range;
  if (negative) digits.remove_prefix(1);
  const bool all_digits = !digits.empty() && std::all_of(digits.begin(), digits.end(), is_digit);
  if (!all_digits) {
    const bool decimal = !digits.empty() && std::all_of(digits.begin(), digits.end(), [](char c) { return is_digit(c) || c == '.'; }) &&
                         std::count(digits.begin(), digits.end(), '.') == 1;
    if (decimal && !field.gb) field.fraction = true;
    field.error = fmt::format("'{}' is not a number", field.text);
    return std::nullopt;
  }
  if (digits.size() > 9) {
    field.error = fmt::format("'{}' is out of range", field.text);
    return std::nullopt;
  }
  const int value = static_cast<int>(*util::parse_uint(digits));
  return negative ? -value : value;
}

Field parse_field(std::string_view raw) {
  Field field;
  field.text = std::string(util::trim(raw));
  std::string_view text = field.text;
  if (text.empty()) {
    field.error = "a field after ':' is empty";
    return field;
  }
  const auto dots = text.find("..");
  if (!text.empty() && text.back() == '+') {
    field.range = true;
    field.low = parse_bound(text.substr(0, text.size() - 1), field);
  } else if (dots != std::string_view::npos) {
    field.range = true;
    const std::string_view low = util::trim(text.substr(0, dots));
    const std::string_view high = util::trim(text.substr(dots + 2));
    if (low.empty() && high.empty()) field.error = fmt::format("'{}' has no bounds; write e.g. 1..2 or 16GB..24GB", text);
    if (!low.empty() && field.error.empty()) field.low = parse_bound(low, field);
    if (!high.empty() && field.error.empty()) field.high = parse_bound(high, field);
  } else {
    field.low = parse_bound(text, field);
    field.high = field.low;
  }
  return field;
}

// "24GB+", "16GB..24GB", "..24GB", "24GB"
std::string memory_text(std::optional<int> low, std::optional<int> high, bool range) {
  if (!range) return fmt::format("{}GB", low.value_or(0));
  if (!high) return fmt::format("{}GB+", low.value_or(0));
  if (!low) return fmt::format("..{}GB", *high);
  return fmt::format("{}GB..{}GB", *low, *high);
}

// ---- type names ----

// Lower case without punctuation and the vendor words users prefix: "NVIDIA Tesla-T4" -> "t4".
std::string normalized(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (std::isalnum(static_cast<unsigned char>(c)) != 0) out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  for (std::string_view word : {"nvidia", "tesla", "geforce"}) {
    if (out.size() > word.size() && out.rfind(word, 0) == 0) out.erase(0, word.size());
  }
  for (std::string_view form : {"sxm5", "sxm4", "sxm", "pcie"}) {
    if (out.size() > form.size() && out.compare(out.size() - form.size(), form.size(), form) == 0) {
      out.erase(out.size() - form.size());
    }
  }
  return out;
}

// Accelerators that are not NVIDIA GPUs, by the start of their (lower-case) name.
struct ForeignAccelerator {
  std::string_view prefix;
  std::string_view what;
};
constexpr ForeignAccelerator kForeign[] = {
    {"tpu", "Google TPUs"},   {"v2-", "Google TPUs"},        {"v3-", "Google TPUs"},        {"v4-", "Google TPUs"},
    {"v5e", "Google TPUs"},   {"v5p", "Google TPUs"},        {"v6e", "Google TPUs"},        {"mi", "AMD GPUs"},
    {"radeon", "AMD GPUs"},   {"instinct", "AMD GPUs"},      {"gaudi", "Intel Gaudi accelerators"},
    {"trainium", "AWS Trainium"}, {"trn1", "AWS Trainium"},  {"trn2", "AWS Trainium"},      {"inferentia", "AWS Inferentia"},
    {"inf1", "AWS Inferentia"},   {"inf2", "AWS Inferentia"}, {"n150", "Tenstorrent accelerators"},
    {"n300", "Tenstorrent accelerators"},
};

std::optional<std::string_view> foreign_accelerator(std::string_view name) {
  const std::string lower = util::to_lower(name);
  for (const auto& foreign : kForeign) {
    if (lower.rfind(foreign.prefix, 0) != 0) continue;
    // "mi" only with a model number after it (MI300X, MI250), not a word that starts with "mi".
    if (foreign.prefix == "mi" && (lower.size() < 3 || !is_digit(lower[2]))) continue;
    return foreign.what;
  }
  return std::nullopt;
}

Error not_supported(std::string_view name, std::string_view what) {
  return usage(fmt::format("'{}': {} are not supported; gpurun runs NVIDIA GPUs only, name one of the catalog's "
                           "types (see 'gpurun gpus')",
                           name, what));
}

// The catalog type `name` differs from only in case, punctuation, a vendor word or a form factor
// ("tesla-t4", "H100_SXM"), or nullptr: other spellings are different GPUs (V100 is no A100).
const GpuType* near_miss(std::string_view name, const Catalog& catalog) {
  const std::string wanted = normalized(name);
  if (wanted.empty()) return nullptr;
  for (const auto& type : catalog.types()) {
    bool near = normalized(type.name) == wanted;
    for (const auto& alias : type.aliases) near = near || normalized(alias) == wanted;
    if (near) return &type;
  }
  return nullptr;
}

Error unknown_type(std::string_view name, const Catalog& catalog) {
  if (const auto what = foreign_accelerator(name)) return not_supported(name, *what);
  if (const GpuType* type = near_miss(name, catalog)) {
    return usage(fmt::format("unknown GPU type '{}' (did you mean '{}'?)", name, type->name));
  }
  return usage(fmt::format("unknown GPU type '{}'; known types: {}; to use another GPU, add it under 'catalog:' in "
                           "the config (e.g. {}: {{memory: [48], max: 8}})",
                           name, util::join(catalog.names(), ", "), name));
}

Error any_in_offer() { return usage("a cloud offers concrete GPU types, not 'any'"); }

// A vendor prefix: "nvidia:T4" -> "T4"; other vendors are refused. Leaves other text alone.
util::Result<std::string_view> strip_vendor(std::string_view text) {
  const auto colon = text.find(':');
  const std::string_view word = util::trim(text.substr(0, colon));
  const std::string_view rest = colon == std::string_view::npos ? std::string_view() : util::trim(text.substr(colon + 1));
  if (util::iequals(word, "nvidia")) return rest;
  for (std::string_view vendor : {"amd", "google", "tpu", "intel", "habana", "tenstorrent", "aws"}) {
    if (util::iequals(word, vendor)) {
      return usage(fmt::format("invalid GPU spec '{}': vendor '{}' is not supported; gpurun runs NVIDIA GPUs only "
                               "(write 'nvidia:TYPE' or just the type)",
                               text, word));
    }
  }
  return text;
}

// ---- the head: "any", "A100", "A100-80GB", "H100!", or a memory/count field ----

struct Head {
  bool any = false;
  const GpuType* type = nullptr;
  std::optional<int> memory_gb;
  bool exact = false;
  std::optional<Field> field;  // a memory-first or count-first spec: "24GB", "1..8"
};

util::Result<Head> parse_head(std::string_view text, std::string_view raw_head, const Catalog& catalog, bool allow_any) {
  std::string_view head = util::trim(raw_head);
  Head out;
  if (!head.empty() && head.back() == '!') {
    out.exact = true;
    head = util::trim(head.substr(0, head.size() - 1));
  }
  if (head.empty()) return malformed(text, "the GPU type is missing");
  if (is_digit(head.front()) || head.front() == '.') {
    if (!allow_any) return usage(fmt::format("invalid GPU offer '{}': name the GPU type, e.g. 'T4:4' or 'A100-80GB:8'", text));
    if (out.exact) return malformed(text, "'!' follows a GPU type ('H100!')");
    out.any = true;
    out.field = parse_field(head);
    return out;
  }
  if (util::iequals(head, "any")) {
    if (!allow_any) return any_in_offer();
    if (out.exact) return malformed(text, "'!' follows a GPU type ('H100!'), not 'any'");
    out.any = true;
    return out;
  }
  if ((out.type = catalog.find(head)) != nullptr) return out;
  const auto dash = head.rfind('-');
  if (dash == std::string_view::npos) return unknown_type(head, catalog);
  const std::string_view prefix = util::trim(head.substr(0, dash));
  const std::string_view suffix = head.substr(dash + 1);
  const bool prefix_any = util::iequals(prefix, "any");
  const GpuType* type = prefix_any ? nullptr : catalog.find(prefix);
  if (prefix_any && !allow_any) return any_in_offer();
  if (!prefix_any && type == nullptr) return unknown_type(head, catalog);
  const Field memory = parse_field(suffix);
  if (!memory.error.empty() || memory.range) {
    if (util::trim(suffix).empty()) return malformed(text, "the memory size after '-' is missing");
    if (near_miss(head, catalog)) return unknown_type(head, catalog);
    return malformed(text, fmt::format("'{}' after '-' is not a memory size like '40GB'", util::trim(suffix)));
  }
  if (prefix_any) return usage(fmt::format("'any' takes no memory size (asked {} GB); write '{}GB' for any GPU with that much", *memory.low, *memory.low));
  out.type = type;
  out.memory_gb = memory.low;
  return out;
}

// ---- checks ----

// What the fields asked, before the checks against the catalog.
struct Asked {
  std::optional<Field> memory;
  std::optional<Field> count;
};

util::Result<void> check_count(const Field& count, int most, std::string_view who) {
  const int low = count.low.value_or(1);
  const int high = count.high.value_or(most);
  if (low < 1) return usage(fmt::format("GPU count must be at least 1 (asked {})", count.text));
  if (low > high) {
    return usage(fmt::format("GPU count range '{}' is empty; write the smaller count first, e.g. {}..{}", count.text, high, low));
  }
  if (high > most) return usage(fmt::format("{} supports at most {} {} per function (asked {})", who, most, gpus_word(most), count.text));
  return {};
}

void set_count(GpuChoice& choice, const Field& count, int most) {
  choice.count = count.low.value_or(1);
  if (count.range) {
    choice.max_count = count.high.value_or(most);
    choice.open_count = !count.high.has_value();
  }
}

void set_memory(GpuChoice& choice, const Field& memory) {
  choice.memory_gb = memory.low;
  choice.memory_range = memory.range;
  if (memory.range) choice.max_memory_gb = memory.high;
}

bool in_bounds(int memory_gb, const GpuChoice& choice) {
  return memory_gb >= choice.memory_gb.value_or(0) && (!choice.max_memory_gb || memory_gb <= *choice.max_memory_gb);
}

util::Result<void> check_memory_range(const Field& memory) {
  if (memory.low && *memory.low < 1) return usage(fmt::format("GPU memory must be at least 1 GB (asked {})", memory.text));
  if (memory.low && memory.high && *memory.low > *memory.high) {
    return usage(fmt::format("memory range '{}' is empty; write the smaller size first, e.g. {}GB..{}GB", memory.text, *memory.high,
                             *memory.low));
  }
  if (memory.low.value_or(0) > kMostMemory || memory.high.value_or(0) > kMostMemory) {
    return usage(fmt::format("GPU memory '{}' is out of range", memory.text));
  }
  return {};
}

// `any` with memory: some catalog variant must lie in the bounds; the count limit is the
// largest among the types that fit.
util::Result<GpuChoice> check_memory_first(const Field& memory, const std::optional<Field>& count, const Catalog& catalog) {
  if (auto ok = check_memory_range(memory); !ok) return ok.error();
  GpuChoice choice;
  choice.any = true;
  set_memory(choice, memory);
  int most = 0;
  for (const auto& type : catalog.types()) {
    for (int size : type.memory_gb) {
      if (in_bounds(size, choice)) most = std::max(most, type.max_count);
    }
  }
  if (most == 0) {
    const GpuType* largest = nullptr;
    for (const auto& type : catalog.types()) {
      if (!type.memory_gb.empty() && (largest == nullptr || type.memory_gb.back() > largest->memory_gb.back())) largest = &type;
    }
    return usage(fmt::format("no GPU type in the catalog has {} of memory{}; add one under 'catalog:' in the config",
                             memory_text(memory.low, memory.high, memory.range),
                             largest == nullptr ? std::string()
                                                : fmt::format(" (the largest is {} with {} GB)", largest->name, largest->memory_gb.back())));
  }
  if (count) {
    if (auto ok = check_count(*count, most, fmt::format("a GPU with {}", memory_text(memory.low, memory.high, memory.range))); !ok) {
      return ok.error();
    }
    set_count(choice, *count, most);
  }
  return choice;
}

util::Result<GpuChoice> check_any(const std::optional<Field>& count, const Catalog& catalog) {
  int most = 0;
  for (const auto& name : catalog.any_pool) {
    if (const GpuType* type = catalog.find(name)) most = std::max(most, type->max_count);
  }
  if (most == 0) return usage("'any' is not available: the GPU catalog's any pool is empty; name a GPU type instead");
  GpuChoice choice;
  choice.any = true;
  if (count) {
    if (auto ok = check_count(*count, most, "any"); !ok) return ok.error();
    set_count(choice, *count, most);
  }
  return choice;
}

util::Result<GpuChoice> check_typed(const Head& head, const Asked& asked) {
  const GpuType& type = *head.type;
  GpuChoice choice;
  choice.type = type.name;
  choice.exact = head.exact;
  choice.memory_gb = head.memory_gb;
  if (asked.memory) {
    const Field& memory = *asked.memory;
    if (memory.range) {
      if (head.exact) return usage(fmt::format("'{}!' asks for one exact variant; leave out the memory range '{}'", type.name, memory.text));
      if (auto ok = check_memory_range(memory); !ok) return ok.error();
      set_memory(choice, memory);
      const bool fits = std::any_of(type.memory_gb.begin(), type.memory_gb.end(), [&](int size) { return in_bounds(size, choice); });
      if (!fits) return usage(fmt::format("{} comes with {}; none is in {}", type.name, memory_list(type), memory.text));
    } else {
      choice.memory_gb = memory.low;
    }
  }
  if (choice.memory_gb && !choice.memory_range && !has_memory(type, *choice.memory_gb)) {
    return usage(fmt::format("{} comes with {} (asked {})", type.name, memory_list(type), *choice.memory_gb));
  }
  if (asked.count) {
    if (auto ok = check_count(*asked.count, type.max_count, type.name); !ok) return ok.error();
    set_count(choice, *asked.count, type.max_count);
  }
  return choice;
}

util::Result<GpuChoice> check(const Head& head, const Asked& asked, const Catalog& catalog) {
  if (head.type != nullptr) return check_typed(head, asked);
  if (asked.memory) return check_memory_first(*asked.memory, asked.count, catalog);
  return check_any(asked.count, catalog);
}

Error fraction(std::string_view text, std::string_view head, const Field& field) {
  std::string whole = "1";
  if (const auto dot = field.text.find('.'); dot != std::string::npos && dot > 0) {
    const auto units = util::parse_uint(std::string_view(field.text).substr(0, dot));
    if (units && *units >= 1) whole = std::to_string(*units + 1);
  }
  return usage(fmt::format("invalid GPU spec '{}': gpurun gives whole GPUs, not a fraction ({}); write {}:{}", text,
                           field.text, util::trim(head), whole));
}

// Sorts the fields after the head into memory and count ("A100:40" is memory when A100 has a
// 40 GB variant, else a count; with two fields the first is the memory).
util::Result<Asked> classify(std::string_view text, const Head& head, const std::vector<std::string_view>& fields,
                             std::string_view head_text) {
  Asked asked;
  if (head.field) {
    if (head.field->fraction) return fraction(text, "any", *head.field);
    if (!head.field->error.empty()) return malformed(text, head.field->error);
    (head.field->gb ? asked.memory : asked.count) = head.field;
  }
  for (std::size_t i = 0; i < fields.size(); ++i) {
    Field field = parse_field(fields[i]);
    if (field.fraction) return fraction(text, head_text, field);
    if (!field.error.empty()) return malformed(text, field.error);
    bool memory = field.gb;
    const bool two_more = fields.size() - i == 2 && !parse_field(fields[i + 1]).gb;
    if (!memory && head.type != nullptr && !field.range && (two_more || (!head.memory_gb && !asked.memory))) {
      const GpuType& type = *head.type;
      if (two_more || has_memory(type, *field.low)) {
        memory = true;
      } else if (!(*field.low <= type.max_count || type.memory_gb.empty() || *field.low < type.memory_gb.front())) {
        return usage(fmt::format("{}: {} is neither a memory size of {} ({}) nor a GPU count it allows ({})", text, *field.low,
                                 type.name, memory_list(type), count_range(type)));
      }
    }
    if (memory) {
      if (asked.memory || head.memory_gb) return malformed(text, "the memory size is given twice");
      asked.memory = std::move(field);
    } else {
      if (asked.count) return malformed(text, fmt::format("'{}' is not a GPU count", field.text));
      if (field.low.value_or(1) > kMostGpus || field.high.value_or(1) > kMostGpus) return malformed(text, fmt::format("'{}' is out of range", field.text));
      asked.count = std::move(field);
    }
  }
  return asked;
}

util::Result<GpuChoice> parse_choice(std::string_view input, const Catalog& catalog, bool allow_any) {
  const std::string_view original = util::trim(input);
  if (original.empty()) return usage(fmt::format("empty GPU spec; {}", kForms));
  auto stripped = strip_vendor(original);
  if (!stripped) return stripped.error();
  const std::string_view text = *stripped;
  if (text.empty()) {
    if (!allow_any) return any_in_offer();
    return check_any(std::nullopt, catalog);  // "nvidia": any NVIDIA GPU
  }
  std::vector<std::string_view> fields;
  std::size_t start = 0;
  while (true) {
    const auto colon = text.find(':', start);
    if (fields.size() == 3) return malformed(original, "too many ':' fields");
    fields.push_back(text.substr(start, colon == std::string_view::npos ? std::string_view::npos : colon - start));
    if (colon == std::string_view::npos) break;
    start = colon + 1;
  }
  auto head = parse_head(original, fields[0], catalog, allow_any);
  if (!head) return head.error();
  auto asked = classify(original, *head, {fields.begin() + 1, fields.end()}, fields[0]);
  if (!asked) return asked.error();
  return check(*head, *asked, catalog);
}

// "A10G:2" of "A10,A10G:2": the fields after the last entry's type, shared by the bare entries.
std::string_view shared_fields(std::string_view last) {
  const auto colon = last.find(':');
  if (colon == std::string_view::npos) return {};
  const std::string_view head = util::trim(last.substr(0, colon));
  if (head.empty() || is_digit(head.front()) || head.front() == '.') return {};
  return last.substr(colon);
}

std::vector<std::string_view> split_list(std::string_view text) {
  std::vector<std::string_view> items;
  std::size_t start = 0;
  while (true) {
    const auto comma = text.find(',', start);
    items.push_back(util::trim(text.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start)));
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return items;
}

util::Result<GpuRequest> parse_list(std::string_view whole, std::string_view text, const Catalog& catalog) {
  GpuRequest request;
  const auto items = split_list(text);
  const std::string_view shared = shared_fields(items.back());
  for (std::size_t i = 0; i < items.size(); ++i) {
    const std::string_view item = items[i];
    if (item.empty()) {
      return usage(fmt::format("invalid GPU request '{}': entry {} of the list is empty; write a list such as 'H100,A100-80GB,any'",
                               whole, i + 1));
    }
    if (util::iequals(item, "none")) {
      return usage(fmt::format("invalid GPU request '{}': 'none' cannot be combined with GPU types; write 'none' alone for CPU only", whole));
    }
    const bool bare = item.find(':') == std::string_view::npos && !shared.empty();
    auto choice = parse_gpu_choice(bare ? std::string(item) + std::string(shared) : std::string(item), catalog);
    if (!choice && bare) {
      return usage(fmt::format("invalid GPU request '{}': '{}' after the last entry applies to every bare entry of the list "
                               "(as in dstack), so {} means {}{}; {}",
                               whole, shared, item, item, shared, choice.error().message));
    }
    if (!choice) return choice.error();
    request.alternatives.push_back(std::move(*choice));
  }
  return request;
}

}  // namespace

util::Result<GpuChoice> parse_gpu_choice(std::string_view text, const Catalog& catalog) {
  return parse_choice(text, catalog, true);
}

util::Result<GpuChoice> make_gpu_choice(std::string_view type, std::optional<std::string_view> memory,
                                        std::optional<std::string_view> count, const Catalog& catalog) {
  const std::string_view name = util::trim(type);
  if (name.empty()) return usage(fmt::format("the GPU type is empty; known types: {}", util::join(catalog.names(), ", ")));
  auto head = parse_head(name, name, catalog, true);
  if (!head) return head.error();
  if (head->field) return usage(fmt::format("'{}' is not a GPU type; put a memory size under 'memory' and a count under 'count'", name));
  if (head->memory_gb && memory) {
    return usage(fmt::format("GPU type '{}' already names a memory size; leave out the separate memory ({}) or write the type without '-{}GB'",
                             name, util::trim(*memory), *head->memory_gb));
  }
  Asked asked;
  if (memory) {
    Field field = parse_field(*memory);
    if (!field.error.empty()) return usage(fmt::format("expected the GPU memory in GB (e.g. 40GB, 24GB+ or 16GB..24GB), got '{}'", field.text));
    asked.memory = std::move(field);
  }
  if (count) {
    Field field = parse_field(*count);
    if (field.fraction) return usage(fmt::format("gpurun gives whole GPUs, not a fraction ({}); write count: 1", field.text));
    if (!field.error.empty() || field.gb) return usage(fmt::format("expected a whole number of GPUs or a range (e.g. 2 or 1..4), got '{}'", field.text));
    asked.count = std::move(field);
  }
  return check(*head, asked, catalog);
}

util::Result<GpuChoice> make_gpu_choice(std::string_view type, std::optional<int> memory_gb, std::optional<int> count,
                                        const Catalog& catalog) {
  const std::optional<std::string> memory = memory_gb ? std::optional<std::string>(fmt::format("{}GB", *memory_gb)) : std::nullopt;
  const std::optional<std::string> number = count ? std::optional<std::string>(std::to_string(*count)) : std::nullopt;
  return make_gpu_choice(type, memory ? std::optional<std::string_view>(*memory) : std::nullopt,
                         number ? std::optional<std::string_view>(*number) : std::nullopt, catalog);
}

util::Result<GpuRequest> parse_gpu_request(std::string_view input, const Catalog& catalog) {
  const std::string_view text = util::trim(input);
  if (text.empty()) {
    return usage("empty GPU request; write 'none' for CPU only, a GPU spec such as 'A100-80GB:2' or a fallback list such as 'H100,A100-80GB,any'");
  }
  if (util::iequals(text, "none")) return GpuRequest{};
  const char open = text.front();
  if (open == '{' || open == '[') {
    const char close = open == '{' ? '}' : ']';
    if (text.back() != close) {
      return usage(fmt::format("invalid GPU request '{}': '{}' is not closed; write e.g. {}H100:8, A100:8{}", text, open, open, close));
    }
    auto request = parse_list(text, util::trim(text.substr(1, text.size() - 2)), catalog);
    if (request) request->any_of = open == '{';
    return request;
  }
  auto stripped = strip_vendor(text);
  if (!stripped) return stripped.error();
  if (stripped->find(',') == std::string_view::npos || stripped->empty()) {
    auto choice = parse_gpu_choice(text, catalog);
    if (!choice) return choice.error();
    return GpuRequest{{std::move(*choice)}, false};
  }
  return parse_list(text, *stripped, catalog);
}

std::string to_string(const GpuChoice& choice) {
  std::string out;
  if (choice.any && choice.memory_gb) {
    out = memory_text(choice.memory_gb, choice.max_memory_gb, choice.memory_range);
  } else if (choice.any && choice.max_memory_gb) {
    out = memory_text(std::nullopt, choice.max_memory_gb, true);
  } else if (choice.any) {
    out = "any";
  } else {
    out = choice.type;
    if (choice.memory_range) {
      out += ":" + memory_text(choice.memory_gb, choice.max_memory_gb, true);
    } else if (choice.memory_gb) {
      out += fmt::format("-{}GB", *choice.memory_gb);
    }
    if (choice.exact) out += "!";
  }
  if (choice.max_count) {
    out += choice.open_count ? fmt::format(":{}..", choice.count) : fmt::format(":{}..{}", choice.count, *choice.max_count);
  } else if (choice.count != 1) {
    out += fmt::format(":{}", choice.count);
  }
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
  if (choice->exact || choice->memory_range || choice->max_count) {
    return usage(fmt::format("invalid GPU offer '{}': an offer is one type, memory variant and the most per function, "
                             "e.g. 'T4:4' or 'A100-80GB:8'",
                             util::trim(text)));
  }
  const GpuType* type = catalog.find(choice->type);
  return GpuSlot{type->name, choice->memory_gb.value_or(type->default_memory_gb), choice->count};
}

std::string unknown_type_message(std::string_view name, const Catalog& catalog) { return unknown_type(name, catalog).message; }

std::vector<int> counts_descending(const GpuChoice& choice) {
  std::vector<int> counts;
  for (int n = choice.max_count.value_or(choice.count); n >= choice.count; --n) counts.push_back(n);
  return counts;
}

namespace {

GpuChoice concrete_choice(const std::string& type, std::optional<int> memory_gb, int count) {
  GpuChoice choice;
  choice.type = type;
  choice.memory_gb = memory_gb;
  choice.count = count;
  return choice;
}

// One count of a choice as concrete alternatives (no ranges, no `any`).
void expand_count(const GpuChoice& choice, int count, const Catalog& catalog, std::vector<GpuChoice>& out) {
  const bool by_memory = choice.any ? (choice.memory_gb || choice.max_memory_gb) : choice.memory_range;
  if (!by_memory && !choice.any) {
    GpuChoice plain = choice;
    plain.count = count;
    plain.max_count.reset();
    plain.open_count = false;
    out.push_back(std::move(plain));
    return;
  }
  if (!by_memory) {
    for (const auto& name : catalog.any_pool) {
      const GpuType* type = catalog.find(name);
      if (type == nullptr || type->max_count < count) continue;
      out.push_back(concrete_choice(type->name, std::nullopt, count));
    }
    return;
  }
  struct Variant {
    int memory_gb;
    std::size_t order;
    const GpuType* type;
  };
  std::vector<Variant> variants;
  for (std::size_t i = 0; i < catalog.types().size(); ++i) {
    const GpuType& type = catalog.types()[i];
    if (!choice.any && !util::iequals(type.name, choice.type)) continue;
    if (type.max_count < count) continue;
    for (int size : type.memory_gb) {
      if (in_bounds(size, choice)) variants.push_back({size, i, &type});
    }
  }
  std::stable_sort(variants.begin(), variants.end(),
                   [](const Variant& a, const Variant& b) { return a.memory_gb != b.memory_gb ? a.memory_gb < b.memory_gb : a.order < b.order; });
  for (const auto& v : variants) {
    GpuChoice concrete = concrete_choice(v.type->name, v.memory_gb, count);
    concrete.exact = true;
    out.push_back(std::move(concrete));
  }
}

}  // namespace

std::vector<GpuChoice> expand(const GpuChoice& choice, const Catalog& catalog) {
  std::vector<GpuChoice> out;
  for (int count : counts_descending(choice)) expand_count(choice, count, catalog, out);
  return out;
}

bool satisfies(const GpuSlot& offer, const GpuChoice& choice, const Catalog& catalog) {
  if (choice.any || choice.memory_range || choice.max_count) {
    const auto alternatives = expand(choice, catalog);
    return std::any_of(alternatives.begin(), alternatives.end(),
                       [&](const GpuChoice& alternative) { return satisfies(offer, alternative, catalog); });
  }
  const int wanted = effective_memory_gb(choice, catalog);
  const bool memory_ok = choice.exact ? offer.memory_gb == wanted : offer.memory_gb >= wanted;
  return util::iequals(offer.type, choice.type) && memory_ok && choice.count <= offer.count;
}

std::optional<GpuSlot> take_any(const GpuSlot& offer, const GpuChoice& choice) {
  if (!in_bounds(offer.memory_gb, choice)) return std::nullopt;
  for (int count : counts_descending(choice)) {
    if (count <= offer.count) return GpuSlot{offer.type, offer.memory_gb, count};
  }
  return std::nullopt;
}

int max_memory_gb(const GpuChoice& choice, const Catalog& catalog) {
  if (choice.exact) return effective_memory_gb(choice, catalog);
  return choice.max_memory_gb.value_or(0);
}

int effective_memory_gb(const GpuChoice& choice, const Catalog& catalog) {
  if (choice.memory_gb) return *choice.memory_gb;
  if (choice.any || choice.memory_range) return 0;
  const GpuType* type = catalog.find(choice.type);
  return type == nullptr ? 0 : type->default_memory_gb;
}

}  // namespace gpurun::gpu
