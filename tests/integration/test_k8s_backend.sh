#!/usr/bin/env bash
# The kubernetes backend against a real control plane (tests/fixtures/k8s_cluster.sh), asserted
# through the API: no secret value in any Job or Pod JSON, the run's Secret is gone (404) after the
# run, a gpurun-built image runs by digest, spec.nodeName is the node with the asked GPU (the Modal
# scenario: A100 functions on the A100 node, T4 on the T4 node, an impossible request naming the
# offers), and the kubeconfig's x509 context and an exec credential plugin reach the API. Also: the
# manifest's cpu/memory as the pod's requests, offers from the nodes' labels for a cloud without
# gpus:, a host function's directory as a layer on default_image, prune deleting the runs' Jobs.
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
    default_image: "127.0.0.1:$PORT_R/base/busybox:v1"
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
  k8s-disc:
    backend: kubernetes
    kubeconfig: $KUBECONFIG
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

mkdir -p app/src base
python3 "$HERE/make_busybox_layout.py" app/base "$(command -v busybox)"
echo "only the image has this" > app/src/message.txt
echo "from the manifest dir" > app/data.txt
printf 'base/\n' > app/.gpurunignore

# The cloud's default_image, in its registry: host functions there run on it plus their directory.
python3 "$HERE/make_busybox_layout.py" base/layout "$(command -v busybox)"
printf 'app: base\nimages:\n  busybox: {base: "oci:./layout"}\nfunctions:\n  hold: {image: busybox, command: ["true"]}\n' \
  > base/gpurun.yaml
run_cmd deploy base/gpurun.yaml
expect_eq "default_image deployed: exit ($ERR)" 0 "$RC"
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
    cpu: 0.5
    memory: 64MiB
  imaged:
    image: tiny
    command: ["sh", "-c", "echo imaged"]
  plain:
    command: ["sh", "-c", "echo plain-ok"]
  hostread:
    command: ["cat", "data.txt"]
  ticker:
    command: ["sh", "-c", "echo tick-one; sleep 7; date +%s > two-at; echo tick-two"]
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
expect_eq "small: the manifest's cpu and memory are the pod's requests" '{"cpu": "500m", "memory": "67108864"}' \
  "$(jobs_of "$SMALL" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["items"][0]["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"], sort_keys=True))')"
expect_eq "small: memory limit = request" "67108864" \
  "$(pods_of "$SMALL" | pod_field '["spec"]["containers"][0]["resources"]["limits"]["memory"]')"

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

# --- A cloud without gpus: offers from the nodes' labels and allocatable nvidia.com/gpu ---
run_cmd plan --cloud k8s-disc
expect_eq "discovered: plan exit ($ERR)" 0 "$RC"
expect_contains "discovered: A100 function planned with the A100 node's offer" "k8s-disc" "$(echo "$OUT" | grep '^big ')"
expect_contains "discovered: A100-40GB:2" "A100-40GB:2" "$(echo "$OUT" | grep '^big ')"
run_cmd gpus
expect_contains "discovered: gpus lists the nodes' offers" "k8s-disc (T4:4)" "$OUT"
run_cmd run big --cloud k8s-disc
expect_eq "discovered: big exit ($ERR)" 0 "$RC"
DISC=$("$GPURUN" ps --all --json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["cloud"]=="k8s-disc"][0])')
expect_eq "discovered: on the A100 node" "gpu-a100-1" "$(pods_of "$DISC" | pod_field '["spec"]["nodeName"]')"
expect_contains "discovered: the affinity names the nodes' value" "NVIDIA-A100-SXM4-40GB" \
  "$(jobs_of "$DISC" | pod_field '["spec"]["template"]["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"][0]["matchExpressions"][0]["values"][0]')"
run_cmd run small --cloud k8s-disc --gpu A100-40GB:8
expect_eq "discovered impossible: exit" 125 "$RC"
expect_contains "discovered impossible: names the nodes' offers" \
  "k8s-disc offers T4:4, A100-40GB:2 (from the labels nvidia.com/gpu.product and allocatable nvidia.com/gpu of its nodes)" "$ERR"
# An API that does not answer: no offers, and the error says why.
DEAD_PORT=$(free_port)
sed "s#server: .*#server: \"https://127.0.0.1:$DEAD_PORT\", certificate-authority: $K8S_CA}#" "$TEST_DIR/exec-kubeconfig" > "$TEST_DIR/dead-kubeconfig"
printf 'clouds:\n  k8s-dead: {backend: kubernetes, kubeconfig: %s, namespace: ml, default_image: "busybox:1.36"}\nsecrets:\n  svc: {API_TOKEN: dead-cloud-value}\n' \
  "$TEST_DIR/dead-kubeconfig" > "$TEST_DIR/dead.yaml"
chmod 600 "$TEST_DIR/dead.yaml"
run_cmd --config "$TEST_DIR/dead.yaml" plan --cloud k8s-dead
expect_eq "unreachable API: unschedulable" 3 "$RC"
expect_contains "unreachable API: the error says why" "k8s-dead offers no GPUs (cannot list the GPU nodes of cloud 'k8s-dead': " "$ERR"
expect_contains "unreachable API: a warning with the fix" "check that its API server is up, or declare its GPUs with 'gpus:'" "$ERR"

# --- A host function: the manifest's directory as a layer on default_image, by digest ---
run_cmd run hostread
expect_eq "host function: exit ($ERR)" 0 "$RC"
expect_contains "host function: reads the manifest's directory" "from the manifest dir" "$OUT"
HOSTRUN=$("$GPURUN" ps --all --json | python3 -c 'import json,sys; print([r["id"] for r in json.load(sys.stdin) if r["function"]=="hostread"][0])')
HOSTIMG=$(pods_of "$HOSTRUN" | pod_field '["spec"]["containers"][0]["image"]')
expect_contains "host function: the pod's image is by digest" "127.0.0.1:$PORT_R/modal/host.files@sha256:" "$HOSTIMG"
expect_eq "host function: the working dir is the manifest's" "$PWD" "$(pods_of "$HOSTRUN" | pod_field '["spec"]["containers"][0]["workingDir"]')"
LAYER_FILES=$(python3 - "$REGISTRY" "${HOSTIMG#*@}" "$PWD" <<'PY'
import io, json, sys, tarfile, urllib.request
reg, digest, cwd = sys.argv[1:]
req = urllib.request.Request(f"{reg}/v2/modal/host.files/manifests/{digest}",
                             headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
manifest = json.load(urllib.request.urlopen(req))
top = manifest["layers"][-1]["digest"]
blob = urllib.request.urlopen(f"{reg}/v2/modal/host.files/blobs/{top}").read()
names = ["/" + n.lstrip("./") for n in tarfile.open(fileobj=io.BytesIO(blob)).getnames()]
print("\n".join(n[len(cwd):] for n in names if n.startswith(cwd + "/")))
PY
)
expect_contains "host function: the layer holds the manifest's files at their path" "/data.txt" "$LAYER_FILES"
expect_contains "host function: ... and its subfolders" "/src/message.txt" "$LAYER_FILES"
expect_not_contains "host function: .gpurunignore applies" "/base/" "$LAYER_FILES"

# --- logs -f follows the pod log stream: a line shows before the next is written, few log GETs ---
TICK=$("$GPURUN" run ticker --detach)
"$GPURUN" logs -f "$TICK" > "$TEST_DIR/tick.out" 2> "$TEST_DIR/tick.err" &
TICK_LOGS=$!
shows_tick_one() { grep -q tick-one "$TEST_DIR/tick.out"; }
check; wait_until 30 shows_tick_one || fail "logs -f: tick-one never showed: $(cat "$TEST_DIR/tick.err")"
check; [ ! -e two-at ] || fail "logs -f: tick-one showed only after tick-two was written"
wait "$TICK_LOGS"
expect_eq "logs -f: exit ($(cat "$TEST_DIR/tick.err"))" 0 "$?"
expect_eq "logs -f: every line once" $'tick-one\ntick-two' "$(cat "$TEST_DIR/tick.out")"
TICK_GETS=$(grep -i "/gpurun-modal-ticker-$TICK-1-" "$K8S_DIR/log-requests")
expect_contains "logs -f: the log is followed over the stream" "follow=true" "$TICK_GETS"
# Polling once a second would GET the log 7+ times; the first fetch, the stream (plus a reconnect
# or two when the container ended) and the final fetch take at most 5.
check; [ "$(printf '%s\n' "$TICK_GETS" | wc -l)" -le 5 ] || fail "logs -f: too many pod log GETs: $TICK_GETS"
rm -f two-at

# --- prune deletes the pruned runs' Jobs (kept for logs until then) ---
expect_eq "before prune: big's Job is kept" 200 "$(api_status "/apis/batch/v1/namespaces/ml/jobs/gpurun-modal-big-$BIG-1")"
sed "s#kubeconfig: $KUBECONFIG#kubeconfig: $TEST_DIR/dead-kubeconfig#" "$XDG_CONFIG_HOME/gpurun/config.yaml" > "$TEST_DIR/dead-all.yaml"
chmod 600 "$TEST_DIR/dead-all.yaml"
run_cmd --config "$TEST_DIR/dead-all.yaml" prune --older-than 0s --yes
expect_contains "prune, API unreachable: the run is kept" "gpurun: warning: run $BIG is kept: " "$ERR"
expect_eq "prune, API unreachable: big's Job is still there" 200 "$(api_status "/apis/batch/v1/namespaces/ml/jobs/gpurun-modal-big-$BIG-1")"
run_cmd logs "$BIG"
expect_eq "logs of an ended run: exit ($ERR)" 0 "$RC"
expect_contains "prune, API unreachable: big's log is still there, masked" "big-on-a100 token=***" "$OUT"
run_cmd prune --older-than 0s --yes
expect_eq "prune: exit ($ERR)" 0 "$RC"
expect_eq "prune: big's Job is gone" 404 "$(api_status "/apis/batch/v1/namespaces/ml/jobs/gpurun-modal-big-$BIG-1")"
expect_eq "prune: no Job of small is left" "" "$(jobs_of "$SMALL" | pod_field '["metadata"]["name"]')"
expect_eq "prune: no Job of the host function is left" "" "$(jobs_of "$HOSTRUN" | pod_field '["metadata"]["name"]')"
pod_count() { pods_of "$1" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))'; }
no_pods_of() { [ "$(pod_count "$1")" = 0 ]; }
wait_until 20 no_pods_of "$BIG"
expect_eq "prune: big's pods are deleted with its Job" 0 "$(pod_count "$BIG")"

finish
