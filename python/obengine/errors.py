"""The exceptions obengine raises: one tree, mixing in builtins where the meaning matches.

::

    ObengineError                        base of everything obengine raises on purpose
     ├── FrameError(ValueError)          a malformed frame; the book is left unchanged
     ├── CredentialsError(ValueError)    credentials missing, malformed, or in a file others can read
     ├── RecordingError(OSError)         a recording file that cannot be created, written or read
     ├── MissingExtraError(ImportError)  a feature's optional dependency is not installed
     └── ExchangeError                   the exchange (or the way to it) answered with an error
          ├── AuthError                  401: the exchange refused the signature, key or nonce
          ├── RateLimited                429: too many requests; retry_after_s says when to retry
          ├── ServerError                5xx; 503 is maintenance (``maintenance`` is True)
          └── TransportError             no usable answer: connection refused or dropped,
                                         a timeout, a truncated body

Gaps, stale frames and crossed books are *states* (``obengine.Status``), not exceptions: they
are normal on a live feed and the hot path reports them by return value.

No message in this tree carries a secret: errors name the endpoint, the pair, the CS or the file,
and quote the exchange's own message.
"""
from __future__ import annotations

import os

__all__ = [
    "ObengineError",
    "FrameError",
    "CredentialsError",
    "RecordingError",
    "MissingExtraError",
    "ExchangeError",
    "AuthError",
    "RateLimited",
    "ServerError",
    "TransportError",
]


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


class CredentialsError(ObengineError, ValueError):
    """Credentials that cannot be used: missing, a private key that is not base64, or a
    credentials file that group or others can read. The message says which, never the secret."""


class RecordingError(ObengineError, OSError):
    """A recording (``obengine.record``) that cannot be created, written or read: a write that
    failed (no space, the file size limit, an I/O error), a path that matches no segment, a file
    that is not a recording at all or is of a newer format version. Damaged content inside a
    recording is *not* an error: the reader skips and counts it.

    An :class:`OSError`, so that code handling disk trouble catches it too; ``errno`` is the
    underlying OS error's number when there was one (``errno.EFBIG``, ``errno.ENOSPC``, ...).

    Attributes:
        path: the file (or the path given) concerned.
        offset: byte offset into the file where the failed write or the problem was, if known.
        message: the whole message (also ``str(error)``).
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        offset: int | None = None,
        errno: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.offset = offset
        self.errno = errno
        self.filename = path
        if errno is not None:
            self.strerror = os.strerror(errno)

    def __str__(self) -> str:
        # OSError would format "[Errno n] strerror: filename" from the attributes set above;
        # the message already says all of it, in words.
        return self.message


class MissingExtraError(ObengineError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the
    extra that brings it (``pip install 'obengine[parquet]'``)."""

    def __init__(self, feature: str, extra: str, module: str) -> None:
        super().__init__(f"{feature} needs {module}: pip install 'obengine[{extra}]'", name=module)
        self.extra = extra


class ExchangeError(ObengineError):
    """The exchange answered with an error, or with a body that is not what the endpoint
    promises.

    Attributes:
        status: the HTTP status (``None`` when there was no answer).
        code: the exchange's error code from the body, when it gave one.
        message: the exchange's message (or what was wrong with the body).
        endpoint: ``"METHOD /path"`` of the request.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: int | None = None,
        endpoint: str = "",
    ) -> None:
        self.message = message
        self.status = status
        self.code = code
        self.endpoint = endpoint
        parts = [endpoint or "?"]
        if status is not None:
            parts.append(f"HTTP {status}")
        if code is not None:
            parts.append(f"code {code}")
        super().__init__(f"{' '.join(parts)}: {message}")


class AuthError(ExchangeError):
    """The exchange refused the request's authentication (HTTP 401, or a login refused).

    Attributes:
        hint: what usually causes this reason (clock, key encoding, key permissions).
    """

    def __init__(
        self,
        message: str,
        *,
        hint: str = "",
        status: int | None = None,
        code: int | None = None,
        endpoint: str = "",
    ) -> None:
        self.hint = hint
        super().__init__(message, status=status, code=code, endpoint=endpoint)
        if hint:
            self.args = (f"{self.args[0]} ({hint})",)


class RateLimited(ExchangeError):
    """HTTP 429. ``retry_after_s``: seconds the exchange asked to wait (its ``Retry-After``),
    ``None`` when it did not say."""

    def __init__(
        self,
        message: str,
        *,
        retry_after_s: float | None = None,
        status: int | None = 429,
        code: int | None = None,
        endpoint: str = "",
    ) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(message, status=status, code=code, endpoint=endpoint)


class ServerError(ExchangeError):
    """HTTP 5xx. ``maintenance`` is True for 503 (the exchange is offline for maintenance)."""

    @property
    def maintenance(self) -> bool:
        return self.status == 503


class TransportError(ExchangeError):
    """No usable answer: the connection was refused or dropped, the request timed out, or the
    body was cut short. ``status`` is ``None`` unless the headers had arrived."""
