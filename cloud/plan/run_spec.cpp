#include "cloud/plan/run_spec.hpp"

#include <algorithm>
#include <cmath>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

namespace gpurun::cloud {

std::string to_json(const RunSpec& spec) {
  nlohmann::json j;
  j["app"] = spec.app;
  j["function"] = spec.function;
  j["cloud"] = spec.cloud;
  j["backend"] = spec.backend;
  j["argv"] = spec.argv;
  j["cwd"] = spec.cwd;
  j["env"] = nlohmann::json::array();
  for (const auto& [k, v] : spec.env) j["env"].push_back({k, v});
  j["secrets"] = spec.secrets;
  j["mounts"] = nlohmann::json::array();
  for (const auto& m : spec.mounts) j["mounts"].push_back({{"host_path", m.host_path}, {"path", m.path}, {"volume", m.volume}});
  j["gpu"] = nlohmann::json::array();
  for (const auto& a : spec.gpu_alternatives) {
    j["gpu"].push_back({{"type", a.type}, {"min_memory_gb", a.min_memory_gb}, {"count", a.count}, {"max_memory_gb", a.max_memory_gb}});
  }
  j["gpu_text"] = spec.gpu_text;
  j["timeout_ms"] = spec.timeout ? nlohmann::json(spec.timeout->count()) : nlohmann::json(nullptr);
  j["max_retries"] = spec.max_retries;
  j["backoff"] = spec.backoff;
  j["initial_delay_ms"] = spec.initial_delay.count();
  j["max_delay_ms"] = spec.max_delay.count();
  j["kill_grace_ms"] = spec.kill_grace.count();
  if (spec.cpu) j["cpu"] = *spec.cpu;
  if (spec.memory_bytes) j["memory_bytes"] = *spec.memory_bytes;
  if (!spec.image.empty()) {
    nlohmann::json env = nlohmann::json::array();
    for (const auto& [k, v] : spec.image_env) env.push_back({k, v});
    j["image"] = {{"name", spec.image}, {"digest", spec.image_digest}, {"rootfs", spec.image_rootfs}, {"env", env},
                  {"workdir", spec.image_workdir},
                  {"registry", spec.image_registry}, {"repository", spec.image_repository}};
  }
  return j.dump();
}

util::Result<RunSpec> run_spec_from_json(const std::string& text) {
  try {
    const auto j = nlohmann::json::parse(text);
    RunSpec spec;
    spec.app = j.at("app").get<std::string>();
    spec.function = j.at("function").get<std::string>();
    spec.cloud = j.at("cloud").get<std::string>();
    spec.backend = j.at("backend").get<std::string>();
    spec.argv = j.at("argv").get<std::vector<std::string>>();
    spec.cwd = j.at("cwd").get<std::string>();
    for (const auto& e : j.at("env")) spec.env.emplace_back(e.at(0).get<std::string>(), e.at(1).get<std::string>());
    spec.secrets = j.at("secrets").get<std::vector<std::string>>();
    for (const auto& m : j.at("mounts")) {
      spec.mounts.push_back({m.at("host_path").get<std::string>(), m.at("path").get<std::string>(), m.at("volume").get<std::string>()});
    }
    for (const auto& a : j.at("gpu")) {
      spec.gpu_alternatives.push_back({a.at("type").get<std::string>(), a.at("min_memory_gb").get<int>(), a.at("count").get<int>(),
                                       a.value("max_memory_gb", 0)});
    }
    spec.gpu_text = j.at("gpu_text").get<std::string>();
    if (!j.at("timeout_ms").is_null()) spec.timeout = std::chrono::milliseconds(j.at("timeout_ms").get<long long>());
    spec.max_retries = j.at("max_retries").get<int>();
    spec.backoff = j.at("backoff").get<double>();
    spec.initial_delay = std::chrono::milliseconds(j.at("initial_delay_ms").get<long long>());
    spec.max_delay = std::chrono::milliseconds(j.at("max_delay_ms").get<long long>());
    spec.kill_grace = std::chrono::milliseconds(j.at("kill_grace_ms").get<long long>());
    if (j.contains("cpu")) spec.cpu = j.at("cpu").get<double>();  // absent in specs stored before
    if (j.contains("memory_bytes")) spec.memory_bytes = j.at("memory_bytes").get<std::uint64_t>();
    if (j.contains("image")) {
      const auto& image = j.at("image");
      spec.image = image.at("name").get<std::string>();
      spec.image_digest = image.at("digest").get<std::string>();
      spec.image_rootfs = image.at("rootfs").get<std::string>();
      for (const auto& e : image.at("env")) spec.image_env.emplace_back(e.at(0).get<std::string>(), e.at(1).get<std::string>());
      spec.image_workdir = image.at("workdir").get<std::string>();
      spec.image_registry = image.value("registry", "");
      spec.image_repository = image.value("repository", "");
    }
    return spec;
  } catch (const std::exception& e) {
    return util::make_error(util::ExitCode::backend, fmt::format("the run's stored spec is unreadable: {}", e.what()));
  }
}

std::chrono::milliseconds retry_delay(const RunSpec& spec, int retry) {
  const double ms = static_cast<double>(spec.initial_delay.count()) * std::pow(spec.backoff, std::max(0, retry - 1));
  const double capped = std::min(ms, static_cast<double>(spec.max_delay.count()));
  return std::chrono::milliseconds(static_cast<long long>(capped));
}

}  // namespace gpurun::cloud
