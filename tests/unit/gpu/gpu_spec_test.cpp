#include <doctest/doctest.h>

#include <optional>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "gpu/catalog.hpp"
#include "gpu/spec.hpp"

namespace gpurun::gpu {
// Readable values in doctest failure output.
std::ostream& operator<<(std::ostream& os, const GpuChoice& choice) {
  return os << "GpuChoice{any=" << choice.any << ", type=" << choice.type
            << ", memory=" << (choice.memory_gb ? std::to_string(*choice.memory_gb) : std::string("-"))
            << ", count=" << choice.count << "}";
}
std::ostream& operator<<(std::ostream& os, const GpuSlot& slot) {
  return os << "GpuSlot{" << slot.type << ", " << slot.memory_gb << ", " << slot.count << "}";
}
}  // namespace gpurun::gpu

using namespace gpurun::gpu;
using gpurun::util::ExitCode;

namespace {

const Catalog& builtin() {
  static const Catalog catalog = Catalog::builtin();
  return catalog;
}

GpuChoice concrete(std::string type, std::optional<int> memory_gb = std::nullopt, int count = 1) {
  GpuChoice choice;
  choice.type = std::move(type);
  choice.memory_gb = memory_gb;
  choice.count = count;
  return choice;
}

GpuChoice any_of(int count = 1) {
  GpuChoice choice;
  choice.any = true;
  choice.count = count;
  return choice;
}

// A concrete choice with a count range: "H100:1..2" (open: "H100:1..").
GpuChoice ranged(GpuChoice choice, int high, bool open = false) {
  choice.max_count = high;
  choice.open_count = open;
  return choice;
}

// A memory bound: memory-first ("24GB", any = true) or typed ("A100:40GB+").
GpuChoice with_memory(GpuChoice choice, std::optional<int> low, std::optional<int> high, bool range) {
  choice.memory_gb = low;
  choice.max_memory_gb = high;
  choice.memory_range = range;
  return choice;
}

GpuChoice exact(GpuChoice choice) {
  choice.exact = true;
  return choice;
}

std::vector<std::string> texts(const std::vector<GpuChoice>& choices) {
  std::vector<std::string> out;
  for (const auto& choice : choices) out.push_back(to_string(choice));
  return out;
}

GpuChoice parsed(std::string_view text, const Catalog& catalog = builtin()) {
  auto result = parse_gpu_choice(text, catalog);
  INFO("spec: '", std::string(text), "'");
  REQUIRE_MESSAGE(result.ok(), (result.ok() ? std::string() : result.error().message));
  return *result;
}

std::string choice_error(std::string_view text, const Catalog& catalog = builtin()) {
  auto result = parse_gpu_choice(text, catalog);
  INFO("spec: '", std::string(text), "'");
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == ExitCode::usage);
  return result.error().message;
}

GpuSlot offer(std::string_view text, const Catalog& catalog = builtin()) {
  auto result = parse_offer(text, catalog);
  INFO("offer: '", std::string(text), "'");
  REQUIRE_MESSAGE(result.ok(), (result.ok() ? std::string() : result.error().message));
  return *result;
}

std::string offer_error(std::string_view text, const Catalog& catalog = builtin()) {
  auto result = parse_offer(text, catalog);
  INFO("offer: '", std::string(text), "'");
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == ExitCode::usage);
  return result.error().message;
}

std::string request_error(std::string_view text) {
  auto result = parse_gpu_request(text, builtin());
  INFO("request: '", std::string(text), "'");
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == ExitCode::usage);
  return result.error().message;
}

std::string make_error_text(std::string_view type, std::optional<int> memory_gb, std::optional<int> count) {
  auto result = make_gpu_choice(type, memory_gb, count, builtin());
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().code == ExitCode::usage);
  return result.error().message;
}

const std::string kForms =
    "write TYPE[:COUNT], TYPE-MEMGB[:COUNT], TYPE:MEM[:COUNT] or MEMGB[:COUNT] (e.g. 'T4', 'A100-80GB:2', "
    "'A100:40GB+', '24GB:1..2', 'any:2')";
const std::string kKnown =
    "T4, A10G, L4, A100, L40S, H100, H200, V100, A10, A40, L40, A6000, RTX6000Ada, RTXPRO6000, GH200, B200";

std::string unknown(const std::string& name, const std::string& known = kKnown) {
  return "unknown GPU type '" + name + "'; known types: " + known +
         "; to use another GPU, add it under 'catalog:' in the config (e.g. " + name + ": {memory: [48], max: 8})";
}

}  // namespace

TEST_CASE("builtin catalog lists the types in order with their variants and limits") {
  const Catalog& catalog = builtin();
  CHECK(catalog.names() == std::vector<std::string>{"T4", "A10G", "L4", "A100", "L40S", "H100", "H200", "V100", "A10", "A40",
                                                    "L40", "A6000", "RTX6000Ada", "RTXPRO6000", "GH200", "B200"});
  struct Expected {
    const char* name;
    std::vector<int> memory;
    int default_memory;
    int max_count;
  };
  const std::vector<Expected> expected = {
      {"T4", {16}, 16, 8},       {"A10G", {24}, 24, 8},      {"L4", {24}, 24, 8},           {"A100", {20, 40, 80}, 40, 16},
      {"L40S", {48}, 48, 8},     {"H100", {80, 94}, 80, 8},  {"H200", {141}, 141, 8},       {"V100", {16, 32}, 16, 8},
      {"A10", {24}, 24, 8},      {"A40", {48}, 48, 8},       {"L40", {48}, 48, 8},          {"A6000", {48}, 48, 8},
      {"RTX6000Ada", {48}, 48, 8}, {"RTXPRO6000", {96}, 96, 8}, {"GH200", {96, 144}, 96, 4}, {"B200", {180}, 180, 8},
  };
  REQUIRE(catalog.types().size() == expected.size());
  for (std::size_t i = 0; i < expected.size(); ++i) {
    const GpuType& type = catalog.types()[i];
    CAPTURE(type.name);
    CHECK(type.name == expected[i].name);
    CHECK(type.memory_gb == expected[i].memory);
    CHECK(type.default_memory_gb == expected[i].default_memory);
    CHECK(type.max_count == expected[i].max_count);
  }
  CHECK(catalog.any_pool == std::vector<std::string>{"T4", "A10G"});
}

TEST_CASE("catalog find is case-insensitive and returns the canonical entry") {
  const Catalog& catalog = builtin();
  REQUIRE(catalog.find("a10g") != nullptr);
  CHECK(catalog.find("a10g")->name == "A10G");
  CHECK(catalog.find("l40s")->name == "L40S");
  CHECK(catalog.find("H100")->name == "H100");
  CHECK(catalog.find("A200") == nullptr);
  CHECK(catalog.find("") == nullptr);
  CHECK(catalog.find("A100-80GB") == nullptr);
  // Aliases: the spellings other tools use.
  CHECK(catalog.find("RTX-PRO-6000")->name == "RTXPRO6000");
  CHECK(catalog.find("rtx-6000-ada")->name == "RTX6000Ada");
  CHECK(catalog.find("RTXA6000")->name == "A6000");
}

TEST_CASE("catalog put replaces case-insensitively in place and appends new types") {
  Catalog catalog = Catalog::builtin();
  catalog.put(GpuType{"a100", {40, 80}, 80, 4, {}});
  CHECK(catalog.types().size() == 16);
  CHECK(catalog.names()[3] == "a100");
  REQUIRE(catalog.find("A100") != nullptr);
  CHECK(catalog.find("A100")->memory_gb == std::vector<int>{40, 80});
  CHECK(catalog.find("A100")->default_memory_gb == 80);
  CHECK(catalog.find("A100")->max_count == 4);

  catalog.put(GpuType{"RTX4090", {24}, 24, 2, {}});
  CHECK(catalog.names().back() == "RTX4090");
  CHECK(catalog.find("rtx4090")->max_count == 2);
}

TEST_CASE("parse_gpu_choice: any and any:N") {
  CHECK(parsed("any") == any_of());
  CHECK(parsed("ANY") == any_of());
  CHECK(parsed("any:2") == any_of(2));
  CHECK(parsed("Any:4") == any_of(4));
  CHECK(parsed("  any:1  ") == any_of(1));
}

TEST_CASE("parse_gpu_choice: type and type:count") {
  CHECK(parsed("T4") == concrete("T4"));
  CHECK(parsed("t4") == concrete("T4"));
  CHECK(parsed("A10G:4") == concrete("A10G", std::nullopt, 4));
  CHECK(parsed("a10g:4") == concrete("A10G", std::nullopt, 4));
  CHECK(parsed("L4:8") == concrete("L4", std::nullopt, 8));
  CHECK(parsed("l40s:3") == concrete("L40S", std::nullopt, 3));
  CHECK(parsed("H100:8") == concrete("H100", std::nullopt, 8));
  CHECK(parsed("A100:8") == concrete("A100", std::nullopt, 8));
  CHECK(parsed("A100:1") == concrete("A100", std::nullopt, 1));
  CHECK(parsed("T4:4") == concrete("T4", std::nullopt, 4));
  CHECK(parsed("T4:04") == concrete("T4", std::nullopt, 4));
}

TEST_CASE("parse_gpu_choice: memory in the name (TYPE-NNGB)") {
  CHECK(parsed("A100-20GB") == concrete("A100", 20));
  CHECK(parsed("A100-40GB") == concrete("A100", 40));
  CHECK(parsed("A100-80GB:2") == concrete("A100", 80, 2));
  CHECK(parsed("a100-80gb:2") == concrete("A100", 80, 2));
  CHECK(parsed("A100-80") == concrete("A100", 80));
  CHECK(parsed("T4-16GB") == concrete("T4", 16));
  CHECK(parsed("H200-141GB:8") == concrete("H200", 141, 8));
  // After a memory size in the name, a bare number is always a count.
  CHECK(parsed("A100-40GB:8") == concrete("A100", 40, 8));
}

TEST_CASE("parse_gpu_choice: memory after ':' (TYPE:MEM, TYPE:MEMGB, TYPE:MEM:COUNT)") {
  CHECK(parsed("A100:40") == concrete("A100", 40));
  CHECK(parsed("A100:40GB") == concrete("A100", 40));
  CHECK(parsed("A100:40gb") == concrete("A100", 40));
  CHECK(parsed("A100:20") == concrete("A100", 20));
  CHECK(parsed("A100:80") == concrete("A100", 80));
  CHECK(parsed("A100:40:2") == concrete("A100", 40, 2));
  CHECK(parsed("A100:40GB:2") == concrete("A100", 40, 2));
  CHECK(parsed("a100:80gb:8") == concrete("A100", 80, 8));
  // A bare number is a memory size when the type has that size, else a count.
  CHECK(parsed("T4:16") == concrete("T4", 16));
  CHECK(parsed("H200:141") == concrete("H200", 141));
  CHECK(parsed("H100:80") == concrete("H100", 80));
  // The GB form is a memory size even for a single-variant type, and checked as one.
  CHECK(parsed("T4:16GB:4") == concrete("T4", 16, 4));
}

TEST_CASE("parse_gpu_choice: memory-first specs (dstack): at least that much, of any catalog type") {
  CHECK(parsed("24GB") == with_memory(any_of(), 24, std::nullopt, false));
  CHECK(parsed("24gb") == with_memory(any_of(), 24, std::nullopt, false));
  CHECK(parsed("24GB+") == with_memory(any_of(), 24, std::nullopt, true));
  CHECK(parsed("24GB..") == with_memory(any_of(), 24, std::nullopt, true));
  CHECK(parsed("16GB..24GB") == with_memory(any_of(), 16, 24, true));
  CHECK(parsed("16..24GB") == with_memory(any_of(), 16, 24, true));
  CHECK(parsed("..24GB") == with_memory(any_of(), std::nullopt, 24, true));
  CHECK(parsed("80GB:8") == with_memory(any_of(8), 80, std::nullopt, false));
  CHECK(parsed("any:24GB") == with_memory(any_of(), 24, std::nullopt, false));
  CHECK(parsed("24GB:1..2") == ranged(with_memory(any_of(), 24, std::nullopt, false), 2));
  CHECK(parsed("nvidia:24GB") == with_memory(any_of(), 24, std::nullopt, false));
}

TEST_CASE("parse_gpu_choice: typed memory ranges, count ranges, '!' and the vendor prefix") {
  CHECK(parsed("A100:40GB+") == with_memory(concrete("A100"), 40, std::nullopt, true));
  CHECK(parsed("A100:30GB+") == with_memory(concrete("A100"), 30, std::nullopt, true));
  CHECK(parsed("A100:40GB..80GB:2") == with_memory(concrete("A100", std::nullopt, 2), 40, 80, true));
  CHECK(parsed("A100:2:40GB") == concrete("A100", 40, 2));  // dstack's order: count, then memory
  CHECK(parsed("H100:1..2") == ranged(concrete("H100"), 2));
  CHECK(parsed("H100:2..") == ranged(concrete("H100", std::nullopt, 2), 8, true));
  CHECK(parsed("H100:2+") == ranged(concrete("H100", std::nullopt, 2), 8, true));
  CHECK(parsed("H100:..4") == ranged(concrete("H100"), 4));
  CHECK(parsed("1..8") == ranged(any_of(), 8));
  CHECK(parsed("2") == any_of(2));
  CHECK(parsed("any:1..2") == ranged(any_of(), 2));
  CHECK(parsed("H100!") == exact(concrete("H100")));
  CHECK(parsed("h100!:8") == exact(concrete("H100", std::nullopt, 8)));
  CHECK(parsed("A100-80GB!") == exact(concrete("A100", 80)));
  CHECK(parsed("nvidia:T4") == concrete("T4"));
  CHECK(parsed("NVIDIA:A100:40GB:2") == concrete("A100", 40, 2));
  CHECK(parsed("nvidia") == any_of());
  // The GPUs users name most, and the spellings Modal and others use.
  CHECK(parsed("V100") == concrete("V100"));
  CHECK(parsed("V100-32GB:8") == concrete("V100", 32, 8));
  CHECK(parsed("B200:8") == concrete("B200", std::nullopt, 8));
  CHECK(parsed("RTX-PRO-6000") == concrete("RTXPRO6000"));
  CHECK(parsed("RTX-PRO-6000-96GB:2") == concrete("RTXPRO6000", 96, 2));
  CHECK(parsed("GH200:144GB") == concrete("GH200", 144));
  CHECK(parsed("H100-94GB") == concrete("H100", 94));
  CHECK(parsed("A10") == concrete("A10"));
  CHECK(parsed("T4:8") == concrete("T4", std::nullopt, 8));
  CHECK(parsed("A100:16") == concrete("A100", std::nullopt, 16));
}

TEST_CASE("to_string writes the new forms back as parseable text") {
  for (const char* canonical : {"24GB", "24GB+", "16GB..24GB", "..24GB", "80GB:8", "A100:40GB+", "A100:40GB..80GB:2", "H100:1..2",
                                "H100:2..", "any:1..8", "H100!", "A100-80GB!:2", "24GB:1..2", "V100-32GB", "RTXPRO6000"}) {
    CAPTURE(canonical);
    CHECK(to_string(parsed(canonical)) == canonical);
  }
  CHECK(to_string(parsed("1..8")) == "any:1..8");
  CHECK(to_string(parsed("24GB..")) == "24GB+");
  CHECK(to_string(parsed("H100:2+")) == "H100:2..");
  CHECK(to_string(parsed("nvidia:rtx-pro-6000")) == "RTXPRO6000");
}

TEST_CASE("expand: count ranges largest first; memory bounds become exact variants, smallest first") {
  const Catalog& catalog = builtin();
  CHECK(texts(expand(parsed("H100:1..3"), catalog)) == std::vector<std::string>{"H100:3", "H100:2", "H100"});
  CHECK(texts(expand(parsed("any:1..2"), catalog)) == std::vector<std::string>{"T4:2", "A10G:2", "T4", "A10G"});
  CHECK(texts(expand(parsed("A100:40GB+"), catalog)) == std::vector<std::string>{"A100-40GB!", "A100-80GB!"});
  CHECK(texts(expand(parsed("16GB..24GB"), catalog)) ==
        std::vector<std::string>{"T4-16GB!", "V100-16GB!", "A100-20GB!", "A10G-24GB!", "L4-24GB!", "A10-24GB!"});
  CHECK(texts(expand(parsed("100GB+:8"), catalog)) == std::vector<std::string>{"H200-141GB!:8", "B200-180GB!:8"});
  CHECK(texts(expand(parsed("..16GB:2"), catalog)) == std::vector<std::string>{"T4-16GB!:2", "V100-16GB!:2"});
  // GH200 allows 4 per function: left out of 8-GPU expansions, kept for 4.
  CHECK(texts(expand(parsed("96GB..96GB:4"), catalog)) == std::vector<std::string>{"RTXPRO6000-96GB!:4", "GH200-96GB!:4"});
  CHECK(texts(expand(parsed("H100!:1..2"), catalog)) == std::vector<std::string>{"H100!:2", "H100!"});
  CHECK(counts_descending(parsed("H100:2..4")) == std::vector<int>{4, 3, 2});
  CHECK(counts_descending(parsed("H100:2")) == std::vector<int>{2});
}

TEST_CASE("satisfies: exact variants, memory bounds and count ranges") {
  const Catalog& catalog = builtin();
  CHECK(satisfies(GpuSlot{"H100", 80, 8}, parsed("H100!"), catalog));
  CHECK_FALSE(satisfies(GpuSlot{"H100", 94, 8}, parsed("H100!"), catalog));
  CHECK(satisfies(GpuSlot{"H100", 94, 8}, parsed("H100"), catalog));
  CHECK(satisfies(GpuSlot{"A100", 80, 8}, parsed("A100-80GB!"), catalog));
  CHECK_FALSE(satisfies(GpuSlot{"A100", 40, 8}, parsed("A100-80GB!"), catalog));
  CHECK(satisfies(GpuSlot{"A10G", 24, 1}, parsed("24GB"), catalog));
  CHECK(satisfies(GpuSlot{"H200", 141, 1}, parsed("24GB+"), catalog));
  CHECK_FALSE(satisfies(GpuSlot{"T4", 16, 8}, parsed("24GB"), catalog));
  CHECK(satisfies(GpuSlot{"T4", 16, 8}, parsed("16GB..24GB"), catalog));
  CHECK_FALSE(satisfies(GpuSlot{"L40S", 48, 8}, parsed("16GB..24GB"), catalog));
  CHECK(satisfies(GpuSlot{"A100", 80, 2}, parsed("A100:40GB+:2"), catalog));
  CHECK_FALSE(satisfies(GpuSlot{"A100", 20, 2}, parsed("A100:40GB+"), catalog));
  // A count range needs room for its lower bound.
  CHECK(satisfies(GpuSlot{"H100", 80, 1}, parsed("H100:1..8"), catalog));
  CHECK_FALSE(satisfies(GpuSlot{"H100", 80, 1}, parsed("H100:2..8"), catalog));
}

TEST_CASE("take_any: a probed GPU of any type, the largest count in range, memory in bounds") {
  const GpuSlot rtx{"RTX4090", 24, 2};
  CHECK(take_any(rtx, parsed("any")) == GpuSlot{"RTX4090", 24, 1});
  CHECK(take_any(rtx, parsed("1..8")) == GpuSlot{"RTX4090", 24, 2});
  CHECK(take_any(rtx, parsed("24GB:1..2")) == GpuSlot{"RTX4090", 24, 2});
  CHECK(take_any(rtx, parsed("any:3..4")) == std::nullopt);
  CHECK(take_any(rtx, parsed("40GB")) == std::nullopt);
  CHECK(take_any(rtx, parsed("..16GB")) == std::nullopt);
}

TEST_CASE("parse_gpu_choice trims whitespace around the spec and its fields") {
  CHECK(parsed("  A100:40:2 \t") == concrete("A100", 40, 2));
  CHECK(parsed("\nT4\r\n") == concrete("T4"));
  CHECK(parsed("A100 : 40 : 2") == concrete("A100", 40, 2));
  CHECK(parsed("A100:40 GB") == concrete("A100", 40));
}

TEST_CASE("parse_gpu_choice errors say what is allowed") {
  SUBCASE("count above the type's limit") {
    CHECK(choice_error("A10G-24GB:9") == "A10G supports at most 8 GPUs per function (asked 9)");
    CHECK(choice_error("A10G:24:9") == "A10G supports at most 8 GPUs per function (asked 9)");
    CHECK(choice_error("A100-80GB:17") == "A100 supports at most 16 GPUs per function (asked 17)");
    CHECK(choice_error("T4:16GB:9") == "T4 supports at most 8 GPUs per function (asked 9)");
    CHECK(choice_error("any:9") == "any supports at most 8 GPUs per function (asked 9)");
    CHECK(choice_error("GH200:5") == "GH200 supports at most 4 GPUs per function (asked 5)");
  }
  SUBCASE("memory that is not a variant of the type") {
    CHECK(choice_error("A100-60GB") == "A100 comes with 20, 40 or 80 GB (asked 60)");
    CHECK(choice_error("A100:60GB") == "A100 comes with 20, 40 or 80 GB (asked 60)");
    CHECK(choice_error("A100:60:2") == "A100 comes with 20, 40 or 80 GB (asked 60)");
    CHECK(choice_error("A100:60GB:2") == "A100 comes with 20, 40 or 80 GB (asked 60)");
    CHECK(choice_error("T4-32GB") == "T4 comes with 16 GB (asked 32)");
    CHECK(choice_error("T4:32GB") == "T4 comes with 16 GB (asked 32)");
    CHECK(choice_error("A100:-40GB") == "A100 comes with 20, 40 or 80 GB (asked -40)");
  }
  SUBCASE("a bare number that is neither a memory size nor an allowed count") {
    CHECK(choice_error("A100:60") == "A100:60: 60 is neither a memory size of A100 (20, 40 or 80 GB) nor a GPU count it allows (1 to 16)");
    CHECK(choice_error("A10G:12") == "A10G supports at most 8 GPUs per function (asked 12)");
    CHECK(choice_error("t4:32") == "t4:32: 32 is neither a memory size of T4 (16 GB) nor a GPU count it allows (1 to 8)");
    CHECK(choice_error(" H100:9 ") == "H100 supports at most 8 GPUs per function (asked 9)");
  }
  SUBCASE("count zero or negative") {
    CHECK(choice_error("A100:0") == "GPU count must be at least 1 (asked 0)");
    CHECK(choice_error("A100:-1") == "GPU count must be at least 1 (asked -1)");
    CHECK(choice_error("A100-80GB:0") == "GPU count must be at least 1 (asked 0)");
    CHECK(choice_error("A100:40:0") == "GPU count must be at least 1 (asked 0)");
    CHECK(choice_error("A100:40:-3") == "GPU count must be at least 1 (asked -3)");
    CHECK(choice_error("any:0") == "GPU count must be at least 1 (asked 0)");
    CHECK(choice_error("any:-2") == "GPU count must be at least 1 (asked -2)");
  }
  SUBCASE("unknown types: named whole, the catalog listed, the fix said; no suggestion of a different GPU") {
    CHECK(choice_error("A200") == unknown("A200"));
    CHECK(choice_error("A200:2") == unknown("A200"));
    CHECK(choice_error("A200-80GB") == unknown("A200-80GB"));
    CHECK(choice_error("h10") == unknown("h10"));
    CHECK(choice_error("ani") == unknown("ani"));
    CHECK(choice_error("X") == unknown("X"));
    CHECK(choice_error("Quadro") == unknown("Quadro"));
    CHECK(choice_error("A100 80GB") == unknown("A100 80GB"));
    CHECK(choice_error("none") == unknown("none"));
    CHECK(choice_error("RTX-PRO") == unknown("RTX-PRO"));
    CHECK(choice_error("RTX-PRO-5000:2") == unknown("RTX-PRO-5000"));
    CHECK(choice_error("P100") == unknown("P100"));
    CHECK(choice_error("H300") == unknown("H300"));
  }
  SUBCASE("did-you-mean only for case, punctuation, vendor words and form factors") {
    CHECK(choice_error("Tesla-T4") == "unknown GPU type 'Tesla-T4' (did you mean 'T4'?)");
    CHECK(choice_error("NVIDIA-A100:2") == "unknown GPU type 'NVIDIA-A100' (did you mean 'A100'?)");
    CHECK(choice_error("H100-SXM") == "unknown GPU type 'H100-SXM' (did you mean 'H100'?)");
    CHECK(choice_error("H100_PCIe") == "unknown GPU type 'H100_PCIe' (did you mean 'H100'?)");
    CHECK(choice_error("L40_S") == "unknown GPU type 'L40_S' (did you mean 'L40S'?)");
    CHECK(choice_error("RTX_6000_ADA") == "unknown GPU type 'RTX_6000_ADA' (did you mean 'RTX6000Ada'?)");
    CHECK(choice_error("RTX PRO 6000") == "unknown GPU type 'RTX PRO 6000' (did you mean 'RTXPRO6000'?)");
  }
  SUBCASE("other accelerators are refused plainly") {
    const std::string tail = " are not supported; gpurun runs NVIDIA GPUs only, name one of the catalog's types (see 'gpurun gpus')";
    CHECK(choice_error("tpu-v3-8") == "'tpu-v3-8': Google TPUs" + tail);
    CHECK(choice_error("tpu-v5e-8:1") == "'tpu-v5e-8': Google TPUs" + tail);
    CHECK(choice_error("v5e-8") == "'v5e-8': Google TPUs" + tail);
    CHECK(choice_error("MI300X:8") == "'MI300X': AMD GPUs" + tail);
    CHECK(choice_error("mi250") == "'mi250': AMD GPUs" + tail);
    CHECK(choice_error("Gaudi2") == "'Gaudi2': Intel Gaudi accelerators" + tail);
    CHECK(choice_error("Trainium") == "'Trainium': AWS Trainium" + tail);
    CHECK(choice_error("Inferentia2") == "'Inferentia2': AWS Inferentia" + tail);
    CHECK(choice_error("amd:MI300X") ==
          "invalid GPU spec 'amd:MI300X': vendor 'amd' is not supported; gpurun runs NVIDIA GPUs only (write 'nvidia:TYPE' or just the type)");
    CHECK(choice_error("tpu:v3-8") ==
          "invalid GPU spec 'tpu:v3-8': vendor 'tpu' is not supported; gpurun runs NVIDIA GPUs only (write 'nvidia:TYPE' or just the type)");
    CHECK(choice_error("Google:v5p") ==
          "invalid GPU spec 'Google:v5p': vendor 'Google' is not supported; gpurun runs NVIDIA GPUs only (write 'nvidia:TYPE' or just the type)");
  }
  SUBCASE("fractional GPUs: whole GPUs only, with the spec to write") {
    CHECK(choice_error("T4:0.5") == "invalid GPU spec 'T4:0.5': gpurun gives whole GPUs, not a fraction (0.5); write T4:1");
    CHECK(choice_error("A100:0.25") == "invalid GPU spec 'A100:0.25': gpurun gives whole GPUs, not a fraction (0.25); write A100:1");
    CHECK(choice_error("T4:1.5") == "invalid GPU spec 'T4:1.5': gpurun gives whole GPUs, not a fraction (1.5); write T4:2");
    CHECK(choice_error("A100-80GB:0.5") ==
          "invalid GPU spec 'A100-80GB:0.5': gpurun gives whole GPUs, not a fraction (0.5); write A100-80GB:1");
    CHECK(choice_error("0.5") == "invalid GPU spec '0.5': gpurun gives whole GPUs, not a fraction (0.5); write any:1");
  }
  SUBCASE("'any' with a memory size in the name") {
    CHECK(choice_error("any-40GB") == "'any' takes no memory size (asked 40 GB); write '40GB' for any GPU with that much");
    CHECK(choice_error("any:40:2") == "invalid GPU spec 'any:40:2': '2' is not a GPU count; " + kForms);
  }
  SUBCASE("memory-first specs, ranges and '!'") {
    CHECK(choice_error("500GB") == "no GPU type in the catalog has 500GB of memory (the largest is B200 with 180 GB); add one under "
                                   "'catalog:' in the config");
    CHECK(choice_error("200GB+") == "no GPU type in the catalog has 200GB+ of memory (the largest is B200 with 180 GB); add one under "
                                    "'catalog:' in the config");
    CHECK(choice_error("0GB") == "GPU memory must be at least 1 GB (asked 0GB)");
    CHECK(choice_error("24GB..16GB") == "memory range '24GB..16GB' is empty; write the smaller size first, e.g. 16GB..24GB");
    CHECK(choice_error("A100:100GB..200GB") == "A100 comes with 20, 40 or 80 GB; none is in 100GB..200GB");
    CHECK(choice_error("T4:20GB+") == "T4 comes with 16 GB; none is in 20GB+");
    CHECK(choice_error("H100:3..2") == "GPU count range '3..2' is empty; write the smaller count first, e.g. 2..3");
    CHECK(choice_error("H100:1..9") == "H100 supports at most 8 GPUs per function (asked 1..9)");
    CHECK(choice_error("H100:0..2") == "GPU count must be at least 1 (asked 0..2)");
    CHECK(choice_error("80GB:17") == "a GPU with 80GB supports at most 16 GPUs per function (asked 17)");
    CHECK(choice_error("100GB:9") == "a GPU with 100GB supports at most 8 GPUs per function (asked 9)");
    CHECK(choice_error("any:1..9") == "any supports at most 8 GPUs per function (asked 1..9)");
    CHECK(choice_error("H100!:80GB+") == "'H100!' asks for one exact variant; leave out the memory range '80GB+'");
    CHECK(choice_error("any!") == "invalid GPU spec 'any!': '!' follows a GPU type ('H100!'), not 'any'; " + kForms);
    CHECK(choice_error("24GB!") == "invalid GPU spec '24GB!': '!' follows a GPU type ('H100!'); " + kForms);
    CHECK(choice_error("..") == "invalid GPU spec '..': '..' has no bounds; write e.g. 1..2 or 16GB..24GB; " + kForms);
    CHECK(choice_error("H100:1..x") == "invalid GPU spec 'H100:1..x': '1..x' is not a number; " + kForms);
  }
  SUBCASE("malformed specs") {
    CHECK(choice_error("") == "empty GPU spec; " + kForms);
    CHECK(choice_error(" \t ") == "empty GPU spec; " + kForms);
    CHECK(choice_error("A100-40GB:40GB") == "invalid GPU spec 'A100-40GB:40GB': the memory size is given twice; " + kForms);
    CHECK(choice_error("A100-40GB:40:2") == "invalid GPU spec 'A100-40GB:40:2': the memory size is given twice; " + kForms);
    CHECK(choice_error("A100:40:2GB") == "invalid GPU spec 'A100:40:2GB': the memory size is given twice; " + kForms);
    CHECK(choice_error("A100:2:4") == "A100 comes with 20, 40 or 80 GB (asked 2)");
    CHECK(choice_error("A100:40:2:1") == "invalid GPU spec 'A100:40:2:1': too many ':' fields; " + kForms);
    CHECK(choice_error("A100:") == "invalid GPU spec 'A100:': a field after ':' is empty; " + kForms);
    CHECK(choice_error("A100::2") == "invalid GPU spec 'A100::2': a field after ':' is empty; " + kForms);
    CHECK(choice_error(":4") == "invalid GPU spec ':4': the GPU type is missing; " + kForms);
    CHECK(choice_error("A100:abc") == "invalid GPU spec 'A100:abc': 'abc' is not a number; " + kForms);
    CHECK(choice_error("A100:4x") == "invalid GPU spec 'A100:4x': '4x' is not a number; " + kForms);
    CHECK(choice_error("A100:+2") == "invalid GPU spec 'A100:+2': '+2' is not a number; " + kForms);
    CHECK(choice_error("A100:GB") == "invalid GPU spec 'A100:GB': 'GB' is not a number; " + kForms);
    CHECK(choice_error("A100:99999999999") == "invalid GPU spec 'A100:99999999999': '99999999999' is out of range; " + kForms);
    CHECK(choice_error("A100-xyz") == "invalid GPU spec 'A100-xyz': 'xyz' after '-' is not a memory size like '40GB'; " + kForms);
    CHECK(choice_error("A100-") == "invalid GPU spec 'A100-': the memory size after '-' is missing; " + kForms);
  }
}

TEST_CASE("make_gpu_choice applies the same checks as the string form") {
  auto made = [](std::string_view type, std::optional<int> memory_gb, std::optional<int> count) {
    auto result = make_gpu_choice(type, memory_gb, count, builtin());
    REQUIRE_MESSAGE(result.ok(), (result.ok() ? std::string() : result.error().message));
    return *result;
  };
  CHECK(made("A100", 40, 2) == concrete("A100", 40, 2));
  CHECK(made("a100", std::nullopt, std::nullopt) == concrete("A100"));
  CHECK(made("H100", std::nullopt, 8) == concrete("H100", std::nullopt, 8));
  CHECK(made("T4", 16, std::nullopt) == concrete("T4", 16));
  CHECK(made(" A10G ", std::nullopt, 4) == concrete("A10G", std::nullopt, 4));
  CHECK(made("A100-80GB", std::nullopt, 2) == concrete("A100", 80, 2));
  CHECK(made("any", std::nullopt, 2) == any_of(2));
  CHECK(made("ANY", std::nullopt, std::nullopt) == any_of());

  CHECK(make_error_text("A10G", std::nullopt, 9) == "A10G supports at most 8 GPUs per function (asked 9)");
  CHECK(make_error_text("A100", 60, std::nullopt) == "A100 comes with 20, 40 or 80 GB (asked 60)");
  CHECK(make_error_text("T4", 32, 1) == "T4 comes with 16 GB (asked 32)");
  CHECK(make_error_text("A100", 0, 1) == "A100 comes with 20, 40 or 80 GB (asked 0)");
  CHECK(make_error_text("A100", std::nullopt, 0) == "GPU count must be at least 1 (asked 0)");
  CHECK(make_error_text("A100", 40, -1) == "GPU count must be at least 1 (asked -1)");
  CHECK(make_error_text("A200", std::nullopt, 1) == unknown("A200"));
  CHECK(make_error_text("X", std::nullopt, 1) == unknown("X"));
  CHECK(make_error_text("", 40, 1) == "the GPU type is empty; known types: " + kKnown);
  CHECK(make_error_text("any", std::nullopt, 9) == "any supports at most 8 GPUs per function (asked 9)");
  CHECK(make_error_text("A100-40GB", 80, 1) ==
        "GPU type 'A100-40GB' already names a memory size; leave out the separate memory (80GB) or write the type without '-40GB'");
  CHECK(make_error_text("A100:40", std::nullopt, 1) == unknown("A100:40"));
  // any with a memory size: a memory-first spec.
  auto any40 = make_gpu_choice("any", 40, 1, builtin());
  REQUIRE(any40.ok());
  CHECK(*any40 == with_memory(any_of(), 40, std::nullopt, false));
}

TEST_CASE("make_gpu_choice with memory and count as written (ranges)") {
  auto made = [](std::string_view type, std::optional<std::string_view> memory, std::optional<std::string_view> count) {
    auto result = make_gpu_choice(type, memory, count, builtin());
    REQUIRE_MESSAGE(result.ok(), (result.ok() ? std::string() : result.error().message));
    return *result;
  };
  auto failed = [](std::string_view type, std::optional<std::string_view> memory, std::optional<std::string_view> count) {
    auto result = make_gpu_choice(type, memory, count, builtin());
    REQUIRE_FALSE(result.ok());
    CHECK(result.error().code == ExitCode::usage);
    return result.error().message;
  };
  CHECK(made("A100", "40GB+", "1..2") == ranged(with_memory(concrete("A100"), 40, std::nullopt, true), 2));
  CHECK(made("H100", std::nullopt, "2..") == ranged(concrete("H100", std::nullopt, 2), 8, true));
  CHECK(made("A100", "80", std::nullopt) == concrete("A100", 80));
  CHECK(made("any", "24GB", "2") == with_memory(any_of(2), 24, std::nullopt, false));
  CHECK(made("H100!", std::nullopt, "8") == exact(concrete("H100", std::nullopt, 8)));
  CHECK(failed("A100", "lots", std::nullopt) == "expected the GPU memory in GB (e.g. 40GB, 24GB+ or 16GB..24GB), got 'lots'");
  CHECK(failed("A100", std::nullopt, "0.5") == "gpurun gives whole GPUs, not a fraction (0.5); write count: 1");
  CHECK(failed("A100", std::nullopt, "two") == "expected a whole number of GPUs or a range (e.g. 2 or 1..4), got 'two'");
  CHECK(failed("24GB", std::nullopt, std::nullopt) ==
        "'24GB' is not a GPU type; put a memory size under 'memory' and a count under 'count'");
}

TEST_CASE("parse_gpu_request: none, a single spec or a fallback list") {
  auto request = [](std::string_view text) {
    auto result = parse_gpu_request(text, builtin());
    REQUIRE_MESSAGE(result.ok(), (result.ok() ? std::string() : result.error().message));
    return *result;
  };
  CHECK(request("none").cpu_only());
  CHECK(request(" NONE ").cpu_only());
  CHECK(request("A100:40:2").alternatives == std::vector<GpuChoice>{concrete("A100", 40, 2)});
  CHECK(request("H100,A100-80GB,any").alternatives ==
        std::vector<GpuChoice>{concrete("H100"), concrete("A100", 80), any_of()});
  CHECK(request(" h100:2 , a100:80:2 , any:2 ").alternatives ==
        std::vector<GpuChoice>{concrete("H100", std::nullopt, 2), concrete("A100", 80, 2), any_of(2)});
  CHECK_FALSE(request("T4").cpu_only());

  CHECK(request_error("") ==
        "empty GPU request; write 'none' for CPU only, a GPU spec such as 'A100-80GB:2' or a fallback list such as 'H100,A100-80GB,any'");
  CHECK(request_error("  ") ==
        "empty GPU request; write 'none' for CPU only, a GPU spec such as 'A100-80GB:2' or a fallback list such as 'H100,A100-80GB,any'");
  CHECK(request_error("H100,,any") ==
        "invalid GPU request 'H100,,any': entry 2 of the list is empty; write a list such as 'H100,A100-80GB,any'");
  CHECK(request_error("H100,") ==
        "invalid GPU request 'H100,': entry 2 of the list is empty; write a list such as 'H100,A100-80GB,any'");
  CHECK(request_error("none,T4") ==
        "invalid GPU request 'none,T4': 'none' cannot be combined with GPU types; write 'none' alone for CPU only");
  CHECK(request_error("H100:2,A10G:9") == "A10G supports at most 8 GPUs per function (asked 9)");
  CHECK(request_error("H100,A200") == unknown("A200"));
}

TEST_CASE("parse_gpu_request: a count after a comma list applies to every bare entry (dstack)") {
  auto request = [](std::string_view text) {
    auto result = parse_gpu_request(text, builtin());
    REQUIRE_MESSAGE(result.ok(), (result.ok() ? std::string() : result.error().message));
    return *result;
  };
  CHECK(request("A10,A10G:2").alternatives ==
        std::vector<GpuChoice>{concrete("A10", std::nullopt, 2), concrete("A10G", std::nullopt, 2)});
  CHECK(request("A10G,A100").alternatives == std::vector<GpuChoice>{concrete("A10G"), concrete("A100")});
  CHECK(request("A10G,A100:24GB+:2").alternatives ==
        std::vector<GpuChoice>{with_memory(concrete("A10G", std::nullopt, 2), 24, std::nullopt, true),
                               with_memory(concrete("A100", std::nullopt, 2), 24, std::nullopt, true)});
  // Entries with their own fields keep them.
  CHECK(request("H100:8,A100,A10G:4").alternatives ==
        std::vector<GpuChoice>{concrete("H100", std::nullopt, 8), concrete("A100", std::nullopt, 4), concrete("A10G", std::nullopt, 4)});
  CHECK(request("nvidia:A10,A10G:2").alternatives ==
        std::vector<GpuChoice>{concrete("A10", std::nullopt, 2), concrete("A10G", std::nullopt, 2)});
  CHECK(request("A100,H100:1..2").alternatives ==
        std::vector<GpuChoice>{ranged(concrete("A100"), 2), ranged(concrete("H100"), 2)});
  CHECK(request("H100:1..2,A100").alternatives == std::vector<GpuChoice>{ranged(concrete("H100"), 2), concrete("A100")});
  // A memory-first last entry shares nothing.
  CHECK(request("H100,80GB:2").alternatives ==
        std::vector<GpuChoice>{concrete("H100"), with_memory(any_of(2), 80, std::nullopt, false)});
  CHECK(request_error("T4,A100:40") ==
        "invalid GPU request 'T4,A100:40': ':40' after the last entry applies to every bare entry of the list (as in dstack), so T4 "
        "means T4:40; T4:40: 40 is neither a memory size of T4 (16 GB) nor a GPU count it allows (1 to 8)");
}

TEST_CASE("parse_gpu_request: SkyPilot's any-of set and a bracketed list") {
  auto request = [](std::string_view text) {
    auto result = parse_gpu_request(text, builtin());
    REQUIRE_MESSAGE(result.ok(), (result.ok() ? std::string() : result.error().message));
    return *result;
  };
  const auto set = request("{H100:8, A100:8}");
  CHECK(set.any_of);
  CHECK(set.alternatives == std::vector<GpuChoice>{concrete("H100", std::nullopt, 8), concrete("A100", std::nullopt, 8)});
  const auto list = request("[H100, A100-80GB]");
  CHECK_FALSE(list.any_of);
  CHECK(list.alternatives == std::vector<GpuChoice>{concrete("H100"), concrete("A100", 80)});
  CHECK_FALSE(request("H100,A100").any_of);
  CHECK(request_error("{H100:8, A100:8") ==
        "invalid GPU request '{H100:8, A100:8': '{' is not closed; write e.g. {H100:8, A100:8}");
  CHECK(request_error("{}") == "invalid GPU request '{}': entry 1 of the list is empty; write a list such as 'H100,A100-80GB,any'");
  CHECK(request_error("{H100:8, V200:8}") == unknown("V200"));
}

TEST_CASE("expand turns any into the catalog's any pool and keeps concrete choices") {
  CHECK(expand(any_of(), builtin()) == std::vector<GpuChoice>{concrete("T4"), concrete("A10G")});
  CHECK(expand(any_of(2), builtin()) ==
        std::vector<GpuChoice>{concrete("T4", std::nullopt, 2), concrete("A10G", std::nullopt, 2)});
  CHECK(expand(concrete("A100", 80, 2), builtin()) == std::vector<GpuChoice>{concrete("A100", 80, 2)});
  CHECK(expand(concrete("H100"), builtin()) == std::vector<GpuChoice>{concrete("H100")});

  Catalog custom = Catalog::builtin();
  custom.any_pool = {"l4", "T4", "Unknown", "H100"};
  CHECK(expand(any_of(), custom) == std::vector<GpuChoice>{concrete("L4"), concrete("T4"), concrete("H100")});
  // Pool entries that allow fewer GPUs than asked are left out.
  custom.put(GpuType{"T4", {16}, 16, 4, {}});
  CHECK(expand(any_of(8), custom) == std::vector<GpuChoice>{concrete("L4", std::nullopt, 8), concrete("H100", std::nullopt, 8)});
  // The custom pool's most per function governs any:N.
  CHECK(parsed("any:8", custom) == any_of(8));
  CHECK(choice_error("any:9", custom) == "any supports at most 8 GPUs per function (asked 9)");

  Catalog empty_pool = Catalog::builtin();
  empty_pool.any_pool.clear();
  CHECK(expand(any_of(), empty_pool).empty());
  CHECK(choice_error("any", empty_pool) == "'any' is not available: the GPU catalog's any pool is empty; name a GPU type instead");
}

TEST_CASE("satisfies: same type, an equal or larger memory variant, and enough GPUs") {
  const Catalog& catalog = builtin();
  const GpuSlot a100_20{"A100", 20, 8};
  const GpuSlot a100_40{"A100", 40, 8};
  const GpuSlot a100_80{"A100", 80, 2};

  // No memory asked: the default (40 GB) or larger.
  CHECK(satisfies(a100_40, concrete("A100"), catalog));
  CHECK(satisfies(a100_80, concrete("A100"), catalog));
  CHECK_FALSE(satisfies(a100_20, concrete("A100"), catalog));
  // Memory asked: that size or larger, never smaller.
  CHECK(satisfies(a100_20, concrete("A100", 20), catalog));
  CHECK(satisfies(a100_40, concrete("A100", 20), catalog));
  CHECK(satisfies(a100_80, concrete("A100", 40), catalog));
  CHECK_FALSE(satisfies(a100_40, concrete("A100", 80), catalog));
  CHECK_FALSE(satisfies(a100_20, concrete("A100", 40), catalog));
  // Count limits of the offer.
  CHECK(satisfies(a100_80, concrete("A100", 80, 2), catalog));
  CHECK_FALSE(satisfies(a100_80, concrete("A100", 80, 3), catalog));
  CHECK(satisfies(a100_40, concrete("A100", std::nullopt, 8), catalog));
  // Another type never satisfies, whatever its memory.
  CHECK_FALSE(satisfies(GpuSlot{"H100", 80, 8}, concrete("A100"), catalog));
  CHECK_FALSE(satisfies(GpuSlot{"H200", 141, 8}, concrete("H100"), catalog));
  // any: one of its expansions.
  CHECK(satisfies(GpuSlot{"T4", 16, 4}, any_of(2), catalog));
  CHECK(satisfies(GpuSlot{"A10G", 24, 1}, any_of(), catalog));
  CHECK_FALSE(satisfies(GpuSlot{"A10G", 24, 1}, any_of(2), catalog));
  CHECK_FALSE(satisfies(GpuSlot{"H100", 80, 8}, any_of(), catalog));
  // Works with parsed offers and choices.
  CHECK(satisfies(offer("A100-80GB:8"), parsed("a100:40:4"), catalog));
  CHECK_FALSE(satisfies(offer("A100:2"), parsed("A100-80GB"), catalog));
}

TEST_CASE("effective_memory_gb is the asked size or the type's default") {
  const Catalog& catalog = builtin();
  CHECK(effective_memory_gb(concrete("A100"), catalog) == 40);
  CHECK(effective_memory_gb(concrete("A100", 80), catalog) == 80);
  CHECK(effective_memory_gb(concrete("A100", 20, 2), catalog) == 20);
  CHECK(effective_memory_gb(concrete("T4"), catalog) == 16);
  CHECK(effective_memory_gb(concrete("H200"), catalog) == 141);
  CHECK(effective_memory_gb(any_of(), catalog) == 0);
  CHECK(effective_memory_gb(concrete("Unknown"), catalog) == 0);
}

TEST_CASE("parse_offer: concrete types with the most per function") {
  CHECK(offer("T4:4") == GpuSlot{"T4", 16, 4});
  CHECK(offer("t4") == GpuSlot{"T4", 16, 1});
  CHECK(offer("A100-40GB:2") == GpuSlot{"A100", 40, 2});
  CHECK(offer("A100-80GB") == GpuSlot{"A100", 80, 1});
  CHECK(offer("A100:80:8") == GpuSlot{"A100", 80, 8});
  CHECK(offer("A100:8") == GpuSlot{"A100", 40, 8});
  CHECK(offer("a100:20") == GpuSlot{"A100", 20, 1});
  CHECK(offer(" H200:141GB:8 ") == GpuSlot{"H200", 141, 8});

  CHECK(offer_error("any") == "a cloud offers concrete GPU types, not 'any'");
  CHECK(offer_error("ANY:2") == "a cloud offers concrete GPU types, not 'any'");
  CHECK(offer_error("any-40GB") == "a cloud offers concrete GPU types, not 'any'");
  CHECK(offer_error("any:99") == "a cloud offers concrete GPU types, not 'any'");
  CHECK(offer_error("A10G-24GB:9") == "A10G supports at most 8 GPUs per function (asked 9)");
  CHECK(offer("T4:8") == GpuSlot{"T4", 16, 8});  // a Slurm node may hold 8 T4s
  CHECK(offer("nvidia:T4:8") == GpuSlot{"T4", 16, 8});
  CHECK(offer_error("24GB:2") == "invalid GPU offer '24GB:2': name the GPU type, e.g. 'T4:4' or 'A100-80GB:8'");
  CHECK(offer_error("H100!:8") == "invalid GPU offer 'H100!:8': an offer is one type, memory variant and the most per function, e.g. "
                                  "'T4:4' or 'A100-80GB:8'");
  CHECK(offer_error("H100:1..8") == "invalid GPU offer 'H100:1..8': an offer is one type, memory variant and the most per function, e.g. "
                                    "'T4:4' or 'A100-80GB:8'");
  CHECK(offer_error("A100-60GB") == "A100 comes with 20, 40 or 80 GB (asked 60)");
  CHECK(offer_error("A100:0") == "GPU count must be at least 1 (asked 0)");
  CHECK(offer_error("A200:8") == unknown("A200"));
  CHECK(offer_error("ani") == unknown("ani"));
  CHECK(offer_error("") == "empty GPU spec; " + kForms);
}

TEST_CASE("to_string writes canonical choices") {
  CHECK(to_string(any_of()) == "any");
  CHECK(to_string(any_of(2)) == "any:2");
  CHECK(to_string(concrete("T4")) == "T4");
  CHECK(to_string(concrete("A10G", std::nullopt, 4)) == "A10G:4");
  CHECK(to_string(concrete("A100", 40)) == "A100-40GB");
  CHECK(to_string(concrete("A100", 80, 2)) == "A100-80GB:2");
  CHECK(to_string(concrete("T4", 16)) == "T4-16GB");

  CHECK(to_string(parsed("a100:40")) == "A100-40GB");
  CHECK(to_string(parsed("A100:40:2")) == "A100-40GB:2");
  CHECK(to_string(parsed("a100:40gb:2")) == "A100-40GB:2");
  CHECK(to_string(parsed("A100:2")) == "A100:2");
  CHECK(to_string(parsed("any:1")) == "any");
  CHECK(to_string(parsed("T4:1")) == "T4");
  CHECK(to_string(parsed(" h100 : 8 ")) == "H100:8");

  for (const char* canonical : {"any", "any:2", "T4", "A10G:4", "A100-40GB", "A100-80GB:2", "A100:8", "H200", "L40S:3"}) {
    CAPTURE(canonical);
    CHECK(to_string(parsed(canonical)) == canonical);
  }
}

TEST_CASE("to_string writes slots with the memory of multi-variant types") {
  CHECK(to_string(GpuSlot{"A100", 40, 1}) == "A100-40GB");
  CHECK(to_string(GpuSlot{"A100", 40, 2}) == "A100-40GB:2");
  CHECK(to_string(GpuSlot{"T4", 16, 4}) == "T4:4");
  CHECK(to_string(GpuSlot{"T4", 16, 1}) == "T4");
  CHECK(to_string(GpuSlot{"H100", 80, 1}, true) == "H100-80GB:1");
  CHECK(to_string(GpuSlot{"L4", 24, 1}, true) == "L4:1");
  CHECK(to_string(GpuSlot{"A100", 80, 1}, true) == "A100-80GB:1");

  Catalog custom = Catalog::builtin();
  custom.put(GpuType{"H100", {80, 94}, 80, 8, {}});
  custom.put(GpuType{"RTX4090", {24}, 24, 2, {}});
  CHECK(to_string(GpuSlot{"H100", 94, 2}, custom) == "H100-94GB:2");
  CHECK(to_string(GpuSlot{"RTX4090", 24, 2}, custom) == "RTX4090:2");
  CHECK(to_string(GpuSlot{"A100", 20, 1}, custom, true) == "A100-20GB:1");
  // Types the catalog lacks show their memory.
  CHECK(to_string(GpuSlot{"Mystery", 12, 1}) == "Mystery-12GB");
}

TEST_CASE("offers round-trip through to_string for every type, variant and count") {
  const Catalog& catalog = builtin();
  int checked = 0;
  for (const GpuType& type : catalog.types()) {
    for (int memory : type.memory_gb) {
      for (int count = 1; count <= type.max_count; ++count) {
        const GpuSlot slot{type.name, memory, count};
        for (bool always_count : {false, true}) {
          const std::string text = to_string(slot, always_count);
          CAPTURE(text);
          CHECK(offer(text) == slot);
          ++checked;
        }
        // A choice naming that variant explicitly round-trips too and is satisfied by the slot.
        const GpuChoice choice = concrete(type.name, memory, count);
        CHECK(parsed(to_string(choice)) == choice);
        CHECK(satisfies(slot, choice, catalog));
      }
    }
  }
  // T4 A10G L4 A100(3 variants, 16) L40S H100(2) H200 V100(2) A10 A40 L40 A6000 RTX6000Ada RTXPRO6000 GH200(2, 4) B200
  CHECK(checked == 2 * (8 + 8 + 8 + 3 * 16 + 8 + 2 * 8 + 8 + 2 * 8 + 8 + 8 + 8 + 8 + 8 + 8 + 2 * 4 + 8));
}

TEST_CASE("custom catalogs drive parsing") {
  Catalog custom = Catalog::builtin();
  custom.put(GpuType{"RTX-4090", {24}, 24, 2, {}});
  custom.put(GpuType{"MI300X", {192}, 192, 8, {}});
  CHECK(parsed("rtx-4090:2", custom) == concrete("RTX-4090", std::nullopt, 2));
  CHECK(parsed("RTX-4090-24GB", custom) == concrete("RTX-4090", 24));
  CHECK(parsed("mi300x:192:4", custom) == concrete("MI300X", 192, 4));
  CHECK(choice_error("RTX-4090:3", custom) ==
        "RTX-4090 supports at most 2 GPUs per function (asked 3)");
  CHECK(choice_error("X", custom) == unknown("X", kKnown + ", RTX-4090, MI300X"));
  CHECK(choice_error("rtx_4090", custom) == "unknown GPU type 'rtx_4090' (did you mean 'RTX-4090'?)");

  custom.put(GpuType{"Solo", {8}, 8, 1, {}});
  CHECK(choice_error("Solo:2", custom) == "Solo supports at most 1 GPU per function (asked 2)");
  CHECK(choice_error("Solo-8GB:2", custom) == "Solo supports at most 1 GPU per function (asked 2)");
  CHECK(parsed("solo:8", custom) == concrete("Solo", 8));
}

TEST_CASE("junk never crashes the parsers and accepted specs round-trip") {
  const Catalog& catalog = builtin();
  constexpr char kAlphabet[] = "aAnyTt4A10GgBb2-:, 0123456789HhLlSs\t\x00\xff-:";
  const std::string alphabet(kAlphabet, sizeof(kAlphabet) - 1);  // keeps the NUL byte
  std::mt19937 rng(20261124);
  std::uniform_int_distribution<std::size_t> length(0, 16);
  std::uniform_int_distribution<std::size_t> pick(0, alphabet.size() - 1);
  const std::vector<std::string> seeds = {"A100", "any", "T4", "A10G", "H100", "A100-80GB", "A100:40"};
  std::uniform_int_distribution<std::size_t> seed_pick(0, seeds.size() - 1);
  int accepted = 0;
  int rejected = 0;
  for (int i = 0; i < 20000; ++i) {
    std::string text = (i % 2 == 0) ? seeds[seed_pick(rng)] : std::string();
    const std::size_t extra = length(rng);
    for (std::size_t j = 0; j < extra; ++j) text += alphabet[pick(rng)];
    CAPTURE(text);
    const auto choice = parse_gpu_choice(text, catalog);
    if (choice) {
      ++accepted;
      const auto again = parse_gpu_choice(to_string(*choice), catalog);
      REQUIRE(again.ok());
      CHECK(*again == *choice);
    } else {
      ++rejected;
      CHECK(choice.error().code == ExitCode::usage);
      CHECK_FALSE(choice.error().message.empty());
    }
    const auto request = parse_gpu_request(text, catalog);
    if (!request) CHECK(request.error().code == ExitCode::usage);
    const auto slot = parse_offer(text, catalog);
    if (!slot) CHECK(slot.error().code == ExitCode::usage);
  }
  CHECK(accepted > 0);
  CHECK(rejected > 0);

  for (const std::string& text : std::vector<std::string>{":", "::", ":::", "-", "--", "-GB", "GB", ":GB", "A100--40GB", "A100-40GB-80GB", "any::",
                                 ",", ",,", "-1", std::string("A100\0:2", 7), "\xff\xfe", "A100:4294967296",
                                 "A100:-", "A100:-GB", "A100:--1"}) {
    CAPTURE(text);
    const auto choice = parse_gpu_choice(text, catalog);
    REQUIRE_FALSE(choice.ok());
    CHECK(choice.error().code == ExitCode::usage);
  }
}
