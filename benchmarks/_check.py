"""Correctness checks shared by the benchmark tests: a fast wrong answer must fail."""
from __future__ import annotations

import time
from typing import Any

import numpy as np
import pytest

import peers
import workloads


def run_untimed(cls: type[peers.Path], wl: workloads.Workload) -> peers.Path:
    """A fresh path fed the whole workload once (prefix and timed frames). Sets
    ``path.pass_seconds``: how long the timed frames took (to size the rounds)."""
    path = cls.fed(wl.scales, wl.prefix)
    apply = path.apply
    t0 = time.perf_counter()
    for raw in wl.frames:
        apply(raw)
    path.pass_seconds = time.perf_counter() - t0  # type: ignore[attr-defined]
    return path


def round_setup(cls: type[peers.Path], wl: workloads.Workload) -> tuple[Any, list[peers.Path]]:
    """``(setup, last)``: pytest-benchmark's untimed setup of a round (a fresh path fed the
    workload's prefix, passed to the timed function) and a list holding the latest such path,
    for the checks after timing."""
    last: list[peers.Path] = []

    def setup() -> tuple[tuple[peers.Path], dict[str, Any]]:
        path = cls.fed(wl.scales, wl.prefix)
        last[:] = [path]
        return (path,), {}

    return setup, last


def assert_matches_truth(path: peers.Path, wl: workloads.Workload, when: str) -> None:
    """Top ``TRUTH_LEVELS`` of every pair's book equal the simulator's, exactly."""
    if path.kind == "floor":
        return
    problems = peers.compare(path, wl.truth, workloads.TRUTH_LEVELS)
    if problems:
        shown = "\n  ".join(problems[:10])
        pytest.fail(
            f"{path.name} disagrees with the simulator on {wl.name} ({when}); "
            f"{len(problems)} problem(s):\n  {shown}"
        )


def assert_read_matches_truth(path: peers.Path, wl: workloads.Workload, n: int = 10) -> None:
    """``path.read(pair, n)`` holds the truth's top ``n``: int64 units exactly, float64 arrays
    within a few ulps of ``float(truth)`` (a library's double arithmetic, e.g. nautilus turning its
    fixed point into a double, may land one ulp away from ``float(str)``)."""
    if path.kind == "floor":
        return
    pair = wl.read_pair
    assert pair is not None
    ps, qs = wl.scales[pair]
    arrays = path.read(pair, n)
    for side, arr, want in zip(("bids", "asks"), arrays, wl.truth[pair]):
        # an empty side may come as shape (0,)
        assert isinstance(arr, np.ndarray) and arr.reshape(-1, 2).shape == (min(n, len(want)), 2), (side, arr)
        if arr.dtype == np.int64:
            if path.kind == "obengine":  # its scales rise when a frame brings more decimals
                book = path.bookset[pair]  # type: ignore[attr-defined]
                ps, qs = book.price_scale, book.amount_scale
            got = peers.units_to_decimal(arr, ps, qs)
        else:
            expected = np.array(peers.as_float(want[:n]), dtype=np.float64).reshape(-1, 2)
            if not np.allclose(arr, expected, rtol=1e-15, atol=0):
                pytest.fail(f"{path.name}: read({pair}, {n}) {side} is {arr[:3]}..., truth {expected[:3]}...")
            continue
        if got != want[:n]:
            pytest.fail(f"{path.name}: read({pair}, {n}) {side} is {got[:3]}..., truth {want[:3]}...")


def describe(benchmark: Any, wl: workloads.Workload, cls: type[peers.Path], short: bool, group: str | None = None) -> None:
    """Group the benchmark and record what a report needs: frames and level changes per round,
    the path, its library versions, and for float paths how many checked values a double cannot
    hold."""
    benchmark.group = group or wl.name
    info = dict(wl.info)
    if group:
        info["workload"] = group
    info.update(path=cls.name, kind=cls.kind, exact=cls.exact, short=short, versions=cls.versions())
    if not cls.exact:
        lossy = getattr(wl, "_lossy", None)
        if lossy is None:
            lossy = wl._lossy = peers.lossy_values(wl.truth)  # type: ignore[attr-defined]
        info["lossy_values"], info["checked_values"] = lossy
    benchmark.extra_info.update(info)


#: seconds of timed rounds to aim for per benchmark, and the bounds on the number of rounds
ROUND_BUDGET = {"short": (0.5, 3, 50), "full": (3.0, 5, 200)}


def rounds_for(seconds_per_round: float, short: bool) -> tuple[int, int]:
    """(rounds, warmup rounds) for a benchmark whose one untimed pass took ``seconds_per_round``:
    as many rounds as fit the budget, within bounds. Fast paths get many short rounds, so the
    minimum over rounds catches quiet moments of a shared machine; slow peers get few."""
    budget, lo, hi = ROUND_BUDGET["short" if short else "full"]
    rounds = max(lo, min(hi, int(budget / max(seconds_per_round, 1e-6))))
    return rounds, 1 if seconds_per_round < 0.05 else 0
