#!/usr/bin/env python3
"""What a misbehaving handler costs the rest of a wshd server: blocking, spinning, crashing
(abort, stack overflow, null write) and hoarding memory, each against a fresh server.

Usage:
  misbehave.py --wshd target/release/wshd --plugins target/release \
      [--server-keys 'workers = 2'] [--extra 'TOML appended'] [--scenarios block,spin,...]

`--plugins` holds libecho_wsh.so and libfixture_misbehave.so (build them with
`cargo build --release -p wshd -p echo_wsh -p fixture_misbehave`). Standard library only;
every wait is bounded. Prints one line of figures per scenario.
"""

import argparse
import base64
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Ws:
    """A minimal RFC 6455 client: text frames only, enough to talk to echo and misbehave."""

    def __init__(self, port, path, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("closed during the handshake")
            head += chunk
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status:
            raise ConnectionError(status.decode(errors="replace"))
        self.buf = head.split(b"\r\n\r\n", 1)[1]

    def send(self, text):
        data = text.encode()
        mask = os.urandom(4)
        n = len(data)
        head = bytes([0x81])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack(">H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack(">Q", n)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv(self):
        b0, b1 = self._read(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack(">H", self._read(2))[0]
        elif n == 127:
            n = struct.unpack(">Q", self._read(8))[0]
        payload = self._read(n)
        if b0 & 0x0F == 8:
            code = struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
            raise ConnectionError(f"close {code}")
        return payload.decode(errors="replace")

    def round_trip(self, text="ping"):
        started = time.monotonic()
        self.send(text)
        self.recv()
        return time.monotonic() - started

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


class Server:
    def __init__(self, args, extra=""):
        self.dir = tempfile.mkdtemp(prefix="wshd-misbehave-")
        handlers = os.path.join(self.dir, "h")
        os.makedirs(handlers)
        shutil.copy(os.path.join(args.plugins, "libecho_wsh.so"), os.path.join(handlers, "echo_wsh.so"))
        shutil.copy(os.path.join(args.plugins, "libfixture_misbehave.so"), os.path.join(handlers, "bad_wsh.so"))
        root = os.path.join(self.dir, "www")
        os.makedirs(root)
        with open(os.path.join(root, "index.html"), "w") as f:
            f.write("<p>hello</p>\n")
        self.port = free_port()
        self.admin = free_port()
        with open(os.path.join(self.dir, "server.toml"), "w") as f:
            f.write(f'[server]\nlisten = ["127.0.0.1:{self.port}"]\nadmin_listen = "127.0.0.1:{self.admin}"\n'
                    f'document_root = "{root}"\nshutdown_grace_secs = {args.grace}\n{args.server_keys}\n'
                    f'[handlers]\ndir = "{handlers}"\n{args.extra}\n{extra}\n')
        self.log = open(os.path.join(self.dir, "log"), "w+")
        self.proc = subprocess.Popen([args.wshd, "-c", os.path.join(self.dir, "server.toml")],
                                     stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                Ws(self.port, "/echo", 1).close()
                # Let every worker process finish loading (they start side by side).
                time.sleep(args.settle)
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("server did not start:\n" + self.logs())

    def logs(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def rss_mib(self):
        """Resident memory of the server and every process under it, in MiB."""
        pids, total = {self.proc.pid}, 0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        if int(f.read().rsplit(")", 1)[1].split()[1]) == self.proc.pid:
                            pids.add(int(entry))
                except (OSError, ValueError, IndexError):
                    pass
        for pid in pids:
            try:
                with open(f"/proc/{pid}/statm") as f:
                    total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            except OSError:
                pass
        return total / (1 << 20)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def http_get(port, path, timeout=10.0):
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return time.monotonic() - started, data.split(b"\r\n", 1)[0].decode(errors="replace")


def time_to_served(port, limit):
    """Seconds until a new /echo connection gets its echo (None: not within `limit`)."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        try:
            ws = Ws(port, "/echo", 1.0)
            ws.round_trip()
            ws.close()
            return time.monotonic() - started
        except OSError:
            time.sleep(0.05)
    return None


def fmt(t):
    return "never" if t is None else f"{t * 1000:.0f} ms"


def scenario_block(args):
    server = Server(args)
    try:
        echo = Ws(server.port, "/echo")
        bad = Ws(server.port, "/bad")
        probes = {}

        def probe(name, at, measure):
            time.sleep(at)
            try:
                probes[name] = measure()
            except OSError:
                probes[name] = None

        def handshake():
            t0 = time.monotonic()
            Ws(server.port, "/echo", 10).round_trip()
            return time.monotonic() - t0

        threads = [threading.Thread(target=probe, args=a) for a in (
            ("handshake", 1.0, handshake),
            ("static", 1.5, lambda: http_get(server.port, "/index.html")[0]),
            ("healthz", 2.0, lambda: http_get(server.admin, "/healthz")[0]))]
        bad.send(f"sleep {args.block_ms}")
        started = time.monotonic()
        for t in threads:
            t.start()
        worst = 0.0
        while time.monotonic() - started < args.block_ms / 1000 + 0.3:
            worst = max(worst, echo.round_trip())
            time.sleep(0.05)
        for t in threads:
            t.join()
        blocked_lines = [l for l in server.logs().splitlines() if "blocked" in l]
        print(f"block {args.block_ms} ms: other connection's worst round trip {fmt(worst)}; "
              f"new handshake+echo {fmt(probes.get('handshake'))}; static page {fmt(probes.get('static'))}; "
              f"/healthz {fmt(probes.get('healthz'))}; log lines with 'blocked': {len(blocked_lines)}"
              + (f" (first: {blocked_lines[0][:160]})" if blocked_lines else ""))
    finally:
        server.stop()


def scenario_spin(args):
    server = Server(args)
    try:
        bad = Ws(server.port, "/bad")
        bad.send("spin")
        time.sleep(0.2)
        served = time_to_served(server.port, args.limit)
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            server.proc.wait(timeout=args.limit + args.grace)
            exited = time.monotonic() - started
        except subprocess.TimeoutExpired:
            exited = None
        print(f"spin: new connection served after {fmt(served)}; SIGTERM -> exit {fmt(exited)}"
              f" (grace {args.grace} s)")
    finally:
        server.stop()


def scenario_crash(args, kind):
    server = Server(args)
    try:
        echoes = [Ws(server.port, "/echo") for _ in range(8)]
        refused = []
        stop = threading.Event()

        def knock():
            while not stop.is_set():
                try:
                    socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
                except ConnectionRefusedError:
                    refused.append(time.monotonic())
                except OSError:
                    pass
                time.sleep(0.01)

        knocker = threading.Thread(target=knock)
        knocker.start()
        bad = Ws(server.port, "/bad")
        bad.send(kind)
        time.sleep(0.3)
        served = time_to_served(server.port, args.limit)
        survivors = 0
        for ws in echoes:
            try:
                ws.sock.settimeout(2)
                ws.round_trip()
                survivors += 1
            except OSError:
                pass
        stop.set()
        knocker.join()
        alive = server.proc.poll() is None
        died = [l for l in server.logs().splitlines() if " died: " in l]
        print(f"{kind}: server (pid {server.proc.pid}) {'alive' if alive else 'DEAD'}; new connection served after "
              f"{fmt(served)}; {survivors}/8 earlier connections still echo; refused connects: {len(refused)}"
              + (f"; log: {died[0][died[0].find('worker ', 10):][:260]}" if died else ""))
    finally:
        server.stop()


class RssSampler:
    """Samples the server's resident memory (every process under it) every 100 ms in a
    thread: the peak, and the series, survive a worker recycled in between two looks."""

    def __init__(self, server):
        self.server, self.samples, self.stop_flag = server, [], threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        started = time.monotonic()
        while not self.stop_flag.is_set():
            self.samples.append((time.monotonic() - started, self.server.rss_mib()))
            self.stop_flag.wait(0.1)

    def stop(self):
        self.stop_flag.set()
        self.thread.join(5)
        return self.samples


def close_code(ws, wait):
    """The close code the server sent on `ws` within `wait` s (None: none; 1006: dropped)."""
    ws.sock.settimeout(wait)
    try:
        while True:
            b0, b1 = ws._read(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack(">H", ws._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", ws._read(8))[0]
            payload = ws._read(n)
            if b0 & 0x0F == 0x8:
                return struct.unpack(">H", payload[:2])[0] if len(payload) >= 2 else 1005
    except socket.timeout:
        return None
    except OSError:
        return 1006


def scenario_hog(args):
    server = Server(args)
    try:
        before = server.rss_mib()
        sampler = RssSampler(server)
        conns, refused = [], 0
        for _ in range(args.hog_conns):
            try:
                ws = Ws(server.port, "/bad")
                ws.send(f"hog {args.hog_mib}")
                ws.recv()
                conns.append(ws)
            except OSError:
                refused += 1  # e.g. the worker serving it was recycled meanwhile: go on
        hoarded = sampler.samples[-1][0] if sampler.samples else 0.0
        time.sleep(args.hog_wait)
        served = time_to_served(server.port, args.limit)
        samples = sampler.stop()
        peak = max((mib for _, mib in samples), default=0.0)
        after = server.rss_mib()
        codes = {}
        for ws in conns:
            code = close_code(ws, 0.2)
            codes[code] = codes.get(code, 0) + 1
        alive = server.proc.poll() is None
        recycled = [l for l in server.logs().splitlines() if "recycl" in l and not l.startswith("worker=")]
        timeline = " ".join(f"{mib:.0f}" for t, mib in samples[::10])
        closes = ", ".join(f"{n} {'open' if c is None else c}" for c, n in sorted(codes.items(), key=str))
        print(f"hog {args.hog_conns} x {args.hog_mib} MiB: RSS {before:.0f} MiB before, peak {peak:.0f} MiB "
              f"(sampled every 100 ms), {after:.0f} MiB {args.hog_wait} s after the hoarding ({hoarded:.1f} s); "
              f"{len(conns)} hogs held, {refused} refused; hog connections: {closes}; a new /echo served in "
              f"{fmt(served)}; server {'alive' if alive else 'DEAD'}; RSS each second (MiB): {timeline}; "
              f"recycle lines: {len(recycled)}"
              + "".join(f"\n  {l[l.find('Z ') + 2:][:160]}" for l in recycled))
    finally:
        server.stop()


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--wshd", required=True)
    p.add_argument("--plugins", required=True)
    p.add_argument("--server-keys", default="", help="TOML lines added to [server]")
    p.add_argument("--extra", default="", help="TOML appended to the config")
    p.add_argument("--scenarios", default="block,spin,abort,overflow,null,hog")
    p.add_argument("--grace", type=int, default=5)
    p.add_argument("--settle", type=float, default=1.0, help="wait after the first echo, s")
    p.add_argument("--limit", type=float, default=15.0, help="longest wait for a new connection, s")
    p.add_argument("--block-ms", type=int, default=5000)
    p.add_argument("--hog-conns", type=int, default=50)
    p.add_argument("--hog-mib", type=int, default=64)
    p.add_argument("--hog-wait", type=float, default=5.0)
    args = p.parse_args()
    # The server runs in a temporary directory: relative paths are made absolute here.
    args.wshd, args.plugins = os.path.abspath(args.wshd), os.path.abspath(args.plugins)
    for name in args.scenarios.split(","):
        if name == "block":
            scenario_block(args)
        elif name == "spin":
            scenario_spin(args)
        elif name in ("abort", "overflow", "null"):
            scenario_crash(args, name)
        elif name == "hog":
            scenario_hog(args)
        else:
            sys.exit(f"unknown scenario {name}")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
