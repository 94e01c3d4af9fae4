#include <doctest/doctest.h>

#include "cloud/backend/kubernetes/kubernetes_objects.hpp"

using namespace gpurun;
using namespace gpurun::cloud;
using json = nlohmann::json;

namespace {

RunSpec spec_for_job() {
  RunSpec spec;
  spec.app = "demo";
  spec.function = "train_Big";
  spec.argv = {"/bin/sh", "-c", "echo \"$X\" 'quoted $HOME'"};
  spec.env = {{"X", "1 2"}, {"EMPTY", ""}, {"DOLLAR", "$(HOME) $$"}};
  spec.timeout = std::chrono::milliseconds(90'500);
  spec.kill_grace = std::chrono::milliseconds(10'000);
  return spec;
}

}  // namespace

TEST_CASE("kubernetes names: lower-case, dashes, at most 63 with a hash") {
  CHECK(kubernetes_name("Gpurun_Demo..Train") == "gpurun-demo-train");
  const std::string longer(100, 'a');
  const auto name = kubernetes_name(longer);
  CHECK(name.size() == 63);
  CHECK(name.substr(0, 54) == std::string(54, 'a'));
  CHECK(name[54] == '-');
  CHECK(name != kubernetes_name(longer + "b"));
  CHECK(label_value("a/b c") == "a-b-c");
  CHECK(job_name("demo", "train", "rLX3K9A2B7F4Q", 2) == "gpurun-demo-train-rlx3k9a2b7f4q-2");
  const auto long_job = job_name(std::string(40, 'x'), std::string(40, 'y'), "rlx3k9a2b7f4q", 12);
  CHECK(long_job.size() <= 63);
  CHECK(long_job.substr(long_job.size() - 17) == "-rlx3k9a2b7f4q-12");
  CHECK(secret_name("rabc") == "gpurun-rabc-secrets");
  CHECK(claim_name("demo", "Data_Set") == "gpurun-demo-data-set");
}

TEST_CASE("the Job of an attempt") {
  KubernetesSettings settings;
  JobRequest request;
  request.run_id = "rabc";
  request.attempt = 2;
  request.namespace_name = "ml";
  request.image = "127.0.0.1:5000/demo@sha256:00ff";
  request.secret = "gpurun-rabc-secrets";
  request.gpu_count = 2;
  request.gpu_products = {"NVIDIA-A100-SXM4-40GB"};
  request.cpu = 1.5;
  request.memory_bytes = 1024;
  request.claims = {{"/data", "gpurun-demo-data"}};
  const json job = job_json(spec_for_job(), settings, request);
  CHECK(job["metadata"]["name"] == "gpurun-demo-train-big-rabc-2");
  CHECK(job["metadata"]["namespace"] == "ml");
  CHECK(job["spec"]["backoffLimit"] == 0);
  // The deadline is the pod's (the kubelet kills it and keeps its log), not the Job's.
  CHECK(job["spec"]["template"]["spec"]["activeDeadlineSeconds"] == 91);
  CHECK(!job["spec"].contains("activeDeadlineSeconds"));
  const json& labels = job["spec"]["template"]["metadata"]["labels"];
  CHECK(labels["gpurun.dev/run"] == "rabc");
  CHECK(labels["gpurun.dev/app"] == "demo");
  CHECK(labels["gpurun.dev/function"] == "train_Big");
  const json& pod = job["spec"]["template"]["spec"];
  CHECK(pod["restartPolicy"] == "Never");
  CHECK(pod["terminationGracePeriodSeconds"] == 10);
  const json& term = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0];
  CHECK(term["matchExpressions"][0] ==
        json{{"key", "nvidia.com/gpu.product"}, {"operator", "In"}, {"values", {"NVIDIA-A100-SXM4-40GB"}}});
  CHECK(pod["tolerations"] ==
        json::array({{{"key", "nvidia.com/gpu"}, {"operator", "Exists"}, {"effect", "NoSchedule"}}}));
  const json& container = pod["containers"][0];
  CHECK(container["image"] == "127.0.0.1:5000/demo@sha256:00ff");
  // Kubernetes turns $$ into $ (and expands $(VAR)): doubled, the argv arrives verbatim.
  CHECK(container["command"] == json{"/bin/sh", "-c", "echo \"$$X\" 'quoted $$HOME'"});
  CHECK(container["env"] == json::array({{{"name", "X"}, {"value", "1 2"}},
                                         {{"name", "EMPTY"}, {"value", ""}},
                                         {{"name", "DOLLAR"}, {"value", "$$(HOME) $$$$"}},
                                         {{"name", "GPURUN_RUN_ID"}, {"value", "rabc"}},
                                         {{"name", "GPURUN_APP"}, {"value", "demo"}},
                                         {{"name", "GPURUN_FUNCTION"}, {"value", "train_Big"}},
                                         {{"name", "GPURUN_ATTEMPT"}, {"value", "2"}}}));
  CHECK(container["envFrom"][0]["secretRef"]["name"] == "gpurun-rabc-secrets");
  CHECK(container["resources"]["limits"] == json{{"nvidia.com/gpu", "2"}, {"memory", "1024"}});
  CHECK(container["resources"]["requests"] == json{{"cpu", "1500m"}, {"memory", "1024"}});
  CHECK(container["volumeMounts"] ==
        json::array({{{"name", "dshm"}, {"mountPath", "/dev/shm"}}, {{"name", "volume-0"}, {"mountPath", "/data"}}}));
  CHECK(pod["volumes"][0]["emptyDir"]["medium"] == "Memory");
  CHECK(pod["volumes"][1]["persistentVolumeClaim"]["claimName"] == "gpurun-demo-data");
}

TEST_CASE("a CPU-only Job has no GPU limit, affinity or tolerations; no timeout, no deadline") {
  RunSpec spec = spec_for_job();
  spec.timeout.reset();
  spec.cwd = "/home/me/app";
  JobRequest request;
  request.run_id = "rabc";
  request.image = "ubuntu:22.04";
  const json job = job_json(spec, KubernetesSettings{}, request);
  CHECK(!job["spec"].contains("activeDeadlineSeconds"));
  CHECK(!job["spec"]["template"]["spec"].contains("activeDeadlineSeconds"));
  const json& pod = job["spec"]["template"]["spec"];
  CHECK(!pod.contains("affinity"));
  CHECK(!pod.contains("tolerations"));
  CHECK(!pod["containers"][0].contains("envFrom"));
  CHECK(pod["containers"][0]["resources"] == json::object());
  CHECK(pod["containers"][0]["workingDir"] == "/home/me/app");
}

TEST_CASE("the Secret holds the values; the claim its size and class") {
  const json secret = secret_json("s", "ml", "rabc", {{"hf", {{"HF_TOKEN", "hf_value"}}}, {"db", {{"PASS", "pw12"}}}});
  CHECK(secret["stringData"] == json{{"HF_TOKEN", "hf_value"}, {"PASS", "pw12"}});
  CHECK(secret["metadata"]["labels"]["gpurun.dev/run"] == "rabc");
  KubernetesSettings settings;
  settings.storage_class = "manual";
  const json claim = claim_json("c", "ml", "demo", settings);
  CHECK(claim["spec"] == json{{"accessModes", {"ReadWriteMany"}},
                              {"resources", {{"requests", {{"storage", "10Gi"}}}}},
                              {"storageClassName", "manual"}});
}

TEST_CASE("waiting reasons in words") {
  CHECK(scheduling_reason("0/3 nodes are available: 1 Insufficient nvidia.com/gpu, 2 node(s) didn't match Pod's node "
                          "affinity.",
                          2) == "no node has 2 free");
  CHECK(scheduling_reason("0/3 nodes are available: 3 node(s) didn't match Pod's node affinity.", 1) ==
        "no node has the asked GPU type");
  CHECK(scheduling_reason("0/3 nodes are available: 3 Insufficient memory.", 1) == "no node has enough memory free");
  CHECK(scheduling_reason("something new.", 1) == "something new");
  const json pending = {{"status",
                         {{"conditions",
                           {{{"type", "PodScheduled"},
                             {"status", "False"},
                             {"reason", "Unschedulable"},
                             {"message", "0/3 nodes are available: 1 Insufficient nvidia.com/gpu."}}}}}}};
  CHECK(pod_waiting_reason(pending, 4) == "no node has 4 free");
  const json pulling = {
      {"status",
       {{"containerStatuses",
         {{{"image", "invalid/image:1"},
           {"state", {{"waiting", {{"reason", "ErrImagePull"}, {"message", "pull access denied"}}}}}}}}}}};
  CHECK(pod_waiting_reason(pulling, 1) == "cannot pull image invalid/image:1 (ErrImagePull): pull access denied");
  CHECK(pod_waiting_reason(json{{"status", {{"phase", "Running"}}}}, 1).empty());
}

TEST_CASE("RFC 3339 times") {
  CHECK(parse_rfc3339_ms("1970-01-01T00:00:01.5Z") == 1500);
  CHECK(parse_rfc3339_ms("2026-12-01T07:25:09.123456789Z") == 1796109909123);
  CHECK(parse_rfc3339_ms("1970-01-01T01:00:00+01:00") == 0);
  CHECK(!parse_rfc3339_ms("yesterday").has_value());
  CHECK(format_rfc3339(1796109909123) == "2026-12-01T07:25:09Z");
}

TEST_CASE("GPU capacity from the nodes' labels and allocatable minus the bound pods' limits") {
  KubernetesSettings settings;
  settings.gpu_products = {{"T4", 0, {"Tesla-T4"}}, {"A100", 40, {"NVIDIA-A100-SXM4-40GB"}}};
  const json nodes = json::array(
      {{{"metadata", {{"name", "gpu-t4-1"}, {"labels", {{"nvidia.com/gpu.product", "Tesla-T4"}}}}},
        {"status", {{"allocatable", {{"nvidia.com/gpu", "4"}}}}}},
       {{"metadata", {{"name", "gpu-a100-1"}, {"labels", {{"nvidia.com/gpu.product", "NVIDIA-A100-SXM4-40GB"}}}}},
        {"status", {{"allocatable", {{"nvidia.com/gpu", "2"}}}}}},
       {{"metadata", {{"name", "cpu-1"}}}, {"status", {{"allocatable", {{"cpu", "8"}}}}}}});
  auto pod = [](const std::string& node, const std::string& phase, const std::string& gpus) {
    return json{{"spec",
                 {{"nodeName", node},
                  {"containers", json::array({{{"resources", {{"limits", {{"nvidia.com/gpu", gpus}}}}}}})}}},
                {"status", {{"phase", phase}}}};
  };
  const json pods = json::array({pod("gpu-t4-1", "Running", "1"), pod("gpu-t4-1", "Pending", "2"),
                                 pod("gpu-t4-1", "Succeeded", "4"), pod("gpu-a100-1", "Failed", "2")});
  const auto gpus = node_gpus(nodes, pods, settings);
  REQUIRE(gpus.size() == 2);
  CHECK(gpus[0].type == "T4");
  CHECK(gpus[0].total == 4);
  CHECK(gpus[0].free == 1);
  CHECK(gpus[1].type == "A100");
  CHECK(gpus[1].memory_gb == 40);
  CHECK(gpus[1].total == 2);
  CHECK(gpus[1].free == 2);

  // Without gpu_products (offers from the nodes), with the catalog: each node's own type.
  const auto catalog = gpu::Catalog::builtin();
  const auto found = node_gpus(nodes, pods, KubernetesSettings{}, &catalog);
  REQUIRE(found.size() == 2);
  CHECK(found[0].type == "T4");
  CHECK(found[0].memory_gb == 16);
  CHECK(found[0].free == 1);
  CHECK(found[1].type == "A100");
  CHECK(found[1].memory_gb == 40);
  CHECK(found[1].total == 2);
  CHECK(node_gpus(nodes, pods, KubernetesSettings{}).empty());
}

TEST_CASE("a container that could not start exits as a shell would") {
  CHECK(start_error_code("StartError", "exec: \"no-such\": executable file not found in $PATH") == 127);
  CHECK(start_error_code("StartError", "exec: \"./x.sh\": No such file or directory") == 127);
  CHECK(start_error_code("ContainerCannotRun", "exec: \"./x.sh\": permission denied") == 126);
  CHECK(!start_error_code("Error", "not found").has_value());
  CHECK(!start_error_code("StartError", "cgroup trouble").has_value());
}

TEST_CASE("GPU shortage in words: all in use, or no node with enough free") {
  CHECK(gpu_shortage_words(1, NodeGpus{"T4", 0, 0, 4}) == "all 4 in use");
  CHECK(gpu_shortage_words(2, NodeGpus{"A100", 40, 1, 2}) == "no node has 2 free");
  CHECK(gpu_shortage_words(2, std::nullopt) == "no node has 2 free");
}

namespace {

json gpu_node(const std::string& name, const std::string& label, const std::string& value, int gpus,
              const std::string& memory_mib = "") {
  json labels = json::object();
  if (!value.empty()) labels[label] = value;
  if (!memory_mib.empty()) labels["nvidia.com/gpu.memory"] = memory_mib;
  return json{{"metadata", {{"name", name}, {"labels", labels}}},
              {"status", {{"allocatable", {{"cpu", "8"}, {"nvidia.com/gpu", std::to_string(gpus)}}}}}};
}

}  // namespace

TEST_CASE("offers from the nodes: gpu_products first, then device and catalog names; the most on one node") {
  const auto catalog = gpu::Catalog::builtin();
  KubernetesSettings settings;
  settings.gpu_products = {{"T4", 0, {"t4-custom"}}, {"A100", 80, {"big-a100"}}};
  const std::string label = settings.gpu_label;
  const json nodes = json::array({gpu_node("a", label, "t4-custom", 4),
                                  gpu_node("b", label, "Tesla-T4", 8),
                                  gpu_node("c", label, "NVIDIA-A100-SXM4-40GB", 2),
                                  gpu_node("d", label, "big-a100", 8),
                                  gpu_node("e", label, "NVIDIA-H100-80GB-HBM3", 8, "81559"),
                                  gpu_node("f", label, "mystery-9000", 2),
                                  gpu_node("g", label, "", 1),
                                  gpu_node("cpu", label, "", 0)});
  std::vector<std::string> skipped;
  const auto offers = node_offers(nodes, settings, catalog, skipped);
  CHECK(offers == std::vector<gpu::GpuSlot>{{"T4", 16, 8}, {"A100", 40, 2}, {"A100", 80, 8}, {"H100", 80, 8}});
  CHECK(skipped == std::vector<std::string>{
                       "node f: nvidia.com/gpu.product=mystery-9000 is no GPU type of the catalog; map it in gpu_products "
                       "(e.g. T4: mystery-9000)",
                       "node g has 1 nvidia.com/gpu but no label nvidia.com/gpu.product"});

  KubernetesSettings gke;
  gke.gpu_label = "cloud.google.com/gke-accelerator";
  const json gke_nodes = json::array({gpu_node("t", gke.gpu_label, "nvidia-tesla-t4", 4),
                                      gpu_node("a", gke.gpu_label, "nvidia-a100-80gb", 8),
                                      gpu_node("l", gke.gpu_label, "nvidia-l4", 1)});
  skipped.clear();
  CHECK(node_offers(gke_nodes, gke, catalog, skipped) ==
        std::vector<gpu::GpuSlot>{{"T4", 16, 4}, {"L4", 24, 1}, {"A100", 80, 8}});
  CHECK(skipped.empty());

  // A type only the nodes name: the pod's affinity takes their values for it.
  CHECK(node_label_values(nodes, settings, catalog, "T4", 0, 0) == std::vector<std::string>{"Tesla-T4", "t4-custom"});
  CHECK(node_label_values(nodes, settings, catalog, "A100", 80, 0) == std::vector<std::string>{"big-a100"});
  CHECK(node_label_values(nodes, settings, catalog, "A100", 40, 40) == std::vector<std::string>{"NVIDIA-A100-SXM4-40GB"});
  CHECK(node_label_values(nodes, settings, catalog, "L4", 0, 0).empty());
}
