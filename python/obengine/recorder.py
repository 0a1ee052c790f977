"""The recorder behind ``obengine record``: the live feed (:func:`obengine.connect`), with every
message it receives written byte for byte, with its receive times, into a rotating recording
(:class:`obengine.record.Recording`, format in ``docs/recording.md``), and the feed's own events
(connections, subscription results, syncs, desyncs, timeouts, malformed frames) beside them.

Each message is written before the protocol applies it, so a segment's keyframes (the exact
books of the synced pairs when the segment starts) and the frames after them always agree.
Blocks reach the OS every ``block_s`` (and are fsynced by default): a ``kill -9`` loses at most
the block being filled. A write error (disk full, the file size limit, an I/O error) stops the
recorder with :class:`~obengine.RecordingError`; every block before it stays readable.

This module is the I/O layer (asyncio). Health comes three ways: a log line every
``health_s``, :meth:`Recorder.health` (what the live view and the metrics endpoint show), and
the counters on the object.
"""
from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any

from obengine._core import Book
from obengine.feed import BTCTURK_WS, ConnectFailed, Connected, Disconnected, Feed, connect
from obengine.scales import DEFAULT_SCALES
from obengine.protocol import Desynced, Malformed, SnapshotTimeout, Subscribed, Synced
from obengine.record import Kind, Recording
from obengine.record.keyframe import decimal_text
from obengine.record.keyframe import keyframes as keyframe_frames
from obengine.record.keyframe import scales as book_scales

__all__ = ["Recorder", "Health"]

log = logging.getLogger("obengine.record")

POLL_S = 0.1          # how often a quiet feed's block and rotation deadlines are checked


@dataclass(frozen=True)
class Health:
    """What the recorder is doing, as the health line, the live view and the metrics show it."""

    frames: int                  # messages received and written
    frames_per_s: float          # over the last health period
    raw_bytes: int               # payload bytes recorded
    disk_bytes: int              # bytes written to segment files
    ratio: float                 # raw / disk
    segments: int
    pairs: int
    synced: int
    gaps: int                    # desyncs: CS gaps and crossed books (the metric obengine_record_gaps)
    resyncs: int
    reconnects: int
    malformed: int
    since_last_frame_s: float | None   # None: no frame yet
    uptime_s: float
    top: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)  # pair: (bid, ask)

    def line(self) -> str:
        last = "none yet" if self.since_last_frame_s is None else f"{self.since_last_frame_s:.1f} s ago"
        return (
            f"frames {self.frames} ({self.frames_per_s:.1f}/s), written {_size(self.disk_bytes)} "
            f"(raw {_size(self.raw_bytes)}, ratio {self.ratio:.1f}x, {self.segments} segments), "
            f"synced {self.synced}/{self.pairs}, desyncs {self.gaps}, resyncs {self.resyncs}, "
            f"reconnects {self.reconnects}, malformed {self.malformed}, last frame {last}"
        )


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} B"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def top_of_book(book: Book) -> tuple[str | None, str | None]:
    """Best bid and best ask as exact decimal prices (``None`` for an empty side)."""
    bid, ask = book.best_bid, book.best_ask
    return (
        None if bid is None else decimal_text(bid[0], book.price_scale),
        None if ask is None else decimal_text(ask[0], book.price_scale),
    )


class Recorder:
    """Record ``pairs`` from ``url`` into the directory ``out``.

    Args:
        pairs: pair symbols as the feed spells them.
        out: the recording's directory (created if missing).
        url: the websocket feed (the real exchange, ``obengine sim``, ``obengine serve``).
        channels: per pair, ``obdiff`` and optionally ``trade``, ``ticker``.
        scales: ``{pair: (price_scale, amount_scale)}``; ``None``: as :func:`obengine.connect`
            finds them (REST exchange info for the real exchange, else the bundled table).
        rest_url: passed to :func:`obengine.connect`.
        prefix: segment file names' prefix.
        rotate_s, rotate_bytes: start a new segment when the current one is this old or large.
        block_s, block_bytes: write a block when its first record is this old or it is this
            large (``block_s`` is the most a ``kill -9`` can lose).
        fsync: fsync each block (survives power loss, not only a killed process).
        health_s: the health log line's period.
        feed_options: more keyword arguments for :func:`obengine.connect`.
    """

    def __init__(
        self,
        pairs: Sequence[str],
        out: str | Path,
        *,
        url: str = BTCTURK_WS,
        channels: Sequence[str] = ("obdiff",),
        scales: Mapping[str, tuple[int, int]] | None = None,
        rest_url: str | None = None,
        prefix: str = "obengine",
        rotate_s: float = 3600.0,
        rotate_bytes: int = 256 * 2**20,
        block_s: float = 1.0,
        block_bytes: int = 2**20,
        level: int = 3,
        fsync: bool = True,
        health_s: float = 60.0,
        feed_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.pairs = tuple(pairs)
        self.out = Path(out)
        self.url = url
        self.channels = tuple(channels)
        self.health_s = health_s
        self._recording_options = dict(
            prefix=prefix, rotate_s=rotate_s, rotate_bytes=rotate_bytes, block_s=block_s,
            block_bytes=block_bytes, level=level, fsync=fsync,
        )
        self._feed_options = dict(feed_options or {})
        self._scales = scales
        self._rest_url = rest_url
        self.feed: Feed | None = None
        self.recording: Recording | None = None
        self.frames = 0
        self.events: dict[str, int] = {}
        self.started_mono = time.monotonic()
        self.last_frame_mono: float | None = None
        self.frames_per_s = 0.0                 # over the last second, updated by the ticker
        self._rate = (self.started_mono, 0)

    # -- what the feed calls ------------------------------------------------------------------

    def _message(self, data: bytes, wall_ns: int, mono_ns: int) -> None:
        assert self.recording is not None
        self.recording.add(Kind.FRAME, wall_ns, mono_ns, data)
        self.frames += 1
        self.last_frame_mono = mono_ns / 1e9

    def _event(self, event: object) -> None:
        if not isinstance(event, (Connected, Disconnected, ConnectFailed, Subscribed, Synced, Desynced,
                                  SnapshotTimeout, Malformed)):
            return                               # trades, tickers, ...: their frames are recorded
        name = _EVENT_NAMES[type(event)]
        self.events[name] = self.events.get(name, 0) + 1
        fields = asdict(event) if is_dataclass(event) and not isinstance(event, type) else {}
        if self.recording is not None:
            self.recording.event(name, time.time_ns(), time.monotonic_ns(), _jsonable(fields))

    # -- segments -------------------------------------------------------------------------------

    @property
    def _open_feed(self) -> Feed | None:
        """The feed once it is open (its books and states exist), else ``None``."""
        feed = self.feed
        return feed if feed is not None and feed._proto is not None else None

    def _synced_books(self) -> dict[str, Book]:
        feed = self._open_feed
        if feed is None:
            return {}
        return {pair: book for pair, book in feed.books.items() if feed.synced(pair)}

    def _header(self) -> dict[str, Any]:
        feed = self._open_feed
        books = feed.books if feed is not None else {}
        # The scales the feed started with (given, else the bundled table's), then the books'
        # own where they have them (a book's scales rise when a finer value comes).
        start = self._scales or {p: DEFAULT_SCALES[p] for p in self.pairs if p in DEFAULT_SCALES}
        scales = {p: list(s) for p, s in start.items()}
        scales.update(book_scales(books) if books else {})
        return {
            "source": self.url, "pairs": list(self.pairs), "channels": list(self.channels),
            "scales": scales, "host": socket.gethostname(),
        }

    def _keyframes(self) -> list[bytes]:
        return keyframe_frames(self._synced_books())

    # -- running --------------------------------------------------------------------------------

    async def run(self, *, duration_s: float | None = None, stop: asyncio.Event | None = None) -> None:
        """Record until ``stop`` is set or ``duration_s`` has passed; then flush and close.
        Raises :class:`~obengine.RecordingError` on a write error (after closing what it
        can), and :class:`~obengine.AuthError` when a login is refused."""
        stop = stop or asyncio.Event()
        self.recording = Recording(self.out, header=self._header, keyframes=self._keyframes,
                                   **self._recording_options)  # type: ignore[arg-type]
        self.recording.event("start", time.time_ns(), time.monotonic_ns(),
                             {"url": self.url, "pairs": len(self.pairs), "channels": list(self.channels)})
        log.info("recording %d pairs from %s into %s", len(self.pairs), self.url, self.out)
        feed = connect(
            self.pairs, url=self.url, scales=self._scales, channels=self.channels, rest_url=self._rest_url,
            on_message=self._message, on_event=self._event, **self._feed_options,
        )
        try:
            async with feed:
                self.feed = feed
                consumer = asyncio.create_task(self._consume(feed), name="obengine-record")
                ticker = asyncio.create_task(self._tick(), name="obengine-record-tick")
                stopper = asyncio.create_task(stop.wait())
                waits: set[asyncio.Task[Any]] = {consumer, ticker, stopper}
                done, _ = await asyncio.wait(waits, timeout=duration_s, return_when=asyncio.FIRST_COMPLETED)
                for task in waits:
                    task.cancel()
                for task in (consumer, ticker):
                    if task in done and not task.cancelled() and task.exception() is not None:
                        raise task.exception()  # type: ignore[misc]
        finally:
            self._close()

    async def _consume(self, feed: Feed) -> None:
        async for _ in feed:
            pass

    async def _tick(self) -> None:
        next_health = time.monotonic() + self.health_s
        while True:
            await asyncio.sleep(POLL_S)
            assert self.recording is not None
            self.recording.poll(time.time_ns(), time.monotonic_ns())
            now = time.monotonic()
            then, frames_then = self._rate
            if now - then >= 1.0:
                self.frames_per_s = (self.frames - frames_then) / (now - then)
                self._rate = (now, self.frames)
            if now >= next_health:
                next_health = now + self.health_s
                log.info("%s", self.health().line())

    def _close(self) -> None:
        recording = self.recording
        if recording is None or recording.closed:
            return
        try:
            if recording.failed is None:
                recording.event("stop", time.time_ns(), time.monotonic_ns(), {"frames": self.frames})
            recording.close()
        finally:
            log.info("recording closed: %s", self.health().line())

    def health(self, top_pairs: int = 0) -> Health:
        """The figures now (also called from the metrics thread: it only reads), with the top
        of book of the first ``top_pairs`` synced pairs."""
        now = time.monotonic()
        rate = self.frames_per_s
        rec = self.recording
        feed = self._open_feed
        stats = feed.stats if feed is not None else None
        synced = sum(1 for p in self.pairs if feed.synced(p)) if feed is not None else 0
        top: dict[str, tuple[str | None, str | None]] = {}
        if top_pairs and feed is not None:
            for pair in self.pairs[:top_pairs]:
                book = feed.books.get(pair)
                if book is not None and feed.synced(pair):
                    top[pair] = top_of_book(book)
        return Health(
            frames=self.frames, frames_per_s=rate,
            raw_bytes=rec.raw_bytes if rec is not None else 0,
            disk_bytes=rec.disk_bytes if rec is not None else 0,
            ratio=rec.ratio if rec is not None else 0.0,
            segments=rec.segments if rec is not None else 0,
            pairs=len(self.pairs), synced=synced,
            gaps=(stats.gaps + stats.crossed) if stats else 0,
            resyncs=stats.resyncs if stats else 0,
            reconnects=stats.reconnects if stats else 0,
            malformed=stats.malformed if stats else 0,
            since_last_frame_s=None if self.last_frame_mono is None else max(0.0, now - self.last_frame_mono),
            uptime_s=now - self.started_mono,
            top=top,
        )


_EVENT_NAMES: dict[type, str] = {
    Connected: "connect", Disconnected: "disconnect", ConnectFailed: "connect_failed",
    Subscribed: "subscribe", Synced: "synced", Desynced: "desync", SnapshotTimeout: "snapshot_timeout",
    Malformed: "malformed",
}


def _jsonable(fields: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in fields.items():
        if key == "event":
            key = "pair"                          # Subscribed.event: the pair ("event" names the record)
        if value is None or isinstance(value, (bool, int, str)):
            out[key] = value
        elif isinstance(value, float):
            out[key] = round(value, 6)            # delays in seconds: not prices
        else:
            out[key] = str(value)
    return out
