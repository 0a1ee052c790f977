"""The simulated exchange's REST side (``obengine.sim.SimExchange``): a real server on loopback,
real HTTP requests with ``httpx`` (and raw sockets where the bytes matter). Signatures are
computed here with ``hmac`` directly, as an oracle independent of ``obengine.auth``. No timed
assertions."""
from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

import obengine
from obengine.sim import (
    DEMO_KRAKEN_API_KEY,
    DEMO_KRAKEN_SECRET,
    DEMO_PRIVATE_KEY,
    DEMO_PUBLIC_KEY,
    Faults,
    SimExchange,
)
from obengine.sim import _json

T = TypeVar("T")

PAIRS = ["BTCTRY", "ETHUSDT", "XRPTRY", "USDTTRY"]
PACKAGE_ROOT = str(Path(obengine.__file__).resolve().parent.parent)
MAKER = Decimal("0.0005")
TAKER = Decimal("0.0009")


# -- helpers -------------------------------------------------------------------------------


def run(scenario: Callable[[SimExchange, httpx.AsyncClient], Awaitable[T]], **options: Any) -> T:
    """Run ``scenario(sim, client)`` against a fresh server (pairs :data:`PAIRS` by default)."""
    options.setdefault("pairs", PAIRS)

    async def main() -> T:
        async with SimExchange(**options) as sim:
            async with httpx.AsyncClient(base_url=sim.url, timeout=30) as client:
                return await scenario(sim, client)

    return asyncio.run(main())


def sign(sim: SimExchange, stamp: int | None = None, public: str = DEMO_PUBLIC_KEY,
         private: str = DEMO_PRIVATE_KEY) -> dict[str, str]:
    """BtcTurk's headers, computed here: base64(HMAC-SHA256(b64decode(private), public + stamp))."""
    stamp = sim.now_ms() if stamp is None else stamp
    mac = hmac.new(base64.b64decode(private), f"{public}{stamp}".encode(), hashlib.sha256).digest()
    return {"X-PCK": public, "X-Stamp": str(stamp), "X-Signature": base64.b64encode(mac).decode()}


def kraken_headers(path: str, nonce: int, body: str, key: str = DEMO_KRAKEN_API_KEY,
                   secret: str = DEMO_KRAKEN_SECRET) -> dict[str, str]:
    digest = hashlib.sha256(f"{nonce}{body}".encode()).digest()
    mac = hmac.new(base64.b64decode(secret), path.encode() + digest, hashlib.sha512).digest()
    return {"API-Key": key, "API-Sign": base64.b64encode(mac).decode(),
            "Content-Type": "application/x-www-form-urlencoded"}


def doc(resp: httpx.Response) -> Any:
    """The body, numbers as exact Decimals (a float would fail the test)."""
    return json.loads(resp.content, parse_float=Decimal)


async def private(sim: SimExchange, client: httpx.AsyncClient, path: str) -> Any:
    """The body of a signed GET of ``path``."""
    return doc(await client.get(path, headers=sign(sim)))


def dec(text: str) -> Decimal:
    return Decimal(text.replace(",", "."))


def balances(body: Any) -> dict[str, dict[str, Any]]:
    return {b["asset"]: b for b in body["data"]}


# -- public endpoints ----------------------------------------------------------------------


def test_exchange_info_lists_pairs_with_scales_filters_as_16_decimal_numbers_and_currencies() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        resp = await client.get("/api/v2/server/exchangeinfo")
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("application/json")
        body = doc(resp)
        assert body["success"] is True and body["code"] == 0
        symbols = {s["name"]: s for s in body["data"]["symbols"]}
        assert list(symbols) == PAIRS
        btc = symbols["BTCTRY"]
        assert btc["nameNormalized"] == "BTC_TRY" and btc["status"] == "TRADING"
        assert (btc["numerator"], btc["denominator"]) == ("BTC", "TRY")
        assert btc["numeratorScale"] == 8
        assert btc["hasFraction"] is False and btc["denominatorScale"] == 2  # price scale 0
        eth = symbols["ETHUSDT"]
        assert eth["hasFraction"] is True and eth["denominatorScale"] == 1 and eth["numeratorScale"] == 8
        assert btc["orderMethods"] == ["MARKET", "LIMIT", "STOP_MARKET", "STOP_LIMIT"]
        price_filter = btc["filters"][0]
        assert price_filter["filterType"] == "PRICE_FILTER"
        assert price_filter["minPrice"] == Decimal(1) and price_filter["tickSize"] == "1"
        assert "minExchangeValue" in price_filter
        # the limit prices are JSON numbers written with 16 decimals
        assert '"minPrice":1.0000000000000000,' in resp.text
        assert '"minPrice":0.1000000000000000,' in resp.text  # ETHUSDT, price scale 1
        currencies = {c["symbol"]: c["precision"] for c in body["data"]["currencies"]}
        assert currencies["TRY"] == 2 and currencies["BTC"] == 8 and currencies["XRP"] == 4

    run(scenario)


def test_server_time_is_a_bare_object_with_ms_and_iso_of_the_servers_clock() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        before = time.time_ns() // 1_000_000
        body = doc(await client.get("/api/v2/server/time"))
        after = time.time_ns() // 1_000_000
        assert set(body) == {"serverTime", "serverTime2"}
        assert isinstance(body["serverTime"], int) and before <= body["serverTime"] <= after
        iso = datetime.fromisoformat(body["serverTime2"])
        assert int(iso.timestamp() * 1000) == body["serverTime"]

        sim.clock_offset_ms = -3_600_000
        shifted = doc(await client.get("/api/v2/server/time"))["serverTime"]
        assert shifted <= time.time_ns() // 1_000_000 - 3_600_000 + 1

    run(scenario)


def test_ticker_numbers_are_exact_json_numbers_from_the_book_and_trades() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        every = doc(await client.get("/api/v2/ticker"))
        assert [t["pair"] for t in every["data"]] == PAIRS
        resp = await client.get("/api/v2/ticker", params={"pairSymbol": "BTC_TRY"})
        body = doc(resp)
        (t,) = body["data"]
        assert list(t) == [
            "pair", "pairNormalized", "timestamp", "last", "high", "low", "bid", "ask", "open",
            "volume", "average", "daily", "dailyPercent", "denominatorSymbol", "numeratorSymbol",
        ]
        assert (t["pair"], t["pairNormalized"]) == ("BTCTRY", "BTC_TRY")
        bids, asks = sim.market.levels("BTCTRY", 1)
        assert t["bid"] == bids[0][0] and t["ask"] == asks[0][0]
        assert t["last"] == sim.market.trades("BTCTRY", 1)[0].price
        assert isinstance(t["volume"], Decimal) and t["volume"] > 0
        assert f'"volume":{format(t["volume"], "f")}' in resp.text  # a number, not a string
        assert t["low"] <= t["last"] <= t["high"]
        assert t["daily"] == t["last"] - t["open"]
        # one pair spelled either way; an unknown pair is 200 with an empty list
        assert doc(await client.get("/api/v2/ticker?pairSymbol=BTCTRY"))["data"][0]["pair"] == "BTCTRY"
        unknown = await client.get("/api/v2/ticker?pairSymbol=NOPEUSDT")
        assert unknown.status_code == 200 and doc(unknown)["data"] == []
        usdt = doc(await client.get("/api/v2/ticker/currency?symbol=USDT"))["data"]
        assert [t["pair"] for t in usdt] == ["ETHUSDT"]

    run(scenario)


def test_order_book_levels_equal_the_truth_fixed_width_with_a_float_timestamp() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        resp = await client.get("/api/v2/orderbook", params={"pairSymbol": "XRP_TRY", "limit": 5})
        body = doc(resp)
        data = body["data"]
        assert isinstance(data["timestamp"], Decimal) and str(data["timestamp"]).endswith(".0")
        bids, asks = sim.market.levels("XRPTRY", 5)
        assert len(data["bids"]) == len(data["asks"]) == 5
        assert [(Decimal(p), Decimal(a)) for p, a in data["bids"]] == bids
        assert [(Decimal(p), Decimal(a)) for p, a in data["asks"]] == asks
        for price, amount in data["bids"] + data["asks"]:
            assert isinstance(price, str) and len(price.split(".")[1]) == 2  # XRPTRY: 2 / 4
            assert len(amount.split(".")[1]) == 4
        # BTCTRY prices have no fraction but are written with denominatorScale (2) places
        btc = doc(await client.get("/api/v2/orderbook?pairSymbol=BTCTRY"))["data"]
        assert len(btc["bids"]) == 100  # the default limit, the window of the simulated book
        assert all(p.endswith(".00") for p, _ in btc["bids"] + btc["asks"])
        assert Decimal(btc["bids"][0][0]) < Decimal(btc["asks"][0][0])
        # the advance moves it
        sim.market.advance(200)
        moved = doc(await client.get("/api/v2/orderbook?pairSymbol=BTCTRY&limit=1000"))["data"]
        truth_bids, truth_asks = sim.market.levels("BTCTRY")
        assert [(Decimal(p), Decimal(a)) for p, a in moved["asks"]] == truth_asks
        assert [(Decimal(p), Decimal(a)) for p, a in moved["bids"]] == truth_bids
        # an unknown pair is the exchange's 400
        missing = await client.get("/api/v2/orderbook?pairSymbol=NOPEUSDT")
        assert missing.status_code == 400
        assert doc(missing) == {"success": False, "message": "Pair NOPEUSDT does not exists.",
                                "code": 1037, "data": None}

    run(scenario)


def test_trades_are_newest_first_at_the_pairs_scales_at_most_50() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        body = doc(await client.get("/api/v2/trades?pairSymbol=BTC_TRY&last=3"))
        trades = body["data"]
        assert len(trades) == 3
        assert list(trades[0]) == ["pair", "pairNormalized", "numerator", "denominator", "date",
                                   "tid", "price", "amount"]
        assert [t["date"] for t in trades] == sorted((t["date"] for t in trades), reverse=True)
        truth = sim.market.trades("BTCTRY", 3)
        assert [(t["tid"], Decimal(t["price"]), Decimal(t["amount"])) for t in trades] == [
            (t.tid, t.price, t.amount) for t in truth
        ]
        for t in trades:
            assert "." not in t["price"] and len(t["amount"].split(".")[1]) == 8
        sim.market.advance(2000)  # synthetic trades on about 30% of the frames
        many = doc(await client.get("/api/v2/trades?pairSymbol=BTCTRY&last=500"))["data"]
        assert len(many) == 50
        default = doc(await client.get("/api/v2/trades?pairSymbol=BTCTRY"))["data"]
        assert len(default) == 50 and default[0]["tid"] == many[0]["tid"]

    run(scenario)


def test_ohlcs_is_a_bare_list_of_daily_candles_filtered_by_seconds() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        resp = await client.get("/v1/ohlcs?pair=BTC_TRY")
        candles = doc(resp)
        assert isinstance(candles, list) and len(candles) >= 31
        assert list(candles[0]) == ["pair", "time", "open", "high", "low", "close", "volume", "total",
                                    "average", "dailyChangeAmount", "dailyChangePercentage"]
        times = [c["time"] for c in candles]
        assert times == sorted(times) and all(t % 86400 == 0 for t in times)
        for c in candles:
            assert c["pair"] == "BTCTRY"
            assert c["low"] <= min(c["open"], c["close"]) <= max(c["open"], c["close"]) <= c["high"]
            assert c["dailyChangeAmount"] == c["close"] - c["open"]
            assert isinstance(c["volume"], Decimal) and c["volume"] > 0
        assert '"open":' in resp.text and '"open":"' not in resp.text  # numbers
        window = doc(await client.get(f"/v1/ohlcs?pair=BTCTRY&from={times[-5]}&to={times[-3]}"))
        assert [c["time"] for c in window] == times[-5:-2]
        assert doc(await client.get("/v1/ohlcs?pair=NOPE_USDT")) == []

    run(scenario)


def test_unknown_paths_are_404_and_wrong_methods_405() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        missing = await client.get("/api/v2/nothing")
        assert missing.status_code == 404 and doc(missing)["success"] is False
        wrong = await client.put("/api/v2/ticker")
        assert wrong.status_code == 405 and wrong.headers["allow"] == "GET"
        # paths are case-insensitive, as the exchange's are
        assert (await client.get("/api/v2/orderBook?pairSymbol=BTCTRY&limit=1")).status_code == 200

    run(scenario)


# -- HTTP ----------------------------------------------------------------------------------


def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        for _ in range(5):
            assert (await client.get("/api/v2/server/time")).status_code == 200
        order = await client.post("/api/v1/order", headers=sign(sim), json={
            "quantity": "0.001", "price": "1000000", "orderMethod": "limit", "orderType": "buy",
            "pairSymbol": "BTCTRY"})
        assert order.status_code == 200
        assert (await client.get("/api/v1/users/balances", headers=sign(sim))).status_code == 200
        assert sim.connections == 1 and sim.requests == 7

        # two requests pipelined in one write, on a raw socket
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        writer.write(b"GET /api/v2/server/time HTTP/1.1\r\nHost: x\r\n\r\n"
                     b"GET /api/v2/ticker?pairSymbol=BTCTRY HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        await writer.drain()
        raw = await reader.read()  # the server closes after the second (Connection: close)
        writer.close()
        assert raw.count(b"HTTP/1.1 200 ") == 2 and b'"serverTime"' in raw and b'"BTC_TRY"' in raw
        assert sim.connections == 2

    run(scenario)


def test_bad_requests_are_answered_and_closed() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        writer.write(b"THIS IS NOT HTTP\r\n\r\n")
        await writer.drain()
        raw = await reader.read()
        writer.close()
        assert raw.startswith(b"HTTP/1.1 400 ")
        # a body that is not JSON
        resp = await client.post("/api/v1/order", headers=sign(sim), content=b"{nope")
        assert resp.status_code == 400 and doc(resp)["success"] is False

    run(scenario)


# -- authentication ------------------------------------------------------------------------


def test_signed_endpoints_refuse_missing_headers_unknown_keys_stale_stamps_and_bad_signatures() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        path = "/api/v1/users/balances"
        missing = await client.get(path)
        assert missing.status_code == 401
        assert doc(missing)["message"] == "Unauthorized - Headers are missing"
        assert doc(missing)["success"] is False

        partial = sign(sim)
        del partial["X-Signature"]
        assert doc(await client.get(path, headers=partial))["message"] == "Unauthorized - Headers are missing"

        other_private = base64.b64encode(bytes(range(32))).decode()
        unknown = await client.get(path, headers=sign(sim, public="not-a-key", private=other_private))
        assert unknown.status_code == 401
        assert doc(unknown)["message"] == "Unauthorized - Invalid Public key"

        stale = await client.get(path, headers=sign(sim, stamp=sim.now_ms() - 6000))
        assert stale.status_code == 401
        assert doc(stale) == {"success": True, "message": "Unauthorized - Invalid Nonce", "code": 1037}
        future = await client.get(path, headers=sign(sim, stamp=sim.now_ms() + 60_000))
        assert doc(future)["message"] == "Unauthorized - Invalid Nonce"
        garbage = {**sign(sim), "X-Stamp": "soon"}
        assert doc(await client.get(path, headers=garbage))["message"] == "Unauthorized - Invalid Nonce"

        wrong = await client.get(path, headers=sign(sim, private=other_private))
        assert wrong.status_code == 401
        assert doc(wrong)["message"] == "Unauthorized - Invalid Signature"
        # a signature of another stamp
        headers = sign(sim)
        headers["X-Stamp"] = str(int(headers["X-Stamp"]) - 1)
        assert doc(await client.get(path, headers=headers))["message"] == "Unauthorized - Invalid Signature"

        ok = await client.get(path, headers=sign(sim))
        assert ok.status_code == 200 and doc(ok)["success"] is True
        # public endpoints need nothing
        assert (await client.get("/api/v2/ticker")).status_code == 200

    run(scenario)


def test_other_api_keys_can_be_configured() -> None:
    private = base64.b64encode(hashlib.sha256(b"k").digest()).decode()

    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        mine = await client.get("/api/v1/openOrders", headers=sign(sim, public="mine", private=private))
        assert mine.status_code == 200
        demo = await client.get("/api/v1/openOrders", headers=sign(sim))
        assert doc(demo)["message"] == "Unauthorized - Invalid Public key"

    run(scenario, api_keys={"mine": private})


def test_clock_offset_moves_the_nonce_window() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        sim.clock_offset_ms = 60_000  # the server is a minute ahead of this machine
        local = time.time_ns() // 1_000_000
        server_ms = doc(await client.get("/api/v2/server/time"))["serverTime"]
        assert server_ms >= local + 60_000
        stale = await client.get("/api/v1/users/balances", headers=sign(sim, stamp=local))
        assert doc(stale)["message"] == "Unauthorized - Invalid Nonce"
        synced = await client.get("/api/v1/users/balances", headers=sign(sim, stamp=server_ms))
        assert synced.status_code == 200
        sim.clock_offset_ms = 0
        assert (await client.get("/api/v1/users/balances", headers=sign(sim, stamp=local))).status_code == 200

    run(scenario)


# -- rate limits ---------------------------------------------------------------------------


def test_rate_limits_answer_429_with_retry_after_per_bucket_and_key() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        for _ in range(2):
            assert (await client.get("/api/v2/ticker")).status_code == 200
        limited = await client.get("/api/v2/ticker?pairSymbol=BTCTRY")
        assert limited.status_code == 429
        retry = int(limited.headers["retry-after"])
        assert 1 <= retry <= 60
        assert doc(limited)["success"] is False and doc(limited)["code"] == 429
        assert (await client.get("/api/v2/ticker/currency?symbol=TRY")).status_code == 429  # same bucket
        assert (await client.get("/api/v2/orderbook?pairSymbol=BTCTRY")).status_code == 200  # another

        # /api/v1/*: per public key, the overall bucket and the endpoint's
        for _ in range(3):
            assert (await client.get("/api/v1/openOrders", headers=sign(sim))).status_code == 200
        over = await client.get("/api/v1/allOrders?pairSymbol=BTCTRY", headers=sign(sim))
        assert over.status_code == 429 and int(over.headers["retry-after"]) >= 1
        private = base64.b64encode(b"x" * 32).decode()
        other = await client.get("/api/v1/openOrders", headers=sign(sim, public="other", private=private))
        assert other.status_code == 200  # another key has its own window

    run(scenario, rate_limits={"GET /api/v2/ticker": 2, "/api/v1/*": 3},
        api_keys={DEMO_PUBLIC_KEY: DEMO_PRIVATE_KEY, "other": base64.b64encode(b"x" * 32).decode()})


def test_default_rate_limits_are_the_exchanges() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        for _ in range(60):
            assert (await client.get("/api/v2/orderbook?pairSymbol=BTCTRY&limit=1")).status_code == 200
        assert (await client.get("/api/v2/orderbook?pairSymbol=BTCTRY&limit=1")).status_code == 429

    run(scenario, pairs=["BTCTRY"])


# -- faults --------------------------------------------------------------------------------


def test_fault_status_answers_the_envelope_then_the_next_request_is_normal() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        rule = sim.faults.add("status", status=503, path="/api/v2/ticker")
        assert (await client.get("/api/v2/orderbook?pairSymbol=BTCTRY")).status_code == 200  # not matched
        maintenance = await client.get("/api/v2/ticker")
        assert maintenance.status_code == 503
        body = doc(maintenance)
        assert body["success"] is False and body["code"] == 503 and "maintenance" in body["message"]
        assert rule.fired == 1 and len(sim.faults) == 0
        assert (await client.get("/api/v2/ticker")).status_code == 200

        sim.faults.add("status", times=2, message="boom", code=77)  # any path, 500
        for _ in range(2):
            failed = await client.get("/api/v2/server/time")
            assert failed.status_code == 500 and doc(failed)["message"] == "boom" and doc(failed)["code"] == 77
        assert (await client.get("/api/v2/server/time")).status_code == 200
        assert sim.faults.fired == 3

    run(scenario)


def test_fault_rate_limited_delay_success_false_and_nonzero_code() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        sim.faults.add("rate_limited", retry_after_s=7)
        limited = await client.get("/api/v2/ticker")
        assert limited.status_code == 429 and limited.headers["retry-after"] == "7"

        rule = sim.faults.add("delay", delay_s=0.05, method="GET")
        delayed = await client.get("/api/v2/server/time")
        assert delayed.status_code == 200 and "serverTime" in doc(delayed) and rule.fired == 1

        sim.faults.add("success_false", message="FAILED_SOMETHING", code=1234, path="/api/v1/")
        refused = await client.get("/api/v1/users/balances", headers=sign(sim))
        assert refused.status_code == 200
        assert doc(refused) == {"success": False, "message": "FAILED_SOMETHING", "code": 1234, "data": None}

        sim.faults.add("nonzero_code")
        odd = await client.get("/api/v2/ticker")
        assert odd.status_code == 200
        assert doc(odd) == {"success": True, "message": "Unauthorized - Invalid Nonce", "code": 1037, "data": None}

    run(scenario)


def test_fault_malformed_wrong_shape_disconnect() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        sim.faults.add("malformed")
        html = await client.get("/api/v2/ticker")
        assert html.status_code == 200 and html.headers["content-type"].startswith("text/html")
        with pytest.raises(ValueError):
            json.loads(html.content)

        sim.faults.add("wrong_shape", times=4)
        assert isinstance(doc(await client.get("/api/v2/ticker"))["data"], str)  # a list promised
        book = doc(await client.get("/api/v2/orderbook?pairSymbol=BTCTRY"))
        assert book["success"] is True and isinstance(book["data"], list)  # an object promised
        assert isinstance(doc(await client.get("/v1/ohlcs?pair=BTCTRY")), dict)  # a bare list promised
        assert isinstance(doc(await client.get("/api/v2/server/time")), list)  # a bare object promised

        sim.faults.add("disconnect", path="/api/v2/trades")
        with pytest.raises(httpx.TransportError):
            await client.get("/api/v2/trades?pairSymbol=BTCTRY")
        assert (await client.get("/api/v2/trades?pairSymbol=BTCTRY")).status_code == 200

    run(scenario)


def test_fault_truncated_sends_part_of_the_promised_body_then_closes() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        sim.faults.add("truncated", path="/api/v2/ticker")
        reader, writer = await asyncio.open_connection(sim.host, sim.port)
        writer.write(b"GET /api/v2/ticker HTTP/1.1\r\nHost: x\r\n\r\n")
        await writer.drain()
        raw = await reader.read()  # until the server closes
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 ")
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                          if line.lower().startswith(b"content-length:")))
        assert 0 < len(body) < length

        sim.faults.add("truncated", path="/api/v2/ticker")
        with pytest.raises(httpx.TransportError):
            await client.get("/api/v2/ticker")
        assert (await client.get("/api/v2/ticker")).status_code == 200

    run(scenario)


def test_fault_rules_validate_their_arguments() -> None:
    faults = Faults()
    with pytest.raises(ValueError):
        faults.add("teapot")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        faults.add("delay", status=500)
    rule = faults.add("rate_limited", times=None, path="/api/v1/")
    assert faults.take("GET", "/api/v2/ticker") is None
    assert faults.take("GET", "/API/V1/openOrders") is rule
    assert faults.take("POST", "/api/v1/order") is rule and rule.fired == 2 and len(faults) == 1
    faults.clear()
    assert faults.take("GET", "/api/v1/order") is None


# -- orders and the account ----------------------------------------------------------------


async def submit(sim: SimExchange, client: httpx.AsyncClient, **fields: Any) -> httpx.Response:
    """POST /api/v1/order; a Decimal field is sent as a JSON number with its exact digits."""
    body = {"stopPrice": "0", "newOrderClientId": "test", "orderMethod": "limit", **fields}
    return await client.post("/api/v1/order", headers={**sign(sim), "Content-Type": "application/json"},
                             content=_json.dumps(body))


async def get_balances(sim: SimExchange, client: httpx.AsyncClient) -> dict[str, dict[str, Any]]:
    return balances(await private(sim, client, "/api/v1/users/balances"))


def test_balances_use_comma_decimals_with_every_field() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        resp = await client.get("/api/v1/users/balances", headers=sign(sim))
        got = balances(doc(resp))
        assert list(got)[:3] == ["TRY", "USDT", "BTC"]
        tl = got["TRY"]
        assert list(tl) == ["asset", "assetname", "balance", "locked", "free", "orderFund",
                            "requestFund", "precision"]
        assert tl["assetname"] == "Türk Lirası" and tl["precision"] == 2
        assert tl["balance"] == "1000000,0000000000000000" and tl["locked"] == "0"
        assert dec(tl["free"]) == Decimal(1_000_000)
        assert got["BTC"]["balance"] == "10,0000000000000000"
        for b in got.values():
            assert dec(b["free"]) == dec(b["balance"]) - dec(b["locked"])
            assert "." not in b["balance"]

    run(scenario)


def test_balances_with_dots_when_asked() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        got = await get_balances(sim, client)
        assert got["TRY"]["balance"] == "1000000.0000000000000000"

    run(scenario, comma_decimals=False)


def test_limit_order_rests_locks_funds_fills_as_maker_and_moves_balances_exactly() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        bids, asks = sim.market.levels("BTCTRY", 1)
        price = asks[0][0] - 1  # inside the spread: rests
        assert price > bids[0][0]
        quantity = Decimal("0.001")
        resp = await submit(sim, client, quantity="0.001", price=str(price), orderType="buy",
                            pairSymbol="BTC_TRY", newOrderClientId="lifecycle")
        assert resp.status_code == 200
        body = doc(resp)
        assert body["success"] is True and body["message"] == "OK"
        submitted = body["data"]
        assert list(submitted) == ["id", "datetime", "type", "method", "price", "stopPrice", "quantity",
                                   "pairSymbol", "pairSymbolNormalized", "newOrderClientId"]
        assert (submitted["type"], submitted["method"]) == ("Buy", "Limit")
        assert submitted["price"] == f"{price}.00" and submitted["quantity"] == "0.001"
        assert (submitted["pairSymbol"], submitted["pairSymbolNormalized"]) == ("BTCTRY", "BTC_TRY")
        order_id = submitted["id"]

        open_ = (await private(sim, client, "/api/v1/openOrders?pairSymbol=BTCTRY"))["data"]
        assert open_["asks"] == []
        (resting,) = open_["bids"]
        assert resting["id"] == order_id and resting["status"] == "Untouched"
        assert resting["amount"] == resting["quantity"] == "0.001" and resting["orderClientId"] == "lifecycle"
        assert (resting["type"], resting["method"], resting["pairsymbol"]) == ("Buy", "Limit", "BTCTRY")

        locked = price * quantity * (1 + TAKER)
        got = await get_balances(sim, client)
        assert dec(got["TRY"]["locked"]) == locked == dec(got["TRY"]["orderFund"])
        assert dec(got["TRY"]["free"]) == Decimal(1_000_000) - locked

        for _ in range(2000):  # the market moves until its asks cross the order
            sim.market.advance(10)
            if not sim.market.order(order_id).is_open:
                break
        assert sim.market.order(order_id).status == "Filled"

        every = (await private(sim, client, "/api/v1/allOrders?pairSymbol=BTCTRY"))["data"]
        (order,) = [o for o in every if o["id"] == order_id]
        assert order["status"] == "Filled" and order["amount"] == "0" and order["quantity"] == "0.001"
        assert order["pairsymbolnormalized"] == "BTC_TRY"
        assert not (await private(sim, client, "/api/v1/openOrders"))["data"]["bids"]

        query = "type=buy&type=sell&symbol=btc"
        fills = (await private(sim, client, f"/api/v1/users/transactions/trade?{query}"))["data"]
        assert {f["orderId"] for f in fills} == {order_id}
        assert sum(f["amount"] for f in fills) == quantity
        assert all(f["price"] == price and f["orderType"] == "buy" for f in fills)
        fee = price * quantity * MAKER
        assert sum(f["fee"] for f in fills) == -fee
        got = await get_balances(sim, client)
        assert dec(got["TRY"]["balance"]) == Decimal(1_000_000) - price * quantity - fee
        assert dec(got["TRY"]["locked"]) == 0 and got["TRY"]["locked"] == "0"
        assert dec(got["BTC"]["balance"]) == Decimal(10) + quantity
        # the fill is also a public trade
        trades = doc(await client.get("/api/v2/trades?pairSymbol=BTCTRY&last=50"))["data"]
        assert any(Decimal(t["price"]) == price for t in trades)

    run(scenario, pairs=["BTCTRY", "ETHUSDT"])


def test_cancel_releases_the_lock_and_a_second_cancel_is_refused() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        bids, asks = sim.market.levels("ETHUSDT", 1)
        price = asks[0][0] + Decimal("1000.0")  # a sell far above: rests
        resp = await submit(sim, client, quantity=Decimal("0.12345678"), price=price, orderType="sell",
                            pairSymbol="ETHUSDT")
        order_id = doc(resp)["data"]["id"]
        assert doc(resp)["data"]["quantity"] == "0.12345678"
        got = await get_balances(sim, client)
        assert dec(got["ETH"]["locked"]) == Decimal("0.12345678")
        open_ = (await private(sim, client, "/api/v1/openOrders"))["data"]
        assert [o["id"] for o in open_["asks"]] == [order_id] and open_["asks"][0]["type"] == "Sell"

        cancel = await client.delete(f"/api/v1/order?id={order_id}", headers=sign(sim))
        assert cancel.status_code == 200
        assert doc(cancel) == {"success": True, "message": "SUCCESS", "code": 0, "data": {}}
        got = await get_balances(sim, client)
        assert got["ETH"]["locked"] == "0" and dec(got["ETH"]["free"]) == dec(got["ETH"]["balance"])
        orders = (await private(sim, client, "/api/v1/allOrders?pairSymbol=ETH_USDT"))["data"]
        assert [(o["id"], o["status"]) for o in orders] == [(order_id, "Canceled")]
        again = await client.delete(f"/api/v1/order?id={order_id}", headers=sign(sim))
        assert again.status_code == 404 and doc(again)["success"] is False
        unknown = await client.delete("/api/v1/order?id=1", headers=sign(sim))
        assert unknown.status_code == 404

    run(scenario)


def test_market_order_fills_against_the_levels_at_their_prices_as_taker() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        pair = "ETHUSDT"
        assert pair not in sim.market.feed.fine_amount_pairs
        _, asks = sim.market.levels(pair, 2)
        (p0, a0), (p1, a1) = asks
        part = (a1 / 2).quantize(Decimal("0.00000001"))
        quantity = a0 + part  # all of the best ask, part of the next
        before = await get_balances(sim, client)
        resp = await submit(sim, client, quantity=str(quantity), orderMethod="market", orderType="buy",
                            pairSymbol=pair, price="0")
        assert resp.status_code == 200, resp.text
        data = doc(resp)["data"]
        assert data["method"] == "Market"
        order = sim.market.order(data["id"])
        assert order.status == "Filled" and order.left == 0
        cost = p0 * a0 + p1 * part
        fee = cost * TAKER
        after = await get_balances(sim, client)
        assert dec(after["USDT"]["balance"]) == dec(before["USDT"]["balance"]) - cost - fee
        assert dec(after["ETH"]["balance"]) == dec(before["ETH"]["balance"]) + quantity
        assert after["USDT"]["locked"] == "0"
        fills = (await private(sim, client, "/api/v1/users/transactions/trade"))["data"]
        assert [(f["price"], f["amount"]) for f in reversed(fills)] == [(p0, a0), (p1, part)]
        assert sum(f["fee"] for f in fills) == -fee
        trades = doc(await client.get(f"/api/v2/trades?pairSymbol={pair}&last=2"))["data"]
        assert [(Decimal(t["price"]), Decimal(t["amount"])) for t in trades] == [(p1, part), (p0, a0)]

        # a market sell of ETH at the bids
        bids, _ = sim.market.levels(pair, 1)
        sell = await submit(sim, client, quantity="0.01", orderMethod="market", orderType="sell", pairSymbol=pair)
        assert sell.status_code == 200
        final = await get_balances(sim, client)
        proceeds = bids[0][0] * Decimal("0.01")
        assert dec(final["USDT"]["balance"]) == dec(after["USDT"]["balance"]) + proceeds - proceeds * TAKER

    run(scenario)


def test_order_errors_bad_scales_unknown_pair_balance_and_input() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        scale = await submit(sim, client, quantity="0.001", price="2000000.5", orderType="buy",
                             pairSymbol="BTCTRY")
        assert scale.status_code == 400
        assert scale.text == ('{"httpStatusCode":400,"data":null,"success":false,'
                              '"message":"FAILED_INVALID_PRICE_SCALE","code":1126}')
        # trailing zeros are fine; a JSON number is read exactly
        ok = await client.post("/api/v1/order", headers=sign(sim), content=(
            b'{"quantity":0.00100000,"price":1000000.00,"stopPrice":0,"newOrderClientId":"n",'
            b'"orderMethod":"limit","orderType":"buy","pairSymbol":"BTCTRY"}'))
        assert ok.status_code == 200 and doc(ok)["data"]["quantity"] == "0.001"

        quantity = await submit(sim, client, quantity="0.000000001", price="1000000", orderType="buy",
                                pairSymbol="BTCTRY")
        assert quantity.status_code == 400 and doc(quantity)["message"] == "FAILED_INVALID_QUANTITY_SCALE"

        nope = await submit(sim, client, quantity="1", price="1", orderType="buy", pairSymbol="NOPEUSDT")
        assert nope.status_code == 400
        assert doc(nope) == {"success": False, "message": "Pair NOPEUSDT does not exists.", "code": 1037,
                             "data": None}

        poor = await submit(sim, client, quantity="1000", price="2000000", orderType="buy", pairSymbol="BTCTRY")
        assert poor.status_code == 400 and doc(poor)["code"] == 502 and doc(poor)["success"] is False
        too_much = await submit(sim, client, quantity="11", price="1", orderType="sell", pairSymbol="BTCTRY")
        assert too_much.status_code == 400 and doc(too_much)["code"] == 502

        for bad in ({"quantity": "-1", "price": "1"}, {"quantity": "abc", "price": "1"},
                    {"quantity": "1", "price": "0"}, {"quantity": True, "price": "1"}):
            resp = await submit(sim, client, orderType="buy", pairSymbol="BTCTRY", **bad)
            assert resp.status_code == 400 and doc(resp)["success"] is False, bad
        assert (await submit(sim, client, quantity="1", price="1", orderType="hold",
                             pairSymbol="BTCTRY")).status_code == 400
        assert (await submit(sim, client, quantity="1", price="1", orderType="buy", orderMethod="iceberg",
                             pairSymbol="BTCTRY")).status_code == 400
        missing = await client.post("/api/v1/order", headers=sign(sim), json={"quantity": "1"})
        assert missing.status_code == 400

    run(scenario)


def test_stop_orders_wait_for_the_mid_then_trade() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        mid = sim.market.mid("BTCTRY")
        assert mid is not None
        far = int(mid) + 10_000_000
        waiting = await submit(sim, client, quantity="0.001", price=str(far), stopPrice=str(far),
                               orderMethod="stoplimit", orderType="buy", pairSymbol="BTCTRY")
        assert waiting.status_code == 200 and doc(waiting)["data"]["method"] == "StopLimit"
        assert doc(waiting)["data"]["stopPrice"] == f"{far}.00"
        order = sim.market.order(doc(waiting)["data"]["id"])
        assert order.status == "Untouched" and not order.triggered
        sim.market.advance(100)
        assert not sim.market.order(order.id).triggered

        crossed = await submit(sim, client, quantity="0.001", stopPrice=str(int(mid) + 10_000_000),
                               orderMethod="stopmarket", orderType="sell", pairSymbol="BTCTRY")
        assert crossed.status_code == 200  # the mid is below the stop: a sell stop triggers at once
        sold = sim.market.order(doc(crossed)["data"]["id"])
        assert sold.triggered and sold.status == "Filled"

    run(scenario, pairs=["BTCTRY"])


def test_all_orders_filters_and_pages() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        ids = []
        for i in range(5):
            resp = await submit(sim, client, quantity="0.001", price=str(1_000_000 + i), orderType="buy",
                                pairSymbol="BTCTRY")
            ids.append(doc(resp)["data"]["id"])
        path = "/api/v1/allOrders"
        every = (await private(sim, client, f"{path}?pairSymbol=BTCTRY"))["data"]
        assert [o["id"] for o in every] == ids[::-1]
        page2 = (await private(sim, client, f"{path}?pairSymbol=BTCTRY&limit=2&page=2"))["data"]
        assert [o["id"] for o in page2] == ids[::-1][2:4]
        since = (await private(sim, client, f"{path}?pairSymbol=BTCTRY&orderId={ids[3]}"))["data"]
        assert [o["id"] for o in since] == [ids[4], ids[3]]
        first_ms = sim.market.order(ids[0]).time_ms
        query = f"pairSymbol=BTCTRY&startTime={first_ms}&endTime={first_ms}"
        window = (await private(sim, client, f"{path}?{query}"))["data"]
        assert ids[0] in [o["id"] for o in window]
        assert (await private(sim, client, f"{path}?pairSymbol=XRPTRY"))["data"] == []
        missing = await client.get(path, headers=sign(sim))
        assert missing.status_code == 400

    run(scenario)


def test_user_transactions_filter_by_repeated_type_symbol_and_dates() -> None:
    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        crypto = await private(sim, client, "/api/v1/users/transactions/crypto")
        assert crypto["success"] is True and crypto["message"] == "SUCCESS"
        assert crypto["data"] and all(t["currencySymbol"] != "TRY" for t in crypto["data"])
        first = crypto["data"][0]
        assert list(first) == ["balanceType", "currencySymbol", "id", "timestamp", "funds", "amount", "fee", "tax"]
        fiat = (await private(sim, client, "/api/v1/users/transactions/fiat?type=deposit"))["data"]
        assert [t["currencySymbol"] for t in fiat] == ["TRY"] and fiat[0]["balanceType"] == "Deposit"
        withdrawals = (await private(sim, client, "/api/v1/users/transactions/fiat?type=withdrawal"))["data"]
        # the seeded deposit and withdrawal add up to the starting balance
        assert fiat[0]["amount"] + sum(t["amount"] for t in withdrawals) == Decimal(1_000_000)
        assert all(t["amount"] < 0 for t in withdrawals)
        btc = (await private(sim, client, "/api/v1/users/transactions/crypto?symbol=btc&symbol=xrp"))["data"]
        assert {t["currencySymbol"] for t in btc} == {"BTC", "XRP"}
        now = sim.now_ms()
        late = (await private(sim, client, f"/api/v1/users/transactions/crypto?startDate={now}"))["data"]
        assert late == []
        posted = await client.post("/api/v1/users/transactions/crypto?symbol=btc", headers=sign(sim))
        assert posted.status_code == 200  # the reference's heading says POST
        assert doc(posted)["data"] == [t for t in btc if t["currencySymbol"] == "BTC"]

        await submit(sim, client, quantity="1", orderMethod="market", orderType="sell", pairSymbol="XRPTRY")
        await submit(sim, client, quantity="0.001", orderMethod="market", orderType="buy", pairSymbol="BTCTRY")
        sells = (await private(sim, client, "/api/v1/users/transactions/trade?type=sell"))["data"]
        assert sells and all(f["orderType"] == "sell" and f["amount"] < 0 for f in sells)
        assert all(f["numeratorSymbol"] == "XRP" for f in sells)
        query = "type=buy&type=sell&symbol=btc"
        btc_fills = (await private(sim, client, f"/api/v1/users/transactions/trade?{query}"))["data"]
        assert btc_fills and all(f["numeratorSymbol"] == "BTC" for f in btc_fills)
        both = (await private(sim, client, "/api/v1/users/transactions/trade?symbol=try"))["data"]
        assert len(both) == len(sells) + len(btc_fills)

    run(scenario)


# -- Kraken --------------------------------------------------------------------------------


def test_kraken_websocket_token_needs_a_valid_signature_and_a_rising_nonce() -> None:
    path = "/0/private/GetWebSocketsToken"

    async def scenario(sim: SimExchange, client: httpx.AsyncClient) -> None:
        nonce = time.time_ns() // 1_000_000
        body = f"nonce={nonce}"
        ok = await client.post(path, headers=kraken_headers(path, nonce, body), content=body)
        assert ok.status_code == 200
        result = doc(ok)
        assert result["error"] == [] and result["result"]["expires"] == 900
        token = result["result"]["token"]
        assert isinstance(token, str) and len(token) >= 20

        replay = await client.post(path, headers=kraken_headers(path, nonce, body), content=body)
        assert replay.status_code == 200 and doc(replay) == {"error": ["EAPI:Invalid nonce"]}

        later = nonce + 1
        other_secret = base64.b64encode(bytes(64)).decode()
        bad = await client.post(path, headers=kraken_headers(path, later, f"nonce={later}", secret=other_secret),
                                content=f"nonce={later}")
        assert bad.status_code == 200 and doc(bad) == {"error": ["EAPI:Invalid signature"]}
        unknown = await client.post(path, headers=kraken_headers(path, later, f"nonce={later}", key="nobody"),
                                    content=f"nonce={later}")
        assert doc(unknown) == {"error": ["EAPI:Invalid key"]}

        fresh = await client.post(path, headers=kraken_headers(path, later, f"nonce={later}"),
                                  content=f"nonce={later}")
        assert doc(fresh)["result"]["token"] != token

    run(scenario)


# -- thread mode and the command line ------------------------------------------------------


def test_thread_mode_serves_a_sync_client_and_stops_cleanly() -> None:
    before = {t.name for t in threading.enumerate()}
    with SimExchange.in_thread(pairs=["BTCTRY", "XRPTRY"], seed=3) as sim:
        assert any(t.name == "obengine-sim" for t in threading.enumerate())
        with httpx.Client(base_url=sim.url, timeout=30) as client:
            tickers = client.get("/api/v2/ticker").json()["data"]
            assert [t["pair"] for t in tickers] == ["BTCTRY", "XRPTRY"]
            resp = client.get("/api/v1/users/balances", headers=sign(sim))
            assert resp.status_code == 200 and resp.json()["success"] is True
            sim.market.advance(50)  # from this thread, while the server runs in its own
            book = client.get("/api/v2/orderbook?pairSymbol=XRPTRY&limit=3").json()["data"]
            bids, _ = sim.market.levels("XRPTRY", 3)
            assert [(Decimal(p), Decimal(a)) for p, a in book["bids"]] == bids
            sim.faults.add("status", status=502)
            assert client.get("/api/v2/server/time").status_code == 502
        url = sim.url
    assert "obengine-sim" not in {t.name for t in threading.enumerate()} - before
    with pytest.raises(httpx.TransportError):
        httpx.get(url + "/api/v2/server/time", timeout=5)


def test_thread_mode_reports_a_port_in_use() -> None:
    with SimExchange.in_thread(pairs=["BTCTRY"]) as sim:
        with pytest.raises(OSError):
            with SimExchange.in_thread(pairs=["BTCTRY"], port=sim.port):
                pass


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_obengine_sim_serves_prints_its_url_and_stops_on_a_signal(sig: signal.Signals) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [PACKAGE_ROOT, env.get("PYTHONPATH")]))
    proc = subprocess.Popen(
        [sys.executable, "-m", "obengine", "sim", "--pairs", "2", "--tick", "0.05"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        assert proc.stdout is not None
        lines = []
        url = None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("REST API:"):
                url = line.split()[-1]
            if line.startswith("OBENGINE_KRAKEN_SECRET="):
                break
        assert url is not None and url.startswith("http://127.0.0.1:"), lines
        printed = "".join(lines)
        assert f"OBENGINE_BTCTURK_PUBLIC_KEY={DEMO_PUBLIC_KEY}\n" in printed
        assert f"OBENGINE_BTCTURK_PRIVATE_KEY={DEMO_PRIVATE_KEY}\n" in printed
        resp = httpx.get(url + "/api/v2/server/time", timeout=30)
        assert resp.status_code == 200 and "serverTime" in resp.json()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "GET /api/v2/server/time 200" in err
    assert DEMO_PRIVATE_KEY not in err  # no secret in the log


def test_obengine_sim_refuses_a_bad_pairs_argument() -> None:
    from obengine.cli import main

    assert main(["sim", "--pairs", "BTCXYZ"]) == 2
    assert main(["sim", "--port", "70000"]) == 2
