#!/usr/bin/env bash
# The Kubernetes test fixture (tests/fixtures/k8s_cluster.sh): a real v1.20.2 control plane on
# loopback with simulated GPU nodes. Checked through the API with curl, as a token user and as an
# x509 user: nodes Ready with GPUs; a GPU Job with a Secret env and node affinity lands on the A100
# node and logs the secret; exit codes are recorded; a PVC binds to a pre-created PV and carries a
# file from one pod to the next; deleting a pod kills its process; too many GPUs stay Pending with
# the scheduler's event; stop leaves no process behind.
# shellcheck disable=SC2016 # the pods' commands expand their own $VARIABLES
set -euo pipefail
SRC=${GPURUN_SOURCE_DIR:-$(cd "$(dirname "$0")/../.." && pwd)}
source "$SRC/tests/fixtures/k8s_cluster.sh"
source "$(dirname "${BASH_SOURCE[0]}")/require_tools.sh"
PATH="$(k8s_cluster_bin_dir):$PATH" require_tools \
  "run scripts/build-k8s-control-plane (scripts/test does), or apt-get install etcd-server openssl curl jq python3" \
  kube-apiserver kube-controller-manager kube-scheduler etcd openssl curl jq python3 unshare

fail() { echo "FAIL: $*" >&2; exit 1; }
# wait_for SECONDS WHAT CMD...: poll CMD until it succeeds.
wait_for() {
  local end=$((SECONDS + $1)) what=$2
  shift 2
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || fail "timed out waiting for $what"
    sleep 0.2
  done
}

DIR=$(mktemp -d "${TMPDIR:-/tmp}/gpurun-k8s-XXXXXX")
cleanup() {
  k8s_cluster_stop "$DIR"
  rm -rf "$DIR"
}
trap cleanup EXIT

k8s_cluster_start "$DIR"

# Token user (admin), the x509 user of the kubeconfig's second context, and no credentials.
kube() { curl -sS --cacert "$K8S_CA" -H "Authorization: Bearer $K8S_TOKEN" "$@"; }
get() { kube "$K8S_API$1"; }
post() { kube -X POST -H 'Content-Type: application/json' --data "$2" "$K8S_API$1"; }
kubeconfig_field() { # USER FIELD: a base64 field of a user in the kubeconfig, decoded
  python3 - "$KUBECONFIG" "$1" "$2" <<'EOF'
import base64, re, sys
text = open(sys.argv[1]).read()
block = text.split("- name: " + sys.argv[2] + "\n", 1)[1]
print(base64.b64decode(re.search(sys.argv[3] + r": (\S+)", block).group(1)).decode(), end="")
EOF
}
kubeconfig_field gpurun-admin-x509 client-certificate-data >"$DIR/x509.crt"
kubeconfig_field gpurun-admin-x509 client-key-data >"$DIR/x509.key"
grep -q 'name: gpurun-test-x509' "$KUBECONFIG" || fail "kubeconfig lacks the x509 context"
x509() { curl -sS --cacert "$K8S_CA" --cert "$DIR/x509.crt" --key "$DIR/x509.key" "$K8S_API$1"; }
status_of() { curl -s -o /dev/null -w '%{http_code}' --cacert "$K8S_CA" "$@"; }
# gone PGID: no live process in the group (a zombie that PID 1 does not reap counts as gone).
gone() {
  local stat
  for stat in /proc/[0-9]*/stat; do
    { read -r stat <"$stat"; } 2>/dev/null || continue
    stat=${stat##*) }
    read -r state _ pgid _ <<<"$stat"
    [ "$pgid" != "$1" ] || [ "$state" = Z ] || return 1
  done
}
pod_succeeded() { [ "$(get "/api/v1/namespaces/ml/pods/$1" | jq -r .status.phase)" = Succeeded ]; }

# --- nodes, both auth methods ------------------------------------------------------------------
nodes=$(get /api/v1/nodes | jq -r '.items[] | [.metadata.name,
  (.status.conditions[] | select(.type == "Ready") | .status),
  (.status.allocatable["nvidia.com/gpu"] // "-"), (.metadata.labels["nvidia.com/gpu.product"] // "-")] | join(" ")' | sort)
expected="cpu-1 True - -
gpu-a100-1 True 2 NVIDIA-A100-SXM4-40GB
gpu-t4-1 True 4 Tesla-T4"
[ "$nodes" = "$expected" ] || fail "nodes (token): [$nodes], expected [$expected]"
[ "$(x509 /api/v1/nodes | jq -r '.items | length')" = 3 ] || fail "x509 user cannot list the 3 nodes"
[ "$(x509 /api/v1/namespaces/ml | jq -r .status.phase)" = Active ] || fail "namespace ml is not Active (x509)"
code=$(status_of "$K8S_API/api/v1/nodes")
[ "$code" = 403 ] || fail "anonymous GET nodes answered $code, expected 403"
code=$(status_of -H "Authorization: Bearer $K8S_TOKEN_UNPRIVILEGED" "$K8S_API/api/v1/nodes")
[ "$code" = 403 ] || fail "unprivileged token GET nodes answered $code, expected 403"
code=$(status_of -H "Authorization: Bearer not-a-token" "$K8S_API/api/v1/nodes")
[ "$code" = 401 ] || fail "a wrong token answered $code, expected 401"

# --- a GPU Job with a Secret env and node affinity ------------------------------------------------
post /api/v1/namespaces/ml/secrets '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"job-secret"},
  "stringData":{"token":"s3cr3t-value"}}' >/dev/null
post /apis/batch/v1/namespaces/ml/jobs '{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"gpu-job"},
 "spec":{"backoffLimit":0,"template":{"spec":{"restartPolicy":"Never",
  "affinity":{"nodeAffinity":{"requiredDuringSchedulingIgnoredDuringExecution":{"nodeSelectorTerms":[{"matchExpressions":[
    {"key":"nvidia.com/gpu.product","operator":"In","values":["NVIDIA-A100-SXM4-40GB"]}]}]}}},
  "containers":[{"name":"main","image":"nvidia/cuda:12.4.0-base-ubuntu22.04",
   "command":["sh","-c","echo \"hello from $HOSTNAME gpus=$NVIDIA_VISIBLE_DEVICES\"; echo \"secret=$SECRET\"; sleep 1; echo done"],
   "env":[{"name":"SECRET","valueFrom":{"secretKeyRef":{"name":"job-secret","key":"token"}}}],
   "resources":{"limits":{"nvidia.com/gpu":1}}}]}}}}' >/dev/null
job_done() { [ "$(get /apis/batch/v1/namespaces/ml/jobs/gpu-job | jq -r '.status.succeeded // 0')" = 1 ]; }
wait_for 60 "job gpu-job to succeed" job_done
pod=$(get '/api/v1/namespaces/ml/pods?labelSelector=job-name%3Dgpu-job' | jq -c '.items[0]')
pod_name=$(jq -r .metadata.name <<<"$pod")
[ "$(jq -r .spec.nodeName <<<"$pod")" = gpu-a100-1 ] || fail "gpu-job ran on $(jq -r .spec.nodeName <<<"$pod")"
term=$(jq -r '.status.containerStatuses[0].state.terminated | "\(.exitCode) \(.reason)"' <<<"$pod")
[ "$term" = "0 Completed" ] || fail "gpu-job's container terminated [$term], expected [0 Completed]"
log=$(get "/api/v1/namespaces/ml/pods/$pod_name/log")
[ "$log" = "$(printf 'hello from %s gpus=0\nsecret=s3cr3t-value\ndone' "$pod_name")" ] || fail "gpu-job log: [$log]"
# The kubelet log options, through the API server's proxy to the simulator (TLS).
[ "$(get "/api/v1/namespaces/ml/pods/$pod_name/log?tailLines=1")" = "done" ] || fail "tailLines=1"
stamps=$(get "/api/v1/namespaces/ml/pods/$pod_name/log?timestamps=true" | cut -d' ' -f1)
first=$(date -d "$(head -1 <<<"$stamps")" +%s.%N)
last=$(date -d "$(tail -1 <<<"$stamps")" +%s.%N)
python3 -c "import sys; sys.exit(not 0.9 < $last - $first < 5)" ||
  fail "timestamps are not the times the lines were written: $stamps"

# --- missing Secret, invalid image, Job and pod deadlines, log follow (started together) ----------
pod_json() { # NAME EXTRA-SPEC-JSON CONTAINER-EXTRA-JSON
  echo "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"$1\"},\"spec\":{\"restartPolicy\":\"Never\"$2,
   \"containers\":[{\"name\":\"main\",\"image\":\"busybox\"$3}]}}"
}
post /api/v1/namespaces/ml/pods "$(pod_json needs-secret '' ',"command":["sh","-c","echo X=$X"],
  "envFrom":[{"secretRef":{"name":"later"}}]')" >/dev/null
post /api/v1/namespaces/ml/pods "$(pod_json bad-image '' ',"command":["true"]' | sed 's|"busybox"|"invalid/nope:1"|')" >/dev/null
post /api/v1/namespaces/ml/pods "$(pod_json follow '' ',"command":["sh","-c","for i in 1 2 3 4 5; do echo line $i; sleep 1; done"]')" >/dev/null
post /apis/batch/v1/namespaces/ml/jobs '{"apiVersion":"batch/v1","kind":"Job","metadata":{"name":"deadline"},
 "spec":{"activeDeadlineSeconds":3,"backoffLimit":0,"template":{"spec":{"restartPolicy":"Never",
  "containers":[{"name":"main","image":"busybox","command":["sleep","60"]}]}}}}' >/dev/null
# A pod's own deadline (the kubelet's): SIGTERM (ignored here), SIGKILL after the 1 s grace period;
# the pod stays, Failed with reason DeadlineExceeded, and its log stays readable.
post /api/v1/namespaces/ml/pods "$(pod_json pod-deadline ',"activeDeadlineSeconds":2,"terminationGracePeriodSeconds":1' \
  ',"command":["sh","-c","exec 2>/dev/null; trap \"echo got-term\" TERM; echo before-deadline; while :; do sleep 0.2; done"]')" >/dev/null
waiting_reason() { get "/api/v1/namespaces/ml/pods/$1" | jq -r '.status.containerStatuses[0].state.waiting.reason'; }
is_waiting() { [ "$(waiting_reason "$1")" = "$2" ]; }
is_running() { [ "$(get "/api/v1/namespaces/ml/pods/$1" | jq -r '.status.containerStatuses[0].state | has("running")')" = true ]; }
deadline_running() {
  [ "$(get '/api/v1/namespaces/ml/pods?labelSelector=job-name%3Ddeadline' |
    jq -r '.items[0].status.containerStatuses[0].state | has("running")')" = true ]
}
wait_for 30 "the deadline job's pod to run" deadline_running
deadline_pid=$(get '/api/v1/namespaces/ml/pods?labelSelector=job-name%3Ddeadline' |
  jq -r '.items[0].status.containerStatuses[0].containerID' | sed 's|.*://||')
grep -q '^sleep' "/proc/$deadline_pid/cmdline" || fail "the deadline job's pid $deadline_pid is not its sleep"
wait_for 30 "pod follow to run" is_running follow
t0=$(date +%s.%N)
log=$(get "/api/v1/namespaces/ml/pods/follow/log?follow=true")
took=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
[ "$log" = "$(printf 'line %s\n' 1 2 3 4 5 | head -c -1)" ] || fail "follow log: [$log]"
python3 -c "import sys; sys.exit(not 1.5 < $took < 15)" || fail "follow ended after ${took}s, expected when the container exits (~4-5 s)"
wait_for 30 "needs-secret: CreateContainerConfigError" is_waiting needs-secret CreateContainerConfigError
phase=$(get /api/v1/namespaces/ml/pods/needs-secret | jq -r .status.phase)
[ "$phase" = Pending ] || fail "needs-secret is $phase, expected Pending"
post /api/v1/namespaces/ml/secrets '{"apiVersion":"v1","kind":"Secret","metadata":{"name":"later"},"stringData":{"X":"42"}}' >/dev/null
wait_for 30 "pod needs-secret to succeed once the Secret exists" pod_succeeded needs-secret
[ "$(get /api/v1/namespaces/ml/pods/needs-secret/log)" = X=42 ] || fail "needs-secret log: [$(get /api/v1/namespaces/ml/pods/needs-secret/log)]"
wait_for 30 "bad-image: ErrImagePull" is_waiting bad-image ErrImagePull
phase=$(get /api/v1/namespaces/ml/pods/bad-image | jq -r .status.phase)
[ "$phase" = Pending ] || fail "bad-image is $phase, expected Pending"
job_deadline() {
  [ "$(get /apis/batch/v1/namespaces/ml/jobs/deadline | jq -r '.status.conditions[]? | select(.status == "True") | "\(.type) \(.reason)"')" = "Failed DeadlineExceeded" ]
}
wait_for 30 "job deadline: Failed DeadlineExceeded" job_deadline
wait_for 15 "the deadline job's process $deadline_pid to end" gone "$deadline_pid"
pod_deadline() { [ "$(get /api/v1/namespaces/ml/pods/pod-deadline | jq -r .status.phase)" = Failed ]; }
wait_for 30 "pod pod-deadline to fail at its deadline" pod_deadline
got=$(get /api/v1/namespaces/ml/pods/pod-deadline | jq -r '"\(.status.reason)|\(.status.message)|\(.status.containerStatuses[0].state.terminated.exitCode)"')
[ "$got" = "DeadlineExceeded|Pod was active on the node longer than the specified deadline|137" ] ||
  fail "pod past its deadline: [$got], expected DeadlineExceeded, the kubelet's message, exit 137 (SIGKILL after the grace)"
[ "$(get /api/v1/namespaces/ml/pods/pod-deadline/log)" = "$(printf 'before-deadline\ngot-term')" ] ||
  fail "pod-deadline's log after its deadline: [$(get /api/v1/namespaces/ml/pods/pod-deadline/log)]"

# --- a failing pod's exit code -------------------------------------------------------------------
post /api/v1/namespaces/ml/pods '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"fails"},
 "spec":{"restartPolicy":"Never","containers":[{"name":"main","image":"busybox","command":["sh","-c","echo failing >&2; exit 3"]}]}}' >/dev/null
pod_failed() { [ "$(get /api/v1/namespaces/ml/pods/fails | jq -r .status.phase)" = Failed ]; }
wait_for 30 "pod fails to fail" pod_failed
term=$(get /api/v1/namespaces/ml/pods/fails | jq -r '.status.containerStatuses[0].state.terminated | "\(.exitCode) \(.reason)"')
[ "$term" = "3 Error" ] || fail "failing pod terminated [$term], expected [3 Error]"
[ "$(get /api/v1/namespaces/ml/pods/fails/log)" = failing ] || fail "failing pod's stderr is not in its log"

# --- a PVC binds to a pre-created PV; a file written by one pod is read by the next --------------
post /api/v1/namespaces/ml/persistentvolumeclaims '{"apiVersion":"v1","kind":"PersistentVolumeClaim",
 "metadata":{"name":"shared"},"spec":{"storageClassName":"manual","accessModes":["ReadWriteMany"],
 "resources":{"requests":{"storage":"1Gi"}}}}' >/dev/null
pvc_bound() { [ "$(get /api/v1/namespaces/ml/persistentvolumeclaims/shared | jq -r .status.phase)" = Bound ]; }
wait_for 30 "PVC shared to bind" pvc_bound
pv=$(get /api/v1/namespaces/ml/persistentvolumeclaims/shared | jq -r .spec.volumeName)
[[ $pv == pv-[0-9]* ]] || fail "PVC shared bound to [$pv], expected a pre-created pv-N"
pv_dir=$(get "/api/v1/persistentvolumes/$pv" | jq -r .spec.hostPath.path)
mnt=$DIR/mnt/data # the mount point inside the pod (created on the host as an empty directory)
volume_pod() { # NAME COMMAND READONLY
  post /api/v1/namespaces/ml/pods "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"$1\"},
   \"spec\":{\"restartPolicy\":\"Never\",\"volumes\":[{\"name\":\"work\",\"persistentVolumeClaim\":{\"claimName\":\"shared\"}}],
   \"containers\":[{\"name\":\"main\",\"image\":\"busybox\",\"workingDir\":\"$mnt\",\"command\":[\"sh\",\"-c\",\"$2\"],
    \"volumeMounts\":[{\"name\":\"work\",\"mountPath\":\"$mnt\",\"readOnly\":$3}]}]}}" >/dev/null
}
volume_pod writer 'echo written-by-writer > msg; pwd' false
wait_for 30 "pod writer to succeed" pod_succeeded writer
[ "$(cat "$pv_dir/msg")" = written-by-writer ] || fail "the writer's file is not in the PV's directory $pv_dir"
[ ! -e "$mnt/msg" ] || fail "the writer wrote to the host's $mnt instead of the volume"
volume_pod reader 'cat msg; touch ro 2>/dev/null && echo writable || echo read-only' true
wait_for 30 "pod reader to succeed" pod_succeeded reader
log=$(get /api/v1/namespaces/ml/pods/reader/log)
[ "$log" = "$(printf 'written-by-writer\nread-only')" ] || fail "reader log: [$log]"

# An emptyDir of medium Memory at /dev/shm is the pod's own tmpfs, not the host's /dev/shm.
shm_file=gpurun-k8s-test-$$
post /api/v1/namespaces/ml/pods "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"shm\"},
 \"spec\":{\"restartPolicy\":\"Never\",\"volumes\":[{\"name\":\"shm\",\"emptyDir\":{\"medium\":\"Memory\"}}],
 \"containers\":[{\"name\":\"main\",\"image\":\"busybox\",\"command\":[\"sh\",\"-c\",
  \"echo x > /dev/shm/$shm_file && ls /dev/shm\"],\"volumeMounts\":[{\"name\":\"shm\",\"mountPath\":\"/dev/shm\"}]}]}}" >/dev/null
wait_for 30 "pod shm to succeed" pod_succeeded shm
[ "$(get /api/v1/namespaces/ml/pods/shm/log)" = "$shm_file" ] || fail "pod shm saw [$(get /api/v1/namespaces/ml/pods/shm/log)] in /dev/shm"
[ ! -e "/dev/shm/$shm_file" ] || fail "pod shm wrote to the host's /dev/shm"

# --- deleting a pod kills its process group --------------------------------------------------------
running_pod() { # NAME: start a pod running `sleep 300` and print its host pid once it runs
  post /api/v1/namespaces/ml/pods "{\"apiVersion\":\"v1\",\"kind\":\"Pod\",\"metadata\":{\"name\":\"$1\"},
   \"spec\":{\"restartPolicy\":\"Never\",\"terminationGracePeriodSeconds\":2,
   \"containers\":[{\"name\":\"main\",\"image\":\"busybox\",\"command\":[\"sh\",\"-c\",\"sleep 300; echo never\"]}]}}" >/dev/null
  wait_for 30 "pod $1 to run" is_running "$1"
  get "/api/v1/namespaces/ml/pods/$1" | jq -r '.status.containerStatuses[0].containerID' | sed 's|.*://||'
}
pid=$(running_pod sleeper)
grep -q '^sh' "/proc/$pid/cmdline" || fail "pod sleeper's pid $pid is not its shell"
kube -X DELETE "$K8S_API/api/v1/namespaces/ml/pods/sleeper" >/dev/null
wait_for 15 "pod sleeper's process group $pid to end" gone "$pid"
pod_gone() { [ "$(status_of -H "Authorization: Bearer $K8S_TOKEN" "$K8S_API/api/v1/namespaces/ml/pods/sleeper")" = 404 ]; }
wait_for 15 "pod sleeper to be deleted" pod_gone

# --- too many GPUs: Pending with the scheduler's event --------------------------------------------
post /api/v1/namespaces/ml/pods '{"apiVersion":"v1","kind":"Pod","metadata":{"name":"greedy"},
 "spec":{"restartPolicy":"Never","nodeSelector":{"nvidia.com/gpu.product":"NVIDIA-A100-SXM4-40GB"},
 "containers":[{"name":"main","image":"busybox","command":["true"],"resources":{"limits":{"nvidia.com/gpu":3}}}]}}' >/dev/null
sched_event() {
  get '/api/v1/namespaces/ml/events?fieldSelector=involvedObject.name%3Dgreedy' |
    jq -r '.items[] | select(.reason == "FailedScheduling") | .message' | grep -q 'Insufficient nvidia.com/gpu'
}
wait_for 30 "FailedScheduling: Insufficient nvidia.com/gpu" sched_event
state=$(get /api/v1/namespaces/ml/pods/greedy | jq -r '"\(.status.phase) \(.spec.nodeName // "unbound")"')
[ "$state" = "Pending unbound" ] || fail "greedy pod is [$state], expected [Pending unbound]"

# --- stop: nothing of the cluster survives, not even a pod's process ------------------------------
# A node simulator that dies leaves its pods' processes; stop finds them by DIR/procs and kills them.
pid=$(running_pod survivor)
kill -KILL "$(cat "$DIR/run/k8s-node-sim.pid")"
sleep 0.5
! gone "$pid" || fail "pod process $pid ended with the node simulator (the test needs it alive)"
k8s_cluster_stop "$DIR"
k8s_cluster_stop "$DIR" # idempotent
gone "$pid" || fail "pod process group $pid survived k8s_cluster_stop"
left=""
for f in /proc/[0-9]*/cmdline; do
  { cmd=$(tr '\0' ' ' <"$f"); } 2>/dev/null || continue
  [[ $cmd != *"$DIR"* ]] || left+="${f%/cmdline}: $cmd; "
done
[ -z "$left" ] || fail "processes left after stop: $left"
if curl -s --max-time 2 --cacert "$K8S_CA" "$K8S_API/readyz" >/dev/null; then
  fail "the API server still answers after stop"
fi
echo "PASS"
