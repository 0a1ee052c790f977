"""``obengine.record``: recordings of the raw feed, the file layer under the recorder and replay.

A recording is a directory of segment files; a segment is a sequence of independently
compressed blocks of records (received frames byte for byte with their receive times, the
segment's HEADER, keyframes that rebuild the books, the recorder's events). The format is
specified in ``docs/recording.md`` and implemented in:

- :mod:`obengine.record.format`: constants, :class:`Kind`, :class:`Record`, block and record
  packing, segment names; no I/O.
- :mod:`obengine.record.writer`: :class:`SegmentWriter` (one file) and :class:`Recording` (the
  rotating writer a recorder uses).
- :mod:`obengine.record.reader`: :func:`segment_paths`, :func:`read_segment`, :func:`read`,
  :func:`iter_blocks`, :class:`ReadStats`; damage is skipped and counted, never raised.
- :mod:`obengine.record.keyframe`: the synthetic book frames a segment starts with.

Blocking file I/O only: no asyncio, no sockets.
"""
from __future__ import annotations

from obengine.errors import RecordingError
from obengine.record.format import FORMAT_VERSION, Kind, Record, parse_segment_name, segment_name
from obengine.record.keyframe import keyframes, scales, snapshot_frame, snapshot_frames
from obengine.record.reader import (
    Block,
    ReadStats,
    iter_blocks,
    read,
    read_segment,
    segment_paths,
)
from obengine.record.writer import Recording, SegmentWriter

__all__ = [
    "FORMAT_VERSION",
    "Block",
    "Kind",
    "ReadStats",
    "Record",
    "Recording",
    "RecordingError",
    "SegmentWriter",
    "iter_blocks",
    "keyframes",
    "parse_segment_name",
    "read",
    "read_segment",
    "scales",
    "segment_name",
    "segment_paths",
    "snapshot_frame",
    "snapshot_frames",
]
