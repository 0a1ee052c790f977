"""The exceptions obengine raises: one tree, mixing in builtins where the meaning matches.

::

    ObengineError                      base of everything obengine raises on purpose
     └── FrameError(ValueError)        a malformed frame; the book is left unchanged

Gaps, stale frames and crossed books are *states* (``obengine.Status``), not exceptions: they
are normal on a live feed and the hot path reports them by return value.
"""
from __future__ import annotations

__all__ = ["ObengineError", "FrameError"]


class ObengineError(Exception):
    """Base class of the errors obengine raises on purpose."""


class FrameError(ObengineError, ValueError):
    """A frame that cannot be applied: invalid JSON, a missing or malformed field, a value that
    does not fit. The book (or book set) it was given to is unchanged.

    Attributes:
        pair: the frame's pair when it could be read, else ``None``.
        cs: the frame's CS when it could be read, else ``None``.
        offset: byte offset into the frame (its UTF-8 encoding) where the problem is.
        reason: what is wrong, without the location prefix.
    """

    def __init__(
        self,
        reason: str,
        *,
        pair: str | None = None,
        cs: int | None = None,
        offset: int | None = None,
    ) -> None:
        self.reason = reason
        self.pair = pair
        self.cs = cs
        self.offset = offset
        where = f"{pair or '?'} CS={cs if cs is not None else '?'}"
        at = f" (at byte {offset})" if offset is not None else ""
        super().__init__(f"{where}: {reason}{at}")
