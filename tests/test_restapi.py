"""The REST API without a network (obengine._restapi): how each answer is read, which error it
is, the client-side rate limits, and the session's policy (clock sync, signing, retries) driven
step by step with scripted replies and a clock that only moves when the session sleeps."""
from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import numpy as np
import pytest

from obengine import AuthError, ExchangeError, RateLimited, ServerError, TransportError
from obengine import _restapi as api
from obengine.auth import BtcTurkSigner

# The REST side runs no native code of obengine's: nothing for the sanitizer build to check.
pytestmark = pytest.mark.no_sanitizer

PUBLIC = "b6a9c2e1-4f0d-4c3a-9d1e-0a7f5e3c2b18"
PRIVATE = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA="


def reply(status: int, body: Any, headers: dict[str, str] | None = None) -> api.Reply:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return api.Reply(status, headers or {}, raw)


def ok(data: Any, **extra: Any) -> api.Reply:
    return reply(200, {"success": True, "message": None, "code": 0, "data": data, **extra})


# -- decoding ------------------------------------------------------------------------------


def test_ticker_numbers_are_read_as_exact_decimals() -> None:
    body = (
        b'{"data":[{"pair":"BTCTRY","pairNormalized":"BTC_TRY","timestamp":1570024156166,"last":47500,'
        b'"high":48710,"low":47000,"bid":47472,"ask":47670,"open":47988,"volume":304.41,'
        b'"average":47850.41,"daily":-318,"dailyPercent":-1.02,"denominatorSymbol":"TRY",'
        b'"numeratorSymbol":"BTC"}],"success":true,"message":"","code":0}'
    )
    [t] = api.decode(api.ticker("BTC_TRY"), api.Reply(200, {}, body))
    assert t.volume == Decimal("304.41") and str(t.volume) == "304.41"
    assert t.average == Decimal("47850.41") and t.daily_percent == Decimal("-1.02")
    assert t.last == 47500 and t.timestamp_ms == 1570024156166 and t.pair == "BTCTRY"
    assert api.ticker("btc_try").params == (("pairSymbol", "BTCTRY"),)


def test_balances_accept_comma_and_dot_decimals() -> None:
    data = [
        {"asset": "TRY", "assetname": "Türk Lirası", "balance": "27223,7283250757643288",
         "locked": "4874,3628685722294523", "free": "22349,3654565035348765",
         "orderFund": "4874,3628685722294523", "requestFund": "0", "precision": 2},
        {"asset": "BTC", "assetname": "Bitcoin", "balance": "29.6027353000000000",
         "locked": "0.0010000000000000", "free": "29.6017353000000000"},
    ]
    try_, btc = api.decode(api.balances(), ok(data))
    assert try_.balance == Decimal("27223.7283250757643288")
    assert try_.free == try_.balance - try_.locked
    assert btc.free == Decimal("29.6017353") and btc.order_fund is None


@pytest.mark.parametrize("text", ["1,2,3", "abc", "NaN", "Infinity", "", "1.2.3"])
def test_to_decimal_refuses_what_is_not_a_finite_decimal(text: str) -> None:
    with pytest.raises(ValueError):
        api.to_decimal(text)
    with pytest.raises(ValueError):
        api.to_decimal(1.5)


def test_order_book_is_int64_units_at_the_pairs_scales_raised_exactly_by_finer_values() -> None:
    data = {"timestamp": 1543836448605.0, "bids": [["33245.00", "2.10695265"], ["33209.00", "0.001"]],
            "asks": [["33490.00", "0.03681877"], ["33499.00", "0.000249498098"]]}
    book = api.decode(api.order_book("BTCTRY", 100, (0, 8)), ok(data))
    assert (book.price_scale, book.amount_scale) == (0, 12)  # one amount has 12 places
    assert book.timestamp_ms == 1543836448605
    assert book.bids.dtype == np.int64 and book.bids.shape == (2, 2) and not book.bids.flags.writeable
    assert book.bids.tolist() == [[33245, 2106952650000], [33209, 1000000000]]
    bids, asks = book.levels()
    assert asks[1] == (Decimal(33499), Decimal("0.000249498098"))
    too_big = {"timestamp": 1, "bids": [["1", "99999999999"]], "asks": []}
    with pytest.raises(ExchangeError, match="does not fit int64"):
        api.decode(api.order_book("X", 100, (0, 12)), ok(too_big))


def test_exchange_info_price_scale_is_zero_without_fraction() -> None:
    symbols = [
        {"name": "BTCTRY", "nameNormalized": "BTC_TRY", "status": "TRADING", "numerator": "BTC",
         "denominator": "TRY", "numeratorScale": 8, "denominatorScale": 2, "hasFraction": False,
         "filters": [{"filterType": "PRICE_FILTER", "minPrice": Decimal("1.0000000000000000"),
                      "maxPrice": "10000000", "tickSize": "10", "minExchangeValue": "99.91"}]},
        {"name": "XRPUSDT", "nameNormalized": "XRP_USDT", "status": "TRADING", "numerator": "XRP",
         "denominator": "USDT", "numeratorScale": 4, "denominatorScale": 4, "hasFraction": True},
    ]
    body = json.dumps({"success": True, "code": 0, "data": {"symbols": symbols, "currencies": []}},
                      default=str).replace('"1.0000000000000000"', "1.0000000000000000").encode()
    info = api.decode(api.exchange_info(), api.Reply(200, {}, body))
    assert info.scales() == {"BTCTRY": (0, 8), "XRPUSDT": (4, 4)}
    assert info.pairs["BTCTRY"].min_price == Decimal("1.0000000000000000")
    assert info.pairs["BTCTRY"].tick_size == 10 and info.pairs["XRPUSDT"].tick_size is None


@pytest.mark.parametrize(
    ("answer", "error", "check"),
    [
        (reply(401, {"success": False, "message": "Unauthorized - Invalid Signature", "code": 0}),
         AuthError, lambda e: "base64 secret" in e.hint and e.status == 401),
        (reply(401, {"success": True, "message": "Unauthorized - Invalid Nonce", "code": 1037}),
         AuthError, lambda e: "clock" in e.hint and e.code == 1037),
        (reply(200, {"success": True, "message": "Unauthorized - Invalid Nonce", "code": 1037}),
         AuthError, lambda e: e.status == 200),
        (reply(400, {"success": False, "message": "Pair NOPEUSDT does not exists.", "code": 1037}),
         ExchangeError, lambda e: e.code == 1037 and "NOPEUSDT" in str(e)),
        (reply(400, {"httpStatusCode": 400, "data": None, "success": False,
                     "message": "FAILED_INVALID_PRICE_SCALE", "code": 1126}),
         ExchangeError, lambda e: e.code == 1126),
        (reply(429, {"success": False, "message": "Too many requests", "code": 0}, {"retry-after": "7"}),
         RateLimited, lambda e: e.retry_after_s == 7.0),
        (reply(503, b"<html>maintenance</html>"), ServerError, lambda e: e.maintenance),
        (reply(500, b""), ServerError, lambda e: not e.maintenance and e.status == 500),
        (reply(200, b"<html>hello</html>"), ExchangeError, lambda e: "not JSON" in e.message),
        (ok("a string"), ExchangeError, lambda e: "unexpected body" in e.message),
        (ok([{"pair": "BTCTRY"}]), ExchangeError, lambda e: "missing 'timestamp'" in e.message),
        (ok([{**{k: 1 for k in ("timestamp", "last", "high", "low", "bid", "ask", "open", "volume",
                                 "average", "daily", "dailyPercent")}, "pair": "X", "last": "x"}]),
         ExchangeError, lambda e: "last" in e.message),
        (reply(200, {"success": False, "message": "", "code": 5}), ExchangeError,
         lambda e: e.code == 5 and "without a message" in e.message),
        (reply(200, {"success": True, "message": "FAILED", "code": 77}), ExchangeError, lambda e: e.code == 77),
        (reply(200, [1, 2]), ExchangeError, lambda e: "envelope" in e.message),
    ],
)
def test_every_failed_answer_is_its_typed_error_naming_the_endpoint(answer: api.Reply, error: type, check: Any) -> None:
    with pytest.raises(error) as info:
        api.decode(api.ticker("BTCTRY"), answer)
    assert type(info.value) is error
    assert info.value.endpoint == "GET /api/v2/ticker" and "GET /api/v2/ticker" in str(info.value)
    assert check(info.value)


def test_cancel_answer_with_an_empty_code_is_success() -> None:
    assert api.decode(api.cancel_order(5), reply(200, {"success": True, "message": "string", "code": "", "data": {}})) is None


def test_submit_order_writes_exact_numbers_and_refuses_floats() -> None:
    call = api.submit_order("BTC_TRY", "buy", Decimal("0.00012345678901"), "2834567", client_order_id='a"b')
    body = json.loads(call.body or b"", parse_float=Decimal)
    assert body == {"quantity": Decimal("0.00012345678901"), "price": 2834567, "stopPrice": 0,
                    "newOrderClientId": 'a"b', "orderMethod": "limit", "orderType": "buy", "pairSymbol": "BTCTRY"}
    assert b"0.00012345678901" in (call.body or b"") and not call.retry_safe
    with pytest.raises(TypeError, match="float"):
        api.submit_order("BTCTRY", "buy", 0.1, "1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs a price"):
        api.submit_order("BTCTRY", "sell", "1")
    with pytest.raises(ValueError, match="stop_price"):
        api.submit_order("BTCTRY", "sell", "1", "2", method="stoplimit")
    with pytest.raises(ValueError, match="side"):
        api.submit_order("BTCTRY", "hold", "1", "2")  # type: ignore[arg-type]
    market = json.loads(api.submit_order("BTCTRY", "sell", "1E-3", method="market").body or b"")
    assert market["quantity"] == 0.001 and market["orderMethod"] == "market"


def test_user_transactions_repeat_their_filters() -> None:
    call = api.user_trades(assets=["BTC", "try"], start_ms=1, end_ms=2)
    assert call.params == (("type", "buy"), ("type", "sell"), ("symbol", "btc"), ("symbol", "try"),
                           ("startDate", "1"), ("endDate", "2"))
    assert api.transactions("fiat").path == "/api/v1/users/transactions/fiat"


# -- rate limits ---------------------------------------------------------------------------


def test_rate_limiter_makes_a_burst_wait_for_the_window() -> None:
    limiter = api.RateLimiter({"b": 3}, window_s=60)
    assert [limiter.reserve(["b"], 0.0) for _ in range(3)] == [0, 0, 0]
    assert limiter.reserve(["b"], 1.0) == 59.0          # the 4th waits for the 1st to leave
    assert limiter.reserve(["b"], 61.0) == 0.0          # the 2nd and 3rd left at 60
    assert limiter.reserve(["other"], 61.0) == 0.0


def test_buckets_follow_the_exchanges_table() -> None:
    assert api.balances().buckets == ("/api/v1/*", "GET /api/v1/users/balances")
    assert api.cancel_order(1).buckets == ("/api/v1/*", "DELETE /api/v1/order")
    assert api.order_book("BTCTRY").buckets == ("GET /api/v2/orderbook",)
    assert api.server_time().buckets == ()


# -- the session ---------------------------------------------------------------------------


class Clock:
    def __init__(self, wall_ms: int = 1_700_000_000_000) -> None:
        self.t = 0.0
        self.wall0 = wall_ms

    def monotonic(self) -> float:
        return self.t

    def wall_ms(self) -> int:
        return self.wall0 + int(self.t * 1000)


def drive(session: api.Session, call: api.Call[Any], answers: list[Any]) -> tuple[Any, list[Any]]:
    """Run the session's generator, answering each Send with the next scripted answer (a Reply,
    or an exception thrown in), advancing the clock on each Sleep. Returns (result, steps)."""
    clock = session.monotonic.__self__  # type: ignore[attr-defined]
    steps: list[Any] = []
    gen = session.run(call)
    value: Any = None
    throw: BaseException | None = None
    try:
        while True:
            step = gen.throw(throw) if throw is not None else gen.send(value)
            value = throw = None
            steps.append(step)
            if isinstance(step, api.Sleep):
                clock.t += step.seconds
                continue
            answer = answers.pop(0)
            if isinstance(answer, BaseException):
                throw = answer
            else:
                value = answer
    except StopIteration as done:
        assert not answers, "unused scripted answers"
        return done.value, steps


def session(signer: bool = True, **policy: Any) -> api.Session:
    clock = Clock()
    return api.Session(
        signer=BtcTurkSigner(PUBLIC, PRIVATE) if signer else None,
        policy=api.Policy(**policy),
        monotonic=clock.monotonic,
        wall_ms=clock.wall_ms,
    )


def sends(steps: list[Any]) -> list[str]:
    return [f"{s.method} {s.path}" for s in steps if isinstance(s, api.Send)]


def test_first_signed_call_measures_the_clock_and_stamps_with_the_exchanges_time() -> None:
    s = session()
    server_ms = 1_700_000_000_000 + 10_000                   # the exchange is 10 s ahead
    result, steps = drive(s, api.balances(), [reply(200, {"serverTime": server_ms}), ok([])])
    assert result == [] and sends(steps) == ["GET /api/v2/server/time", "GET /api/v1/users/balances"]
    assert s.clock_offset_ms == 10_000
    signed = steps[-1]
    assert signed.headers["X-Stamp"] == str(server_ms)
    assert signed.headers["X-Signature"] == BtcTurkSigner(PUBLIC, PRIVATE).signature(server_ms)
    assert "X-PCK" not in steps[0].headers                   # the time call is not signed
    _, again = drive(s, api.balances(), [ok([])])            # measured once, not on every call
    assert sends(again) == ["GET /api/v1/users/balances"]


def test_invalid_nonce_on_a_read_resyncs_the_clock_and_retries_once() -> None:
    s = session()
    drive(s, api.balances(), [reply(200, {"serverTime": 1_700_000_000_000}), ok([])])
    nonce = reply(401, {"success": True, "message": "Unauthorized - Invalid Nonce", "code": 1037})
    result, steps = drive(s, api.balances(), [nonce, reply(200, {"serverTime": 1_700_000_010_000}), ok([])])
    assert result == [] and s.clock_offset_ms == 10_000
    assert sends(steps) == ["GET /api/v1/users/balances", "GET /api/v2/server/time", "GET /api/v1/users/balances"]
    with pytest.raises(AuthError, match="Invalid Nonce"):   # a second refusal in a row is raised
        drive(s, api.balances(), [nonce, reply(200, {"serverTime": 1}), nonce])


def test_invalid_nonce_on_an_order_raises_and_the_next_call_resyncs() -> None:
    s = session()
    drive(s, api.balances(), [reply(200, {"serverTime": 1_700_000_000_000}), ok([])])
    nonce = reply(401, {"success": True, "message": "Unauthorized - Invalid Nonce", "code": 1037})
    with pytest.raises(AuthError) as info:
        drive(s, api.cancel_order(9), [nonce])
    assert "clock" in info.value.hint
    _, steps = drive(s, api.cancel_order(9), [reply(200, {"serverTime": 1_700_000_000_000}), ok(None)])
    assert sends(steps) == ["GET /api/v2/server/time", "DELETE /api/v1/order"]


def test_a_read_refused_with_429_waits_retry_after_and_retries() -> None:
    s = session(signer=False)
    limited = reply(429, {"success": False, "message": "Too many", "code": 0}, {"retry-after": "2"})
    result, steps = drive(s, api.trades("BTCTRY"), [limited, ok([])])
    assert result == [] and [st.seconds for st in steps if isinstance(st, api.Sleep)] == [2.0]
    assert s.retried == 1


def test_an_order_refused_with_429_is_never_retried() -> None:
    s = session()
    drive(s, api.balances(), [reply(200, {"serverTime": 1_700_000_000_000}), ok([])])
    limited = reply(429, {"success": False, "message": "Too many", "code": 0}, {"retry-after": "1"})
    with pytest.raises(RateLimited) as info:
        drive(s, api.submit_order("BTCTRY", "buy", "1", "2"), [limited])
    assert info.value.retry_after_s == 1.0
    with pytest.raises(ServerError):
        drive(s, api.submit_order("BTCTRY", "buy", "1", "2"), [reply(502, b"")])
    with pytest.raises(TransportError):
        drive(s, api.cancel_order(1), [TransportError("ReadTimeout", endpoint="DELETE /api/v1/order")])


def test_reads_retry_5xx_and_transport_errors_with_backoff_then_raise() -> None:
    s = session(signer=False, retries=2, backoff_s=0.5)
    down = TransportError("ConnectError", endpoint="GET /api/v2/ticker")
    result, steps = drive(s, api.ticker(), [down, reply(503, b""), ok([])])
    assert result == [] and [st.seconds for st in steps if isinstance(st, api.Sleep)] == [0.5, 1.0]
    with pytest.raises(ServerError):
        drive(s, api.ticker(), [reply(500, b""), reply(500, b""), reply(500, b"")])
    with pytest.raises(RateLimited):                         # asked to wait longer than allowed
        drive(s, api.ticker(), [reply(429, b"", {"retry-after": "3600"})])


def test_client_side_limits_make_a_burst_sleep_before_sending() -> None:
    s = session(signer=False)
    s.limiter = api.RateLimiter({"GET /api/v2/orderbook": 2})
    book = {"timestamp": 1, "bids": [], "asks": []}
    for _ in range(2):
        _, steps = drive(s, api.order_book("BTCTRY"), [ok(book)])
        assert not any(isinstance(st, api.Sleep) for st in steps)
    _, steps = drive(s, api.order_book("BTCTRY"), [ok(book)])
    assert isinstance(steps[0], api.Sleep) and steps[0].seconds == 60.0


def test_a_private_call_without_a_signer_says_how_to_give_one() -> None:
    with pytest.raises(AuthError, match="needs credentials") as info:
        drive(session(signer=False), api.balances(), [])
    assert "BtcTurkSigner" in info.value.hint


def test_send_repr_never_shows_headers() -> None:
    s = session()
    _, steps = drive(s, api.balances(), [reply(200, {"serverTime": 1_700_000_000_000}), ok([])])
    assert "Signature" not in repr(steps[-1]) and PUBLIC not in repr(steps[-1])


def test_kraken_token_answers() -> None:
    assert api.kraken_token_decode(reply(200, {"error": [], "result": {"token": "abc", "expires": 900}})) == "abc"
    with pytest.raises(AuthError, match="Invalid signature"):
        api.kraken_token_decode(reply(200, {"error": ["EAPI:Invalid signature"]}))
    with pytest.raises(ExchangeError, match="unexpected body"):
        api.kraken_token_decode(reply(200, {"error": [], "result": {}}))
    with pytest.raises(ServerError):
        api.kraken_token_decode(reply(502, b""))
