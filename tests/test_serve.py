"""``obengine serve`` (:class:`obengine.sim.playback.Playback`): a recording played back as the
exchange's websocket feed. Recordings are real files written with :class:`obengine.record.
Recording` from the package's simulator (a few pairs, trades and tickers, a CS gap and the
recorder's resync 431, segment rotations, one of them while a pair is unsynced); clients are
real :func:`obengine.connect` feeds and raw websockets clients on loopback; the command runs in a
real subprocess and is stopped with a real SIGTERM.

The oracle: the books obtained by applying the recording's FRAME records to a fresh
``BookSet`` in memory, compared exactly (``Book.snapshot()``: levels, CS, scales, synced).

No timed assertions: waits are bounded only to fail instead of hanging. The one assertion on
time is a lower bound (a paced playback must not run early)."""
from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.client import connect as ws_connect

import obengine
from obengine import BookSet, Status
from obengine.protocol import TickerEvent, TradeEvent
from obengine.record import Kind, Recording, read, segment_paths
from obengine.record import keyframes as keyframe_frames
from obengine.record import scales as book_scales
from obengine.sim import Playback
from obengine.sim.playback import RecordingSource
from obengine.simulator import FeedSimulator

PAIRS = ["BTCTRY", "ETHTRY", "XRPTRY"]
GAP_PAIR = "ETHTRY"
WAIT_S = 30.0  # only so that a broken server fails the test instead of hanging it
STEP_NS = 1_000_000  # the recorded receive times: one message a millisecond
RECORDED_HELLO = b'[991,{"type":991,"current":"5.1.0","min":"2.3.0"}]'  # not the server's own


def _result(message: str) -> bytes:
    """A subscription result as the recorder received it (2020 key order, with ``id``)."""
    return json.dumps([100, {"type": 100, "id": 0, "ok": True, "message": message}],
                      separators=(",", ":")).encode()


# -- the recording ---------------------------------------------------------------------------


@dataclass
class Made:
    """A recording made for a test, and what it holds."""

    directory: Path
    scales: dict[str, tuple[int, int]]
    books: BookSet  # the recorder's books at the end
    span_s: float  # recorded time from the first FRAME to the last
    trade_ids: list[str] = field(default_factory=list)  # recorded 422s, in order
    tickers: int = 0  # recorded 402s of BTCTRY
    recorded_431s: set[bytes] = field(default_factory=set)


def make_recording(directory: Path, *, frames: int = 1500, gap_at: int = 150, seed: int = 11) -> Made:
    """Record ``frames`` simulator frames as the recorder would (each message added, then
    applied), with the recorder's hello and subscription results, a 421 and 422 trades, 402
    tickers, a CS gap of ``GAP_PAIR`` near ``gap_at`` and the resync that follows it (a leave,
    a join and a fresh 431), and segment rotations: one while ``GAP_PAIR`` is unsynced (so it has
    no keyframe), one later."""
    sim = FeedSimulator(PAIRS, seed=seed, levels=30)
    scales = dict(sim.scales)
    books = BookSet(scales=scales)
    clock = [0]

    def now() -> tuple[int, int]:
        clock[0] += STEP_NS
        return 1_700_000_000 * 10**9 + clock[0], 10**9 + clock[0]

    rec = Recording(
        directory, prefix="test", fsync=False, block_bytes=16 * 1024,
        header=lambda: {"source": "test", "pairs": PAIRS, "channels": ["obdiff", "trade", "ticker"],
                        "scales": {**{p: list(s) for p, s in scales.items()}, **book_scales(books)}},
        keyframes=lambda: keyframe_frames(books),
    )
    made = Made(directory, scales, books, 0.0)
    first_mono: list[int] = []
    last_mono = [0]

    def add(data: bytes) -> None:
        wall, mono = now()
        rec.add(Kind.FRAME, wall, mono, data)
        books.apply(data)
        first_mono[:] = first_mono or [mono]
        last_mono[0] = mono
        if data.startswith(b"[431,"):
            made.recorded_431s.add(data)

    add(RECORDED_HELLO)
    for pair in PAIRS:
        for channel in ("obdiff", "trade", "ticker"):
            add(_result(f"join|{channel}:{pair}"))
    add(b'[421,{"symbol":"BTCTRY","items":[{"D":"1699999999000","I":"90000000002","A":"0.0100000000",'
        b'"P":"2150000.0000000000","S":1},{"D":"1699999998000","I":"90000000001","A":"0.5000000000",'
        b'"P":"2149990.0000000000","S":0}],"channel":"trade","event":"BTCTRY","type":421}]')
    skipped = False
    resync_in: int | None = None
    for i in range(frames):
        frame = sim.frames(1)[0]  # one at a time: a resync's snapshot is the book at that point
        if not skipped and i >= gap_at and frame.startswith(b'[432,{"CS":') and f'"PS":"{GAP_PAIR}"'.encode() in frame[:64]:
            skipped = True  # never received: the next 432 of the pair skips a CS
            resync_in = 40
            continue
        add(frame)
        if resync_in is not None:
            resync_in -= 1
            if resync_in == 20:
                assert not books[GAP_PAIR].synced, "the gap was recorded"
                wall, mono = now()
                rec.rotate(wall, mono)  # GAP_PAIR has no keyframe in this segment
            if resync_in == 0:
                resync_in = None
                wall, mono = now()
                rec.event("desynced", wall, mono, {"pair": GAP_PAIR, "reason": "gap"})
                add(_result(f"leave|obdiff:{GAP_PAIR}"))
                add(_result(f"join|obdiff:{GAP_PAIR}"))
                add(sim.snapshot(GAP_PAIR))
                assert books[GAP_PAIR].synced
        if i == (frames * 4) // 5:
            wall, mono = now()
            rec.rotate(wall, mono)
        if i % 37 == 0:
            n = len(made.trade_ids) + 1
            tid = f"{100000000000 + n}"
            made.trade_ids.append(tid)
            add(f'[422,{{"D":"{1700000000000 + n}","I":"{tid}","A":"0.0{n % 10 + 1}00000000",'
                f'"P":"215{n % 10}000.0000000000","PS":"BTCTRY","S":{n % 2},"channel":"trade",'
                f'"event":"BTCTRY","type":422}}]'.encode())
        if i % 101 == 0:
            made.tickers += 1
            add(f'[402,{{"PS":"BTCTRY","H":"2160000","L":"2140000","LA":"215{i % 10}000","O":"2150000",'
                f'"V":"12.5","AV":"2150500","D":"0","DP":"0","DS":"TRY","NS":"BTC","PID":1,"NPr":8,'
                f'"DPr":2,"Ord":1,"B":"2149000","A":"2151000","channel":"ticker","event":"BTCTRY",'
                f'"type":402}}]'.encode())
    assert skipped and resync_in is None
    wall, mono = now()
    rec.event("stop", wall, mono, {})
    rec.close()
    assert all(books[p].synced for p in PAIRS)
    made.span_s = (last_mono[0] - first_mono[0]) / 1e9
    return made


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory) -> Made:
    return make_recording(tmp_path_factory.mktemp("recording") / "rec")


def replayed(paths: list[Path], scales: dict[str, tuple[int, int]]) -> Iterator[tuple[BookSet, bytes]]:
    """The oracle: the recording's FRAME records applied in order to a fresh BookSet; yields
    the books after each frame."""
    books = BookSet(scales=scales)
    for _, record in read(paths):
        if record.kind == Kind.FRAME:
            books.apply(record.data)
            yield books, record.data


def final_books(made: Made) -> dict[str, Any]:
    """Every pair's ``snapshot()`` once the whole recording's frames are applied (the same as
    the recorder's own books at the end)."""
    books = BookSet(scales=made.scales)
    for _, record in read([made.directory]):
        if record.kind == Kind.FRAME:
            books.apply(record.data)
    final = {pair: books[pair].snapshot() for pair in PAIRS}
    assert final == {pair: made.books[pair].snapshot() for pair in PAIRS}
    return final


# -- helpers ---------------------------------------------------------------------------------


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds (a hang guard, not a timed assertion)."""
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never happened: {what}")
        await asyncio.sleep(0.005)


class Client:
    """An :func:`obengine.connect` feed read in a task, keeping every message it received and
    the trade and ticker events."""

    def __init__(self, pb: Playback, channels: tuple[str, ...] = ("obdiff",)) -> None:
        self.messages: list[bytes] = []
        self.trades: list[TradeEvent] = []
        self.tickers: list[TickerEvent] = []
        self.pb = pb
        self.feed = obengine.connect(PAIRS, url=pb.url, scales=pb.scales, channels=channels,
                                     on_message=lambda data, wall, mono: self.messages.append(data))
        self.task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Client:
        await self.feed.__aenter__()
        self.task = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.task is not None
        self.task.cancel()
        await asyncio.gather(self.task, return_exceptions=True)
        await self.feed.aclose()

    async def _read(self) -> None:
        async for item in self.feed:
            if isinstance(item, TradeEvent):
                self.trades.append(item)
            elif isinstance(item, TickerEvent):
                self.tickers.append(item)

    def settled(self, connection: int) -> bool:
        """The recording is played, the server has written everything to this client and the
        client has read it all, and every pair is synced."""
        if not self.pb.done:
            return False
        conns = [c for c in self.pb.connections if c.id == connection]
        if len(conns) != 1 or conns[0].queued:
            return False
        subs = self.pb.subscriptions(channel="obdiff")
        return (conns[0].sent == len(self.messages) and self.feed.protocol.all_synced()
                and all(s.live for s in subs if s.connection == connection))

    def books(self) -> dict[str, Any]:
        return {pair: self.feed.books[pair].snapshot() for pair in PAIRS}


def run(coro: Any) -> Any:
    async def guarded() -> Any:
        return await asyncio.wait_for(coro, 120)

    return asyncio.run(guarded())


# -- the source without sockets --------------------------------------------------------------


def test_source_reads_header_pairs_and_scales(made: Made) -> None:
    source = RecordingSource(made.directory)
    assert source.pairs == tuple(PAIRS)
    assert source.scales == made.scales
    assert len(source.paths) == 3
    assert source.header["source"] == "test"
    limited = RecordingSource([str(p) for p in source.paths], pairs=["XRPTRY"])
    assert limited.pairs == ("XRPTRY",) and limited.serves("XRPTRY") and not limited.serves("BTCTRY")


def test_source_skips_keyframes_that_match_and_plays_a_later_segment_from_its_keyframes(made: Made) -> None:
    whole = RecordingSource(made.directory)
    sent_431s: list[bytes] = []
    for records in whole.blocks():
        for record in records:
            sent_431s += [o.data for o in whole.feed(record) if o.kind == 431]
    sent_431s += [o.data for o in whole.finish() if o.kind == 431]
    # Played from the start, every keyframe matches the book: only recorded 431s are sent.
    assert set(sent_431s) == made.recorded_431s
    expected = final_books(made)
    assert {p: whole.books[p].snapshot() for p in PAIRS} == expected

    last = RecordingSource(segment_paths([made.directory])[-1])
    for records in last.blocks():
        for record in records:
            last.feed(record)
    assert {p: last.books[p].snapshot() for p in PAIRS} == expected


# -- clients on loopback ---------------------------------------------------------------------


def test_as_fast_as_possible_client_ends_with_the_recordings_books_exactly(made: Made) -> None:
    expected = final_books(made)

    async def scenario() -> None:
        async with Playback(made.directory, speed=0) as pb:
            assert pb.scales == made.scales and pb.pairs == tuple(PAIRS)
            async with Client(pb, channels=("obdiff", "trade", "ticker")) as client:
                await until(lambda: client.settled(1), "the client read the whole recording")
                assert client.books() == expected
                stats = client.feed.stats
                assert stats.gaps >= 1 and stats.resyncs >= 1, "the recorded gap reached the client"
                assert stats.malformed == 0
                # Trades: the 421 at the join (none yet), then every recorded 422, in order.
                assert [t.trade_id for t in client.trades] == made.trade_ids
                assert len(client.tickers) == made.tickers
                # The recorder's own hello and subscription results are never sent.
                assert RECORDED_HELLO not in client.messages
                assert not any(m.startswith(b'[100,{"type":100,"id":0') for m in client.messages)
                assert pb.frames_played > 1500

    run(scenario())


def test_fault_knobs_act_on_recorded_432s_and_the_client_resyncs_to_exact_books(made: Made) -> None:
    """The simulator's frame faults (a dropped 432, a bad value, a crossed book) on the
    recorded frames: the client desyncs each pair once, joins again, gets the current book and
    ends with the recording's books."""
    expected = final_books(made)

    async def scenario() -> None:
        async with Playback(made.directory, speed=0) as pb:
            rules = [pb.faults.add("drop", pair="XRPTRY"), pb.faults.add("bad_value", pair="BTCTRY"),
                     pb.faults.add("crossed", pair="ETHTRY")]
            async with Client(pb) as client:
                await until(lambda: client.settled(1), "the client read the whole recording")
                assert [r.fired for r in rules] == [1, 1, 1]
                stats = client.feed.stats
                assert stats.malformed == 1 and stats.crossed == 1 and stats.gaps >= 2
                assert client.books() == expected

    run(scenario())


def test_client_joining_midway_gets_the_current_book_then_exact_books(made: Made) -> None:
    """At a pace: a first client from the start, a second one joining once 400 frames are
    played. The second one's first book frames are the book at the playback position (built
    from the book, not a recorded 431), and both end with the recording's books; the playback
    took at least the recorded span divided by the speed."""
    speed = 3.0
    expected = final_books(made)

    async def scenario() -> None:
        t0 = time.monotonic()
        async with Playback(made.directory, speed=speed) as pb:
            async with Client(pb) as first:
                await until(lambda: pb.frames_played >= 400, "400 frames played")
                async with Client(pb) as second:
                    await until(lambda: second.settled(2) and first.settled(1), "both clients read all")
                    elapsed = time.monotonic() - t0
                    assert first.books() == expected
                    assert second.books() == expected
                    assert pb.started_at is not None and pb.finished_at is not None
                    assert pb.finished_at - pb.started_at >= made.span_s / speed
                    assert elapsed >= made.span_s / speed
                    check_midway_join(made, second.messages)

    run(scenario())


def check_midway_join(made: Made, messages: list[bytes]) -> None:
    """Each pair's first two book frames on the late connection (the 431 and the 432 after it:
    the one removing the 431's helper level when the book's scales need one, else the next
    recorded one) make a book equal to the recording's book at that CS, exactly; and that 431
    is not one of the recorded ones: it was built from the book at the playback position."""
    firsts: dict[str, list[bytes]] = {}
    for message in messages:
        if message.startswith((b"[431,", b"[432,")):
            got = firsts.setdefault(json.loads(message)[1]["PS"], [])
            if len(got) < 2:
                got.append(message)
    assert sorted(firsts) == sorted(PAIRS)
    want: dict[str, Any] = {}
    for pair, frames in firsts.items():
        assert len(frames) == 2 and frames[0].startswith(b"[431,"), "a join starts with a 431"
        assert frames[0] not in made.recorded_431s, "built from the book, not a recorded 431"
        books = BookSet(scales=made.scales)
        assert [books.apply(f) for f in frames] == [(pair, Status.APPLIED)] * 2
        want[pair] = books[pair].snapshot()
    seen: dict[str, Any] = {}
    for books, _ in replayed([made.directory], made.scales):
        for pair in PAIRS:
            book = books.get(pair)
            if pair not in seen and book is not None and book.synced and book.seq == want[pair]["seq"]:
                seen[pair] = book.snapshot()
    assert seen == want


def test_a_pair_unsynced_at_the_segments_start_waits_for_the_recordings_next_431(made: Made) -> None:
    """Played from the segment started during the recorded gap: its keyframes rebuild the synced
    pairs (a client's first 431 of them is a keyframe), while the pair in the gap has no
    keyframe, so its join waits for the recorder's resync 431, which it gets as recorded; the
    books end exact."""
    expected = final_books(made)
    later = segment_paths([made.directory])[1:]

    async def scenario() -> None:
        async with Playback(later, speed=0) as pb:
            async with Client(pb) as client:
                await until(lambda: client.settled(1), "the client read the segments")
                firsts: dict[str, bytes] = {}
                for message in client.messages:
                    if message.startswith(b"[431,"):
                        firsts.setdefault(json.loads(message)[1]["PS"], message)
                assert firsts[GAP_PAIR] in made.recorded_431s
                assert all(firsts[p] not in made.recorded_431s for p in PAIRS if p != GAP_PAIR)
                assert client.books() == expected

    run(scenario())


def test_in_thread_playback_plays_to_the_end_and_a_later_join_gets_the_final_book(made: Made) -> None:
    from websockets.sync.client import connect as sync_connect

    expected = final_books(made)
    with Playback.in_thread(made.directory, speed=0, wait_for_join=False) as pb:
        pb.wait_finished_sync(WAIT_S)
        assert pb.done
        with sync_connect(pb.url) as ws:
            assert ws.recv(WAIT_S) == '[991,{"type":991,"current":"6.0.0","min":"2.3.0"}]'
            ws.send('[151,{"type":151,"channel":"obdiff","event":"BTCTRY","join":true}]')
            assert '"ok":true' in str(ws.recv(WAIT_S))
            books = BookSet(scales=made.scales)
            while books.get("BTCTRY") is None or books["BTCTRY"].snapshot() != expected["BTCTRY"]:
                assert books.apply(ws.recv(WAIT_S)) == ("BTCTRY", Status.APPLIED)


def test_the_timeline_follows_mono_times_within_a_run_and_the_wall_gap_between_runs(tmp_path: Path) -> None:
    """Two recorder runs in one directory, with unrelated monotonic clocks: the playback's
    recorded timeline goes on across them by the wall-clock gap."""
    frames = FeedSimulator(["BTCTRY"], seed=3, levels=5).frames(6)
    runs = [(10**9, 1_700_000_000 * 10**9), (7 * 10**12, 1_700_000_000 * 10**9 + 5 * 10**9)]
    for (mono, wall), chunk in zip(runs, (frames[:3], frames[3:])):
        with Recording(tmp_path, prefix="run", fsync=False, header={"pairs": ["BTCTRY"]}) as rec:
            for i, frame in enumerate(chunk):
                rec.add(Kind.FRAME, wall + i * 10**8, mono + i * 10**8, frame)
    source = RecordingSource(tmp_path)
    elapsed: list[int] = []
    for records in source.blocks():
        for record in records:
            if record.kind == Kind.FRAME:
                elapsed.append(source.elapsed_ns(record))
            source.feed(record)
    step = 10**8
    # Run 1: 0, 0.1, 0.2 s; run 2 starts 5 s (wall) after run 1 started, 4.8 s after its last.
    assert elapsed == [0, step, 2 * step, 5 * 10**9, 5 * 10**9 + step, 5 * 10**9 + 2 * step]
    assert source.books["BTCTRY"].synced
# -- the command -------------------------------------------------------------------------------

# Until ``obengine.cli`` registers ``serve``, the command runs through a parser built here with
# ``obengine._cli_serve.register``, in its own process, as the CLI would run it.
_SCRIPT = """\
import argparse, logging, sys
from obengine._cli_serve import register
logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s: %(message)s")
parser = argparse.ArgumentParser(prog="obengine")
register(parser.add_subparsers(dest="command"), [])
args = parser.parse_args(sys.argv[1:])
sys.exit(args.handler(args))
"""


@pytest.fixture(scope="module")
def serve_argv() -> list[str]:
    """The command line that runs ``obengine serve``: ``python -m obengine serve`` once the CLI
    has it, else the parser above."""
    wired = subprocess.run([sys.executable, "-m", "obengine", "serve", "--help"],
                           capture_output=True, text=True, timeout=60)
    if wired.returncode == 0 and "--speed" in wired.stdout:
        return [sys.executable, "-m", "obengine", "serve"]
    return [sys.executable, "-c", _SCRIPT, "serve"]


def test_serve_command_prints_url_pairs_scales_serves_and_exits_0_on_sigterm(
    made: Made, serve_argv: list[str]
) -> None:
    proc = subprocess.Popen([*serve_argv, str(made.directory), "--speed", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("ws://127.0.0.1:")
        assert proc.stdout.readline().strip() == f"pairs: {','.join(PAIRS)}"
        scales_line = proc.stdout.readline().strip()
        assert scales_line.startswith("scales: ")
        assert {p: tuple(s) for p, s in json.loads(scales_line[8:]).items()} == made.scales

        async def join() -> bytes:
            async with ws_connect(url) as ws:
                await asyncio.wait_for(ws.recv(), WAIT_S)  # the hello
                await ws.send('[151,{"type":151,"channel":"obdiff","event":"XRPTRY","join":true}]')
                answer = await asyncio.wait_for(ws.recv(), WAIT_S)
                assert json.loads(answer)[1] == {"type": 100, "ok": True, "message": "join|obdiff:XRPTRY"}
                first = await asyncio.wait_for(ws.recv(), WAIT_S)
                assert isinstance(first, str)
                # Leave, and read up to the answer: nothing is left for this connection, so
                # nothing holds the playback back (at speed 0 it waits for its clients).
                await ws.send('[151,{"type":151,"channel":"obdiff","event":"XRPTRY","join":false}]')
                while "leave|obdiff:XRPTRY" not in await asyncio.wait_for(ws.recv(), WAIT_S):
                    pass
                return first.encode()

        first = run(join())
        assert first in made.recorded_431s and b'"PS":"XRPTRY"' in first  # the recording's first 431
        # The client has left: the playback plays to the end and the server stays up.
        lines: list[str] = []
        ended = threading.Event()

        def read_log() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.append(line)
                if "end of recording" in line:
                    ended.set()
            ended.set()  # the process is gone: the assertions below say so

        reader = threading.Thread(target=read_log, daemon=True)
        reader.start()
        assert ended.wait(WAIT_S) and any("end of recording" in line for line in lines), lines
        assert proc.poll() is None, "the server stays up at the end of the recording"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(WAIT_S) == 0
        reader.join(WAIT_S)
        assert any("SIGTERM" in line for line in lines), lines
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_command_exit_status_for_a_missing_path_a_non_recording_and_an_unknown_pair(
    made: Made, serve_argv: list[str], tmp_path: Path
) -> None:
    missing = subprocess.run([*serve_argv, str(tmp_path / "nope")], capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 2 and "no such file" in missing.stderr
    garbage = tmp_path / "garbage.obr"
    garbage.write_bytes(b"this is not a recording\n" * 200)
    wrong = subprocess.run([*serve_argv, str(garbage)], capture_output=True, text=True, timeout=60)
    assert wrong.returncode == 3 and "not an obengine recording" in wrong.stderr
    unknown = subprocess.run([*serve_argv, str(made.directory), "--pairs", "NOPETRY"],
                             capture_output=True, text=True, timeout=60)
    assert unknown.returncode == 2 and "NOPETRY" in unknown.stderr
