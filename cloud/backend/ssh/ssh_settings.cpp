#include "cloud/backend/ssh/ssh_settings.hpp"

#include <algorithm>
#include <fmt/format.h>

#include "manifest/checker.hpp"
#include "manifest/yaml_tree.hpp"

namespace gpurun::cloud {

using manifest::Checker;
using manifest::join_path;
using manifest::YamlNode;

namespace {

// A lease directory: an absolute path on the host.
void parse_lease_dir(Checker& check, const YamlNode& map, const std::string& path, std::string& out) {
  const auto* node = map.find("lease_dir");
  if (node == nullptr) return;
  auto text = check.string(*node, join_path(path, "lease_dir"));
  if (!text) return;
  if (text->empty() || text->front() != '/' || text->find_first_of("\n'") != std::string::npos) {
    check.error(*node, join_path(path, "lease_dir"),
                fmt::format("lease_dir '{}' must be an absolute path on the host, e.g. {}", *text, default_lease_dir));
    return;
  }
  out = *text;
}

// A host's GPUs: offers such as "T4:2" (the most a run there can get); none given: discovered.
void parse_host_gpus(Checker& check, const YamlNode& map, const std::string& path, const gpu::Catalog& catalog, SshHost& host) {
  const auto* gpus = map.find("gpus");
  if (gpus == nullptr) {  // found on the host at plan time
    host.discover = true;
    return;
  }
  auto list = check.string_list(*gpus, join_path(path, "gpus"));
  if (!list) return;
  for (std::size_t i = 0; i < list->size(); ++i) {
    auto offer = gpu::parse_offer((*list)[i], catalog);
    if (!offer) {
      check.error(gpus->items[i], fmt::format("{}.gpus[{}]", path, i), offer.error().message);
      continue;
    }
    host.gpus.push_back(*offer);
    host.gpus_as_written.push_back((*list)[i]);
  }
}

// Adds `offer` to the cloud's offers unless an equal type and memory is there (the larger count wins).
void add_offer(CloudConfig& cloud, const gpu::GpuSlot& offer, const std::string& written) {
  for (auto& existing : cloud.gpus) {
    if (existing.type == offer.type && existing.memory_gb == offer.memory_gb) {
      existing.count = std::max(existing.count, offer.count);
      return;
    }
  }
  cloud.gpus.push_back(offer);
  cloud.gpus_as_written.push_back(written);
}

void parse_hosts(Checker& check, const YamlNode& value, const std::string& path, const gpu::Catalog& catalog,
                 const SshSettings& common, const std::string& lease_dir, CloudConfig& cloud, SshCloudSettings& out) {
  const auto* hosts = value.find("hosts");
  if (hosts == nullptr) {
    check.error(value, path, "missing required key 'hosts' (the GPU servers, e.g. hosts: [{host: gpu1, gpus: [\"T4:2\"]}])");
    return;
  }
  if (!check.expect_sequence(*hosts, join_path(path, "hosts"))) return;
  std::vector<std::string> keys = ssh_setting_keys();
  keys.insert(keys.end(), {"gpus", "lease_dir"});
  for (std::size_t i = 0; i < hosts->items.size(); ++i) {
    const YamlNode& item = hosts->items[i];
    const std::string item_path = fmt::format("{}.hosts[{}]", path, i);
    if (!check.expect_map(item, item_path)) continue;
    check.check_keys(item, item_path, keys);
    SshHost host;
    host.line = item.line;
    SshSettings own;
    parse_ssh_settings(check, item, item_path, own);
    if (own.host.empty()) {
      if (item.find("host") == nullptr) check.error(item, item_path, "missing required key 'host' (a name, an address or a ~/.ssh/config alias)");
      continue;
    }
    host.name = own.host;
    host.ssh = merge_ssh_settings(common, own);
    host.lease_dir = lease_dir;
    parse_lease_dir(check, item, item_path, host.lease_dir);
    parse_host_gpus(check, item, item_path, catalog, host);
    for (const auto& h : out.hosts) {
      if (h.name == host.name && h.ssh.port == host.ssh.port && h.ssh.user == host.ssh.user) {
        check.error(item, item_path, fmt::format("host '{}' is listed twice; list each server once", host.name));
      }
    }
    for (std::size_t g = 0; g < host.gpus.size(); ++g) add_offer(cloud, host.gpus[g], host.gpus_as_written[g]);
    out.hosts.push_back(std::move(host));
  }
  if (hosts->items.empty()) check.error(*hosts, join_path(path, "hosts"), "list at least one host");
}

void parse_ssh_cloud(Checker& check, const YamlNode& value, const std::string& path, const gpu::Catalog& catalog,
                     CloudConfig& cloud) {
  auto settings = std::make_shared<SshCloudSettings>();
  SshSettings common;
  parse_ssh_settings(check, value, path, common);
  std::string lease_dir = default_lease_dir;
  parse_lease_dir(check, value, path, lease_dir);
  if (value.find("gpus") != nullptr) {
    check.error(*value.find("gpus"), join_path(path, "gpus"),
                "an ssh cloud's GPUs are its hosts' GPUs; give 'gpus' on each host (or leave them out there to have them "
                "found on the host)");
  }
  cloud.gpus.clear();
  cloud.gpus_as_written.clear();
  parse_hosts(check, value, path, catalog, common, lease_dir, cloud, *settings);
  cloud.gpus_declared = true;
  // Hosts without `gpus:` add what they have at plan time (Backend::discover_offers).
  cloud.discover_gpus = std::any_of(settings->hosts.begin(), settings->hosts.end(), [](const auto& h) { return h.discover; });
  cloud.settings = std::move(settings);
}

}  // namespace

BackendKeyParser ssh_config_keys() {
  BackendKeyParser parser;
  parser.keys = ssh_setting_keys();
  parser.keys.erase(std::remove(parser.keys.begin(), parser.keys.end(), "host"), parser.keys.end());
  parser.keys.insert(parser.keys.end(), {"hosts", "lease_dir"});
  parser.parse = &parse_ssh_cloud;
  return parser;
}

const SshCloudSettings* ssh_settings_of(const CloudConfig& cloud) {
  return dynamic_cast<const SshCloudSettings*>(cloud.settings.get());
}

}  // namespace gpurun::cloud
