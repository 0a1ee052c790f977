"""The simulated exchange's websocket side: a real websocket server on loopback (the
``websockets`` library's asyncio server) that speaks as BtcTurk's feed (``wss://ws-feed-pro.
btcturk.com``) does, over the same :class:`~obengine.sim.market.SimMarket` as the REST side.
Nothing here touches the internet.

What it sends (text frames only, compact JSON, no permessage-deflate):

- On connect, the hello ``[991,{"type":991,"current":"6.0.0","min":"2.3.0"}]``.
- To ``[151,{"type":151,"channel":C,"event":E,"join":true|false}]``, the answer
  ``[100,{"type":100,"ok":true,"message":"join|C:E"}]`` (``leave|C:E`` for a leave). A duplicate
  join, or a leave of what is not joined, answers ``ok:false`` with the same message. An event
  that is no pair of the market (an unknown or lower-case one), or an unknown channel, answers
  ``ok:true`` and then nothing, as the exchange does.
- ``obdiff``, a pair: ``join_delay_s`` (0.02 s) after the join, a 431 of the pair's current book,
  then every 432 of the pair as the market moves. ``orderbook``, a pair: a 431 after the join
  delay, then one every ``orderbook_interval_s`` (1 s). Book frames are the market's own bytes
  (``CS, PS, AO, BO, channel, event, type``; canonical decimal strings), only their CS respelled,
  and ``"channel":"orderbook"`` on that channel.
- ``trade``, a pair: at once a 421 ``{"symbol":P,"items":[{"D":"<ms>","I":"<id>",
  "A":"76.5900000000","P":"...","S":0|1}],"channel":"trade","event":P,"type":421}`` (the last
  50 trades, newest first; ``A`` and ``P`` with 10 decimals, ``S`` 1 for a buy, 0 for a sell,
  the taker's side), then a 422 ``{"D","I","A","P","PS","S","channel","event","type"}`` for
  every new trade, oldest first, after each market move.
- ``ticker``: event ``all`` gets a 401 ``{"items":[...],"channel":"ticker","event":"all",
  "type":401}`` at once and after every move; a pair a 402 (its item plus ``channel, event,
  type``) at once and after every move that touched it. Items: ``PS, H, L, LA, O, V, AV, D, DP``
  (decimal strings), ``DS, NS`` (currencies), ``PID, NPr, DPr, Ord`` (numbers), ``B, A`` (best
  bid and ask).
- Login ``[114,{"type":114,"publicKey":K,"timestamp":ms,"nonce":n,"signature":S}]``: checked
  against the configured keys, ``S = base64(HMAC-SHA256(b64decode(private), K + str(n)))``
  (:func:`obengine.auth.btcturk_signature`). Answers ``[114,{"type":114,"id":0,"ok":true,
  "message":"Authentication successful"}]``, or ``ok:false`` with ``"Unauthorized - Invalid
  Request"`` (a field missing or of the wrong type, a nonce outside 1..2**31-1, as a millisecond
  timestamp is, or one the key has used before), ``"Unauthorized - Invalid Public key"``,
  ``"Unauthorized - Invalid Signature"``. A logged-in connection gets
  ``[201,{"type":201,"userId":0,"payload":"BalanceUpdated"}]`` when the account's balances change.
- Anything else from the client (unknown types, bad JSON, binary frames) is ignored.

CS. Every ``obdiff`` (and ``orderbook``) subscription draws a fresh CS base (see
:meth:`SimWebsocket.force_cs_base`): 20% within 100 of the signed 32-bit top ``2**31 - 1`` (the
stream wraps to ``-2**31`` soon, as users saw), 20% negative, the rest positive. Its first 431
carries the base, each following frame base+1, base+2, ... (signed 32-bit). The server follows
the market's own CS of each pair: a 432 goes to a subscription only after its 431, and only when
it is the market's next frame after the book that subscription's client holds. When the market
has moved without this server seeing the frames (``sim.market.advance()`` called directly), the
subscription gets a fresh 431 of the current book instead (with its next CS: a 431 inside the
stream is the new base, as the exchange may send).

Moving the market: :meth:`SimWebsocket.push` (``await sim.push(frames=n)``) advances it by ``n``
frames and delivers every 432 to the subscribers of its pair, in order; ``SimExchange(tick_s=..)``
does the same on a timer.

Sources: the market is one source of frames; :class:`obengine.sim.playback.Playback` (``obengine
serve``) is this same server with a recording as its source. It overrides the two join hooks
(:meth:`SimWebsocket._pair_of`: what a join follows; :meth:`SimWebsocket._start`: its first
messages) and delivers the recorded frames itself, through the same subscriptions, queues,
faults and keepalive; :meth:`SimWebsocket._wait_for_room` is its backpressure.

Delivery and slow clients: each connection has one FIFO send queue and one task writing it, so
what a connection receives is in order, and delivering never waits on a socket: one slow client
never holds up the others. A client that does not read is *dropped* (its TCP connection aborted,
no close frame: a client that does not read would not read one) when its socket has accepted
nothing for ``send_timeout_s`` (30 s) while a message waits, or at once when its queue holds
``max_queue`` (100,000) messages.

Keepalive: the server pings each connection every ``ping_interval_s`` (15 s) and closes (code
1000, ``"ping timeout"``) one whose pong has not come ``ping_timeout_s`` (45 s) after a ping. The
library's own keepalive is off: these pings stop during a ``stall`` fault.

Fault knobs: ``sim.ws_faults`` (:class:`~obengine.sim.wsfaults.WsFaults`: drop, duplicate,
reorder, truncate, bad_value, crossed, stall, abort, refuse_handshake, refuse_login), plus
:meth:`SimWebsocket.stall`, :meth:`SimWebsocket.resume` and :meth:`SimWebsocket.abort` to act
on a connection at once.

Threads: the server runs on one event loop; call its methods there (``push_sync`` is the one to
call from another thread, e.g. with ``SimExchange.in_thread``). Logs on ``obengine.sim.ws``:
connections, logins (never a key or signature), drops.
"""
from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import random
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from http import HTTPStatus
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from obengine.auth import btcturk_signature
from obengine.sim import _json
from obengine.sim.market import SimMarket, Ticker, Trade, canonical, fixed
from obengine.sim.wsfaults import WsFaultRule, WsFaults

__all__ = [
    "HELLO",
    "SimWebsocket",
    "WsConnectionInfo",
    "WsSubscriptionInfo",
]

log = logging.getLogger("obengine.sim.ws")

#: The hello the server sends first on every connection.
HELLO = b'[991,{"type":991,"current":"6.0.0","min":"2.3.0"}]'
MAX_NONCE = 2**31 - 1  # a login nonce above this (a ms timestamp) is refused
TRADES_ON_JOIN = 50
_TRADE_DECIMALS = 10
_TRADES_SCANNED = 200  # trades looked at for new ones after a move (the market keeps 200)

# `[431,{"CS":-5,"PS":"BTCTRY"` : type, CS, pair
_HEAD = re.compile(rb'\[(43[12]),\{"CS":(-?\d+),"PS":"([^"]*)"')
_PRICE = re.compile(rb'"P":"([^"]*)"')


def _wrap(value: int) -> int:
    """``value`` as a signed 32-bit integer (2147483647 + 1 is -2147483648)."""
    return ((value + 0x8000_0000) & 0xFFFF_FFFF) - 0x8000_0000


def _with_cs(frame: bytes, cs: int) -> bytes:
    """The book frame with its CS replaced by ``cs``."""
    m = _HEAD.match(frame)
    if m is None:
        raise ValueError(f"not a book frame: {frame[:40]!r}")
    return frame[: m.start(2)] + str(cs).encode() + frame[m.end(2) :]


def _on_channel(frame: bytes, channel: bytes) -> bytes:
    """The frame with its ``"channel":"obdiff"`` respelled."""
    at = frame.rfind(b'"channel":"obdiff"')
    if at < 0:
        return frame
    return frame[:at] + b'"channel":"' + channel + b'"' + frame[at + 18 :]


def _with_bad_entry(frame: bytes, entry: bytes) -> bytes:
    """The 432 with ``entry`` appended at the end of its ``BO`` list (after every good level)."""
    end = frame.rfind(b'],"channel":')
    if end < 0:
        raise ValueError("not a book frame")
    comma = b"" if frame[end - 1 : end] == b"[" else b","
    return frame[:end] + comma + entry + frame[end:]


def _ask_prices(frame: bytes) -> list[bytes]:
    """The ``P`` texts of a book frame's ``AO`` list."""
    start = frame.find(b'"AO":[')
    end = frame.find(b'],"BO":[', start)
    if start < 0 or end < 0:
        return []
    return _PRICE.findall(frame, start, end)


def _message(kind: int, payload: dict[str, object]) -> bytes:
    return _json.dumps([kind, payload])


def _trade_item(t: Trade) -> dict[str, object]:
    return {
        "D": str(t.time_ms),
        "I": t.tid,
        "A": fixed(t.amount, _TRADE_DECIMALS),
        "P": fixed(t.price, _TRADE_DECIMALS),
        "S": 1 if t.side == "buy" else 0,
    }


def _ticker_item(t: Ticker) -> dict[str, object]:
    info = t.pair
    return {
        "PS": info.name,
        "H": canonical(t.high),
        "L": canonical(t.low),
        "LA": canonical(t.last),
        "O": canonical(t.open),
        "V": canonical(t.volume),
        "AV": canonical(t.average),
        "D": canonical(t.daily),
        "DP": canonical(t.daily_percent),
        "DS": info.denominator,
        "NS": info.numerator,
        "PID": info.id,
        "NPr": info.amount_scale,
        "DPr": info.denominator_scale,
        "Ord": info.id,
        "B": canonical(t.bid),
        "A": canonical(t.ask),
    }


@dataclass(frozen=True)
class _Stall:
    seconds: float


class _Abort:
    pass


_ABORT = _Abort()
_Item = bytes | _Stall | _Abort


@dataclass(frozen=True)
class WsSubscriptionInfo:
    """A subscription as :meth:`SimWebsocket.subscriptions` reports it.

    Attributes:
        connection: the connection's id.
        channel, event: as joined.
        pair: the market's pair it follows (``None``: it gets nothing, or ``"all"`` tickers).
        live: whether its first message (the 431 of a book channel) has been queued.
        cs: the CS of the last book frame queued to it (the base before the first); ``None``
            for non-book channels.
        market_cs: the market's CS of the book its client should hold (book channels).
    """

    connection: int
    channel: str
    event: str
    pair: str | None
    live: bool
    cs: int | None
    market_cs: int | None


@dataclass(frozen=True)
class WsConnectionInfo:
    """A connection as :attr:`SimWebsocket.connections` reports it.

    Attributes:
        id: 1, 2, ... in accept order (what fault rules' ``connection`` names).
        peer: the client's ``host:port``.
        user: the public key it logged in with, or ``None``.
        subscriptions: its ``(channel, event)`` pairs, in join order.
        sent: messages written to its socket so far (pings not counted).
        pings: pings sent to it so far.
        queued: messages waiting in its send queue.
        stalled: whether a stall holds it now.
    """

    id: int
    peer: str
    user: str | None
    subscriptions: tuple[tuple[str, str], ...]
    sent: int
    pings: int
    queued: int
    stalled: bool


class _Conn:
    """One client connection: its send queue, subscriptions, login and keepalive state."""

    def __init__(self, conn_id: int, ws: ServerConnection, next_ping: float) -> None:
        self.id = conn_id
        self.ws = ws
        peer = ws.remote_address
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) and len(peer) >= 2 else "?"
        self.queue: asyncio.Queue[_Item] = asyncio.Queue()
        self.subs: dict[tuple[str, str], _Sub] = {}
        self.user: str | None = None
        self.gate = asyncio.Event()  # set unless stalled
        self.gate.set()
        self.stall_timer: asyncio.TimerHandle | None = None
        self.stall_end = 0.0  # loop time the last stall ended
        self.sending_since: float | None = None  # loop time the message being written started
        self.pings: deque[tuple[float, asyncio.Future[Any]]] = deque()  # (sent, pong waiter)
        self.ping_task: asyncio.Task[None] | None = None
        self.next_ping = next_ping
        self.sender: asyncio.Task[None] | None = None
        self.sent = 0
        self.pings_sent = 0
        self.dead = False  # aborted, closing or gone: nothing more is queued
        self.balances: object = None  # the account's balances last reported (201)
        self.drained: asyncio.Event | None = None  # set when the queue is down to drain_to
        self.drain_to = 0


class _Sub:
    """One subscription: a channel and event on a connection."""

    __slots__ = (
        "conn", "channel", "event", "pair", "live", "cs", "market_cs", "timer", "held", "last",
        "last_tid", "next_book",
    )

    def __init__(self, conn: _Conn, channel: str, event: str, pair: str | None) -> None:
        self.conn = conn
        self.channel = channel
        self.event = event
        self.pair = pair
        self.live = False
        self.cs = 0  # CS of the last book frame queued (the base before the first)
        self.market_cs: int | None = None  # the market's CS of the book the client holds
        self.timer: asyncio.TimerHandle | None = None
        self.held: bytes | None = None  # a 432 held back by a "reorder" fault
        self.last: bytes | None = None  # the last 432 sent whole
        self.last_tid = 0  # trade channel: the newest trade id sent
        self.next_book = 0.0  # orderbook channel: loop time of the next 431


class _Batch:
    """The frames of one delivery, with what a ``crossed`` fault needs, computed once a pair.
    ``ask_prices(pair)``: the ask prices of the source's book of the pair now (after these
    frames)."""

    def __init__(
        self, ask_prices: Callable[[str], Iterable[Decimal]], frames: Sequence[bytes]
    ) -> None:
        self.ask_prices = ask_prices
        self.frames = frames
        self._top_ask: dict[str, str | None] = {}

    def crossing_price(self, pair: str) -> str | None:
        """A price at or above every ask a client of ``pair`` can hold during this batch: the
        highest ask of the market's book now and of every frame of the pair in the batch (an ask
        the client holds is still in the book, or a frame of the batch touched it)."""
        if pair not in self._top_ask:
            prices = list(self.ask_prices(pair))
            needle = f'"PS":"{pair}"'.encode()
            for frame in self.frames:
                if needle in frame[:64]:
                    for text in _ask_prices(frame):
                        with contextlib.suppress(InvalidOperation):
                            prices.append(Decimal(text.decode()))
            self._top_ask[pair] = canonical(max(prices)) if prices else None
        return self._top_ask[pair]


class SimWebsocket:
    """The simulated BtcTurk websocket feed over ``market`` on one loopback port (see the module
    docstring). Usually made and run by :class:`obengine.sim.SimExchange` (``websocket=True``);
    on its own: ``await ws.start()`` ... ``await ws.stop()``.

    Args:
        market: the market it serves (shared with the REST side); ``None`` only for a subclass
            that is its own source of frames (:class:`obengine.sim.playback.Playback`).
        host, port: where to listen (``port=0``: a free port, then :attr:`port`).
        api_keys: public key -> *decoded* private key bytes, for logins (default: the demo pair).
        faults: the rule set to obey (default: a new :class:`WsFaults`).
        seed: seed of the CS bases.
        ping_interval_s: seconds between pings to each connection.
        ping_timeout_s: a connection whose pong has not come this long after a ping is closed.
        join_delay_s: seconds between a book channel's join and its first 431.
        orderbook_interval_s: seconds between the ``orderbook`` channel's 431s.
        send_timeout_s: a connection whose socket accepts nothing for this long while a message
            waits is dropped.
        max_queue: a connection with this many messages waiting is dropped.
        close_timeout_s: how long a close handshake may take before the connection is aborted.
    """

    def __init__(
        self,
        market: SimMarket | None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        api_keys: Mapping[str, bytes] | None = None,
        faults: WsFaults | None = None,
        seed: int = 0,
        ping_interval_s: float = 15.0,
        ping_timeout_s: float = 45.0,
        join_delay_s: float = 0.02,
        orderbook_interval_s: float = 1.0,
        send_timeout_s: float = 30.0,
        max_queue: int = 100_000,
        close_timeout_s: float = 2.0,
    ) -> None:
        for name, value in (
            ("ping_interval_s", ping_interval_s),
            ("ping_timeout_s", ping_timeout_s),
            ("orderbook_interval_s", orderbook_interval_s),
            ("send_timeout_s", send_timeout_s),
            ("close_timeout_s", close_timeout_s),
        ):
            if not value > 0:
                raise ValueError(f"{name} must be > 0, not {value}")
        if join_delay_s < 0:
            raise ValueError(f"join_delay_s must be >= 0, not {join_delay_s}")
        if max_queue < 1:
            raise ValueError(f"max_queue must be >= 1, not {max_queue}")
        if api_keys is None:
            import base64

            from obengine.sim.http import DEMO_PRIVATE_KEY, DEMO_PUBLIC_KEY

            api_keys = {DEMO_PUBLIC_KEY: base64.b64decode(DEMO_PRIVATE_KEY)}
        self._market = market
        self.host = host
        self.port = port
        self.faults = WsFaults() if faults is None else faults
        self.ping_interval_s = ping_interval_s
        self.ping_timeout_s = ping_timeout_s
        self.join_delay_s = join_delay_s
        self.orderbook_interval_s = orderbook_interval_s
        self.send_timeout_s = send_timeout_s
        self.max_queue = max_queue
        self.close_timeout_s = close_timeout_s
        self.accepted = 0  # connections accepted
        self.refused = 0  # handshakes refused by a fault
        self.dropped = 0  # connections dropped as slow consumers
        self.resyncs = 0  # fresh 431s sent because the market moved unseen
        self._api_keys = dict(api_keys)
        self._nonces: dict[str, set[int]] = {}
        self._rng = random.Random(f"obengine.sim.ws:{seed}")
        self._forced: deque[int] = deque()
        self._conns: dict[int, _Conn] = {}
        self._subs: dict[str, dict[str, dict[int, _Sub]]] = {}  # channel -> event -> conn id -> sub
        self._server: Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._house: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._next_id = 0

    # -- addresses and life cycle ------------------------------------------------------------

    @property
    def url(self) -> str:
        """``ws://HOST:PORT`` (valid once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"ws://{host}:{self.port}"

    async def start(self) -> None:
        """Listen (port 0 picks a free one, then :attr:`port` says which)."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._loop = asyncio.get_running_loop()
        self._server = await serve(
            self._handler,
            self.host,
            self.port,
            process_request=self._process_request,
            compression=None,
            ping_interval=None,  # our own keepalive (it must stop during a stall)
            ping_timeout=None,
            close_timeout=self.close_timeout_s,
            max_size=1 << 20,
            logger=log,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        self._house = asyncio.create_task(self._housekeeping())
        log.debug("simulated websocket feed listening on %s", self.url)

    async def stop(self) -> None:
        """Close every connection (code 1001) and stop listening."""
        server, self._server = self._server, None
        if server is None:
            return
        tasks = list(self._tasks)
        if self._house is not None:
            tasks.append(self._house)
            self._house = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for conn in list(self._conns.values()):
            self._end_stall(conn)  # a stalled connection must read the close handshake
            for sub in conn.subs.values():
                if sub.timer is not None:
                    sub.timer.cancel()
        server.close()
        await server.wait_closed()
        log.debug("simulated websocket feed on %s stopped", self.url)

    # -- the market ----------------------------------------------------------------------------

    @property
    def market(self) -> SimMarket:
        """The simulated market it serves."""
        if self._market is None:
            raise RuntimeError(f"{type(self).__name__} serves no simulated market")
        return self._market

    def _ask_prices(self, pair: str) -> list[Decimal]:
        """The ask prices of the market's book of ``pair`` now (for a ``crossed`` fault)."""
        return [price for price, _ in self.market.levels(pair)[1]]

    def truth(
        self, pair: str
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The pair's true book now: ``(bids, asks)``, best first, exact ``(price, amount)``."""
        return self.market.levels(pair)

    async def push(self, frames: int = 1) -> list[bytes]:
        """Advance the market by ``frames`` frames and deliver them (see :meth:`deliver`); returns
        the market's frames (its own CS). Only queues: never waits on a client."""
        out = self.market.advance(frames)
        self.deliver(out)
        await asyncio.sleep(0)
        return out

    def push_sync(self, frames: int = 1, timeout_s: float | None = 60.0) -> list[bytes]:
        """:meth:`push` from another thread than the server's (e.g. with
        ``SimExchange.in_thread``)."""
        loop = self._loop
        if loop is None or self._server is None:
            raise RuntimeError("the websocket server is not running")
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is loop:
                raise RuntimeError("push_sync called on the server's own loop: await push()")
        return asyncio.run_coroutine_threadsafe(self.push(frames), loop).result(timeout_s)

    def deliver(self, frames: Sequence[bytes]) -> None:
        """Deliver frames the market has just produced (``market.advance``'s, in order): every 432
        to the live ``obdiff`` subscriptions of its pair (with their CS, faults applied), then the
        trades, tickers and balance updates the move made."""
        batch = _Batch(self._ask_prices, frames)
        obdiff = self._subs.get("obdiff", {})
        touched: dict[str, None] = {}
        for frame in frames:
            m = _HEAD.match(frame)
            if m is None:
                continue
            pair = m.group(3).decode()
            touched[pair] = None
            subs = obdiff.get(pair)
            if not subs or m.group(1) == b"431":  # a pair's first 431 changes no book
                continue
            market_cs = int(m.group(2))
            for sub in list(subs.values()):
                if not sub.live or sub.conn.dead or sub.market_cs is None:
                    continue
                d = _wrap(market_cs - sub.market_cs)
                if d <= 0:  # already in the book its 431 gave
                    continue
                if d > 1:  # the market moved without us: a fresh 431
                    self._resync(sub)
                    continue
                sub.market_cs = market_cs
                sub.cs = _wrap(sub.cs + 1)
                self._send_diff(sub, _with_cs(frame, sub.cs), batch)
        self._after_move(touched)

    # -- information -----------------------------------------------------------------------

    @property
    def connections(self) -> list[WsConnectionInfo]:
        """The open connections, in accept order."""
        return [
            WsConnectionInfo(
                c.id, c.peer, c.user, tuple(c.subs), c.sent, c.pings_sent, c.queue.qsize(),
                not c.gate.is_set(),
            )
            for c in self._conns.values()
            if not c.dead
        ]

    def subscriptions(
        self, pair: str | None = None, channel: str | None = None
    ) -> list[WsSubscriptionInfo]:
        """The subscriptions of open connections (of ``pair`` / ``channel`` when given)."""
        out = []
        for conn in self._conns.values():
            for sub in conn.subs.values():
                if (pair is not None and sub.pair != pair) or (
                    channel is not None and sub.channel != channel
                ):
                    continue
                book = sub.channel in ("obdiff", "orderbook") and sub.pair is not None
                out.append(
                    WsSubscriptionInfo(
                        conn.id, sub.channel, sub.event, sub.pair, sub.live,
                        sub.cs if book else None, sub.market_cs,
                    )
                )
        return out

    def force_cs_base(self, *bases: int) -> None:
        """Make the next book subscriptions (``obdiff``, ``orderbook``), in join order, start at
        these CS values instead of random ones (each taken as signed 32-bit)."""
        self._forced.extend(_wrap(b) for b in bases)

    # -- acting on a connection at once ------------------------------------------------------

    def _conn(self, connection: int | None) -> _Conn:
        live = [c for c in self._conns.values() if not c.dead]
        if connection is None:
            if len(live) != 1:
                raise ValueError(f"{len(live)} connections are open: name one")
            return live[0]
        for c in live:
            if c.id == connection:
                return c
        raise KeyError(f"no open connection {connection}")

    def stall(self, connection: int | None = None, seconds: float = 1.0) -> None:
        """Stall a connection now (the only one when ``None``): it sends nothing, pings
        included, and reads nothing, for ``seconds``."""
        self._begin_stall(self._conn(connection), seconds)

    def resume(self, connection: int | None = None) -> None:
        """End a connection's stall now (a ``stall`` fault's or :meth:`stall`'s)."""
        self._end_stall(self._conn(connection))

    def abort(self, connection: int | None = None) -> None:
        """Abort a connection's TCP connection now (no close frame)."""
        self._abort(self._conn(connection), "aborted")

    # -- connections ---------------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        rule = self.faults.take_handshake()
        if rule is None:
            return None
        self.refused += 1
        log.info("handshake refused (fault): HTTP %d", rule.status)
        try:
            status: HTTPStatus | int = HTTPStatus(rule.status)
        except ValueError:
            status = rule.status
        return connection.respond(status, rule.handshake_message())

    async def _handler(self, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        self._next_id += 1
        self.accepted += 1
        conn = _Conn(self._next_id, ws, loop.time() + self.ping_interval_s)
        self._conns[conn.id] = conn
        log.info("connection %d from %s", conn.id, conn.peer)
        conn.sender = asyncio.create_task(self._sender(conn))
        self._enqueue(conn, HELLO)
        try:
            async for message in ws:
                if isinstance(message, str) and not conn.dead:
                    self._on_message(conn, message)
        except ConnectionClosed:
            pass
        finally:
            self._forget(conn)
        log.info("connection %d closed", conn.id)

    def _forget(self, conn: _Conn) -> None:
        conn.dead = True
        for sub in conn.subs.values():
            self._unindex(sub)
        conn.subs.clear()
        if conn.stall_timer is not None:
            conn.stall_timer.cancel()
            conn.stall_timer = None
        conn.gate.set()
        if conn.drained is not None:
            conn.drained.set()
        for task in (conn.sender, conn.ping_task):
            if task is not None:
                task.cancel()
        self._conns.pop(conn.id, None)

    def _enqueue(self, conn: _Conn, item: _Item) -> None:
        if conn.dead:
            return
        if conn.queue.qsize() >= self.max_queue:
            self._drop(conn, f"{self.max_queue} messages waiting")
            return
        conn.queue.put_nowait(item)

    async def _sender(self, conn: _Conn) -> None:
        """Write the connection's queue to its socket, in order; obey stalls and aborts."""
        ws = conn.ws
        loop = asyncio.get_running_loop()
        try:
            while True:
                item = await conn.queue.get()
                if not conn.gate.is_set():
                    await conn.gate.wait()
                if conn.dead:
                    return
                if isinstance(item, bytes):
                    conn.sending_since = loop.time()
                    await ws.send(item, text=True)
                    conn.sending_since = None
                    conn.sent += 1
                elif isinstance(item, _Stall):
                    self._begin_stall(conn, item.seconds)
                else:
                    self._abort(conn, "aborted (fault)")
                    return
                if conn.drained is not None and conn.queue.qsize() <= conn.drain_to:
                    conn.drained.set()
        except ConnectionClosed:
            pass

    async def _wait_for_room(self, high: int, low: int) -> None:
        """Backpressure for a source that plays as fast as the clients take it: return when no
        open connection has ``high`` or more messages waiting, after waiting for each that has
        to write its queue down to ``low``."""
        for conn in list(self._conns.values()):
            while not conn.dead and conn.queue.qsize() >= high:
                conn.drain_to = low
                conn.drained = asyncio.Event()
                try:
                    await conn.drained.wait()
                finally:
                    conn.drained = None

    def _begin_stall(self, conn: _Conn, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        conn.gate.clear()
        with contextlib.suppress(Exception):
            conn.ws.transport.pause_reading()
        if conn.stall_timer is not None:
            conn.stall_timer.cancel()
        conn.stall_timer = loop.call_later(seconds, self._end_stall, conn)
        log.info("connection %d stalled for %g s (fault)", conn.id, seconds)

    def _end_stall(self, conn: _Conn) -> None:
        if conn.stall_timer is not None:
            conn.stall_timer.cancel()
            conn.stall_timer = None
        if conn.gate.is_set():
            return
        conn.stall_end = asyncio.get_running_loop().time()
        conn.gate.set()
        with contextlib.suppress(Exception):
            conn.ws.transport.resume_reading()

    def _abort(self, conn: _Conn, why: str) -> None:
        conn.dead = True
        log.info("connection %d: %s", conn.id, why)
        conn.ws.transport.abort()

    def _drop(self, conn: _Conn, why: str) -> None:
        self.dropped += 1
        log.warning("connection %d dropped as a slow consumer: %s", conn.id, why)
        self._abort(conn, "dropped")

    # -- keepalive, orderbook snapshots, balances --------------------------------------------

    async def _housekeeping(self) -> None:
        loop = asyncio.get_running_loop()
        quarters = (self.ping_interval_s, self.ping_timeout_s, self.send_timeout_s)
        period = max(min(0.1, *(s / 4 for s in quarters)), 0.005)
        next_balances = loop.time() + 1.0
        while True:
            await asyncio.sleep(period)
            now = loop.time()
            try:
                for conn in list(self._conns.values()):
                    if not conn.dead:
                        self._keepalive(conn, now)
                self._orderbooks(now)
                if now >= next_balances:
                    next_balances = now + 1.0
                    self._check_balances()
            except Exception:  # keep serving
                log.exception("websocket housekeeping failed")

    def _keepalive(self, conn: _Conn, now: float) -> None:
        if conn.sending_since is not None and now - conn.sending_since > self.send_timeout_s:
            self._drop(conn, f"its socket took nothing for {self.send_timeout_s:g} s")
            return
        if not conn.gate.is_set():  # stalled: no ping, and its pongs cannot count
            return
        while conn.pings and conn.pings[0][1].done():
            conn.pings.popleft()
        if conn.pings and now - max(conn.pings[0][0], conn.stall_end) > self.ping_timeout_s:
            conn.dead = True
            log.info("connection %d: no pong within %g s, closing", conn.id, self.ping_timeout_s)
            self._spawn(conn.ws.close(1000, "ping timeout"))
            return
        if now >= conn.next_ping and (conn.ping_task is None or conn.ping_task.done()):
            conn.next_ping = now + self.ping_interval_s
            conn.ping_task = asyncio.create_task(self._ping(conn))

    async def _ping(self, conn: _Conn) -> None:
        if conn.dead or not conn.gate.is_set():  # a stall began since this task was made
            return
        conn.pings_sent += 1  # counted now: the ping is written before this task yields
        try:
            waiter = await conn.ws.ping()
        except ConnectionClosed:
            return
        if isinstance(waiter, asyncio.Future):
            conn.pings.append((asyncio.get_running_loop().time(), waiter))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _orderbooks(self, now: float) -> None:
        for subs in self._subs.get("orderbook", {}).values():
            for sub in list(subs.values()):
                if sub.live and sub.pair is not None and now >= sub.next_book:
                    sub.next_book = now + self.orderbook_interval_s
                    snap, _ = self._snapshot(sub.pair)
                    sub.cs = _wrap(sub.cs + 1)
                    self._enqueue(sub.conn, _on_channel(_with_cs(snap, sub.cs), b"orderbook"))

    def _balances_now(self) -> object:
        return tuple((b.asset, b.balance, b.locked) for b in self.market.balances())

    def _check_balances(self) -> None:
        """A 201 to every logged-in connection whose account changed since it last heard."""
        users = [c for c in self._conns.values() if c.user is not None and not c.dead]
        if not users:
            return
        now = self._balances_now()
        msg = _message(201, {"type": 201, "userId": 0, "payload": "BalanceUpdated"})
        for conn in users:
            if conn.balances != now:
                conn.balances = now
                self._enqueue(conn, msg)

    # -- messages from the client --------------------------------------------------------------

    def _on_message(self, conn: _Conn, text: str) -> None:
        try:
            doc = json.loads(text)
        except ValueError:
            return
        if not isinstance(doc, list) or len(doc) < 2 or not isinstance(doc[1], dict):
            return
        kind, payload = doc[0], doc[1]
        if isinstance(kind, bool) or not isinstance(kind, int):
            return
        if kind == 151:
            self._subscribe(conn, payload)
        elif kind == 114:
            self._login(conn, payload)
        # anything else: ignored, as the exchange does

    def _answer(self, conn: _Conn, ok: bool, message: str) -> None:
        self._enqueue(conn, _message(100, {"type": 100, "ok": ok, "message": message}))

    def _subscribe(self, conn: _Conn, payload: dict[str, Any]) -> None:
        channel, event, join = payload.get("channel"), payload.get("event"), payload.get("join")
        if not isinstance(channel, str) or not isinstance(event, str) or not isinstance(join, bool):
            return
        key = (channel, event)
        name = f"{channel}:{event}"
        if not join:
            old = conn.subs.pop(key, None)
            if old is not None:
                self._unindex(old)
            self._answer(conn, old is not None, f"leave|{name}")
            return
        if key in conn.subs:
            self._answer(conn, False, f"join|{name}")
            return
        pair = self._pair_of(channel, event)
        sub = _Sub(conn, channel, event, pair)
        conn.subs[key] = sub
        self._subs.setdefault(channel, {}).setdefault(event, {})[conn.id] = sub
        self._answer(conn, True, f"join|{name}")
        if pair is None:
            return  # ok, and then nothing
        self._start(sub)

    # The two hooks where a join meets the source of frames (the market here; a subclass such
    # as obengine.sim.playback.Playback overrides them, and delivers its frames itself).

    def _pair_of(self, channel: str, event: str) -> str | None:
        """What a join of ``channel:event`` follows: a pair of the market (``"all"`` for every
        pair's tickers), or ``None``: the join is answered ok and then gets nothing."""
        pairs = self.market.pairs
        if channel in ("obdiff", "orderbook", "trade"):
            return event if event in pairs else None
        if channel == "ticker":
            return event if event == "all" or event in pairs else None
        return None

    def _start(self, sub: _Sub) -> None:
        """A subscription just joined (its ``ok`` answer queued): queue its first messages, or
        schedule them (a book channel's 431 after the join delay)."""
        conn, channel, pair = sub.conn, sub.channel, sub.pair
        assert pair is not None
        if channel in ("obdiff", "orderbook"):
            sub.cs = self._draw_base()
            loop = asyncio.get_running_loop()
            sub.timer = loop.call_later(self.join_delay_s, self._activate, sub)
        elif channel == "trade":
            trades = self.market.trades(pair, TRADES_ON_JOIN)
            sub.last_tid = max((int(t.tid) for t in trades), default=0)
            doc = {
                "symbol": pair,
                "items": [_trade_item(t) for t in trades],
                "channel": "trade",
                "event": pair,
                "type": 421,
            }
            self._enqueue(conn, _message(421, doc))
            sub.live = True
        else:
            self._enqueue(conn, self._ticker_message(pair))
            sub.live = True

    def _unindex(self, sub: _Sub) -> None:
        if sub.timer is not None:
            sub.timer.cancel()
            sub.timer = None
        sub.live = False
        events = self._subs.get(sub.channel, {})
        subs = events.get(sub.event, {})
        if subs.get(sub.conn.id) is sub:
            del subs[sub.conn.id]
            if not subs:
                events.pop(sub.event, None)

    def _draw_base(self) -> int:
        if self._forced:
            return self._forced.popleft()
        rng = self._rng
        r = rng.random()
        if r < 0.2:  # near the top: the stream wraps to -2**31 soon
            return 0x7FFF_FFFF - rng.randrange(100)
        if r < 0.4:
            return -rng.randrange(1, 0x8000_0001)
        return rng.randrange(0, 0x7FFF_FFFF)

    def _snapshot(self, pair: str) -> tuple[bytes, int]:
        """A 431 of the pair's current book and the market's CS it stands at, taken together."""
        market = self.market
        with market._lock:
            return market.feed.snapshot(pair), market.feed.seq(pair)

    def _activate(self, sub: _Sub) -> None:
        """A book subscription's first 431, after the join delay."""
        sub.timer = None
        conn = sub.conn
        if conn.dead or conn.subs.get((sub.channel, sub.event)) is not sub or sub.pair is None:
            return
        snap, market_cs = self._snapshot(sub.pair)
        frame = _with_cs(snap, sub.cs)
        if sub.channel == "orderbook":
            frame = _on_channel(frame, b"orderbook")
            sub.next_book = asyncio.get_running_loop().time() + self.orderbook_interval_s
        else:
            sub.market_cs = market_cs
        self._enqueue(conn, frame)
        sub.live = True

    def _resync(self, sub: _Sub) -> None:
        assert sub.pair is not None
        self.resyncs += 1
        snap, market_cs = self._snapshot(sub.pair)
        sub.held = None
        sub.cs = _wrap(sub.cs + 1)
        sub.market_cs = market_cs
        self._enqueue(sub.conn, _with_cs(snap, sub.cs))

    def _login(self, conn: _Conn, payload: dict[str, Any]) -> None:
        ok, message = self._check_login(conn, payload)
        if ok:
            conn.user = str(payload["publicKey"])
            conn.balances = self._balances_now()
            log.info("connection %d logged in", conn.id)
        else:
            log.info("connection %d: login refused: %s", conn.id, message)
        doc: dict[str, object] = {"type": 114, "id": 0, "ok": ok, "message": message}
        self._enqueue(conn, _message(114, doc))

    def _check_login(self, conn: _Conn, payload: dict[str, Any]) -> tuple[bool, str]:
        rule = self.faults.take_login(conn.id)
        if rule is not None:
            return False, rule.login_message()
        public, signature = payload.get("publicKey"), payload.get("signature")
        nonce, stamp = payload.get("nonce"), payload.get("timestamp")
        if not isinstance(public, str) or not isinstance(signature, str):
            return False, "Unauthorized - Invalid Request"
        private = self._api_keys.get(public)
        if private is None:
            return False, "Unauthorized - Invalid Public key"
        if isinstance(nonce, str) and nonce.isdigit() and len(nonce) < 20:
            nonce = int(nonce)
        if isinstance(nonce, bool) or not isinstance(nonce, int) or not 1 <= nonce <= MAX_NONCE:
            return False, "Unauthorized - Invalid Request"
        if stamp is not None and (isinstance(stamp, bool) or not isinstance(stamp, (int, str))):
            return False, "Unauthorized - Invalid Request"
        expected = btcturk_signature(private, public, nonce)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return False, "Unauthorized - Invalid Signature"
        used = self._nonces.setdefault(public, set())
        if nonce in used:
            return False, "Unauthorized - Invalid Request"
        used.add(nonce)
        return True, "Authentication successful"

    # -- book frames ---------------------------------------------------------------------------

    def _send_diff(self, sub: _Sub, data: bytes, batch: _Batch) -> None:
        """Queue the 432 ``data`` (its CS already ``sub.cs``) to ``sub``, faults applied."""
        conn = sub.conn
        assert sub.pair is not None
        rule = self.faults.take_frame(conn.id, sub.pair)
        if rule is None:
            self._put_diff(sub, data)
            return
        kind = rule.kind
        log.info("connection %d %s CS %d: %s (fault)", conn.id, sub.pair, sub.cs, kind)
        if kind == "drop":
            return
        if kind == "duplicate":
            old = sub.last or data
            self._put_diff(sub, data)
            self._enqueue(conn, old)
        elif kind == "reorder":
            held, sub.held = sub.held, data
            if held is not None:
                self._enqueue(conn, held)
        elif kind == "truncate":
            self._enqueue(conn, data[: len(data) // 2])
        elif kind == "bad_value":
            self._enqueue(conn, self._bad_frame(data, rule))
        elif kind == "crossed":
            crossed = self._crossed_frame(sub, batch)
            self._enqueue(conn, crossed if crossed is not None else data)
        elif kind == "stall":
            assert rule.seconds is not None
            self._enqueue(conn, _Stall(rule.seconds))
            self._put_diff(sub, data)
        else:
            assert kind == "abort"
            self._enqueue(conn, _ABORT)

    def _put_diff(self, sub: _Sub, data: bytes) -> None:
        self._enqueue(sub.conn, data)
        sub.last = data
        if sub.held is not None:  # a "reorder": the held frame goes after its successor
            held, sub.held = sub.held, None
            self._enqueue(sub.conn, held)

    @staticmethod
    def _bad_frame(data: bytes, rule: WsFaultRule) -> bytes:
        bad = rule.bad_text.encode()
        if rule.field == "A":
            entry = b'{"CP":0,"P":"1","A":"' + bad + b'"}'
        else:
            entry = b'{"CP":1,"P":"' + bad + b'","A":"1"}'
        return _with_bad_entry(data, entry)

    def _crossed_frame(self, sub: _Sub, batch: _Batch) -> bytes | None:
        assert sub.pair is not None
        price = batch.crossing_price(sub.pair)
        if price is None:
            return None
        doc = {
            "CS": sub.cs,
            "PS": sub.pair,
            "AO": [],
            "BO": [{"CP": 1, "P": price, "A": "1"}],
            "channel": "obdiff",
            "event": sub.pair,
            "type": 432,
        }
        return _message(432, doc)

    # -- trades, tickers, balances after a move ----------------------------------------------

    def _ticker_message(self, event: str) -> bytes:
        if event == "all":
            items = [_ticker_item(t) for t in self.market.tickers()]
            return _message(401, {"items": items, "channel": "ticker", "event": "all", "type": 401})
        doc = _ticker_item(self.market.ticker(event))
        doc.update({"channel": "ticker", "event": event, "type": 402})
        return _message(402, doc)

    def _after_move(self, touched: Mapping[str, None]) -> None:
        for event, subs in self._subs.get("trade", {}).items():
            live = [s for s in subs.values() if s.live and not s.conn.dead]
            if not live:
                continue
            trades = self.market.trades(event, _TRADES_SCANNED)  # newest first
            for sub in live:
                new = [t for t in reversed(trades) if int(t.tid) > sub.last_tid]
                for t in new:
                    doc = _trade_item(t)
                    doc.update({"PS": event, "S": doc.pop("S")})
                    doc.update({"channel": "trade", "event": event, "type": 422})
                    self._enqueue(sub.conn, _message(422, doc))
                if new:
                    sub.last_tid = int(new[-1].tid)
        if touched:
            for event, subs in self._subs.get("ticker", {}).items():
                if event != "all" and event not in touched:
                    continue
                live = [s for s in subs.values() if s.live and not s.conn.dead]
                if live:
                    msg = self._ticker_message(event)
                    for sub in live:
                        self._enqueue(sub.conn, msg)
        self._check_balances()

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "stopped"
        return f"SimWebsocket({self.url}, {state}, {len(self._conns)} connections)"
