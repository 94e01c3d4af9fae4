#!/usr/bin/env bash
# The kubernetes backend against a real control plane (tests/fixtures/k8s_cluster.sh), asserted
# through the API: no secret value in any Job or Pod JSON, the run's Secret is gone (404) after the
# run, a gpurun-built image runs by digest, spec.nodeName is the node with the asked GPU (the Modal
# scenario: A100 functions on the A100 node, T4 on the T4 node, an impossible request naming the
# offers), and the kubeconfig's x509 context and an exec credential plugin reach the API.
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$HERE/../fixtures/k8s_cluster.sh"
# The binaries' cache, named before lib.sh points XDG_CACHE_HOME at the test's own directory.
GPURUN_K8S_BIN=$(k8s_cluster_bin_dir)
export GPURUN_K8S_BIN
source "$HERE/lib.sh"
source "$HERE/require_tools.sh"
source "$HERE/registry.sh"
PATH="$GPURUN_K8S_BIN:$PATH" require_tools \
  "run scripts/build-k8s-control-plane, or apt-get install etcd-server openssl curl python3 docker-registry busybox-static" \
  kube-apiserver etcd openssl curl python3 docker-registry busybox

K8S_DIR="$TEST_DIR/k8s"
trap 'k8s_cluster_stop "$K8S_DIR"; stop_registries; cleanup' EXIT
k8s_cluster_start "$K8S_DIR" >/dev/null || { echo "FAIL: the Kubernetes fixture did not start" >&2; exit 1; }
start_registry R
REGISTRY="http://127.0.0.1:$PORT_R"

api() { curl -sS --cacert "$K8S_CA" -H "Authorization: Bearer $K8S_TOKEN" "$K8S_API$1"; }
api_status() { curl -sS -o /dev/null -w '%{http_code}' --cacert "$K8S_CA" -H "Authorization: Bearer $K8S_TOKEN" "$K8S_API$1"; }
# pods_of RUN_ID: the run's pods as the API lists them (JSON).
pods_of() { api "/api/v1/namespaces/ml/pods?labelSelector=gpurun.dev%2Frun%3D$1"; }
jobs_of() { api "/apis/batch/v1/namespaces/ml/jobs?labelSelector=gpurun.dev%2Frun%3D$1"; }
pod_field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(" ".join(eval("p"+sys.argv[1]) for p in d["items"]))' "$1"; }

mkdir -p "$XDG_CONFIG_HOME/gpurun"
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: k8s
clouds:
  k8s:
    backend: kubernetes
    kubeconfig: $KUBECONFIG
    namespace: ml
    registry: "$REGISTRY"
    default_image: "busybox:1.36"
    gpu_products: {T4: Tesla-T4, A100-40GB: NVIDIA-A100-SXM4-40GB}
    gpus: ["T4:4", "A100-40GB:2"]
    storage_class: manual
    volume_size: 1Gi
  k8s-x509:
    backend: kubernetes
    kubeconfig: $KUBECONFIG
    context: gpurun-test-x509
    namespace: ml
    default_image: "busybox:1.36"
  k8s-exec:
    backend: kubernetes
    kubeconfig: $TEST_DIR/exec-kubeconfig
    namespace: ml
    default_image: "busybox:1.36"
secrets:
  svc: {API_TOKEN: "k8s-secret-value-123"}
YAML
chmod 600 "$XDG_CONFIG_HOME/gpurun/config.yaml"

# A kubeconfig whose user is an exec credential plugin printing the admin token.
printf '#!/bin/sh\necho "{\\"apiVersion\\":\\"client.authentication.k8s.io/v1beta1\\",\\"kind\\":\\"ExecCredential\\",\\"status\\":{\\"token\\":\\"%s\\"}}"\n' \
  "$K8S_TOKEN" > "$TEST_DIR/token-plugin"
chmod 700 "$TEST_DIR/token-plugin"
cat > "$TEST_DIR/exec-kubeconfig" <<YAML
apiVersion: v1
kind: Config
current-context: plugin
clusters:
- name: lab
  cluster: {server: "$K8S_API", certificate-authority: $K8S_CA}
users:
- name: plugin
  user:
    exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: $TEST_DIR/token-plugin}
contexts:
- name: plugin
  context: {cluster: lab, user: plugin}
YAML

mkdir -p app/src
python3 "$HERE/make_busybox_layout.py" app/base "$(command -v busybox)"
echo "only the image has this" > app/src/message.txt
cat > app/gpurun.yaml <<'YAML'
app: modal
images:
  tiny:
    base: oci:./base
    add: [./src]
functions:
  big:
    command: ["sh", "-c", "echo big-on-a100 token=$API_TOKEN"]
    gpu: A100-40GB:2
    secrets: [svc]
  small:
    command: ["sh", "-c", "echo small-on-t4"]
    gpu: T4
  imaged:
    image: tiny
    command: ["sh", "-c", "echo imaged"]
  plain:
    command: ["sh", "-c", "echo plain-ok"]
YAML
cd app

# --- A100 function with a secret: on the A100 node, the value only in the Secret ---
run_cmd run big
expect_eq "big: exit" 0 "$RC"
expect_contains "big: output, the secret masked" "big-on-a100 token=***" "$OUT"
expect_not_contains "big: the value is never shown" "k8s-secret-value-123" "$OUT$ERR"
BIG=$("$GPURUN" ps --all --json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["function"]=="big"][0])')
expect_eq "big: on the A100 node" "gpu-a100-1" "$(pods_of "$BIG" | pod_field '["spec"]["nodeName"]')"
expect_eq "big: 2 GPUs asked" "2" "$(pods_of "$BIG" | pod_field '["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"]')"
expect_not_contains "big: no secret value in the Job" "k8s-secret-value-123" "$(jobs_of "$BIG")"
expect_not_contains "big: no secret value in the Pod" "k8s-secret-value-123" "$(pods_of "$BIG")"
expect_contains "big: the pod reads the Secret by envFrom" "gpurun-$BIG-secrets" "$(pods_of "$BIG")"
expect_eq "big: the Secret is gone after the run" 404 "$(api_status "/api/v1/namespaces/ml/secrets/gpurun-$BIG-secrets")"
expect_contains "ps shows the Job as the remote id" "gpurun-modal-big-$BIG-1" "$("$GPURUN" ps --all --json)"

# --- T4 function: on the T4 node ---
run_cmd run small
expect_eq "small: exit" 0 "$RC"
expect_contains "small: output" "small-on-t4" "$OUT"
SMALL=$("$GPURUN" ps --all --json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["function"]=="small"][0])')
expect_eq "small: on the T4 node" "gpu-t4-1" "$(pods_of "$SMALL" | pod_field '["spec"]["nodeName"]')"

# --- An impossible request names the offers ---
run_cmd run small --gpu A100-40GB:8
expect_eq "impossible: exit" 125 "$RC"
expect_contains "impossible: names the offers" "A100-40GB:2" "$ERR"

# --- A gpurun-built image runs by digest ---
run_cmd run imaged
expect_eq "imaged: exit" 0 "$RC"
IMG=$("$GPURUN" ps --all --json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["function"]=="imaged"][0])')
expect_contains "imaged: the pod's image is by digest" "127.0.0.1:$PORT_R/modal/tiny@sha256:" \
  "$(pods_of "$IMG" | pod_field '["spec"]["containers"][0]["image"]')"

# --- The x509 context (client certificate and key in memory) and an exec plugin ---
run_cmd run plain --cloud k8s-x509
expect_eq "x509 context: exit" 0 "$RC"
expect_contains "x509 context: output" "plain-ok" "$OUT"
check; [ -z "$(grep -rl 'BEGIN.*PRIVATE KEY' "$GPURUN_STATE_DIR" 2>/dev/null)" ] || fail "a private key was written under the state dir"
run_cmd run plain --cloud k8s-exec
expect_eq "exec plugin: exit" 0 "$RC"
expect_contains "exec plugin: output" "plain-ok" "$OUT"

finish
