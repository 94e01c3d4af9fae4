#!/usr/bin/env python3
"""A threaded HTTP/1.1 reverse proxy that injects faults, for registry fault tests.

    fault_proxy.py --upstream http://127.0.0.1:5055 --port-file P --log L [--rules R]

Listens on 127.0.0.1 (a free port, written to --port-file once listening), forwards every
request to --upstream and rewrites `Location` headers that point at the upstream so that they
point back at the proxy. The rules file (JSON list, re-read on every request; a missing or empty
file means no faults) holds fault rules, the first matching one applies:

    {"method": "PATCH", "path": "regex on path?query", "action": "drop", "bytes": 5000000,
     "after": 0, "times": 1}

- action "drop": forward `bytes` bytes of the request body upstream, then cut both connections;
- action "error": read the body, forward nothing, answer `status` (default 500) with a registry
  style JSON error;
- action "stall": read nothing more and never answer (for `delay` seconds, default 3600, then
  close the connection).
`after` lets that many matching requests through first; `times` is how many get the fault after
that (0 = all). Counters restart when the rules file changes.

Each finished request is one JSON line in --log: method, path, status (or "dropped"/"stalled"),
forwarded (request body bytes sent upstream), read (request body bytes read from the client),
fault (the action applied or null).
"""
import argparse
import http.client
import http.server
import json
import os
import re
import socket
import threading
import time
import urllib.parse

HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade"}
CHUNK = 64 * 1024


class Rules:
    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.text = None
        self.rules = []
        self.counts = []

    def match(self, method, target):
        """The rule to apply to this request (a dict), or None."""
        with self.lock:
            text = ""
            if self.path and os.path.exists(self.path):
                with open(self.path, encoding="utf-8") as f:
                    text = f.read()
            if text != self.text:
                self.text = text
                self.rules = json.loads(text) if text.strip() else []
                self.counts = [0] * len(self.rules)
            for i, rule in enumerate(self.rules):
                if rule.get("method", method).upper() != method:
                    continue
                if not re.search(rule.get("path", ""), target):
                    continue
                seen = self.counts[i]
                self.counts[i] += 1
                after, times = int(rule.get("after", 0)), int(rule.get("times", 0))
                if seen < after or (times > 0 and seen >= after + times):
                    continue
                return rule
            return None


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fault-proxy"

    def log_message(self, *args):
        pass

    def record(self, status, forwarded, read, fault):
        line = json.dumps({"time": round(time.time(), 3), "method": self.command, "path": self.path, "status": status,
                           "forwarded": forwarded, "read": read, "fault": fault})
        with self.server.log_lock:
            with open(self.server.log_path, "a", encoding="utf-8") as f:
                f.write(line + "\n")

    def body_chunks(self):
        """Yields the request body in pieces (Content-Length or chunked)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                left = size
                while left > 0:
                    piece = self.rfile.read(min(left, CHUNK))
                    if not piece:
                        raise ConnectionError("client went away")
                    left -= len(piece)
                    yield piece
                self.rfile.readline()
        else:
            left = int(self.headers.get("Content-Length", "0") or "0")
            while left > 0:
                piece = self.rfile.read(min(left, CHUNK))
                if not piece:
                    raise ConnectionError("client went away")
                left -= len(piece)
                yield piece

    def cut(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def handle_any(self):
        rule = self.server.rules.match(self.command, self.path)
        action = rule.get("action") if rule else None
        if action == "stall":
            end = time.time() + float(rule.get("delay", 3600))
            self.record("stalled", 0, 0, "stall")
            while time.time() < end and not self.server.stopping:
                time.sleep(0.1)
            self.cut()
            return
        if action == "error":
            read = 0
            try:
                for piece in self.body_chunks():
                    read += len(piece)
            except (ConnectionError, OSError, ValueError):
                self.record("client-gone", 0, read, "error")
                self.cut()
                return
            status = int(rule.get("status", 500))
            body = json.dumps({"errors": [{"code": "UNKNOWN", "message": "injected fault"}]}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
            self.record(status, 0, read, "error")
            return
        self.forward(rule if action == "drop" else None)

    def forward(self, drop):
        up = self.server.upstream
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=600)
        chunked = self.headers.get("Transfer-Encoding", "").lower() == "chunked"
        conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", up.netloc)
        for name, value in self.headers.items():
            if name.lower() in HOP_BY_HOP or name.lower() == "host":
                continue
            conn.putheader(name, value)
        if chunked:
            conn.putheader("Transfer-Encoding", "chunked")
        conn.putheader("Connection", "close")
        conn.endheaders()
        forwarded = read = 0
        limit = int(drop.get("bytes", 0)) if drop else None
        try:
            for piece in self.body_chunks():
                read += len(piece)
                if limit is not None and forwarded + len(piece) >= limit:
                    piece = piece[:limit - forwarded]
                    conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked and piece else piece)
                    forwarded += len(piece)
                    self.record("dropped", forwarded, read, "drop")
                    conn.sock.shutdown(socket.SHUT_RDWR)
                    conn.close()
                    self.cut()
                    return
                conn.send(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
                forwarded += len(piece)
            if chunked:
                conn.send(b"0\r\n\r\n")
            if limit is not None:  # the body was shorter than the limit: drop before the answer
                self.record("dropped", forwarded, read, "drop")
                conn.close()
                self.cut()
                return
            response = conn.getresponse()
        except (ConnectionError, OSError, ValueError):
            self.record("client-gone", forwarded, read, None)
            conn.close()
            self.cut()
            return
        self.send_response_only(response.status, response.reason)
        length = response.getheader("Content-Length")
        body = b""
        if self.command != "HEAD" and length is None:
            body = response.read()
        for name, value in response.getheaders():
            if name.lower() in HOP_BY_HOP or name.lower() == "content-length":
                continue
            if name.lower() == "location" and value.startswith(self.server.upstream_base):
                value = self.server.own_base + value[len(self.server.upstream_base):]
            self.send_header(name, value)
        if self.command == "HEAD" or length is not None:
            if length is not None:
                self.send_header("Content-Length", length)
        else:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            if self.command != "HEAD":
                if length is None:
                    self.wfile.write(body)
                else:
                    while True:
                        piece = response.read(CHUNK)
                        if not piece:
                            break
                        self.wfile.write(piece)
        except OSError:
            self.close_connection = True
        conn.close()
        self.record(response.status, forwarded, read, None)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = handle_any


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--rules", default="")
    args = parser.parse_args()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    server.daemon_threads = True
    server.upstream = urllib.parse.urlsplit(args.upstream)
    server.upstream_base = args.upstream.rstrip("/")
    server.own_base = "http://127.0.0.1:%d" % server.server_address[1]
    server.rules = Rules(args.rules)
    server.log_path = args.log
    server.log_lock = threading.Lock()
    server.stopping = False
    open(args.log, "a").close()
    with open(args.port_file + ".tmp", "w") as f:
        f.write(str(server.server_address[1]))
    os.rename(args.port_file + ".tmp", args.port_file)
    try:
        server.serve_forever(poll_interval=0.1)
    finally:
        server.stopping = True


if __name__ == "__main__":
    main()
