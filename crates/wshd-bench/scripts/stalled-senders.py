#!/usr/bin/env python3
"""Issue 16's memory attack: N connections each announce a big binary frame, send most of it
and stall. Prints the server's resident memory before and at its peak (VmHWM), the close
codes the attackers got, and a control connection's echo round trips meanwhile.

    python3 crates/wshd-bench/scripts/stalled-senders.py [--wshd target/release/wshd]
        [--conns 100] [--sent-mib 15] [--budget BYTES]
    # --budget 0: no limit; --budget -1: the key is left out (a wshd from before the budget)

The server runs as one process (workers = 0) with the built-in echo, a 16 MiB message limit
and the given `[websocket] inflight_budget_bytes`. Every wait is bounded.
"""
import argparse
import multiprocessing
import os
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

HANDSHAKE = (
    "GET /_echo HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def memory(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                fields[key] = int(value.split()[0]) * 1024
    return fields["VmRSS"], fields["VmHWM"]


def open_ws(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(HANDSHAKE.encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        if not chunk:
            raise RuntimeError("closed during the handshake")
        head += chunk
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(head[:80])
    return s


def frame(opcode, payload):
    header = bytes([0x80 | opcode])
    n = len(payload)
    if n < 126:
        header += bytes([0x80 | n])
    elif n < 65536:
        header += bytes([0x80 | 126]) + struct.pack(">H", n)
    else:
        header += bytes([0x80 | 127]) + struct.pack(">Q", n)
    return header + b"\0\0\0\0" + payload


def attacker(port, announced, sent, result, index):
    s = None
    try:
        s = open_ws(port)
        s.settimeout(2)
        s.sendall(bytes([0x82, 0x80 | 127]) + struct.pack(">Q", announced) + b"\0\0\0\0")
        chunk = b"A" * (64 << 10)
        for _ in range(sent // len(chunk)):
            s.sendall(chunk)
    except OSError:
        pass
    result[index] = s


def close_code(s):
    s.settimeout(1)
    try:
        data = s.recv(64)
    except socket.timeout:
        return None  # still open: the message is held
    except OSError:
        return 1006
    if len(data) >= 4 and data[0] & 0x0F == 8:
        return struct.unpack(">H", data[2:4])[0]
    if data and data[0] & 0x0F == 9:
        return None  # a keepalive ping: still open, the message is held
    return 1006 if not data else -1


def control(port, stop, out):
    """Runs in its own process (it shares no GIL with the sending threads)."""
    latencies = []
    try:
        control_loop(port, stop, latencies)
    finally:
        out.send(latencies)


def control_loop(port, stop, latencies):
    s = open_ws(port)
    s.settimeout(1)
    i = 0
    while not stop.is_set() and i < 5000:
        payload = f"control {i}".encode()
        started = time.perf_counter()
        s.sendall(frame(1, payload))
        got = b""
        try:
            while len(got) < 2 + len(payload):
                chunk = s.recv(4096)
                if not chunk:
                    return
                got += chunk
        except socket.timeout:
            latencies.append(float("inf"))  # no echo within 1 s
            return
        latencies.append(time.perf_counter() - started)
        i += 1
        time.sleep(0.02)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--wshd", default="target/release/wshd")
    parser.add_argument("--conns", type=int, default=100)
    parser.add_argument("--sent-mib", type=int, default=15)
    parser.add_argument("--budget", type=int, default=256 << 20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.mkdir(os.path.join(tmp, "handlers"))
        config = os.path.join(tmp, "server.toml")
        with open(config, "w") as f:
            f.write(
                '[server]\nlisten = ["127.0.0.1:0"]\nworkers = 0\n[handlers]\ndir = "handlers"\n'
                f"[websocket]\nmax_message_bytes = {16 << 20}\n"
                + (f"inflight_budget_bytes = {args.budget}\n" if args.budget >= 0 else "")
                + '[[route]]\npath = "/_echo"\nbuiltin = "echo"\ndeflate = false\n'
            )
        server = subprocess.Popen(
            [os.path.abspath(args.wshd), "-c", config], cwd=tmp, stderr=subprocess.PIPE, text=True
        )
        try:
            port = None
            deadline = time.time() + 30
            while port is None and time.time() < deadline:
                line = server.stderr.readline()
                if "listening on " in line:
                    port = int(line.rsplit(":", 1)[1])
            if port is None:
                sys.exit("wshd did not start")
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
            rss_before, _ = memory(server.pid)
            stop = multiprocessing.Event()
            receive, send = multiprocessing.Pipe(duplex=False)
            ctl = multiprocessing.Process(target=control, args=(port, stop, send))
            ctl.start()
            result = [None] * args.conns
            threads = [
                threading.Thread(target=attacker, args=(port, 16 << 20, args.sent_mib << 20, result, i))
                for i in range(args.conns)
            ]
            started = time.time()
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            time.sleep(0.5)
            rss_after, peak = memory(server.pid)
            stop.set()
            latencies = receive.recv() if receive.poll(10) else []
            ctl.join(5)
            codes = {}
            for s in result:
                code = close_code(s) if s else 1006
                codes[code] = codes.get(code, 0) + 1
            latencies.sort()
            p50 = latencies[len(latencies) // 2] * 1000 if latencies else float("nan")
            worst = latencies[-1] * 1000 if latencies else float("nan")
            print(
                f"budget {args.budget >> 20} MiB, {args.conns} × {args.sent_mib} MiB stalled senders "
                f"(sent in {time.time() - started:.1f} s): RSS {rss_before >> 20} -> {rss_after >> 20} MiB, "
                f"peak +{(peak - rss_before) >> 20} MiB; closes {codes} (None = held); control echo "
                f"{len(latencies)} round trips, p50 {p50:.2f} ms, max {worst:.2f} ms"
            )
        finally:
            server.kill()
            server.wait(10)


if __name__ == "__main__":
    main()
