#pragma once

// The Kubernetes backend: a run is one batch/v1 Job per attempt (backoffLimit 0; retries are
// gpurun's), its secret values in one Secret the pod reads by envFrom (deleted when the run ends),
// volumes PersistentVolumeClaims. Status comes from LISTs of the run's Jobs and Pods by label;
// logs from the pod log API, turned into gpurun's record format. runs.remote_id = the current Job.

#include <memory>

#include "cloud/backend/backend.hpp"
#include "cloud/backend/kubernetes/kubernetes_settings.hpp"

namespace gpurun::cloud {

// A kubernetes backend for `cloud` (its settings parsed by the registry's key parser). `config`
// (may be null) gives the secret values that `logs` masks.
util::Result<std::unique_ptr<Backend>> make_kubernetes_backend(const CloudConfig* cloud, const Config* config = nullptr);

// The image reference the nodes pull for `spec`: HOST/REPO@sha256:... for gpurun-built images,
// else `settings.default_image` as given; an error when there is neither.
util::Result<std::string> pod_image(const RunSpec& spec, const KubernetesSettings& settings, const std::string& cloud);

}  // namespace gpurun::cloud
