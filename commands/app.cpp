// `gpurun app list|history|rollback|delete`: deployed apps as a history of immutable versions.

#include <CLI/CLI.hpp>
#include <algorithm>
#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "cloud/flows/cleanup.hpp"
#include "commands/common.hpp"
#include "commands/confirm.hpp"
#include "commands/deployments.hpp"
#include "commands/table.hpp"
#include "util/files.hpp"
#include "util/strings.hpp"

namespace gpurun::commands {

namespace {

struct AppOptions {
  std::string app;
  std::string version_text;  // rollback: "3" or "v3"; empty = the previous one
  bool all = false;
  bool json = false;
  bool yes = false;
  bool purge_images = false;
};

// Every version of `app`, oldest first; an app never deployed is a usage error.
util::Result<std::vector<cloud::Deployment>> history_of(cloud::StateStore& store, const std::string& app) {
  auto history = store.app_history(app);
  if (!history) return history.error();
  if (history->empty()) {
    return util::make_error(util::ExitCode::usage, fmt::format("app '{}' is not deployed; 'gpurun app list' lists the deployed apps", app));
  }
  return history;
}

std::string short_digest(const std::string& digest) {
  const auto colon = digest.find(':');
  return digest.substr(colon == std::string::npos ? 0 : colon + 1, 12);
}

// What `d` changed against the version before it (`previous`, null for the first).
std::vector<std::string> changes_of(const cloud::Deployment* previous, const cloud::Deployment& d) {
  if (!d.note.empty()) return {d.note};
  if (previous == nullptr) return {"first deploy"};
  std::vector<std::string> changes;
  if (previous->manifest_digest != d.manifest_digest) changes.push_back("manifest");
  if (previous->manifest_dir != d.manifest_dir) changes.push_back("folder " + d.manifest_dir);
  std::map<std::string, std::string> before, after;
  for (const auto& i : previous->images) before[i.image] = i.digest;
  for (const auto& i : d.images) after[i.image] = i.digest;
  for (const auto& [name, digest] : after) {
    auto it = before.find(name);
    if (it == before.end()) changes.push_back("image " + name + " added");
    else if (it->second != digest) changes.push_back("image " + name);
  }
  for (const auto& [name, digest] : before) {
    if (after.count(name) == 0) changes.push_back("image " + name + " removed");
  }
  if (previous->plan_json != d.plan_json) changes.push_back("placement");
  if (changes.empty()) changes.push_back("no change");
  return changes;
}

nlohmann::json images_json(const cloud::Deployment& d) {
  nlohmann::json images = nlohmann::json::array();
  for (const auto& i : d.images) {
    images.push_back({{"image", i.image}, {"digest", i.digest}, {"cloud", i.cloud},
                      {"registry", i.registry.empty() ? nlohmann::json(nullptr) : nlohmann::json(i.registry)},
                      {"repository", i.registry.empty() ? nlohmann::json(nullptr) : nlohmann::json(i.repository)}});
  }
  return images;
}

int run_history(Context& ctx, const AppOptions& options) {
  int exit_code = 0;
  if (!load_config(ctx, exit_code)) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto history = history_of(*store, options.app);
  if (!history) return report(ctx, history.error());
  nlohmann::json out = nlohmann::json::array();
  Table table({"VERSION", "DEPLOYED", "MANIFEST", "IMAGES", "CHANGES"});
  for (std::size_t i = 0; i < history->size(); ++i) {
    const auto& d = (*history)[i];
    const auto changes = changes_of(i == 0 ? nullptr : &(*history)[i - 1], d);
    const bool current = i + 1 == history->size();
    out.push_back({{"app", d.app}, {"version", d.version}, {"current", current},
                   {"created_at", cloud::format_iso8601(d.created_at)}, {"digest", d.manifest_digest},
                   {"manifest", d.manifest_path}, {"functions", d.functions}, {"images", images_json(d)},
                   {"changes", changes}});
    std::set<std::string> image_texts;
    for (const auto& image : d.images) image_texts.insert(image.image + "@" + short_digest(image.digest));
    table.add({"v" + std::to_string(d.version) + (current ? " (current)" : ""), cloud::format_iso8601(d.created_at),
               short_digest(d.manifest_digest), image_texts.empty() ? "-" : util::join({image_texts.begin(), image_texts.end()}, ","),
               util::join(changes, ", ")});
  }
  ctx.out << (options.json ? out.dump(2) + "\n" : table.render());
  return 0;
}

// Copies version `from`'s manifest snapshot to version `to`'s.
util::Result<void> copy_snapshot(const std::string& state_dir, const std::string& app, int from, int to) {
  auto text = util::read_file(cloud::deployment_snapshot_path(state_dir, app, from));
  if (!text) return text.error();
  return util::write_file_atomically(cloud::deployment_snapshot_path(state_dir, app, to), *text);
}

// An error when a local cloud's copy of one of `d`'s images is no longer in the image store.
util::Result<void> check_images_kept(const std::string& state_dir, const cloud::Deployment& d) {
  for (const auto& image : d.images) {
    const auto colon = image.digest.find(':');
    const std::string blob = cloud::image_store_dir(state_dir) + "/blobs/sha256/" + image.digest.substr(colon + 1);
    std::error_code ec;
    if (image.registry.empty() && !std::filesystem::exists(blob, ec)) {
      return util::make_error(util::ExitCode::backend,
                              fmt::format("v{} of app '{}' cannot come back: its image '{}' ({}) is no longer in the local "
                                          "image store; deploy that manifest again instead",
                                          d.version, d.app, image.image, image.digest));
    }
  }
  return {};
}

int run_rollback(Context& ctx, const AppOptions& options) {
  int exit_code = 0;
  if (!load_config(ctx, exit_code)) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto history = history_of(*store, options.app);
  if (!history) return report(ctx, history.error());
  const auto& current = history->back();
  int target = 0;
  if (!options.version_text.empty()) {
    const std::string digits = options.version_text[0] == 'v' ? options.version_text.substr(1) : options.version_text;
    if (digits.empty() || digits.size() > 9 || !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      return report(ctx, util::Error{util::ExitCode::usage, fmt::format("'{}': write a version as 3 or v3 ('gpurun app history {}' "
                                                                        "lists them)",
                                                                        options.version_text, options.app)});
    }
    target = std::stoi(digits);
  }
  if (target == 0) {
    if (history->size() < 2) {
      return report(ctx, util::Error{util::ExitCode::usage, fmt::format("app '{}' has only one version (v{}); there is "
                                                                        "nothing to roll back to",
                                                                        options.app, current.version)});
    }
    target = (*history)[history->size() - 2].version;
  }
  const cloud::Deployment* chosen = nullptr;
  for (const auto& d : *history) {
    if (d.version == target) chosen = &d;
  }
  if (chosen == nullptr) {
    return report(ctx, util::Error{util::ExitCode::usage, fmt::format("app '{}' has no version {}; its versions are v1 to v{} "
                                                                      "('gpurun app history {}')",
                                                                      options.app, target, current.version, options.app)});
  }
  if (chosen->version == current.version) {
    return report(ctx, util::Error{util::ExitCode::usage,
                                   fmt::format("v{} is already the current version of app '{}'", target, options.app)});
  }
  if (auto kept = check_images_kept(store->dir(), *chosen); !kept) return report(ctx, kept.error());
  cloud::Deployment next = *chosen;
  next.note = "rollback to v" + std::to_string(target);
  auto version = store->record_deployment(next);
  if (!version) return report(ctx, version.error());
  if (auto copied = copy_snapshot(store->dir(), options.app, target, *version); !copied) return report(ctx, copied.error());
  if (options.json) {
    ctx.out << nlohmann::json{{"app", options.app}, {"version", *version}, {"rolled_back_to", target}}.dump() << '\n';
  } else {
    ctx.err << fmt::format("gpurun: app {} rolled back to v{}, recorded as v{}\n", options.app, target, *version);
  }
  return 0;
}

// Cancels every active run of `app`; returns how many.
util::Result<int> cancel_active_runs(Context& ctx, const cloud::Config& config, cloud::StateStore& store, const std::string& app) {
  auto runs = store.list_runs(false);
  if (!runs) return runs.error();
  RunBackends backends(config);
  int cancelled = 0;
  for (const auto& run : *runs) {
    if (run.app != app) continue;
    auto backend = backends.of(run);
    if (!backend) return backend.error();
    if (auto sent = (*backend)->cancel(store, run); !sent) return sent.error();
    ctx.err << fmt::format("gpurun: cancelled run {} ({})\n", run.id, run.function);
    ++cancelled;
  }
  return cancelled;
}

int run_delete(Context& ctx, const AppOptions& options) {
  int exit_code = 0;
  auto config = load_config(ctx, exit_code);
  if (!config) return exit_code;
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto history = history_of(*store, options.app);
  if (!history) return report(ctx, history.error());
  const std::string what = fmt::format("app '{}' ({} version{}{})", options.app, history->size(),
                                       history->size() == 1 ? "" : "s",
                                       options.purge_images ? " and its images in the registries" : "");
  auto go = confirmed(ctx, options.yes, what, "gpurun app delete");
  if (!go) return report(ctx, go.error());
  if (!*go) {
    ctx.err << "gpurun: nothing deleted\n";
    return 1;
  }
  auto cancelled = cancel_active_runs(ctx, *config, *store, options.app);
  if (!cancelled) return report(ctx, cancelled.error());
  if (auto removed = store->delete_app(options.app); !removed) return report(ctx, removed.error());
  std::error_code ec;
  std::filesystem::remove_all(std::filesystem::path(cloud::deployment_snapshot_path(store->dir(), options.app, 1)).parent_path(), ec);
  ctx.err << fmt::format("gpurun: deleted app {} ({} version{})\n", options.app, history->size(), history->size() == 1 ? "" : "s");
  if (options.purge_images) {
    auto locations = store->list_image_locations(options.app);
    if (!locations) return report(ctx, locations.error());
    auto cleanup = cloud::delete_registry_manifests(*store, *locations, false);
    if (!cleanup) return report(ctx, cleanup.error());
    for (const auto& note : cleanup->notes) ctx.err << "gpurun: warning: " << note << '\n';
    ctx.err << fmt::format("gpurun: deleted {} image manifest{} from registries; their space comes back after each "
                           "registry's garbage collection\n",
                           cleanup->deleted, cleanup->deleted == 1 ? "" : "s");
  }
  auto volumes = store->list_volumes(options.app);
  if (volumes && !volumes->empty()) {
    ctx.err << fmt::format("gpurun: its {} volume{} kept their data: 'gpurun volume rm {}/NAME' removes one\n", volumes->size(),
                           volumes->size() == 1 ? " is" : "s are", options.app);
  }
  return 0;
}

}  // namespace

void add_app(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<AppOptions>();
  auto* app = root.add_subcommand("app", "Deployed apps: list, history, rollback, delete");
  app->require_subcommand(1);
  auto* list = app->add_subcommand("list", "List deployed apps (the same as 'gpurun deployments')");
  list->add_flag("-a,--all", options->all, "Every version, not only the newest");
  list->add_flag("--json", options->json, "Print as JSON on stdout");
  list->callback([&ctx, options] { ctx.action = [&ctx, options] { return show_deployments(ctx, options->all, options->json); }; });
  auto* history = app->add_subcommand("history", "An app's versions: when, which digests, what changed");
  history->add_option("app", options->app, "The app")->required()->type_name("APP");
  history->add_flag("--json", options->json, "Print as JSON on stdout");
  history->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_history(ctx, *options); }; });
  auto* rollback = app->add_subcommand("rollback", "Make an earlier version current again (recorded as a new version)");
  rollback->add_option("app", options->app, "The app")->required()->type_name("APP");
  rollback->add_option("version", options->version_text, "The version, 3 or v3 (default: the one before the current)")
      ->type_name("VERSION");
  rollback->add_flag("--json", options->json, "Print the new version as JSON on stdout");
  rollback->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_rollback(ctx, *options); }; });
  auto* remove = app->add_subcommand("delete", "Stop an app's active runs and forget it");
  remove->add_option("app", options->app, "The app")->required()->type_name("APP");
  remove->add_flag("-y,--yes", options->yes, "Do not ask");
  remove->add_flag("--purge-images", options->purge_images, "Also delete its images from the registries");
  remove->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_delete(ctx, *options); }; });
}

}  // namespace gpurun::commands
