"""Fault knobs of the simulated exchange's websocket side (``sim.ws_faults``): rules that tests
program to make the next frames, connections or logins go wrong the ways a live feed does. Pure
bookkeeping (no I/O): :mod:`obengine.sim.ws` applies them.

Each rule applies to the next ``times`` matching events (``times=None``: every one, until
:meth:`WsFaults.clear`). The first pending rule that matches, in the order they were added,
decides; an event matching none goes as normal. Rules are thread-safe: a test may add them from
another thread while the server runs.

Frame rules act on the ``obdiff`` 432s the server delivers, one subscription (a pair on a
connection) at a time. ``pair`` picks the pair (``None``: any) and ``connection`` the connection
(its id, 1, 2, ... in accept order, see ``sim.ws.connections``; ``None``: any). A rule fires on
the next 432 that a *live* matching subscription (its 431 sent) is due to receive:

- ``"drop"``: the 432 is not sent, but its CS is used up: the client sees a CS gap (its book
  reports ``Status.GAP``).
- ``"duplicate"``: the 432 is sent, then the subscription's previous 432 again (the same one when
  there is none): a stale frame (``Status.STALE``).
- ``"reorder"``: the 432 is held back and sent right after the subscription's next 432: two
  consecutive frames swapped (``GAP``, then a stale frame).
- ``"truncate"``: the 432's first half (bytes; frames are ASCII, so still valid UTF-8) is sent
  instead of it: invalid JSON (``obengine.FrameError``). Its CS is used up.
- ``"bad_value"``: a 432 with the next CS that is valid JSON, carries the real frame's good levels
  and then, last in ``BO``, one entry with a bad value: ``field="A"`` (default) writes
  ``"A":value`` (default ``"1e999999"``, beyond a .NET decimal), ``field="P"`` writes
  ``"P":value`` (default ``"-5"``). The whole frame must be refused (``FrameError``); it takes the
  place of the real 432, which is not sent: the client must resync.
- ``"crossed"``: a valid 432 with the next CS whose only change is a new bid (``CP 1``) at a price
  at or above the client's best ask (the highest ask price the book can hold at that point), so
  the book it leaves is crossed (``Status.CROSSED``). The real 432 is not sent.
- ``"stall"``: from that point the connection sends nothing for ``seconds`` (default 1.0): no
  frame, no answer, no ping, and it stops reading (so it answers no ping of the client either).
  The 432 and everything queued after it go out when the stall ends (unless the connection is
  dropped meanwhile, see ``obengine.sim.ws``).
- ``"abort"``: the TCP connection is aborted at that point (no close frame); the 432 is not sent.

Connection rules:

- ``"refuse_handshake"``: the next ``times`` websocket handshakes (any connection) are answered
  with HTTP ``status`` (default 503) and ``message``; with ``seconds``, every handshake in the next
  ``seconds`` from :meth:`WsFaults.add` is refused (``times`` is then not counted down).
- ``"refuse_login"``: the next ``times`` logins (type 114; on ``connection`` when given) are
  answered ``{"type":114,"ok":false,"id":0,"message":message}`` whatever their signature (default
  message ``"Unauthorized - Invalid Public key"``, what the exchange answers keys not enabled for
  websocket access).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal, get_args

from obengine.sim.faults import RuleSet

__all__ = ["WsFaultKind", "WsFaultRule", "WsFaults", "FRAME_KINDS"]

WsFaultKind = Literal[
    "drop",
    "duplicate",
    "reorder",
    "truncate",
    "bad_value",
    "crossed",
    "stall",
    "abort",
    "refuse_handshake",
    "refuse_login",
]

_KINDS: frozenset[str] = frozenset(get_args(WsFaultKind))
#: The kinds that fire on a subscription's next 432.
FRAME_KINDS: frozenset[str] = _KINDS - {"refuse_handshake", "refuse_login"}

_DEFAULT_VALUES = {"A": "1e999999", "P": "-5"}


@dataclass
class WsFaultRule:
    """One programmed websocket fault (see the module docstring for each kind's effect).

    Attributes:
        kind: what happens.
        pair: the pair whose 432s it acts on (``None``: any); frame kinds only.
        connection: the connection id it acts on (``None``: any).
        times: how many more matching events it applies to (``None``: unlimited).
        seconds: how long a ``"stall"`` lasts; for ``"refuse_handshake"``, the window (from
            :meth:`WsFaults.add`) in which every handshake is refused (``None``: count ``times``).
        field: ``"A"`` or ``"P"``, the key a ``"bad_value"`` entry gets wrong.
        value: the bad text of a ``"bad_value"`` entry (``None``: ``"1e999999"`` for ``A``,
            ``"-5"`` for ``P``).
        status: the HTTP status of a ``"refuse_handshake"`` (default 503).
        message: the text of a refused handshake or login (``None``: a default).
        fired: how many events it has applied to so far.
        deadline: the monotonic time a ``"refuse_handshake"`` window with ``seconds`` ends (set
            from ``seconds`` when the rule is made).
    """

    kind: WsFaultKind
    pair: str | None = None
    connection: int | None = None
    times: int | None = 1
    seconds: float | None = None
    field: Literal["A", "P"] = "A"
    value: str | None = None
    status: int = 503
    message: str | None = None
    fired: int = 0
    deadline: float | None = None  # monotonic end of a refuse_handshake window

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            known = ", ".join(sorted(_KINDS))
            raise ValueError(f"unknown fault kind {self.kind!r} (known: {known})")
        if self.times is not None and self.times < 0:
            raise ValueError(f"times must be >= 0 or None, not {self.times}")
        if self.seconds is not None and self.seconds < 0:
            raise ValueError(f"seconds must be >= 0, not {self.seconds}")
        if self.field not in ("A", "P"):
            raise ValueError(f"field must be 'A' or 'P', not {self.field!r}")
        if not 400 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP error status, not {self.status}")
        if self.value is not None and ('"' in self.value or "\\" in self.value):
            raise ValueError("value must not need JSON escaping")
        if self.kind == "stall" and self.seconds is None:
            self.seconds = 1.0
        if self.kind == "refuse_handshake" and self.seconds is not None and self.deadline is None:
            self.deadline = time.monotonic() + self.seconds

    @property
    def exhausted(self) -> bool:
        """Whether it will apply to no more events."""
        if self.deadline is not None:
            return time.monotonic() >= self.deadline
        return self.times is not None and self.fired >= self.times

    @property
    def bad_text(self) -> str:
        """The bad value a ``"bad_value"`` entry carries."""
        return _DEFAULT_VALUES[self.field] if self.value is None else self.value

    def login_message(self) -> str:
        return "Unauthorized - Invalid Public key" if self.message is None else self.message

    def handshake_message(self) -> str:
        if self.message is not None:
            return self.message
        return "Service Unavailable - the exchange is under maintenance\n"

    def _matches(self, kinds: frozenset[str], connection: int | None, pair: str | None) -> bool:
        if self.kind not in kinds or self.exhausted:
            return False
        if self.connection is not None and connection is not None and self.connection != connection:
            return False
        return self.pair is None or pair is None or self.pair == pair


_HANDSHAKE = frozenset({"refuse_handshake"})
_LOGIN = frozenset({"refuse_login"})


class WsFaults(RuleSet[WsFaultRule]):
    """The websocket rule set of one simulated exchange (``sim.ws_faults``)."""

    def add(
        self,
        kind: WsFaultKind,
        *,
        pair: str | None = None,
        connection: int | None = None,
        times: int | None = 1,
        seconds: float | None = None,
        field: Literal["A", "P"] = "A",
        value: str | None = None,
        status: int = 503,
        message: str | None = None,
    ) -> WsFaultRule:
        """Program a fault (see the module docstring); returns the rule (its ``fired`` counts the
        events it hit)."""
        if pair is not None and kind not in FRAME_KINDS:
            raise ValueError(f"pair= is for frame faults, not {kind!r}")
        if seconds is not None and kind not in ("stall", "refuse_handshake"):
            raise ValueError(f"seconds= is for 'stall' and 'refuse_handshake', not {kind!r}")
        rule = WsFaultRule(
            kind=kind,
            pair=pair,
            connection=connection,
            times=times,
            seconds=seconds,
            field=field,
            value=value,
            status=status,
            message=message,
        )
        return self._append(rule)

    def take_frame(self, connection: int, pair: str) -> WsFaultRule | None:
        """The first frame rule matching a 432 of ``pair`` due on ``connection``, counted as
        fired, or ``None``. The server calls this once per 432 per live subscription."""
        return self._take(lambda rule: rule._matches(FRAME_KINDS, connection, pair))

    def take_handshake(self) -> WsFaultRule | None:
        """The first ``"refuse_handshake"`` rule still pending, counted, or ``None``."""
        return self._take(lambda rule: rule._matches(_HANDSHAKE, None, None))

    def take_login(self, connection: int) -> WsFaultRule | None:
        """The first ``"refuse_login"`` rule matching ``connection``, counted, or ``None``."""
        return self._take(lambda rule: rule._matches(_LOGIN, connection, None))
