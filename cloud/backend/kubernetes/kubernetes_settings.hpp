#pragma once

// A kubernetes cloud's own config keys (README "Kubernetes"), parsed with positioned diagnostics.

#include <optional>
#include <string>
#include <vector>

#include "cloud/plan/config.hpp"
#include "gpu/catalog.hpp"
#include "manifest/checker.hpp"
#include "manifest/yaml_tree.hpp"

namespace gpurun::cloud {

// One `gpu_products:` entry: a catalog type (memory_gb 0: any variant) and the node label values
// that mean it.
struct GpuProduct {
  std::string type;
  int memory_gb = 0;
  std::vector<std::string> values;
};

// A pod toleration, as the Kubernetes API spells it.
struct Toleration {
  std::string key;
  std::string op = "Exists";  // Exists or Equal
  std::string value;
  std::string effect;  // NoSchedule, PreferNoSchedule, NoExecute, or empty (all)
  std::optional<long long> toleration_seconds;
};

struct KubernetesSettings final : BackendSettings {
  std::string kubeconfig;      // empty: $KUBECONFIG, then ~/.kube/config
  std::string context;         // empty: the kubeconfig's current context
  std::string namespace_name;  // empty: the context's namespace, else "default"
  std::string image_pull_secret;
  std::string default_image;   // functions without image: run in it (used as given)
  std::string gpu_label = "nvidia.com/gpu.product";
  std::vector<GpuProduct> gpu_products;
  std::vector<Toleration> tolerations{Toleration{"nvidia.com/gpu", "Exists", "", "NoSchedule", std::nullopt}};
  std::string storage_class;         // volumes' PVCs; empty: the cluster's default class
  std::string volume_size = "10Gi";  // a PVC's requested storage
  std::string volume_access_mode = "ReadWriteMany";
};

// The kubernetes keys, for a caller's Checker::check_keys list (besides backend, registry, gpus).
const std::vector<std::string>& kubernetes_setting_keys();

// The keys a kubernetes cloud may have and their parser (registered in cloud/backend/registry.cpp).
BackendKeyParser kubernetes_config_keys();

// Reads the kubernetes keys of the cloud mapping `map` (at key path `path`) into `out`, reporting
// bad values through `check` at their positions. Other keys are left to the caller.
void parse_kubernetes_settings(manifest::Checker& check, const manifest::YamlNode& map, const std::string& path,
                               const gpu::Catalog& catalog, KubernetesSettings& out);

// True for a DNS-1123 label (namespaces, names: lower-case alphanumerics and '-', at most 63).
bool is_dns_label(std::string_view text);

}  // namespace gpurun::cloud
