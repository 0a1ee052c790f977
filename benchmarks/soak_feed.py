"""Soak: a million frames (by default) through ``obengine.connect()`` on loopback, with faults, and
the client's memory measured at the start, the middle and the end.

A server process (this script with ``--serve``) streams one cycle over and over: a 431 of each of
380 pairs, then the simulator's typical 432s of those pairs. Each cycle starts from the same
snapshots, so the books are exact again at every cycle, and the faults it injects must each be
detected and repaired: it drops a 432 now and then (a CS gap), sends a frame cut short (a
malformed frame) or a 432 twice (a stale one), and closes the connection every few cycles (the
client reconnects, joins everything again and resyncs). It ignores joins: a desynced pair comes
back with the next cycle's 431.

The client counts frames, gaps, malformed frames, resyncs and reconnects, checks every pair's
book against the cycle's truth at the end, and prints its RSS at 10%, 50% and 100% of the run.
Exit status 1 when memory grew by more than ``--max-growth-mib`` between the 10% and 100% marks,
or when a book is wrong at the end.

With ``--record``, the client is ``obengine record``'s recorder (``Recorder``: the same feed, each
frame also written into zstd segments that rotate every ``--rotate-mib``, each starting with the
keyframes of 380 books), so the RSS marks are the recorder's over many rotations; at the end the
recording is replayed with ``obengine.replay`` and every replayed book must equal the live one.
Usage::

    python benchmarks/soak_feed.py [--frames 1000000] [--max-growth-mib 8] [--record [--rotate-mib 32]]
"""
from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

sys.path.insert(0, os.path.dirname(__file__))

HELLO = '[991,{"type":991,"current":"6.0.0","min":"2.3.0"}]'
PAIRS = 380
CYCLE_FRAMES = 5000
CYCLES_PER_CONNECTION = 40


class Cycle:
    """The stream one cycle repeats, and the truth at its start (every pair's snapshot)."""

    def __init__(self, seed: int) -> None:
        from obengine.simulator import FeedSimulator

        sim = FeedSimulator.many(PAIRS, seed=seed)
        self.pairs = list(sim.pairs)
        self.scales = dict(sim.scales)
        self.snapshots = [sim.snapshot(p).decode() for p in self.pairs]
        self.truth = {p: sim.levels(p) for p in self.pairs}
        self.last_cs = sim.seq(self.pairs[-1])         # the CS of the cycle's last 431
        self.diffs = [f.decode() for f in sim.frames(CYCLE_FRAMES) if f.startswith(b"[432")]


async def serve(seed: int) -> None:
    from websockets.asyncio.server import ServerConnection
    from websockets.asyncio.server import serve as ws_serve
    from websockets.exceptions import ConnectionClosed

    cycle = Cycle(seed)
    snapshots, diffs = cycle.snapshots, cycle.diffs
    rng = random.Random(seed)

    async def handler(ws: ServerConnection) -> None:
        async def drain() -> None:
            async for _ in ws:
                pass

        reader = asyncio.create_task(drain())
        try:
            await ws.send(HELLO)
            for _ in range(CYCLES_PER_CONNECTION):
                for frame in snapshots:
                    await ws.send(frame)
                for frame in diffs:
                    roll = rng.random()
                    if roll < 0.0005:
                        continue                              # dropped: a gap
                    if roll < 0.001:
                        await ws.send(frame[: len(frame) // 2])  # cut short: malformed
                        continue
                    await ws.send(frame)
                    if roll < 0.0015:
                        await ws.send(frame)                  # twice: stale
            await ws.close()                                  # the client reconnects
        except ConnectionClosed:
            pass                                              # the client left: the run is over
        finally:
            reader.cancel()

    async with ws_serve(handler, "127.0.0.1", 0, compression=None, max_queue=None) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


async def soak(url: str, frames: int, cycle: Cycle) -> tuple[object, list[tuple[int, float]], list[str]]:
    """Run the feed for ``frames`` frames, then on to the end of the next cycle's snapshots, where
    every book must equal the cycle's truth. Returns the feed, the RSS marks, the wrong pairs."""
    import obengine

    marks = [frames // 10, frames // 2, frames]
    rss: list[tuple[int, float]] = []
    last = cycle.pairs[-1]
    async with obengine.connect(
        cycle.pairs, url=url, scales=cycle.scales, reconnect_initial_s=0.05, reconnect_max_s=0.2
    ) as feed:
        async for pair, book, _ in feed:
            n = feed.stats.frames
            if marks and n >= marks[0]:
                rss.append((n, rss_mib()))
                marks.pop(0)
            if not marks and pair == last and book.seq == cycle.last_cs:
                break                       # every pair has just had the cycle's 431
        wrong = []
        for p in cycle.pairs:
            snap = feed.books[p].snapshot()
            got = ([(Decimal(a), Decimal(b)) for a, b in snap["bids"]], [(Decimal(a), Decimal(b)) for a, b in snap["asks"]])
            if not feed.synced(p) or got != cycle.truth[p]:
                wrong.append(p)
        return feed, rss, wrong


async def soak_recorder(
    url: str, frames: int, cycle: Cycle, out: str, rotate_mib: int
) -> tuple[object, list[tuple[int, float]], list[str], object]:
    """:func:`soak` with the recorder as the client, polling its feed's counters. Returns the
    feed, the RSS marks, the wrong pairs and the recorder."""
    from obengine.recorder import Recorder

    marks = [frames // 10, frames // 2, frames]
    rss: list[tuple[int, float]] = []
    recorder = Recorder(
        cycle.pairs, out, url=url, scales=cycle.scales, rotate_bytes=rotate_mib << 20, fsync=False,
        health_s=3600.0, feed_options={"reconnect_initial_s": 0.05, "reconnect_max_s": 0.2},
    )
    stop = asyncio.Event()
    task = asyncio.create_task(recorder.run(stop=stop))
    while marks:
        await asyncio.sleep(0.02)
        if task.done():
            task.result()                   # raises what ended the recorder
        feed = recorder.feed
        if feed is None or feed._proto is None:
            continue
        n = feed.stats.frames
        while marks and n >= marks[0]:
            rss.append((n, rss_mib()))
            marks.pop(0)
    stop.set()
    await task
    # The books stopped at an arbitrary frame, where the cycle's truth is not known: what must
    # hold is that the recording replays to exactly these books (main() checks it).
    live = {p: feed.books[p].snapshot() for p in feed.books}
    return feed, rss, [], (recorder, live)


def main() -> int:
    ap = argparse.ArgumentParser(description="soak the live feed on loopback with faults; print RSS")
    ap.add_argument("--frames", type=int, default=1_000_000)
    ap.add_argument("--max-growth-mib", type=float, default=8.0)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--record", action="store_true",
                    help="soak obengine record's recorder, then replay its recording and compare")
    ap.add_argument("--rotate-mib", type=int, default=32, help="segment size with --record (default 32)")
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.serve:
        asyncio.run(serve(args.seed))
        return 0
    logging.basicConfig(level=logging.ERROR)
    cycle = Cycle(args.seed)
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--seed", str(args.seed)], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        started = time.perf_counter()
        url = f"ws://127.0.0.1:{port}"
        if args.record:
            out = tempfile.mkdtemp(prefix="obengine-soak-")
            feed, rss, wrong, (recorder, live) = asyncio.run(soak_recorder(url, args.frames, cycle, out, args.rotate_mib))
        else:
            feed, rss, wrong = asyncio.run(soak(url, args.frames, cycle))
        seconds = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(10)
    replay_ok = True
    if args.record:
        from obengine import replay

        try:
            result = replay.replay(out)
            differ = [p for p in live if p not in result.books or result.books[p].snapshot() != live[p]]
            disk = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
            print(f"record: {recorder.frames:,} frames into {result.stats.segments} segments, {disk / 2**20:,.1f} MiB; "
                  f"replayed in {result.seconds:.1f} s ({result.frames / result.seconds:,.0f} book frames/s): "
                  f"{len(live) - len(differ)} of {len(live)} books equal to the live ones"
                  + (f"; differ: {', '.join(differ[:10])}" if differ else ""))
            replay_ok = bool(live) and not differ and result.stats.corrupt_blocks == 0 and result.stats.segments >= 2
        finally:
            shutil.rmtree(out, ignore_errors=True)
    stats = feed.stats  # type: ignore[attr-defined]
    print(f"soak: {stats.frames:,} frames in {seconds:.1f} s ({stats.frames / seconds:,.0f} a second), "
          f"{stats.gaps} gaps, {stats.malformed} malformed, {stats.stale} stale, {stats.resyncs} re-joins, "
          f"{stats.reconnects} reconnects")
    for n, mib in rss:
        print(f"  RSS after {n:>9,} frames: {mib:7.1f} MiB")
    growth = rss[-1][1] - rss[0][1]
    ok = growth <= args.max_growth_mib
    print(f"  growth from the 10% mark to the end: {growth:+.1f} MiB (limit {args.max_growth_mib} MiB): "
          f"{'flat' if ok else 'GROWING'}")
    if not args.record:
        print(f"  books at the end: {len(cycle.pairs) - len(wrong)} of {len(cycle.pairs)} synced and equal to the truth"
              + (f"; wrong: {', '.join(wrong[:10])}" if wrong else ""))
    faults_seen = stats.gaps + stats.malformed > 0 and stats.reconnects > 0
    if not faults_seen:
        print("  the run saw no gap, malformed frame or reconnect: the soak did not test recovery")
    return 0 if ok and faults_seen and not wrong and replay_ok else 1


if __name__ == "__main__":
    sys.exit(main())
