"""Time for a new client's handshake + echo while 2,100 silent sockets hold a single-process
wshd under a 2,000-descriptor limit (issue 16; docs/decisions/0020-pending-connections.md).

    python3 tests/measure/pending_fd_limit.py target/debug/wshd ["server key = value"]

Opens 2,100 silent TCP connections (in batches of 100, so the accept queue never overflows),
waits until the server's descriptor count is stable, then times three new clients (connect,
handshake, one echo) and counts "accept failed" log lines. Needs prlimit and a built
target/debug/libecho_wsh.so."""
import os, select, shutil, socket, subprocess, sys, tempfile, time, threading

binary = sys.argv[1]
extra = sys.argv[2] if len(sys.argv) > 2 else ''
root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
d = tempfile.mkdtemp(prefix="wshd-fd-")
os.makedirs(f"{d}/handlers")
shutil.copy(f"{root}/target/debug/libecho_wsh.so", f"{d}/handlers/libecho_wsh.so")
s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
open(f"{d}/server.toml", "w").write(
    f'[server]\nlisten = ["127.0.0.1:{port}"]\nworkers = 0\n{extra}\n[handlers]\ndir = "{d}/handlers"\n')
server = subprocess.Popen(["prlimit", "--nofile=2000:2000", "--", binary, "-c", f"{d}/server.toml"],
                          stderr=subprocess.PIPE, text=True, env={**os.environ, "RUST_LOG": "info"})
lines = []
def pump():
    for line in server.stderr:
        lines.append((time.time(), line))
threading.Thread(target=pump, daemon=True).start()
deadline = time.time() + 30
while not any("listening on" in l for _, l in lines):
    assert time.time() < deadline, "no start"
    time.sleep(0.05)

def client(timeout=15.0):
    t0 = time.time()
    c = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c.settimeout(max(0.1, timeout - (time.time() - t0)))
    c.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = c.recv(4096)
        if not chunk:
            return None, "closed"
        buf += chunk
    status = buf.split(b" ")[1]
    c.sendall(bytes([0x81, 0x82, 1, 2, 3, 4]) + bytes([ord("h") ^ 1, ord("i") ^ 2]))
    rest = buf.split(b"\r\n\r\n", 1)[1]
    while len(rest) < 4:
        rest += c.recv(4096)
    c.close()
    return time.time() - t0, (status, rest[:4])

print("idle server:", client())
silent = []
t0 = time.time()
for i in range(2100):
    sck = socket.socket(); sck.setblocking(False); sck.connect_ex(("127.0.0.1", port)); silent.append(sck)
    if i % 100 == 99:
        time.sleep(0.05)
poller = select.poll()
for sck in silent:
    poller.register(sck, select.POLLOUT)
ready = set()
while len(ready) < len(silent) and time.time() - t0 < 20:
    for fd, _ in poller.poll(100):
        ready.add(fd); poller.unregister(fd)
print(f"{len(ready)} connected")
print(f"2100 silent sockets open in {time.time()-t0:.2f}s")
log_mark = time.time()
prev, stable_since = -1, time.time()
while time.time() - stable_since < 0.5 and time.time() - log_mark < 8:
    n = len(os.listdir(f"/proc/{server.pid}/fd"))
    if n != prev:
        prev, stable_since = n, time.time()
    time.sleep(0.05)
pid = server.pid
print("server fds:", len(os.listdir(f"/proc/{pid}/fd")))
for i in range(3):
    try:
        print(f"new client {i}:", client())
    except Exception as e:
        print(f"new client {i}: failed after timeout: {e!r}")
time.sleep(2)
window = time.time() - log_mark
failed = sum(1 for t, l in lines if t >= log_mark and "accept failed" in l)
print(f"'accept failed' log lines since the sockets were opened: {failed} in {window:.1f}s")
print("".join(l for _, l in lines if "descriptor" in l or "accept" in l)[:1500])
server.kill(); server.wait()
for sck in silent:
    sck.close()
shutil.rmtree(d)
