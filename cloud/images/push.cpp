#include "cloud/images/push.hpp"

#include <fmt/format.h>

#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::cloud {

std::string image_repository(const std::string& app, const std::string& image) {
  return util::to_lower(app) + "/" + util::to_lower(image);
}

namespace {

// The message of a failed push: what failed where, and for a login problem where logins come from.
util::Error push_error(const PushTarget& target, const BuiltImage& image, const util::Error& error) {
  std::string message = error.message;
  if (message.find("username and password") != std::string::npos) {
    message += " (GPURUN_REGISTRY_USER and GPURUN_REGISTRY_PASSWORD, or an 'auths' entry for " + target.registry +
               " in ~/.docker/config.json)";
  }
  return util::Error{error.code, fmt::format("pushing image '{}' to cloud '{}' (registry {}, repository {}) failed: {}; "
                                             "nothing was recorded",
                                             image.name, target.cloud, target.registry, target.repository, message)};
}

}  // namespace

util::Result<PushReport> push_image(const PushTarget& target, BuiltImage& image, const std::vector<std::string>& tags,
                                    const PushProgress& progress) {
  auto idle_timeout = registry::idle_timeout_from_env();
  if (!idle_timeout) return idle_timeout.error();
  registry::Options options;
  options.idle_timeout = *idle_timeout;
  options.credentials = registry::find_credentials(target.registry);
  const std::string label = fmt::format("{} -> {}", image.name, target.cloud);
  if (progress.on_bytes) {
    options.on_progress = [&progress, label](const std::string& digest, std::uint64_t sent, std::uint64_t total) {
      progress.on_bytes(label, digest, sent, total);
    };
  }
  auto on_blob = [&progress, label](const oci::Descriptor& blob, registry::BlobOutcome::How how, std::uint64_t bytes) {
    if (progress.on_blob) progress.on_blob(label, blob, how, bytes);
  };
  registry::Client client(target.registry, options);
  auto pushed = push_built_image(client, image, target.repository, tags, options, on_blob);
  if (!pushed) return push_error(target, image, pushed.error());
  if (progress.on_done) {
    progress.on_done(fmt::format("image {} pushed to {}/{}:{} ({} uploaded, {} blob{} already there, {} mounted)", image.name,
                                 target.registry, target.repository, tags.back(), util::format_size(pushed->bytes_uploaded),
                                 pushed->blobs_skipped, pushed->blobs_skipped == 1 ? "" : "s", pushed->blobs_mounted));
  }
  return pushed;
}

}  // namespace gpurun::cloud
