"""Replay from compressed segments beside ``BookSet.apply`` on the same frames in memory, and
parallel replay on two worker processes beside one pass.

The recording: the w2 stream (380 pairs, the exchange's spelling, its 380 starting 431s
included) written ``COPIES`` times one after the other, as ``obengine record`` writes it (zstd
level 3, 1 MiB blocks, segments of 16 MiB, so each segment starts with the keyframes of 380
books). Paths, in group ``replay-w2``:

- ``apply-floor`` (floor): ``BookSet.apply`` of every frame the replay applies, already in memory,
  into fresh books: the recorded frames and each segment's keyframes (380 snapshots a segment),
  so that the ratio is what reading, decompressing and framing cost beside the engine's own work
  (the issue: "decompression and framing cost at most a quarter of the engine's time");
- ``obengine-replay`` (obengine): ``obengine.replay.replay``: read, decompress (on a second
  thread), apply whole blocks through ``BookSet.apply_block``, sum up per pair;
- ``replay-one-thread`` (variant): the same with reading and decompression on the one thread;
- ``replay-workers-2`` (variant): ``replay(workers=2)``: segments on two local processes, merged
  (their start-up included: what a user's call costs).

Every path's books are checked against the floor's. Reported, not gated.
"""
from __future__ import annotations

import shutil
from typing import Any

import pytest

import peers

WORKLOAD = "w2-mixed"
GROUP = "replay-w2"
WALL0_NS = 1_796_238_900_000_000_000


@pytest.fixture(scope="module")
def recording(workload_data: Any, tmp_path_factory: Any, short: bool) -> Any:
    if peers.Obengine.unavailable() is not None:
        pytest.skip(peers.Obengine.unavailable() or "")
    from obengine import BookSet
    from obengine.record import Kind, Recording, keyframes, read, scales

    wl = workload_data[WORKLOAD]
    stream = (list(wl.prefix) + list(wl.frames)) * (2 if short else 8)
    directory = tmp_path_factory.mktemp("replay-bench")
    live = BookSet()
    with Recording(directory, prefix="bench", header=lambda: {"scales": scales(live)},
                   keyframes=lambda: keyframes(live), rotate_bytes=16 << 20, fsync=False) as rec:
        for i, frame in enumerate(stream):
            rec.add(Kind.FRAME, WALL0_NS + i * 1_000_000, i * 1_000_000, frame)
            live.apply(frame)
    expected = {p: live[p].snapshot() for p in live}
    applied = [r.data for _, r in read([directory]) if r.kind in (Kind.FRAME, Kind.KEYFRAME)]
    yield directory, applied, expected, rec.segments
    shutil.rmtree(directory, ignore_errors=True)


@pytest.mark.parametrize("path", ["apply-floor", "obengine-replay", "replay-one-thread", "replay-workers-2"])
def test_replay(benchmark: Any, recording: Any, path: str, short: bool) -> None:
    from obengine import BookSet
    from obengine import replay as replay_module

    directory, stream, expected, segments = recording
    out: dict[str, Any] = {}

    if path == "apply-floor":
        def run() -> None:
            books = BookSet()
            apply = books.apply
            for frame in stream:
                apply(frame)
            out["books"] = books
    elif path == "obengine-replay":
        def run() -> None:
            out["books"] = replay_module.replay(directory).books
    elif path == "replay-one-thread":
        def run() -> None:
            result = replay_module.Replay(books={})
            files = replay_module.segment_files(directory)
            out["books"] = replay_module._replay_blocks(files, result, at_ns=None, progress=None, prefetch=False)
    else:
        def run() -> None:
            out["books"] = replay_module.replay(directory, workers=2).books

    kind = {"apply-floor": "floor", "obengine-replay": "obengine"}.get(path, "variant")
    benchmark.extra_info.update({"workload": GROUP, "path": path, "kind": kind, "exact": True,
                                 "frames": len(stream), "segments": segments,
                                 "disk_bytes": sum(p.stat().st_size for p in directory.iterdir())})
    rounds = 3 if path == "replay-workers-2" else (5 if short else 10)
    benchmark.pedantic(run, rounds=rounds, warmup_rounds=1, iterations=1)
    books = out["books"]
    assert {p: books[p].snapshot() for p in books} == expected, f"{path}: the books differ"
