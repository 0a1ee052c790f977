"""A recorder stand-in for the crash tests in ``test_recording.py``, run as a real process.

    python _record_writer_child.py kill  DIR SEED          write until killed
    python _record_writer_child.py fsize DIR SEED LIMIT    write until the file size limit

Both write FRAME records ``payload(SEED, i)`` for ``i = 0, 1, ...`` at the times ``times(i)``
through a :class:`Recording` with small blocks and segments. ``kill`` prints, after every add
that left nothing buffered, how many frames are in blocks written (one number a line, flushed),
and never stops on its own. ``fsize`` ignores SIGXFSZ, lowers RLIMIT_FSIZE to LIMIT bytes, writes
until the RecordingError and prints one JSON line describing it (see ``fsize``).
The test imports this module for ``payload``, ``times``, ``KEYFRAMES`` and ``HEADER``.
"""
from __future__ import annotations

import json
import os
import random
import resource
import signal
import sys
from pathlib import Path

from obengine.record import Kind, ReadStats, Recording, RecordingError, read_segment
from obengine.record.format import BLOCK_MAGIC, BlockHeader, pack_block_header

BASE_WALL_NS = 1_796_238_900_000_000_000  # 2026-12-02T19:15:00Z
HEADER = {"source": "ws://127.0.0.1:9", "pairs": ["BTCTRY"], "channels": ["obdiff"]}
KEYFRAMES = [
    b'[431,{"CS":7,"PS":"BTCTRY","AO":[],"BO":[],"channel":"obdiff","event":"BTCTRY","type":431}]',
    BLOCK_MAGIC * 3,
]
# A valid-looking block header, to be found inside frames: it must never be taken for one.
FAKE_HEADER = pack_block_header(BlockHeader(40, 21, 1, BASE_WALL_NS, BASE_WALL_NS, 0))


def payload(seed: int, i: int, *, incompressible: bool = False) -> bytes:
    """Frame ``i`` of stream ``seed``: arbitrary bytes, some JSON-like, some holding the block
    magic or a whole block header, some empty."""
    rng = random.Random(f"{seed}:{i}")
    if incompressible:
        return rng.randbytes(rng.randrange(500, 1500))
    pick = rng.randrange(6)
    if pick == 0:
        return b""
    if pick == 1:
        return rng.randbytes(rng.randrange(1, 400)) + FAKE_HEADER + rng.randbytes(rng.randrange(60))
    if pick == 2:
        return BLOCK_MAGIC + rng.randbytes(rng.randrange(300))
    cs = rng.randrange(-(2**31), 2**31)
    return (
        f'[432,{{"CS":{cs},"PS":"BTCTRY","AO":[{{"CP":0,"P":"{rng.randrange(10**6, 10**7)}",'
        f'"A":"0.{rng.randrange(10**8)}"}}],"BO":[],"channel":"obdiff","event":"BTCTRY","type":432}}]'
    ).encode()


def times(i: int) -> tuple[int, int]:
    """``(wall_ns, mono_ns)`` of frame ``i``: a millisecond apart."""
    return BASE_WALL_NS + i * 1_000_000, 5_000_000_000 + i * 1_000_000


def kill(directory: Path, seed: int) -> None:
    rec = Recording(
        directory,
        prefix="crash",
        header=HEADER,
        keyframes=lambda: KEYFRAMES,
        block_bytes=1500,
        block_s=3600.0,
        rotate_bytes=12_000,
        fsync=False,  # surviving a killed process needs no fsync: the page cache has the blocks
    )
    out = sys.stdout
    i = 0
    while True:
        wall_ns, mono_ns = times(i)
        rec.add(Kind.FRAME, wall_ns, mono_ns, payload(seed, i))
        i += 1
        if rec.buffered_records == 0:
            out.write(f"{i}\n")
            out.flush()


def fsize(directory: Path, seed: int, limit: int) -> None:
    # Without this, the write past the limit would kill the process with SIGXFSZ.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    rec = Recording(
        directory,
        header=HEADER,
        keyframes=lambda: KEYFRAMES,
        block_bytes=4000,
        rotate_bytes=100 * limit,
        fsync=True,
        level=1,
    )
    flushed = 0
    i = 0
    try:
        while True:
            wall_ns, mono_ns = times(i)
            rec.add(Kind.FRAME, wall_ns, mono_ns, payload(seed, i, incompressible=True))
            i += 1
            if rec.buffered_records == 0:
                flushed = i
    except RecordingError as e:
        error = e
    path = rec.path
    assert path is not None
    result: dict[str, object] = {
        "message": str(error),
        "errno": error.errno,
        "path": error.path,
        "offset": error.offset,
        "frames_flushed": flushed,
        "size": os.path.getsize(path),
        "disk_bytes": rec.disk_bytes,
    }
    try:
        rec.add(Kind.FRAME, *times(i), b"after the error")
        result["refused"] = None
    except RecordingError as e:
        result["refused"] = str(e)
    stats = ReadStats()
    result["read_frames"] = sum(1 for r in read_segment(path, stats=stats) if r.kind == Kind.FRAME)
    result["corrupt_blocks"] = stats.corrupt_blocks
    result["truncated_tail"] = stats.truncated_tail
    rec.close()  # after the error: closes the file, writes nothing, raises nothing
    result["size_after_close"] = os.path.getsize(path)
    print(json.dumps(result), flush=True)


def main() -> None:
    mode, directory, seed = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
    if mode == "kill":
        kill(directory, seed)
    elif mode == "fsize":
        fsize(directory, seed, int(sys.argv[4]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main()
