"""A websocket server for the live-feed benchmark, run in its own process: it serves one stream
(the hello, a 431 of every pair, then the workload's 432s) to every connection as fast as the
client takes it, and reads and drops what the client sends (its joins). Usage:
``python feed_server.py WORKLOAD SHORT`` prints its port on the first line of stdout."""
from __future__ import annotations

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import workloads  # noqa: E402
from websockets.asyncio.server import ServerConnection, serve  # noqa: E402

HELLO = '[991,{"type":991,"current":"6.0.0","min":"2.3.0"}]'


async def main(name: str, short: bool) -> None:
    wl = workloads.build(name, short)
    stream = [HELLO] + [f.decode() for f in wl.prefix] + [f.decode() for f in wl.frames]

    async def handler(ws: ServerConnection) -> None:
        async def drain() -> None:
            async for _ in ws:
                pass

        reader = asyncio.create_task(drain())
        try:
            for message in stream:
                await ws.send(message)
            await ws.wait_closed()
        finally:
            reader.cancel()

    async with serve(handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
        print(server.sockets[0].getsockname()[1], len(stream), flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] == "1"))
