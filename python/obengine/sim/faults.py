"""Fault knobs of the simulated exchange's REST side: rules that tests program to make the next
requests fail the ways the real exchange (or the way to it) fails.

Each rule matches requests by path prefix (``path=None``: any path; compared case-insensitively,
without the query string) and optionally by method, and applies to the next ``times`` matching
requests (``times=None``: every one, until :meth:`Faults.clear`). The first rule that matches,
in the order they were added, decides; a request matching none is answered normally. Faults come
before rate limiting and authentication: a faulted request never counts against a limit.

Kinds (:data:`FaultKind`), with the parameters each one reads:

- ``"status"``: answer ``status`` (default 500; 502, 503, ... ; 503 means maintenance) with the
  exchange's envelope ``{"success":false,"message":message,"code":code,"data":null}``
  (``code`` defaults to the status; the message to a fitting text). The request is not handled.
- ``"rate_limited"``: answer 429 with a ``Retry-After: retry_after_s`` header (integer seconds,
  default 1) and the envelope. Not handled.
- ``"delay"``: sleep ``delay_s`` seconds, then handle and answer normally.
- ``"malformed"``: answer 200 with a body that is not JSON (``body``, default an HTML error page,
  ``Content-Type: text/html``). Not handled.
- ``"truncated"``: handle the request (an order *is* placed), send headers whose
  ``Content-Length`` is the full body's, then only the first half of the body, and close the
  connection.
- ``"success_false"``: answer 200 with ``{"success":false,"message":message,"code":code,
  "data":null}`` (code default 1). Not handled.
- ``"nonzero_code"``: answer 200 with ``{"success":true,"message":message,"code":code,
  "data":null}`` (code default 1037, message default ``"Unauthorized - Invalid Nonce"`` as the
  exchange answered a stale stamp). Not handled.
- ``"wrong_shape"``: answer 200 with a valid envelope whose ``data`` has the wrong type: a string
  where a list is promised, a list where an object is promised (for the bare-JSON endpoints, the
  body itself has the wrong type). Not handled.
- ``"disconnect"``: close the connection without answering. Not handled.

Every kind also honours ``delay_s`` (a sleep before its effect). Rules are thread-safe: a test may
add them from another thread while the server runs (see ``SimExchange.in_thread``).
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, Literal, Protocol, TypeVar, get_args

__all__ = ["FaultKind", "FaultRule", "Faults", "RuleSet"]

FaultKind = Literal[
    "status",
    "rate_limited",
    "delay",
    "malformed",
    "truncated",
    "success_false",
    "nonzero_code",
    "wrong_shape",
    "disconnect",
]

_KINDS: frozenset[str] = frozenset(get_args(FaultKind))

_DEFAULT_MESSAGES: dict[int, str] = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable - the exchange is under maintenance",
    504: "Gateway Timeout",
}

#: What a ``malformed`` rule sends by default: a proxy's HTML error page.
HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body>"
    b"</html>\n"
)


@dataclass
class FaultRule:
    """One programmed fault (see the module docstring for each kind's effect).

    Attributes:
        kind: what happens.
        path: path prefix the request must start with (``None``: any), case-insensitive.
        method: HTTP method the request must have (``None``: any), case-insensitive.
        times: how many more matching requests it applies to (``None``: unlimited).
        status: the HTTP status of a ``"status"`` rule.
        message: the envelope's message (``None``: a default for the kind).
        code: the envelope's code (``None``: a default for the kind).
        retry_after_s: the ``Retry-After`` value of a ``"rate_limited"`` rule, integer seconds.
        delay_s: seconds to sleep before the effect (the whole effect of ``"delay"``).
        body: the body of a ``"malformed"`` rule (``None``: an HTML error page).
        fired: how many requests it has applied to so far.
    """

    kind: FaultKind
    path: str | None = None
    method: str | None = None
    times: int | None = 1
    status: int = 500
    message: str | None = None
    code: int | None = None
    retry_after_s: int = 1
    delay_s: float = 0.0
    body: bytes | None = None
    fired: int = 0

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {', '.join(sorted(_KINDS))})")
        if self.times is not None and self.times < 0:
            raise ValueError(f"times must be >= 0 or None, not {self.times}")
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status, not {self.status}")
        if self.retry_after_s < 0:
            raise ValueError(f"retry_after_s must be >= 0, not {self.retry_after_s}")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, not {self.delay_s}")
        if self.kind == "delay" and self.delay_s == 0:
            self.delay_s = 1.0

    def matches(self, method: str, path: str) -> bool:
        """Whether a request with this method and path (no query) is one this rule targets."""
        if self.times is not None and self.fired >= self.times:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path is None or path.lower().startswith(self.path.lower())

    @property
    def exhausted(self) -> bool:
        """Whether it has applied to its ``times`` requests."""
        return self.times is not None and self.fired >= self.times

    def envelope_message(self) -> str:
        """The message its answer carries."""
        if self.message is not None:
            return self.message
        if self.kind == "status":
            return _DEFAULT_MESSAGES.get(self.status, f"HTTP {self.status}")
        if self.kind == "rate_limited":
            return "Too many requests"
        if self.kind == "nonzero_code":
            return "Unauthorized - Invalid Nonce"
        return "Operation failed"

    def envelope_code(self) -> int:
        """The code its answer carries."""
        if self.code is not None:
            return self.code
        if self.kind == "status":
            return self.status
        if self.kind == "rate_limited":
            return 429
        if self.kind == "nonzero_code":
            return 1037
        return 1


R = TypeVar("R", bound="_Rule")


class _Rule(Protocol):
    fired: int

    @property
    def exhausted(self) -> bool: ...


class RuleSet(Generic[R]):
    """A thread-safe list of pending rules, shared by the REST and websocket fault tables: the
    first rule that matches an event, in the order added, takes it and is counted; a rule is
    dropped once exhausted (its ``times`` used up, or its time over)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[R] = []
        self.fired = 0  # events a rule applied to so far

    def _append(self, rule: R) -> R:
        with self._lock:
            self._rules.append(rule)
        return rule

    def _take(self, matches: Callable[[R], bool]) -> R | None:
        if not self._rules:  # the common case, without the lock
            return None
        with self._lock:
            for rule in list(self._rules):
                if rule.exhausted:
                    self._rules.remove(rule)
                elif matches(rule):
                    rule.fired += 1
                    self.fired += 1
                    if rule.exhausted:
                        self._rules.remove(rule)
                    return rule
        return None

    def clear(self) -> None:
        """Drop every rule."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[R]:
        """The rules still pending, in order (a copy)."""
        with self._lock:
            return [r for r in self._rules if not r.exhausted]

    def __len__(self) -> int:
        return len(self.rules)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({len(self)} rules, {self.fired} fired)"


class Faults(RuleSet[FaultRule]):
    """The rule set of one simulated exchange (``sim.faults``)."""

    def add(
        self,
        kind: FaultKind,
        *,
        times: int | None = 1,
        path: str | None = None,
        method: str | None = None,
        status: int | None = None,
        message: str | None = None,
        code: int | None = None,
        retry_after_s: int = 1,
        delay_s: float = 0.0,
        body: bytes | None = None,
    ) -> FaultRule:
        """Program a fault for the next ``times`` requests matching ``path`` (a prefix, e.g.
        ``"/api/v2/ticker"``; ``None``: any) and ``method``; returns the rule (its ``fired``
        counts the requests it hit). ``status`` only for ``"status"`` rules (default 500)."""
        if status is not None and kind != "status":
            raise ValueError(f"status= is for 'status' rules, not {kind!r}")
        rule = FaultRule(
            kind=kind,
            path=path,
            method=method,
            times=times,
            status=500 if status is None else status,
            message=message,
            code=code,
            retry_after_s=retry_after_s,
            delay_s=delay_s,
            body=body,
        )
        return self._append(rule)

    def take(self, method: str, path: str) -> FaultRule | None:
        """The first rule matching the request, counted as fired (and dropped once exhausted),
        or ``None``. The server calls this once per request."""
        return self._take(lambda rule: rule.matches(method, path))
