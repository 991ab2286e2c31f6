#!/usr/bin/env python3
"""Latency of unrelated work while one handler blocks its thread (issue 14; decision 0011).

    crates/wshd-bench/scripts/blocked-latency.py DIR [BLOCK_MS]

DIR holds a `wshd` binary, `libecho_wsh.so` and `libfixture_misbehave.so` (for example
target/release). The script starts that wshd (two runtime workers, as on a two-core machine)
with the echo handler at /echo, the misbehaving fixture at /bad, a static page and the admin
listener; opens /echo; sends "sleep BLOCK_MS" (default 3000) to /bad, which blocks its worker
thread with std::thread::sleep; and, from 200 ms into the block, measures at the same time:
20 round trips on the open /echo (40 ms apart) and three each (200 ms apart) of a new
handshake + echo, a static page and GET /metrics on the admin listener. It prints the worst
of each. Standard library only.
"""

import base64
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def handshake(port, path):
    """A connected, upgraded socket to ws://127.0.0.1:port/path."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"handshake refused: {head!r}")
    return sock


def send_text(sock, text):
    """Sends one masked text frame."""
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    sock.sendall(bytes([0x81, 0x80 | len(payload)]) + mask + masked)


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise RuntimeError("connection closed")
        data += chunk
    return data


def recv_text(sock):
    """The payload of the next data frame (control frames skipped)."""
    while True:
        b0, b1 = recv_exact(sock, 2)
        length = b1 & 0x7F
        if length == 126:
            length = struct.unpack("!H", recv_exact(sock, 2))[0]
        elif length == 127:
            length = struct.unpack("!Q", recv_exact(sock, 8))[0]
        payload = recv_exact(sock, length)
        if b0 & 0x0F in (1, 2):
            return payload.decode(errors="replace")


def http_get(port, path):
    """Status line of GET path."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.split(b"\r\n", 1)[0].decode()


def timed(op):
    started = time.monotonic()
    op()
    return time.monotonic() - started


def start_server(bin_dir, work):
    handlers = os.path.join(work, "handlers")
    os.makedirs(handlers)
    os.makedirs(os.path.join(work, "www"))
    shutil.copy(os.path.join(bin_dir, "libecho_wsh.so"), os.path.join(handlers, "echo_wsh.so"))
    shutil.copy(os.path.join(bin_dir, "libfixture_misbehave.so"), os.path.join(handlers, "bad_wsh.so"))
    with open(os.path.join(work, "www", "page.html"), "w") as f:
        f.write("<p>static</p>\n")
    port, admin = 21190, 21191
    with open(os.path.join(work, "server.toml"), "w") as f:
        f.write(
            f'[server]\nlisten = ["127.0.0.1:{port}"]\nadmin_listen = "127.0.0.1:{admin}"\n'
            f'document_root = "www"\n[handlers]\ndir = "handlers"\n[log]\nlevel = "info"\n'
        )
    log = open(os.path.join(work, "wshd.log"), "w")
    env = dict(os.environ, TOKIO_WORKER_THREADS="2")
    proc = subprocess.Popen(
        [os.path.join(bin_dir, "wshd"), "-c", "server.toml"], cwd=work, stderr=log, stdout=log, env=env
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port, admin
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError("wshd did not start")


def measure(port, admin, echo):
    worst = {}

    def open_echo():
        w = 0.0
        for i in range(20):
            w = max(w, timed(lambda: (send_text(echo, f"m{i}"), recv_text(echo))))
            time.sleep(0.04)
        worst["open echo round trip"] = w

    def three(name, op):
        def run():
            w = 0.0
            for _ in range(3):
                w = max(w, timed(op))
                time.sleep(0.2)
            worst[name] = w

        return run

    def new_echo():
        sock = handshake(port, "/echo")
        send_text(sock, "new")
        assert recv_text(sock) == "new"
        sock.close()

    threads = [
        threading.Thread(target=open_echo),
        threading.Thread(target=three("new handshake + echo", new_echo)),
        threading.Thread(target=three("static page", lambda: http_get(port, "/page.html"))),
        threading.Thread(target=three("admin /metrics", lambda: http_get(admin, "/metrics"))),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return worst


def main():
    bin_dir = os.path.abspath(sys.argv[1])
    block_ms = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    work = tempfile.mkdtemp(prefix="wshd-blocked-")
    proc, port, admin = start_server(bin_dir, work)
    try:
        echo = handshake(port, "/echo")
        send_text(echo, "warm")
        recv_text(echo)
        idle = measure(port, admin, echo)
        bad = handshake(port, "/bad")
        send_text(bad, f"sleep {block_ms}")
        started = time.monotonic()
        time.sleep(0.2)
        blocked = measure(port, admin, echo)
        took = time.monotonic() - started
        print(f"{bin_dir}: /bad blocks {block_ms} ms; measured {took * 1000:.0f} ms from its start")
        for name in idle:
            print(f"  {name:24} idle {idle[name] * 1000:8.1f} ms   while blocked {blocked[name] * 1000:8.1f} ms")
        print(f"  /bad replied: {recv_text(bad)!r} after {(time.monotonic() - started) * 1000:.0f} ms")
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
