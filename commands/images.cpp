#include <CLI/CLI.hpp>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "commands/table.hpp"
#include "commands/common.hpp"
#include "util/strings.hpp"

namespace gpurun::commands {

namespace {

struct ImagesOptions {
  bool json = false;
};

int run_images(Context& ctx, const ImagesOptions& options) {
  int exit_code = 0;
  // Like every command: a missing --config FILE or $GPURUN_CONFIG, or a broken config, is refused.
  if (!load_config(ctx, exit_code)) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto locations = store->list_image_locations();
  if (!locations) return report(ctx, locations.error());
  // One entry per app, image and digest (newest push first), with the clouds holding it.
  struct Entry {
    std::string app, image, digest;
    std::int64_t pushed_at = 0;
    std::vector<cloud::ImageLocation> where;
  };
  std::vector<Entry> entries;
  for (const auto& l : *locations) {
    auto it = std::find_if(entries.begin(), entries.end(),
                           [&](const Entry& e) { return e.app == l.app && e.image == l.image && e.digest == l.digest; });
    if (it == entries.end()) {
      entries.push_back({l.app, l.image, l.digest, l.pushed_at, {}});
      it = entries.end() - 1;
    }
    it->pushed_at = std::max(it->pushed_at, l.pushed_at);
    it->where.push_back(l);
  }
  if (options.json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : entries) {
      nlohmann::json clouds = nlohmann::json::array();
      for (const auto& w : e.where) {
        clouds.push_back({{"cloud", w.cloud},
                          {"registry", w.registry.empty() ? nlohmann::json(nullptr) : nlohmann::json(w.registry)},
                          {"repository", w.repository},
                          {"pushed_at", cloud::format_iso8601(w.pushed_at)}});
      }
      out.push_back({{"app", e.app}, {"image", e.image}, {"digest", e.digest}, {"clouds", clouds}});
    }
    ctx.out << out.dump(2) << '\n';
    return 0;
  }
  if (entries.empty()) {
    ctx.err << "gpurun: no images yet; 'gpurun deploy' builds and places the images of an app\n";
    return 0;
  }
  Table table({"APP", "IMAGE", "DIGEST", "CLOUDS", "PUSHED"});
  for (const auto& e : entries) {
    std::vector<std::string> clouds;
    for (const auto& w : e.where) clouds.push_back(w.cloud);
    table.add({e.app, e.image, e.digest.substr(0, 19), util::join(clouds, ","), cloud::format_iso8601(e.pushed_at)});
  }
  ctx.out << table.render();
  return 0;
}

}  // namespace

void add_images(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<ImagesOptions>();
  auto* cmd = root.add_subcommand("images", "List built images: digest and the clouds that hold each");
  cmd->add_flag("--json", options->json, "Print as JSON on stdout");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_images(ctx, *options); }; });
}

}  // namespace gpurun::commands
