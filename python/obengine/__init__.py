"""obengine: exact, live L2 order books for BtcTurk.

The engine is native (``obengine._core``); this package re-exports its public names.
See ``docs/rules.md`` for what every frame does to a book.
"""
from __future__ import annotations

from obengine._core import Book, BookSet, Status
from obengine.errors import FrameError, ObengineError
from obengine.scales import DEFAULT_SCALES

__all__ = ["Book", "BookSet", "Status", "FrameError", "ObengineError", "DEFAULT_SCALES"]
__version__ = "0.1.0"
