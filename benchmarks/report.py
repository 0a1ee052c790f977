"""Print the benchmark table from pytest-benchmark's JSON output.

    pytest benchmarks --benchmark-json=bench.json && python benchmarks/report.py bench.json

Per workload and path: ns per frame, ns per level change, frames per second, the time over the
``orjson.loads`` floor, and the time over obengine's; then the best peer's time over obengine's
(the figure to quote: both sides come from the same run). Then memory per book and for 380 books
(``test_memory.py``). ``--markdown`` prints GitHub tables for the README.
"""
from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _results import DEFAULT_STAT, GATED, best_peer_of, floor_of, format_bytes, load, obengine_of  # noqa: E402

ORDER = ("w1-single", "w2-mixed", "w3-snapshots", "w4-hard", "w5-read", "w5b-top10-only", "w1-fixed", "w2-fixed",
         "w3-fixed")
TITLES = {
    "w1-single": "1. one pair, typical 432 stream",
    "w2-mixed": "2. 380 pairs interleaved on one socket",
    "w3-snapshots": "3. 431 snapshots, 100+100 levels",
    "w4-hard": "4. one pair, hard stream (100-330 changes a frame)",
    "w5-read": "5. typical stream + top-10 numpy read after every frame",
    "w5b-top10-only": "5b. top-10 numpy read alone (per read)",
    "w1-fixed": "1f. workload 1 in the old spelling (CP, A, P, fixed width; not gated)",
    "w2-fixed": "2f. workload 2 in the old spelling (not gated)",
    "w3-fixed": "3f. workload 3 in the old spelling (not gated)",
}


def _num(x: float, digits: int = 0) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:,.{digits}f}"


def _ratio(x: float | None) -> str:
    if x is None or math.isnan(x):
        return "-"
    return f"{x:.3f}" if x < 1 else f"{x:.2f}" if x < 10 else f"{x:.1f}"


class Table:
    def __init__(self, markdown: bool, headers: list[str], align: str) -> None:
        self.markdown, self.headers, self.align = markdown, headers, align
        self.rows: list[list[str]] = []

    def add(self, row: list[str]) -> None:
        self.rows.append(row)

    def render(self) -> str:
        if self.markdown:
            sep = ["---:" if a == "r" else ":---" for a in self.align]
            lines = ["| " + " | ".join(self.headers) + " |", "|" + "|".join(sep) + "|"]
            lines += ["| " + " | ".join(r) + " |" for r in self.rows]
            return "\n".join(lines)
        widths = [max(len(h), *(len(r[i]) for r in self.rows)) if self.rows else len(h) for i, h in enumerate(self.headers)]

        def fmt(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if a == "r" else c.ljust(w) for c, w, a in zip(cells, widths, self.align))

        return "\n".join([fmt(self.headers), fmt(["-" * w for w in widths])] + [fmt(r) for r in self.rows])


def _machine(doc: dict[str, Any]) -> str:
    m = doc.get("machine_info", {})
    cpu = m.get("cpu", {})
    return (
        f"{cpu.get('brand_raw') or m.get('processor') or '?'}, {cpu.get('count', '?')} cores, "
        f"{m.get('system', '?')} {m.get('release', '')}, "
        f"{m.get('python_implementation', 'Python')} {m.get('python_version', '?')}"
    )


def report(filename: str, stat: str = DEFAULT_STAT, markdown: bool = False) -> str:
    doc, timings, memory = load(filename, stat)
    out: list[str] = []
    h = "### " if markdown else ""
    versions: dict[str, str] = {}
    short = None
    for results in timings.values():
        for r in results.values():
            versions.update(r.info.get("versions") or {})
            short = r.info.get("short", short)
    out.append(f"{h}obengine benchmarks" if markdown else "obengine benchmarks")
    out.append("")
    out.append(f"Machine: {_machine(doc)}; run {doc.get('datetime', '?')}"
               f"{' (short mode)' if short else ''}.")
    if versions:
        out.append("Versions: " + ", ".join(f"{k} {v}" for k, v in sorted(versions.items())) + ".")
    out.append(f"Times are the {stat} over rounds; each round applies the whole stream to fresh books. "
               "Ratios compare paths measured in the same run.")
    out.append("")

    summary = Table(markdown, ["workload", "obengine ns/frame", "obengine / orjson floor",
                               "best peer", "best peer / obengine"], "lrrlr")
    for workload in ORDER + tuple(w for w in timings if w not in ORDER):
        results = timings.get(workload)
        if not results:
            continue
        if workload.startswith("rest-"):
            out += _rest_table(workload, results, h, markdown)
            continue
        if workload.startswith("feed-"):
            out += _feed_table(workload, results, h, markdown)
            continue
        if workload.startswith("record-"):
            out += _record_table(workload, results, h, markdown)
            continue
        if workload.startswith("replay-"):
            out += _replay_table(workload, results, h, markdown)
            continue
        floor, ob, best = floor_of(results), obengine_of(results), best_peer_of(results)
        per_read = workload == "w5b-top10-only"
        any_r = next(iter(results.values()))
        title = TITLES.get(workload, workload)
        if per_read:
            out.append(f"{h}{title}")
        else:
            out.append(f"{h}{title}: {any_r.frames:,} frames, {any_r.changes:,} level changes per round "
                       f"({any_r.changes / max(any_r.frames, 1):.1f} a frame)")
        out.append("")
        if per_read:
            table = Table(markdown, ["path", "ns/read", "reads/s", "x obengine", "exact"], "lrrrl")
        else:
            table = Table(markdown, ["path", "ns/frame", "ns/change", "frames/s", "x orjson floor", "x obengine", "exact"],
                          "lrrrrrl")
        for r in sorted(results.values(), key=lambda r: r.seconds):
            exact = "yes" if r.exact else "float"
            if not r.exact and r.info.get("checked_values"):
                lossy, total = r.info.get("lossy_values", 0), r.info["checked_values"]
                if lossy:
                    exact += f" ({lossy}/{total} values lossy)"
            if r.kind == "floor":
                exact = "no book"
            elif r.kind == "variant":
                exact += ", variant"
            x_ob = r.seconds / ob.seconds if ob else float("nan")
            if per_read:
                table.add([r.path, _num(r.seconds * 1e9), _num(1 / r.seconds), _ratio(x_ob), exact])
            else:
                x_floor = r.seconds / floor.seconds if floor else float("nan")
                table.add([r.path, _num(r.ns_per_frame), _num(r.ns_per_change, 1), _num(r.frames_per_s),
                           _ratio(x_floor), _ratio(x_ob), exact])
        out.append(table.render())
        out.append("")
        if ob and best:
            line = f"best peer ({best.path}) / obengine: {best.seconds / ob.seconds:.1f}x"
            if floor and not per_read:
                line += f"; obengine / orjson floor: {ob.seconds / floor.seconds:.3f}"
            paired = ob.info.get("paired_floor_s_min")
            if paired:
                line += f" (each round against a floor round run just before it: {ob.seconds / paired:.3f})"
            out.append(line)
            fastest = best_peer_of(results, variants=True)
            if fastest is not None and fastest is not best:
                out.append(f"fastest variant ({fastest.path}, not gated) / obengine: "
                           f"{fastest.seconds / ob.seconds:.1f}x")
            out.append("")
        if ob and not per_read:
            summary.add([workload + (" (gated)" if workload in GATED else ""), _num(ob.ns_per_frame),
                         _ratio(ob.seconds / floor.seconds) if floor else "-", best.path if best else "-",
                         f"{best.seconds / ob.seconds:.1f}x" if best else "-"])

    if summary.rows:
        out.append(f"{h}Summary")
        out.append("")
        out.append(summary.render())
        out.append("")

    if memory:
        out.append(f"{h}Memory (100+100 levels per book)")
        out.append("")
        table = Table(markdown, ["path", "1 book (tracemalloc)", "380 books (tracemalloc)", "380 books (RSS growth)"], "lrrr")
        for path, info in sorted(memory.items(), key=lambda kv: kv[1].get("rss_380", 0)):
            table.add([path, format_bytes(info.get("traced_1")), format_bytes(info.get("traced_380")), format_bytes(info.get("rss_380"))])
        out.append(table.render())
        out.append("")
        out.append("tracemalloc sees Python allocators and numpy, not a C/Rust extension's own malloc "
                   "(nautilus's Rust book, a native core's level arrays if malloc'ed); RSS growth sees "
                   "everything but is page and arena granular.")
        out.append("")
    return "\n".join(out)


def _rest_table(workload: str, results: dict[str, Any], h: str, markdown: bool) -> list[str]:
    """The REST client against the simulated exchange: per call, each path beside the bare httpx
    floor of its own kind (sync or async)."""
    floors = {("async" in r.path): r for r in results.values() if r.kind.startswith("floor")}
    any_r = next(iter(results.values()))
    lines = [f"{h}{workload}: the REST client against the simulated exchange, {any_r.frames:,} calls per round", ""]
    table = Table(markdown, ["path", "us/call", "calls/s", "x httpx floor"], "lrrr")
    for r in sorted(results.values(), key=lambda r: r.seconds):
        floor = floors.get("async" in r.path)
        ratio = _ratio(r.seconds / floor.seconds) if floor and not r.kind == "decode" else "-"
        table.add([r.path, _num(r.ns_per_frame / 1e3, 1), _num(r.frames_per_s), ratio])
    return lines + [table.render(), ""]


def _feed_table(workload: str, results: dict[str, Any], h: str, markdown: bool) -> list[str]:
    """The live feed on loopback: wall time and the client process's CPU time per frame, each
    beside the bare websockets receive loop (the transport floor)."""
    floor = next((r for r in results.values() if r.kind == "floor"), None)
    any_r = next(iter(results.values()))
    lines = [f"{h}{workload}: the live feed on loopback, a server process pushing {any_r.frames:,} "
             "frames as fast as the client takes them (from the first message to the last)", ""]
    table = Table(markdown, ["path", "wall us/frame", "CPU us/frame", "x floor (wall)", "x floor (CPU)"], "lrrrr")
    def wall(r: Any) -> float:
        return float(r.info.get("stream_wall_s_min") or r.seconds)

    for r in sorted(results.values(), key=wall):
        cpu = r.info.get("cpu_s_min")
        # each path against the floor round run just before each of its rounds, when it has one
        floor_wall = r.info.get("paired_floor_wall_s_min") or (wall(floor) if floor else None)
        floor_cpu = r.info.get("paired_floor_cpu_s_min") or (floor.info.get("cpu_s_min") if floor else None)
        table.add([
            r.path, _num(wall(r) * 1e6 / r.frames, 2), _num(cpu * 1e6 / r.frames, 2) if cpu else "-",
            _ratio(wall(r) / floor_wall) if floor_wall else "-",
            _ratio(cpu / floor_cpu) if cpu and floor_cpu else "-",
        ])
    return lines + [table.render(), ""]


def _record_table(workload: str, results: dict[str, Any], h: str, markdown: bool) -> list[str]:
    """The recorder's writing per frame beside BookSet.apply on the same frames, and the bytes
    the recording takes against the raw frames and gzip of timestamped lines."""
    floor = next((r for r in results.values() if r.kind == "floor"), None)
    rec = next((r for r in results.values() if r.kind == "obengine"), None)
    any_r = next(iter(results.values()))
    lines = [f"{h}{workload}: the recorder's own work on {any_r.frames:,} frames (Recording.add, zstd "
             "blocks, written; no fsync) beside BookSet.apply on the same frames", ""]
    table = Table(markdown, ["path", "us/frame", "x apply"], "lrr")
    for r in sorted(results.values(), key=lambda r: r.seconds):
        table.add([r.path, _num(r.seconds * 1e6 / r.frames, 2), _ratio(r.seconds / floor.seconds) if floor else "-"])
    lines += [table.render(), ""]
    if rec is not None and "disk_bytes" in rec.info:
        i = rec.info
        sizes = Table(markdown, ["bytes", "total", "per frame", "vs recording"], "lrrr")
        for name, key in (("raw frames", "raw_bytes"), ("recording (zstd blocks)", "disk_bytes"),
                          ("gzip -6 of timestamped lines", "gzip_lines_bytes")):
            sizes.add([name, f"{i[key]:,}", _num(i[key] / i["frames"], 1), _ratio(i[key] / i["disk_bytes"])])
        lines += [sizes.render(), ""]
    return lines


def _replay_table(workload: str, results: dict[str, Any], h: str, markdown: bool) -> list[str]:
    """Replay from compressed segments beside BookSet.apply on the same frames in memory, as
    rates (the issue's target: at least 0.75x the apply rate), and parallel replay beside one pass."""
    floor, one = floor_of(results), obengine_of(results)
    any_r = next(iter(results.values()))
    i = any_r.info
    lines = [f"{h}{workload}: {any_r.frames:,} frames in {i.get('segments', '?')} segment(s), "
             f"{i.get('disk_bytes', 0):,} bytes on disk, replayed into books", ""]
    table = Table(markdown, ["path", "frames/s", "x apply rate", "x one pass"], "lrrr")
    for r in sorted(results.values(), key=lambda r: r.seconds):
        table.add([r.path, _num(r.frames / r.seconds),
                   _ratio(floor.seconds / r.seconds) if floor else "-",
                   _ratio(one.seconds / r.seconds) if one else "-"])
    return lines + [table.render(), ""]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="print the obengine benchmark table")
    ap.add_argument("json", help="pytest-benchmark --benchmark-json output")
    ap.add_argument("--stat", default=DEFAULT_STAT, choices=("min", "median", "mean"))
    ap.add_argument("--markdown", action="store_true", help="GitHub markdown tables (for the README)")
    args = ap.parse_args(argv)
    print(report(args.json, args.stat, args.markdown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
