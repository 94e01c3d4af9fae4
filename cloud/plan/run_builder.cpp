#include "cloud/plan/run_builder.hpp"

#include <fmt/format.h>

#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::cloud {

std::string describe_gpu_request(const gpu::GpuRequest& request, const gpu::Catalog& catalog) {
  std::vector<std::string> parts;
  for (const auto& a : request.alternatives) {
    if (a.max_count || a.memory_range || (a.any && (a.memory_gb || a.max_memory_gb))) {
      parts.push_back(gpu::to_string(a));  // a range: "H100:1..2", "24GB", "A100:40GB+"
      continue;
    }
    if (a.any) {
      parts.push_back(fmt::format("{}x any GPU", a.count));
      continue;
    }
    parts.push_back(fmt::format("{}x {}", a.count, gpu::to_string(gpu::GpuSlot{a.type, gpu::effective_memory_gb(a, catalog), 1}, catalog)));
  }
  return util::join(parts, " or ");
}

util::Result<RunSpec> build_run_spec(const manifest::Manifest& manifest, const manifest::Function& function,
                                     const PlacedFunction& placed, const gpu::GpuRequest& request, const Config& config,
                                     const RunOverrides& overrides) {
  RunSpec spec;
  spec.app = manifest.app;
  spec.function = function.name;
  spec.cloud = placed.cloud;
  spec.backend = placed.backend;
  if (!function.argv.empty()) {
    spec.argv = function.argv;
    spec.argv.insert(spec.argv.end(), overrides.args.begin(), overrides.args.end());
  } else {
    std::string command = function.shell;
    for (const auto& a : overrides.args) command += " " + util::shell_quote(a);
    spec.argv = {"/bin/sh", "-c", command};
  }
  spec.cwd = manifest.dir;
  spec.env = function.env;
  for (const auto& [k, v] : overrides.env) {
    bool replaced = false;
    for (auto& [ek, ev] : spec.env) {
      if (ek == k) {
        ev = v;
        replaced = true;
      }
    }
    if (!replaced) spec.env.emplace_back(k, v);
  }
  spec.secrets = function.secrets;
  for (const auto& mount : function.volumes) spec.mounts.push_back({"", mount.path, mount.volume});
  for (const auto& alternative : request.alternatives) {
    for (const auto& concrete : gpu::expand(alternative, config.catalog)) {
      spec.gpu_alternatives.push_back({concrete.type, gpu::effective_memory_gb(concrete, config.catalog), concrete.count,
                                       gpu::max_memory_gb(concrete, config.catalog)});
    }
    if (alternative.any) {  // then any device type with the memory asked, largest count first
      for (int count : gpu::counts_descending(alternative)) {
        spec.gpu_alternatives.push_back({"", alternative.memory_gb.value_or(0), count, alternative.max_memory_gb.value_or(0)});
      }
    }
  }
  spec.gpu_text = describe_gpu_request(request, config.catalog);
  spec.timeout = function.timeout;
  spec.max_retries = function.retries.max_retries;
  spec.backoff = function.retries.backoff;
  spec.initial_delay = function.retries.initial_delay;
  spec.max_delay = function.retries.max_delay;
  spec.cpu = function.cpu;
  spec.memory_bytes = function.memory_bytes;
  if (function.image) {
    const auto* image = manifest.find_image(*function.image);
    if (image == nullptr) {
      return util::make_error(util::ExitCode::usage, fmt::format("function '{}': image '{}' is not defined", function.name, *function.image));
    }
    spec.image = image->name;
  }
  if (const char* grace = std::getenv("GPURUN_KILL_GRACE")) {
    if (auto d = util::parse_duration(grace)) spec.kill_grace = *d;
  }
  return spec;
}

}  // namespace gpurun::cloud
