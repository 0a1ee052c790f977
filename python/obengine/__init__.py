"""obengine: exact, live L2 order books for BtcTurk.

The engine is native (``obengine._core``); this package re-exports its public names and the
error tree. The exchange's HTTP side is in :mod:`obengine.rest` (clients) and
:mod:`obengine.auth` (signing, credentials); the simulated exchange in :mod:`obengine.sim`.
See ``docs/rules.md`` for what every frame does to a book.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from obengine._core import Book, BookSet, Status
from obengine.errors import (
    AuthError,
    CredentialsError,
    ExchangeError,
    FrameError,
    ObengineError,
    RateLimited,
    RecordingError,
    ServerError,
    TransportError,
)
from obengine.scales import DEFAULT_SCALES

if TYPE_CHECKING:
    from obengine.feed import connect as connect

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
    "RecordingError",
    "ServerError",
    "TransportError",
    "DEFAULT_SCALES",
    "connect",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # connect() lives in the I/O layer (asyncio, picows): imported when first asked for, so
    # that importing obengine for its books pulls in no I/O library.
    if name == "connect":
        from obengine.feed import connect

        return connect
    raise AttributeError(f"module 'obengine' has no attribute {name!r}")
