// libFuzzer target: the GPU grammar (--gpu requests, single choices, cloud offers,
// GPURUN_LOCAL_GPUS, nvidia-smi CSV, device names). scripts/fuzz gpu_spec SECONDS.
// Invariants: errors are usage errors with a message; what parses prints (to_string) and parses
// back to the same value; parsed values are in range.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "cloud/plan/local_inventory.hpp"
#include "gpu/catalog.hpp"
#include "gpu/discovery.hpp"
#include "gpu/spec.hpp"
#include "fuzz_fail.hpp"

namespace {

using gpurun::fuzz::fail;
namespace gpu = gpurun::gpu;

template <typename T>
void check_error(const gpurun::util::Result<T>& result, const char* what) {
  if (!result.ok() && (result.error().code != gpurun::util::ExitCode::usage || result.error().message.empty())) fail(what);
}

void check_choice(const gpu::GpuChoice& choice, const gpu::Catalog& catalog) {
  if (choice.count < 1 || (choice.memory_gb && *choice.memory_gb <= 0)) fail("choice: count or memory out of range");
  if (choice.any != choice.type.empty()) fail("choice: any <=> no type");
  if (!choice.any && catalog.find(choice.type) == nullptr) fail("choice: a type outside the catalog");
  const auto back = gpu::parse_gpu_choice(gpu::to_string(choice), catalog);
  if (!back.ok() || !(*back == choice)) fail("choice: parse(to_string(choice)) != choice");
  for (const auto& concrete : gpu::expand(choice, catalog)) {
    if (concrete.any) fail("expand: left an 'any'");
    (void)gpu::effective_memory_gb(concrete, catalog);
  }
}

void check_slot(const gpu::GpuSlot& slot, const gpu::Catalog& catalog) {
  if (slot.count < 1 || slot.memory_gb <= 0 || catalog.find(slot.type) == nullptr) fail("offer: out of range");
  const auto back = gpu::parse_offer(gpu::to_string(slot, catalog, true), catalog);
  if (!back.ok() || !(*back == slot)) fail("offer: parse(to_string(offer)) != offer");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const gpu::Catalog catalog = gpu::Catalog::builtin();
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  const auto choice = gpu::parse_gpu_choice(text, catalog);
  check_error(choice, "parse_gpu_choice: a bad error");
  if (choice.ok()) check_choice(*choice, catalog);

  const auto request = gpu::parse_gpu_request(text, catalog);
  check_error(request, "parse_gpu_request: a bad error");
  if (request.ok() && !request->cpu_only()) {
    // Each alternative prints to text that reads back as itself. (Joined with ',' they would not:
    // a count after a comma list applies to every bare entry, as in dstack: "A100,T4:8".)
    for (const auto& alternative : request->alternatives) {
      check_choice(alternative, catalog);
      const auto back = gpu::parse_gpu_request(gpu::to_string(alternative), catalog);
      if (!back.ok() || back->alternatives.size() != 1 || back->alternatives.front() != alternative) {
        fail("request: parse(print(alternative)) != alternative");
      }
    }
  }

  const auto offer = gpu::parse_offer(text, catalog);
  check_error(offer, "parse_offer: a bad error");
  if (offer.ok()) {
    check_slot(*offer, catalog);
    if (choice.ok()) (void)gpu::satisfies(*offer, *choice, catalog);
  }

  const auto declared = gpurun::cloud::parse_declared_gpus(text, catalog);
  check_error(declared, "GPURUN_LOCAL_GPUS: a bad error");
  if (declared.ok()) {
    for (const auto& slot : *declared) check_slot(slot, catalog);
  }

  auto devices = gpu::parse_nvidia_smi_csv(text);
  if (devices.ok()) {
    (void)gpu::map_devices(*devices);
    for (const auto& d : *devices) {
      if (d.type && (d.memory_gb <= 0 || catalog.find(*d.type) == nullptr)) fail("nvidia-smi: a mapped device out of range");
    }
  }
  if (const auto mapped = gpu::map_device_name(text, size * 1'000'000'000ull)) {
    if (mapped->second <= 0 || catalog.find(mapped->first) == nullptr) fail("map_device_name: out of range");
  }
  return 0;
}
