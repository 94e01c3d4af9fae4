// `gpurun prune`: ended runs and their logs past an age, images nothing references, registry
// manifests of versions that no longer exist. Never touches an active run.

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fmt/format.h>
#include <set>

#include "cloud/flows/cleanup.hpp"
#include "cloud/images/stored_image.hpp"
#include "cloud/plan/run_spec.hpp"
#include "commands/common.hpp"
#include "commands/confirm.hpp"
#include "util/clock.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

namespace fs = std::filesystem;

struct PruneOptions {
  std::string older_than = "30d";
  bool dry_run = false;
  bool yes = false;
};

// Bytes under `path` (a file or a directory tree); 0 when it is not there.
std::uint64_t size_of(const std::string& path) {
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) return fs::file_size(path, ec);
  std::uint64_t total = 0;
  for (auto it = fs::recursive_directory_iterator(path, ec); !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    std::error_code size_error;
    if (it->is_regular_file(size_error)) total += it->file_size(size_error);
  }
  return total;
}

// Image manifest digests that must stay: every version of every app, and every active run's image.
util::Result<std::set<std::string>> referenced_images(cloud::StateStore& store, const std::vector<cloud::Run>& runs) {
  std::set<std::string> keep;
  auto deployments = store.list_deployments(true);
  if (!deployments) return deployments.error();
  for (const auto& d : *deployments) {
    for (const auto& image : d.images) keep.insert(image.digest);
  }
  for (const auto& run : runs) {
    if (cloud::is_terminal(run.status)) continue;
    auto spec = cloud::run_spec_from_json(run.spec_json);
    if (spec && !spec->image_digest.empty()) keep.insert(spec->image_digest);
  }
  return keep;
}

// Ended runs that ended before `cutoff` (unix ms).
std::vector<cloud::Run> old_runs(const std::vector<cloud::Run>& runs, std::int64_t cutoff) {
  std::vector<cloud::Run> old;
  for (const auto& run : runs) {
    if (cloud::is_terminal(run.status) && run.ended_at && *run.ended_at < cutoff) old.push_back(run);
  }
  return old;
}

// Removes what `runs` left with their backends and their files (each backend says which) and
// forgets them; returns the bytes freed, `removed` how many. A run whose backend cannot remove its
// remote objects now is kept (with a warning) for a later prune.
util::Result<std::uint64_t> remove_runs(Context& ctx, const cloud::Config& config, cloud::StateStore& store,
                                        const std::vector<cloud::Run>& runs, bool dry_run, std::size_t& removed) {
  RunBackends backends(config);
  std::uint64_t bytes = 0;
  std::vector<std::string> ids;
  for (const auto& run : runs) {
    auto backend = backends.of(run);
    if (backend && !dry_run) {
      if (auto forgotten = (*backend)->forget_remote(run); !forgotten) {
        ctx.err << fmt::format("gpurun: warning: run {} is kept: {}\n", run.id, forgotten.error().message);
        continue;
      }
    }
    std::vector<std::string> files = backend ? (*backend)->run_files(store, run)
                                             : std::vector<std::string>{cloud::run_dir(store.dir(), run.id)};
    for (const auto& file : files) {
      bytes += size_of(file);
      std::error_code ec;
      if (!dry_run) fs::remove_all(file, ec);
      if (ec) ctx.err << fmt::format("gpurun: warning: cannot remove {}: {}\n", file, ec.message());
    }
    ids.push_back(run.id);
  }
  if (!dry_run) {
    if (auto deleted = store.delete_ended_runs(ids); !deleted) return deleted.error();
  }
  removed = ids.size();
  return bytes;
}

std::string plural(std::size_t n, const std::string& word) { return fmt::format("{} {}{}", n, word, n == 1 ? "" : "s"); }

int run_prune(Context& ctx, const PruneOptions& options) {
  int exit_code = 0;
  auto config = load_config(ctx, exit_code);
  if (!config) return exit_code;
  const auto age = util::parse_duration(options.older_than);
  if (!age) {
    return report(ctx, util::Error{util::ExitCode::usage, fmt::format("--older-than '{}': write a duration such as 30d, 12h "
                                                                      "or 90m",
                                                                      options.older_than)});
  }
  auto store = open_store();
  if (!store) return report(ctx, store.error());
  auto runs = store->list_runs(true);
  if (!runs) return report(ctx, runs.error());
  const auto old = old_runs(*runs, util::now_unix_ms() - age->count());
  auto keep = referenced_images(*store, *runs);
  if (!keep) return report(ctx, keep.error());
  if (!options.dry_run) {
    auto go = confirmed(ctx, options.yes,
                        fmt::format("{} ended before {} ago with their logs, and the images and registry manifests that no "
                                    "deployment or active run uses",
                                    plural(old.size(), "run"), options.older_than),
                        "gpurun prune");
    if (!go) return report(ctx, go.error());
    if (!*go) {
      ctx.err << "gpurun: nothing pruned\n";
      return 1;
    }
  }
  std::size_t pruned_runs = 0;
  auto run_bytes = remove_runs(ctx, *config, *store, old, options.dry_run, pruned_runs);
  if (!run_bytes) return report(ctx, run_bytes.error());
  auto images = cloud::prune_image_store(cloud::image_store_dir(store->dir()), *keep, options.dry_run);
  if (!images) return report(ctx, images.error());
  auto locations = store->list_image_locations();
  if (!locations) return report(ctx, locations.error());
  std::vector<cloud::ImageLocation> unused;
  for (const auto& l : *locations) {
    if (keep->count(l.digest) == 0) unused.push_back(l);
  }
  auto registry = cloud::delete_registry_manifests(*store, unused, options.dry_run);
  if (!registry) return report(ctx, registry.error());
  for (const auto& note : registry->notes) ctx.err << "gpurun: warning: " << note << '\n';
  ctx.out << fmt::format("{} {} ({} of logs), {}, {} ({}), {}\n", options.dry_run ? "would prune" : "pruned",
                         plural(pruned_runs, "run"), util::format_size(*run_bytes), plural(images->rootfs_removed, "root filesystem"),
                         plural(images->blobs_removed, "blob"), util::format_size(images->bytes),
                         plural(registry->deleted, "registry manifest"));
  if (registry->deleted > 0 && !options.dry_run) {
    ctx.err << "gpurun: a registry frees the space of deleted manifests only after its garbage collection "
               "(docker-registry garbage-collect CONFIG)\n";
  }
  return 0;
}

}  // namespace

void add_prune(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<PruneOptions>();
  auto* cmd = root.add_subcommand("prune", "Remove old ended runs and their logs, and images nothing uses");
  cmd->add_option("--older-than", options->older_than, "Ended runs older than this (default 30d)")->type_name("DURATION");
  cmd->add_flag("--dry-run", options->dry_run, "Say what would be removed; remove nothing");
  cmd->add_flag("-y,--yes", options->yes, "Do not ask");
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_prune(ctx, *options); }; });
}

}  // namespace gpurun::commands
