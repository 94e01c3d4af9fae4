#include "commands/dry_run.hpp"

#include <fmt/format.h>

#include "util/strings.hpp"
#include "util/units.hpp"

namespace gpurun::commands {

namespace {

std::string quoted_argv(const std::vector<std::string>& argv) {
  std::vector<std::string> words;
  words.reserve(argv.size());
  for (const auto& word : argv) words.push_back(util::shell_quote(word));
  return util::join(words, " ");
}

// "3 (backoff 2x from 1s, at most 1m)", or "none".
std::string retries_text(const cloud::RunSpec& spec) {
  if (spec.max_retries == 0) return "none";
  return fmt::format("{} (delay {} times {} per retry, at most {})", spec.max_retries, util::format_duration(spec.initial_delay),
                     spec.backoff, util::format_duration(spec.max_delay));
}

// Every occurrence of a secret value in `text` as ***.
std::string masked(std::string text, const cloud::SecretValues& secrets) {
  for (const auto& [name, values] : secrets) {
    for (const auto& [key, value] : values) {
      if (value.empty()) continue;
      for (auto at = text.find(value); at != std::string::npos; at = text.find(value, at + 3)) text.replace(at, value.size(), "***");
    }
  }
  return text;
}

}  // namespace

std::string dry_run_summary(const cloud::RunSpec& spec, const cloud::SecretValues& secrets) {
  std::string out = fmt::format("dry run: nothing is started\n  function   {} (app {})\n  cloud      {} (backend {})\n", spec.function,
                                spec.app, spec.cloud, spec.backend);
  out += fmt::format("  gpu        {}\n", spec.gpu_text.empty() ? std::string("none (CPU only)") : spec.gpu_text);
  out += fmt::format("  command    {}\n", quoted_argv(spec.argv));
  if (!spec.image.empty()) {
    out += fmt::format("  image      {} ({}){}\n", spec.image, spec.image_digest.empty() ? "not built" : spec.image_digest,
                       spec.image_registry.empty() ? "" : ", pulled from " + spec.image_registry + "/" + spec.image_repository);
  }
  if (!spec.cwd.empty()) out += fmt::format("  directory  {}\n", spec.cwd);
  for (const auto& [key, value] : spec.env) out += fmt::format("  env        {}={}\n", key, value);
  if (!spec.secrets.empty()) out += fmt::format("  secrets    {} (values hidden)\n", util::join(spec.secrets, ", "));
  for (const auto& mount : spec.mounts) {
    out += fmt::format("  volume     {} at {}{}\n", mount.volume, mount.path, mount.host_path.empty() ? "" : " (" + mount.host_path + ")");
  }
  out += fmt::format("  timeout    {}\n", spec.timeout ? util::format_duration(*spec.timeout) + " per attempt" : std::string("none"));
  out += fmt::format("  retries    {}\n", retries_text(spec));
  return masked(std::move(out), secrets);
}

}  // namespace gpurun::commands
