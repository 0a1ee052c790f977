"""Memory held by each path's books: one book of 100+100 levels, and 380 such books.

Measured in a fresh process per path, on 431 snapshots from the seeded simulator (380 pairs,
every side a full 100-level window) that the parent process generates once and passes in a
file, so the child allocates nothing else before measuring:

``traced_*``  bytes still allocated after building the books, by ``tracemalloc`` (everything the
              Python allocators and numpy hand out; *not* raw ``malloc`` in C extensions, so a
              native book that allocates its levels with ``malloc`` shows only its Python objects).
``rss_380``   growth of the process's resident set while building the 380 books, without
              tracemalloc running (sees every allocator; page and arena granular, so only
              meaningful for the 380 books).

``test_memory.py`` runs this for every path and records the figures in the benchmark JSON
(``extra_info``); ``report.py`` prints them. Run alone: ``python benchmarks/memory.py`` prints a
table for every available path.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import peers  # noqa: E402
import workloads  # noqa: E402
from _results import format_bytes  # noqa: E402


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def snapshots() -> tuple[dict[str, tuple[int, int]], list[bytes]]:
    """Scales and one 431 of every pair of a running 380-pair stream (seed 3)."""
    sim, pairs = workloads._started_many(seed=3)
    return dict(sim.scales), [sim.snapshot(p) for p in pairs]  # type: ignore[attr-defined]


def write_snapshots(directory: str) -> str:
    """Write :func:`snapshots` to ``directory``; return the frames file to pass to children."""
    scales, snaps = snapshots()
    frames_file = os.path.join(directory, "snapshots.jsonl")
    with open(frames_file, "wb") as f:
        f.write(b"\n".join(snaps))  # compact JSON: no newline inside a frame
    with open(frames_file + ".scales.json", "w") as f:
        json.dump(scales, f)
    return frames_file


def _read_snapshots(frames_file: str) -> tuple[dict[str, tuple[int, int]], list[bytes]]:
    with open(frames_file + ".scales.json") as f:
        scales = {k: (v[0], v[1]) for k, v in json.load(f).items()}
    with open(frames_file, "rb") as f:
        return scales, f.read().split(b"\n")


def measure(name: str, frames_file: str) -> dict[str, object]:
    """Measure path ``name`` in this process (call it in a fresh one)."""
    cls = peers.get_path(name)
    scales, snaps = _read_snapshots(frames_file)
    levels = [len(v) for v in (orjson_levels(snaps[0]))]
    # warm up: imports, lazily created caches, interned strings
    cls.fed(scales, snaps[:2])
    gc.collect()

    rss0 = _rss()
    many = cls.fed(scales, snaps)
    gc.collect()
    rss_380 = _rss() - rss0
    del many
    gc.collect()

    tracemalloc.start()
    out: dict[str, object] = {"path": name, "levels_per_side": levels, "books": len(snaps)}
    for label, frames in (("traced_1", snaps[:1]), ("traced_380", snaps)):
        base = tracemalloc.get_traced_memory()[0]
        path = cls(scales)
        empty = tracemalloc.get_traced_memory()[0]
        for raw in frames:
            path.apply(raw)
        gc.collect()
        out[label] = tracemalloc.get_traced_memory()[0] - empty
        out[label + "_with_container"] = tracemalloc.get_traced_memory()[0] - base
        del path
        gc.collect()
    tracemalloc.stop()
    out["rss_380"] = rss_380
    return out


def orjson_levels(raw: bytes) -> tuple[list[object], list[object]]:
    import orjson

    payload = orjson.loads(raw)[1]
    return payload.get("BO") or [], payload.get("AO") or []


def measure_in_subprocess(name: str, frames_file: str) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--path", name, "--frames", frames_file, "--json"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"memory measurement of {name} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", help="measure this path in this process")
    ap.add_argument("--frames", help="snapshots file written by write_snapshots (with --path)")
    ap.add_argument("--json", action="store_true", help="print one JSON line")
    args = ap.parse_args(argv)
    if args.path:
        result = measure(args.path, args.frames)
        print(json.dumps(result) if args.json else result)
        return 0
    with tempfile.TemporaryDirectory(prefix="obengine-mem-") as tmp:
        _print_table(write_snapshots(tmp))
    return 0


def _print_table(frames_file: str) -> None:
    print(f"{'path':<18} {'1 book (traced)':>16} {'380 books (traced)':>19} {'380 books (RSS)':>16}")
    for cls in peers.available_paths():
        if cls.kind == "floor":
            continue
        r = measure_in_subprocess(cls.name, frames_file)
        print(
            f"{cls.name:<18} {format_bytes(r['traced_1']):>16} {format_bytes(r['traced_380']):>19} "  # type: ignore[arg-type]
            f"{format_bytes(r['rss_380']):>16}"  # type: ignore[arg-type]
        )


if __name__ == "__main__":
    sys.exit(main())
