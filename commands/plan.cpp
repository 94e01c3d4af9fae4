#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cli/table.hpp"
#include "commands/common.hpp"
#include "util/strings.hpp"

namespace gpurun::commands {

namespace {

struct PlanOptions {
  std::string manifest;
  std::string file;
  std::string cloud;
  bool json = false;
};

nlohmann::json plan_json(const cloud::Plan& plan) {
  nlohmann::json out;
  out["app"] = plan.app;
  out["functions"] = nlohmann::json::array();
  for (const auto& f : plan.functions) {
    nlohmann::json j;
    j["name"] = f.name;
    j["cloud"] = f.cloud;
    j["backend"] = f.backend;
    j["gpu_requested"] = f.gpu_requested ? nlohmann::json(*f.gpu_requested) : nlohmann::json(nullptr);
    j["gpu"] = f.gpu ? nlohmann::json{{"type", f.gpu->type}, {"memory_gb", f.gpu->memory_gb}, {"count", f.gpu->count}}
                     : nlohmann::json(nullptr);
    j["image"] = f.image ? nlohmann::json(*f.image) : nlohmann::json(nullptr);
    j["volumes"] = f.volumes;
    out["functions"].push_back(std::move(j));
  }
  out["volumes"] = nlohmann::json::array();
  for (const auto& v : plan.volumes) out["volumes"].push_back({{"name", v.name}, {"cloud", v.cloud}});
  out["images"] = nlohmann::json::array();
  for (const auto& i : plan.images) out["images"].push_back({{"name", i.name}, {"clouds", i.clouds}, {"upload_to", i.upload_to}});
  out["warnings"] = nlohmann::json::array();
  for (const auto& w : plan.warnings) out["warnings"].push_back({{"function", w.function}, {"message", w.message}});
  return out;
}

void print_table(Context& ctx, const cloud::Plan& plan) {
  cli::Table table({"FUNCTION", "GPU ASKED", "CLOUD", "BACKEND", "GPU", "IMAGE", "VOLUMES"});
  for (const auto& f : plan.functions) {
    table.add({f.name, f.gpu_requested.value_or("-"), f.cloud, f.backend, f.gpu ? gpu::to_string(*f.gpu, true) : "-",
               f.image.value_or("-"), f.volumes.empty() ? "-" : util::join(f.volumes, ",")});
  }
  ctx.out << table.render();
  if (!plan.volumes.empty()) {
    ctx.out << '\n';
    cli::Table volumes({"VOLUME", "CLOUD"});
    for (const auto& v : plan.volumes) volumes.add({v.name, v.existing ? v.cloud + " (created)" : v.cloud});
    ctx.out << volumes.render();
  }
  if (!plan.images.empty()) {
    ctx.out << '\n';
    cli::Table images({"IMAGE", "CLOUDS", "UPLOAD TO"});
    for (const auto& i : plan.images) {
      images.add({i.name, i.clouds.empty() ? "-" : util::join(i.clouds, ","),
                  i.upload_to.empty() ? "-" : util::join(i.upload_to, ",")});
    }
    ctx.out << images.render();
  }
  for (const auto& w : plan.warnings) ctx.err << "gpurun: warning: " << w.message << '\n';
}

int run_plan(Context& ctx, const PlanOptions& options) {
  int exit_code = 0;
  auto config = load_config(ctx, exit_code);
  if (!config) return exit_code;
  auto path = manifest_path(options.manifest, options.file);
  if (!path) return report(ctx, path.error());
  auto manifest = load_manifest(ctx, *config, *path, exit_code);
  if (!manifest) return exit_code;
  auto inputs = plan_inputs(ctx, *config, exit_code);
  if (!inputs) return exit_code;
  if (!options.cloud.empty()) inputs->cloud_override = options.cloud;
  auto plan = cloud::make_plan(*manifest, *config, *inputs);
  if (!plan) return report(ctx, plan.error());
  if (options.json) {
    ctx.out << plan_json(*plan).dump(2) << '\n';
  } else {
    print_table(ctx, *plan);
  }
  return 0;
}

}  // namespace

void add_plan(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<PlanOptions>();
  auto* cmd = root.add_subcommand("plan", "Show where each function would run, on which GPU, and what must be uploaded");
  cmd->add_option("manifest", options->manifest, "Manifest file (default ./gpurun.yaml)")->type_name("MANIFEST");
  cmd->add_option("-f,--file", options->file, "Manifest file (same as the positional argument)")->type_name("FILE");
  cmd->add_option("--cloud", options->cloud, "Pin every function to this cloud")->type_name("CLOUD");
  cmd->add_flag("--json", options->json, "Print the plan as JSON on stdout");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_plan(ctx, *options); }; });
}

}  // namespace gpurun::commands
