"""Prints the answer to each malformed or hostile request head of issue 16 (statuses after
the strict-parsing work). Usage: python3 tests/measure/strict_statuses.py PORT, against
`wshd -p PORT -w DIR` with an echo plugin at /echo and the default configuration."""
import socket, sys, time
port = int(sys.argv[1])
KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
def ask(name, raw, wait=None):
    s = socket.create_connection(("127.0.0.1", port)); s.settimeout(15)
    t = time.time(); s.sendall(raw)
    try: data = s.recv(200)
    except Exception as e: data = repr(e).encode()
    first = data.split(b"\r\n")[0].decode(errors="replace") or "(closed, no answer)"
    print(f"{name:58s} -> {first}  [{(time.time()-t)*1000:.0f} ms]")
ask("two Host headers", f"GET /echo HTTP/1.1\r\nHost: a\r\nHost: b\r\n{KEY}\r\n".encode())
ask("#fragment in the request target", f"GET /echo#frag HTTP/1.1\r\nHost: a\r\n{KEY}\r\n".encode())
ask("70 KiB head in one write (limit 64 KiB)", f"GET /echo HTTP/1.1\r\nHost: a\r\nX-Big: {'a'*70000}\r\n{KEY}\r\n".encode())
ask("100 KB Sec-WebSocket-Protocol, 10,000 tokens", f"GET /echo HTTP/1.1\r\nHost: a\r\nSec-WebSocket-Protocol: {', '.join('p%d'%i for i in range(10000))}\r\n{KEY}\r\n".encode())
ask("101 header lines", ("GET /echo HTTP/1.1\r\nHost: a\r\n" + "".join(f"X-{i}: v\r\n" for i in range(101)) + KEY + "\r\n").encode())
ask("valid handshake (control)", f"GET /echo HTTP/1.1\r\nHost: a\r\n{KEY}\r\n".encode())
ask("partial head, then silence (handshake timeout 10 s)", b"GET /echo HTTP/1.1\r\nHost: a\r\n")
