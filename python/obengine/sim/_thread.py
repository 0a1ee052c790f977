"""Running a simulated server (anything with ``async start()`` and ``async stop()``) on a
background thread with its own event loop, for synchronous callers."""
from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Protocol, TypeVar


class _Server(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


S = TypeVar("S", bound=_Server)


@contextlib.contextmanager
def in_thread(server: S, name: str) -> Iterator[S]:
    """Start ``server`` on a new thread's event loop; yield it once it listens (or raise what
    its start raised); on exit, stop it on its loop and join the thread."""
    ready = threading.Event()
    failed: list[BaseException] = []
    handles: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    async def main() -> None:
        stop = asyncio.Event()
        handles.append((asyncio.get_running_loop(), stop))
        try:
            await server.start()
        except BaseException as exc:  # reported to the caller's thread
            failed.append(exc)
            ready.set()
            return
        ready.set()
        try:
            await stop.wait()
        finally:
            await server.stop()

    thread = threading.Thread(target=asyncio.run, args=(main(),), name=name, daemon=True)
    thread.start()
    ready.wait()
    if failed:
        thread.join()
        raise failed[0]
    try:
        yield server
    finally:
        loop, stop = handles[0]
        loop.call_soon_threadsafe(stop.set)
        thread.join()
