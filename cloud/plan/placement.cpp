#include "cloud/plan/placement.hpp"

#include <algorithm>
#include <fmt/format.h>
#include <unordered_map>

#include "util/strings.hpp"

namespace gpurun::cloud {

std::vector<gpu::GpuSlot> cloud_offers(const CloudConfig& cloud, const PlanInputs& inputs) {
  if (cloud.backend == "local" && cloud.name == "local") return inputs.local_offers;
  return cloud.gpus;
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

}  // namespace

util::Result<Plan> make_plan(const manifest::Manifest& manifest, const Config& config, const PlanInputs& inputs) {
  Plan plan;
  plan.functions.reserve(manifest.functions.size());
  plan.app = manifest.app;
  const auto& catalog = config.catalog;

  if (inputs.cloud_override && config.find_cloud(*inputs.cloud_override) == nullptr) {
    const auto suggestion = util::did_you_mean(*inputs.cloud_override, config.cloud_names());
    return util::make_error(
        util::ExitCode::usage,
        suggestion ? fmt::format("--cloud: unknown cloud '{}' (did you mean '{}'?)", *inputs.cloud_override, *suggestion)
                   : fmt::format("--cloud: unknown cloud '{}'; configured clouds: {}", *inputs.cloud_override,
                                 util::join(config.cloud_names(), ", ")));
  }

  std::vector<CloudOffers> order;
  for (const auto* c : config.placement_order()) order.push_back({c, cloud_offers(*c, inputs)});
  std::unordered_map<std::string, std::size_t> config_index;
  for (std::size_t i = 0; i < config.clouds.size(); ++i) config_index[config.clouds[i].name] = i;

  std::vector<std::string> unschedulable;
  for (const auto& f : manifest.functions) {
    if (!inputs.only_functions.empty() &&
        std::find(inputs.only_functions.begin(), inputs.only_functions.end(), f.name) == inputs.only_functions.end()) {
      continue;
    }
    PlacedFunction placed;
    placed.name = f.name;
    placed.image = f.image;
    for (const auto& m : f.volumes) placed.volumes.push_back(m.volume);
    const gpu::GpuRequest& request = inputs.gpu_override ? *inputs.gpu_override : f.gpu;
    const std::optional<std::string> pin = inputs.cloud_override ? inputs.cloud_override : f.cloud;

    std::vector<const CloudOffers*> candidates;
    for (const auto& c : order) {
      if (!pin || c.cloud->name == *pin) candidates.push_back(&c);
    }
    if (request.cpu_only()) {
      const std::string target = pin ? *pin : config.default_cloud;
      const auto* cloud = config.find_cloud(target);
      placed.cloud = target;
      placed.backend = cloud != nullptr ? cloud->backend : "local";
      plan.functions.push_back(std::move(placed));
      continue;
    }
    placed.gpu_requested = describe_request(f, inputs);
    bool found = false;
    for (const auto& alternative : request.alternatives) {
      for (const auto& concrete : gpu::expand(alternative, catalog)) {
        for (const auto* c : candidates) {
          if (auto slot = best_offer(*c, concrete, catalog)) {
            placed.cloud = c->cloud->name;
            placed.backend = c->cloud->backend;
            placed.gpu = *slot;
            found = true;
            break;
          }
        }
        if (found) break;
      }
      if (!found && alternative.any) {
        // On this machine `any` (and a memory-first spec) also means whatever GPU it has, after the
        // catalog's types: the largest count in range, memory in bounds.
        for (const auto* c : candidates) {
          if (c->cloud->name != "local") continue;
          for (const auto& offer : c->offers) {
            if (auto slot = gpu::take_any(offer, alternative)) {
              placed.cloud = c->cloud->name;
              placed.backend = c->cloud->backend;
              placed.gpu = *slot;
              found = true;
              break;
            }
          }
        }
      }
      if (found) break;
    }
    if (!found) {
      std::vector<std::string> offered;
      for (const auto* c : candidates) {
        std::string what = describe_offers(c->offers);
        if (c->cloud->name == "local" && !inputs.local_offers_note.empty()) what += " (" + inputs.local_offers_note + ")";
        offered.push_back(fmt::format("{} offers {}", c->cloud->name, what));
      }
      const std::string where = pin ? fmt::format("cloud '{}' cannot run it", *pin) : "no cloud can run it";
      unschedulable.push_back(fmt::format("function '{}' asks for GPU {}; {}: {}", f.name, *placed.gpu_requested, where,
                                          util::join(offered, "; ")));
      continue;
    }
    plan.functions.push_back(std::move(placed));
  }
  if (!unschedulable.empty()) {
    std::string message = util::join(unschedulable, "\n");
    message += unschedulable.size() == 1 ? "; " : "\n";
    message += "ask for a GPU a cloud offers, or add it to a cloud's 'gpus:' in the config";
    return util::make_error(util::ExitCode::unschedulable, message);
  }

  // Volumes: where the GPU functions that mount them run (most wins, ties by config order),
  // else the default cloud; a volume created earlier stays where it is.
  for (const auto& v : manifest.volumes) {
    PlacedVolume placed;
    placed.name = v.name;
    if (auto it = inputs.existing_volumes.find(v.name); it != inputs.existing_volumes.end()) {
      placed.cloud = it->second;
      placed.existing = true;
    } else {
      std::map<std::string, int> votes;
      for (const auto& pf : plan.functions) {
        if (pf.gpu && std::find(pf.volumes.begin(), pf.volumes.end(), v.name) != pf.volumes.end()) ++votes[pf.cloud];
      }
      placed.cloud = config.default_cloud;
      int best = 0;
      std::size_t best_index = 0;
      for (const auto& [cloud, count] : votes) {
        const std::size_t index = config_index.count(cloud) != 0 ? config_index.at(cloud) : config.clouds.size();
        if (count > best || (count == best && index < best_index)) {
          best = count;
          best_index = index;
          placed.cloud = cloud;
        }
      }
    }
    plan.volumes.push_back(std::move(placed));
  }
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

  for (const auto& image : manifest.images) {
    PlacedImage placed;
    placed.name = image.name;
    for (const auto& c : config.clouds) {
      const bool used = std::any_of(plan.functions.begin(), plan.functions.end(),
                                    [&](const PlacedFunction& pf) { return pf.image == image.name && pf.cloud == c.name; });
      if (!used) continue;
      placed.clouds.push_back(c.name);
      const auto present = inputs.images_present.find(image.name);
      if (present == inputs.images_present.end() || present->second.count(c.name) == 0) placed.upload_to.push_back(c.name);
    }
    plan.images.push_back(std::move(placed));
  }
  return plan;
}

}  // namespace gpurun::cloud
