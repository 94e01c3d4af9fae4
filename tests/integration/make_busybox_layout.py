#!/usr/bin/env python3
"""Writes an OCI image layout holding a busybox-static image of two layers (the second one
whites out a file of the first) to the directory given as the first argument."""
import gzip, hashlib, io, json, os, sys, tarfile

out = sys.argv[1]
busybox = sys.argv[2] if len(sys.argv) > 2 else "/bin/busybox"
os.makedirs(os.path.join(out, "blobs", "sha256"), exist_ok=True)


def blob(data):
    digest = hashlib.sha256(data).hexdigest()
    with open(os.path.join(out, "blobs", "sha256", digest), "wb") as f:
        f.write(data)
    return {"digest": "sha256:" + digest, "size": len(data)}


def layer(entries):
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, kind, data in entries:
            info = tarfile.TarInfo(name)
            info.mtime = 0
            if kind == "dir":
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            elif kind == "link":
                info.type, info.linkname = tarfile.SYMTYPE, data
                tar.addfile(info)
            else:
                info.mode, info.size = (0o755 if kind == "exe" else 0o644), len(data)
                tar.addfile(info, io.BytesIO(data))
    plain = raw.getvalue()
    packed = gzip.compress(plain, mtime=0)
    descriptor = blob(packed)
    descriptor["mediaType"] = "application/vnd.oci.image.layer.v1.tar+gzip"
    return descriptor, "sha256:" + hashlib.sha256(plain).hexdigest()


with open(busybox, "rb") as f:
    binary = f.read()
first, first_id = layer([("bin", "dir", None), ("bin/busybox", "exe", binary), ("bin/sh", "link", "busybox"),
                         ("etc", "dir", None), ("etc/base-only.txt", "file", b"from the base\n"),
                         ("etc/removed.txt", "file", b"whited out\n"), ("opt", "dir", None),
                         ("opt/old.txt", "file", b"hidden by an opaque directory\n")])
second, second_id = layer([("etc", "dir", None), ("etc/.wh.removed.txt", "file", b""), ("opt", "dir", None),
                           ("opt/.wh..wh..opq", "file", b""), ("opt/new.txt", "file", b"after the opaque marker\n")])
config = json.dumps({"architecture": "amd64", "os": "linux",
                     "config": {"Env": ["PATH=/bin", "BASE_VAR=from-base"], "WorkingDir": "/"},
                     "rootfs": {"type": "layers", "diff_ids": [first_id, second_id]}},
                    sort_keys=True, separators=(",", ":")).encode()
config_descriptor = blob(config)
config_descriptor["mediaType"] = "application/vnd.oci.image.config.v1+json"
manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                       "config": config_descriptor, "layers": [first, second]},
                      sort_keys=True, separators=(",", ":")).encode()
manifest_descriptor = blob(manifest)
manifest_descriptor["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
manifest_descriptor["annotations"] = {"org.opencontainers.image.ref.name": "latest"}
with open(os.path.join(out, "index.json"), "w") as f:
    json.dump({"schemaVersion": 2, "manifests": [manifest_descriptor]}, f)
with open(os.path.join(out, "oci-layout"), "w") as f:
    json.dump({"imageLayoutVersion": "1.0.0"}, f)
