"""Workload 5: what a strategy does on every update. After each frame of the w1 stream, read the
top 10 levels of both sides as numpy arrays, the natural way for each path (obengine: read-only
int64 views from ``book.top(10)``; peers: their sorted levels turned into float64 arrays).

``test_top10_read`` times the read alone, on the final w1 book.
"""
from __future__ import annotations

import time

import pytest

import peers
from _check import assert_matches_truth, assert_read_matches_truth, describe, round_setup, rounds_for, run_untimed

TOP = 10


def _reader(path: peers.Path, pair: str):
    """A callable ``f(n)`` reading the pair's top ``n``, as a user would hold it."""
    if path.kind == "obengine":
        return path.bookset[pair].top  # type: ignore[attr-defined]  # the Book persists across 431s
    read = path.read
    return lambda n: read(pair, n)


def _seconds_per_read(read) -> float:
    """What one top-``TOP`` read takes, from 20 (to size the rounds)."""
    t0 = time.perf_counter()
    for _ in range(20):
        read(TOP)
    return (time.perf_counter() - t0) / 20


def test_read_after_every_frame(benchmark, workload_data, path_cls: type[peers.Path], short: bool) -> None:
    wl = workload_data["w5-read"]
    pair = wl.read_pair
    checked = run_untimed(path_cls, wl)
    assert_matches_truth(checked, wl, "before timing")
    assert_read_matches_truth(checked, wl, TOP)
    seconds_per_round = checked.pass_seconds
    if path_cls.kind != "floor":
        seconds_per_round += _seconds_per_read(_reader(checked, pair)) * len(wl.frames)

    frames = wl.frames
    setup, last = round_setup(path_cls, wl)

    if path_cls.kind == "floor":

        def stream(path: peers.Path) -> None:
            apply = path.apply
            for raw in frames:
                apply(raw)

    else:

        def stream(path: peers.Path) -> None:
            apply = path.apply
            read = _reader(path, pair)
            for raw in frames:
                apply(raw)
                read(TOP)

    rounds, warmup = rounds_for(seconds_per_round, short)
    describe(benchmark, wl, path_cls, short)
    benchmark.pedantic(stream, setup=setup, rounds=rounds, warmup_rounds=warmup, iterations=1)

    assert_matches_truth(last[0], wl, "after timing")
    assert_read_matches_truth(last[0], wl, TOP)


def test_top10_read(benchmark, workload_data, path_cls: type[peers.Path], short: bool) -> None:
    if path_cls.kind == "floor":
        pytest.skip("the floor keeps no book")
    wl = workload_data["w5-read"]
    path = run_untimed(path_cls, wl)
    assert_read_matches_truth(path, wl, TOP)
    read = _reader(path, wl.read_pair)
    per_read = _seconds_per_read(read)
    iterations = max(10, min(2000, int(0.005 / per_read)))  # rounds of about 5 ms
    rounds, _ = rounds_for(per_read * iterations, short)
    describe(benchmark, wl, path_cls, short, group="w5b-top10-only")
    benchmark.extra_info.update(frames=1, changes=0, reads_per_iteration=1)
    benchmark.pedantic(read, args=(TOP,), rounds=rounds, warmup_rounds=1, iterations=iterations)
    assert_read_matches_truth(path, wl, TOP)
