// gpurun host-run (hidden): the remote half of `backend: ssh`. Reads {"spec", "secrets"} as JSON on
// stdin (secrets never travel on a command line), runs the spec with the local backend of this
// host under the state dir --state-dir (the host-wide lease dir) and prints {"run_id"}.

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iterator>
#include <nlohmann/json.hpp>

#include "cloud/backend/registry.hpp"
#include "cloud/images/image_store.hpp"
#include "commands/common.hpp"

namespace gpurun::commands {

namespace {

struct HostRunOptions {
  std::string state_dir;
};

// "~/x" as this user's home + "/x".
std::string expand_home(const std::string& path) {
  const char* home = std::getenv("HOME");
  if (path.rfind("~/", 0) == 0 && home != nullptr) return std::string(home) + path.substr(1);
  return path;
}

util::Result<std::pair<cloud::RunSpec, cloud::SecretValues>> read_request(std::istream& in) {
  const std::string text{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  auto json = nlohmann::json::parse(text, nullptr, false);
  if (json.is_discarded() || !json.is_object() || !json.contains("spec") || !json["spec"].is_string()) {
    return util::make_error(util::ExitCode::backend, "host-run: stdin is not a request from gpurun's ssh backend");
  }
  auto spec = cloud::run_spec_from_json(json["spec"].get<std::string>());
  if (!spec) return spec.error();
  cloud::SecretValues secrets;
  const nlohmann::json all = json.contains("secrets") && json["secrets"].is_object() ? json["secrets"] : nlohmann::json::object();
  for (const auto& [name, values] : all.items()) {
    std::vector<std::pair<std::string, std::string>> vars;
    for (const auto& [key, value] : values.items()) vars.emplace_back(key, value.get<std::string>());
    secrets.emplace_back(name, std::move(vars));
  }
  return std::pair{std::move(*spec), std::move(secrets)};
}

int run_host_run(Context& ctx, const HostRunOptions& options) {
  auto request = read_request(std::cin);
  if (!request) return report(ctx, request.error());
  auto& [spec, secrets] = *request;
  // On the host the run belongs to its local backend: every user's runs share the `local` leases.
  spec.cloud = "local";
  spec.backend = "local";
  spec.cwd = expand_home(spec.cwd);
  if (!spec.image_digest.empty() && spec.image_rootfs.empty()) {
    // Pulled from the cloud's registry, or (none) unpacked from the blobs the ssh backend sent
    // into this user's cache (all there: nothing is fetched).
    auto pulled = cloud::pull_image(spec.image_registry.empty() ? std::string("ssh://client") : spec.image_registry,
                                    spec.image_repository, spec.image_digest, expand_home("~/.cache/gpurun/images"));
    if (!pulled) return report(ctx, pulled.error());
    spec.image_rootfs = pulled->rootfs;
  }
  auto store = cloud::StateStore::open(options.state_dir);
  if (!store) return report(ctx, store.error());
  auto backend = cloud::make_backend("local", nullptr);
  if (!backend) return report(ctx, backend.error());
  auto run = (*backend)->launch(*store, spec, secrets);
  if (!run) return report(ctx, run.error());
  ctx.out << nlohmann::json{{"run_id", run->id}}.dump() << '\n';
  return 0;
}

}  // namespace

void add_host_run(CLI::App& root, Context& ctx) {
  auto options = std::make_shared<HostRunOptions>();
  auto* cmd = root.add_subcommand("host-run", "Start a run sent by gpurun's ssh backend (spec and secrets on stdin)");
  cmd->group("");  // hidden: the ssh backend calls it on the host
  cmd->add_option("--state-dir", options->state_dir, "The host-wide state (lease) directory")->required();
  cmd->callback([&ctx, options] { ctx.action = [&ctx, options] { return run_host_run(ctx, *options); }; });
}

}  // namespace gpurun::commands
