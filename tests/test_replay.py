"""``obengine.replay`` and ``obengine replay`` on real recordings written by the package's own
writer from simulated feeds with faults (a dropped frame, a malformed frame, a frame that is
not a book frame, a pair left unsynced across a segment boundary and at the end): the books
equal those the live client held, per frame, at a time and at the end; ``apply_block`` equals
``apply`` record by record; damage is skipped and counted; parallel replay (local processes and
a Dask cluster) equals one sequential pass."""
from __future__ import annotations

import gc
import json
import subprocess
import sys
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from obengine import Book, BookSet, FrameError, Status
from obengine import replay as rp
from obengine.record import Kind, ReadStats, Recording, iter_blocks, keyframes, read, scales, segment_paths
from obengine.record.format import RECORD_HEADER_SIZE, encode_record
from obengine.simulator import FeedSimulator
from helpers import record_block

S = 1_000_000_000
WALL0 = 1_796_238_900_000_000_000
TRADE = b'[422,{"D":0,"PS":"BTCTRY","channel":"trade","event":"BTCTRY","type":422}]'
CUT = b'[432,{"CS":12,"PS":"BTCTRY","AO":[{"CP":1,"P":"1'


@dataclass
class Recorded:
    path: Path
    frames: list[bytes]
    live: dict[str, Any]                 # pair -> (snapshot, wide) at the end
    at: dict[int, dict[str, Any]]        # frame index -> the same, after that frame
    times: list[int]                     # receive time of each frame
    gap_pair: str
    end_unsynced: str
    segments: int


def state(books: Any) -> dict[str, Any]:
    return {p: (books[p].snapshot(), books[p].wide) for p in books}


def synced_state(books: Any) -> dict[str, Any]:
    return {p: books[p].snapshot() for p in books if books[p].synced}


def pair_432s(frames: list[bytes], pair: str) -> list[int]:
    return [i for i, f in enumerate(frames) if f.startswith(b"[432") and f'"PS":"{pair}"'.encode() in f]


def build(tmp: Path, *, seed: int = 5, n_pairs: int = 5, rotate_bytes: int = 60_000, mark: tuple[int, ...] = ()) -> Recorded:
    """A recording of a simulated feed with faults, written as the recorder writes it (each
    frame added before it is applied to the live books the keyframes come from)."""
    sim = FeedSimulator.many(n_pairs, seed=seed)
    pairs = sorted(sim.scales)
    gap_pair, end_unsynced = pairs[0], pairs[1]
    frames = list(sim.frames(1500))
    part = list(sim.frames(800))
    del part[pair_432s(part, gap_pair)[0]]                  # a frame lost: gap_pair gaps
    frames += part + [TRADE, CUT] + list(sim.frames(800))   # gap_pair unsynced across segments
    frames.append(sim.snapshot(gap_pair))                   # its resync
    frames += list(sim.frames(800))
    tail = list(sim.frames(300))
    del tail[pair_432s(tail, end_unsynced)[0]]              # end_unsynced ends unsynced
    frames += tail
    live = BookSet(sim.scales)
    at: dict[int, dict[str, Any]] = {}
    times = [WALL0 + i * 1_000_000 for i in range(len(frames))]
    with Recording(tmp, header=lambda: {"scales": scales(live)}, keyframes=lambda: keyframes(live),
                   rotate_bytes=rotate_bytes, block_s=0.1, fsync=False) as recording:
        for i, frame in enumerate(frames):
            recording.add(Kind.FRAME, times[i], i * 1_000_000, frame)
            try:
                live.apply(frame)
            except FrameError:
                pass
            if i in mark:
                at[i] = state(live)
    assert live[gap_pair].synced and not live[end_unsynced].synced
    return Recorded(tmp, frames, state(live), at, times, gap_pair, end_unsynced, recording.segments)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> Recorded:
    return build(tmp_path_factory.mktemp("rec"), mark=(400, 2000, 3100))


# -- updates ----------------------------------------------------------------------------------


def test_updates_yield_every_book_frame_with_its_receive_time_and_the_live_book(recorded: Recorded) -> None:
    assert recorded.segments >= 3
    seen = 0
    books: dict[str, Book] = {}
    stats = ReadStats()
    times = []
    for update in rp.updates(recorded.path, stats=stats):
        recv_ns, pair, book, status = update                       # unpacks as a 4-tuple
        assert (update.recv_ns, update.pair, update.book, update.status) == (recv_ns, pair, book, status)
        assert status is not Status.IGNORED and book.pair == pair
        assert books.setdefault(pair, book) is book                 # one live book per pair
        times.append(recv_ns)
        bids, asks = book.top(5)
        assert bids.dtype == np.int64 and not bids.flags.writeable
        seen += 1
    # every book frame but the cut one, and every keyframe (applied book frames too, stamped
    # with their segment's start)
    book_frames = sum(1 for f in recorded.frames if f.startswith((b"[431", b"[432")))
    n_keyframes = sum(1 for _, r in read([recorded.path]) if r.kind == Kind.KEYFRAME)
    assert n_keyframes > 0 and seen == book_frames - 1 + n_keyframes
    assert times == sorted(times) and set(recorded.times) >= set(times)
    assert state(books) == recorded.live
    assert stats.segments == recorded.segments and stats.corrupt_blocks == 0


def test_updates_report_the_gap_and_the_resync(recorded: Recorded) -> None:
    statuses = [u.status for u in rp.updates(recorded.path) if u.pair == recorded.gap_pair and u.recv_ns >= WALL0]
    first_gap = statuses.index(Status.GAP)
    assert Status.APPLIED in statuses[first_gap:]                # the 431 brought it back
    assert statuses[-1] is Status.APPLIED


def test_books_at_a_receive_time_are_the_live_books_after_the_last_frame_received_by_then(recorded: Recorded) -> None:
    for i, expected in recorded.at.items():
        got = rp.books(recorded.path, at_ns=recorded.times[i])
        assert state(got) == expected, i
    before = rp.books(recorded.path, at_ns=WALL0 - 1)
    assert len(before) == 0


def test_books_at_the_end_and_replay_equal_the_live_books(recorded: Recorded) -> None:
    assert state(rp.books(recorded.path)) == recorded.live
    result = rp.replay([recorded.path])
    assert state(result.books) == recorded.live
    assert not result.books[recorded.end_unsynced].synced


# -- the summary ----------------------------------------------------------------------------------


def test_replay_counts_frames_gaps_syncs_errors_and_other_frames_per_pair(recorded: Recorded) -> None:
    result = rp.replay(recorded.path)
    keyframes_of: dict[str, int] = {}
    for _, record in read([recorded.path]):
        if record.kind == Kind.KEYFRAME:
            pair = json.loads(record.data)[1]["PS"]
            keyframes_of[pair] = keyframes_of.get(pair, 0) + 1
    expected: dict[str, dict[str, int]] = {}
    books = BookSet(FeedSimulator.many(5, seed=5).scales)
    for frame in recorded.frames:
        was = {p: books[p].synced for p in books}
        try:
            pair, status = books.apply(frame)
        except FrameError:
            continue
        if pair is None:
            continue
        c = expected.setdefault(pair, {"frames": 0, "gaps": 0, "syncs": 0, "stale": 0})
        if status is Status.APPLIED:
            c["frames"] += 1
            if frame.startswith(b"[431") and not was.get(pair, False):
                c["syncs"] += 1
        elif status is Status.GAP:
            c["gaps"] += 1
        elif status is Status.STALE:
            c["stale"] += 1
    for pair, c in expected.items():
        s = result.pairs[pair]
        assert (s.frames, s.gaps, s.syncs, s.stale) == (c["frames"], c["gaps"], c["syncs"], c["stale"]), pair
        assert s.anomalies == books[pair].anomalies
        assert s.keyframes == keyframes_of[pair], pair
    assert result.pairs[recorded.gap_pair].gaps >= 1 and result.pairs[recorded.gap_pair].syncs == 2
    assert result.ignored == 1 and result.errors == 1
    assert result.pairs["BTCTRY"].errors == 1                  # the cut frame named its pair
    assert result.frames == sum(c["frames"] + c["gaps"] + c["stale"] for c in expected.values())


# -- damage ----------------------------------------------------------------------------------------


def test_a_corrupt_block_is_skipped_and_counted_and_the_replay_goes_on(recorded: Recorded, tmp_path: Path) -> None:
    files = segment_paths([recorded.path])
    for f in files:
        (tmp_path / f.name).write_bytes(f.read_bytes())
    victim = tmp_path / files[1].name
    blocks = list(iter_blocks(victim))
    assert len(blocks) >= 3
    data = bytearray(victim.read_bytes())
    data[blocks[2].offset + 80] ^= 0xFF                          # inside the third block's frame
    victim.write_bytes(bytes(data))
    result = rp.replay(tmp_path)
    assert result.stats.corrupt_blocks == 1
    assert result.stats.segments == len(files)
    # the lost frames show as gaps, and the later segments' keyframes bring every book back
    assert sum(s.gaps for s in result.pairs.values()) > sum(s.gaps for s in rp.replay(recorded.path).pairs.values())
    assert synced_state(result.books) == {p: s for p, (s, _) in recorded.live.items() if s["synced"]}


def test_a_segment_cut_short_replays_up_to_its_last_complete_block(tmp_path: Path) -> None:
    rec = build(tmp_path / "rec", rotate_bytes=10**9)
    (only,) = segment_paths([rec.path])
    blocks = list(iter_blocks(only))
    assert len(blocks) >= 3
    cut = blocks[-1].offset + 100
    with open(only, "r+b") as f:
        f.truncate(cut)
    last_time = max(r.wall_ns for b in blocks[:-1] for r in b.records())
    index = rec.times.index(last_time)
    expected = build(tmp_path / "again", rotate_bytes=10**9, mark=(index,)).at[index]
    stats = ReadStats()
    books = rp.books(only, stats=stats)
    assert stats.truncated_tail == 1 and stats.corrupt_blocks == 0
    assert state(books) == expected


# -- apply_block ------------------------------------------------------------------------------------


def test_apply_block_equals_apply_record_by_record(recorded: Recorded) -> None:
    whole, one = BookSet(), BookSet()
    for path in segment_paths([recorded.path]):
        for block in iter_blocks(path):
            end, ignored, errors = whole.apply_block(block.data)
            assert end == len(block.data)
            n_ignored, n_errors = 0, []
            for record in block.records():
                if record.kind in (Kind.FRAME, Kind.KEYFRAME):
                    try:
                        pair, _ = one.apply(record.data)
                        n_ignored += pair is None
                    except FrameError as e:
                        n_errors.append(str(e))
            assert ignored == n_ignored and [str(e) for _, e in errors] == n_errors
            assert state(whole) == state(one)


def test_apply_block_stops_before_a_later_record_and_resumes_from_where_it_stopped() -> None:
    sim = FeedSimulator.many(3, seed=9)
    frames = sim.frames(200)
    data = record_block(frames, WALL0)
    data = encode_record(Kind.HEADER, WALL0, 0, b"{}") + data + encode_record(Kind.EVENT, WALL0 + 999, 0, b'{"event":"x"}')
    books = BookSet()
    end, _, _ = books.apply_block(data, 0, WALL0 + 99)
    reference = BookSet()
    for f in frames[:100]:
        reference.apply(f)
    assert state(books) == state(reference)
    assert data[end + 4] == Kind.FRAME and int.from_bytes(data[end + 5 : end + 13], "little") == WALL0 + 100
    end2, _, _ = books.apply_block(data, end)
    assert end2 == len(data)
    for f in frames[100:]:
        reference.apply(f)
    assert state(books) == state(reference)
    assert sum(t[0] for t in books.tallies().values()) == sum(1 for f in frames if f.startswith((b"[431", b"[432")))


def test_apply_block_tallies_statuses_keyframes_and_syncs_per_book() -> None:
    b = BookSet()
    f431 = b'[431,{"CS":5,"PS":"X","AO":[{"A":"1","P":"10"}],"BO":[{"A":"1","P":"9"}],"type":431}]'
    nxt = b'[432,{"CS":6,"PS":"X","AO":[{"CP":1,"P":"10","A":"2"}],"BO":[],"type":432}]'
    gap = b'[432,{"CS":9,"PS":"X","AO":[],"BO":[],"type":432}]'
    stale = b'[432,{"CS":6,"PS":"X","AO":[],"BO":[],"type":432}]'
    again = f431.replace(b'"CS":5', b'"CS":10')
    records = [(Kind.KEYFRAME, f431), (Kind.FRAME, nxt), (Kind.FRAME, stale), (Kind.FRAME, gap), (Kind.FRAME, gap),
               (Kind.FRAME, again), (Kind.FRAME, TRADE), (Kind.EVENT, b"{}"), (Kind.FRAME, CUT)]
    data = b"".join(encode_record(k, WALL0, 0, d) for k, d in records)
    end, ignored, errors = b.apply_block(data)
    assert end == len(data) and ignored == 1
    (offset, error), = errors
    assert data[offset + RECORD_HEADER_SIZE:].startswith(CUT) and error.pair == "BTCTRY"
    # applied, stale, gaps, crossed, keyframes, syncs
    assert b.tallies() == {"X": (2, 1, 2, 0, 1, 1)}


@pytest.mark.parametrize("data, message", [
    (encode_record(Kind.FRAME, 0, 0, b"[1]")[:-1], "runs past"),
    (encode_record(Kind.FRAME, 0, 0, b"[1]")[:10], "cut at byte 0"),
    (bytes([3, 0, 0, 0, 9]) + bytes(16) + b"abc", "unknown record kind 9"),
])
def test_apply_block_refuses_broken_framing(data: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BookSet().apply_block(data)
    with pytest.raises(ValueError, match="outside"):
        BookSet().apply_block(b"", 1)


def test_a_finalizer_applying_the_same_new_pair_during_apply_block_leaves_one_book() -> None:
    """The garbage collector may run a finalizer while apply_block makes a pair's book; if the
    finalizer applies a frame of that same pair to the same set, the pair still gets one book,
    and nothing is freed under the index (the defect fuzzing found in apply, on this path)."""
    books = BookSet()
    f431 = b'[431,{"CS":5,"PS":"NEW","AO":[{"A":"1","P":"10"}],"BO":[{"A":"1","P":"9"}],"type":431}]'
    nxt = b'[432,{"CS":6,"PS":"NEW","AO":[{"CP":1,"P":"10","A":"2"}],"BO":[],"type":432}]'

    class Cycle:
        def __init__(self) -> None:
            self.me = self

        def __del__(self) -> None:
            books.apply(f431)

    gc.collect()
    Cycle()
    data = encode_record(Kind.FRAME, WALL0, 0, f431)
    gc.set_threshold(1)
    try:
        books.apply_block(data)
    finally:
        gc.set_threshold(700)
    gc.collect()
    assert list(books) == ["NEW"]
    books.apply_block(encode_record(Kind.FRAME, WALL0, 0, nxt))
    assert books["NEW"].asks.tolist() == [[10, 2]]


def test_apply_block_hands_growth_rescales_wide_values_new_pairs_and_errors_to_python() -> None:
    """Every frame apply_block cannot apply without the GIL, mid-block between frames it can:
    a 431 with more levels than a new book has rows, 432s that outgrow them again, a 432 with
    more decimal places (a rescale), one with a value int64 cannot hold (the book turns wide),
    a new pair, a malformed frame. The books, errors and tallies equal ``apply``'s, frame by
    frame, and the model's."""
    from helpers import f431, f432, outcome, set_state
    from reference import RefBookSet

    asks = [(str(2_000_000 + 10 * i), "1.5") for i in range(300)]
    bids = [(str(1_999_990 - 10 * i), "2") for i in range(300)]
    frames = [
        f432(1, [("2000000", "1", 1)]),                          # before any 431: a gap, a new book
        f431(10, asks, bids),                                     # 300 levels a side: more rows
        f432(11, [(str(2_000_005 + 10 * i), "0.5", 0) for i in range(200)]),   # 500 asks
        f431(12, asks[:5], bids[:5], pair="ETHTRY"),              # a new pair mid-block
        f432(11, [("2000000", "7", 1)]),                          # stale
        f432(12, [("2000000", "0.123456789", 1)]),                # 9 places: a rescale
        '[432,{"CS":13,"PS":"BTCTRY","AO":[{"CP":1,"P":"1',         # cut
        f432(13, [], [("1999990", "123456789012.5", 1)]),         # beyond int64 at 9 places: wide
        f432(14, [("2000010", "3", 1)]),                          # a wide book's next 432
        f432(13, [("2000000", "1", 1)], pair="ETHTRY"),           # back to a narrow book
        f432(20, [("2000000", "1", 1)], pair="ETHTRY"),           # a gap
    ]
    frames_b = [f.encode() for f in frames]
    ref, one = RefBookSet(), BookSet()
    for f in frames_b:
        outcome(ref, f)
        outcome(one, f)
    whole = BookSet()
    block = record_block(frames_b, WALL0)
    end, ignored, errors = whole.apply_block(block)
    assert end == len(block) and ignored == 0
    (offset, error), = errors
    assert block[offset + RECORD_HEADER_SIZE:].startswith(frames_b[6]) and error.pair == "BTCTRY"
    assert set_state(whole) == set_state(one) == set_state(ref)
    assert whole["BTCTRY"].wide and not whole["ETHTRY"].wide
    assert len(whole["BTCTRY"].asks) == 500 and whole["BTCTRY"].price_scale == 0
    # applied, stale, gaps, crossed, keyframes, syncs
    assert whole.tallies() == {"BTCTRY": (5, 1, 1, 0, 0, 1), "ETHTRY": (2, 0, 1, 0, 0, 1)}


def test_apply_block_lets_other_threads_run_and_refuses_them_its_books_meanwhile() -> None:
    """While apply_block applies frames without the GIL, another thread runs; what it may not
    do then, it is refused with RuntimeError (never a crash, never a book changed under the
    block); once apply_block has returned, it may again. A thread that never saw the set busy
    would mean the GIL was never released: the test fails then, after many rounds."""
    import threading
    import time

    sim = FeedSimulator.many(20, seed=4)
    frames = sim.frames(3000)
    block = record_block(frames, WALL0)
    books = BookSet(sim.scales)
    books.apply_block(block)                        # every pair has its book
    pair = sorted(books)[0]
    book = books[pair]
    hello = b'[991,{"c":0,"type":991}]'
    stale = f'[432,{{"CS":{book.seq},"PS":"{pair}","AO":[],"BO":[],"type":432}}]'.encode()   # changes nothing
    attempts = {
        "BookSet.apply": lambda: books.apply(hello),
        "BookSet.apply_block": lambda: books.apply_block(b""),
        "Book.apply": lambda: book.apply(stale),
        "Book.bids": lambda: book.bids,
        "Book.top": lambda: book.top(5),
        "Book.best_ask": lambda: book.best_ask,
        "Book.snapshot": lambda: book.snapshot(),
    }
    refused: dict[str, str] = {}
    done = threading.Event()

    def other() -> None:
        busy = False
        while not done.is_set() and len(refused) < len(attempts):
            for name, attempt in attempts.items():
                # apply_block, which holds the set while it runs, only right after a refusal:
                # the block thread is inside one then, and this one does not keep it out
                if name not in refused and (busy or name != "BookSet.apply_block"):
                    try:
                        attempt()
                    except RuntimeError as e:
                        refused[name] = str(e)
                        busy = True
                    else:
                        busy = False

    thread = threading.Thread(target=other)
    expected = BookSet(sim.scales)
    for f in frames:
        expected.apply(f)
    thread.start()
    try:
        rounds = 0
        while rounds < 500 and len(refused) < len(attempts):
            try:                            # the same block again: every frame stale, no book changes
                books.apply_block(block)
                rounds += 1
            except RuntimeError:            # the other thread's own apply_block(b"") holds the set:
                time.sleep(0.001)           # let it finish
    finally:
        done.set()
        thread.join()
    assert set(refused) == set(attempts), f"never refused: {set(attempts) - set(refused)}"
    assert all("another thread is applying a block" in message for message in refused.values())
    assert {p: books[p].snapshot() for p in books} == {p: expected[p].snapshot() for p in expected}
    for name, attempt in attempts.items():          # the block done, the other thread may again
        result: list[Any] = []
        worker = threading.Thread(target=lambda: result.append(attempt()))
        worker.start()
        worker.join()
        assert len(result) == 1, name


# -- parallel ---------------------------------------------------------------------------------------


def test_parallel_replay_on_two_processes_equals_one_sequential_pass(recorded: Recorded) -> None:
    sequential = rp.replay(recorded.path)
    parallel = rp.replay(recorded.path, workers=2)
    assert state(parallel.books) == state(sequential.books) == recorded.live
    assert parallel.pairs == sequential.pairs
    assert (parallel.ignored, parallel.errors, parallel.frames) == (sequential.ignored, sequential.errors, sequential.frames)
    assert parallel.stats.segments == sequential.stats.segments and parallel.stats.blocks == sequential.stats.blocks


def test_a_book_unsynced_or_rescaled_at_the_end_crosses_the_merge_exactly() -> None:
    book = Book("Z", 2, 3)
    book.apply(b'[431,{"CS":7,"PS":"Z","AO":[{"A":"1","P":"10"}],"BO":[{"A":"2","P":"9"}],"type":431}]')
    book.apply(b'[432,{"CS":9,"PS":"Z","AO":[],"BO":[],"type":432}]')       # a gap
    assert not book.synced
    for b in (book,):
        again = rp.rebuild("Z", rp.book_frames(b), b.price_scale, b.amount_scale)
        assert (again.snapshot(), again.wide) == (b.snapshot(), b.wide)
    crossed = Book("C", 0, 0)
    crossed.apply(b'[431,{"CS":7,"PS":"C","AO":[{"A":"1","P":"9"}],"BO":[{"A":"2","P":"10"}],"type":431}]')
    assert not crossed.synced
    again = rp.rebuild("C", rp.book_frames(crossed), 0, 0)
    assert again.snapshot() == crossed.snapshot()
    assert rp.book_frames(Book("N", 0, 0)) == []


@pytest.mark.heavy
def test_replay_on_a_local_dask_cluster_with_two_worker_processes_equals_one_pass(recorded: Recorded) -> None:
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with distributed.Client(cluster) as client:
            on_dask = rp.replay(recorded.path, scheduler=client)
            by_address = rp.replay(recorded.path, scheduler=cluster.scheduler_address)
    sequential = rp.replay(recorded.path)
    for got in (on_dask, by_address):
        assert state(got.books) == state(sequential.books)
        assert got.pairs == sequential.pairs


# -- the command line ------------------------------------------------------------------------------


def obengine(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "obengine", *args], capture_output=True, text=True, timeout=120)


def test_the_command_prints_a_summary_per_pair_and_exits_0(recorded: Recorded) -> None:
    out = obengine("replay", str(recorded.path), "--top", "2")
    assert out.returncode == 0, out.stderr
    assert f"{recorded.segments} segment(s)" in out.stdout
    for pair in recorded.live:
        assert pair in out.stdout


def test_the_json_summary_holds_the_exact_books_and_counts(recorded: Recorded) -> None:
    out = obengine("replay", str(recorded.path), "--json", "--top", "3", "--workers", "2")
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    expected = rp.replay(recorded.path)
    assert summary["frames"] == expected.frames and summary["errors"] == 1 and summary["ignored"] == 1
    for pair, (snap, _) in recorded.live.items():
        got = summary["pairs"][pair]
        assert got["seq"] == snap["seq"] and got["synced"] == snap["synced"]
        for side in ("bids", "asks"):
            assert [(Decimal(p), Decimal(a)) for p, a in got[side]] == [(Decimal(p), Decimal(a)) for p, a in snap[side][:3]]
        assert got["frames"] == expected.pairs[pair].frames


def test_the_command_at_a_time_gives_the_books_then(recorded: Recorded) -> None:
    i = 2000
    out = obengine("replay", str(recorded.path), "--json", "--at", str(recorded.times[i]))
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    for pair, (snap, _) in recorded.at[i].items():
        assert summary["pairs"][pair]["seq"] == snap["seq"]


def test_the_command_s_exit_codes(recorded: Recorded, tmp_path: Path) -> None:
    assert obengine("replay", str(tmp_path / "missing")).returncode == 3
    junk = tmp_path / "junk.obr"
    junk.write_bytes(b"not a recording at all" * 10)
    out = obengine("replay", str(junk))
    assert out.returncode == 3 and "not an obengine recording" in out.stderr
    out = obengine("replay", str(recorded.path), "--export", "parquet")
    assert out.returncode == 2 and "--out" in out.stderr
    out = obengine("replay", str(recorded.path), "--at", "yesterday")
    assert out.returncode == 2 and "not a time" in out.stderr
    assert obengine("replay", str(recorded.path), "--at", "1", "--workers", "2").returncode == 2
    help_text = obengine("replay", "--help").stdout
    assert "exit status" in help_text and "--scheduler" in help_text


@pytest.mark.no_sanitizer
def test_the_command_exports_parquet_hftbacktest_and_a_plot(recorded: Recorded, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("matplotlib")
    from obengine import export

    out = obengine("replay", str(recorded.path), "--export", "parquet", "--out", str(tmp_path / "pq"),
                   "--depth", "3", "--every", "100", "--plot", str(tmp_path / "books.png"), "--workers", "2")
    assert out.returncode == 0, out.stderr
    expected = export.to_parquet(recorded.path, tmp_path / "direct", depth=3, every_ms=100)
    assert sorted(p.name for p in (tmp_path / "pq").iterdir()) == sorted(p.name for p in expected)
    for path in expected:
        assert pq.read_table(tmp_path / "pq" / path.name).equals(pq.read_table(path)), path.name
    assert (tmp_path / "books.png").read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    out = obengine("replay", str(recorded.path), "--export", "hftbacktest", "--out", str(tmp_path / "hbt"))
    assert out.returncode == 0, out.stderr
    assert sorted(p.stem for p in (tmp_path / "hbt").glob("*.npz")) == sorted(recorded.live)


def test_the_command_exits_5_naming_the_extra_when_pyarrow_is_missing(
    recorded: Recorded, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from obengine import cli

    monkeypatch.setitem(sys.modules, "pyarrow", None)
    code = cli.main(["replay", str(recorded.path), "--export", "parquet", "--out", str(tmp_path / "pq")])
    assert code == 5
    assert "pip install 'obengine[parquet]'" in capsys.readouterr().err


def test_malformed_frames_are_all_counted_and_only_the_first_ones_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    sim = FeedSimulator.many(2, seed=3)
    frames = list(sim.frames(100))
    frames[50:50] = [CUT] * (rp.WARN_LIMIT + 5)
    with Recording(tmp_path, fsync=False) as recording:
        for i, frame in enumerate(frames):
            recording.add(Kind.FRAME, WALL0 + i, i, frame)
    with caplog.at_level("WARNING", logger="obengine.replay"):
        result = rp.replay(tmp_path)
    logged = [r for r in caplog.records if "the frame ends early" in r.getMessage()]
    assert result.errors == rp.WARN_LIMIT + 5 and result.pairs["BTCTRY"].errors == rp.WARN_LIMIT + 5
    assert len(logged) == rp.WARN_LIMIT and "counted, not logged" in logged[-1].getMessage()
    caplog.clear()
    with caplog.at_level("WARNING", logger="obengine.replay"):
        assert sum(1 for _ in rp.updates(tmp_path)) == sum(1 for f in frames if f != CUT)
    assert len([r for r in caplog.records if "the frame ends early" in r.getMessage()]) == rp.WARN_LIMIT
