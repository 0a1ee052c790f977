"""``obengine.sim``: a simulated exchange on loopback, for tests, the demo and users without an
account. Nothing in it touches the internet.

- :class:`SimExchange` (:mod:`obengine.sim.http`): a real HTTP/1.1 server answering as BtcTurk's
  REST API (public, signed and the graph host's ``/v1/ohlcs``) and Kraken's websocket-token
  endpoint, on one port; an async context manager, or :meth:`SimExchange.in_thread` for
  synchronous clients.
- :class:`SimMarket` (:mod:`obengine.sim.market`): the market's truth (the seeded
  :class:`obengine.simulator.FeedSimulator`'s books) and a paper-trading account; pure Python.
- :class:`Faults` (:mod:`obengine.sim.faults`): rules that make the next requests fail as the
  real exchange does (5xx, 429, delays, bodies that are not JSON, cut, or of the wrong shape).
- :class:`~obengine.sim.ws.SimWebsocket` (:mod:`obengine.sim.ws`, needs ``websockets``): the
  websocket feed over the same market (``SimExchange(websocket=True)``, ``sim.ws_url``,
  ``await sim.push(frames)``, ``sim.truth(pair)``), with its own fault knobs, :class:`WsFaults`
  (:mod:`obengine.sim.wsfaults`: CS gaps, stale, reordered, cut or bad frames, crossed books,
  stalls, aborts, refused handshakes and logins).
- :class:`~obengine.sim.playback.Playback` (:mod:`obengine.sim.playback`, ``obengine serve``):
  the same websocket server with a recording (``obengine record``) as its source instead of the
  market: real data, at the recorded pace, faster, or as fast as the clients take it.

The demo credentials (:data:`DEMO_PUBLIC_KEY`, :data:`DEMO_PRIVATE_KEY`,
:data:`DEMO_KRAKEN_API_KEY`, :data:`DEMO_KRAKEN_SECRET`) open the simulator and nothing else.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from obengine.sim.faults import FaultKind, FaultRule, Faults
from obengine.sim.http import (
    DEMO_KRAKEN_API_KEY,
    DEMO_KRAKEN_SECRET,
    DEMO_PRIVATE_KEY,
    DEMO_PUBLIC_KEY,
    RATE_LIMITS,
    SimExchange,
)
from obengine.sim.market import MarketError, SimMarket
from obengine.sim.wsfaults import WsFaultKind, WsFaultRule, WsFaults

if TYPE_CHECKING:
    from obengine.sim.playback import Playback as Playback

__all__ = [
    "DEMO_KRAKEN_API_KEY",
    "DEMO_KRAKEN_SECRET",
    "DEMO_PRIVATE_KEY",
    "DEMO_PUBLIC_KEY",
    "RATE_LIMITS",
    "FaultKind",
    "FaultRule",
    "Faults",
    "MarketError",
    "Playback",
    "SimExchange",
    "SimMarket",
    "WsFaultKind",
    "WsFaultRule",
    "WsFaults",
]


def __getattr__(name: str) -> object:
    # The playback is a websocket server (websockets, zstandard): imported when first asked for,
    # as the websocket side is.
    if name == "Playback":
        from obengine.sim.playback import Playback

        return Playback
    raise AttributeError(f"module 'obengine.sim' has no attribute {name!r}")
