#!/usr/bin/env python3
"""Writes the hand-made seed inputs of every fuzz target into fuzz/corpus/<target>/seed-*.

    python3 fuzz/seeds.py

Seeds are real requests, frames as Autobahn sends them, deflate streams, the shipped configs
and proxy headers; the fuzzer's own finds (minimised with `cargo fuzz cmin`) sit beside them.
The byte layouts the targets expect are documented in crates/wshd/src/fuzz_api/.
"""
import glob
import os
import re
import struct
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(ROOT)


def write(target, name, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


def head(lines, first="GET /echo HTTP/1.1"):
    return "\r\n".join([first] + lines) + "\r\n\r\n"


KEY = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
BASE = ["Host: 127.0.0.1:8880", "Upgrade: websocket", "Connection: Upgrade", KEY, "Sec-WebSocket-Version: 13"]


def request_heads():
    write("request_head", "rfc6455", head(BASE + ["Origin: http://example.com", "Sec-WebSocket-Protocol: chat, superchat"]))
    write("request_head", "chromium", head([
        "Host: localhost:8880", "Connection: Upgrade", "Pragma: no-cache", "Cache-Control: no-cache",
        "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Chrome/131.0.0.0", "Upgrade: websocket",
        "Origin: http://localhost:8880", "Sec-WebSocket-Version: 13", "Accept-Encoding: gzip, deflate, br",
        "Accept-Language: en-US,en;q=0.9", "Sec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"], "GET /chat HTTP/1.1"))
    write("request_head", "firefox", head([
        "Host: localhost:8880", "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "Accept: */*", "Sec-WebSocket-Version: 13", "Origin: http://localhost:8880",
        "Sec-WebSocket-Extensions: permessage-deflate", "Sec-WebSocket-Key: AQIDBAUGBwgJCgsMDQ4PEA==",
        "Connection: keep-alive, Upgrade", "Upgrade: websocket"]))
    write("request_head", "deflate-params", head(BASE + [
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
        " server_max_window_bits=10; client_max_window_bits=9, permessage-deflate"]))
    write("request_head", "deflate-bad", head(BASE + [
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=08, x-webkit-deflate-frame",
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits=\"12\"; foo"]))
    write("request_head", "two-hosts", head(BASE + ["Host: evil.example"]))
    write("request_head", "fragment", head(BASE, "GET /echo#frag HTTP/1.1"))
    write("request_head", "absolute-uri", head(BASE, "GET ws://127.0.0.1:8880/echo?x=1 HTTP/1.1"))
    write("request_head", "http10", head(BASE, "GET /echo HTTP/1.0"))
    write("request_head", "post", head(BASE, "POST /echo HTTP/1.1"))
    write("request_head", "version8", head(BASE[:4] + ["Sec-WebSocket-Version: 8"]))
    write("request_head", "two-versions", head(BASE + ["Sec-WebSocket-Version: 8"]))
    write("request_head", "bad-key", head(BASE[:3] + ["Sec-WebSocket-Key: short==", BASE[4]]))
    write("request_head", "no-host", head(BASE[1:]))
    write("request_head", "no-upgrade", head(["Host: a", "Connection: keep-alive"], "GET / HTTP/1.1"))
    write("request_head", "many-protocols", head(BASE + ["Sec-WebSocket-Protocol: " + ", ".join("p%d" % i for i in range(40))]))
    write("request_head", "empty-protocols", head(BASE + ["Sec-WebSocket-Protocol: , ,chat,", "Sec-WebSocket-Protocol: x"]))
    write("request_head", "lf-only", head(BASE).replace("\r\n", "\n"))


def frame(opcode, payload, fin=True, rsv1=False, mask=b"\x37\xfa\x21\x3d", length=None):
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload) if length is None else length
    m = 0x80 if mask else 0
    if n < 126:
        h = bytes([b0, m | n])
    elif n < 65536:
        h = bytes([b0, m | 126]) + struct.pack(">H", n)
    else:
        h = bytes([b0, m | 127]) + struct.pack(">Q", n)
    if mask:
        payload = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        h += mask
    return h + payload


def deflated(data, wbits=-15):
    c = zlib.compressobj(6, zlib.DEFLATED, wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(b"\x00\x00\xff\xff") else out


SERVER, CLIENT, DEFLATE, LIMIT_4K = 0x00, 0x01, 0x02, 0x06 << 3


def frame_decoder():
    w = lambda name, flags, seed, data: write("frame_decoder", name, bytes([flags, seed]) + data)
    w("hello", SERVER | LIMIT_4K, 0, frame(1, b"Hello"))
    w("hello-client", CLIENT | LIMIT_4K, 3, frame(1, b"Hello", mask=None))
    w("fragments", SERVER | LIMIT_4K, 5, frame(1, b"Hel", fin=False) + frame(9, b"ping") + frame(0, b"lo"))
    w("binary-256", SERVER | LIMIT_4K, 7, frame(2, bytes(range(256))))
    w("binary-64k", SERVER | (7 << 3), 9, frame(2, b"\xaa" * 70000)[:200])
    w("close", SERVER | LIMIT_4K, 1, frame(8, struct.pack(">H", 1000) + b"bye"))
    w("close-bad-code", SERVER | LIMIT_4K, 1, frame(8, struct.pack(">H", 1005)))
    w("close-1-byte", SERVER, 2, frame(8, b"\x03"))
    w("ping-pong", SERVER, 2, frame(9, b"") + frame(10, b"x" * 125) + frame(8, b""))
    w("long-ping", SERVER, 2, frame(9, b"x" * 126))
    w("len-2-63", SERVER, 0, bytes([0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0]))
    w("too-big", SERVER, 4, frame(2, b"", length=1 << 20)[:14] + b"\0" * 8)
    w("bad-utf8-mid", SERVER | LIMIT_4K, 11, frame(1, "κόσμε".encode() + b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"))
    w("utf8-split", SERVER | LIMIT_4K, 13, frame(1, "κό".encode()[:3], fin=False) + frame(0, "κό".encode()[3:]))
    w("unmasked", SERVER, 0, frame(1, b"Hello", mask=None))
    w("rsv-bits", SERVER, 0, bytes([0xf1]) + frame(1, b"x")[1:])
    w("bad-opcode", SERVER, 0, frame(3, b"") + frame(8, struct.pack(">H", 1002)))
    w("orphan-continuation", SERVER, 0, frame(0, b"x") + frame(8, b""))
    w("compressed-hello", SERVER | DEFLATE | LIMIT_4K, 0, frame(1, deflated(b"Hello"), rsv1=True))
    w("compressed-rfc7692", SERVER | DEFLATE | LIMIT_4K, 1, frame(1, bytes.fromhex("f248cdc9c90700"), rsv1=True))
    w("compressed-fragments", SERVER | DEFLATE | LIMIT_4K, 6,
      frame(1, deflated(b"Hello")[:3], fin=False, rsv1=True) + frame(0, deflated(b"Hello")[3:]) + frame(2, deflated(b"abc"), rsv1=True))
    w("compressed-client", CLIENT | DEFLATE | 0x04 | LIMIT_4K, 3, frame(2, deflated(b"x" * 3000), rsv1=True, mask=None))
    w("compressed-bomb", SERVER | DEFLATE | (7 << 3), 8, frame(2, deflated(b"\0" * 100000), rsv1=True))
    w("compressed-no-deflate", SERVER, 0, frame(1, deflated(b"Hello"), rsv1=True))
    w("compressed-corrupt", SERVER | DEFLATE | LIMIT_4K, 0, frame(1, b"\xff\xff\xff\xff", rsv1=True) + frame(8, b""))


def inflater():
    w = lambda name, flags, seed, data: write("inflater", name, bytes([flags, seed]) + data)
    w("rfc7692-hello", 12, 0, bytes.fromhex("f248cdc9c90700"))
    w("rfc7692-stored", 12, 3, bytes.fromhex("0005 00fa ff48 656c 6c6f 00".replace(" ", "")))
    w("rfc7692-bfinal", 12, 1, bytes.fromhex("f348cdc9c90700"))
    w("empty", 4, 0, b"\x00")
    w("text", 13, 5, deflated(open(os.path.join(REPO, "README.md"), "rb").read()[:4000]))
    w("bomb-zeros", 10, 0, deflated(b"\0" * 200000))
    w("bomb-chunked", 15, 7, deflated(b"A" * 100000))
    w("window-9", 12, 2, deflated(bytes(range(256)) * 4, wbits=-9))
    w("corrupt", 12, 0, b"\xff\xfe\xfd")
    w("round-trip", 0x80 | 12, 4, b"Hello, Hello, Hello, wshd!")
    w("round-trip-over", 0x80 | 4, 6, b"x" * 100)
    w("round-trip-no-takeover", 0x90 | 12, 2, bytes(range(256)))


def configs():
    for path in sorted(glob.glob(os.path.join(REPO, "config", "**", "*.toml"), recursive=True)):
        name = os.path.relpath(path, os.path.join(REPO, "config")).replace("/", "-")
        write("config", name, open(path, "rb").read())
    doc = open(os.path.join(REPO, "docs", "operations.md"), encoding="utf-8").read()
    for i, block in enumerate(re.findall(r"```toml\n(.*?)```", doc, re.S)[:12]):
        write("config", "operations-%02d.toml" % i, block)
    write("config", "empty.toml", "")
    write("config", "bad-type.toml", "[server]\nlisten = 8880\n")
    write("config", "unknown-key.toml", "[websocket]\nmax_message_byte = 1\n")
    write("config", "bad-trusted.toml", '[proxy]\ntrusted = ["10.0.0.0/33"]\nclient_ip_header = "forwarded"\n')
    write("config", "routes.toml", '[[route]]\npath = "/echo"\nbuiltin = "echo"\n[route.websocket]\nmax_message_bytes = 1024\n')
    write("config", "syntax.toml", "[server\nlisten = [\"127.0.0.1:0\"\n")


def forwarded():
    w = lambda name, flags, lines: write("forwarded", name, bytes([flags]) + b"\n".join(lines))
    XFF, FWD, PROTO, HOST = b"\x01", b"\x00", b"\x02", b"\x03"
    w("xff", 0x00, [XFF + b"203.0.113.7, 10.0.0.2", PROTO + b"https", HOST + b"example.com:8443"])
    w("xff-recursive", 0x04, [XFF + b"198.51.100.1, 203.0.113.7, 10.0.0.2, 127.0.0.5"])
    w("xff-untrusted", 0x10, [XFF + b"203.0.113.7"])
    w("xff-garbage", 0x04, [XFF + b"unknown, 10.0.0.1:99999, [::1]:80"])
    w("forwarded", 0x01, [FWD + b'for=192.0.2.60;proto=https;by=203.0.113.43, for="[2001:db8:cafe::17]:4711"'])
    w("forwarded-recursive", 0x05, [FWD + b'for=198.51.100.17;host=example.com, for=10.1.2.3', FWD + b"for=_hidden, for=unknown"])
    w("forwarded-v6-peer", 0x0d, [FWD + b'For="[2001:db8::1]";proto=wss;host="a.example:80"'])
    w("forwarded-bad-quote", 0x01, [FWD + b'for="192.0.2.1'])
    w("none", 0x02, [XFF + b"203.0.113.7", FWD + b"for=192.0.2.60"])


def main():
    request_heads()
    frame_decoder()
    inflater()
    configs()
    forwarded()


if __name__ == "__main__":
    main()
