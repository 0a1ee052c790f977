"""The REST client against the simulated exchange on loopback: calls per second, and the
client's own cost per call beside a floor measured in the same run.

- ``httpx-floor`` (sync) / ``httpx-async-floor``: a bare ``httpx`` GET of the ticker and
  ``json.loads(body, parse_float=Decimal)``: the least any exact client must do per call.
- ``obengine-sync`` / ``obengine-async``: ``SyncRestClient.ticker(pair)`` / ``RestClient.ticker``:
  the same request through the session (rate limiter, retries policy, decoding into typed
  ``Ticker``s).
- ``obengine-decode-only``: the session and the decoding alone, on a canned answer, no socket:
  the client's own overhead per call.

The simulator's rate limits are off here (a benchmark is a burst by design), and so are the
client's. Not gated: the figures depend on the simulator's server, which runs in this process.
"""
from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from obengine import _restapi as api
from obengine.rest import RestClient, SyncRestClient
from obengine.sim import RATE_LIMITS, SimExchange

PAIR = "BTCTRY"


@pytest.fixture(scope="module")
def sim() -> Iterator[SimExchange]:
    with SimExchange.in_thread(pairs=4, seed=2, rate_limits={k: None for k in RATE_LIMITS}) as server:
        yield server


def _calls(short: bool) -> int:
    return 50 if short else 300


def _bench(benchmark: Any, path: str, kind: str, calls: int, run: Callable[[], None], short: bool) -> None:
    benchmark.extra_info.update(
        {"workload": "rest-ticker", "path": path, "kind": kind, "exact": True, "frames": calls, "changes": 0}
    )
    benchmark.pedantic(run, rounds=3 if short else 10, warmup_rounds=1, iterations=1)


def test_rest_sync(benchmark: Any, sim: SimExchange, short: bool) -> None:
    calls = _calls(short)
    with SyncRestClient(sim.url, sim.graph_url, rate_limits={}) as client:
        def run() -> None:
            for _ in range(calls):
                client.ticker(PAIR)

        run()
        assert client.ticker(PAIR)[0].bid == sim.market.ticker(PAIR).bid
        _bench(benchmark, "obengine-sync", "obengine", calls, run, short)


def test_rest_sync_floor(benchmark: Any, sim: SimExchange, short: bool) -> None:
    calls = _calls(short)
    url = f"{sim.url}/api/v2/ticker"
    with httpx.Client() as http:
        def run() -> None:
            for _ in range(calls):
                json.loads(http.get(url, params={"pairSymbol": PAIR}).content, parse_float=Decimal)

        run()
        _bench(benchmark, "httpx-floor", "floor", calls, run, short)


def test_rest_async(benchmark: Any, sim: SimExchange, short: bool) -> None:
    calls = _calls(short)
    loop = asyncio.new_event_loop()
    client = RestClient(sim.url, sim.graph_url, rate_limits={})

    async def many() -> None:
        for _ in range(calls):
            await client.ticker(PAIR)

    try:
        loop.run_until_complete(many())
        _bench(benchmark, "obengine-async", "obengine", calls, lambda: loop.run_until_complete(many()), short)
    finally:
        loop.run_until_complete(client.aclose())
        loop.close()


def test_rest_async_floor(benchmark: Any, sim: SimExchange, short: bool) -> None:
    calls = _calls(short)
    loop = asyncio.new_event_loop()
    http = httpx.AsyncClient()
    url = f"{sim.url}/api/v2/ticker"

    async def many() -> None:
        for _ in range(calls):
            r = await http.get(url, params={"pairSymbol": PAIR})
            json.loads(r.content, parse_float=Decimal)

    try:
        loop.run_until_complete(many())
        _bench(benchmark, "httpx-async-floor", "floor-async", calls, lambda: loop.run_until_complete(many()), short)
    finally:
        loop.run_until_complete(http.aclose())
        loop.close()


def test_rest_decode_only(benchmark: Any, sim: SimExchange, short: bool) -> None:
    """The session and decoding with no socket: a canned answer of the real endpoint."""
    body = httpx.get(f"{sim.url}/api/v2/ticker", params={"pairSymbol": PAIR}).content
    reply = api.Reply(200, {}, body)
    session = api.Session(limiter=api.RateLimiter({}))
    calls = _calls(short) * 10

    def run() -> None:
        for _ in range(calls):
            steps = session.run(api.ticker(PAIR))
            next(steps)
            try:
                steps.send(reply)
            except StopIteration:
                pass

    run()
    _bench(benchmark, "obengine-decode-only", "decode", calls, run, short)
