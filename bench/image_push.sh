#!/usr/bin/env bash
# Image push speed against a real registry (Debian's docker-registry, started here on a free
# loopback port with temporary storage, stopped at the end). Each round, in one run:
# - `gpurun deploy --json` of an image whose `add:` layer is one incompressible file (default
#   200 MB from /dev/urandom); BUILD (tar + gzip + sha256, `image_builds[].build_ms`) and UPLOAD
#   (HEADs, blob uploads, manifest and tags, `image_pushes[].push_ms`) are timed inside gpurun;
# - curl pushing the same layer blob (from gpurun's image store): POST, one PATCH with the whole
#   blob, PUT ?digest=, both with `--data-binary @file` (read into memory first) and `-T file`
#   (streamed); the faster is the baseline. Every push goes to a fresh repository (nothing skipped).
# Each round gives the big file a new mtime (same bytes), so the add: layer cache misses and the
# layer is really built. Then one no-change redeploy of the big image (layer cache hit), and the
# median wall time of a no-change `gpurun deploy` of a 3-layer image (a busybox OCI layout of two
# layers + the add: layer). Targets: upload rate gpurun / curl >= 0.90; no-change
# redeploy < 100 ms.
# Usage: bench/image_push.sh [GPURUN] [ROUNDS] [SIZE_MB]
# With IMAGE_PUSH_RESULTS=FILE the medians are also written there as key=value lines (bench/run).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
gpurun=$(realpath "${1:-$root/build/gpurun}")
rounds=${2:-3}
size_mb=${3:-200}
for tool in docker-registry curl python3 busybox; do
  command -v "$tool" >/dev/null || { echo "image_push.sh: $tool is missing" >&2; exit 77; }
done
tmp=$(mktemp -d)
registry_pid=
cleanup() {
  if [ -n "$registry_pid" ]; then kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; fi
  rm -rf "$tmp"
}
trap cleanup EXIT
export GPURUN_STATE_DIR=$tmp/state XDG_CONFIG_HOME=$tmp/config
unset GPURUN_CONFIG GPURUN_REGISTRY_USER GPURUN_REGISTRY_PASSWORD

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$tmp/registry"
cat > "$tmp/registry/config.yml" <<YAML
version: 0.1
storage: {filesystem: {rootdirectory: $tmp/registry/storage}, delete: {enabled: true}}
http: {addr: 127.0.0.1:$port, secret: gpurun-bench}
log: {level: error}
YAML
docker-registry serve "$tmp/registry/config.yml" > "$tmp/registry/log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do
  curl -s -o /dev/null "http://127.0.0.1:$port/v2/" && break
  sleep 0.1
done
curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" || { echo "image_push.sh: the registry did not start" >&2; exit 1; }

mkdir -p "$XDG_CONFIG_HOME/gpurun" "$tmp/big/src" "$tmp/small/src"
cat > "$XDG_CONFIG_HOME/gpurun/config.yaml" <<YAML
default_cloud: hpc
clouds:
  hpc: {backend: slurm, endpoint: "http://127.0.0.1:1", partition: p, registry: "http://127.0.0.1:$port"}
YAML
head -c "$((size_mb * 1000 * 1000))" /dev/urandom > "$tmp/big/src/weights.bin"
python3 "$root/tests/integration/make_busybox_layout.py" "$tmp/small/base" "$(command -v busybox)" >/dev/null
echo "small add: layer" > "$tmp/small/src/message.txt"
printf 'app: small\nimages:\n  tiny: {base: oci:./base, add: [./src]}\nfunctions:\n  f: {image: tiny, command: ["true"]}\n' \
  > "$tmp/small/gpurun.yaml"

python3 - "$gpurun" "$rounds" "$tmp" "$port" "${IMAGE_PUSH_RESULTS:-}" <<'PY'
import json, os, statistics, subprocess, sys, time

gpurun, rounds, tmp, port, results = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
base = f"http://127.0.0.1:{port}"

def deploy_big(n, touch=True):
    if touch:  # new mtime, same bytes: the layer cache misses, the digest stays the same
        st = os.stat(f"{tmp}/big/src/weights.bin")
        os.utime(f"{tmp}/big/src/weights.bin", ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    with open(f"{tmp}/big/gpurun.yaml", "w") as f:
        f.write(f"app: push{n}\nimages:\n  big: {{base: scratch, add: [./src]}}\n"
                "functions:\n  f: {image: big, command: [\"true\"]}\n")
    t = time.perf_counter()
    p = subprocess.run([gpurun, "deploy", "--json"], cwd=f"{tmp}/big", capture_output=True, text=True)
    wall = (time.perf_counter() - t) * 1000
    if p.returncode != 0:
        sys.exit(f"gpurun deploy failed ({p.returncode}): {p.stderr}")
    out = json.loads(p.stdout)
    push = [e for e in out["image_pushes"] if e["cloud"] == "hpc"][0]
    if touch and push["blobs_uploaded"] != 2:
        sys.exit(f"gpurun deploy skipped blobs: {push}")
    return out["image_builds"][0]["build_ms"], push["push_ms"], push["bytes_uploaded"], push["digest"], wall

def layer_blob(manifest_digest):
    store = f"{tmp}/state/images/blobs/sha256"
    with open(f"{store}/{manifest_digest.split(':')[1]}") as f:
        layer = json.load(f)["layers"][-1]
    return f"{store}/{layer['digest'].split(':')[1]}", layer["digest"], layer["size"]

def header(text, name):
    value = None
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        if key.strip().lower() == name.lower():
            value = rest.strip()
    return value

def curl(*args):
    p = subprocess.run(["curl", "-sS", "-D", "-", "-o", "/dev/null", "-H", "Expect:", *args], capture_output=True, text=True, check=True)
    return p.stdout

def curl_push(repo, path, digest, body_args):
    t = time.perf_counter()
    location = header(curl("-X", "POST", f"{base}/v2/{repo}/blobs/uploads/"), "Location")
    answer = curl("-X", "PATCH", "-H", "Content-Type: application/octet-stream", *body_args, location)
    location = header(answer, "Location")
    answer = curl("-X", "PUT", "-H", "Content-Type: application/octet-stream", f"{location}&digest={digest}")
    ms = (time.perf_counter() - t) * 1000
    if " 201" not in answer.splitlines()[0]:
        sys.exit(f"curl push failed: {answer}")
    return ms

# `--data-binary @file` (what the registry notes use) reads the whole file into memory before
# sending; `-T file` streams it. The faster of the two is the baseline.
builds, pushes, curls_data, curls_stream, walls = [], [], [], [], []
for n in range(rounds):
    build_ms, push_ms, uploaded, digest, wall = deploy_big(n)
    path, layer_digest, size = layer_blob(digest)
    data_ms = curl_push(f"curl{n}/data", path, layer_digest, ["--data-binary", f"@{path}"])
    stream_ms = curl_push(f"curl{n}/stream", path, layer_digest, ["-T", path])
    builds.append(build_ms); pushes.append(push_ms); walls.append(wall)
    curls_data.append(data_ms); curls_stream.append(stream_ms)
    mb = size / 1e6
    print(f"round {n + 1}: build {build_ms:.0f} ms, gpurun upload {push_ms:.0f} ms ({uploaded / 1e6 / push_ms * 1000:.0f} MB/s), "
          f"curl --data-binary {data_ms:.0f} ms, curl -T {stream_ms:.0f} ms ({mb / stream_ms * 1000:.0f} MB/s), "
          f"deploy wall {wall:.0f} ms", file=sys.stderr, flush=True)

# The big image again, unchanged: the add: layer comes from the cache, nothing is uploaded.
cached_build, cached_push, cached_bytes, _, cached_wall = deploy_big(rounds - 1, touch=False)
if cached_bytes != 0:
    sys.exit("the unchanged big image was uploaded again")

subprocess.run([gpurun, "deploy"], cwd=f"{tmp}/small", check=True, capture_output=True)
redeploys = []
for _ in range(11):
    t = time.perf_counter()
    p = subprocess.run([gpurun, "deploy", "--json"], cwd=f"{tmp}/small", capture_output=True, text=True)
    redeploys.append((time.perf_counter() - t) * 1000)
    push = json.loads(p.stdout)["image_pushes"][0]
    if p.returncode != 0 or push["bytes_uploaded"] != 0 or push["blobs_skipped"] != 4:
        sys.exit(f"the no-change redeploy uploaded something: {push}")

build, push, data_ms, stream_ms, redeploy = map(statistics.median, (builds, pushes, curls_data, curls_stream, redeploys))
curl_ms = min(data_ms, stream_ms)
mb = size / 1e6
ratio = curl_ms / push  # equal bytes: rate ratio = time ratio inverted
rows = [
    (f"build {mb:.0f} MB add: layer (tar+gzip+sha256)", f"{build:.0f} ms", f"{mb / build * 1000:.0f} MB/s", "-", ""),
    ("upload, gpurun deploy", f"{push:.0f} ms", f"{mb / push * 1000:.0f} MB/s", "-", ""),
    ("upload, curl POST+PATCH(--data-binary)+PUT", f"{data_ms:.0f} ms", f"{mb / data_ms * 1000:.0f} MB/s", "-", ""),
    ("upload, curl POST+PATCH(-T, streamed)+PUT", f"{stream_ms:.0f} ms", f"{mb / stream_ms * 1000:.0f} MB/s", "-", ""),
    ("upload rate gpurun / faster curl", f"{ratio:.2f}x", "", ">= 0.90x", "ok" if ratio >= 0.90 else "MISSED"),
    (f"no-change redeploy, {mb:.0f} MB image (once)", f"{cached_wall:.0f} ms", "", "-", f"(build {cached_build:.0f} ms, push {cached_push:.0f} ms)"),
    ("no-change redeploy, 3 layers (median)", f"{redeploy:.1f} ms", "", "< 100 ms", "ok" if redeploy < 100 else "MISSED"),
]
w = max(len(r[0]) for r in rows)
print(f"{'measure':<{w}}  {'value':>9}  {'rate':>9}  {'target':>9}  result")
for name, value, rate, target, result in rows:
    print(f"{name:<{w}}  {value:>9}  {rate:>9}  {target:>9}  {result}")
if results:
    with open(results, "w") as f:
        f.write(f"build_ms={build:.0f}\npush_ms={push:.0f}\ncurl_ms={curl_ms:.0f}\nratio={ratio:.2f}\nredeploy_ms={redeploy:.1f}\nmb={mb:.0f}\n")
PY
