"""Reading pytest-benchmark's ``--benchmark-json`` output (shared by report.py and gate.py)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

#: statistic used for times and ratios: the minimum over rounds is the least disturbed by other
#: work on a shared machine (see the ``timeit`` docs); ``--stat median`` is the alternative.
DEFAULT_STAT = "min"

#: workloads the CI gate checks
GATED = ("w1-single", "w2-mixed", "w3-snapshots")


@dataclass
class Result:
    workload: str
    path: str
    kind: str  # floor | peer | variant | obengine
    exact: bool
    seconds: float  # per round (per call for w5b-top10-only), by the chosen statistic
    rounds: int
    frames: int
    changes: int
    info: dict[str, Any]

    @property
    def ns_per_frame(self) -> float:
        return self.seconds * 1e9 / self.frames if self.frames else float("nan")

    @property
    def ns_per_change(self) -> float:
        return self.seconds * 1e9 / self.changes if self.changes else float("nan")

    @property
    def frames_per_s(self) -> float:
        return self.frames / self.seconds if self.seconds else float("nan")


def load(filename: str, stat: str = DEFAULT_STAT) -> tuple[dict[str, Any], dict[str, dict[str, Result]], dict[str, dict[str, Any]]]:
    """``(document, timings, memory)``: ``timings[workload][path]`` and ``memory[path]``."""
    with open(filename) as f:
        doc = json.load(f)
    timings: dict[str, dict[str, Result]] = {}
    memory: dict[str, dict[str, Any]] = {}
    for bench in doc.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        workload = info.get("workload") or bench.get("group")
        path = info.get("path")
        if not workload or not path:
            continue
        if workload == "memory":
            memory[path] = info
            continue
        timings.setdefault(workload, {})[path] = Result(
            workload=workload,
            path=path,
            kind=info.get("kind", "peer"),
            exact=bool(info.get("exact", True)),
            seconds=float(bench["stats"][stat]),
            rounds=int(bench["stats"]["rounds"]),
            frames=int(info.get("frames", 0)),
            changes=int(info.get("changes", 0)),
            info=info,
        )
    return doc, timings, memory


def floor_of(results: dict[str, Result]) -> Result | None:
    return next((r for r in results.values() if r.kind == "floor"), None)


def obengine_of(results: dict[str, Result]) -> Result | None:
    return next((r for r in results.values() if r.kind == "obengine"), None)


def best_peer_of(results: dict[str, Result], exact_only: bool = False, variants: bool = False) -> Result | None:
    """The fastest peer (a tool people use, run as its users run it), or with ``exact_only`` the
    fastest that keeps exact values; ``variants`` lets the faster-than-usual variants count too."""
    kinds = ("peer", "variant") if variants else ("peer",)
    peers = [r for r in results.values() if r.kind in kinds and (r.exact or not exact_only)]
    return min(peers, key=lambda r: r.seconds) if peers else None


def format_bytes(n: Any) -> str:
    """A byte count for a table: "512 B", "4.9 KiB", "1.8 MiB"; "-" when there is none."""
    if not isinstance(n, (int, float)):
        return "-"
    x = float(n)
    for unit in ("B", "KiB", "MiB"):
        if abs(x) < 1024:
            return f"{x:.0f} {unit}" if unit == "B" else f"{x:.1f} {unit}"
        x /= 1024
    return f"{x:.1f} GiB"
