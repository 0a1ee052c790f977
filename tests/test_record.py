"""``obengine record`` against the simulated exchange on loopback, in-process and as a real
process: the recording replays to exactly the books the live client held, through gaps, bad
frames and dropped connections; a recorder killed with SIGKILL at random moments leaves a
recording whose every book is one the market really had; SIGTERM flushes and exits 0; a write
error (the file size limit) exits 4 with a clear message and leaves every complete block
readable; the metrics endpoint serves the figures and a health check. Waits are hang guards,
never timed assertions."""
from __future__ import annotations

import asyncio
import random
import resource
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from obengine import BookSet, replay
from obengine.record import Kind, ReadStats, read
from obengine.recorder import Recorder
from obengine.sim import SimExchange

PAIRS = ["BTCTRY", "ETHTRY", "XRPTRY", "USDTTRY"]
GUARD_S = 30.0

Levels = tuple[tuple[tuple[Decimal, Decimal], ...], tuple[tuple[Decimal, Decimal], ...]]


def _levels(snapshot: dict[str, Any]) -> Levels:
    return (
        tuple((Decimal(p), Decimal(a)) for p, a in snapshot["bids"]),
        tuple((Decimal(p), Decimal(a)) for p, a in snapshot["asks"]),
    )


def _replay(directory: Path) -> tuple[BookSet, dict[int, int], ReadStats, list[dict[str, Any]]]:
    """The books ``obengine.replay`` rebuilds, and what the recording holds: records by kind,
    the reader's counts, the recorder's events."""
    kinds: dict[int, int] = {}
    stats = ReadStats()
    events: list[dict[str, Any]] = []
    for _, record in read([directory], stats=stats):
        kinds[record.kind] = kinds.get(record.kind, 0) + 1
        if record.kind == Kind.EVENT:
            events.append(record.json())
    return replay.books(directory), kinds, stats, events


class Truth:
    """Every state each pair's true book had, in order."""

    def __init__(self, sim: SimExchange) -> None:
        self.sim = sim
        self.history: dict[str, list[Levels]] = {p: [self.now(p)] for p in PAIRS}

    def now(self, pair: str) -> Levels:
        bids, asks = self.sim.truth(pair)
        return tuple(bids), tuple(asks)

    async def push(self, frames: int, pause_s: float = 0.005) -> None:
        for _ in range(frames):
            for frame in await self.sim.push(1):
                for pair in PAIRS:
                    if f'"PS":"{pair}"'.encode() in frame:
                        self.history[pair].append(self.now(pair))
            await asyncio.sleep(pause_s)


def test_a_recording_replays_to_exactly_the_books_the_live_client_held_through_faults(tmp_path: Path) -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS, seed=11) as sim:
            truth = Truth(sim)
            await truth.push(5)
            recorder = Recorder(
                PAIRS, tmp_path, url=sim.ws_url, scales=sim.market.feed.scales, rotate_s=0.3,
                block_s=0.05, fsync=False, feed_options={"reconnect_initial_s": 0.05, "reconnect_max_s": 0.2},
            )
            stop = asyncio.Event()
            task = asyncio.create_task(recorder.run(stop=stop))
            await truth.push(40)
            sim.ws_faults.add("drop", pair="ETHTRY")
            sim.ws_faults.add("truncate", pair="XRPTRY")
            await truth.push(40)
            sim.ws_faults.add("abort")
            await truth.push(40)

            async def converged() -> None:
                while not (
                    recorder.feed is not None and recorder.feed.stats.reconnects >= 1
                    and all(recorder.feed.synced(p) for p in PAIRS)
                    and all(_levels(recorder.feed.books[p].snapshot()) == truth.now(p) for p in PAIRS)
                ):
                    await truth.push(1, 0.02)

            await asyncio.wait_for(converged(), GUARD_S)
            stop.set()
            await asyncio.wait_for(task, GUARD_S)
            assert recorder.feed is not None
            live = {p: recorder.feed.books[p].snapshot() for p in PAIRS}
            stats = recorder.feed.stats
        books, kinds, read_stats, events = _replay(tmp_path)
        for pair in PAIRS:
            replayed = books[pair].snapshot()
            assert (replayed["seq"], replayed["bids"], replayed["asks"]) == (
                live[pair]["seq"], live[pair]["bids"], live[pair]["asks"]), pair
        assert stats.gaps >= 1 and stats.malformed >= 1 and stats.reconnects >= 1
        assert kinds[Kind.FRAME] == recorder.frames == stats.frames
        assert read_stats.segments >= 2 and read_stats.corrupt_blocks == 0 and read_stats.truncated_tail == 0
        names = [e["event"] for e in events]
        for expected in ("start", "connect", "subscribe", "synced", "desync", "malformed", "disconnect", "stop"):
            assert expected in names, (expected, sorted(set(names)))
        assert names[-1] == "stop"

    asyncio.run(main())


async def _first_block(out: Path, truth: Truth) -> None:
    """Until a segment in ``out`` holds its first block (moving the market meanwhile)."""
    while not any(p.stat().st_size > 0 for p in out.glob("*.obr")):
        await truth.push(1, 0.02)


def _record_command(url: str, out: Path, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "obengine", "record", "--pairs", ",".join(PAIRS), "--url", url,
        "--out", str(out), "--block", "50ms", "--rotate", "1s", "--live", "off", *extra,
    ]


def test_a_recorder_killed_at_random_moments_leaves_only_books_the_market_really_had(tmp_path: Path) -> None:
    rng = random.Random(7)

    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS, seed=12) as sim:
            truth = Truth(sim)
            for run in range(3):
                out = tmp_path / f"run{run}"
                proc = await asyncio.create_subprocess_exec(*_record_command(sim.ws_url, out, "-q"))
                # Wait (a hang guard, not a timing) until it has written its first segment's
                # start: a process start can take seconds on a loaded machine or under the
                # sanitizer build. Then let it sync, and move the market until a random moment.
                await asyncio.wait_for(_first_block(out, truth), GUARD_S)
                await truth.push(rng.randint(60, 200), 0.01)
                if run == 1:
                    sim.ws_faults.add("drop", pair="BTCTRY")
                    await truth.push(rng.randint(10, 60), 0.01)
                proc.send_signal(signal.SIGKILL)
                assert await asyncio.wait_for(proc.wait(), GUARD_S) == -signal.SIGKILL
                books, kinds, read_stats, _ = _replay(out)      # never raises on the cut tail
                assert kinds.get(Kind.FRAME, 0) > 0, "nothing recorded before the kill"
                synced = [p for p in PAIRS if p in books and books[p].synced]
                assert synced, "no book synced in the recording"
                for pair in synced:
                    assert _levels(books[pair].snapshot()) in truth.history[pair], (run, pair)

    asyncio.run(main())


def test_sigterm_flushes_everything_and_exits_0(tmp_path: Path) -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS, seed=13) as sim:
            truth = Truth(sim)
            proc = await asyncio.create_subprocess_exec(
                *_record_command(sim.ws_url, tmp_path, "--block", "1h"), stderr=subprocess.PIPE,
            )
            await asyncio.wait_for(_first_block(tmp_path, truth), GUARD_S)   # the process is up
            await truth.push(150, 0.01)
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), GUARD_S)
            assert proc.returncode == 0, err.decode()
            assert b"SIGTERM: flushing and closing" in err
            books, kinds, read_stats, events = _replay(tmp_path)
            # One block an hour: everything reached the disk only because SIGTERM flushed it.
            assert events[-1]["event"] == "stop" and events[-1]["frames"] == kinds[Kind.FRAME]
            assert read_stats.truncated_tail == 0
            for pair in PAIRS:
                assert books[pair].synced and _levels(books[pair].snapshot()) in truth.history[pair]

    asyncio.run(main())


def test_a_write_error_exits_4_naming_the_file_and_leaves_every_complete_block_readable(tmp_path: Path) -> None:
    limit = 48 * 1024

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS, seed=14) as sim:
            truth = Truth(sim)
            proc = await asyncio.create_subprocess_exec(
                *_record_command(sim.ws_url, tmp_path, "--rotate", "1h"), stderr=subprocess.PIPE,
                preexec_fn=low_limit,
            )

            async def until_exit() -> None:
                while proc.returncode is None:
                    await truth.push(5, 0.005)
                    await asyncio.sleep(0)

            await asyncio.wait_for(until_exit(), GUARD_S)
            _, err = await proc.communicate()
        text = err.decode()
        assert proc.returncode == 4, text
        assert "write error" in text and "file size limit" in text and ".obr" in text
        segments = sorted(tmp_path.glob("*.obr"))
        assert segments and all(s.stat().st_size <= limit for s in segments)
        books, kinds, read_stats, _ = _replay(tmp_path)
        assert read_stats.truncated_tail == 0 and read_stats.corrupt_blocks == 0   # whole blocks only
        assert kinds[Kind.FRAME] > 0

    asyncio.run(main())


def test_metrics_and_health_endpoints_follow_the_feed(tmp_path: Path) -> None:
    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS, seed=15) as sim:
            truth = Truth(sim)
            with socket_port() as port:
                pass
            proc = await asyncio.create_subprocess_exec(
                *_record_command(sim.ws_url, tmp_path, "--metrics", f"127.0.0.1:{port}", "--stale-after", "1s"),
                stderr=subprocess.PIPE,
            )
            try:
                async def get(path: str) -> tuple[int, str]:
                    def fetch() -> tuple[int, str]:
                        try:
                            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
                                return r.status, r.read().decode()
                        except urllib.error.HTTPError as e:
                            return e.code, e.read().decode()
                        except OSError:
                            return 0, ""
                    return await asyncio.to_thread(fetch)

                async def until(path: str, status: int, text: str) -> str:
                    while True:
                        got_status, body = await get(path)
                        if got_status == status and text in body:
                            return body
                        await truth.push(2, 0.01)

                body = await asyncio.wait_for(until("/metrics", 200, "obengine_record_pairs_synced 4.0"), GUARD_S)
                assert "obengine_record_frames_total" in body
                await asyncio.wait_for(until("/healthz", 200, "ok: last frame"), GUARD_S)
                # The market stops: no frame for longer than --stale-after turns the check unhealthy.
                async def unhealthy() -> None:
                    while (await get("/healthz"))[0] != 503:
                        await asyncio.sleep(0.2)
                await asyncio.wait_for(unhealthy(), GUARD_S)
            finally:
                proc.send_signal(signal.SIGTERM)
                _, err = await asyncio.wait_for(proc.communicate(), GUARD_S)
            assert proc.returncode == 0, err.decode()

    asyncio.run(main())


class socket_port:
    """A free loopback port (closed again before use)."""

    def __enter__(self) -> int:
        import socket

        self._s = socket.socket()
        self._s.bind(("127.0.0.1", 0))
        return int(self._s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        self._s.close()


def test_usage_errors_and_an_unwritable_output_give_their_exit_codes(tmp_path: Path) -> None:
    base = [sys.executable, "-m", "obengine", "record", "--live", "off"]
    bad = subprocess.run([*base, "--pairs", "BTCTRY"], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "--out" in bad.stderr
    bad = subprocess.run([*base, "--pairs", "BTCTRY", "--out", str(tmp_path), "--duration", "soon"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "not a positive duration" in bad.stderr
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    # A file where the directory should be: unusable for anyone, root included.
    bad = subprocess.run([*base, "--pairs", "BTCTRY", "--out", str(blocker / "rec"), "--url", "ws://127.0.0.1:9"],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 3, bad.stderr
    assert str(blocker) in bad.stderr


def test_serve_then_record_round_trips_a_recording(tmp_path: Path) -> None:
    from obengine.sim import Playback

    first, second = tmp_path / "first", tmp_path / "second"

    async def record_from(url: str, out: Path, scales: Any, until: Any) -> Recorder:
        recorder = Recorder(PAIRS, out, url=url, scales=scales, block_s=0.05, fsync=False)
        stop = asyncio.Event()
        task = asyncio.create_task(recorder.run(stop=stop))
        await asyncio.wait_for(until(recorder), GUARD_S)
        stop.set()
        await asyncio.wait_for(task, GUARD_S)
        return recorder

    async def main() -> None:
        async with SimExchange(websocket=True, pairs=PAIRS, seed=16) as sim:
            truth = Truth(sim)

            async def moved(recorder: Recorder) -> None:
                while not (recorder.feed is not None and all(recorder.feed.synced(p) for p in PAIRS)):
                    await truth.push(1, 0.01)
                await truth.push(150, 0.005)

            await record_from(sim.ws_url, first, sim.market.feed.scales, moved)
        async with Playback([first], speed=0) as playback:
            async def played(recorder: Recorder) -> None:
                await playback.wait_finished()
                while not (recorder.feed is not None and all(recorder.feed.synced(p) for p in PAIRS)
                           and all(recorder.feed.books[p].seq == playback.books[p].seq for p in PAIRS)):
                    await asyncio.sleep(0.02)

            await record_from(playback.url, second, playback.scales, played)
        books_first, _, _, _ = _replay(first)
        books_second, kinds, stats, _ = _replay(second)
        assert stats.corrupt_blocks == 0
        for pair in PAIRS:
            a, b = books_first[pair].snapshot(), books_second[pair].snapshot()
            assert (a["seq"], a["bids"], a["asks"]) == (b["seq"], b["bids"], b["asks"]), pair
        # And byte for byte: every change set the second recording got is the first's.
        changes_first, changes_second = _changes(first), _changes(second)
        for pair in PAIRS:
            got = changes_second[pair]
            assert got, pair
            assert got == changes_first[pair][-len(got):], pair

    asyncio.run(main())


def _changes(directory: Path) -> dict[str, list[bytes]]:
    """Each pair's recorded 432 frames, in order."""
    out: dict[str, list[bytes]] = {p: [] for p in PAIRS}
    for _, record in read([directory]):
        if record.kind == Kind.FRAME and record.data.startswith(b"[432,"):
            for pair in PAIRS:
                if f'"PS":"{pair}"'.encode() in record.data:
                    out[pair].append(record.data)
    return out
