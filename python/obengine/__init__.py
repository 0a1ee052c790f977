"""obengine: exact, live L2 order books for BtcTurk.

The engine is native (``obengine._core``); this package re-exports its public names and the
error tree. The exchange's HTTP side is in :mod:`obengine.rest` (clients) and
:mod:`obengine.auth` (signing, credentials); the simulated exchange in :mod:`obengine.sim`.
See ``docs/rules.md`` for what every frame does to a book.
"""
from __future__ import annotations

from obengine._core import Book, BookSet, Status
from obengine.errors import (
    AuthError,
    CredentialsError,
    ExchangeError,
    FrameError,
    ObengineError,
    RateLimited,
    ServerError,
    TransportError,
)
from obengine.scales import DEFAULT_SCALES

__all__ = [
    "Book",
    "BookSet",
    "Status",
    "ObengineError",
    "FrameError",
    "CredentialsError",
    "ExchangeError",
    "AuthError",
    "RateLimited",
    "ServerError",
    "TransportError",
    "DEFAULT_SCALES",
]
__version__ = "0.1.0"
