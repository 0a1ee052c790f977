"""Workloads 1-4: apply a stream of raw frames, end to end from bytes, on every path.

Each round starts from fresh books (the untimed setup applies the workload's prefix of 431s) and
times the whole stream. The books are checked against the simulator before timing and again
after the last round.

obengine's rounds are each preceded, in their untimed setup, by a round of the orjson floor on
the same frames, timed by its own clock (``paired_floor_s_min``): a ratio of rounds taken
milliseconds apart, where the floor's own test runs seconds to minutes away and this shared
machine's speed drifts by a third over that time. ``report.py`` and ``gate.py`` print both.
"""
from __future__ import annotations

import time
from typing import Any

import pytest

import peers
import workloads
from _check import assert_matches_truth, describe, round_setup, rounds_for, run_untimed


@pytest.mark.parametrize("workload", workloads.APPLY_WORKLOADS)
def test_apply(benchmark, workload_data, path_cls: type[peers.Path], workload: str, short: bool) -> None:
    wl = workload_data[workload]
    checked = run_untimed(path_cls, wl)
    assert_matches_truth(checked, wl, "before timing")

    frames = wl.frames
    setup, last = round_setup(path_cls, wl)

    def stream(path: peers.Path) -> None:
        apply = path.apply
        for raw in frames:
            apply(raw)

    rounds, warmup = rounds_for(checked.pass_seconds, short)
    describe(benchmark, wl, path_cls, short)
    paired: list[float] = []
    loads = peers.OrjsonFloor(wl.scales).apply

    def paired_setup() -> Any:
        t = time.perf_counter()
        for raw in frames:
            loads(raw)
        paired.append(time.perf_counter() - t)
        return setup()

    benchmark.pedantic(stream, setup=paired_setup if path_cls.kind == "obengine" else setup,
                       rounds=rounds, warmup_rounds=warmup, iterations=1)
    if paired:
        benchmark.extra_info["paired_floor_s_min"] = min(paired)

    assert_matches_truth(last[0], wl, "after timing")


@pytest.mark.parametrize("workload", tuple(workloads.OLD_SPELLING))
def test_apply_old_spelling(benchmark, workload_data, path_cls: type[peers.Path], workload: str, short: bool) -> None:
    """w1-w3 in the simulator's old spelling (CP, A, P, fixed width), for obengine and the floor
    only: the same books, so the cost of the spelling shows beside the real one."""
    if path_cls.kind not in ("obengine", "floor"):
        pytest.skip("the old spelling is measured for obengine and the floor only")
    test_apply(benchmark, workload_data, path_cls, workload, short)
