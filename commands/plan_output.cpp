#include "commands/plan_output.hpp"

#include "commands/table.hpp"
#include "gpu/spec.hpp"
#include "util/strings.hpp"

namespace gpurun::commands {

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
    if (!f.note.empty()) j["note"] = f.note;
    out["functions"].push_back(std::move(j));
  }
  out["volumes"] = nlohmann::json::array();
  for (const auto& v : plan.volumes) {
    out["volumes"].push_back({{"name", v.name}, {"cloud", v.cloud}, {"existing", v.existing}, {"reason", v.reason}});
  }
  out["images"] = nlohmann::json::array();
  for (const auto& i : plan.images) out["images"].push_back({{"name", i.name}, {"clouds", i.clouds}, {"upload_to", i.upload_to}});
  out["warnings"] = nlohmann::json::array();
  for (const auto& w : plan.warnings) out["warnings"].push_back({{"function", w.function}, {"message", w.message}});
  return out;
}

void print_plan(Context& ctx, const cloud::Plan& plan) {
  Table table({"FUNCTION", "GPU ASKED", "CLOUD", "BACKEND", "GPU", "IMAGE", "VOLUMES"});
  for (const auto& f : plan.functions) {
    const std::string where = f.note.empty() ? f.cloud : f.cloud + " (" + f.note + ")";  // e.g. lab (hosts: gpu2)
    table.add({f.name, f.gpu_requested.value_or("-"), where, f.backend, f.gpu ? gpu::to_string(*f.gpu, true) : "-",
               f.image.value_or("-"), f.volumes.empty() ? "-" : util::join(f.volumes, ",")});
  }
  ctx.out << table.render();
  if (!plan.volumes.empty()) {
    ctx.out << '\n';
    Table volumes({"VOLUME", "CLOUD", "WHY"});
    for (const auto& v : plan.volumes) volumes.add({v.name, v.cloud, v.reason});
    ctx.out << volumes.render();
  }
  if (!plan.images.empty()) {
    ctx.out << '\n';
    Table images({"IMAGE", "CLOUDS", "UPLOAD TO"});
    for (const auto& i : plan.images) {
      images.add({i.name, i.clouds.empty() ? "-" : util::join(i.clouds, ","),
                  i.upload_to.empty() ? "-" : util::join(i.upload_to, ",")});
    }
    ctx.out << images.render();
  }
  for (const auto& w : plan.warnings) ctx.err << "gpurun: warning: " << w.message << '\n';
}

}  // namespace gpurun::commands
