#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands/table.hpp"
#include "cloud/backend/registry.hpp"
#include "cloud/images/image_store.hpp"
#include "commands/common.hpp"
#include "util/strings.hpp"

namespace gpurun::commands {

namespace {

struct PlanOptions {
  ManifestArgs args;
  std::string cloud;
  bool json = false;
};

// For each function with more than one way to run: the plan shows the first; run time takes the
// first that can start then.
void note_run_time_choices(Context& ctx, const manifest::Manifest& manifest, const cloud::Config& config,
                           const cloud::PlanInputs& inputs) {
  for (const auto& function : manifest.functions) {
    const auto candidates = cloud::placement_candidates(function, config, inputs);
    if (candidates.size() < 2) continue;
    std::vector<std::string> ways;
    for (const auto& c : candidates) ways.push_back(gpu::to_string(*c.gpu, true) + " on " + c.cloud);
    ctx.err << fmt::format("gpurun: note: {} shows its first choice; at run time it takes the first of {} that can start then\n",
                           function.name, util::join(ways, ", "));
  }
}

// Adds what each cloud's backend says to the plan: where within the cloud each function can run
// (e.g. which hosts) and where its volumes live. A backend that cannot be made adds nothing.
void add_backend_notes(const cloud::Config& config, cloud::Plan& plan, const std::vector<cloud::Volume>& volumes) {
  std::map<std::string, std::unique_ptr<cloud::Backend>> backends;
  auto backend_of = [&](const std::string& name) -> const cloud::Backend* {
    auto it = backends.find(name);
    if (it == backends.end()) {
      std::unique_ptr<cloud::Backend> made;
      if (const auto* c = config.find_cloud(name); c != nullptr) {
        if (auto backend = cloud::make_backend(c->backend, c, &config)) made = std::move(*backend);
      }
      it = backends.emplace(name, std::move(made)).first;
    }
    return it->second.get();
  };
  for (auto& f : plan.functions) {
    if (const auto* backend = backend_of(f.cloud)) f.note = backend->plan_note(f, volumes);
  }
  for (auto& v : plan.volumes) {
    const auto* backend = backend_of(v.cloud);
    if (backend == nullptr) continue;
    std::optional<cloud::Volume> existing;
    for (const auto& recorded : volumes) {
      if (recorded.name == v.name) existing = recorded;
    }
    const std::string note = backend->volume_note(v.name, existing);
    if (!note.empty()) v.reason += (v.reason.empty() ? "" : "; ") + note;
  }
}

int run_plan(Context& ctx, const PlanOptions& options) {
  int exit_code = 0;
  auto loaded = load_config_and_manifest(ctx, options.args, exit_code);
  if (!loaded) return exit_code;
  const cloud::Config* config = &loaded->config;
  const manifest::Manifest* manifest = &loaded->manifest;
  auto inputs = plan_inputs(ctx, *config, exit_code);
  if (!inputs) return exit_code;
  if (!options.cloud.empty()) inputs->cloud_override = options.cloud;
  std::optional<cloud::StateStore> store;
  if (!manifest->volumes.empty() || !manifest->images.empty()) {
    auto opened = open_store();
    if (!opened) return report(ctx, opened.error());
    store.emplace(std::move(opened).value());
  }
  std::vector<cloud::Volume> volumes;
  if (!manifest->volumes.empty()) {
    // A volume created earlier (by deploy or a run) stays where it is: the plan says so.
    auto listed = store->list_volumes(manifest->app);
    if (!listed) return report(ctx, listed.error());
    volumes = std::move(*listed);
    for (const auto& v : volumes) inputs->existing_volumes[v.name] = v.cloud;
  }
  if (!manifest->images.empty()) {
    // Which clouds already hold each image as it is now: build it (cached) to learn its digest.
    std::map<std::string, std::string> digests;
    for (const auto& image : manifest->images) {
      auto built = cloud::build_image(*manifest, image, cloud::image_store_dir(store->dir()));
      if (built) {
        digests[image.name] = built->digest;
      } else {
        ctx.err << "gpurun: warning: " << built.error().message << '\n';
      }
    }
    auto present = images_present(*store, manifest->app, digests);
    if (!present) return report(ctx, present.error());
    inputs->images_present = *present;
  }
  auto plan = cloud::make_plan(*manifest, *config, *inputs);
  if (!plan) return report(ctx, plan.error());
  add_backend_notes(*config, *plan, volumes);
  if (options.json) {
    ctx.out << plan_json(*plan).dump(2) << '\n';
  } else {
    print_plan(ctx, *plan);
    note_run_time_choices(ctx, *manifest, *config, *inputs);
  }
  return 0;
}

}  // namespace

void add_plan(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<PlanOptions>();
  auto* cmd = root.add_subcommand("plan", "Show where each function would run, on which GPU, and what must be uploaded");
  add_manifest_args(*cmd, options->args);
  cmd->add_option("--cloud", options->cloud, "Pin every function to this cloud")->type_name("CLOUD");
  cmd->add_flag("--json", options->json, "Print the plan as JSON on stdout");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_plan(ctx, *options); }; });
}

}  // namespace gpurun::commands
