"""The BtcTurk websocket feed as a sans-I/O state machine: no sockets, no clocks, no asyncio.

The caller (``obengine.feed``, or a test with a list of frames) drives one :class:`FeedProtocol`:

1. :meth:`~FeedProtocol.connected` when a connection is open (the first and every reconnect):
   it queues the login (when credentials were given) and a join for every pair and channel, and
   marks every pair as waiting for its 431.
2. :meth:`~FeedProtocol.receive` for every text frame received, as raw bytes, with the time.
   Book frames (431, 432) go straight to the :class:`obengine.BookSet` as bytes (no Python JSON
   decoding); other messages are decoded (exact ``Decimal`` numbers) into events.
3. :meth:`~FeedProtocol.tick` whenever :meth:`~FeedProtocol.next_deadline` has passed (snapshot
   timeouts, delayed re-joins).
4. After each of those, send what :meth:`~FeedProtocol.data_to_send` returns, in order, and take
   :meth:`~FeedProtocol.events_received`. The one event not queued there is the
   :class:`Update` of a book frame: :meth:`~FeedProtocol.receive` returns it (the hot path: one
   per frame, handed over without a list).
5. :meth:`~FeedProtocol.disconnected` when the connection is lost; then wait a delay of
   :func:`backoff` and start again at 1.

What it decides: a ``GAP`` or ``CROSSED`` status, or a :class:`~obengine.FrameError` in a book
frame of a synced pair (the bad frame may have taken the place of a real one) *desyncs* the pair:
it asks, once, to leave and re-join the pair's ``obdiff`` for a fresh 431; frames that arrive while
that is pending do not ask again. A pair that desyncs again soon waits longer before its re-join
(per-pair exponential backoff), so a flapping pair cannot flood the server; other pairs are not
touched. A join whose 431 does not come within ``snapshot_timeout_s`` (an unknown or lower-case
pair gets ``ok: true`` and then nothing) is reported (:class:`SnapshotTimeout`) and tried again
with the same backoff. A malformed frame is counted and logged (pair, CS, reason), never raised.

A pair is *synced* from its 431 until its next desync; :class:`Update` events, one per applied
book frame, are only given for synced pairs, so a book seen through them always matches the
exchange at its CS.
"""
from __future__ import annotations

import enum
import json
import logging
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NamedTuple

from obengine._core import Book, BookSet, Status
from obengine.auth import BtcTurkSigner
from obengine.errors import FrameError

__all__ = [
    "FeedProtocol",
    "PairState",
    "Update",
    "Hello",
    "Subscribed",
    "LoginResult",
    "Synced",
    "Desynced",
    "SnapshotTimeout",
    "Malformed",
    "TradeEvent",
    "TickerEvent",
    "UserEvent",
    "FeedStats",
    "backoff",
    "subscribe_message",
]

log = logging.getLogger("obengine.protocol")

BOOK_CHANNELS = ("obdiff", "orderbook")
PUBLIC_CHANNELS = ("obdiff", "orderbook", "trade", "ticker")
USER_TYPES = {201: "balance", 441: "match", 451: "order_insert", 452: "order_delete", 453: "order_update"}


def subscribe_message(channel: str, event: str, join: bool = True) -> bytes:
    """The subscription message (type 151) for a channel and event, as bytes to send."""
    return json.dumps(
        [151, {"type": 151, "channel": channel, "event": event, "join": join}], separators=(",", ":")
    ).encode()


def backoff(
    initial_s: float = 0.5, factor: float = 2.0, max_s: float = 30.0, jitter: float = 0.5,
    rng: random.Random | None = None,
) -> Iterator[float]:
    """Delays before each reconnect, seconds: exponential from ``initial_s`` up to ``max_s``, each
    shortened by a random share up to ``jitter`` so that many clients do not come back at once.
    The caller sleeps; this only counts."""
    draw = (rng or random.Random()).random
    delay = initial_s
    while True:
        yield delay * (1.0 - jitter * draw())
        delay = min(delay * factor, max_s)


# -- events ------------------------------------------------------------------------------------


class Update(NamedTuple):
    """A book frame was applied to a synced pair: ``(pair, book, status)``. ``book`` is the live
    :class:`obengine.Book`; views read from it stay valid until the next frame is applied to it
    (copy them to keep them). It holds no state of its own, so one object per pair is made once
    and handed out for each of its frames."""

    pair: str
    book: Book
    status: Status


@dataclass(frozen=True, slots=True)
class Hello:
    """The server's hello (type 991): its protocol version and the oldest it accepts."""

    current: str
    min: str


@dataclass(frozen=True, slots=True)
class Subscribed:
    """A subscription result (type 100): ``ok``, the channel and event, ``join`` (False for a
    leave) and the server's message."""

    ok: bool
    channel: str
    event: str
    join: bool
    message: str


@dataclass(frozen=True, slots=True)
class LoginResult:
    """The answer to the login (type 114)."""

    ok: bool
    message: str


@dataclass(frozen=True, slots=True)
class Synced:
    """A pair's 431 arrived: its book is exact from ``cs`` on."""

    pair: str
    cs: int | None


@dataclass(frozen=True, slots=True)
class Desynced:
    """A pair lost sync (``reason``: ``"gap"``, ``"crossed"`` or ``"malformed"``); a re-join is
    sent at once or, for a pair that desyncs often, after ``rejoin_in_s``."""

    pair: str
    reason: str
    cs: int | None
    rejoin_in_s: float


@dataclass(frozen=True, slots=True)
class SnapshotTimeout:
    """A pair's 431 did not come within ``waited_s`` of its join (an unknown or lower-case pair
    gets ``ok: true`` and then nothing); it is joined again after ``rejoin_in_s``."""

    pair: str
    waited_s: float
    rejoin_in_s: float


@dataclass(frozen=True, slots=True)
class Malformed:
    """A frame that could not be read (counted, logged, never raised): the pair and CS when they
    could be read, and what was wrong."""

    pair: str | None
    cs: int | None
    reason: str


@dataclass(frozen=True, slots=True)
class TradeEvent:
    """A trade (421 items, 422): price and amount exact, ``side`` ``"buy"``/``"sell"`` from
    ``S`` (1 buy, 0 sell, from one check against REST), ``time_ms`` UTC ms."""

    pair: str
    trade_id: str
    price: Decimal
    amount: Decimal
    side: str | None
    time_ms: int


@dataclass(frozen=True, slots=True)
class TickerEvent:
    """A pair's ticker (401 items, 402): exact values (``None`` where the message has none)."""

    pair: str
    last: Decimal | None
    bid: Decimal | None
    ask: Decimal | None
    high: Decimal | None
    low: Decimal | None
    open: Decimal | None
    volume: Decimal | None
    average: Decimal | None
    daily: Decimal | None
    daily_percent: Decimal | None


@dataclass(frozen=True, slots=True)
class UserEvent:
    """A user message after login: ``kind`` is ``"balance"`` (201), ``"match"`` (441),
    ``"order_insert"``, ``"order_delete"`` or ``"order_update"`` (451-453); ``payload`` as sent,
    numbers as exact ``Decimal``s."""

    kind: str
    type: int
    payload: Mapping[str, Any]


# -- state ------------------------------------------------------------------------------------


class PairState(enum.Enum):
    JOINING = "joining"      # join sent, waiting for the 431
    SYNCED = "synced"        # the book is exact
    WAITING = "waiting"      # desynced or timed out; a re-join is scheduled


@dataclass(slots=True)
class _Pair:
    name: str
    state: PairState = PairState.JOINING
    joined_at: float = 0.0
    rejoin_at: float = 0.0
    backoff_s: float = 0.0
    synced_at: float | None = None
    last_frame_at: float | None = None
    update: Update | None = None     # (name, book, APPLIED): the same for every frame, made once


@dataclass(slots=True)
class FeedStats:
    """Counters since the protocol was made."""

    frames: int = 0            # text frames received
    bytes: int = 0
    book_frames: int = 0
    updates: int = 0           # Update events given
    gaps: int = 0              # desyncs by a CS gap
    crossed: int = 0           # desyncs by a crossed book
    stale: int = 0
    malformed: int = 0
    resyncs: int = 0           # re-joins sent after a desync or a timeout
    timeouts: int = 0
    reconnects: int = 0
    ignored: int = 0           # messages of a type the protocol does not use


_BOOK_HEADS = (b"[432,", b"[431,")
_APPLIED = Status.APPLIED
_SYNCED = PairState.SYNCED


def _is_snapshot(data: bytes) -> bool:
    """The frame's type is 431 (whitespace allowed before it)."""
    return data[1:4] == b"431" if data[:1] == b"[" and data[1:2] != b" " else data.lstrip(b" \t\r\n[")[:3] == b"431"


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        return Decimal(value)
    raise ValueError(f"not a decimal: {value!r}")


class FeedProtocol:
    """The feed's state machine (see the module docstring for the call order).

    Args:
        pairs: the pairs to keep books of, as the websocket spells them (``"BTCTRY"``).
        scales: ``{pair: (price_scale, amount_scale)}`` for the :class:`~obengine.BookSet`.
        channels: the channels to join per pair: ``"obdiff"`` (books), ``"trade"``,
            ``"ticker"``; ``"orderbook"`` (a 431 about every second) is accepted too.
        user_channels: channels to join after a successful login (user events come without a
            join on the real exchange; kept for feeds that need one).
        signer: credentials: a login (114) is sent first on every connection.
        snapshot_timeout_s: how long a join may wait for its 431.
        rejoin_backoff_s: the first delay before a pair that desynced again soon is re-joined;
            doubled at each further desync up to ``max_rejoin_backoff_s``, forgotten once the
            pair has stayed synced for ``stable_s``.
    """

    def __init__(
        self,
        pairs: Sequence[str],
        *,
        scales: Mapping[str, tuple[int, int]] | None = None,
        channels: Sequence[str] = ("obdiff",),
        user_channels: Sequence[str] = (),
        signer: BtcTurkSigner | None = None,
        snapshot_timeout_s: float = 10.0,
        rejoin_backoff_s: float = 1.0,
        max_rejoin_backoff_s: float = 60.0,
        stable_s: float = 60.0,
    ) -> None:
        if isinstance(pairs, str):
            raise TypeError("pairs must be a sequence of symbols, not one string")
        names = list(dict.fromkeys(pairs))
        for name in names:
            if not isinstance(name, str) or not name:
                raise ValueError(f"invalid pair {name!r}")
        for channel in channels:
            if channel not in PUBLIC_CHANNELS:
                raise ValueError(f"unknown channel {channel!r} (known: {', '.join(PUBLIC_CHANNELS)})")
        self.books = BookSet(scales=scales)
        self.channels = tuple(channels)
        self.user_channels = tuple(user_channels)
        self.signer = signer
        self.stats = FeedStats()
        self.snapshot_timeout_s = snapshot_timeout_s
        self.rejoin_backoff_s = rejoin_backoff_s
        self.max_rejoin_backoff_s = max_rejoin_backoff_s
        self.stable_s = stable_s
        self._pairs = {name: _Pair(name) for name in names}
        self._due: dict[str, float] = {}    # pair -> its deadline (joining or waiting pairs only)
        self._book_channel = next((c for c in self.channels if c in BOOK_CHANNELS), None)
        self._out: list[bytes] = []
        self._events: list[Any] = []
        self._connections = 0
        self.logged_in: bool | None = None

    # -- inputs ---------------------------------------------------------------------------

    def connected(self, now: float) -> None:
        """A connection is open: queue the login and every join; every pair waits for its
        431."""
        if self._connections:
            self.stats.reconnects += 1
        self._connections += 1
        self._out.clear()
        self.logged_in = None
        if self.signer is not None:
            self._out.append(json.dumps(self.signer.ws_login(), separators=(",", ":")).encode())
        for p in self._pairs.values():
            self._joining(p, now)
            for channel in self.channels:
                self._out.append(subscribe_message(channel, p.name))

    def disconnected(self, now: float) -> None:
        """The connection is lost: every pair waits for its 431 on the next connection."""
        for p in self._pairs.values():
            p.state = PairState.JOINING
        self._due.clear()                   # no deadline runs while there is no connection

    def receive(self, data: bytes, now: float) -> Update | None:
        """One text frame, as the raw bytes received. Returns the :class:`Update` when it was a
        book frame applied to a synced pair (the one event not queued for
        :meth:`events_received`: the hot path hands it over directly), else ``None``."""
        stats = self.stats
        stats.frames += 1
        stats.bytes += len(data)
        if data.startswith(_BOOK_HEADS):
            # The hot path, inlined: a change set applied to a synced pair's book.
            stats.book_frames += 1
            try:
                name, status = self.books.apply(data)
            except FrameError as exc:
                self._bad_book_frame(exc, now)
                return None
            p = self._pairs.get(name)  # type: ignore[arg-type]
            if p is not None and status is _APPLIED and p.state is _SYNCED:
                p.last_frame_at = now
                stats.updates += 1
                return p.update
            return self._book_status(p, status, data, now)
        try:
            message = json.loads(data, parse_float=Decimal)
            kind = message[0] if isinstance(message, list) and message else None
            payload = message[1] if isinstance(message, list) and len(message) > 1 else {}
            if not isinstance(payload, dict):
                payload = {}
        except (ValueError, UnicodeDecodeError) as exc:
            if _is_snapshot(data) or data.lstrip(b" \t\r\n[")[:3] == b"432":
                return self._book_frame(data, now)   # the core says what is wrong, names the pair
            self._malformed(None, None, f"not JSON: {exc}")
            return None
        if kind in (431, 432):
            return self._book_frame(data, now)
        if kind == 991:
            self._events.append(Hello(str(payload.get("current", "")), str(payload.get("min", ""))))
        elif kind == 100:
            self._subscription_result(payload)
        elif kind == 114:
            ok = payload.get("ok") is True
            self.logged_in = ok
            self._events.append(LoginResult(ok, str(payload.get("message") or "")))
            if ok:
                for channel in self.user_channels:
                    self._out.append(subscribe_message(channel, "user"))
        elif kind in (421, 422, 401, 402) or kind in USER_TYPES:
            try:
                self._market_message(kind, payload)
            except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
                self._malformed(payload.get("PS") or payload.get("event"), None, f"type {kind}: {exc}")
        else:
            stats.ignored += 1
        return None

    def tick(self, now: float) -> None:
        """Act on the deadlines that have passed: send the scheduled re-joins, time out joins
        whose 431 did not come."""
        for name, due in list(self._due.items()):
            if due > now:
                continue
            p = self._pairs[name]
            if p.state is PairState.WAITING:
                self._rejoin(p, now)
            elif p.state is PairState.JOINING:
                self.stats.timeouts += 1
                delay = self._next_backoff(p, now)
                log.warning(
                    "%s: no snapshot (431) %.1f s after the join; an unknown or lower-case pair "
                    "is accepted and then sent nothing; joining again in %.1f s",
                    p.name, now - p.joined_at, delay,
                )
                self._events.append(SnapshotTimeout(p.name, now - p.joined_at, delay))
                self._schedule_rejoin(p, now, delay)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` must be called next (``None``: nothing scheduled)."""
        return min(self._due.values()) if self._due else None

    # -- outputs --------------------------------------------------------------------------

    def data_to_send(self) -> list[bytes]:
        """The messages to send now, in order (each a text frame's bytes); clears them."""
        out, self._out = self._out, []
        return out

    def events_received(self) -> list[Any]:
        """The events since the last call, in order; clears them."""
        events, self._events = self._events, []
        return events

    # -- queries --------------------------------------------------------------------------

    @property
    def pairs(self) -> tuple[str, ...]:
        return tuple(self._pairs)

    def state(self, pair: str) -> PairState:
        return self._pairs[pair].state

    def synced(self, pair: str) -> bool:
        """The pair's book is exact (its 431 came and no desync since)."""
        return self._pairs[pair].state is PairState.SYNCED

    def all_synced(self) -> bool:
        return all(p.state is PairState.SYNCED for p in self._pairs.values())

    def since_last_frame(self, now: float) -> dict[str, float | None]:
        """Seconds since each pair's last book frame (``None``: none yet)."""
        return {n: None if p.last_frame_at is None else now - p.last_frame_at for n, p in self._pairs.items()}

    # -- book frames ----------------------------------------------------------------------

    def _book_frame(self, data: bytes, now: float) -> Update | None:
        """A book frame that did not look like one at a glance (whitespace, odd spelling)."""
        self.stats.book_frames += 1
        try:
            name, status = self.books.apply(data)
        except FrameError as exc:
            self._bad_book_frame(exc, now)
            return None
        return self._book_status(self._pairs.get(name), status, data, now)  # type: ignore[arg-type]

    def _bad_book_frame(self, exc: FrameError, now: float) -> None:
        self._malformed(exc.pair, exc.cs, exc.reason)
        p = self._pairs.get(exc.pair or "")
        if p is not None and p.state is PairState.SYNCED:
            self._desync(p, "malformed", exc.cs, now)

    def _book_status(self, p: _Pair | None, status: Status, data: bytes, now: float) -> Update | None:
        """What an applied book frame means for its pair, beyond the hot path's case."""
        if p is None:
            return None                              # a pair not asked for: kept, not reported
        p.last_frame_at = now
        if status is _APPLIED:
            state = p.state
            if state is not _SYNCED and _is_snapshot(data):
                p.state = state = _SYNCED
                p.synced_at = now
                self._due.pop(p.name, None)
                if p.update is None:
                    p.update = Update(p.name, self.books[p.name], status)
                self._events.append(Synced(p.name, self.books[p.name].seq))
            if state is _SYNCED:
                self.stats.updates += 1
                return p.update
        elif status is Status.STALE:
            self.stats.stale += 1
        elif status is Status.GAP or status is Status.CROSSED:
            if p.state is PairState.SYNCED:
                if status is Status.GAP:
                    self.stats.gaps += 1
                else:
                    self.stats.crossed += 1
                self._desync(p, "gap" if status is Status.GAP else "crossed", self.books[p.name].seq, now)
        return None

    def _malformed(self, pair: str | None, cs: int | None, reason: str) -> None:
        self.stats.malformed += 1
        log.warning("malformed frame: pair %s, CS %s: %s", pair or "?", cs if cs is not None else "?", reason)
        self._events.append(Malformed(pair, cs, reason))

    def _next_backoff(self, p: _Pair, now: float) -> float:
        """The delay before this pair's next re-join: none for a pair that was stable, then
        doubling for a pair that keeps failing."""
        if p.backoff_s == 0.0 or (p.synced_at is not None and now - p.synced_at >= self.stable_s):
            p.backoff_s = self.rejoin_backoff_s
            return 0.0
        delay = p.backoff_s
        p.backoff_s = min(p.backoff_s * 2, self.max_rejoin_backoff_s)
        return delay

    def _desync(self, p: _Pair, reason: str, cs: int | None, now: float) -> None:
        delay = self._next_backoff(p, now)
        log.info("%s: desynced (%s at CS %s); re-joining in %.1f s", p.name, reason, cs, delay)
        self._events.append(Desynced(p.name, reason, cs, delay))
        self._schedule_rejoin(p, now, delay)

    def _schedule_rejoin(self, p: _Pair, now: float, delay: float) -> None:
        p.state = PairState.WAITING
        p.rejoin_at = now + delay
        self._due[p.name] = p.rejoin_at
        if delay <= 0:
            self._rejoin(p, now)

    def _joining(self, p: _Pair, now: float) -> None:
        p.state = PairState.JOINING
        p.joined_at = now
        if self._book_channel is not None:
            self._due[p.name] = now + self.snapshot_timeout_s
        else:
            self._due.pop(p.name, None)

    def _rejoin(self, p: _Pair, now: float) -> None:
        channel = self._book_channel
        if channel is None:
            return
        self.stats.resyncs += 1
        self._out.append(subscribe_message(channel, p.name, join=False))
        self._out.append(subscribe_message(channel, p.name, join=True))
        self._joining(p, now)

    # -- other messages -------------------------------------------------------------------

    def _subscription_result(self, payload: Mapping[str, Any]) -> None:
        message = str(payload.get("message") or "")
        action, _, rest = message.partition("|")
        channel, _, event = rest.partition(":")
        ok = payload.get("ok") is True
        self._events.append(Subscribed(ok, channel, event, action != "leave", message))
        if not ok:
            log.warning("subscription refused: %s", message or payload)

    def _market_message(self, kind: int, payload: Mapping[str, Any]) -> None:
        if kind == 421:
            pair = str(payload.get("symbol") or payload.get("event") or "")
            for item in payload.get("items") or ():
                self._events.append(self._trade(pair, item))
        elif kind == 422:
            self._events.append(self._trade(str(payload.get("PS") or payload.get("event") or ""), payload))
        elif kind == 401:
            for item in payload.get("items") or ():
                self._events.append(self._ticker(item))
        elif kind == 402:
            self._events.append(self._ticker(payload))
        else:
            self._events.append(UserEvent(USER_TYPES[kind], kind, dict(payload)))

    @staticmethod
    def _trade(pair: str, item: Mapping[str, Any]) -> TradeEvent:
        price, amount = _decimal(item["P"]), _decimal(item["A"])
        if price is None or amount is None:
            raise ValueError("a trade without price or amount")
        side = item.get("S")
        return TradeEvent(
            pair=pair,
            trade_id=str(item.get("I", "")),
            price=price,
            amount=amount,
            side=None if side is None else ("buy" if int(side) == 1 else "sell"),
            time_ms=int(item.get("D", 0)),
        )

    @staticmethod
    def _ticker(item: Mapping[str, Any]) -> TickerEvent:
        def d(key: str) -> Decimal | None:
            return _decimal(item.get(key))

        return TickerEvent(
            pair=str(item.get("PS", "")),
            last=d("La") if "La" in item else d("LA"),    # "La" in the reference, "LA" on the wire
            bid=d("B"), ask=d("A"), high=d("H"), low=d("L"), open=d("O"),
            volume=d("V"), average=d("AV"), daily=d("D"), daily_percent=d("DP"),
        )


def frames_of(events: Iterable[Any]) -> list[Update]:
    """The :class:`Update` events among ``events`` (a helper for tests and scripts)."""
    return [e for e in events if isinstance(e, Update)]
