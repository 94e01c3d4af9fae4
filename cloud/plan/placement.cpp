#include "cloud/plan/placement.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <unordered_map>

#include "util/strings.hpp"

namespace gpurun::cloud {

std::vector<gpu::GpuSlot> cloud_offers(const CloudConfig& cloud, const PlanInputs& inputs) {
  if (cloud.probe_gpus) return inputs.local_offers;
  if (!cloud.discover_gpus) return cloud.gpus;
  // Declared GPUs (e.g. ssh hosts with `gpus:`) and those the backend found (PlanInputs).
  std::vector<gpu::GpuSlot> offers = cloud.gpus;
  const auto found = inputs.discovered_offers.find(cloud.name);
  if (found == inputs.discovered_offers.end()) return offers;
  for (const auto& slot : found->second) {
    auto same = std::find_if(offers.begin(), offers.end(),
                             [&](const gpu::GpuSlot& o) { return o.type == slot.type && o.memory_gb == slot.memory_gb; });
    if (same == offers.end()) {
      offers.push_back(slot);
    } else {
      same->count = std::max(same->count, slot.count);
    }
  }
  return offers;
}

std::string describe_offers(const std::vector<gpu::GpuSlot>& offers) {
  if (offers.empty()) return "no GPUs";
  std::vector<std::string> parts;
  for (const auto& o : offers) parts.push_back(gpu::to_string(o, true));
  return util::join(parts, ", ");
}

namespace {

struct CloudOffers {
  const CloudConfig* cloud;
  std::vector<gpu::GpuSlot> offers;
};

// The best offer of one cloud for a concrete choice: the exact memory variant first, then the
// smallest larger one.
std::optional<gpu::GpuSlot> best_offer(const CloudOffers& c, const gpu::GpuChoice& choice, const gpu::Catalog& catalog) {
  std::optional<gpu::GpuSlot> best;
  const int wanted = gpu::effective_memory_gb(choice, catalog);
  for (const auto& offer : c.offers) {
    if (!gpu::satisfies(offer, choice, catalog)) continue;
    if (!best || std::abs(offer.memory_gb - wanted) < std::abs(best->memory_gb - wanted)) best = offer;
  }
  if (!best) return std::nullopt;
  return gpu::GpuSlot{best->type, best->memory_gb, choice.count};
}

std::string describe_request(const manifest::Function& f, const PlanInputs& inputs) {
  if (inputs.gpu_override_text) return *inputs.gpu_override_text;
  if (f.gpu_as_written) return *f.gpu_as_written;
  std::vector<std::string> parts;
  for (const auto& a : f.gpu.alternatives) parts.push_back(gpu::to_string(a));
  return parts.size() == 1 ? parts.front() : "[" + util::join(parts, ", ") + "]";
}

// --cloud must name a configured cloud.
util::Result<void> check_cloud_override(const Config& config, const PlanInputs& inputs) {
  if (!inputs.cloud_override || config.find_cloud(*inputs.cloud_override) != nullptr) return {};
  const auto suggestion = util::did_you_mean(*inputs.cloud_override, config.cloud_names());
  return util::make_error(
      util::ExitCode::usage,
      suggestion ? fmt::format("--cloud: unknown cloud '{}' (did you mean '{}'?)", *inputs.cloud_override, *suggestion)
                 : fmt::format("--cloud: unknown cloud '{}'; configured clouds: {}", *inputs.cloud_override,
                               util::join(config.cloud_names(), ", ")));
}

bool selected(const manifest::Function& f, const PlanInputs& inputs) {
  return inputs.only_functions.empty() ||
         std::find(inputs.only_functions.begin(), inputs.only_functions.end(), f.name) != inputs.only_functions.end();
}

void place_on(PlacedFunction& placed, const CloudConfig& cloud, const gpu::GpuSlot& slot) {
  placed.cloud = cloud.name;
  placed.backend = cloud.backend;
  placed.gpu = slot;
}

// On this machine `any` (and a memory-first spec) also means whatever GPU it has, after the
// catalog's types: the largest count in range, memory in bounds.
bool place_any_local(PlacedFunction& placed, const gpu::GpuChoice& alternative,
                     const std::vector<const CloudOffers*>& candidates) {
  for (const auto* c : candidates) {
    if (!c->cloud->probe_gpus) continue;
    for (const auto& offer : c->offers) {
      if (auto slot = gpu::take_any(offer, alternative)) {
        place_on(placed, *c->cloud, *slot);
        return true;
      }
    }
  }
  return false;
}

// The first alternative (in order) that a candidate cloud (in placement order) offers; false
// when none does.
bool place_gpu(PlacedFunction& placed, const gpu::GpuRequest& request, const std::vector<const CloudOffers*>& candidates,
               const gpu::Catalog& catalog) {
  for (const auto& alternative : request.alternatives) {
    for (const auto& concrete : gpu::expand(alternative, catalog)) {
      for (const auto* c : candidates) {
        if (auto slot = best_offer(*c, concrete, catalog)) {
          place_on(placed, *c->cloud, *slot);
          return true;
        }
      }
    }
    if (alternative.any && place_any_local(placed, alternative, candidates)) return true;
  }
  return false;
}

// Why no candidate cloud can run `f`: what each offers.
std::string unschedulable_reason(const manifest::Function& f, const PlacedFunction& placed,
                                 const std::vector<const CloudOffers*>& candidates, const std::optional<std::string>& pin,
                                 const PlanInputs& inputs) {
  std::vector<std::string> offered;
  for (const auto* c : candidates) {
    std::string what = describe_offers(c->offers);
    if (c->cloud->probe_gpus && !inputs.local_offers_note.empty()) what += " (" + inputs.local_offers_note + ")";
    if (auto note = inputs.discovered_notes.find(c->cloud->name); c->cloud->discover_gpus && note != inputs.discovered_notes.end()) {
      what += " (" + note->second + ")";
    }
    offered.push_back(fmt::format("{} offers {}", c->cloud->name, what));
  }
  const std::string where = pin ? fmt::format("cloud '{}' cannot run it", *pin) : "no cloud can run it";
  return fmt::format("function '{}' asks for GPU {}; {}: {}", f.name, *placed.gpu_requested, where, util::join(offered, "; "));
}

// Places one function: CPU-only ones on their pinned or the default cloud, GPU ones on the first
// cloud that offers an alternative. Returns why it cannot be placed, or nullopt.
std::optional<std::string> place_function(const manifest::Function& f, const Config& config, const PlanInputs& inputs,
                                          const std::vector<CloudOffers>& order, PlacedFunction& placed) {
  placed.name = f.name;
  placed.image = f.image;
  for (const auto& m : f.volumes) placed.volumes.push_back(m.volume);
  const gpu::GpuRequest& request = inputs.gpu_override ? *inputs.gpu_override : f.gpu;
  const std::optional<std::string> pin = inputs.cloud_override ? inputs.cloud_override : f.cloud;
  if (request.cpu_only()) {
    const std::string target = pin ? *pin : config.default_cloud;
    const auto* cloud = config.find_cloud(target);
    placed.cloud = target;
    placed.backend = cloud != nullptr ? cloud->backend : CloudConfig{}.backend;
    return std::nullopt;
  }
  std::vector<const CloudOffers*> candidates;
  for (const auto& c : order) {
    if (!pin || c.cloud->name == *pin) candidates.push_back(&c);
  }
  placed.gpu_requested = describe_request(f, inputs);
  if (place_gpu(placed, request, candidates, config.catalog)) return std::nullopt;
  return unschedulable_reason(f, placed, candidates, pin, inputs);
}

// Appends `placed` on `cloud` with `slot` unless that cloud and slot are already there.
void add_candidate(std::vector<PlacedFunction>& out, const PlacedFunction& base, const CloudConfig& cloud, const gpu::GpuSlot& slot) {
  PlacedFunction placed = base;
  place_on(placed, cloud, slot);
  const auto same = [&](const PlacedFunction& p) { return p.cloud == placed.cloud && p.gpu && *p.gpu == *placed.gpu; };
  if (std::none_of(out.begin(), out.end(), same)) out.push_back(std::move(placed));
}

// Whether `cloud` holds every volume of `f` that already exists somewhere.
bool reaches_volumes(const manifest::Function& f, const CloudConfig& cloud, const PlanInputs& inputs) {
  return std::all_of(f.volumes.begin(), f.volumes.end(), [&](const auto& mount) {
    const auto it = inputs.existing_volumes.find(mount.volume);
    return it == inputs.existing_volumes.end() || it->second == cloud.name;
  });
}

util::Error unschedulable_error(const std::vector<std::string>& reasons) {
  std::string message = util::join(reasons, "\n");
  message += reasons.size() == 1 ? "; " : "\n";
  message += "ask for a GPU a cloud offers, or add it to a cloud's 'gpus:' in the config";
  return util::make_error(util::ExitCode::unschedulable, message);
}

// Where a new volume goes: where the GPU functions that mount it run (most wins, ties by config
// order), else the default cloud.
std::string new_volume_cloud(const std::string& volume, const std::vector<PlacedFunction>& functions, const Config& config,
                             std::string& reason) {
  std::unordered_map<std::string, std::size_t> config_index;
  for (std::size_t i = 0; i < config.clouds.size(); ++i) config_index[config.clouds[i].name] = i;
  std::map<std::string, int> votes;
  for (const auto& pf : functions) {
    if (pf.gpu && std::find(pf.volumes.begin(), pf.volumes.end(), volume) != pf.volumes.end()) ++votes[pf.cloud];
  }
  std::string chosen = config.default_cloud;
  int best = 0;
  std::size_t best_index = 0;
  for (const auto& [cloud, count] : votes) {
    const std::size_t index = config_index.count(cloud) != 0 ? config_index.at(cloud) : config.clouds.size();
    if (count > best || (count == best && index < best_index)) {
      best = count;
      best_index = index;
      chosen = cloud;
    }
  }
  reason = best == 0 ? "the default cloud: no GPU function mounts it"
                     : fmt::format("{} GPU function{} that mount{} it run{} there", best, best == 1 ? "" : "s",
                                   best == 1 ? "s" : "", best == 1 ? "s" : "");
  return chosen;
}

// Volumes: a volume created earlier stays where it is; a new one goes by new_volume_cloud.
std::vector<PlacedVolume> place_volumes(const manifest::Manifest& manifest, const Config& config,
                                        const PlanInputs& inputs, const std::vector<PlacedFunction>& functions) {
  std::vector<PlacedVolume> volumes;
  for (const auto& v : manifest.volumes) {
    PlacedVolume placed;
    placed.name = v.name;
    if (auto it = inputs.existing_volumes.find(v.name); it != inputs.existing_volumes.end()) {
      placed.cloud = it->second;
      placed.existing = true;
      placed.reason = "created there earlier; a volume stays where it was created";
    } else {
      placed.cloud = new_volume_cloud(v.name, functions, config, placed.reason);
    }
    volumes.push_back(std::move(placed));
  }
  return volumes;
}

// A warning for each function that mounts a volume living in another cloud.
void warn_about_distant_volumes(Plan& plan) {
  for (const auto& pf : plan.functions) {
    for (const auto& volume : pf.volumes) {
      for (const auto& pv : plan.volumes) {
        if (pv.name == volume && pv.cloud != pf.cloud) {
          plan.warnings.push_back({pf.name, fmt::format("{} mounts volume '{}' which lives in {}; add 'cloud: {}' to run next to it",
                                                        pf.name, volume, pv.cloud, pv.cloud)});
        }
      }
    }
  }
}

// Each image goes to the clouds whose functions use it; upload_to lists those that lack it.
std::vector<PlacedImage> place_images(const manifest::Manifest& manifest, const Config& config, const PlanInputs& inputs,
                                      const std::vector<PlacedFunction>& functions) {
  std::vector<PlacedImage> images;
  for (const auto& image : manifest.images) {
    PlacedImage placed;
    placed.name = image.name;
    for (const auto& c : config.clouds) {
      const bool used = std::any_of(functions.begin(), functions.end(),
                                    [&](const PlacedFunction& pf) { return pf.image == image.name && pf.cloud == c.name; });
      if (!used) continue;
      placed.clouds.push_back(c.name);
      const auto present = inputs.images_present.find(image.name);
      if (present == inputs.images_present.end() || present->second.count(c.name) == 0) placed.upload_to.push_back(c.name);
    }
    images.push_back(std::move(placed));
  }
  return images;
}

}  // namespace

std::vector<PlacedFunction> placement_candidates(const manifest::Function& f, const Config& config, const PlanInputs& inputs) {
  const gpu::GpuRequest& request = inputs.gpu_override ? *inputs.gpu_override : f.gpu;
  std::vector<PlacedFunction> out;
  if (request.cpu_only()) return out;
  const std::optional<std::string> pin = inputs.cloud_override ? inputs.cloud_override : f.cloud;
  std::vector<CloudOffers> order;
  for (const auto* c : config.placement_order()) {
    if (pin ? c->name == *pin : reaches_volumes(f, *c, inputs)) order.push_back({c, cloud_offers(*c, inputs)});
  }
  PlacedFunction base;
  base.name = f.name;
  base.image = f.image;
  for (const auto& m : f.volumes) base.volumes.push_back(m.volume);
  base.gpu_requested = describe_request(f, inputs);
  for (const auto& alternative : request.alternatives) {
    for (const auto& concrete : gpu::expand(alternative, config.catalog)) {
      for (const auto& c : order) {
        if (auto slot = best_offer(c, concrete, config.catalog)) add_candidate(out, base, *c.cloud, *slot);
      }
    }
    if (!alternative.any) continue;
    for (const auto& c : order) {
      if (!c.cloud->probe_gpus) continue;
      for (const auto& offer : c.offers) {
        if (auto slot = gpu::take_any(offer, alternative)) add_candidate(out, base, *c.cloud, *slot);
      }
    }
  }
  return out;
}

util::Result<Plan> make_plan(const manifest::Manifest& manifest, const Config& config, const PlanInputs& inputs) {
  if (auto checked = check_cloud_override(config, inputs); !checked) return checked.error();
  Plan plan;
  plan.functions.reserve(manifest.functions.size());
  plan.app = manifest.app;
  std::vector<CloudOffers> order;
  for (const auto* c : config.placement_order()) order.push_back({c, cloud_offers(*c, inputs)});

  std::vector<std::string> unschedulable;
  for (const auto& f : manifest.functions) {
    if (!selected(f, inputs)) continue;
    PlacedFunction placed;
    if (auto why = place_function(f, config, inputs, order, placed)) {
      unschedulable.push_back(std::move(*why));
      continue;
    }
    plan.functions.push_back(std::move(placed));
  }
  if (!unschedulable.empty()) return unschedulable_error(unschedulable);
  plan.volumes = place_volumes(manifest, config, inputs, plan.functions);
  warn_about_distant_volumes(plan);
  plan.images = place_images(manifest, config, inputs, plan.functions);
  return plan;
}

}  // namespace gpurun::cloud
