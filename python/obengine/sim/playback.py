"""A recording played back as the exchange's websocket feed, on loopback (``obengine serve``).

:class:`Playback` is the simulated exchange's websocket server (:class:`~obengine.sim.ws.
SimWebsocket`: handshake, hello, subscriptions and their ``100`` answers, one ordered send queue
per connection, keepalive, logins, fault knobs) with a recording (``docs/recording.md``) as its
source of frames instead of the simulated market. A strategy connects to it as to the exchange
(``obengine.connect(pairs, url=playback.url, scales=playback.scales)``) and sees real data.

One market. The recording is read once, in order (segments by their names' start times, blocks,
records), and the playback position is shared by every connection, as the exchange's own clock
is. :class:`RecordingSource` keeps each pair's book as of that position (every ``FRAME`` and
``KEYFRAME`` record applied to an :class:`obengine.BookSet` made with the HEADER's scales).

What a client gets:

- ``obdiff``, a pair: the ``100`` answer, then at once a 431 of the book as of the playback
  position (:func:`obengine.record.snapshot_frames`: CS = the book's CS; when the book's scales
  or width need it, the 431 has a helper level and CS - 1 and a 432 deletes it), then every later
  recorded 431 and 432 of the pair, byte for byte, with their recorded CS. A pair whose book is
  not synced at the join (the recording has not reached its first 431, or is between a gap and
  its resync) gets nothing until the recording's next 431 of the pair (a recorded one, or a
  segment's keyframe), which it then gets as recorded. Recorded gaps, resync 431s, stale and
  malformed frames reach the client as they reached the recorder, so it desyncs and resyncs as it
  would have live: a client that leaves and joins again gets the current book (or waits for the
  recording's next 431).
- A segment's keyframes are sent only where they change a book (a missing segment or damaged
  block before them): then, as a 431 (and its 432), to the pair's subscribers.
- ``trade``, a pair: at once a 421 of the last (up to 50) trades the recording has shown up to
  the playback position (its 421s and 422s), newest first, then the recorded 422s as recorded.
  A recorded 421 is not sent: it answered the recorder's own join, and repeats old trades.
- ``ticker`` (``all`` or a pair), and any other channel: at once the last recorded message of
  that channel and event, if any, then every later one, as recorded.
- ``orderbook``, a pair: a 431 of the book (on channel ``orderbook``, CS = the book's CS) at the
  join, or when the book is next synced, then the recording's own ``orderbook`` frames, if any.
- Never sent: the recorder's hello (991), subscription results (100), login results (114) and
  user messages (201, 441, 451-453: the recorder's account), and its EVENT records.

Joins: a pair is one of the recording's HEADER ``pairs`` (or any pair, for a recording without a
HEADER), limited to ``pairs=`` when given; any other event is answered ``ok`` and then gets
nothing, as the exchange answers an unknown pair. A join is answered at once (no join delay:
the recording carries the exchange's own timing).

Pace (``speed``): ``1.0`` follows the recorded receive times (``mono_ns`` differences; between
two runs of the recorder, whose monotonic clocks are unrelated, the wall-clock gap), ``k`` plays
``k`` times faster, ``0`` plays as fast as the clients take it: after each record the playback
waits while any connection has :attr:`Playback.high_water` messages waiting, until its socket
has taken them down to :attr:`Playback.low_water` (so one block of the recording is in memory,
never the whole of it). At a pace (``speed > 0``) the playback never waits for a client: a client
that cannot keep up is dropped as a slow consumer, as the simulator drops it.

Faults: the frame rules of ``playback.faults`` (:class:`~obengine.sim.wsfaults.WsFaults`: drop,
duplicate, reorder, truncate, bad_value, crossed, stall, abort) act on the recorded 432s as the
simulator's act on its own; the connection rules (refused handshakes and logins) too.

Start and end: the playback starts at the first join of a served pair (``wait_for_join=True``,
so a client sees the recording from its start), or with the server (``wait_for_join=False``).
At the end of the recording it logs "end of recording", :meth:`Playback.wait_finished` returns,
and the server stays up: connections stay open and idle (keepalive goes on), and a new join gets
the final books. There is no loop mode: starting over would move every book back in time, which
no exchange does; restart the server instead.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from obengine._core import MAX_SCALE, BookSet
from obengine.errors import FrameError, RecordingError
from obengine.protocol import USER_TYPES
from obengine.record import (
    Kind,
    ReadStats,
    Record,
    iter_blocks,
    segment_paths,
    snapshot_frame,
    snapshot_frames,
)
from obengine.sim._thread import in_thread as _in_thread
from obengine.sim import _json
from obengine.sim.ws import _HEAD, SimWebsocket, _Batch, _on_channel, _Sub
from obengine.sim.wsfaults import WsFaults

__all__ = ["Out", "Playback", "RecordingSource"]

log = logging.getLogger("obengine.sim.playback")

PathArg = str | os.PathLike[str]

TRADES_ON_JOIN = 50
#: Types the recorder received that are never sent to a client: the hello, subscription and
#: login results, and the recorder's own account's messages.
_NOT_SENT = frozenset({991, 100, 114, *USER_TYPES})
_ORDERBOOK_CHANNEL = b'"channel":"orderbook"'
_PAIR_CHANNELS = frozenset({"obdiff", "orderbook", "trade", "ticker"})


@dataclass(frozen=True, slots=True)
class Out:
    """A recorded message to deliver: its type, the ``channel`` and ``event`` whose subscribers
    get it (for a book frame, the event is the pair), its bytes as recorded, and a book frame's
    CS (``None`` for other messages, or a book frame whose CS could not be read)."""

    kind: int
    channel: str
    event: str
    data: bytes
    cs: int | None = None


def _book_head(data: bytes) -> tuple[int, str, int | None, str] | None:
    """``(type, pair, CS, channel)`` of a book frame (431 or 432); ``None`` for anything else
    (or a book frame whose pair cannot be told)."""
    m = _HEAD.match(data)
    if m is not None:
        tail = max(0, len(data) - 160)
        channel = "orderbook" if data.find(_ORDERBOOK_CHANNEL, tail) >= 0 else "obdiff"
        return int(m.group(1)), m.group(3).decode(), int(m.group(2)), channel
    parsed = _parse(data)
    if parsed is None or parsed[0] not in (431, 432):
        return None
    kind, payload = parsed
    ps, event = payload.get("PS"), payload.get("event")
    pair = ps if isinstance(ps, str) and ps else event  # "PS": null on a first 431 (#203)
    if not isinstance(pair, str):
        return None
    cs = payload.get("CS")
    return (
        kind,
        pair,
        cs if isinstance(cs, int) and not isinstance(cs, bool) else None,
        "orderbook" if payload.get("channel") == "orderbook" else "obdiff",
    )


def _parse(data: bytes) -> tuple[int, dict[str, Any]] | None:
    """``(type, payload)`` of a ``[type, {...}]`` message (numbers with a fraction as exact
    ``Decimal``), or ``None``."""
    try:
        doc = json.loads(data, parse_float=Decimal)
    except ValueError:  # UnicodeDecodeError included
        return None
    if not isinstance(doc, list) or len(doc) < 2 or not isinstance(doc[1], dict):
        return None
    kind = doc[0]
    if isinstance(kind, bool) or not isinstance(kind, int):
        return None
    return kind, doc[1]


def _trade_item(trade: Mapping[str, Any]) -> dict[str, Any]:
    """A 421 item (``D, I, A, P, S``) from a 421 item or a 422 payload, values as recorded."""
    return {key: trade[key] for key in ("D", "I", "A", "P", "S") if key in trade}


def _close(iterator: Iterator[Any]) -> None:
    """Close a generator now (its file with it) rather than when it is collected."""
    close = getattr(iterator, "close", None)
    if close is not None:
        close()


def _first_header(path: Path) -> dict[str, Any] | None:
    """The HEADER of a segment file (its first record), or ``None`` (an empty file, or a first
    block damaged or without one).

    Raises:
        RecordingError: the file is not a recording, cannot be read, or is of a newer version.
    """
    blocks = iter_blocks(path)
    try:
        block = next(blocks, None)
    finally:
        _close(blocks)
    if block is None:
        return None
    records = block.records()
    if not records or records[0].kind != Kind.HEADER:
        return None
    try:
        doc = records[0].json()
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


class RecordingSource:
    """A recording read in order as a source of websocket messages: the part of a playback
    without sockets or clocks (blocking file reads only).

    Feed it the records (:meth:`blocks` gives them, a block at a time) with :meth:`feed`, which
    applies book frames to :attr:`books` and says what to deliver to whom; :meth:`join_frames`,
    :meth:`trades_message` and :meth:`last_message` say what a join gets at the current
    position; :meth:`elapsed_ns` places a FRAME record on the recorded timeline.

    Args:
        paths: segment files, directories of segments, or glob patterns (``segment_paths``).
        pairs: play only these pairs (``None``: every pair of the recording).

    Raises:
        RecordingError: a path that matches no file (``errno`` ENOENT), or a segment that is
            not a recording, cannot be read or is of a newer format version.
    """

    def __init__(self, paths: PathArg | Iterable[PathArg], *, pairs: Iterable[str] | None = None) -> None:
        given: list[PathArg] = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
        if not given:
            raise ValueError("no recording given")
        self.paths: list[Path] = segment_paths(given)
        headers = [h for h in (_first_header(p) for p in self.paths) if h is not None]
        #: The HEADER of each segment that has one, in playback order.
        self.headers: list[dict[str, Any]] = headers
        known: dict[str, None] = {}
        scales: dict[str, tuple[int, int]] = {}
        for header in headers:
            for pair in header.get("pairs") or ():
                if isinstance(pair, str):
                    known.setdefault(pair)
            got = header.get("scales")
            for pair, value in (got.items() if isinstance(got, dict) else ()):
                if (
                    isinstance(value, list) and len(value) == 2
                    and all(type(s) is int and 0 <= s <= MAX_SCALE for s in value)
                ):
                    scales.setdefault(pair, (value[0], value[1]))
                    known.setdefault(pair)
        self.served: frozenset[str] | None = None if pairs is None else frozenset(pairs)
        #: The recording's pairs (its HEADERs'), in order, limited to ``pairs`` when given.
        self.known_pairs: tuple[str, ...] = tuple(known)
        #: ``{pair: (price_scale, amount_scale)}`` from the HEADERs (the first for each pair):
        #: the scales the books started with; pass them to ``obengine.connect(scales=...)``.
        self.scales: dict[str, tuple[int, int]] = {p: s for p, s in scales.items() if self.plays(p)}
        #: The books as of the playback position.
        self.books = BookSet(scales=self.scales)
        self.stats = ReadStats()
        self.frames = 0  # FRAME records fed
        self._keyframes: list[bytes] = []
        self._trades: dict[str, deque[dict[str, Any]]] = {}
        self._last: dict[tuple[str, str], bytes] = {}
        # The recorded timeline (elapsed_ns).
        self._run: object = None
        self._new_run = False
        self._base_mono: int | None = None
        self._base_elapsed = 0
        self._last_elapsed = 0
        self._last_wall: int | None = None

    # -- what is played, what may be joined -------------------------------------------------

    @property
    def header(self) -> dict[str, Any]:
        """The first segment's HEADER (empty when it has none)."""
        return self.headers[0] if self.headers else {}

    @property
    def pairs(self) -> tuple[str, ...]:
        """The pairs served: the recording's, limited to ``pairs`` when given (the given ones
        when the recording names none)."""
        if self.known_pairs:
            return tuple(p for p in self.known_pairs if self.plays(p))
        return tuple(sorted(self.served)) if self.served is not None else ()

    def plays(self, pair: str) -> bool:
        """Whether the pair's frames are applied and delivered."""
        return self.served is None or pair in self.served

    def serves(self, pair: str) -> bool:
        """Whether a join of the pair follows it (else: ``ok`` and then nothing)."""
        if not self.plays(pair):
            return False
        return not self.known_pairs or pair in self.known_pairs or pair in self.books

    # -- reading --------------------------------------------------------------------------

    def blocks(self) -> Iterator[list[Record]]:
        """The records of the recording, a block at a time, in order (damage skipped and
        counted in :attr:`stats`)."""
        for path in self.paths:
            for block in iter_blocks(path, stats=self.stats):
                self.stats.records += block.header.record_count
                yield block.records()

    def elapsed_ns(self, record: Record) -> int:
        """Where a FRAME record lies on the recorded timeline: ns since the first frame (by the
        ``mono_ns`` differences within a recorder run, by the wall-clock gap between runs;
        never backwards). Call it once per FRAME record, in order, before :meth:`feed`."""
        if self._base_mono is None or self._new_run:
            gap = 0 if self._last_wall is None else max(0, record.wall_ns - self._last_wall)
            self._base_elapsed = self._last_elapsed + gap
            self._base_mono = record.mono_ns
            self._new_run = False
        elapsed = max(self._last_elapsed, self._base_elapsed + record.mono_ns - self._base_mono)
        self._last_elapsed = elapsed
        self._last_wall = record.wall_ns
        return elapsed

    # -- playing ----------------------------------------------------------------------------

    def feed(self, record: Record) -> list[Out]:
        """Play one record: apply it to the books and return what to deliver, in order."""
        kind = record.kind
        if kind == Kind.KEYFRAME:  # held until the segment's keyframes are all known
            self._keyframes.append(record.data)
            return []
        out = self._flush_keyframes() if self._keyframes else []
        if kind == Kind.FRAME:
            self.frames += 1
            self._frame(record.data, out)
        elif kind == Kind.HEADER:
            self._header(record)
        return out  # EVENT records are the recorder's: not sent

    def finish(self) -> list[Out]:
        """The end of the recording: what is still to deliver (keyframes of a segment without
        frames)."""
        return self._flush_keyframes() if self._keyframes else []

    def _header(self, record: Record) -> None:
        try:
            doc = record.json()
        except ValueError:
            return
        run = doc.get("run") if isinstance(doc, dict) else None
        if run != self._run:
            self._new_run = self._base_mono is not None
            self._run = run

    def _frame(self, data: bytes, out: list[Out]) -> None:
        head = _book_head(data)
        if head is None:
            parsed = _parse(data)
            if parsed is not None:
                self._message(parsed[0], parsed[1], data, out)
            return
        kind, pair, cs, channel = head
        if not self.plays(pair):
            return
        try:
            self.books.apply(data)
        except FrameError as exc:  # sent as recorded: the client sees what the recorder saw
            log.debug("a recorded frame is malformed: %s", exc)
        out.append(Out(kind, channel, pair, data, cs))

    def _message(self, kind: int, payload: dict[str, Any], data: bytes, out: list[Out]) -> None:
        if kind in _NOT_SENT:
            return
        channel, event = payload.get("channel"), payload.get("event")
        if kind == 421:  # the answer to the recorder's join: the trades so far, newest first
            pair = payload.get("symbol") or event
            items = payload.get("items")
            if isinstance(pair, str) and self.plays(pair) and isinstance(items, list):
                trades: deque[dict[str, Any]] = deque(maxlen=TRADES_ON_JOIN)
                trades.extend(_trade_item(i) for i in reversed(items) if isinstance(i, dict))
                self._trades[pair] = trades
            return
        if not isinstance(channel, str) or not isinstance(event, str):
            return
        if channel in _PAIR_CHANNELS and event != "all" and not self.plays(event):
            return
        if kind == 422:
            pair = payload.get("PS") or event
            if isinstance(pair, str):
                self._trades.setdefault(pair, deque(maxlen=TRADES_ON_JOIN)).append(_trade_item(payload))
        else:
            self._last[(channel, event)] = data
        out.append(Out(kind, channel, event, data))

    def _flush_keyframes(self) -> list[Out]:
        """A segment's keyframes, grouped by pair (a 431, and the 432 that may follow it); a
        group that the book already matches (the playback came through the previous segment)
        changes nothing and is skipped; the others are applied and delivered."""
        frames, self._keyframes = self._keyframes, []
        groups: list[tuple[str, list[tuple[int, int | None, bytes]]]] = []
        for data in frames:
            head = _book_head(data)
            if head is None:
                log.warning("a keyframe that is not a book frame: %r", data[:60])
                continue
            kind, pair, cs, _ = head
            if kind == 432 and groups and groups[-1][0] == pair:
                groups[-1][1].append((kind, cs, data))
            else:
                groups.append((pair, [(kind, cs, data)]))
        out: list[Out] = []
        for pair, group in groups:
            if not self.plays(pair):
                continue
            if [data for _, _, data in group] == self.join_frames(pair):
                continue
            for kind, cs, data in group:
                try:
                    self.books.apply(data)
                except FrameError as exc:
                    log.warning("%s: a keyframe is malformed: %s", pair, exc)
                out.append(Out(kind, "obdiff", pair, data, cs))
        return out

    # -- what a join gets -------------------------------------------------------------------

    def join_frames(self, pair: str) -> list[bytes]:
        """The frames that give a fresh book the pair's book as of the playback position (a 431,
        and a 432 when needed: :func:`~obengine.record.snapshot_frames`); empty when the book is
        not synced (or unknown)."""
        book = self.books.get(pair)
        if book is None:
            return []
        try:
            return snapshot_frames(book)
        except ValueError:  # no free price for a helper level: no book the exchange makes
            return []

    def orderbook_frame(self, pair: str) -> bytes | None:
        """A 431 of the pair's book on the ``orderbook`` channel (``None``: not synced)."""
        book = self.books.get(pair)
        frame = None if book is None else snapshot_frame(book)
        return None if frame is None else _on_channel(frame, b"orderbook")

    def trades_message(self, pair: str) -> bytes:
        """The 421 a ``trade`` join gets: the last trades up to the position, newest first."""
        items = list(reversed(self._trades.get(pair, ())))
        doc = {"symbol": pair, "items": items, "channel": "trade", "event": pair, "type": 421}
        return _json.dumps([421, doc])

    def last_message(self, channel: str, event: str) -> bytes | None:
        """The last recorded message of ``channel:event`` up to the position (``None``: none)."""
        return self._last.get((channel, event))


class Playback(SimWebsocket):
    """A recording served as BtcTurk's websocket feed on loopback (see the module docstring):
    an async context manager (``async with Playback("rec/", speed=0) as pb: ... pb.url``), or
    :meth:`in_thread` for synchronous code.

    Args:
        paths: segment files, directories of segments, or glob patterns, played in time order.
        speed: ``1.0`` the recorded pace, ``k`` k times faster, ``0`` as fast as the clients
            take it.
        pairs: serve only these pairs of the recording (``None``: all).
        wait_for_join: start playing at the first join of a served pair (default), or at
            :meth:`start`.
        host, port: where to listen (``port=0``: a free port, then :attr:`port`).
        api_keys, faults, ping_interval_s, ping_timeout_s, send_timeout_s, max_queue,
            close_timeout_s: as for :class:`~obengine.sim.ws.SimWebsocket` (logins, fault knobs,
            keepalive, slow consumers). Frame faults act on the recorded 432s.

    Raises:
        RecordingError: as :class:`RecordingSource` (a path that matches nothing has ``errno``
            ENOENT).
        ValueError: a negative or non-finite ``speed``, no path.
    """

    #: At ``speed=0``: the playback waits when a connection has this many messages waiting...
    high_water = 256
    #: ... until its socket has taken them down to this many.
    low_water = 64
    #: Records played between two yields to the event loop when nothing else makes it wait.
    _BATCH = 256

    def __init__(
        self,
        paths: PathArg | Iterable[PathArg],
        *,
        speed: float = 1.0,
        pairs: Iterable[str] | None = None,
        wait_for_join: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: Mapping[str, bytes] | None = None,
        faults: WsFaults | None = None,
        ping_interval_s: float = 15.0,
        ping_timeout_s: float = 45.0,
        send_timeout_s: float = 30.0,
        max_queue: int = 100_000,
        close_timeout_s: float = 2.0,
    ) -> None:
        if isinstance(speed, bool) or not (math.isfinite(speed) and speed >= 0):
            raise ValueError(f"speed must be a finite number >= 0, not {speed!r}")
        self.source = RecordingSource(paths, pairs=pairs)
        super().__init__(
            None,
            host=host,
            port=port,
            api_keys=api_keys,
            faults=faults,
            ping_interval_s=ping_interval_s,
            ping_timeout_s=ping_timeout_s,
            join_delay_s=0.0,
            send_timeout_s=send_timeout_s,
            max_queue=max_queue,
            close_timeout_s=close_timeout_s,
        )
        self.speed = float(speed)
        self.wait_for_join = wait_for_join
        self.started_at: float | None = None  # loop time the playback started
        self.finished_at: float | None = None  # loop time it reached the end
        self._go = asyncio.Event()
        self._finished = asyncio.Event()
        self._player: asyncio.Task[None] | None = None

    # -- what is served ------------------------------------------------------------------------

    @property
    def pairs(self) -> tuple[str, ...]:
        """The pairs served (the recording's, limited to ``pairs=``)."""
        return self.source.pairs

    @property
    def scales(self) -> dict[str, tuple[int, int]]:
        """``{pair: (price_scale, amount_scale)}`` from the recording's HEADERs, for
        ``obengine.connect(..., scales=playback.scales)``."""
        return dict(self.source.scales)

    @property
    def header(self) -> dict[str, Any]:
        """The first segment's HEADER."""
        return self.source.header

    @property
    def books(self) -> BookSet:
        """The books as of the playback position (read them on the server's loop)."""
        return self.source.books

    @property
    def frames_played(self) -> int:
        """FRAME records played so far."""
        return self.source.frames

    @property
    def done(self) -> bool:
        """Whether the end of the recording has been reached."""
        return self._finished.is_set()

    async def wait_finished(self) -> None:
        """Return once the end of the recording has been reached (every record delivered to
        the send queues)."""
        await self._finished.wait()

    def wait_finished_sync(self, timeout_s: float | None = None) -> None:
        """:meth:`wait_finished` from another thread (with :meth:`in_thread`)."""
        loop = self._loop
        if loop is None:
            raise RuntimeError("the playback is not running")
        asyncio.run_coroutine_threadsafe(self.wait_finished(), loop).result(timeout_s)

    def truth(
        self, pair: str
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The pair's book as of the playback position: ``(bids, asks)``, best first, exact."""
        snap = self.source.books[pair].snapshot()
        return (
            [(Decimal(p), Decimal(a)) for p, a in snap["bids"]],
            [(Decimal(p), Decimal(a)) for p, a in snap["asks"]],
        )

    # -- life cycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen, and start playing (at once, or at the first join: ``wait_for_join``)."""
        await super().start()
        self._player = asyncio.create_task(self._play())
        if not self.wait_for_join:
            self._go.set()

    async def stop(self) -> None:
        """Stop playing, close every connection (code 1001) and stop listening."""
        player, self._player = self._player, None
        if player is not None:
            player.cancel()
            await asyncio.gather(player, return_exceptions=True)
        await super().stop()

    async def __aenter__(self) -> Playback:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, *args: Any, **kwargs: Any) -> Iterator[Playback]:
        """Run a :class:`Playback` (same arguments) on a background thread with its own event
        loop, for synchronous clients; stopped and joined on exit."""
        with _in_thread(cls(*args, **kwargs), "obengine-serve") as playback:
            yield playback

    # -- the player ----------------------------------------------------------------------------

    async def _play(self) -> None:
        loop = asyncio.get_running_loop()
        await self._go.wait()
        started = self.started_at = loop.time()
        source = self.source
        log.info(
            "playback started: %d segments, %d pairs, %s", len(source.paths), len(source.pairs),
            "as fast as the clients take it" if self.speed == 0 else
            "at the recorded pace" if self.speed == 1 else f"at {self.speed:g} times the recorded pace",
        )
        blocks = source.blocks()
        ended = "end of recording"
        try:
            since_yield = 0
            while True:
                records = await asyncio.to_thread(next, blocks, None)
                if records is None:
                    break
                for record in records:
                    if self.speed > 0 and record.kind == Kind.FRAME:
                        due = started + source.elapsed_ns(record) / 1e9 / self.speed
                        # A loop may wake a timer up to its clock resolution early: never
                        # play a frame before its time.
                        while (wait := due - loop.time()) > 0:
                            await asyncio.sleep(wait)
                            since_yield = 0
                    outs = source.feed(record)
                    if outs:
                        self._deliver(outs)
                    if self.speed == 0 and self._full():
                        await self._wait_for_room(self.high_water, self.low_water)
                        since_yield = 0
                    since_yield += 1
                    if since_yield >= self._BATCH:
                        await asyncio.sleep(0)
                        since_yield = 0
            outs = source.finish()
            if outs:
                self._deliver(outs)
        except RecordingError as exc:
            log.error("the recording cannot be read on: %s", exc)
            ended = "end of recording (stopped by a read error)"
        except Exception:  # a bug: keep serving what was played
            log.exception("the playback failed")
            ended = "end of recording (stopped by an error)"
        finally:
            with contextlib.suppress(ValueError):  # still running in its thread if cancelled
                _close(blocks)
        self.finished_at = loop.time()
        self._finished.set()
        stats = source.stats
        damage = (
            f"; {stats.corrupt_blocks} damaged stretches and {stats.truncated_tail} cut tails skipped"
            if stats.corrupt_blocks or stats.truncated_tail else ""
        )
        log.info(
            "%s: %d frames played in %.1f s%s; the connections stay open",
            ended, source.frames, self.finished_at - started, damage,
        )

    def _full(self) -> bool:
        high = self.high_water
        return any(c.queue.qsize() >= high and not c.dead for c in self._conns.values())

    def _deliver(self, outs: list[Out]) -> None:
        subs_of = self._subs
        for o in outs:
            subs = subs_of.get(o.channel, {}).get(o.event)
            if o.kind == 431 or o.kind == 432:
                if subs:
                    self._deliver_book(o, list(subs.values()))
                if o.channel == "obdiff" and "orderbook" in subs_of:
                    self._wake_orderbook(o.event)
            elif subs:
                for sub in list(subs.values()):
                    if sub.live and not sub.conn.dead:
                        self._enqueue(sub.conn, o.data)

    def _deliver_book(self, o: Out, subs: list[_Sub]) -> None:
        """A recorded book frame to the pair's subscribers, as recorded: a 431 to every one (a
        subscription waiting for its first 431 starts with it), a 432 to those that have had
        theirs, through the frame faults."""
        batch: _Batch | None = None
        for sub in subs:
            if sub.conn.dead:
                continue
            if o.kind == 431:
                sub.held = None
                if o.cs is not None:
                    sub.cs = o.cs
                sub.live = True
                self._enqueue(sub.conn, o.data)
            elif sub.live:
                if o.cs is not None:
                    sub.cs = o.cs
                if batch is None:
                    batch = _Batch(self._ask_prices, (o.data,))
                try:
                    self._send_diff(sub, o.data, batch)
                except ValueError:  # a fault that cannot be applied to this frame's layout
                    self._enqueue(sub.conn, o.data)

    def _wake_orderbook(self, pair: str) -> None:
        """``orderbook`` subscriptions of the pair still waiting for a synced book."""
        for sub in list(self._subs.get("orderbook", {}).get(pair, {}).values()):
            if not sub.live and not sub.conn.dead:
                frame = self.source.orderbook_frame(pair)
                if frame is None:
                    return
                self._enqueue(sub.conn, frame)
                sub.live = True

    # -- the hooks of SimWebsocket -------------------------------------------------------------

    def _pair_of(self, channel: str, event: str) -> str | None:
        if (channel == "ticker" and event == "all") or channel not in _PAIR_CHANNELS:
            return event  # "all" tickers; another channel's events are not pairs
        return event if self.source.serves(event) else None

    def _start(self, sub: _Sub) -> None:
        conn, channel, pair = sub.conn, sub.channel, sub.pair
        if channel in _PAIR_CHANNELS:
            self._go.set()  # the first join starts the playback (wait_for_join)
        assert pair is not None
        source = self.source
        if channel == "obdiff":
            frames = source.join_frames(pair)
            for frame in frames:
                self._enqueue(conn, frame)
            if frames:  # else: it waits for the recording's next 431 of the pair
                seq = source.books[pair].seq
                sub.cs = seq if seq is not None else sub.cs
                sub.live = True
        elif channel == "orderbook":
            orderbook = source.orderbook_frame(pair)
            if orderbook is not None:
                self._enqueue(conn, orderbook)
                sub.live = True
        elif channel == "trade":
            self._enqueue(conn, source.trades_message(pair))
            sub.live = True
        else:
            last = source.last_message(channel, sub.event)
            if last is not None:
                self._enqueue(conn, last)
            sub.live = True

    def _ask_prices(self, pair: str) -> list[Decimal]:
        book = self.source.books.get(pair)
        return [] if book is None else [Decimal(p) for p, _ in book.snapshot()["asks"]]

    def _balances_now(self) -> object:
        return None  # a recording has no account: no 201 is ever sent

    def _orderbooks(self, now: float) -> None:
        pass  # the recording's own orderbook frames, if any, are its 431s every second

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "stopped"
        where = "at the end" if self.done else f"{self.frames_played} frames played"
        return (
            f"Playback({self.url}, {len(self.source.paths)} segments, speed {self.speed:g}, "
            f"{state}, {where}, {len(self._conns)} connections)"
        )
