#!/usr/bin/env bash
# `backend: ssh` (issue 18) against two real sshd "hosts" on loopback (tests/fixtures/sshd.sh), each
# with its own port, declared GPUs and host-wide lease dir (setgid, group gpurun-lease), reached by
# two clients logged in as two non-root users: the host chosen and why, an unreachable host skipped
# with a warning, six one-GPU runs from both users on the 2-GPU host two at a time, a killed client
# leaving its run going for `logs -f`, an image run and deploy on a cloud without a registry
# (blobs streamed over SSH into the host's cache, never twice), a failed run's end told once,
# `plan` naming the hosts per request, volumes on the host that first ran them, and GPUs found on
# hosts that declare none.
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
. "$HERE/require_tools.sh"
. "$HERE/registry.sh"
require_tools "install openssh-server openssh-client fish bubblewrap psmisc busybox docker-registry" sshd ssh ssh-keygen fish \
  useradd bwrap fuser busybox docker-registry

FIXTURE="$GPURUN_SOURCE_DIR/tests/fixtures/sshd.sh"
USER1=gpurun-ssh USER2=gpurun-ssh2
chmod 755 "$TEST_DIR"  # the login users read the authorized keys and the lease dirs' parent
stop_hosts() {
  local h
  for h in a b; do
    fuser -k -KILL "$TEST_DIR/lease-$h"/runs/*/lock >/dev/null 2>&1 || true
    bash "$FIXTURE" stop "$TEST_DIR/sshd-$h"
  done
  stop_registries
  local home1
  home1=$(getent passwd "$USER1" | cut -d: -f6)
  rm -rf "$home1/fakebin" && sed -i '/fakebin/d' "$home1/.config/fish/config.fish" 2>/dev/null
  cleanup
}
trap stop_hosts EXIT
start_registry R
getent group gpurun-lease >/dev/null || groupadd gpurun-lease
for h in a b; do
  GPURUN_TEST_SSH_USER=$USER1 GPURUN_TEST_SSH_EXTRA_USERS=$USER2 bash "$FIXTURE" start "$TEST_DIR/sshd-$h" ||
    { echo "FAIL: the sshd fixture did not start" >&2; exit 1; }
  mkdir -p "$TEST_DIR/lease-$h" && chgrp gpurun-lease "$TEST_DIR/lease-$h" && chmod 2770 "$TEST_DIR/lease-$h"
done
usermod -aG gpurun-lease $USER1 && usermod -aG gpurun-lease $USER2
# The login users outlive a test: their image caches start empty (what is sent is counted below).
for u in $USER1 $USER2; do rm -rf "$(getent passwd "$u" | cut -d: -f6)/.cache/gpurun/images"; done
PORT_A=$(cat "$TEST_DIR/sshd-a/port") PORT_B=$(cat "$TEST_DIR/sshd-b/port")
cat "$TEST_DIR/sshd-a/known_hosts" "$TEST_DIR/sshd-b/known_hosts" > "$TEST_DIR/known_hosts"

# client N USER: a client with its own state dir and config (the same cloud, logged in as USER);
# the first host listed is unreachable (nothing listens on port 1).
client_config() {
  cat <<YAML
default_cloud: lab
clouds:
  lab:
    backend: ssh
    user: $1
    identity_file: $TEST_DIR/sshd-a/id_ed25519
    ssh_options: [UserKnownHostsFile=$TEST_DIR/known_hosts, GlobalKnownHostsFile=/dev/null, ConnectTimeout=5]
    hosts:
      - {host: 127.0.0.1, port: 1, gpus: ["T4:2"], lease_dir: /nonexistent}
      - {host: 127.0.0.1, port: $PORT_A, gpus: ["T4:2"], lease_dir: $TEST_DIR/lease-a}
      - {host: 127.0.0.1, port: $PORT_B, gpus: ["A100-40GB:1"], lease_dir: $TEST_DIR/lease-b}
  labreg:
    backend: ssh
    registry: "http://127.0.0.1:$PORT_R"
    user: $1
    identity_file: $TEST_DIR/sshd-a/id_ed25519
    ssh_options: [UserKnownHostsFile=$TEST_DIR/known_hosts, GlobalKnownHostsFile=/dev/null]
    hosts:
      - {host: 127.0.0.1, port: $PORT_B, gpus: ["A100-40GB:1"], lease_dir: $TEST_DIR/lease-b}
YAML
}
# The B host's key is another file: authorize client keys of host a on host b too.
cp "$TEST_DIR/sshd-a/id_ed25519.pub" "$TEST_DIR/sshd-b/authorized_keys"
for n in 1 2; do
  mkdir -p "$TEST_DIR/client$n/config/gpurun"
  user_var="USER$n"
  client_config "${!user_var}" > "$TEST_DIR/client$n/config/gpurun/config.yaml"
done
as_client() {  # as_client N ARGS...: gpurun as client N
  local n=$1; shift
  GPURUN_STATE_DIR="$TEST_DIR/client$n/state" XDG_CONFIG_HOME="$TEST_DIR/client$n/config" "$GPURUN" "$@"
}
run_as() {  # run_as N ARGS...: as run_cmd, as client N
  local n=$1; shift
  OUT=$(as_client "$n" "$@" 2>"$TEST_DIR/.err"); RC=$?
  ERR=$(cat "$TEST_DIR/.err")
}

mkdir -p "$TEST_DIR/proj"
cd "$TEST_DIR/proj"
export GPURUN_SECRET_SVC_API_TOKEN=not-the-secret  # the manifest names secret svc
cat > gpurun.yaml <<'YAML'
app: lab
images:
  tools: {base: oci:./base, add: [./data.txt]}
functions:
  hello: {command: [sh, -c, "cat data.txt; echo user=$(id -un)"], gpu: T4}
  big: {command: [sh, -c, "echo big on $CUDA_VISIBLE_DEVICES"], gpu: A100}
  slot: {command: [sh, -c, "echo START $(date +%s.%N); sleep 2; echo END $(date +%s.%N)"], gpu: T4}
  streamer: {command: [sh, -c, "echo first-line; sleep 4; echo second-line; exit 3"], gpu: T4}
  secretive: {command: [sh, -c, "echo token=$API_TOKEN; sleep 3"], secrets: [svc]}
  boxed: {command: [sh, -c, "cat data.txt; ls /usr/bin/apt 2>&1 | head -c 0; echo in-image $(id -un 2>/dev/null || id -u)"], image: tools}
  failing: {command: [sh, -c, "echo bye; exit 4"]}
  vwrite: {command: [sh, -c, "echo written-by-$(id -un) >> /mnt/v/file"], gpu: A100, volumes: {/mnt/v: data}}
  vread: {command: [sh, -c, "cat /mnt/v/file"], volumes: {/mnt/v: data}}
  vt4: {command: ["true"], gpu: T4, volumes: {/mnt/v: data}}
volumes:
  data: {}
YAML
echo "synced-manifest-dir" > data.txt
python3 "$HERE/make_busybox_layout.py" base "$(command -v busybox)"

# 0. --dry-run asks no host (nothing is copied there): no warning about the unreachable one.
run_as 1 run hello --dry-run
expect_eq "dry run: exit" 0 "$RC"
expect_contains "dry run: the spec" '"function":"hello"' "$OUT"
expect_eq "dry run: no host asked" "" "$ERR"

# 1. The host chosen and why; the unreachable one skipped with a warning; the manifest dir synced.
run_as 1 run hello
expect_eq "hello runs in the synced manifest dir, as the login user" $'synced-manifest-dir\nuser=gpurun-ssh' "$OUT"
expect_contains "unreachable host skipped" "gpurun: warning: host 127.0.0.1:1 of cloud 'lab' is unreachable, skipped:" "$ERR"
expect_contains "run says the host and why" "gpurun: host 127.0.0.1:$PORT_A chosen: 2 of its 2 GPUs free" "$ERR"
expect_contains "the job is the host's run" "job 127.0.0.1:$PORT_A:r" "$ERR"
run_as 2 run big
expect_eq "an A100 run goes to the A100 host" "big on 0" "$OUT"
expect_contains "A100 host chosen" "gpurun: host 127.0.0.1:$PORT_B chosen: 1 of its 1 GPUs free" "$ERR"

# 2. Six one-GPU runs from two users on the 2-GPU host: exactly two at a time, all finish.
ids1=() ids2=()
for i in 1 2 3; do
  run_as 1 run slot --detach; ids1+=("$OUT")
  run_as 2 run slot --detach; ids2+=("$OUT")
done
for id in "${ids1[@]}"; do run_as 1 wait "$id"; expect_eq "client 1 run $id finished" 0 "$RC"; done
for id in "${ids2[@]}"; do run_as 2 wait "$id"; expect_eq "client 2 run $id finished" 0 "$RC"; done
intervals=$( { for id in "${ids1[@]}"; do as_client 1 logs "$id"; done; for id in "${ids2[@]}"; do as_client 2 logs "$id"; done; } 2>&1)
most=$(printf '%s\n' "$intervals" | python3 -c '
import sys
ev = []
for line in sys.stdin:
    parts = line.split()
    if len(parts) == 2 and parts[0] in ("START", "END"):
        ev.append((float(parts[1]), 1 if parts[0] == "START" else -1))
ev.sort(key=lambda e: (e[0], e[1]))
now = most = 0
for _, d in ev:
    now += d
    most = max(most, now)
print(len(ev), most)')
expect_eq "six runs, 12 stamps, at most 2 at a time (and 2 did overlap)" "12 2" "$most"

# 3. A killed client leaves its run going; logs -f from the other side of the kill picks it up.
GPURUN_STATE_DIR="$TEST_DIR/client1/state" XDG_CONFIG_HOME="$TEST_DIR/client1/config" "$GPURUN" run streamer \
  > attached.out 2> attached.err &
cli=$!
wait_until 30 grep -q first-line attached.out || fail "the attached run never printed: $(cat attached.err)"
kill -KILL "$cli"; wait "$cli" 2>/dev/null
id=$(as_client 1 ps --all --json | python3 -c 'import json,sys; print(sorted([r for r in json.load(sys.stdin) if r["function"]=="streamer"], key=lambda r: r["created_at"])[-1]["id"])')
run_as 1 logs -f "$id"
expect_eq "logs -f exits with the run's code" 3 "$RC"
expect_eq "logs -f got the whole output" $'first-line\nsecond-line' "$OUT"

# 4. An image run on a cloud without a registry: built here, its blobs streamed into the host's
#    cache; deploy sends only what a host lacks (0 bytes the second time).
run_as 1 run boxed
expect_eq "image run: exit" 0 "$RC"
expect_contains "image run: output" "synced-manifest-dir" "$OUT"
cache="$(getent passwd "$USER1" | cut -d: -f6)/.cache/gpurun/images/blobs/sha256"
check; [ "$(ls "$cache" | wc -l)" -ge 3 ] || fail "the host's image cache holds no blobs: $(ls -la "$cache" 2>&1)"
run_as 2 deploy --json
expect_eq "deploy: exit" 0 "$RC"
first=$(python3 -c 'import json,sys; print(sum(p["bytes_uploaded"] for p in json.loads(sys.argv[1])["image_pushes"]))' "$OUT")
check; [ "${first:-0}" -gt 100000 ] || fail "the first deploy as $USER2 sent too little: $OUT"
run_as 2 deploy --json
expect_eq "redeploy: bytes sent" "0" "$(python3 -c 'import json,sys; print(sum(p["bytes_uploaded"] for p in json.loads(sys.argv[1])["image_pushes"]))' "$OUT")"
run_as 1 run boxed --cloud labreg
expect_eq "image run through the cloud's registry: exit" 0 "$RC"
expect_contains "image run through the registry: output" "synced-manifest-dir" "$OUT"
expect_contains "pushed to the registry" "127.0.0.1:$PORT_R" "$ERR"

# 5. Secrets reach the host on stdin: on no command line (here or there) and in no file of the host.
secret=ssh-backend-secret-$RANDOM$RANDOM
GPURUN_SECRET_SVC_API_TOKEN=$secret run_as 1 run secretive --detach
sid=$OUT
wait_until 30 sh -c "GPURUN_STATE_DIR='$TEST_DIR/client1/state' XDG_CONFIG_HOME='$TEST_DIR/client1/config' '$GPURUN' logs $sid | grep -q token=" ||
  fail "the secret run never printed"
run_as 1 logs "$sid"
expect_eq "the secret is masked" "token=***" "$OUT"
procs=$(ps -eo args)
check; [[ $procs == *"$secret"* ]] && fail "the secret is on a command line: $(printf '%s\n' "$procs" | grep -F -- "$secret")"
run_as 1 wait "$sid"
expect_eq "secret run: exit" 0 "$RC"
check; grep -rqF -- "$secret" "$TEST_DIR" "$(getent passwd "$USER1" | cut -d: -f6)" 2>/dev/null &&
  fail "the secret is stored in $(grep -rlF -- "$secret" "$TEST_DIR" "$(getent passwd "$USER1" | cut -d: -f6)")"

# 6. An attached run that fails tells its end once (the host's supervisor wrote it into the log).
run_as 1 run failing
expect_eq "failing: exit" 4 "$RC"
expect_eq "failing: the end is told once" 1 "$(printf '%s\n' "$ERR" | grep -c 'exit code 4')"

# 7. plan names the hosts that can serve each request; a volume lives on the host that first ran a
#    function mounting it (made there by the host's gpurun under its lease dir), and plan says so.
run_as 1 plan
expect_eq "plan: exit" 0 "$RC"
expect_contains "plan: T4 hosts" "lab (hosts: 127.0.0.1:1, 127.0.0.1:$PORT_A)" "$(printf '%s\n' "$OUT" | grep '^hello ')"
expect_contains "plan: A100 host" "lab (hosts: 127.0.0.1:$PORT_B)" "$(printf '%s\n' "$OUT" | grep '^big ')"
expect_contains "plan: a new volume" "made on the host that first runs a function that mounts it" "$(printf '%s\n' "$OUT" | grep '^data ')"
run_as 1 run vwrite
expect_eq "vwrite: exit ($ERR)" 0 "$RC"
check; [ -f "$TEST_DIR/lease-b/volumes/lab/data/file" ] || fail "the volume is not on host b: $(ls -R "$TEST_DIR/lease-b/volumes" 2>&1)"
run_as 1 run vread
expect_eq "vread: exit ($ERR)" 0 "$RC"
expect_eq "vread reads what vwrite wrote, on the volume's host" "written-by-$USER1" "$OUT"
expect_contains "vread goes to the volume's host" "gpurun: host 127.0.0.1:$PORT_B chosen: it holds volume 'data'" "$ERR"
run_as 1 volume ls
expect_contains "volume ls: where" "127.0.0.1:$PORT_B:$TEST_DIR/lease-b/volumes/lab/data" "$OUT"
run_as 1 plan
expect_contains "plan: the volume's host" "on host 127.0.0.1:$PORT_B" "$(printf '%s\n' "$OUT" | grep '^data ')"
expect_contains "plan: vread's host" "lab (host: 127.0.0.1:$PORT_B, which holds volume 'data')" "$(printf '%s\n' "$OUT" | grep '^vread ')"
run_as 1 run vt4
expect_eq "vt4: exit (run: gpurun's own failure)" 125 "$RC"
expect_contains "vt4: the volume's host lacks the GPU" "function 'vt4' mounts volume 'data', which lives on host 127.0.0.1:$PORT_B of cloud 'lab', and that host has no" "$ERR"

# 8. A host without declared GPUs: its gpurun probes them there (a fake nvidia-smi on the login
#    user's PATH stands in for the driver: fault injection of hardware these machines lack), the
#    client caches them per host and places on them; a host with none offers none and says so.
home1=$(getent passwd "$USER1" | cut -d: -f6)
mkdir -p "$home1/fakebin"
cat > "$home1/fakebin/nvidia-smi" <<SH
#!/bin/sh
echo call >> "\$HOME/fakebin/calls"
case "\$SSH_CONNECTION" in
  *" $PORT_A") ;;
  *) echo "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver." >&2; exit 9 ;;
esac
# --query-compute-apps: the processes listed in \$HOME/fakebin/apps (none unless the test writes some).
case "\$*" in *query-compute-apps*) cat "\$HOME/fakebin/apps" 2>/dev/null; exit 0 ;; esac
echo "0, GPU-fake-0, Tesla T4, 15360 MiB, 00000000:3B:00.0"
echo "1, GPU-fake-1, Tesla T4, 15360 MiB, 00000000:3C:00.0"
echo "2, GPU-fake-2, NVIDIA A100-SXM4-80GB, 81920 MiB, 00000000:3D:00.0"
SH
chmod 755 "$home1/fakebin/nvidia-smi"; rm -f "$home1/fakebin/calls"; chown -R "$USER1:" "$home1/fakebin"
echo 'set -gx PATH $HOME/fakebin $PATH' >> "$home1/.config/fish/config.fish"
cat > "$TEST_DIR/found.yaml" <<YAML
default_cloud: found
clouds:
  found:
    backend: ssh
    user: $USER1
    identity_file: $TEST_DIR/sshd-a/id_ed25519
    ssh_options: [UserKnownHostsFile=$TEST_DIR/known_hosts, GlobalKnownHostsFile=/dev/null]
    hosts:
      - {host: 127.0.0.1, port: $PORT_A, lease_dir: $TEST_DIR/lease-a}
      - {host: 127.0.0.1, port: $PORT_B, lease_dir: $TEST_DIR/lease-b}
YAML
mkdir -p "$TEST_DIR/found" && cd "$TEST_DIR/found"
cat > gpurun.yaml <<'YAML'
app: found
functions:
  two: {command: [sh, -c, "echo two on $CUDA_VISIBLE_DEVICES"], gpu: "T4:2"}
  big: {command: [sh, -c, "echo big on $CUDA_VISIBLE_DEVICES"], gpu: A100-80GB}
  cpu: {command: [echo, cpu]}
YAML
run_as 1 --config "$TEST_DIR/found.yaml" plan
expect_eq "found: plan exit ($ERR)" 0 "$RC"
expect_contains "found: T4:2 on the host that has them" "found (hosts: 127.0.0.1:$PORT_A)" "$(printf '%s\n' "$OUT" | grep '^two ')"
expect_contains "found: A100-80GB too" "A100-80GB" "$(printf '%s\n' "$OUT" | grep '^big ')"
expect_contains "found: the host without GPUs says so" "gpurun: note: cloud 'found': host 127.0.0.1:$PORT_B has no GPU (" "$ERR"
expect_contains "found: and why" "nvidia-smi" "$ERR"
expect_contains "found: cached per host" '"offers":["T4:2","A100-80GB:1"]' "$(cat "$TEST_DIR/client1/state/ssh-hosts/127.0.0.1:$PORT_A/gpus.json" 2>&1)"
calls=$(wc -l < "$home1/fakebin/calls")
run_as 1 --config "$TEST_DIR/found.yaml" plan
expect_eq "found: the second plan asks no host" "$calls" "$(wc -l < "$home1/fakebin/calls")"
expect_eq "found: the second plan has no note" "" "$ERR"
run_as 1 --config "$TEST_DIR/found.yaml" gpus
expect_contains "found: gpus lists the found A100" "found (A100-80GB:1)" "$(printf '%s\n' "$OUT" | grep '^A100 ')"
run_as 1 --config "$TEST_DIR/found.yaml" run two
expect_eq "found: two runs on the found T4s ($ERR)" "two on 0,1" "$OUT"
run_as 1 --config "$TEST_DIR/found.yaml" run big
expect_eq "found: big runs on the found A100 ($ERR)" "big on 2" "$OUT"
# A process outside gpurun on the A100 (host a's driver says so): the run waits there, saying why,
# and starts once that process is gone.
echo "GPU-fake-2, 4242" > "$home1/fakebin/apps"; chown "$USER1:" "$home1/fakebin/apps"
run_as 1 --config "$TEST_DIR/found.yaml" run big --detach
busy_id=$OUT
busy_said() { as_client 1 --config "$TEST_DIR/found.yaml" ps --all --json 2>/dev/null | grep -q 'by a process outside gpurun: pid 4242'; }
wait_until 20 busy_said ||
  fail "found: a GPU used outside gpurun was not said busy ($(run_as 1 --config "$TEST_DIR/found.yaml" ps --all; echo "$OUT"))"
rm -f "$home1/fakebin/apps"
run_as 1 --config "$TEST_DIR/found.yaml" wait "$busy_id"
expect_eq "found: the run starts once the outside process is gone" 0 "$RC"
run_as 1 --config "$TEST_DIR/found.yaml" plan --json
expect_eq "found: plan --json names the hosts" "hosts: 127.0.0.1:$PORT_A" \
  "$(python3 -c 'import json,sys; print([f for f in json.loads(sys.argv[1])["functions"] if f["name"]=="two"][0]["note"])' "$OUT")"
run_as 1 --config "$TEST_DIR/found.yaml" run two --gpu A100:2
expect_eq "found: no host has two A100s (run: 125)" 125 "$RC"
expect_contains "found: what the cloud offers" "A100-80GB" "$ERR"
cd "$TEST_DIR/proj"

# 9. The lease dir is shared: both users' runs are recorded in host a's one state database.
check; [ "$(stat -c %G "$TEST_DIR/lease-a/state.db")" = gpurun-lease ] || fail "state.db is not the lease group's"
check; [ "$(stat -c %a "$TEST_DIR/lease-a/state.db")" = 660 ] || fail "state.db is not group-writable: $(stat -c %a "$TEST_DIR/lease-a/state.db")"
finish
