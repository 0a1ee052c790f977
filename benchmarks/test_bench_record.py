"""The recorder's own cost per frame, and the bytes a recording takes on disk.

The w2 stream (380 pairs, the exchange's spelling, its 380 starting 431s included) through the
part of ``obengine record`` that the live feed does not already do: ``Recording.add`` of every
frame with its two receive times, 1 MiB blocks compressed at zstd level 3 and written (no fsync:
the disk is not what is timed), the keyframes of a segment's start included. Paths:

- ``apply-floor`` (floor): ``BookSet.apply`` on the same frames in memory, what the live client
  spends on them anyway;
- ``obengine-record`` (obengine): the recorder's writing, timed in CPU and wall time.

Sizes, in ``extra_info`` and the report: the raw frames, the recording's segment files, and
gzip (level 6, zlib's default) of the same frames as timestamped text lines, the shape of a
collector that writes one line per message into a gzip file (hftbacktest's collector writes
such files). Reported, not gated.
"""
from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Any

import pytest

import peers

WORKLOAD = "w2-mixed"
GROUP = "record-w2"
WALL0_NS = 1_796_238_900_000_000_000


@pytest.fixture(scope="module")
def stream(workload_data: Any) -> list[bytes]:
    if peers.Obengine.unavailable() is not None:
        pytest.skip(peers.Obengine.unavailable() or "")
    wl = workload_data[WORKLOAD]
    return list(wl.prefix) + list(wl.frames)


def _sizes(stream: list[bytes], disk_bytes: int) -> dict[str, Any]:
    raw = sum(len(f) for f in stream)
    lines = b"".join(b"%d %s\n" % (WALL0_NS + i * 1_000_000, f) for i, f in enumerate(stream))
    gz = len(gzip.compress(lines, compresslevel=6))
    return {
        "frames": len(stream), "raw_bytes": raw, "disk_bytes": disk_bytes, "gzip_lines_bytes": gz,
        "disk_bytes_per_frame": disk_bytes / len(stream), "raw_over_disk": raw / disk_bytes,
        "gzip_over_disk": gz / disk_bytes,
    }


@pytest.mark.parametrize("path", ["apply-floor", "obengine-record"])
def test_record(benchmark: Any, stream: list[bytes], tmp_path: Path, path: str, short: bool) -> None:
    from obengine import BookSet
    from obengine.record import Kind, Recording, keyframes, read

    n = len(stream)
    books = BookSet()
    for frame in stream:
        books.apply(frame)            # the keyframes a rotation would write: the final books
    state: dict[str, Any] = {}

    def setup() -> tuple[tuple[Any, ...], dict[str, Any]]:
        directory = tmp_path / f"round{len(state.get('dirs', []))}"
        state.setdefault("dirs", []).append(directory)
        return (directory,), {}

    if path == "apply-floor":
        def run(directory: Path) -> None:
            apply = BookSet().apply
            for frame in stream:
                apply(frame)
    else:
        def run(directory: Path) -> None:
            with Recording(directory, prefix="bench", keyframes=lambda: keyframes(books), fsync=False) as rec:
                add = rec.add
                frame_kind = Kind.FRAME
                for i, frame in enumerate(stream):
                    add(frame_kind, WALL0_NS + i * 1_000_000, i * 1_000_000, frame)
            state["disk"] = rec.disk_bytes

    benchmark.extra_info.update({"workload": GROUP, "path": path, "kind": "floor" if path == "apply-floor" else "obengine",
                                 "exact": True, "frames": n})
    benchmark.pedantic(run, setup=setup, rounds=5 if short else 10, warmup_rounds=1, iterations=1)
    if path == "obengine-record":
        last = state["dirs"][-1]
        got = [r.data for _, r in read([last]) if r.kind == Kind.FRAME]
        assert got == stream, "the recording does not hold the frames byte for byte"
        benchmark.extra_info.update(_sizes(stream, state["disk"]))
    for directory in state.get("dirs", []):
        shutil.rmtree(directory, ignore_errors=True)
