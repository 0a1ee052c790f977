"""The simulated exchange's REST side: a real HTTP/1.1 server on loopback (asyncio streams and the
sans-I/O ``h11``) that answers as BtcTurk's REST API, its graph host's ``/v1/ohlcs`` and Kraken's
``POST /0/private/GetWebSocketsToken`` do, all on one port, from a :class:`~obengine.sim.market.
SimMarket`. Nothing here touches the internet.

Endpoints (shapes as the exchange's API reference shows them; numbers exact, never via a float):

- ``GET /api/v2/server/exchangeinfo``, ``GET /api/v2/server/time`` (no envelope),
  ``GET /api/v2/ticker[?pairSymbol=]``, ``GET /api/v2/ticker/currency?symbol=``,
  ``GET /api/v2/orderbook?pairSymbol=&limit=`` (default 100, at most 1000),
  ``GET /api/v2/trades?pairSymbol=&last=`` (at most 50), ``GET /v1/ohlcs?pair=&from=&to=``
  (seconds; a bare list).
- Signed (headers ``X-PCK``, ``X-Stamp``, ``X-Signature``): ``GET /api/v1/users/balances``,
  ``GET /api/v1/openOrders[?pairSymbol=]``, ``GET /api/v1/allOrders?pairSymbol=&orderId=&startTime=
  &endTime=&page=&limit=``, ``POST /api/v1/order`` (JSON body), ``DELETE /api/v1/order?id=``,
  ``GET|POST /api/v1/users/transactions/trade|crypto|fiat?type=&symbol=&startDate=&endDate=``
  (``type`` and ``symbol`` may repeat).
- Kraken: ``POST /0/private/GetWebSocketsToken`` (headers ``API-Key``, ``API-Sign``, form body
  ``nonce=<ms>``).

Paths are matched case-insensitively and ``pairSymbol`` is accepted as ``BTCTRY`` or ``BTC_TRY``.

Authentication of ``/api/v1/*``, as the exchange answers (HTTP 401): missing headers
(``"Unauthorized - Headers are missing"``), an unknown public key (``"Unauthorized - Invalid
Public key"``), a stamp more than 5000 ms from the server's clock (``{"success":true,"message":
"Unauthorized - Invalid Nonce","code":1037}``: success *true*, as users saw), a wrong signature
(``"Unauthorized - Invalid Signature"``). The server's clock is this machine's plus
:attr:`SimExchange.clock_offset_ms`; it stamps everything, ``serverTime`` included.

Rate limits (per public key for ``/api/v1/*``, per client IP otherwise; a sliding window of
``rate_limit_window_s``, 60 s): the buckets of :data:`RATE_LIMITS` (requests per window), named
as the project's REST client names them; a request counts against every bucket it belongs to.
Over a limit: 429 with ``Retry-After`` (integer seconds) and an envelope. Tests set small limits
with ``rate_limits={"GET /api/v2/ticker": 3}`` (``None`` turns a bucket off).

Errors the exchange's documents do not give a code for carry the HTTP status as their ``code``.
Every request is logged on ``obengine.sim.http`` at INFO: method, path (no query), status, latency;
never a header, a body or a signature.
"""
from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hmac
import json
import logging
import math
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qs, urlsplit

import h11

from obengine.auth import btcturk_signature, kraken_signature
from obengine.sim._thread import in_thread as _in_thread
from obengine.sim import _json
from obengine.sim.faults import HTML_PAGE, FaultRule, Faults
from obengine.sim.market import (
    MAKER_FEE,
    TAKER_FEE,
    MarketError,
    Order,
    PairInfo,
    SimMarket,
    Ticker,
    canonical,
    fixed,
)
from obengine.sim.wsfaults import WsFaults

if TYPE_CHECKING:
    from obengine.sim.ws import SimWebsocket

__all__ = [
    "DEMO_KRAKEN_API_KEY",
    "DEMO_KRAKEN_SECRET",
    "DEMO_PRIVATE_KEY",
    "DEMO_PUBLIC_KEY",
    "KRAKEN_TOKEN_PATH",
    "NONCE_WINDOW_MS",
    "RATE_LIMITS",
    "SimExchange",
]

log = logging.getLogger("obengine.sim.http")

#: The simulator's demo BtcTurk public key (``X-PCK``). Demo keys open nothing but the simulator.
DEMO_PUBLIC_KEY = "b6fe17ce-db85-0829-0cb0-b27af8155f6d"
#: The simulator's demo BtcTurk private key: base64 of 32 fixed bytes.
DEMO_PRIVATE_KEY = "o06YIjdDQmJtZ2dAAt2NsbYht2b5M7tQa/DdIIrqt/s="
#: The simulator's demo Kraken API key (``API-Key``).
DEMO_KRAKEN_API_KEY = "KPHS3dyHOzyWl5fjNdqtYbFSahUQZJSp15LBIAfglIG8="
#: The simulator's demo Kraken secret: base64 of 64 fixed bytes.
DEMO_KRAKEN_SECRET = (
    "8ejogMCVmmZkTob5Dn6b7QY+YJtc1iWonoQKBOxm8GBamryjAmzXwP+TFMnOIaOG9OJK6qlKfl5DZJLVERWECg=="
)

KRAKEN_TOKEN_PATH = "/0/private/GetWebSocketsToken"
NONCE_WINDOW_MS = 5000  # the stamp tolerance, ± ms
MAX_BODY = 1 << 20  # bytes of a request body
ORDER_METHODS = ["MARKET", "LIMIT", "STOP_MARKET", "STOP_LIMIT"]

#: Requests per window (60 s) by bucket, from the exchange's API reference ("Rate Limits").
RATE_LIMITS: Mapping[str, int] = {
    "/api/v1/*": 600,
    "GET /api/v1/users/balances": 90,
    "POST /api/v1/order": 300,
    "DELETE /api/v1/order": 300,
    "GET /api/v1/openOrders": 300,
    "GET /api/v1/allOrders": 300,
    "GET /api/v1/users/transactions/trade": 90,
    "GET /api/v1/users/transactions/crypto": 90,
    "GET /api/v1/users/transactions/fiat": 90,
    "GET /api/v2/ticker": 600,
    "GET /api/v2/orderbook": 60,
}

_SIDE = {"buy": "Buy", "sell": "Sell"}
_METHOD = {"limit": "Limit", "market": "Market", "stoplimit": "StopLimit", "stopmarket": "StopMarket"}
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_SIXTEEN = 16  # decimal places of exchange info's minPrice / maxPrice and of balances

DataKind = Literal["list", "object", "bare_list", "bare_object"]


@dataclass
class _Request:
    method: str
    target: str  # path and query as sent
    path: str  # as sent, no query
    key: str  # lower case, no trailing slash
    query: dict[str, list[str]]
    headers: dict[str, str]  # names lower case (the last value of a repeated header)
    body: bytes
    client: str


@dataclass
class _Response:
    status: int
    body: bytes = b""
    content_type: bytes = b"application/json; charset=utf-8"
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    truncate: bool = False  # send half of the body, then close
    drop: bool = False  # close without answering


@dataclass(frozen=True)
class _Route:
    handler: Callable[[_Request], object]  # returns the whole JSON document
    kind: DataKind
    buckets: tuple[str, ...]
    signed: bool


def _json_response(
    status: int, doc: object, headers: list[tuple[bytes, bytes]] | None = None
) -> _Response:
    return _Response(status, _json.dumps(doc), headers=headers or [])


def _error_doc(message: str, code: int, *, success: bool = False) -> dict[str, object]:
    return {"success": success, "message": message, "code": code, "data": None}


def _envelope(data: object, message: str | None = None) -> dict[str, object]:
    return {"success": True, "message": message, "code": 0, "data": data}


def _failure(status: int, message: str, code: int, *, http_status_field: bool = False) -> _Response:
    doc: dict[str, object]
    if http_status_field:
        doc = {"httpStatusCode": status, "data": None, "success": False, "message": message}
        doc["code"] = code
    else:
        doc = _error_doc(message, code)
    return _json_response(status, doc)


def _bad_request(message: str) -> MarketError:
    return MarketError(400, message, 400)


def _one(req: _Request, name: str) -> str | None:
    values = req.query.get(name)
    return values[-1] if values else None


def _many(req: _Request, name: str) -> list[str] | None:
    """A repeated query parameter (``type=buy&type=sell``; commas split too), or ``None``."""
    values = req.query.get(name)
    if not values:
        return None
    out = [v.strip() for value in values for v in value.split(",") if v.strip()]
    return out or None


def _int(req: _Request, name: str, default: int | None = None) -> int | None:
    text = _one(req, name)
    if text is None or not text.strip():
        return default
    try:
        return int(text.strip())
    except ValueError:
        raise _bad_request(f"Invalid {name}: {text[:32]!r}") from None


def _clamp(value: int, low: int, high: int) -> int:
    return max(low, min(high, value))


class _Limiter:
    """Sliding-window rate limits: each (bucket, client) keeps the monotonic times of its accepted
    requests within the window."""

    def __init__(self, limits: Mapping[str, int | None], window_s: float) -> None:
        self.limits = dict(limits)
        self.window_s = window_s
        self._seen: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()

    def admit(self, buckets: Sequence[str], who: str, now: float) -> int | None:
        """``None`` when the request may go (it is counted), else the seconds to wait."""
        with self._lock:
            wait = 0.0
            for bucket in buckets:
                limit = self.limits.get(bucket)
                if limit is None:
                    continue
                seen = self._seen.setdefault((bucket, who), deque())
                while seen and seen[0] <= now - self.window_s:
                    seen.popleft()
                if len(seen) >= limit:
                    oldest = seen[-limit] if limit > 0 else now
                    wait = max(wait, oldest + self.window_s - now, 1e-9)
            if wait > 0:
                return max(1, math.ceil(wait))
            for bucket in buckets:
                if self.limits.get(bucket) is not None:
                    self._seen.setdefault((bucket, who), deque()).append(now)
            return None


class SimExchange:
    """A simulated BtcTurk REST API (and Kraken's token endpoint) on one loopback port.

    Use as an async context manager (``async with SimExchange(...) as sim:``), or, for
    synchronous code, :meth:`in_thread` (``with SimExchange.in_thread(...) as sim:``).

    Args:
        pairs: the market's pairs: ``None`` (24), a number, or names (``"BTCTRY"``).
        seed: the market's seed (books, trades, history, account, ids).
        host, port: where to listen (``port=0``: a free port, see :attr:`port`).
        api_keys: BtcTurk public key -> base64 private key (default: the demo pair).
        kraken_keys: Kraken API key -> base64 secret (default: the demo pair).
        rate_limits: overrides of :data:`RATE_LIMITS` by bucket (``None`` turns a bucket off).
        rate_limit_window_s: the window of every limit, seconds.
        comma_decimals: write balances with a comma as decimal separator, as the exchange once
            did (``"27223,7283250757643288"``); ``False`` for dots.
        clock_offset_ms: added to this machine's clock to make the server's (also settable on
            the instance, any time).
        nonce_window_ms: how far (±ms) an ``X-Stamp`` may be from the server's clock (the
            exchange allows 5000).
        tick_s: when given, advance the market every ``tick_s`` seconds by ``frames_per_tick``
            frames (``obengine sim`` does), as :meth:`push` does; by default the market moves
            only when :meth:`push` (or ``sim.market.advance()``) is called (deterministic tests).
        frames_per_tick: frames per automatic advance.
        balances, market_buy_quantity, maker_fee, taker_fee: passed to
            :class:`~obengine.sim.market.SimMarket`.
        websocket: also serve the websocket feed (:class:`~obengine.sim.ws.SimWebsocket`, on
            its own port, :attr:`ws_url`) over the same market and ``api_keys``; then move the
            market with :meth:`push` (or ``tick_s``) so that its subscribers see every frame.
        ws_port: the websocket port (0: a free one).
        ping_interval_s, ping_timeout_s, join_delay_s: the websocket server's pings and the delay
            of a book channel's first 431 (see :mod:`obengine.sim.ws`).
        ws_options: more :class:`~obengine.sim.ws.SimWebsocket` keywords (``send_timeout_s``,
            ``max_queue``, ``orderbook_interval_s``, ``close_timeout_s``).

    Attributes:
        market: the :class:`~obengine.sim.market.SimMarket` behind the answers.
        faults: the :class:`~obengine.sim.faults.Faults` to program.
        ws: the websocket server, or ``None`` (``websocket=False``).
        ws_faults: the websocket side's :class:`~obengine.sim.wsfaults.WsFaults` to program.
        clock_offset_ms: the server's clock minus this machine's, ms (settable).
        requests: how many requests were answered (faults and errors included).
        connections: how many connections were accepted (keep-alive reuses one).
        url: ``"http://127.0.0.1:PORT"``, the base URL of the REST API and of the graph host.
    """

    def __init__(
        self,
        pairs: int | Sequence[str] | None = None,
        seed: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        api_keys: Mapping[str, str] | None = None,
        kraken_keys: Mapping[str, str] | None = None,
        rate_limits: Mapping[str, int | None] | None = None,
        rate_limit_window_s: float = 60.0,
        comma_decimals: bool = True,
        clock_offset_ms: int = 0,
        nonce_window_ms: int = NONCE_WINDOW_MS,
        tick_s: float | None = None,
        frames_per_tick: int = 10,
        balances: Mapping[str, Decimal | str | int] | None = None,
        market_buy_quantity: Literal["base", "quote"] = "base",
        maker_fee: Decimal | None = None,
        taker_fee: Decimal | None = None,
        websocket: bool = False,
        ws_port: int = 0,
        ping_interval_s: float = 15.0,
        ping_timeout_s: float = 45.0,
        join_delay_s: float = 0.02,
        ws_options: Mapping[str, Any] | None = None,
    ) -> None:
        if tick_s is not None and tick_s <= 0:
            raise ValueError(f"tick_s must be > 0, not {tick_s}")
        self.host = host
        self.port = port
        self.clock_offset_ms = clock_offset_ms
        self.nonce_window_ms = nonce_window_ms
        self.comma_decimals = comma_decimals
        self.tick_s = tick_s
        self.frames_per_tick = frames_per_tick
        self.requests = 0
        self.connections = 0
        self.faults = Faults()
        self.market = SimMarket(
            pairs,
            seed=seed,
            clock=self.now_ms,
            balances=balances,
            market_buy_quantity=market_buy_quantity,
            maker_fee=MAKER_FEE if maker_fee is None else maker_fee,
            taker_fee=TAKER_FEE if taker_fee is None else taker_fee,
        )
        self._api_keys = self._decode_keys(
            {DEMO_PUBLIC_KEY: DEMO_PRIVATE_KEY} if api_keys is None else api_keys, "api_keys"
        )
        self._kraken_keys = self._decode_keys(
            {DEMO_KRAKEN_API_KEY: DEMO_KRAKEN_SECRET} if kraken_keys is None else kraken_keys,
            "kraken_keys",
        )
        self._kraken_nonces: dict[str, int] = {}
        limits: dict[str, int | None] = dict(RATE_LIMITS)
        if rate_limits is not None:
            limits.update(rate_limits)
        self._limiter = _Limiter(limits, rate_limit_window_s)
        self._server: asyncio.base_events.Server | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ticker_task: asyncio.Task[None] | None = None
        self._routes = self._make_routes()
        self.ws_faults = WsFaults()
        self.ws: SimWebsocket | None = None
        if websocket:
            from obengine.sim.ws import SimWebsocket

            self.ws = SimWebsocket(
                self.market,
                host=host,
                port=ws_port,
                api_keys=self._api_keys,
                faults=self.ws_faults,
                seed=seed,
                ping_interval_s=ping_interval_s,
                ping_timeout_s=ping_timeout_s,
                join_delay_s=join_delay_s,
                **dict(ws_options or {}),
            )

    @staticmethod
    def _decode_keys(keys: Mapping[str, str], what: str) -> dict[str, bytes]:
        out: dict[str, bytes] = {}
        for public, private in keys.items():
            try:
                out[public] = base64.b64decode(private, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError(f"{what}: the secret of {public[:8]}... is not base64") from None
        return out

    # -- clock and addresses -----------------------------------------------------------------

    def now_ms(self) -> int:
        """The server's clock: this machine's UTC ms plus :attr:`clock_offset_ms`."""
        return time.time_ns() // 1_000_000 + self.clock_offset_ms

    @property
    def url(self) -> str:
        """The base URL of the REST API, ``http://HOST:PORT`` (valid once started)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def graph_url(self) -> str:
        """The base URL of the graph host (``/v1/ohlcs``): the same server."""
        return self.url

    @property
    def ws_url(self) -> str:
        """The websocket feed's URL, ``ws://HOST:PORT`` (``websocket=True`` only)."""
        if self.ws is None:
            raise RuntimeError("no websocket side: make the SimExchange with websocket=True")
        return self.ws.url

    # -- the market ------------------------------------------------------------------------

    async def push(self, frames: int = 1) -> list[bytes]:
        """Advance the market by ``frames`` frames and deliver every 432 to the websocket
        subscribers of its pair, in order (only queued: never waits on a client); returns the
        market's frames. Without a websocket side, only advances the market."""
        if self.ws is not None:
            return await self.ws.push(frames)
        return self.market.advance(frames)

    def truth(
        self, pair: str
    ) -> tuple[list[tuple[Decimal, Decimal]], list[tuple[Decimal, Decimal]]]:
        """The pair's true book now, ``(bids, asks)`` best first, exact ``(price, amount)``."""
        return self.market.levels(pair)

    # -- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Listen (on :attr:`host`, :attr:`port`; port 0 picks a free one, then :attr:`port`
        says which)."""
        if self._server is not None:
            raise RuntimeError("already started")
        self._server = await asyncio.start_server(self._connection, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        if self.ws is not None:
            try:
                await self.ws.start()
            except BaseException:
                await self.stop()
                raise
        if self.tick_s is not None:
            self._ticker_task = asyncio.create_task(self._tick())
        log.debug("simulated exchange listening on %s", self.url)

    async def stop(self) -> None:
        """Stop listening and close every connection (requests in flight are dropped)."""
        server, self._server = self._server, None
        if server is None:
            return
        if self.ws is not None:
            await self.ws.stop()
        server.close()
        tasks = list(self._tasks)
        if self._ticker_task is not None:
            tasks.append(self._ticker_task)
            self._ticker_task = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await server.wait_closed()
        log.debug("simulated exchange on %s stopped", self.url)

    async def __aenter__(self) -> SimExchange:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @classmethod
    @contextlib.contextmanager
    def in_thread(cls, *args: Any, **kwargs: Any) -> Iterator[SimExchange]:
        """Run a :class:`SimExchange` (same arguments) on a background thread with its own event
        loop, for synchronous clients; stopped and joined on exit. The market is thread-safe:
        ``sim.market.advance()`` may be called from the caller's thread."""
        with _in_thread(cls(*args, **kwargs), "obengine-sim") as sim:
            yield sim

    async def _tick(self) -> None:
        """Advance the market every ``tick_s`` seconds (only when ``tick_s`` was given)."""
        assert self.tick_s is not None
        while True:
            await asyncio.sleep(self.tick_s)
            try:
                await self.push(self.frames_per_tick)
            except Exception:  # keep serving: a broken advance must not stop the server
                log.exception("the simulated market failed to advance")

    # -- HTTP --------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
        self.connections += 1
        peer = writer.get_extra_info("peername")
        client = str(peer[0]) if isinstance(peer, tuple) and peer else "?"
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
        try:
            while True:
                try:
                    req = await self._read(conn, reader, client)
                except h11.RemoteProtocolError as exc:
                    if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                        status = exc.error_status_hint
                        await self._write(conn, writer, _failure(status, "Bad Request", status))
                    break
                except _TooLarge:
                    await self._write(conn, writer, _failure(413, "Request body too large", 413))
                    break
                if req is None:
                    break
                started = time.perf_counter()
                resp = await self._answer(req)
                ms = (time.perf_counter() - started) * 1000
                if resp.drop:
                    log.info("%s %s dropped (fault) %.1f ms", req.method, req.path, ms)
                    break
                await self._write(conn, writer, resp)
                log.info("%s %s %d %.1f ms", req.method, req.path, resp.status, ms)
                if resp.truncate or conn.our_state is h11.MUST_CLOSE:
                    break
                conn.start_next_cycle()
        except (ConnectionError, OSError):
            pass
        except asyncio.CancelledError:
            # stop() cancels open connections; ending normally spares asyncio's stream callback
            # (Python 3.11) a traceback about the cancelled task
            pass
        finally:
            if task is not None:
                self._tasks.discard(task)
            writer.close()
        with contextlib.suppress(ConnectionError, OSError, asyncio.CancelledError):
            await writer.wait_closed()

    async def _read(
        self, conn: h11.Connection, reader: asyncio.StreamReader, client: str
    ) -> _Request | None:
        """The next request on the connection, or ``None`` when the client closed it."""
        request: h11.Request | None = None
        body = bytearray()
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > MAX_BODY:
                    raise _TooLarge()
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return self._request(request, bytes(body), client)
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None

    @staticmethod
    def _request(event: h11.Request, body: bytes, client: str) -> _Request:
        target = event.target.decode("latin-1")
        parts = urlsplit(target)
        path = parts.path or "/"
        key = path.lower().rstrip("/") or "/"
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1") for name, value in event.headers
        }
        query = parse_qs(parts.query, keep_blank_values=True)
        method = event.method.decode("ascii").upper()
        return _Request(method, target, path, key, query, headers, body, client)

    @staticmethod
    async def _write(conn: h11.Connection, writer: asyncio.StreamWriter, resp: _Response) -> None:
        headers = [
            (b"content-type", resp.content_type),
            (b"content-length", str(len(resp.body)).encode()),
            (b"server", b"obengine-sim"),
            *resp.headers,
        ]
        data = conn.send(h11.Response(status_code=resp.status, headers=headers))
        assert data is not None
        if resp.truncate:
            part = conn.send(h11.Data(data=resp.body[: len(resp.body) // 2]))
            assert part is not None
            writer.write(data + part)
        else:
            part = conn.send(h11.Data(data=resp.body))
            end = conn.send(h11.EndOfMessage())
            assert part is not None and end is not None
            writer.write(data + part + end)
        await writer.drain()

    # -- one request ---------------------------------------------------------------------------

    async def _answer(self, req: _Request) -> _Response:
        """Faults, routing, rate limits, authentication, the handler: the answer to ``req``."""
        self.requests += 1
        route = self._routes.get((req.method, req.key))
        rule = self.faults.take(req.method, req.path)
        if rule is not None:
            if rule.delay_s > 0:
                await asyncio.sleep(rule.delay_s)
            if rule.kind not in ("delay", "truncated"):
                return self._fault(rule, route)
        if route is None:
            allowed = sorted(m for m, k in self._routes if k == req.key)
            if allowed:
                return _Response(
                    405,
                    _json.dumps(_error_doc("Method Not Allowed", 405)),
                    headers=[(b"allow", ", ".join(allowed).encode())],
                )
            return _failure(404, "Not Found", 404)
        resp = self._handle(req, route)
        if rule is not None and rule.kind == "truncated":
            resp.truncate = True
        return resp

    def _handle(self, req: _Request, route: _Route) -> _Response:
        who = req.client
        if req.key.startswith("/api/v1/") and req.headers.get("x-pck"):
            who = "key:" + req.headers["x-pck"]
        wait = self._limiter.admit(route.buckets, who, time.monotonic())
        if wait is not None:
            return _json_response(
                429, _error_doc("Too many requests", 429), [(b"retry-after", str(wait).encode())]
            )
        if route.signed:
            refused = self._authenticate(req)
            if refused is not None:
                return refused
        try:
            doc = route.handler(req)
        except MarketError as exc:
            return _failure(exc.status, exc.message, exc.code, http_status_field=exc.http_status_field)
        except Exception:
            log.exception("%s %s: the simulator failed", req.method, req.path)
            return _failure(500, "Internal Server Error", 500)
        return _json_response(200, doc)

    def _fault(self, rule: FaultRule, route: _Route | None) -> _Response:
        message, code = rule.envelope_message(), rule.envelope_code()
        if rule.kind == "status":
            return _json_response(rule.status, _error_doc(message, code))
        if rule.kind == "rate_limited":
            retry_after = [(b"retry-after", str(rule.retry_after_s).encode())]
            return _json_response(429, _error_doc(message, code), retry_after)
        if rule.kind == "malformed":
            body = HTML_PAGE if rule.body is None else rule.body
            return _Response(200, body, b"text/html; charset=utf-8")
        if rule.kind == "success_false":
            return _json_response(200, _error_doc(message, code))
        if rule.kind == "nonzero_code":
            return _json_response(200, _error_doc(message, code, success=True))
        if rule.kind == "wrong_shape":
            kind = route.kind if route is not None else "list"
            if kind == "bare_list":
                return _json_response(200, {"data": "not a list"})
            if kind == "bare_object":
                return _json_response(200, ["not", "an", "object"])
            wrong: object = "not a list" if kind == "list" else ["not", "an", "object"]
            return _json_response(200, _envelope(wrong))
        assert rule.kind == "disconnect"
        return _Response(0, drop=True)

    def _authenticate(self, req: _Request) -> _Response | None:
        """``None`` when the request is signed right, else the exchange's 401."""
        public = req.headers.get("x-pck", "").strip()
        stamp = req.headers.get("x-stamp", "").strip()
        signature = req.headers.get("x-signature", "").strip()
        if not public or not stamp or not signature:
            return _failure(401, "Unauthorized - Headers are missing", 1037)
        private = self._api_keys.get(public)
        if private is None:
            return _failure(401, "Unauthorized - Invalid Public key", 1037)
        try:
            stamp_ms = int(stamp)
        except ValueError:
            stamp_ms = None
        if stamp_ms is None or abs(stamp_ms - self.now_ms()) > self.nonce_window_ms:
            nonce = {"success": True, "message": "Unauthorized - Invalid Nonce", "code": 1037}
            return _json_response(401, nonce)
        expected = btcturk_signature(private, public, stamp)
        if not hmac.compare_digest(expected.encode(), signature.encode()):
            return _failure(401, "Unauthorized - Invalid Signature", 1037)
        return None

    # -- routes ------------------------------------------------------------------------------

    def _make_routes(self) -> dict[tuple[str, str], _Route]:
        def r(
            handler: Callable[[_Request], object], kind: DataKind, *buckets: str, signed: bool = False
        ) -> _Route:
            return _Route(handler, kind, buckets, signed)

        v1 = "/api/v1/*"
        routes = {
            ("GET", "/api/v2/server/exchangeinfo"): r(self._exchange_info, "object"),
            ("GET", "/api/v2/server/time"): r(self._server_time, "bare_object"),
            ("GET", "/api/v2/ticker"): r(self._ticker, "list", "GET /api/v2/ticker"),
            ("GET", "/api/v2/ticker/currency"): r(self._ticker_currency, "list", "GET /api/v2/ticker"),
            ("GET", "/api/v2/orderbook"): r(self._order_book, "object", "GET /api/v2/orderbook"),
            ("GET", "/api/v2/trades"): r(self._trades, "list"),
            ("GET", "/v1/ohlcs"): r(self._ohlcs, "bare_list"),
            ("GET", "/api/v1/users/balances"): r(
                self._balances, "list", v1, "GET /api/v1/users/balances", signed=True
            ),
            ("GET", "/api/v1/openorders"): r(
                self._open_orders, "object", v1, "GET /api/v1/openOrders", signed=True
            ),
            ("GET", "/api/v1/allorders"): r(
                self._all_orders, "list", v1, "GET /api/v1/allOrders", signed=True
            ),
            ("POST", "/api/v1/order"): r(self._submit, "object", v1, "POST /api/v1/order", signed=True),
            ("DELETE", "/api/v1/order"): r(
                self._cancel, "object", v1, "DELETE /api/v1/order", signed=True
            ),
            ("POST", KRAKEN_TOKEN_PATH.lower()): r(self._kraken_token, "bare_object"),
        }
        for kind, handler in (
            ("trade", self._user_trades),
            ("crypto", self._crypto),
            ("fiat", self._fiat),
        ):
            bucket = f"GET /api/v1/users/transactions/{kind}"
            for method in ("GET", "POST"):
                path = f"/api/v1/users/transactions/{kind}"
                routes[(method, path)] = r(handler, "list", v1, bucket, signed=True)
        return routes

    # -- public handlers -------------------------------------------------------------------

    def _exchange_info(self, req: _Request) -> object:
        symbols = [
            {
                "id": info.id,
                "name": info.name,
                "nameNormalized": info.normalized,
                "status": "TRADING",
                "numerator": info.numerator,
                "denominator": info.denominator,
                "numeratorScale": info.amount_scale,
                "denominatorScale": info.denominator_scale,
                "hasFraction": info.has_fraction,
                "filters": [
                    {
                        "filterType": "PRICE_FILTER",
                        "minPrice": Decimal(fixed(info.min_price, _SIXTEEN)),
                        "maxPrice": Decimal(fixed(info.max_price, _SIXTEEN)),
                        "tickSize": canonical(info.tick_size),
                        "minExchangeValue": canonical(info.min_exchange_value),
                        "minAmount": None,
                        "maxAmount": None,
                    }
                ],
                "orderMethods": ORDER_METHODS,
            }
            for info in self.market.pairs.values()
        ]
        currencies = [
            {"id": i, "symbol": asset, "name": self.market.balance(asset).name, "precision": precision}
            for i, (asset, precision) in enumerate(self.market.currencies.items(), 1)
        ]
        data = {"timeZone": "UTC", "serverTime": self.now_ms(), "symbols": symbols}
        data["currencies"] = currencies
        return _envelope(data)

    def _server_time(self, req: _Request) -> object:
        now = self.now_ms()
        iso = (_EPOCH + timedelta(milliseconds=now)).isoformat(timespec="milliseconds")
        return {"serverTime": now, "serverTime2": iso}

    @staticmethod
    def _ticker_doc(t: Ticker) -> dict[str, object]:
        return {
            "pair": t.pair.name,
            "pairNormalized": t.pair.normalized,
            "timestamp": t.time_ms,
            "last": t.last,
            "high": t.high,
            "low": t.low,
            "bid": t.bid,
            "ask": t.ask,
            "open": t.open,
            "volume": t.volume,
            "average": t.average,
            "daily": t.daily,
            "dailyPercent": t.daily_percent,
            "denominatorSymbol": t.pair.denominator,
            "numeratorSymbol": t.pair.numerator,
        }

    def _ticker(self, req: _Request) -> object:
        symbol = _one(req, "pairSymbol")
        if symbol is None or not symbol.strip():
            return _envelope([self._ticker_doc(t) for t in self.market.tickers()])
        info = self.market.find_pair(symbol)
        return _envelope([] if info is None else [self._ticker_doc(self.market.ticker(info.name))])

    def _ticker_currency(self, req: _Request) -> object:
        symbol = (_one(req, "symbol") or "").strip().upper()
        return _envelope(
            [
                self._ticker_doc(self.market.ticker(info.name))
                for info in self.market.pairs.values()
                if info.denominator == symbol
            ]
        )

    def _pair_param(self, req: _Request, name: str = "pairSymbol") -> PairInfo:
        symbol = _one(req, name)
        if symbol is None or not symbol.strip():
            raise _bad_request(f"{name} is required")
        return self.market.pair(symbol)

    def _order_book(self, req: _Request) -> object:
        info = self._pair_param(req)
        limit = _clamp(_int(req, "limit", 100) or 100, 1, 1000)
        now = self.now_ms()
        bids, asks = self.market.levels(info.name, limit)
        ps, scale = info.denominator_scale, info.amount_scale
        return _envelope(
            {
                "timestamp": Decimal(f"{now}.0"),
                "bids": [[fixed(p, ps), fixed(a, scale)] for p, a in bids],
                "asks": [[fixed(p, ps), fixed(a, scale)] for p, a in asks],
            }
        )

    def _trades(self, req: _Request) -> object:
        info = self._pair_param(req)
        last = _clamp(_int(req, "last", 50) or 50, 1, 50)
        return _envelope(
            [
                {
                    "pair": info.name,
                    "pairNormalized": info.normalized,
                    "numerator": info.numerator,
                    "denominator": info.denominator,
                    "date": t.time_ms,
                    "tid": t.tid,
                    "price": fixed(t.price, info.price_scale),
                    "amount": fixed(t.amount, info.amount_scale),
                }
                for t in self.market.trades(info.name, last)
            ]
        )

    def _ohlcs(self, req: _Request) -> object:
        symbol = _one(req, "pair") or _one(req, "pairSymbol")
        info = None if symbol is None else self.market.find_pair(symbol)
        if info is None:
            return []
        candles = self.market.candles(info.name, _int(req, "from"), _int(req, "to"))
        return [
            {
                "pair": c.pair,
                "time": c.time_s,
                "open": c.open,
                "high": c.high,
                "low": c.low,
                "close": c.close,
                "volume": c.volume,
                "total": c.total,
                "average": c.average,
                "dailyChangeAmount": c.daily_change_amount,
                "dailyChangePercentage": c.daily_change_percentage,
            }
            for c in candles
        ]

    # -- private handlers ------------------------------------------------------------------

    def _money(self, value: Decimal) -> str:
        text = "0" if value == 0 else fixed(value, _SIXTEEN)
        return text.replace(".", ",") if self.comma_decimals else text

    def _balances(self, req: _Request) -> object:
        return _envelope(
            [
                {
                    "asset": b.asset,
                    "assetname": b.name,
                    "balance": self._money(b.balance),
                    "locked": self._money(b.locked),
                    "free": self._money(b.free),
                    "orderFund": self._money(b.locked),
                    "requestFund": "0",
                    "precision": b.precision,
                }
                for b in self.market.balances()
            ]
        )

    def _order_doc(self, o: Order) -> dict[str, object]:
        info = self.market.pairs[o.pair]
        ps = info.denominator_scale
        return {
            "id": o.id,
            "price": fixed(o.price, ps),
            "amount": canonical(o.left),
            "quantity": canonical(o.quantity),
            "stopPrice": fixed(o.stop_price, ps),
            "pairsymbol": info.name,
            "pairsymbolnormalized": info.normalized,
            "type": _SIDE[o.side],
            "method": _METHOD[o.method],
            "orderClientId": o.client_id,
            "time": o.time_ms,
            "updateTime": o.update_time_ms,
            "status": o.status,
        }

    def _open_orders(self, req: _Request) -> object:
        symbol = _one(req, "pairSymbol")
        pair = None if symbol is None or not symbol.strip() else self.market.pair(symbol).name
        orders = self.market.open_orders(pair)
        return _envelope(
            {
                "asks": [self._order_doc(o) for o in orders if o.side == "sell"],
                "bids": [self._order_doc(o) for o in orders if o.side == "buy"],
            }
        )

    def _all_orders(self, req: _Request) -> object:
        info = self._pair_param(req)
        orders = self.market.all_orders(
            info.name,
            order_id=_int(req, "orderId"),
            start_ms=_int(req, "startTime"),
            end_ms=_int(req, "endTime"),
        )
        page = max(1, _int(req, "page", 1) or 1)
        limit = _clamp(_int(req, "limit", 100) or 100, 1, 1000)
        chosen = orders[(page - 1) * limit : page * limit]
        return _envelope([self._order_doc(o) for o in chosen])

    def _submit(self, req: _Request) -> object:
        params: dict[str, Any] = {}
        if req.body.strip():
            try:
                doc = json.loads(req.body, parse_float=Decimal, parse_constant=_no_constant)
            except (ValueError, UnicodeDecodeError):
                raise _bad_request("The request body is not valid JSON") from None
            if not isinstance(doc, dict):
                raise _bad_request("The request body must be a JSON object")
            params.update(doc)
        for name, values in req.query.items():  # the query string wins, as the exchange says
            params[name] = values[-1]
        symbol = params.get("pairSymbol")
        if not isinstance(symbol, str) or not symbol.strip():
            raise _bad_request("pairSymbol is required")
        client_id = params.get("newOrderClientId")
        client = "" if client_id is None else str(client_id)
        order = self.market.submit(
            symbol,
            str(params.get("orderType", "")),
            str(params.get("orderMethod", "")),
            params.get("quantity"),
            params.get("price"),
            params.get("stopPrice"),
            client,
        )
        info = self.market.pairs[order.pair]
        ps = info.denominator_scale
        return _envelope(
            {
                "id": order.id,
                "datetime": order.time_ms,
                "type": _SIDE[order.side],
                "method": _METHOD[order.method],
                "price": fixed(order.price, ps),
                "stopPrice": fixed(order.stop_price, ps),
                "quantity": canonical(order.quantity),
                "pairSymbol": info.name,
                "pairSymbolNormalized": info.normalized,
                "newOrderClientId": client,
            },
            "OK",
        )

    def _cancel(self, req: _Request) -> object:
        order_id = _one(req, "id")
        if order_id is None or not order_id.strip():
            raise _bad_request("id is required")
        self.market.cancel(order_id)
        return _envelope({}, "SUCCESS")

    def _user_trades(self, req: _Request) -> object:
        fills = self.market.fills(
            sides=_many(req, "type"),
            assets=_many(req, "symbol"),
            start_ms=_int(req, "startDate"),
            end_ms=_int(req, "endDate"),
        )
        data = []
        for f in fills:
            info = self.market.pairs[f.pair]
            data.append(
                {
                    "price": f.price,
                    "numeratorSymbol": info.numerator,
                    "denominatorSymbol": info.denominator,
                    "orderType": f.side,
                    "orderId": f.order_id,
                    "id": f.id,
                    "timestamp": f.time_ms,
                    "amount": f.amount if f.side == "buy" else Decimal(0) - f.amount,
                    "fee": Decimal(0) - f.fee,
                    "tax": Decimal(0) - f.tax,
                }
            )
        return _envelope(data, "SUCCESS")

    def _transfers(self, req: _Request, fiat: bool) -> object:
        transfers = self.market.transfers(
            fiat,
            kinds=_many(req, "type"),
            assets=_many(req, "symbol"),
            start_ms=_int(req, "startDate"),
            end_ms=_int(req, "endDate"),
        )
        return _envelope(
            [
                {
                    "balanceType": t.kind.capitalize(),
                    "currencySymbol": t.asset,
                    "id": t.id,
                    "timestamp": t.time_ms,
                    "funds": t.funds,
                    "amount": t.amount,
                    "fee": t.fee,
                    "tax": t.tax,
                }
                for t in transfers
            ],
            "SUCCESS",
        )

    def _crypto(self, req: _Request) -> object:
        return self._transfers(req, fiat=False)

    def _fiat(self, req: _Request) -> object:
        return self._transfers(req, fiat=True)

    # -- Kraken ------------------------------------------------------------------------------

    def _kraken_token(self, req: _Request) -> object:
        """Kraken answers every outcome with HTTP 200; errors in ``error``."""
        key = req.headers.get("api-key", "").strip()
        sign = req.headers.get("api-sign", "").strip()
        secret = self._kraken_keys.get(key)
        if secret is None:
            return {"error": ["EAPI:Invalid key"]}
        form = parse_qs(req.body.decode("utf-8", "replace"), keep_blank_values=True)
        nonce_text = (form.get("nonce") or [""])[-1]
        expected = kraken_signature(secret, req.path, nonce_text, req.body)
        if not sign or not hmac.compare_digest(expected.encode(), sign.encode()):
            return {"error": ["EAPI:Invalid signature"]}
        try:
            nonce = int(nonce_text)
        except ValueError:
            return {"error": ["EAPI:Invalid nonce"]}
        if nonce <= self._kraken_nonces.get(key, 0):
            return {"error": ["EAPI:Invalid nonce"]}
        self._kraken_nonces[key] = nonce
        token = base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
        return {"error": [], "result": {"token": token, "expires": 900}}

    def __repr__(self) -> str:
        state = "serving" if self._server is not None else "stopped"
        return f"SimExchange({self.url}, {state}, {self.market!r})"


class _TooLarge(Exception):
    """A request body over :data:`MAX_BODY`."""


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not a number")
