#include <doctest/doctest.h>

#include "cloud/backend/kubernetes/kubernetes_settings.hpp"
#include "cloud/backend/registry.hpp"
#include "gpu/spec.hpp"
#include "manifest/checker.hpp"
#include "manifest/yaml_tree.hpp"
#include "util/diagnostic.hpp"

using namespace gpurun;
using namespace gpurun::cloud;

namespace {

KubernetesSettings parse(const std::string& text, std::string& errors) {
  const auto doc = manifest::parse_yaml(text, "config.yaml");
  std::vector<util::Diagnostic> out;
  manifest::Checker check("config.yaml", out);
  KubernetesSettings settings;
  parse_kubernetes_settings(check, doc.root, "clouds.k8s", gpu::Catalog::builtin(), settings);
  errors = util::format_diagnostics(out);
  return settings;
}

}  // namespace

TEST_CASE("kubernetes settings: every key") {
  std::string errors;
  auto s = parse(
      "kubeconfig: ~/.kube/lab\ncontext: prod\nnamespace: ml\nimage_pull_secret: regcred\n"
      "default_image: 'ubuntu:22.04'\ngpu_label: cloud.google.com/gke-accelerator\n"
      "gpu_products:\n  T4: Tesla-T4\n  A100-40GB: [NVIDIA-A100-SXM4-40GB, NVIDIA-A100-PCIE-40GB]\n"
      "tolerations: [{key: gpu, operator: Equal, value: 'yes', effect: NoExecute, tolerationSeconds: 30}]\n"
      "storage_class: manual\nvolume_size: 5Gi\nvolume_access_mode: ReadWriteOnce\n",
      errors);
  CHECK(errors.empty());
  CHECK(s.kubeconfig == "~/.kube/lab");
  CHECK(s.context == "prod");
  CHECK(s.namespace_name == "ml");
  CHECK(s.image_pull_secret == "regcred");
  CHECK(s.default_image == "ubuntu:22.04");
  CHECK(s.gpu_label == "cloud.google.com/gke-accelerator");
  REQUIRE(s.gpu_products.size() == 2);
  CHECK(s.gpu_products[0].type == "T4");
  CHECK(s.gpu_products[0].memory_gb == 0);
  CHECK(s.gpu_products[0].values == std::vector<std::string>{"Tesla-T4"});
  CHECK(s.gpu_products[1].type == "A100");
  CHECK(s.gpu_products[1].memory_gb == 40);
  CHECK(s.gpu_products[1].values.size() == 2);
  REQUIRE(s.tolerations.size() == 1);
  CHECK(s.tolerations[0].op == "Equal");
  CHECK(s.tolerations[0].toleration_seconds == 30);
  CHECK(s.storage_class == "manual");
  CHECK(s.volume_size == "5Gi");
  CHECK(s.volume_access_mode == "ReadWriteOnce");
}

TEST_CASE("kubernetes settings: defaults") {
  std::string errors;
  auto s = parse("context: lab\n", errors);
  CHECK(errors.empty());
  CHECK(s.gpu_label == "nvidia.com/gpu.product");
  REQUIRE(s.tolerations.size() == 1);
  CHECK(s.tolerations[0].key == "nvidia.com/gpu");
  CHECK(s.tolerations[0].op == "Exists");
  CHECK(s.tolerations[0].effect == "NoSchedule");
  CHECK(s.volume_access_mode == "ReadWriteMany");
  CHECK(s.volume_size == "10Gi");
}

TEST_CASE("kubernetes settings: positioned errors") {
  std::string errors;
  parse("namespace: ML_team\ngpu_label: 'bad label/x'\ngpu_products:\n  T5: Tesla-T4\n  A100-60GB: x\n"
        "  H100: 'not valid!'\ntolerations:\n- {operator: Maybe, effect: Never}\n- {key: a, operator: Exists, value: v}\n"
        "volume_size: lots\nvolume_access_mode: RWX\n",
        errors);
  CHECK(errors ==
        "config.yaml:1:12: error: clouds.k8s.namespace: 'ML_team' is not a Kubernetes name (lower-case letters, digits "
        "and '-', at most 63)\n"
        "config.yaml:2:12: error: clouds.k8s.gpu_label: 'bad label/x' is not a node label key (e.g. "
        "nvidia.com/gpu.product)\n"
        "config.yaml:4:3: error: clouds.k8s.gpu_products.T5: " +
            gpu::unknown_type_message("T5", gpu::Catalog::builtin()) +
            "\n"
            "config.yaml:5:3: error: clouds.k8s.gpu_products.A100-60GB: " +
            gpu::unknown_type_message("A100-60GB", gpu::Catalog::builtin()) +
            "\n"
            "config.yaml:6:9: error: clouds.k8s.gpu_products.H100: 'not valid!' is not a label value (at most 63 letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit)\n"
            "config.yaml:8:14: error: clouds.k8s.tolerations[0].operator: unknown operator 'Maybe'; use Exists or Equal\n"
            "config.yaml:8:29: error: clouds.k8s.tolerations[0].effect: unknown effect 'Never'; use NoSchedule, "
            "PreferNoSchedule or NoExecute\n"
            "config.yaml:9:3: error: clouds.k8s.tolerations[1]: operator Exists takes no value; drop value: or use "
            "operator: Equal\n"
            "config.yaml:10:14: error: clouds.k8s.volume_size: 'lots' is not a storage quantity; write e.g. 10Gi or 500Mi\n"
            "config.yaml:11:21: error: clouds.k8s.volume_access_mode: unknown access mode 'RWX'; use ReadWriteMany, "
            "ReadWriteOnce or ReadOnlyMany");
}

TEST_CASE("a kubernetes cloud in the config: its keys reach KubernetesSettings, a typo is positioned") {
  std::vector<util::Diagnostic> diagnostics;
  auto config = parse_config(
      "clouds:\n  k8s:\n    backend: kubernetes\n    namespace: ml\n    default_image: 'busybox:1.36'\n"
      "    gpus: ['T4:4']\n    gpu_products: {T4: Tesla-T4}\n",
      "config.yaml", diagnostics);
  REQUIRE(config.ok());
  const auto* cloud = config->find_cloud("k8s");
  REQUIRE(cloud != nullptr);
  const auto* settings = dynamic_cast<const KubernetesSettings*>(cloud->settings.get());
  REQUIRE(settings != nullptr);
  CHECK(settings->namespace_name == "ml");
  CHECK(settings->gpu_products.size() == 1);
  diagnostics.clear();
  auto typo = parse_config("clouds:\n  k8s:\n    backend: kubernetes\n    gpu_prodcts: {T4: Tesla-T4}\n", "config.yaml",
                           diagnostics);
  CHECK(!typo.ok());
  CHECK(util::format_diagnostics(diagnostics) ==
        "config.yaml:4:5: error: clouds.k8s.gpu_prodcts: unknown key 'gpu_prodcts' (did you mean 'gpu_products'?)");
}
