"""The live feed: :func:`connect` keeps exact books of many pairs over one websocket, through
gaps, bad frames and dropped connections.

::

    async with obengine.connect(pairs=["BTCTRY", "ETHTRY"]) as feed:
        async for pair, book, status in feed:          # one update per applied book frame
            bids, asks = book.top(5)                   # valid until the loop asks for the next one

This is the I/O layer: it moves bytes between a websocket connection
(:mod:`obengine._wsconn`: picows, a websocket client in Cython, on asyncio) and a
:class:`obengine.protocol.FeedProtocol`, which decides everything else (joins, resyncs,
timeouts); only these modules import asyncio and the websocket client.

**Pull, not push.** A book changes only when the loop asks for the next update. So a view read
inside the loop (``book.bids``, ``book.top(n)``) stays valid until the loop asks for the next
update, even across other ``await``\\ s in its body; copy it to keep it longer. Each read of the
socket is split into whole messages that wait, as bytes, until the loop takes them; at 4,096
waiting messages the socket is no longer read (then TCP holds the rest, then the exchange's own
buffer) until the loop has taken them down to 1,024. A slow consumer is never handed a coalesced
or missing frame, and memory stays bounded. A consumer that stops reading for longer than the
keepalive allows is dropped (by the server after about 45 s of unanswered pings, or by the
client's own ping timeout); the feed then reconnects and resyncs every pair, and the books are
exact again from their new 431s.

**Keepalive and reconnects.** The server's pings are answered as they arrive. The client pings
every ``ping_interval_s`` and drops a connection whose pong has not come within
``ping_timeout_s``. ``silence_timeout_s`` (off by default: a quiet pair may send nothing for
minutes) also drops a connection on which nothing at all arrived for that long. A dropped or
refused connection (an HTTP 503 at the handshake included) is retried after
:func:`obengine.protocol.backoff` (exponential with jitter), forever; every pair is joined again
and waits for its new 431. Deadlines (re-joins after a desync, snapshot timeouts) are checked at
least every 50 ms while messages flow.
"""
from __future__ import annotations

import asyncio
import inspect
import logging
import time
from dataclasses import dataclass
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from types import TracebackType

from obengine._core import BookSet
from obengine._wsconn import Connection, HandshakeFailed, InvalidURL, open_connection
from obengine.auth import BtcTurkSigner, check_ws_login
from obengine.errors import ObengineError
from obengine.protocol import (
    FeedProtocol,
    FeedStats,
    LoginResult,
    PairState,
    TickerEvent,
    TradeEvent,
    Update,
    UserEvent,
    backoff,
)

__all__ = ["connect", "Feed", "BTCTURK_WS", "Connected", "Disconnected", "ConnectFailed"]

BTCTURK_WS = "wss://ws-feed-pro.btcturk.com"

log = logging.getLogger("obengine.feed")

TICK_S = 0.05       # while messages flow, the protocol's deadlines are checked this often

Item = Update | TradeEvent | TickerEvent | UserEvent
OnUpdate = Callable[[Item], "Awaitable[None] | None"]
OnMessage = Callable[[bytes, int, int], None]
OnEvent = Callable[[object], None]


@dataclass(frozen=True, slots=True)
class Connected:
    """A connection opened (``connection``: 1 for the first, then counting reconnects)."""

    url: str
    connection: int


@dataclass(frozen=True, slots=True)
class Disconnected:
    """A connection was dropped or lost (``reason`` as logged); a reconnect follows."""

    reason: str


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    """A connection attempt failed (refused handshake, network error, timeout)."""

    url: str
    error: str
    status: int | None
    retry_in_s: float


def connect(
    pairs: Sequence[str],
    url: str = BTCTURK_WS,
    scales: Mapping[str, tuple[int, int]] | None = None,
    channels: Sequence[str] = ("obdiff",),
    credentials: BtcTurkSigner | None = None,
    *,
    rest_url: str | None = None,
    on_update: OnUpdate | None = None,
    on_message: OnMessage | None = None,
    on_event: OnEvent | None = None,
    ping_interval_s: float = 15.0,
    ping_timeout_s: float = 30.0,
    open_timeout_s: float = 10.0,
    silence_timeout_s: float | None = None,
    snapshot_timeout_s: float = 10.0,
    reconnect_initial_s: float = 0.5,
    reconnect_max_s: float = 30.0,
) -> Feed:
    """A live feed of the pairs' books; use it as ``async with connect(...) as feed:``.

    Args:
        pairs: pair symbols as the websocket spells them (``"BTCTRY"``).
        url: the websocket endpoint (``obengine sim`` prints its own).
        scales: ``{pair: (price_scale, amount_scale)}``; without it the scales come from the
            exchange's REST exchange info at ``rest_url`` (default: the real exchange when
            ``url`` is the real feed), else, when no REST answers (a compatible feed without
            REST), from the bundled table or each pair's first snapshot, with a warning.
        channels: per pair: ``"obdiff"`` (books), ``"trade"``, ``"ticker"``; trade and ticker
            events come through the same loop as the book updates.
        credentials: a :class:`~obengine.auth.BtcTurkSigner`: the feed logs in (type 114) first;
            a refused login raises :class:`~obengine.AuthError` from the loop. User events
            (balance, order match, insert, delete, update) then come through the loop.
        on_update: a callback (plain or async) for :meth:`Feed.run`, instead of ``async for``.
        on_message: called with every message received, ``(data, wall_ns, mono_ns)``: its
            bytes as received and the times they were read from the socket (``time.time_ns()``
            and ``time.monotonic_ns()``), in order, just before the protocol sees it. What the
            recorder writes; an exception it raises comes out of the loop.
        on_event: called with every event of the protocol (``Hello``, ``Subscribed``,
            ``Synced``, ``Desynced``, ``SnapshotTimeout``, ``Malformed``, ``LoginResult``, and
            the trade, ticker and user events) and of the connection (:class:`Connected`,
            :class:`Disconnected`, :class:`ConnectFailed`), as they happen.
        ping_interval_s, ping_timeout_s: keepalive (see the module docstring).
        open_timeout_s: the opening handshake's timeout.
        silence_timeout_s: drop a connection on which nothing arrived for that long.
        snapshot_timeout_s: how long a join may wait for its 431 (then it is reported and
            tried again).
        reconnect_initial_s, reconnect_max_s: the reconnect backoff's first and largest delay.

    No compression is negotiated: the exchange does not offer it, and each message reaches the
    books as the bytes received. An invalid ``url`` raises :class:`ValueError` from the loop.
    """
    return Feed(
        pairs, url, scales, channels, credentials, rest_url=rest_url, on_update=on_update,
        on_message=on_message, on_event=on_event,
        ping_interval_s=ping_interval_s, ping_timeout_s=ping_timeout_s, open_timeout_s=open_timeout_s,
        silence_timeout_s=silence_timeout_s, snapshot_timeout_s=snapshot_timeout_s,
        reconnect_initial_s=reconnect_initial_s, reconnect_max_s=reconnect_max_s,
    )


class Feed:
    """The live feed :func:`connect` returns: an async context manager and an async iterator of
    :class:`~obengine.protocol.Update` (``(pair, book, status)``), and of trade, ticker and user
    events when those were asked for."""

    def __init__(
        self,
        pairs: Sequence[str],
        url: str,
        scales: Mapping[str, tuple[int, int]] | None,
        channels: Sequence[str],
        credentials: BtcTurkSigner | None,
        *,
        rest_url: str | None,
        on_update: OnUpdate | None,
        on_message: OnMessage | None = None,
        on_event: OnEvent | None = None,
        ping_interval_s: float,
        ping_timeout_s: float,
        open_timeout_s: float,
        silence_timeout_s: float | None,
        snapshot_timeout_s: float,
        reconnect_initial_s: float,
        reconnect_max_s: float,
    ) -> None:
        if isinstance(pairs, str):
            raise TypeError("pairs must be a sequence of symbols, not one string")
        self.url = url
        self.pairs = tuple(pairs)
        self._scales = scales
        self._channels = tuple(channels)
        self._signer = credentials
        self._rest_url = rest_url if rest_url is not None else (
            "https://api.btcturk.com" if url.rstrip("/") == BTCTURK_WS else None
        )
        self._on_update = on_update
        self._on_message = on_message
        self._on_event = on_event
        self._ping = (ping_interval_s, ping_timeout_s)
        self._open_timeout_s = open_timeout_s
        self._silence_s = silence_timeout_s
        self._snapshot_timeout_s = snapshot_timeout_s
        self._reconnect = (reconnect_initial_s, reconnect_max_s)
        self._proto: FeedProtocol | None = None
        self._conn: Connection | None = None
        self._tick_at = 0.0
        self._delays: Iterator[float] = iter(())
        self._pending: deque[Item] = deque()
        self._items: AsyncGenerator[Item, None] | None = None
        self._lock = asyncio.Lock()
        self._closed = False
        self._last_rx = 0.0
        self._fresh = False
        self.connections = 0
        self.refused_handshakes = 0

    # -- life cycle ---------------------------------------------------------------------------

    async def __aenter__(self) -> Feed:
        scales = self._scales
        if scales is None:
            scales = await self._scales_from_rest()
        self._proto = FeedProtocol(
            self.pairs, scales=scales, channels=self._channels, signer=self._signer,
            snapshot_timeout_s=self._snapshot_timeout_s,
        )
        self._new_backoff()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection; the books stay readable."""
        self._closed = True
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await conn.close()

    async def _scales_from_rest(self) -> Mapping[str, tuple[int, int]] | None:
        if self._rest_url is None:
            log.warning(
                "no scales= and no rest_url=: scales come from the bundled table, else from each "
                "pair's first snapshot"
            )
            return None
        from obengine.rest import RestClient  # the REST client: imported only when used

        try:
            async with RestClient(self._rest_url, self._rest_url) as rest:
                return await rest.scales()
        except ObengineError as exc:
            log.warning(
                "exchange info at %s failed (%s): scales come from the bundled table, else from "
                "each pair's first snapshot", self._rest_url, exc,
            )
            return None

    def _new_backoff(self) -> None:
        initial, largest = self._reconnect
        self._delays = backoff(initial_s=initial, max_s=largest)

    # -- state --------------------------------------------------------------------------------

    @property
    def protocol(self) -> FeedProtocol:
        if self._proto is None:
            raise RuntimeError("the feed is not open: use 'async with obengine.connect(...) as feed'")
        return self._proto

    @property
    def books(self) -> BookSet:
        """Every pair's live :class:`~obengine.Book` (see the module docstring on views)."""
        return self.protocol.books

    @property
    def stats(self) -> FeedStats:
        """Frames, bytes, gaps, resyncs, malformed frames, reconnects, ... since the start."""
        return self.protocol.stats

    def synced(self, pair: str) -> bool:
        """The pair's book is exact (its 431 came, no desync since)."""
        return self.protocol.synced(pair)

    def state(self, pair: str) -> PairState:
        return self.protocol.state(pair)

    def since_last_frame(self) -> dict[str, float | None]:
        """Seconds since each pair's last book frame (``None``: none yet)."""
        return self.protocol.since_last_frame(time.monotonic())

    async def wait_synced(self, timeout: float | None = None) -> None:
        """Read the feed until every pair is synced (``TimeoutError`` after ``timeout``
        seconds). The updates read meanwhile are not given to the loop; the books are live."""
        async def until_synced() -> None:
            while not self.protocol.all_synced():
                await self.__anext__()
            self._pending.clear()

        await asyncio.wait_for(until_synced(), timeout)

    # -- the loop -----------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[Item]:
        # One async generator per feed, resumed by every loop over it (a loop left with break
        # and a new one continue where it stopped); a new one after an error ended the last.
        items = self._items
        if items is None or getattr(items, "ag_frame", None) is None:   # none yet, or finished
            items = self._items = self._loop()
        return items

    async def __anext__(self) -> Item:
        return await self.__aiter__().__anext__()

    async def _loop(self) -> AsyncGenerator[Item, None]:
        # An async generator rather than a coroutine per item: its frame stays alive between
        # items, so the hot path below costs no call set-up, and its locals stay loaded.
        pending = self._pending
        proto = self.protocol
        receive = proto.receive
        on_message = self._on_message
        monotonic = time.monotonic
        while True:
            if pending:
                yield pending.popleft()
                continue
            conn = self._conn
            if conn is None or not conn.messages:
                if self._closed:
                    return
                await self._step()                  # connect, wait for data, deadlines, silence
                continue
            # The hot path: a message already received, straight to the protocol and back as
            # its update; nothing is awaited until the received messages run out.
            if on_message is None:
                data = conn.take()
            else:
                data, wall_ns, mono_ns = conn.take_stamped()
                on_message(data, wall_ns, mono_ns)
            now = monotonic()
            update = receive(data, now)
            if now >= self._tick_at:
                self._tick(now)
            if proto._out:
                self._flush(conn)
            if proto._events:
                self._collect()
            if update is not None:
                if pending:
                    pending.append(update)
                else:
                    yield update

    async def run(self, on_update: OnUpdate | None = None) -> None:
        """Call ``on_update`` (or the one given to :func:`connect`) for every item of the loop,
        until the feed is closed. An async callback is awaited before the next frame is read."""
        callback = on_update or self._on_update
        if callback is None:
            raise ValueError("run() needs an on_update callback")
        async for item in self:
            result = callback(item)
            if inspect.isawaitable(result):
                await result

    async def _step(self) -> None:
        """Connect, or wait until a message is received, a deadline is due or the connection
        is silent for too long; act on what came. One reader at a time."""
        async with self._lock:
            proto = self.protocol
            conn = self._conn
            if conn is None:
                await self._open()
                return
            if conn.messages:
                return                               # another reader waited for them
            if conn.lost:
                log.warning("connection %s: reconnecting", conn.reason)
                await self._drop(conn)
                return
            now = time.monotonic()
            self._tick(now)
            deadline = proto.next_deadline()
            wait = None if deadline is None else max(0.0, deadline - now)
            if self._silence_s is not None:
                wait = self._silence_s if wait is None else min(wait, self._silence_s)
            if await conn.wait(wait):
                if conn.messages:
                    self._last_rx = time.monotonic()
                    if self._fresh:              # a connection that works: the backoff starts over
                        self._fresh = False
                        self._new_backoff()
                return
            now = time.monotonic()
            if self._silence_s is not None and now - self._last_rx >= self._silence_s:
                log.warning("nothing received for %.0f s: reconnecting", now - self._last_rx)
                conn.reason = f"nothing received for {now - self._last_rx:.0f} s"
                await self._drop(conn)
                return
            self._tick(now)

    def _tick(self, now: float) -> None:
        """Act on the protocol's deadlines (re-joins, snapshot timeouts). While messages flow
        this runs at most every ``TICK_S``: a deadline is late by at most that much."""
        self._tick_at = now + TICK_S
        proto = self.protocol
        if proto._due:
            proto.tick(now)
        if proto._out and self._conn is not None:
            self._flush(self._conn)
        if proto._events:
            self._collect()

    def _collect(self) -> None:
        for event in self.protocol.events_received():
            if self._on_event is not None:
                self._on_event(event)
            if isinstance(event, (Update, TradeEvent, TickerEvent, UserEvent)):
                self._pending.append(event)
            elif isinstance(event, LoginResult):
                check_ws_login({"ok": event.ok, "message": event.message})

    def _flush(self, conn: Connection) -> None:
        """Send what the protocol asks. A connection closed meanwhile is marked lost (and
        reconnected by the next step), never raised into the loop."""
        for message in self.protocol.data_to_send():
            if not conn.send_text(message):
                break

    async def _drop(self, conn: Connection) -> None:
        self._conn = None
        if self._on_event is not None:
            self._on_event(Disconnected(conn.reason or "dropped"))
        self.protocol.disconnected(time.monotonic())
        await conn.close()
        if not self._closed:
            await asyncio.sleep(next(self._delays))

    async def _open(self) -> None:
        if self._closed:
            return
        interval, timeout = self._ping
        try:
            conn = await open_connection(
                self.url, open_timeout_s=self._open_timeout_s,
                ping_interval_s=interval, ping_timeout_s=timeout, stamping=self._on_message is not None,
            )
        except InvalidURL:
            raise
        except (OSError, TimeoutError) as exc:                # HandshakeFailed is an OSError
            status = exc.status if isinstance(exc, HandshakeFailed) else None
            if status is not None:
                self.refused_handshakes += 1
            delay = next(self._delays)
            log.warning("cannot connect to %s (%s): retrying in %.1f s", self.url, exc, delay)
            if self._on_event is not None:
                self._on_event(ConnectFailed(self.url, str(exc), status, delay))
            await asyncio.sleep(delay)
            return
        self._conn = conn
        self.connections += 1
        self._last_rx = time.monotonic()
        self._fresh = True
        if self._on_event is not None:
            self._on_event(Connected(self.url, self.connections))
        self.protocol.connected(self._last_rx)
        self._flush(conn)
        log.info("connected to %s; joining %d pairs", self.url, len(self.pairs))

    def __repr__(self) -> str:
        if self._proto is None:
            return f"<Feed {self.url} not open>"
        synced = sum(self._proto.synced(p) for p in self.pairs)
        return f"<Feed {self.url} {synced}/{len(self.pairs)} synced, {self._proto.stats.frames} frames>"
