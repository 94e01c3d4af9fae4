#pragma once

// Pure builders of the Kubernetes objects a run creates (a batch/v1 Job per attempt, the run's
// Secret, volumes' PersistentVolumeClaims) and readers of what the API says about them (pod
// conditions and events -> waiting reasons in words). No network, no state.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cloud/backend/kubernetes/kubernetes_settings.hpp"
#include "cloud/plan/run_spec.hpp"
#include "gpu/catalog.hpp"
#include "gpu/spec.hpp"

namespace gpurun::cloud {

// A Kubernetes object name from `text`: lower-case, runs of other characters become '-', at most
// 63 characters (longer ones keep 54 and end in '-' + 8 hex digits of the whole name's SHA-256).
std::string kubernetes_name(std::string_view text);
// A label value from `text` ([A-Za-z0-9-_.], at most 63, same truncation rule).
std::string label_value(std::string_view text);

// The Job name of attempt `attempt` of run `run_id` ("gpurun-<app>-<function>-<run id>-<attempt>").
std::string job_name(const std::string& app, const std::string& function, const std::string& run_id, int attempt);
// The Secret name of a run.
std::string secret_name(const std::string& run_id);
// The PVC name of volume `volume` of `app`.
std::string claim_name(const std::string& app, const std::string& volume);
// The label selector of every object of run `run_id` ("gpurun.dev/run=<id>").
std::string run_selector(const std::string& run_id);

// What one attempt's Job is made of, besides the spec and the cloud's settings.
struct JobRequest {
  std::string run_id;
  int attempt = 1;
  std::string namespace_name;
  std::string image;        // the reference the nodes pull (by digest for gpurun-built images)
  std::string secret;       // the run's Secret name; empty without secrets
  int gpu_count = 0;        // nvidia.com/gpu limit
  std::vector<std::string> gpu_products;  // node label values (empty: any GPU node)
  std::optional<double> cpu;              // cores requested
  std::optional<std::uint64_t> memory_bytes;
  std::vector<std::pair<std::string, std::string>> claims;  // mount path -> PVC name
};

// The Job of one attempt: backoffLimit 0, activeDeadlineSeconds = the spec's timeout,
// terminationGracePeriodSeconds = its kill grace, argv and env verbatim, secrets by envFrom.
nlohmann::json job_json(const RunSpec& spec, const KubernetesSettings& settings, const JobRequest& request);

// The run's Secret holding every secret variable (the only object that holds values).
nlohmann::json secret_json(const std::string& name, const std::string& namespace_name, const std::string& run_id,
                           const SecretValues& secrets);

// A volume's claim (settings' access mode, size and storage class).
nlohmann::json claim_json(const std::string& name, const std::string& namespace_name, const std::string& app,
                          const KubernetesSettings& settings);

// Why a pod waits, in words (empty: it does not): the scheduler's condition message
// ("0/3 nodes are available: 1 Insufficient nvidia.com/gpu, ...") becomes "no node has N free";
// an image pull failure names the image.
std::string pod_waiting_reason(const nlohmann::json& pod, int gpu_count);

// The words for a scheduler message about `gpu_count` GPUs (see pod_waiting_reason).
std::string scheduling_reason(std::string_view message, int gpu_count);

// GPUs of one catalog type (memory_gb 0: any variant) on the cluster's nodes.
struct NodeGpus {
  std::string type;
  int memory_gb = 0;
  int free = 0;
  int total = 0;
};

// The GPUs per `gpu_products` type from the nodes' `gpu_label` and allocatable nvidia.com/gpu,
// minus the nvidia.com/gpu limits of the pods bound to them that have not ended (`nodes` and `pods`
// are the API's lists' items), in config order; with `catalog`, then the types of nodes no entry
// names (node_gpu_type), else those nodes are left out.
std::vector<NodeGpus> node_gpus(const nlohmann::json& nodes, const nlohmann::json& pods, const KubernetesSettings& settings,
                                const gpu::Catalog* catalog = nullptr);

// The catalog type and memory variant of a node's GPUs (count: its allocatable nvidia.com/gpu),
// from its `gpu_label` value: a `gpu_products` value means that entry's type; another value is
// read as a device or catalog name ("NVIDIA-A100-SXM4-40GB", "Tesla-T4", GKE's "nvidia-tesla-t4",
// "nvidia-a100-80gb"). A variant not named comes from the node's nvidia.com/gpu.memory label
// (MiB), else the type's default. nullopt for nodes without GPUs; `why` says why a GPU node's
// value means no catalog type (then also nullopt).
std::optional<gpu::GpuSlot> node_gpu_type(const nlohmann::json& node, const KubernetesSettings& settings,
                                          const gpu::Catalog& catalog, std::string* why = nullptr);

// A cloud's offers from its nodes (node_gpu_type of each), in catalog order: per type and variant,
// the most allocatable on one node (the most one function can get). Nodes whose value means no
// catalog type are left out, each with a sentence in `skipped`.
std::vector<gpu::GpuSlot> node_offers(const nlohmann::json& nodes, const KubernetesSettings& settings,
                                      const gpu::Catalog& catalog, std::vector<std::string>& skipped);

// The `gpu_label` values of the nodes whose GPUs are `type` with memory in [min_gb, max_gb]
// (0: unbounded), sorted and unique (a node affinity for types gpu_products does not name).
std::vector<std::string> node_label_values(const nlohmann::json& nodes, const KubernetesSettings& settings,
                                           const gpu::Catalog& catalog, const std::string& type, int min_gb, int max_gb);

// Why `count` GPUs do not fit, given the asked type's GPUs on the nodes (when known): "all N in
// use" when none is free, else "no node has COUNT free".
std::string gpu_shortage_words(int count, const std::optional<NodeGpus>& gpus);

// The shell's exit code for a container the runtime could not start (reason StartError or
// ContainerCannotRun, which report 128): 127 when its command was not found, 126 when it is not
// executable; nullopt otherwise.
std::optional<int> start_error_code(std::string_view reason, std::string_view message);

// Parses an RFC 3339 time ("2026-12-01T07:25:09.123456789Z") into unix ms; nullopt when malformed.
std::optional<std::int64_t> parse_rfc3339_ms(std::string_view text);

// Formats unix ms as RFC 3339 with nanoseconds in UTC (for sinceTime).
std::string format_rfc3339(std::int64_t unix_ms);

}  // namespace gpurun::cloud
