#!/usr/bin/env python3
"""Writes the seed corpus of layer_unpack_fuzz: small tars of the cases the unpacker must get
right (whiteouts incl. '.wh...', opaque markers, escapes by '..', symbolic and hard links,
device nodes, set-ID bits, type changes). Usage: make_layer_corpus.py OUT_DIR"""
import gzip
import io
import sys
import tarfile

OUT = sys.argv[1]
FUZZ = "/tmp/gpurun-layer-fuzz"  # the fuzz target's default directory


def entry(name, kind="f", data=b"", mode=None, link=""):
    info = tarfile.TarInfo(name)
    info.type = {"f": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "l": tarfile.SYMTYPE, "h": tarfile.LNKTYPE,
                 "c": tarfile.CHRTYPE, "b": tarfile.BLKTYPE, "p": tarfile.FIFOTYPE}[kind]
    info.mode = mode if mode is not None else (0o755 if kind == "d" else 0o644)
    info.linkname = link
    info.size = len(data) if kind == "f" else 0
    if kind in "cb":
        info.devmajor, info.devminor = 8, 0
    return info, (io.BytesIO(data) if kind == "f" else None)


def write(name, entries, compress=False):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            tar.addfile(*entry(*e[:2], **(e[2] if len(e) > 2 else {})))
    data = buffer.getvalue()
    if compress:
        data = gzip.compress(data, mtime=0)
    with open(f"{OUT}/{name}", "wb") as out:
        out.write(data)


write("plain", [("etc", "d"), ("etc/hostname", "f", {"data": b"box\n"}), ("bin", "d"), ("bin/sh", "f", {"data": b"#!", "mode": 0o755}),
                ("usr/lib", "d"), ("lib", "l", {"link": "usr/lib"})])
write("plain.gz", [("etc/hostname", "f", {"data": b"box\n"}), ("tmp", "d", {"mode": 0o1777})], compress=True)
write("whiteout-dotdot", [("sub", "d"), ("sub/keep", "f", {"data": b"k"}), (".wh...", "f")])
write("whiteout-dotdot-sub", [("sub/.wh...", "f")])
write("whiteout-dot", [(".wh..", "f"), ("a/.wh..", "f")])
write("whiteout-file", [("a/b", "f", {"data": b"x"}), ("a/.wh.b", "f"), ("a/.wh.c", "f")])
write("opaque", [("opt/old", "f", {"data": b"o"}), ("opt/.wh..wh..opq", "f"), ("opt/new", "f", {"data": b"n"})])
write("dotdot", [("../outside/victim", "f", {"data": b"owned"})])
write("absolute", [("/tmp/gpurun-layer-fuzz/area/outside/victim", "f", {"data": b"owned"})])
write("symlink-escape", [("esc", "l", {"link": FUZZ + "/area/outside"}), ("esc/victim", "f", {"data": b"owned"})])
write("symlink-relative-escape", [("up", "l", {"link": "../../outside"}), ("up/new", "f", {"data": b"owned"})])
write("symlink-whiteout", [("esc", "l", {"link": "../other-image"}), ("esc/.wh.etc", "f")])
write("symlink-opaque", [("esc", "l", {"link": "../other-image"}), ("esc/.wh..wh..opq", "f")])
write("hardlink-escape", [("stolen", "h", {"link": "../outside/victim"})])
write("hardlink-through-symlink", [("esc", "l", {"link": FUZZ + "/area/outside"}), ("stolen", "h", {"link": "esc/victim"})])
write("hardlink-ok", [("a", "f", {"data": b"a"}), ("b", "h", {"link": "a"})])
write("devices", [("dev/sda", "b"), ("dev/tty", "c"), ("run/fifo", "p")])
write("setid", [("bin/su", "f", {"data": b"su", "mode": 0o4755}), ("bin/wall", "f", {"data": b"w", "mode": 0o2755}),
                ("shared", "d", {"mode": 0o3777})])
write("type-changes", [("thing/inside", "f", {"data": b"i"}), ("thing", "f", {"data": b"file"}), ("other", "f"),
                       ("other/child", "f", {"data": b"c"}), ("link", "l", {"link": "thing"}), ("link", "d")])
