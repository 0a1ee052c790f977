"""The benchmark workloads, generated from obengine's seeded simulator (never stored on disk).

Each :class:`Workload` is a stream of raw frames split in two: ``prefix`` (the 431s that start
the books; applied, untimed, in each round's setup) and ``frames`` (the timed part). ``truth``
is the simulator's book of every pair at the end of the stream. Seeds are fixed, so a workload is
byte-identical on every run; short mode only makes the streams shorter.

1. ``w1-single``    one pair (BTCTRY), typical 432 stream.
2. ``w2-mixed``     380 pairs interleaved on one socket, typical 432 stream; the 380 431s that
                    start the books are the untimed prefix.
3. ``w3-snapshots`` 431 snapshots of 100+100 levels of 380 pairs, taken at different points of
                    a running stream (subscribe and resync cost).
4. ``w4-hard``      one pair, hard stream (100-330 changes a frame, fast moves, churn at the top).
5. ``w5-read``      the w1 stream; after every frame the top 10 levels of both sides are read
                    as numpy arrays.

The frames are spelled as the exchange writes them (432 entries ``CP, P, A``, numbers in
canonical form: ``"0.0092056"``, ``"2"``). ``w1-fixed``, ``w2-fixed`` and ``w3-fixed`` are w1-w3
in the spelling the simulator used before (``CP, A, P``, fixed-width numbers: ``"0.00920560"``),
the same books, for obengine and the floor only: a variant, reported, not gated.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import orjson

__all__ = ["SIZES", "Workload", "build", "read_workload", "short_mode"]

Levels = list[tuple[Decimal, Decimal]]

#: frames (or snapshot rounds) per workload, full and short mode
SIZES: dict[str, dict[str, int]] = {
    "full": {"single": 30_000, "mixed": 40_000, "snapshot_rounds": 3, "hard": 5_000},
    "short": {"single": 3_000, "mixed": 4_000, "snapshot_rounds": 1, "hard": 400},
}

TRUTH_LEVELS = 20  # levels per side checked against the simulator
N_PAIRS = 380  # the exchange's number of pairs


def short_mode() -> bool:
    return os.environ.get("OBENGINE_BENCH_SHORT", "") not in ("", "0")


@dataclass
class Workload:
    name: str
    description: str
    scales: dict[str, tuple[int, int]]
    prefix: list[bytes]  # applied in each round's untimed setup
    frames: list[bytes]  # timed
    truth: dict[str, tuple[Levels, Levels]]  # per pair, top TRUTH_LEVELS a side
    read_pair: str | None = None  # for one-pair workloads
    changes: int = field(init=False)  # level changes in the timed frames
    nbytes: int = field(init=False)

    def __post_init__(self) -> None:
        self.changes = count_changes(self.frames)
        self.nbytes = sum(len(f) for f in self.frames)

    @property
    def info(self) -> dict[str, object]:
        """What a benchmark records in ``extra_info`` (per round)."""
        return {
            "workload": self.name,
            "frames": len(self.frames),
            "changes": self.changes,
            "bytes": self.nbytes,
            "pairs": len(self.truth),
            "prefix_frames": len(self.prefix),
        }


def count_changes(frames: list[bytes]) -> int:
    total = 0
    for raw in frames:
        msg = orjson.loads(raw)
        if msg[0] in (431, 432):
            total += len(msg[1].get("AO") or ()) + len(msg[1].get("BO") or ())
    return total


def _pair_of(raw: bytes) -> str:
    payload = orjson.loads(raw)[1]
    return payload.get("PS") or payload.get("event")  # type: ignore[no-any-return]


def _truth(sim: Any, pairs: list[str] | tuple[str, ...]) -> dict[str, tuple[Levels, Levels]]:
    out: dict[str, tuple[Levels, Levels]] = {}
    for pair in pairs:
        bids, asks = sim.levels(pair)
        out[pair] = ([(p, q) for p, q in bids[:TRUTH_LEVELS]], [(p, q) for p, q in asks[:TRUTH_LEVELS]])
    return out


def _one_pair(name: str, description: str, seed: int, profile: str, n: int, spelling: str) -> Workload:
    from obengine.simulator import FeedSimulator

    pair = "BTCTRY"
    sim = FeedSimulator((pair,), seed=seed, profile=profile, spelling=spelling)  # type: ignore[arg-type]
    stream = sim.frames(n + 1)
    assert stream[0].startswith(b"[431,")
    return Workload(
        name, description, dict(sim.scales), stream[:1], stream[1:], _truth(sim, (pair,)), read_pair=pair
    )


def _started_many(seed: int, spelling: str = "exchange") -> tuple[object, list[str]]:
    """A 380-pair simulator that has run long enough to have started every pair."""
    from obengine.simulator import FeedSimulator

    sim = FeedSimulator.many(N_PAIRS, seed=seed, spelling=spelling)  # type: ignore[arg-type]
    started: set[str] = set()
    while len(started) < N_PAIRS:
        started.update(_pair_of(raw) for raw in sim.frames(2 * N_PAIRS))
    return sim, list(sim.pairs)


#: the old-spelling variants, and the workload each respells
OLD_SPELLING = {"w1-fixed": "w1-single", "w2-fixed": "w2-mixed", "w3-fixed": "w3-snapshots"}


def build(name: str, short: bool) -> Workload:
    """Generate workload ``name`` (see the module docstring)."""
    if name in OLD_SPELLING:
        wl = _build(OLD_SPELLING[name], short, "fixed")
        wl.name = name
        wl.description += ", old fixed-width spelling (CP, A, P)"
        return wl
    return _build(name, short, "exchange")


def _build(name: str, short: bool, spelling: str) -> Workload:
    size = SIZES["short" if short else "full"]
    if name == "w1-single":
        return _one_pair(name, "one pair (BTCTRY), typical 432 stream", seed=1, profile="typical", n=size["single"],
                         spelling=spelling)
    if name == "w4-hard":
        return _one_pair(name, "one pair, hard 432 stream (100-330 changes a frame)", seed=4, profile="hard",
                         n=size["hard"], spelling=spelling)
    if name == "w2-mixed":
        sim, pairs = _started_many(seed=2, spelling=spelling)
        prefix = [sim.snapshot(p) for p in pairs]  # type: ignore[attr-defined]
        frames = sim.frames(size["mixed"])  # type: ignore[attr-defined]
        return Workload(
            name,
            f"{N_PAIRS} pairs interleaved on one socket, typical 432 stream",
            dict(sim.scales),  # type: ignore[attr-defined]
            prefix,
            frames,
            _truth(sim, pairs),
        )
    if name == "w3-snapshots":
        sim, pairs = _started_many(seed=3, spelling=spelling)
        snaps: list[bytes] = []
        for r in range(size["snapshot_rounds"]):
            if r:
                sim.frames(5 * N_PAIRS)  # type: ignore[attr-defined]
            snaps.extend(sim.snapshot(p) for p in pairs)  # type: ignore[attr-defined]
        return Workload(
            name,
            f"431 snapshots (100+100 levels) of {N_PAIRS} pairs, {size['snapshot_rounds']} round(s)",
            dict(sim.scales),  # type: ignore[attr-defined]
            [],
            snaps,
            _truth(sim, pairs),
        )
    raise KeyError(name)


def read_workload(w1: Workload) -> Workload:
    """``w5-read``: the w1 stream itself (same frames, same truth), for the read benchmarks."""
    wl = copy.copy(w1)
    wl.name = "w5-read"
    wl.description = w1.description + ", top 10 read after every frame"
    return wl


APPLY_WORKLOADS = ("w1-single", "w2-mixed", "w3-snapshots", "w4-hard")
