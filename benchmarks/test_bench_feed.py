"""The live feed on loopback: the simulator's typical 432s pushed by a server in another process
as fast as the client takes them (``feed_server.py``), through three clients, timed per frame in
wall time and in the client process's CPU time, as ratios from one run.

- ``websockets-floor``: a bare ``websockets`` receive loop that only counts messages (the
  transport floor, as issue 11 names it);
- ``picows-floor``: a bare ``picows`` listener that only counts messages: the transport the
  feed itself stands on (``obengine._wsconn``), to show what the feed adds to it;
- ``obengine-feed``: ``obengine.connect()`` and ``async for update in feed``: every frame
  applied to its exact book, one update per frame;
- ``websockets+order-book``: the same receive loop with ``orjson.loads`` and the C
  ``order-book`` keyed by ``Decimal``, as cryptofeed would run it (``peers.OrderBookC``).

Per frame is the streaming part of a round, the change sets after the hello and every pair's 431
(opening a connection, sending 380 joins and the 380 snapshots are once per connection, and what
the exchange then sends for hours is change sets), minimum over rounds; pytest-benchmark's
own figures time the whole round, connection included. The server (``feed_server.py``) writes a
stream framed in advance at the kernel's speed, so the client is always the slower side. The
feed's and the peer's ratios to the floor are taken against a floor round run just before each
of their rounds (``paired_floor_*``): rounds seconds apart, not a minute.

Targets (issue 11): obengine's feed at most 1.2x the (websockets) floor, the peer path at least
2x obengine's feed. Reported, not gated (``report.py`` shows the table, ``gate.py`` the ratios,
the feed's over the picows floor too).
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import peers
import workloads

WORKLOAD = "w2-mixed"


@pytest.fixture(scope="module")
def server(short: bool) -> Iterator[tuple[str, int]]:
    proc = subprocess.Popen(
        [sys.executable, os.path.join(os.path.dirname(__file__), "feed_server.py"), WORKLOAD, "1" if short else "0"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        port, count = proc.stdout.readline().split()
        yield f"ws://127.0.0.1:{port}", int(count)
    finally:
        proc.terminate()
        proc.wait(10)


class Clock:
    """The streaming part of a round: from the first message received to the last, in wall and
    in this process's CPU time (the connection's opening, and the feed's joins, are once per
    connection, not per frame)."""

    def __init__(self) -> None:
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self._start = (0.0, 0.0)

    def first(self) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def last(self) -> None:
        self.wall.append(time.perf_counter() - self._start[0])
        self.cpu.append(time.process_time() - self._start[1])


def _measure(benchmark: Any, path: str, kind: str, wl: workloads.Workload, count: int,
             round_: Callable[[Clock], int], short: bool, paired_floor: Callable[[Clock], int] | None = None) -> None:
    """Time ``round_``; with ``paired_floor``, run one round of the transport floor (untimed by
    pytest-benchmark, timed by its own clock) before each round, so that the ratio to the floor
    compares rounds taken seconds apart: this shared machine drifts by tens of percent over the
    minute that separate tests would put between them."""
    clock = Clock()
    floor_clock = Clock()

    def timed() -> None:
        seen = round_(clock)
        assert seen == count, (seen, count)

    def setup() -> None:
        if paired_floor is not None:
            assert paired_floor(floor_clock) == count

    benchmark.extra_info.update({
        "workload": "feed-" + WORKLOAD, "path": path, "kind": kind, "exact": kind != "floor",
        "frames": count - _skip(wl), "changes": wl.changes,   # per frame: the streamed change sets
    })
    benchmark.pedantic(timed, setup=setup, rounds=5 if short else 8, warmup_rounds=1, iterations=1)
    benchmark.extra_info["stream_wall_s_min"] = min(clock.wall)
    benchmark.extra_info["cpu_s_min"] = min(clock.cpu)
    if paired_floor is not None:
        benchmark.extra_info["paired_floor_wall_s_min"] = min(floor_clock.wall)
        benchmark.extra_info["paired_floor_cpu_s_min"] = min(floor_clock.cpu)


def _skip(wl: workloads.Workload) -> int:
    """Messages before the timed stream: the hello and a 431 of every pair (once per
    connection; then the exchange sends change sets, about 170 a second for 380 pairs)."""
    return 1 + len(wl.prefix)


def _floor_round(url: str, count: int, skip: int) -> Callable[[Clock], int]:
    """One round of the bare websockets receive loop: the transport floor."""
    from websockets.asyncio.client import connect

    async def run(clock: Clock) -> int:
        async with connect(url, compression=None, max_size=2**24) as ws:
            seen = 0
            while seen < skip:
                await ws.recv(decode=False)
                seen += 1
            clock.first()
            while seen < count:
                await ws.recv(decode=False)
                seen += 1
            clock.last()
        return seen

    return lambda clock: asyncio.run(run(clock))


def _picows_round(url: str, count: int, skip: int) -> Callable[[Clock], int]:
    """One round of a bare picows listener that counts text messages: the feed's own
    transport, without the feed."""
    from picows import WSListener, WSMsgType, ws_connect

    async def run(clock: Clock) -> int:
        done = asyncio.get_running_loop().create_future()

        class Count(WSListener):  # type: ignore[misc]
            seen = 0

            def on_ws_frame(self, transport: Any, frame: Any) -> None:
                if frame.msg_type is WSMsgType.TEXT:
                    frame.get_payload_as_bytes()          # the message as bytes, as the feed takes it
                    self.seen += 1
                    if self.seen == skip:
                        clock.first()
                    elif self.seen == count:
                        clock.last()
                        done.set_result(self.seen)

        transport, _ = await ws_connect(Count, url, max_frame_size=2**24)
        seen = await done
        transport.send_close()
        transport.disconnect()
        return int(seen)

    return lambda clock: asyncio.run(run(clock))


def test_feed_picows_floor(benchmark: Any, server: tuple[str, int], workload_data: Any, short: bool) -> None:
    url, count = server
    wl = workload_data[WORKLOAD]
    skip = _skip(wl)
    _measure(benchmark, "picows-floor", "transport", wl, count, _picows_round(url, count, skip), short,
             paired_floor=_floor_round(url, count, skip))


def test_feed_floor(benchmark: Any, server: tuple[str, int], workload_data: Any, short: bool) -> None:
    url, count = server
    wl = workload_data[WORKLOAD]
    _measure(benchmark, "websockets-floor", "floor", wl, count, _floor_round(url, count, _skip(wl)), short)


def test_feed_obengine(benchmark: Any, server: tuple[str, int], workload_data: Any, short: bool) -> None:
    import obengine

    url, count = server
    wl = workload_data[WORKLOAD]
    pairs = list(wl.truth)
    skip = _skip(wl)

    async def run(clock: Clock) -> int:
        async with obengine.connect(pairs, url=url, scales=wl.scales) as feed:
            started = False
            async for _ in feed:
                if feed.stats.frames >= count:
                    break
                if not started and feed.stats.frames >= skip:
                    clock.first()       # the hello and every pair's 431 have come: the stream
                    started = True
            clock.last()
            assert feed.stats.gaps == 0 and feed.stats.malformed == 0
            return feed.stats.frames

    _measure(benchmark, "obengine-feed", "obengine", wl, count, lambda clock: asyncio.run(run(clock)), short,
             paired_floor=_floor_round(url, count, skip))


def test_feed_peer(benchmark: Any, server: tuple[str, int], workload_data: Any, short: bool) -> None:
    if peers.OrderBookC.unavailable():
        pytest.skip(peers.OrderBookC.unavailable() or "")
    from websockets.asyncio.client import connect

    url, count = server
    wl = workload_data[WORKLOAD]
    skip = _skip(wl)

    async def run(clock: Clock) -> int:
        path = peers.OrderBookC(wl.scales)
        apply = path.apply
        async with connect(url, compression=None, max_size=2**24) as ws:
            seen = 0
            while seen < skip:
                apply(await ws.recv(decode=False))
                seen += 1
            clock.first()
            while seen < count:
                apply(await ws.recv(decode=False))
                seen += 1
            clock.last()
        return seen

    _measure(benchmark, "websockets+order-book", "peer", wl, count, lambda clock: asyncio.run(run(clock)), short,
             paired_floor=_floor_round(url, count, skip))
