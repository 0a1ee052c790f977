"""The BtcTurk REST client: :class:`RestClient` (asyncio) and :class:`SyncRestClient` (its
synchronous twin for scripts and notebooks: the same methods with the same results).

::

    async with obengine.rest.RestClient(signer=BtcTurkSigner.from_env()) as rest:
        scales = await rest.scales()              # {pair: (price_scale, amount_scale)}
        book = await rest.order_book("BTCTRY")    # int64 arrays, best first
        for b in await rest.balances():           # exact Decimals
            print(b.asset, b.free)

Against the simulated exchange (no account, no internet), ``obengine sim`` or
:class:`obengine.sim.SimExchange`: ``RestClient(base_url=sim.url, graph_url=sim.url, ...)``.

What a call does, in both clients (the policy is in :mod:`obengine._restapi`, written once):

- **Rate limits** of the exchange's table are kept on this side: a burst waits instead of being
  refused. A read (GET) refused with 429 waits ``Retry-After`` and is retried; a 5xx or a
  transport failure is retried with backoff; at most :class:`~obengine._restapi.Policy`
  ``.retries`` times. An order submission or cancellation is never retried: it raises.
- **Clock.** Signed calls carry the stamp of the exchange's clock: the offset is measured from
  ``/api/v2/server/time`` before the first signed call, every ten minutes, and after an
  invalid-nonce refusal (a read so refused is retried once).
- **Errors** are the :class:`~obengine.ExchangeError` tree; nothing else escapes a call (but
  ``ValueError``/``TypeError`` for bad arguments, raised before anything is sent).
- **TLS** is verified (httpx's default, with certifi's roots); there is no switch to turn it off.
- **Logging** (``obengine.rest``): the request line, status and latency at DEBUG, retries at
  INFO; never a header, so never a key or a signature.

The HTTP client is httpx: one library with an async and a sync client of the same API,
HTTP/1.1 keep-alive pools, timeouts and verified TLS by default.
"""
from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Generator, Mapping, Sequence
from decimal import Decimal
from types import TracebackType
from typing import Any, Literal, TypeVar, Union

import httpx

from obengine import _restapi as api
from obengine._restapi import (
    Balance,
    Candle,
    ExchangeInfo,
    Order,
    OrderMethod,
    PairInfo,
    Policy,
    RestBook,
    Side,
    SubmittedOrder,
    Ticker,
    Trade,
    Transaction,
    UserTrade,
)
from obengine.auth import BtcTurkSigner, KrakenSigner
from obengine.errors import TransportError

__all__ = [
    "RestClient",
    "SyncRestClient",
    "kraken_ws_token",
    "kraken_ws_token_sync",
    "Policy",
    "PairInfo",
    "ExchangeInfo",
    "Ticker",
    "RestBook",
    "Trade",
    "Candle",
    "Balance",
    "Order",
    "SubmittedOrder",
    "UserTrade",
    "Transaction",
    "BTCTURK_API",
    "BTCTURK_GRAPH",
    "KRAKEN_API",
]

BTCTURK_API = "https://api.btcturk.com"
BTCTURK_GRAPH = "https://graph-api.btcturk.com"
KRAKEN_API = "https://api.kraken.com"

log = logging.getLogger("obengine.rest")

T = TypeVar("T")
_Step = Generator["api.Send | api.Sleep", "api.Reply | None", T]


_Outcome = Union["api.Reply", TransportError, None]


class _Done:
    """The session's result (the generator returned)."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value: Any = value


def _resume(steps: _Step[Any], outcome: api.Reply | TransportError | None) -> api.Send | api.Sleep | _Done:
    """Hand the last step's outcome to the session (a transport failure is thrown into it, so
    that its retry policy decides); its next step, or :class:`_Done` with its result."""
    try:
        return steps.throw(outcome) if isinstance(outcome, TransportError) else steps.send(outcome)
    except StopIteration as done:
        return _Done(done.value)


def _log_sleep(step: api.Sleep) -> None:
    if step.reason:
        log.info("waiting %.2f s: %s", step.seconds, step.reason)


def _url(base: str, path: str) -> str:
    return base.rstrip("/") + path


class _Base:
    """What both clients share: the session (sans-I/O), the hosts and the scales cache."""

    def __init__(
        self,
        base_url: str,
        graph_url: str,
        signer: BtcTurkSigner | None,
        policy: Policy | None,
        rate_limits: Mapping[str, int] | None,
    ) -> None:
        if signer is not None and not isinstance(signer, BtcTurkSigner):
            raise TypeError(f"signer must be a BtcTurkSigner, not {type(signer).__name__}")
        self.base_url = base_url
        self.graph_url = graph_url
        self._session = api.Session(
            signer=signer,
            policy=policy or Policy(),
            limiter=api.RateLimiter(api.RATE_LIMITS if rate_limits is None else rate_limits),
        )
        self._info: ExchangeInfo | None = None

    @property
    def signer(self) -> BtcTurkSigner | None:
        return self._session.signer

    @property
    def clock_offset_ms(self) -> int | None:
        """The exchange's clock minus this machine's, in ms, as last measured (``None``
        before the first signed call)."""
        return self._session.clock_offset_ms

    @property
    def stats(self) -> dict[str, int]:
        """``requests`` answered and ``retried`` attempts, since the client was made."""
        return {"requests": self._session.requests, "retried": self._session.retried}

    def _request(self, send: api.Send) -> tuple[str, str, dict[str, Any]]:
        base = self.graph_url if send.host == "graph" else self.base_url
        kwargs: dict[str, Any] = {"params": list(send.params), "headers": send.headers}
        if send.body is not None:
            kwargs["content"] = send.body
        return send.method, _url(base, send.path), kwargs

    @staticmethod
    def _log(send: api.Send, status: int | str, started: float) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s %s -> %s (%.1f ms)", send.method, send.path, status, (time.perf_counter() - started) * 1e3)

    def _reply(self, send: api.Send, response: httpx.Response, started: float) -> api.Reply:
        self._log(send, response.status_code, started)
        return api.Reply(response.status_code, response.headers, response.content)

    def _failure(self, send: api.Send, exc: httpx.HTTPError, started: float) -> TransportError:
        self._log(send, type(exc).__name__, started)
        return TransportError(f"{type(exc).__name__}: {exc}", endpoint=f"{send.method} {send.path}")

    def _scales_of(self, pair: str) -> tuple[int, int] | None:
        if self._info is None:
            return None
        info = self._info.pairs.get(api.symbol(pair))
        return None if info is None else (info.price_scale, info.amount_scale)

    def __repr__(self) -> str:
        signed = "signed" if self.signer is not None else "public"
        return f"{type(self).__name__}({self.base_url!r}, {signed})"


class RestClient(_Base):
    """The asyncio REST client. Use it as ``async with RestClient(...) as rest:`` (or call
    :meth:`aclose`).

    Args:
        base_url: the exchange's API host.
        graph_url: the host of OHLC data.
        signer: credentials for the private endpoints (``None``: public endpoints only).
        timeout_s: per request (connect, read, write, pool), seconds.
        policy: retries, backoff and clock re-sync (:class:`~obengine._restapi.Policy`).
        rate_limits: requests per minute per bucket, default the exchange's table
            (:data:`obengine._restapi.RATE_LIMITS`).
    """

    def __init__(
        self,
        base_url: str = BTCTURK_API,
        graph_url: str = BTCTURK_GRAPH,
        signer: BtcTurkSigner | None = None,
        *,
        timeout_s: float = 10.0,
        policy: Policy | None = None,
        rate_limits: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(base_url, graph_url, signer, policy, rate_limits)
        self._http = httpx.AsyncClient(timeout=timeout_s, headers={"Accept": "application/json"})

    async def __aenter__(self) -> RestClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connections."""
        await self._http.aclose()

    async def _run(self, call: api.Call[T]) -> T:
        steps: _Step[T] = self._session.run(call)
        outcome: _Outcome = None
        while True:
            step = _resume(steps, outcome)
            if isinstance(step, _Done):
                return step.value  # type: ignore[no-any-return]
            if isinstance(step, api.Sleep):
                _log_sleep(step)
                await asyncio.sleep(step.seconds)
                outcome = None
                continue
            method, url, kwargs = self._request(step)
            started = time.perf_counter()
            try:
                outcome = self._reply(step, await self._http.request(method, url, **kwargs), started)
            except httpx.HTTPError as exc:
                outcome = self._failure(step, exc, started)

    # public ---------------------------------------------------------------------------------

    async def server_time(self) -> int:
        """The exchange's clock, UTC ms since the epoch."""
        return await self._run(api.server_time())

    async def exchange_info(self) -> ExchangeInfo:
        """Every pair with its scales, status and price filter (kept for :meth:`order_book`)."""
        self._info = await self._run(api.exchange_info())
        return self._info

    async def scales(self) -> dict[str, tuple[int, int]]:
        """``{pair: (price_scale, amount_scale)}`` from exchange info: what ``BookSet`` takes."""
        return (await self.exchange_info()).scales()

    async def ticker(self, pair: str | None = None) -> list[Ticker]:
        """The 24-hour tickers of all pairs, or of one (``[]`` for an unknown pair)."""
        return await self._run(api.ticker(pair))

    async def order_book(self, pair: str, limit: int = 100) -> RestBook:
        """The pair's book, up to ``limit`` levels a side, as int64 arrays at the pair's scales
        (exchange info is fetched once for them). A REST book carries no CS, so it cannot seed
        a live book: leave and re-join the pair's websocket ``obdiff`` for that."""
        if self._info is None:
            await self.exchange_info()
        return await self._run(api.order_book(pair, limit, self._scales_of(pair)))

    async def trades(self, pair: str, last: int = 50) -> list[Trade]:
        """The pair's last trades (``last`` up to 50)."""
        return await self._run(api.trades(pair, last))

    async def ohlc(self, pair: str, from_s: int | None = None, to_s: int | None = None) -> list[Candle]:
        """Daily candles; ``from_s``/``to_s`` UTC seconds."""
        return await self._run(api.ohlc(pair, from_s, to_s))

    # private --------------------------------------------------------------------------------

    async def balances(self) -> list[Balance]:
        """The account's balances (signed)."""
        return await self._run(api.balances())

    async def open_orders(self, pair: str | None = None) -> list[Order]:
        """Open orders, of one pair or all (signed)."""
        return await self._run(api.open_orders(pair))

    async def all_orders(
        self,
        pair: str,
        *,
        order_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        page: int | None = None,
        limit: int | None = None,
    ) -> list[Order]:
        """Orders of a pair in every state (signed); times UTC ms."""
        return await self._run(
            api.all_orders(pair, order_id=order_id, start_ms=start_ms, end_ms=end_ms, page=page, limit=limit)
        )

    async def submit_order(
        self,
        pair: str,
        side: Side,
        quantity: Decimal | str,
        price: Decimal | str | None = None,
        *,
        method: OrderMethod = "limit",
        stop_price: Decimal | str | None = None,
        client_order_id: str | None = None,
    ) -> SubmittedOrder:
        """Place an order (signed; never retried). Quantity, price and stop price as
        ``Decimal`` or decimal strings; a float is refused."""
        return await self._run(
            api.submit_order(
                pair, side, quantity, price, method=method, stop_price=stop_price, client_order_id=client_order_id
            )
        )

    async def cancel_order(self, order_id: int) -> None:
        """Cancel an open order (signed; never retried)."""
        await self._run(api.cancel_order(order_id))

    async def user_trades(
        self,
        *,
        sides: Sequence[Side] = ("buy", "sell"),
        assets: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[UserTrade]:
        """The account's fills (signed); times UTC ms."""
        return await self._run(api.user_trades(sides=sides, assets=assets, start_ms=start_ms, end_ms=end_ms))

    async def crypto_transactions(
        self,
        *,
        types: Sequence[Literal["deposit", "withdrawal"]] = ("deposit", "withdrawal"),
        assets: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Transaction]:
        """Crypto deposits and withdrawals (signed); times UTC ms."""
        return await self._run(
            api.transactions("crypto", types=types, assets=assets, start_ms=start_ms, end_ms=end_ms)
        )

    async def fiat_transactions(
        self,
        *,
        types: Sequence[Literal["deposit", "withdrawal"]] = ("deposit", "withdrawal"),
        assets: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Transaction]:
        """Fiat deposits and withdrawals (signed); times UTC ms."""
        return await self._run(
            api.transactions("fiat", types=types, assets=assets, start_ms=start_ms, end_ms=end_ms)
        )


class SyncRestClient(_Base):
    """The synchronous twin of :class:`RestClient`: the same arguments, methods and results,
    for scripts and notebooks. Use it as ``with SyncRestClient(...) as rest:`` (or call
    :meth:`close`)."""

    def __init__(
        self,
        base_url: str = BTCTURK_API,
        graph_url: str = BTCTURK_GRAPH,
        signer: BtcTurkSigner | None = None,
        *,
        timeout_s: float = 10.0,
        policy: Policy | None = None,
        rate_limits: Mapping[str, int] | None = None,
    ) -> None:
        super().__init__(base_url, graph_url, signer, policy, rate_limits)
        self._http = httpx.Client(timeout=timeout_s, headers={"Accept": "application/json"})

    def __enter__(self) -> SyncRestClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections."""
        self._http.close()

    def _run(self, call: api.Call[T]) -> T:
        steps: _Step[T] = self._session.run(call)
        outcome: _Outcome = None
        while True:
            step = _resume(steps, outcome)
            if isinstance(step, _Done):
                return step.value  # type: ignore[no-any-return]
            if isinstance(step, api.Sleep):
                _log_sleep(step)
                time.sleep(step.seconds)
                outcome = None
                continue
            method, url, kwargs = self._request(step)
            started = time.perf_counter()
            try:
                outcome = self._reply(step, self._http.request(method, url, **kwargs), started)
            except httpx.HTTPError as exc:
                outcome = self._failure(step, exc, started)

    def server_time(self) -> int:
        """See :meth:`RestClient.server_time`."""
        return self._run(api.server_time())

    def exchange_info(self) -> ExchangeInfo:
        """See :meth:`RestClient.exchange_info`."""
        self._info = self._run(api.exchange_info())
        return self._info

    def scales(self) -> dict[str, tuple[int, int]]:
        """See :meth:`RestClient.scales`."""
        return self.exchange_info().scales()

    def ticker(self, pair: str | None = None) -> list[Ticker]:
        """See :meth:`RestClient.ticker`."""
        return self._run(api.ticker(pair))

    def order_book(self, pair: str, limit: int = 100) -> RestBook:
        """See :meth:`RestClient.order_book` (a REST book cannot seed a live book: no CS)."""
        if self._info is None:
            self.exchange_info()
        return self._run(api.order_book(pair, limit, self._scales_of(pair)))

    def trades(self, pair: str, last: int = 50) -> list[Trade]:
        """See :meth:`RestClient.trades`."""
        return self._run(api.trades(pair, last))

    def ohlc(self, pair: str, from_s: int | None = None, to_s: int | None = None) -> list[Candle]:
        """See :meth:`RestClient.ohlc`."""
        return self._run(api.ohlc(pair, from_s, to_s))

    def balances(self) -> list[Balance]:
        """See :meth:`RestClient.balances`."""
        return self._run(api.balances())

    def open_orders(self, pair: str | None = None) -> list[Order]:
        """See :meth:`RestClient.open_orders`."""
        return self._run(api.open_orders(pair))

    def all_orders(
        self,
        pair: str,
        *,
        order_id: int | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
        page: int | None = None,
        limit: int | None = None,
    ) -> list[Order]:
        """See :meth:`RestClient.all_orders`."""
        return self._run(
            api.all_orders(pair, order_id=order_id, start_ms=start_ms, end_ms=end_ms, page=page, limit=limit)
        )

    def submit_order(
        self,
        pair: str,
        side: Side,
        quantity: Decimal | str,
        price: Decimal | str | None = None,
        *,
        method: OrderMethod = "limit",
        stop_price: Decimal | str | None = None,
        client_order_id: str | None = None,
    ) -> SubmittedOrder:
        """See :meth:`RestClient.submit_order` (never retried)."""
        return self._run(
            api.submit_order(
                pair, side, quantity, price, method=method, stop_price=stop_price, client_order_id=client_order_id
            )
        )

    def cancel_order(self, order_id: int) -> None:
        """See :meth:`RestClient.cancel_order` (never retried)."""
        self._run(api.cancel_order(order_id))

    def user_trades(
        self,
        *,
        sides: Sequence[Side] = ("buy", "sell"),
        assets: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[UserTrade]:
        """See :meth:`RestClient.user_trades`."""
        return self._run(api.user_trades(sides=sides, assets=assets, start_ms=start_ms, end_ms=end_ms))

    def crypto_transactions(
        self,
        *,
        types: Sequence[Literal["deposit", "withdrawal"]] = ("deposit", "withdrawal"),
        assets: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Transaction]:
        """See :meth:`RestClient.crypto_transactions`."""
        return self._run(api.transactions("crypto", types=types, assets=assets, start_ms=start_ms, end_ms=end_ms))

    def fiat_transactions(
        self,
        *,
        types: Sequence[Literal["deposit", "withdrawal"]] = ("deposit", "withdrawal"),
        assets: Sequence[str] | None = None,
        start_ms: int | None = None,
        end_ms: int | None = None,
    ) -> list[Transaction]:
        """See :meth:`RestClient.fiat_transactions`."""
        return self._run(api.transactions("fiat", types=types, assets=assets, start_ms=start_ms, end_ms=end_ms))


# -- Kraken -----------------------------------------------------------------------------------


class _KrakenNonce:
    """Kraken wants every nonce of a key greater than the last: ms time, bumped when two calls
    fall in one ms."""

    last = 0

    @classmethod
    def next(cls) -> int:
        cls.last = max(cls.last + 1, time.time_ns() // 1_000_000)
        return cls.last


async def kraken_ws_token(signer: KrakenSigner, *, base_url: str = KRAKEN_API, timeout_s: float = 10.0) -> str:
    """A fresh token for Kraken's private websocket feeds (``POST
    /0/private/GetWebSocketsToken``). Tokens expire: fetch one on every (re)connect."""
    headers, body = api.kraken_token_request(signer, _KrakenNonce.next())
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as http:
            r = await http.post(_url(base_url, api.KRAKEN_TOKEN_PATH), headers=headers, content=body)
    except httpx.HTTPError as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}", endpoint=f"POST {api.KRAKEN_TOKEN_PATH}") from None
    return api.kraken_token_decode(api.Reply(r.status_code, r.headers, r.content))


def kraken_ws_token_sync(signer: KrakenSigner, *, base_url: str = KRAKEN_API, timeout_s: float = 10.0) -> str:
    """The synchronous twin of :func:`kraken_ws_token`."""
    headers, body = api.kraken_token_request(signer, _KrakenNonce.next())
    try:
        with httpx.Client(timeout=timeout_s) as http:
            r = http.post(_url(base_url, api.KRAKEN_TOKEN_PATH), headers=headers, content=body)
    except httpx.HTTPError as exc:
        raise TransportError(f"{type(exc).__name__}: {exc}", endpoint=f"POST {api.KRAKEN_TOKEN_PATH}") from None
    return api.kraken_token_decode(api.Reply(r.status_code, r.headers, r.content))
