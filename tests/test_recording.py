"""Recordings (``obengine.record``, ``docs/recording.md``): the format round trip, rotation and
block flushing, the ``zstd`` tool's view of a segment, damage skipped and counted, a writer killed
at random moments (a real process, SIGKILL), a writer hitting the file size limit (a real
process, RLIMIT_FSIZE), segment paths, and keyframes that rebuild books exactly.

Every file is real, under ``tmp_path``; every time a record carries is given by the test.
"""
from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

import obengine
from _record_writer_child import HEADER, KEYFRAMES, payload, times
from helpers import f431, f432, state
from obengine import Book, BookSet, Status
from obengine.record import (
    FORMAT_VERSION,
    Kind,
    ReadStats,
    Record,
    Recording,
    RecordingError,
    SegmentWriter,
    iter_blocks,
    keyframes,
    parse_segment_name,
    read,
    read_segment,
    scales,
    segment_name,
    segment_paths,
    snapshot_frame,
    snapshot_frames,
)
from obengine.record.format import (
    BLOCK_HEADER_SIZE,
    BLOCK_MAGIC,
    BlockHeader,
    decode_records,
    encode_block,
    encode_records,
    pack_block_header,
    record_offsets,
    unpack_block_header,
)
from obengine.simulator import FeedSimulator

CHILD = Path(__file__).with_name("_record_writer_child.py")
S = 1_000_000_000  # ns in a second
WALL0 = 1_796_238_900_123_456_000  # 2026-12-02T19:15:00.123456Z


def rec(kind: Kind, i: int, data: bytes) -> Record:
    return Record(kind, WALL0 + i * 1000, 7 * S + i * 1000, data)


def write_segment(path: Path, blocks: list[list[Record]], **options: Any) -> None:
    with SegmentWriter(path, fsync=False, **options) as w:
        for block in blocks:
            for r in block:
                w.append(r.kind, r.wall_ns, r.mono_ns, r.data)
            w.flush_block()


def read_all(paths: list[Path] | Path, stats: ReadStats | None = None) -> list[Record]:
    return [r for _, r in read([paths] if isinstance(paths, Path) else paths, stats=stats)]


def arbitrary_blocks(n_blocks: int, per_block: int, seed: int = 0) -> list[list[Record]]:
    """Blocks of FRAME records of arbitrary bytes (empty, magic, whole block headers, JSON)."""
    blocks = []
    i = 0
    for _ in range(n_blocks):
        block = []
        for _ in range(per_block):
            block.append(rec(Kind.FRAME, i, payload(seed, i)))
            i += 1
        blocks.append(block)
    return blocks


# -- the format round trip -----------------------------------------------------------------------


def test_records_of_every_kind_round_trip_through_a_segment_byte_for_byte(tmp_path: Path) -> None:
    records = [
        Record(Kind.HEADER, WALL0, 1, b'{"format":1}'),
        Record(Kind.KEYFRAME, WALL0, 1, f431(5, [("2150010", "0.5")]).encode()),
        Record(Kind.FRAME, WALL0 + 1, 2, f432(6, [("2150010", "0.7", 0)]).encode()),
        Record(Kind.EVENT, WALL0 + 2, 3, b'{"event":"gap","pair":"BTCTRY"}'),
        Record(Kind.FRAME, -(2**63), 2**63 - 1, b""),  # extreme times, an empty payload
        Record(Kind.FRAME, 0, -5, bytes(range(256)) * 3),
    ]
    path = tmp_path / "one.obr"
    write_segment(path, [records])
    stats = ReadStats()
    assert list(read_segment(path, stats=stats)) == records
    assert all(type(r.kind) is Kind for r in read_segment(path))
    assert stats == ReadStats(
        segments=1, blocks=1, records=6, bytes_read=path.stat().st_size
    )
    assert records[3].json() == {"event": "gap", "pair": "BTCTRY"}


@given(
    st.lists(
        st.builds(
            Record,
            st.sampled_from(Kind),
            st.integers(-(2**63), 2**63 - 1),
            st.integers(-(2**63), 2**63 - 1),
            st.binary(max_size=200) | st.sampled_from([BLOCK_MAGIC, BLOCK_MAGIC * 13 + b"OBRB"]),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_any_records_tile_a_block_and_decode_back(records: list[Record]) -> None:
    data = encode_records(records)
    offsets = record_offsets(data, len(records))
    assert decode_records(data, offsets) == records
    block = encode_block(data, len(records), records[0].wall_ns, records[-1].wall_ns)
    header = unpack_block_header(block)
    assert block[BLOCK_HEADER_SIZE:] and len(block) == BLOCK_HEADER_SIZE + header.compressed_size
    assert zstandard.ZstdDecompressor().decompress(block[BLOCK_HEADER_SIZE:]) == data
    with pytest.raises(ValueError):
        record_offsets(data + b"\0", len(records))  # a byte left over
    with pytest.raises(ValueError):
        record_offsets(data, len(records) + 1)


def test_arbitrary_bytes_round_trip_across_many_blocks_and_segments(tmp_path: Path) -> None:
    """Frames holding the block magic and whole valid-looking block headers are data, never
    framing: the records come back byte for byte, in order, across blocks and segments."""
    expected = []
    with Recording(
        tmp_path, header=HEADER, block_bytes=700, rotate_bytes=5000, fsync=False
    ) as recording:
        for i in range(600):
            wall_ns, mono_ns = times(i)
            data = payload(11, i)
            recording.add(Kind.FRAME, wall_ns, mono_ns, data)
            expected.append((wall_ns, mono_ns, data))
        recording.add(Kind.FRAME, *times(600), "ünïcode text frame")  # str: its UTF-8
        expected.append((*times(600), "ünïcode text frame".encode()))
    assert recording.segments >= 4 and recording.blocks >= 20
    stats = ReadStats()
    got = [(r.wall_ns, r.mono_ns, r.data) for r in read_all(tmp_path, stats) if r.kind == Kind.FRAME]
    assert got == expected
    assert stats.corrupt_blocks == 0 and stats.truncated_tail == 0
    assert stats.segments == recording.segments and stats.blocks == recording.blocks
    assert stats.records == recording.records == recording.records_written
    assert sum(p.stat().st_size for p in recording.paths) == recording.disk_bytes


def test_segment_writer_counts_what_it_buffers_and_writes(tmp_path: Path) -> None:
    w = SegmentWriter(tmp_path / "s.obr", fsync=True)
    assert w.flush_block() == 0 and w.blocks == 0 and w.disk_bytes == 0  # nothing buffered
    w.append(Kind.FRAME, WALL0, 1, b"abc")
    w.append(Kind.EVENT, WALL0, 2, bytearray(b'{"event":"x"}'))
    assert (w.records, w.buffered_records, w.raw_bytes) == (2, 2, 16)
    assert w.buffered_bytes == 2 * 21 + 16 and w.records_written == 0
    written = w.flush_block()
    assert written == w.disk_bytes == (tmp_path / "s.obr").stat().st_size
    assert (w.blocks, w.buffered_records, w.buffered_bytes, w.records_written) == (1, 0, 0, 2)
    w.close()
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.append(Kind.FRAME, 0, 0, b"late")
    with pytest.raises(ValueError, match="kind"):
        SegmentWriter(tmp_path / "t.obr", fsync=False).append(9, 0, 0, b"")


def test_a_segment_writer_never_overwrites_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "taken.obr"
    path.write_bytes(b"precious")
    with pytest.raises(RecordingError) as info:
        SegmentWriter(path)
    assert info.value.errno == errno.EEXIST and str(path) in str(info.value)
    assert path.read_bytes() == b"precious"


def test_iter_blocks_gives_each_block_with_its_record_offsets(tmp_path: Path) -> None:
    blocks = arbitrary_blocks(5, 7)
    path = tmp_path / "s.obr"
    write_segment(path, blocks)
    got = list(iter_blocks(path))
    assert [b.header.record_count for b in got] == [7] * 5
    assert got[0].offset == 0
    for block, records in zip(got, blocks):
        assert block.header.version == FORMAT_VERSION
        assert block.header.first_wall_ns == records[0].wall_ns
        assert block.header.last_wall_ns == records[-1].wall_ns
        assert block.data == encode_records(records)
        assert block.records() == records
        for offset, r in zip(block.offsets, records):
            assert block.data[offset + 21 : offset + 21 + len(r.data)] == r.data
    ends = [b.offset + BLOCK_HEADER_SIZE + b.header.compressed_size for b in got]
    assert [b.offset for b in got[1:]] == ends[:-1] and ends[-1] == path.stat().st_size


# -- what the zstd tool and library see ---------------------------------------------------------


@pytest.mark.skipif(shutil.which("zstd") is None, reason="the zstd command-line tool is not installed")
def test_the_zstd_tool_decodes_a_segment_to_its_records_concatenated(tmp_path: Path) -> None:
    blocks = arbitrary_blocks(6, 9, seed=3)
    path = tmp_path / "s.obr"
    write_segment(path, blocks)
    out = tmp_path / "out.bin"
    subprocess.run(["zstd", "-d", "-q", str(path), "-o", str(out)], check=True)
    assert out.read_bytes() == encode_records(r for block in blocks for r in block)


def test_each_block_decodes_alone_with_zstandard(tmp_path: Path) -> None:
    blocks = arbitrary_blocks(4, 5, seed=4)
    path = tmp_path / "s.obr"
    write_segment(path, blocks)
    raw = path.read_bytes()
    for block, records in zip(iter_blocks(path), blocks):
        start = block.offset + BLOCK_HEADER_SIZE
        frame = raw[start : start + block.header.compressed_size]
        params = zstandard.get_frame_parameters(frame)
        assert params.content_size == len(block.data) and params.has_checksum
        # A fresh decompressor, the frame alone: no dictionary, nothing from other blocks.
        assert zstandard.ZstdDecompressor().decompress(frame) == encode_records(records)


# -- rotation, names, headers, keyframes ---------------------------------------------------------


def test_segment_names_carry_the_start_time_and_counter_and_parse_back() -> None:
    name = segment_name("btcturk", WALL0 + 789, 1)
    assert name == "btcturk-20261202T191500.123456Z-0001.obr"
    assert parse_segment_name(name) == ("btcturk", WALL0, 1)  # to the microsecond
    assert segment_name("a.b_c-d", 0, 12345) == "a.b_c-d-19700101T000000.000000Z-12345.obr"
    assert parse_segment_name("a.b_c-d-19700101T000000.000000Z-12345.obr") == ("a.b_c-d", 0, 12345)
    for bad in ["x.obr", "btcturk-20261202T191500Z-0001.obr", "btcturk-20261302T191500.000000Z-0001.obr",
                "btcturk-20261202T191500.123456Z-001.obr", "btcturk-20261202T191500.123456Z-0001.zst"]:
        assert parse_segment_name(bad) is None, bad
    with pytest.raises(ValueError):
        segment_name("bad/prefix", 0, 1)


def test_segments_rotate_by_age(tmp_path: Path) -> None:
    with Recording(tmp_path, rotate_s=10.0, block_s=100.0, fsync=False) as recording:
        for second in range(26):
            recording.add(Kind.FRAME, WALL0 + second * S, second * S, b"%d" % second)
    assert recording.segments == 3
    frames = [
        [int(r.data) for r in read_segment(p) if r.kind == Kind.FRAME] for p in recording.paths
    ]
    assert frames == [list(range(0, 10)), list(range(10, 20)), list(range(20, 26))]
    starts = [parse_segment_name(p.name) for p in recording.paths]
    assert [s.start_ns if s else None for s in starts] == [WALL0, WALL0 + 10 * S, WALL0 + 20 * S]
    assert [s.counter if s else None for s in starts] == [1, 2, 3]


def test_segments_rotate_by_size_at_most_one_block_late(tmp_path: Path) -> None:
    with Recording(tmp_path, rotate_bytes=4000, block_bytes=600, level=1, fsync=False) as recording:
        for i in range(400):
            recording.add(Kind.FRAME, *times(i), payload(5, i, incompressible=True)[:300])
    sizes = [p.stat().st_size for p in recording.paths]
    assert len(sizes) >= 10
    largest_block = max(b.header.compressed_size + BLOCK_HEADER_SIZE
                        for p in recording.paths for b in iter_blocks(p))
    for size in sizes[:-1]:
        assert 4000 <= size < 4000 + largest_block
    assert read_all(recording.paths) == read_all(tmp_path)


def test_a_block_written_by_age_that_fills_the_segment_is_the_segment_s_last(
    tmp_path: Path,
) -> None:
    with Recording(tmp_path, rotate_bytes=3000, block_s=1.0, level=1, fsync=False) as recording:
        for i in range(40):  # one record a second: each add writes the one before by age
            recording.add(Kind.FRAME, WALL0 + i * S, i * S, payload(6, i, incompressible=True)[:400])
    assert recording.segments >= 5
    for path in recording.paths[:-1]:
        blocks = list(iter_blocks(path))
        before_last = path.stat().st_size - BLOCK_HEADER_SIZE - blocks[-1].header.compressed_size
        assert before_last < 3000 <= path.stat().st_size
    frames = [r.data for r in read_all(tmp_path) if r.kind == Kind.FRAME]
    assert frames == [payload(6, i, incompressible=True)[:400] for i in range(40)]


def test_names_sort_in_writing_order_even_when_the_wall_clock_steps_back(tmp_path: Path) -> None:
    with Recording(tmp_path, rotate_s=1.0, fsync=False) as recording:
        for i, wall_ns in enumerate([WALL0, WALL0 - 3600 * S, WALL0 - 7200 * S, WALL0 + 5 * S]):
            recording.add(Kind.FRAME, wall_ns, i * 2 * S, b"%d" % i)
    assert recording.segments == 4
    assert segment_paths([tmp_path]) == recording.paths
    assert sorted(p.name for p in recording.paths) == [p.name for p in recording.paths]
    frames = [r.data for r in read_all(tmp_path) if r.kind == Kind.FRAME]
    assert frames == [b"0", b"1", b"2", b"3"]


def test_each_segment_starts_with_its_header_then_the_keyframes(tmp_path: Path) -> None:
    books_now = {"n": 0}

    def header() -> dict[str, Any]:
        books_now["n"] += 1
        return {**HEADER, "scales": {"BTCTRY": [0, 8]}, "call": books_now["n"]}

    def frames() -> list[bytes]:
        return [b"keyframe-a-%d" % books_now["n"], b"keyframe-b-%d" % books_now["n"]]

    with Recording(tmp_path, prefix="btcturk", header=header, keyframes=frames, rotate_s=1.0,
                   fsync=False) as recording:
        for i in range(3):
            recording.add(Kind.FRAME, WALL0 + i * S, i * S, b"frame %d" % i)
            recording.event("gap", WALL0 + i * S, i * S + 1, {"pair": "BTCTRY", "cs": i})
    assert recording.segments == 3
    run_ids = set()
    for n, path in enumerate(recording.paths, start=1):
        records = list(read_segment(path))
        kinds = [r.kind for r in records]
        assert kinds == [Kind.HEADER, Kind.KEYFRAME, Kind.KEYFRAME, Kind.FRAME, Kind.EVENT]
        head = records[0].json()
        assert head["format"] == FORMAT_VERSION and head["obengine"] == obengine.__version__
        assert head["created_ns"] == records[0].wall_ns == WALL0 + (n - 1) * S
        assert head["segment"] == n and head["prefix"] == "btcturk" and head["call"] == n
        assert head["source"] == HEADER["source"] and head["scales"] == {"BTCTRY": [0, 8]}
        assert head["previous"] == (recording.paths[n - 2].name if n > 1 else None)
        run_ids.add(head["run"])
        # The keyframes carry the segment's start times, as the header does.
        assert [r.data for r in records[1:3]] == [b"keyframe-a-%d" % n, b"keyframe-b-%d" % n]
        start = (records[0].wall_ns, records[0].mono_ns)
        assert {(r.wall_ns, r.mono_ns) for r in records[:3]} == {start}
        assert records[4].json() == {"event": "gap", "pair": "BTCTRY", "cs": n - 1}
        # The header and keyframes are a block of their own, written when the segment starts.
        assert next(iter_blocks(path)).header.record_count == 3
    assert len(run_ids) == 1


def test_the_writer_refuses_header_keys_it_sets_itself(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="segment"):
        Recording(tmp_path, header={"segment": 5})
    with Recording(tmp_path, header=lambda: {"format": 2}, fsync=False) as recording:
        with pytest.raises(ValueError, match="format"):
            recording.add(Kind.FRAME, WALL0, 0, b"x")
    assert list(tmp_path.iterdir()) == []  # no segment was started


def test_a_taken_segment_name_moves_the_counter_on(tmp_path: Path) -> None:
    taken = tmp_path / segment_name("obengine", WALL0, 1)
    taken.write_bytes(b"someone else's")
    with Recording(tmp_path, fsync=False) as recording:
        recording.add(Kind.FRAME, WALL0, 0, b"x")
    assert recording.paths == [tmp_path / segment_name("obengine", WALL0, 2)]
    assert taken.read_bytes() == b"someone else's"


# -- block flushing ------------------------------------------------------------------------------


def test_a_block_is_written_when_block_bytes_are_buffered(tmp_path: Path) -> None:
    with Recording(tmp_path, block_bytes=1000, block_s=100.0, fsync=False) as recording:
        recording.add(Kind.FRAME, WALL0, 0, b"x" * 100)  # starts the segment: 1 block (header)
        assert (recording.blocks, recording.buffered_records) == (1, 1)
        for i in range(1, 8):
            recording.add(Kind.FRAME, WALL0, i, b"x" * 100)
        assert (recording.blocks, recording.buffered_records) == (1, 8)
        assert recording.buffered_bytes == 8 * 121
        recording.add(Kind.FRAME, WALL0, 8, b"x" * 100)  # 9 * 121 >= 1000
        assert (recording.blocks, recording.buffered_records) == (2, 0)
        assert recording.records_written == 10  # the header and 9 frames
        assert recording.path is not None and recording.path.stat().st_size == recording.disk_bytes
    assert recording.ratio > 1.0


def test_poll_writes_a_quiet_block_once_block_s_has_passed(tmp_path: Path) -> None:
    with Recording(tmp_path, block_s=1.0, rotate_s=60.0, fsync=False) as recording:
        assert recording.deadline_ns is None
        recording.poll(WALL0, 0)  # nothing to do before the first record
        recording.add(Kind.FRAME, WALL0, 10 * S, b"quiet")
        assert recording.deadline_ns == 11 * S
        recording.poll(WALL0, 11 * S - 1)
        assert (recording.blocks, recording.buffered_records) == (1, 1)
        recording.poll(WALL0, 11 * S)
        assert (recording.blocks, recording.buffered_records) == (2, 0)
        assert recording.deadline_ns == 70 * S  # now only the segment's age
        assert [r.data for r in read_all(tmp_path) if r.kind == Kind.FRAME] == [b"quiet"]


def test_an_old_block_is_written_before_the_record_that_finds_it_old(tmp_path: Path) -> None:
    with Recording(tmp_path, block_s=1.0, fsync=False) as recording:
        recording.add(Kind.FRAME, WALL0, 0, b"a")
        recording.add(Kind.FRAME, WALL0, S // 2, b"b")
        assert recording.buffered_records == 2
        recording.add(Kind.FRAME, WALL0, S, b"c")
        assert (recording.blocks, recording.buffered_records) == (2, 1)
    blocks = [[r.data for r in b.records()] for b in iter_blocks(recording.paths[0])]
    assert blocks[1:] == [[b"a", b"b"], [b"c"]]


def test_poll_starts_a_new_segment_for_a_quiet_feed_when_the_segment_is_old(tmp_path: Path) -> None:
    with Recording(tmp_path, rotate_s=10.0, keyframes=lambda: [b"kf"], fsync=False) as recording:
        recording.add(Kind.FRAME, WALL0, 0, b"a")
        recording.poll(WALL0 + 9 * S, 9 * S)
        assert recording.segments == 1
        recording.poll(WALL0 + 10 * S, 10 * S)
        assert recording.segments == 2
    assert [r.kind for r in read_segment(recording.paths[1])] == [Kind.HEADER, Kind.KEYFRAME]
    assert [r.data for r in read_segment(recording.paths[0]) if r.kind == Kind.FRAME] == [b"a"]


# -- damage ----------------------------------------------------------------------------------------


def damaged_copy(tmp_path: Path, how: str) -> tuple[Path, list[list[Record]], int | None, bool]:
    """A segment of 8 blocks, damaged ``how``: the path, the blocks, the block index expected
    lost (None: none), and whether the tail is cut."""
    blocks = arbitrary_blocks(8, 6, seed=7)
    good = tmp_path / "good.obr"
    write_segment(good, blocks)
    raw = bytearray(good.read_bytes())
    spans = [(b.offset, b.header.compressed_size) for b in iter_blocks(good)]
    at, csize = spans[3]
    lost: int | None = 3
    cut = False
    if how == "byte flipped in the zstd frame":
        raw[at + BLOCK_HEADER_SIZE + csize // 2] ^= 0x40
    elif how == "byte flipped in the header's sizes":
        raw[at + 20] ^= 0x01
    elif how == "byte flipped in the magic":
        raw[at] ^= 0xFF
    elif how == "header CRC damaged":
        raw[at + 50] ^= 0x10
    elif how == "zstd checksum wrong, CRCs recomputed":
        # The frame's last 4 bytes are zstd's content checksum; with the block's CRCs made to
        # match, only zstd can tell.
        frame = bytearray(raw[at + BLOCK_HEADER_SIZE : at + BLOCK_HEADER_SIZE + csize])
        frame[-1] ^= 0x01
        header = unpack_block_header(bytes(raw[at : at + BLOCK_HEADER_SIZE]))
        fixed = BlockHeader(csize, header.decompressed_size, header.record_count,
                            header.first_wall_ns, header.last_wall_ns, zlib.crc32(frame))
        raw[at : at + BLOCK_HEADER_SIZE + csize] = pack_block_header(fixed) + frame
    elif how == "record framing wrong, CRCs valid":
        data = encode_records(blocks[3])
        data = (len(blocks[3][0].data) + 1).to_bytes(4, "little") + data[4:]  # runs one byte on
        block = encode_block(data, 6, WALL0, WALL0)
        raw[at : at + BLOCK_HEADER_SIZE + csize] = block
    elif how == "record count wrong, CRCs valid":
        block = encode_block(encode_records(blocks[3]), 7, WALL0, WALL0)
        raw[at : at + BLOCK_HEADER_SIZE + csize] = block
    elif how == "garbage between blocks":
        # With things that look like block headers: a bare magic, a header's start, and whole
        # headers with good CRCs of their own, one claiming a frame past the end of the file.
        fake = BlockHeader(40, 21, 1, WALL0, WALL0, 0)
        garbage = (b"\0garbage" + BLOCK_MAGIC + b"\x2c\0\0\0OBRB" + pack_block_header(fake)
                   + bytes(60) + pack_block_header(BlockHeader(10**9, 21, 1, WALL0, WALL0, 0)))
        raw[at:at] = garbage
        lost = None
    elif how == "a header inside a damaged block's frame":
        frame = bytes(raw[at + BLOCK_HEADER_SIZE : at + BLOCK_HEADER_SIZE + csize])
        inner = pack_block_header(BlockHeader(12, 21, 1, WALL0, WALL0, 0)) + bytes(12)
        damaged = frame[:10] + inner + frame[10 + len(inner):]
        raw[at + BLOCK_HEADER_SIZE : at + BLOCK_HEADER_SIZE + csize] = damaged
        raw[at + 44] ^= 0xFF  # and the header damaged: the reader must scan
    elif how == "first block damaged":
        raw[5] ^= 0x80
        lost = 0
    elif how == "cut inside the last header":
        del raw[spans[7][0] + 30 :]
        lost, cut = 7, True
    elif how == "cut inside the last zstd frame":
        del raw[spans[7][0] + BLOCK_HEADER_SIZE + 3 :]
        lost, cut = 7, True
    elif how == "cut inside the last magic":
        del raw[spans[7][0] + 2 :]
        lost, cut = 7, True
    else:
        raise AssertionError(how)
    path = tmp_path / "damaged.obr"
    path.write_bytes(bytes(raw))
    return path, blocks, lost, cut


DAMAGE = [
    "byte flipped in the zstd frame",
    "byte flipped in the header's sizes",
    "byte flipped in the magic",
    "header CRC damaged",
    "zstd checksum wrong, CRCs recomputed",
    "record framing wrong, CRCs valid",
    "record count wrong, CRCs valid",
    "garbage between blocks",
    "a header inside a damaged block's frame",
    "first block damaged",
    "cut inside the last header",
    "cut inside the last zstd frame",
    "cut inside the last magic",
]


@pytest.mark.parametrize("how", DAMAGE)
def test_damage_skips_only_the_damaged_block_and_is_counted(
    tmp_path: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    path, blocks, lost, cut = damaged_copy(tmp_path, how)
    stats = ReadStats()
    with caplog.at_level("INFO", logger="obengine.record"):
        got = list(read_segment(path, stats=stats))
    expected = [r for i, block in enumerate(blocks) if i != lost for r in block]
    assert got == expected
    assert stats.truncated_tail == (1 if cut else 0)
    damaged = (lost is not None and not cut) or how == "garbage between blocks"
    assert stats.corrupt_blocks == (1 if damaged else 0)
    assert stats.blocks == len(blocks) - (lost is not None)
    assert stats.bytes_read == path.stat().st_size
    if stats.corrupt_blocks:
        warning = next(m for m in caplog.records if m.levelname == "WARNING").getMessage()
        assert str(path) in warning and re.search(r"offset \d+", warning)


def test_a_segment_cut_short_does_not_stop_the_next_segments(tmp_path: Path) -> None:
    with Recording(tmp_path, block_bytes=500, rotate_bytes=3000, fsync=False) as recording:
        for i in range(200):
            recording.add(Kind.FRAME, *times(i), payload(2, i))
    assert recording.segments >= 3
    first = recording.paths[0]
    lost = {r.mono_ns for r in list(iter_blocks(first))[-1].records()}
    with open(first, "r+b") as f:
        f.truncate(first.stat().st_size - 5)
    stats = ReadStats()
    got = [(r.mono_ns, r.data) for r in read_all(tmp_path, stats) if r.kind == Kind.FRAME]
    expected = [(times(i)[1], payload(2, i)) for i in range(200) if times(i)[1] not in lost]
    assert got == expected and 0 < len(lost) < 200
    assert stats.truncated_tail == 1 and stats.corrupt_blocks == 0
    assert stats.segments == recording.segments


def test_an_empty_file_is_an_empty_segment(tmp_path: Path) -> None:
    path = tmp_path / "empty.obr"
    path.write_bytes(b"")
    stats = ReadStats()
    assert list(read_segment(path, stats=stats)) == []
    assert stats == ReadStats(segments=1)


@pytest.mark.parametrize(
    "content",
    [
        b"just some text, no recording here\n" * 10,
        zstandard.ZstdCompressor().compress(b"x" * 1000),
        b"x",
    ],
    ids=["text", "a plain zstd file", "one byte"],
)
def test_a_file_that_is_not_a_recording_raises(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "not.obr"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match="not an obengine recording") as info:
        list(read_segment(path))
    assert info.value.path == str(path) and str(path) in str(info.value)


@pytest.mark.parametrize("extra", [0, 16], ids=["same header size", "a longer header"])
def test_a_file_of_a_newer_format_version_raises_rather_than_reading_as_damage(
    tmp_path: Path, extra: int
) -> None:
    """Every version's header starts with magic, payload size, tag and version, and ends with
    a CRC of what comes before it: an intact header of another version is told from damage."""
    good = tmp_path / "good.obr"
    write_segment(good, arbitrary_blocks(1, 3))
    raw = good.read_bytes()
    body = bytearray(raw[:48] + bytes(extra))
    body[4:8] = (44 + extra).to_bytes(4, "little")
    body[12:14] = (2).to_bytes(2, "little")
    newer = tmp_path / "newer.obr"
    newer.write_bytes(bytes(body) + zlib.crc32(bytes(body)).to_bytes(4, "little") + raw[52:])
    with pytest.raises(RecordingError, match="format version 2"):
        list(read_segment(newer))


def test_a_file_that_cannot_be_opened_raises(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot open") as info:
        list(read_segment(tmp_path / "missing.obr"))
    assert info.value.errno == errno.ENOENT


# -- crash safety: real processes, real signals ------------------------------------------------


def test_a_writer_killed_at_random_moments_loses_no_block_it_reported_written(tmp_path: Path) -> None:
    rng = random.Random(20261202)
    for run in range(8):
        directory = tmp_path / f"run{run}"
        seed = rng.randrange(1000)
        reports = rng.randrange(1, 400)
        child = subprocess.Popen(
            [sys.executable, str(CHILD), "kill", str(directory), str(seed)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert child.stdout is not None
        reported = 0
        try:
            for _ in range(reports):
                line = child.stdout.readline()
                assert line, "the child stopped early"
                reported = int(line)
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait()
            child.stdout.close()
        assert child.returncode == -signal.SIGKILL

        stats = ReadStats()
        paths = segment_paths([directory])
        by_segment = [list(read_segment(p, stats=stats)) for p in paths]
        frames = []
        for n, records in enumerate(by_segment):
            if not records:  # killed before the segment's first block was whole
                assert n == len(by_segment) - 1
                continue
            kinds = [r.kind for r in records]
            assert kinds[:3] == [Kind.HEADER, Kind.KEYFRAME, Kind.KEYFRAME]
            assert set(kinds[3:]) <= {Kind.FRAME}
            assert records[0].json()["segment"] == n + 1
            assert [r.data for r in records[1:3]] == KEYFRAMES
            frames.extend(records[3:])
        assert len(frames) >= reported
        expected = [Record(Kind.FRAME, *times(i), payload(seed, i)) for i in range(len(frames))]
        assert frames == expected  # every frame, byte for byte, in order, none after a hole
        # A kill inside a write leaves a cut last block: counted, not fatal. (Whether one lands
        # there is up to the scheduler; the cut tests above make every kind of cut on purpose.)
        assert stats.corrupt_blocks == 0 and stats.truncated_tail <= 1


def test_the_file_size_limit_gives_a_recording_error_and_leaves_only_whole_blocks(
    tmp_path: Path,
) -> None:
    limit = 100_003
    out = subprocess.run(
        [sys.executable, str(CHILD), "fsize", str(tmp_path), "9", str(limit)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout)
    path = Path(result["path"])
    assert result["errno"] == errno.EFBIG
    assert str(path) in result["message"] and "file size limit" in result["message"]
    assert "EFBIG" in result["message"] and f"offset {result['offset']}" in result["message"]
    # The block that crossed the limit was partly written, then cut back (checked in the child
    # too, before it closed the file: no partial block remained).
    assert result["offset"] < limit
    assert result["size"] == result["offset"] == result["disk_bytes"] == result["size_after_close"]
    assert result["truncated_tail"] == 0 and result["corrupt_blocks"] == 0
    assert result["read_frames"] == result["frames_flushed"] > 0
    assert result["refused"] is not None and "refuses writes" in result["refused"]
    stats = ReadStats()
    frames = [r for r in read_segment(path, stats=stats) if r.kind == Kind.FRAME]
    expected = [Record(Kind.FRAME, *times(i), payload(9, i, incompressible=True))
                for i in range(result["frames_flushed"])]
    assert frames == expected
    assert stats.truncated_tail == 0 and stats.corrupt_blocks == 0
    assert stats.bytes_read == path.stat().st_size


# -- segment paths -------------------------------------------------------------------------------


def test_segment_paths_expand_files_directories_and_globs_in_time_order(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    names = [segment_name("btcturk", WALL0 + k * S, k + 1) for k in range(4)]
    for k, name in enumerate(names):
        (a if k % 2 else b).joinpath(name).write_bytes(b"")
    (a / "notes.txt").write_text("not a segment")
    other = a / "renamed.obr"
    other.write_bytes(b"")
    in_a = [a / names[1], a / names[3]]
    in_b = [b / names[0], b / names[2]]
    # Directories: their *.obr files; a name that is not a segment name sorts last.
    assert segment_paths([a, b]) == [in_b[0], in_a[0], in_b[1], in_a[1], other]
    # Files as given, sorted by the time in their names, duplicates once.
    assert segment_paths([in_a[1], in_b[0], str(in_a[1])]) == [in_b[0], in_a[1]]
    # A glob pattern.
    assert segment_paths([str(tmp_path / "*" / "btcturk-*.obr")]) == [in_b[0], in_a[0], in_b[1], in_a[1]]
    (tmp_path / "empty_dir").mkdir()
    for missing, message in [
        (str(tmp_path / "nope.obr"), "no such file"),
        (str(tmp_path / "*" / "*.zst"), "no file matches"),
        (str(tmp_path / "empty_dir"), "no \\*.obr segment"),
    ]:
        with pytest.raises(RecordingError, match=message) as info:
            segment_paths([a, missing])
        assert info.value.errno == errno.ENOENT and str(missing) in str(info.value)


# -- keyframes -------------------------------------------------------------------------------------


def rebuilt(frames: list[bytes], pair: str, target: Any) -> Any:
    for frame in frames:
        status = target.apply(frame)
        assert status in (Status.APPLIED, (pair, Status.APPLIED)), status
    return target[pair] if isinstance(target, BookSet) else target


def assert_rebuilds_exactly(book: Book) -> list[bytes]:
    """The keyframes of ``book`` rebuild it in a fresh BookSet (bundled scales, else inferred),
    a fresh Book at (0, 0), and a BookSet made with the book's scales (as far as a BookSet takes
    them: up to 18): every level, seq, the scales and the width; synced, no anomaly."""
    frames = snapshot_frames(book)
    pair = book.pair
    given = {p: (min(ps, 18), min(s, 18)) for p, (ps, s) in scales({pair: book}).items()}
    for target in (BookSet(), Book(pair, 0, 0), BookSet(scales=given)):
        copy = rebuilt(frames, pair, target)
        assert copy.snapshot() == book.snapshot()
        assert state(copy)[:6] + state(copy)[7:] == state(book)[:6] + state(book)[7:]
        assert copy.anomalies == 0 and copy.synced
    return frames


PAYLOAD_KEYS = ["CS", "PS", "AO", "BO", "channel", "event", "type"]
CANONICAL = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]*[1-9])?\Z")


def assert_exchange_spelling(frame: bytes) -> None:
    kind, body = json.loads(frame, object_pairs_hook=lambda kv: kv)
    assert [k for k, _ in body] == PAYLOAD_KEYS
    fields = dict(body)
    assert fields["type"] == kind and fields["PS"] == fields["event"] and fields["channel"] == "obdiff"
    order = [["A", "P"]] if kind == 431 else [["CP", "P", "A"]]
    for side in ("AO", "BO"):
        for level in fields[side]:
            assert [k for k, _ in level] in order
            for key, value in level:
                if key in ("A", "P"):
                    assert isinstance(value, str) and CANONICAL.match(value), value
    assert b" " not in frame


def test_keyframes_of_simulated_books_are_the_exchange_s_431_byte_for_byte_and_rebuild_them() -> None:
    sim = FeedSimulator.many(24, seed=8)
    books = BookSet()
    for frame in sim.frames(4000):
        books.apply(frame)
    rescaled = [p for p in books if books[p].amount_scale > sim.scales[p][1]]
    assert rescaled  # fine amounts made some books raise their amount scale
    for pair in books:
        book = books[pair]
        assert snapshot_frame(book) == sim.snapshot(pair)  # what a fresh join would have sent
        for frame in assert_rebuilds_exactly(book):
            assert_exchange_spelling(frame)


def test_a_rescaled_book_whose_fine_amount_is_gone_is_rebuilt_at_its_scales() -> None:
    book = Book("BTCTRY", 0, 8)
    book.apply(f431(100, [("2150010", "0.000249498098"), ("2150020", "1.5")], [("2150000", "2")]))
    book.apply(f432(101, [("2150010", None, 3)]))
    assert book.amount_scale == 12 and book.snapshot()["asks"] == [("2150020", "1.500000000000")]
    frames = assert_rebuilds_exactly(book)
    assert len(frames) == 2  # the levels alone say 1 place: a helper level carries the 12
    first, second = (json.loads(f) for f in frames)
    assert first[1]["CS"] == 100 and second[1]["CS"] == 101 and second[0] == 432
    assert first[1]["AO"][-1] == {"A": "0.000000000001", "P": "2150021"}
    assert second[1]["AO"] == [{"CP": 3, "P": "2150021", "A": "0.000000000001"}]
    for frame in frames:
        assert_exchange_spelling(frame)
    assert snapshot_frame(book) == f431(101, [("2150020", "1.5")], [("2150000", "2")]).encode()


@pytest.mark.parametrize(
    "asks, bids",
    [([("2150010", "0.5")], []), ([], [("2150000", "0.25")]), ([], [])],
    ids=["no bids", "no asks", "empty"],
)
def test_books_with_an_empty_side_are_rebuilt_exactly(asks: list[Any], bids: list[Any]) -> None:
    books = BookSet()
    books.apply(f431(-2**31, asks, bids))  # the CS at the bottom of the 32-bit range
    frames = assert_rebuilds_exactly(books["BTCTRY"])
    for frame in frames:
        assert_exchange_spelling(frame)


def test_a_wide_book_is_rebuilt_wide_with_its_values() -> None:
    books = BookSet()
    meme_asks = [("0.00000123", "9300000.123456789012"), ("0.00000125", "412000000")]
    meme_bids = [("0.00000122", "250000000.5"), ("0.0000012", "7")]
    books.apply(f431(1, meme_asks, meme_bids, pair="PEPETRY"))
    book = books["PEPETRY"]
    assert book.wide and (book.price_scale, book.amount_scale) == (8, 12)
    assert len(assert_rebuilds_exactly(book)) == 1  # its own values make it wide again
    # A later 431 of small values leaves it wide: the keyframe must make the copy wide too.
    books.apply(f431(2, [("0.00000123", "5")], [("0.00000122", "1")], pair="PEPETRY"))
    assert book.wide
    frames = assert_rebuilds_exactly(book)
    assert len(frames) == 2


def test_a_book_beyond_eighteen_places_is_rebuilt_at_its_scale() -> None:
    books = BookSet()
    books.apply(f431(9, [("5", "0.12345678901234567891")], [("4", "1")], pair="TINYTRY"))
    books.apply(f431(10, [("5", "2")], [("4", "1")], pair="TINYTRY"))
    book = books["TINYTRY"]
    assert book.amount_scale == 20 and book.wide
    assert len(assert_rebuilds_exactly(book)) == 2


def test_the_helper_level_s_cs_stays_one_a_book_takes_at_the_lowest_cs() -> None:
    book = Book("BTCTRY", 0, 8)
    assert book.apply(f431(-(2**63 - 1), [("2150010", "0.5")], [("2150000", "0.1")])) == Status.APPLIED
    frames = assert_rebuilds_exactly(book)
    assert json.loads(frames[0])[1]["CS"] == -(2**63 - 1) - 1 + 2**32  # the same modulo 2**32


def test_a_book_that_is_not_synced_has_no_keyframe() -> None:
    never = Book("BTCTRY", 0, 8)
    assert snapshot_frame(never) is None and snapshot_frames(never) == []
    gapped = Book("BTCTRY", 0, 8)
    gapped.apply(f431(100, [("2150010", "0.5")], [("2150000", "0.1")]))
    assert gapped.apply(f432(102, [("2150010", "0.7", 0)])) == Status.GAP
    assert snapshot_frame(gapped) is None and snapshot_frames(gapped) == []
    books = BookSet()
    books.apply(f431(5, [("90010", "2")], [("90000", "3")], pair="ETHTRY"))
    books.apply(f431(100, [("2150010", "0.5")], [("2150000", "0.1")]))
    books.apply(f432(102, [("2150010", "0.7", 0)]))  # BTCTRY gaps
    assert keyframes(books) == snapshot_frames(books["ETHTRY"])
    assert scales(books) == {"BTCTRY": [0, 8], "ETHTRY": [0, 8]}


def test_a_replay_from_any_segment_rebuilds_the_recorded_books(tmp_path: Path) -> None:
    """What the recorder and replay do with this layer: frames added before they are applied,
    keyframes from the live books. Replaying from any segment (its keyframes, then the frames)
    ends with the recorder's books; so does applying every segment's keyframes on the way
    (they change nothing in books that are already right)."""
    sim = FeedSimulator.many(6, seed=21)
    live = BookSet()
    with Recording(tmp_path, header=lambda: {"scales": scales(live)},
                   keyframes=lambda: keyframes(live), rotate_bytes=40_000, fsync=False) as recording:
        for i, frame in enumerate(sim.frames(3000)):
            recording.add(Kind.FRAME, *times(i), frame)
            live.apply(frame)
    assert recording.segments >= 3
    expected = {p: (live[p].snapshot(), live[p].wide) for p in live}
    for start in range(recording.segments):
        for every_keyframe in (False, True):
            books = BookSet()
            for n, path in enumerate(recording.paths[start:]):
                for record in read_segment(path):
                    if record.kind == Kind.FRAME or (
                        record.kind == Kind.KEYFRAME and (n == 0 or every_keyframe)
                    ):
                        books.apply(record.data)
            assert {p: (books[p].snapshot(), books[p].wide) for p in books} == expected

