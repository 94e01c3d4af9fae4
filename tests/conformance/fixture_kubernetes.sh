# Conformance fixture for the Kubernetes backend (sourced by run.sh; see fixture_local.sh for what a
# fixture provides): one real control plane (tests/fixtures/k8s_cluster.sh: kube-apiserver,
# controller-manager and scheduler v1.20.2, etcd, the node simulator) for the whole suite.
source "$(dirname "${BASH_SOURCE[0]}")/../integration/require_tools.sh"
source "$(dirname "${BASH_SOURCE[0]}")/../fixtures/k8s_cluster.sh"
fixture_start() {
  require_tools "apt-get install etcd-server openssl python3 curl; scripts/build-k8s-control-plane" \
    etcd openssl python3 curl "$(k8s_cluster_bin_dir)/kube-apiserver"
  K8S_STATE="$(mktemp -d "${TMPDIR:-/tmp}/gpurun-k8s-conformance.XXXXXX")"
  k8s_cluster_start "$K8S_STATE" >/dev/null || { echo "the Kubernetes fixture did not start" >&2; exit 1; }
  export K8S_STATE KUBECONFIG K8S_API K8S_TOKEN K8S_CA GPURUN_KILL_GRACE=1s
  export FIXTURE_CLOUD=k8s FIXTURE_GPU=T4 FIXTURE_GPU_COUNT=4
  # No node has an H100 and the config offers none: placement refuses it, naming the offers.
  export FIXTURE_UNSCHEDULABLE_GPU=H100 FIXTURE_OFFERS="T4:4, A100-40GB:2"
  export FIXTURE_LOG_DIR="" FIXTURE_REMOTE=1 FIXTURE_QUEUED_SUFFIX=""
  # The pod log API has one stream per container: stderr arrives in stdout (README, Kubernetes).
  export FIXTURE_STDERR_MERGED=1
}
fixture_stop() { k8s_cluster_stop "$K8S_STATE"; rm -rf "$K8S_STATE"; }
fixture_config() {
  cat <<YAML
default_cloud: k8s
clouds:
  k8s:
    backend: kubernetes
    kubeconfig: $KUBECONFIG
    namespace: ml
    default_image: "busybox:1.36"
    gpu_products: {T4: Tesla-T4, A100-40GB: NVIDIA-A100-SXM4-40GB}
    gpus: ["T4:4", "A100-40GB:2"]
    storage_class: manual
    volume_size: 1Gi
YAML
}
# k8s_api METHOD PATH [BODY]: one request to the fixture's API server as its admin.
k8s_api() {
  curl -sS --cacert "$K8S_CA" -H "Authorization: Bearer $K8S_TOKEN" -H 'Content-Type: application/json' \
    -X "$1" "$K8S_API$2" ${3:+--data "$3"}
}
# Deletes every Job gpurun left in the namespace (with their pods) so that the next scenario
# starts on idle nodes.
fixture_scenario_cleanup() {
  k8s_api DELETE "/apis/batch/v1/namespaces/ml/jobs?labelSelector=app.kubernetes.io%2Fmanaged-by%3Dgpurun" \
    '{"kind":"DeleteOptions","apiVersion":"v1","propagationPolicy":"Foreground"}' >/dev/null 2>&1 || true
  wait_until 20 sh -c "[ \"\$(curl -sS --cacert '$K8S_CA' -H 'Authorization: Bearer $K8S_TOKEN' \
    '$K8S_API/api/v1/namespaces/ml/pods' | python3 -c 'import json,sys; print(len(json.load(sys.stdin)[\"items\"]))')\" = 0 ]" || true
}
