"""The Python `websockets` peer of `wshd-bench fanout`.

`?role=sub` connections are subscribers; every message of a `?role=pub` connection goes to
every subscriber with `websockets.broadcast()` (the frame is built once and written to each
connection; no backpressure), not echoed to the publisher. Single-threaded (asyncio).

Usage: python fanout_websockets.py <port>
"""

import asyncio
import sys
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import broadcast, serve

SUBSCRIBERS = set()


async def handler(ws):
    query = parse_qs(urlsplit(ws.request.path).query)
    role = query.get("role", [""])[0]
    if role == "sub":
        SUBSCRIBERS.add(ws)
        try:
            await ws.wait_closed()
        finally:
            SUBSCRIBERS.discard(ws)
    elif role == "pub":
        async for message in ws:
            broadcast(SUBSCRIBERS, message)
    else:
        await ws.close(1008, "role=sub or role=pub")


async def main(port):
    async with serve(handler, "127.0.0.1", port, compression=None, max_queue=None, ping_interval=None, backlog=1024):
        print(f"fanout_websockets listening on {port}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
