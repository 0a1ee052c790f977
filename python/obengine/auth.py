"""Request signing and credentials: BtcTurk (REST v1 headers, websocket login) and Kraken (the
``API-Sign`` of its REST calls, used for its websocket token). Pure computation and one file
read: nothing here opens a connection.

Signatures (``../shared/seeds`` in the project, the exchanges' documentation):

- BtcTurk REST v1: ``X-Signature = base64(HMAC-SHA256(base64decode(private_key), public_key +
  stamp))`` with ``X-Stamp`` the UTC time in ms (the exchange allows about ±5 s; the REST client
  corrects the stamp with the offset it measured from the server's clock).
- BtcTurk websocket login (type 114): the same HMAC over ``public_key + nonce``. The nonce is a
  fresh random integer in 1..2**31-1 for each login by default: users found a millisecond
  timestamp refused as the nonce and the documentation's fixed 3000 accepted one day and refused
  the next (BTCTrader/broker-api-docs #590, #607).
- Kraken: ``API-Sign = base64(HMAC-SHA512(base64decode(secret), path + SHA256(nonce + body)))``.

Secrets: a private key is held in a :class:`_Secret`, whose ``repr`` and ``str`` are
``'<secret>'`` and which refuses to be pickled, so that it never reaches a log line, an exception
message, a traceback's shown locals or a file. Credentials files are refused when group or others
can read them, as ssh refuses a private key file.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import stat
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from obengine.errors import AuthError, CredentialsError

__all__ = [
    "BtcTurkSigner",
    "KrakenSigner",
    "Credentials",
    "load_credentials",
    "btcturk_signature",
    "check_ws_login",
    "kraken_signature",
    "ENV_BTCTURK_PUBLIC_KEY",
    "ENV_BTCTURK_PRIVATE_KEY",
    "ENV_KRAKEN_API_KEY",
    "ENV_KRAKEN_SECRET",
]

ENV_BTCTURK_PUBLIC_KEY = "OBENGINE_BTCTURK_PUBLIC_KEY"
ENV_BTCTURK_PRIVATE_KEY = "OBENGINE_BTCTURK_PRIVATE_KEY"
ENV_KRAKEN_API_KEY = "OBENGINE_KRAKEN_API_KEY"
ENV_KRAKEN_SECRET = "OBENGINE_KRAKEN_SECRET"

#: the largest websocket login nonce drawn by default (a positive signed 32-bit integer)
MAX_WS_NONCE = 2**31 - 1


def btcturk_signature(private_key: bytes, public_key: str, nonce: int | str) -> str:
    """BtcTurk's signature of ``public_key + nonce`` (REST ``X-Signature``, websocket login).
    ``private_key`` is the *decoded* key (the bytes of the base64 text the exchange gives)."""
    message = f"{public_key}{nonce}".encode()
    return base64.b64encode(hmac.new(private_key, message, hashlib.sha256).digest()).decode("ascii")


def kraken_signature(secret: bytes, path: str, nonce: int | str, body: str | bytes) -> str:
    """Kraken's ``API-Sign`` for a POST to ``path`` (``/0/private/...``) with form ``body``.
    ``secret`` is the *decoded* API secret."""
    body_bytes = body.encode() if isinstance(body, str) else body
    digest = hashlib.sha256(str(nonce).encode() + body_bytes).digest()
    mac = hmac.new(secret, path.encode() + digest, hashlib.sha512).digest()
    return base64.b64encode(mac).decode("ascii")


class _Secret:
    """Bytes that must not leak: shown as ``<secret>``, never pickled, compared in constant
    time."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes) -> None:
        self._value = value

    def reveal(self) -> bytes:
        return self._value

    def __repr__(self) -> str:
        return "<secret>"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        raise TypeError("a secret is not picklable: pass credentials to each process another way")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Secret) and hmac.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(_Secret)


def _decode_key(text: object, what: str) -> _Secret:
    """The bytes of a base64 key, or a CredentialsError that names the key, never its value."""
    if not isinstance(text, str):
        raise CredentialsError(f"{what} must be a str (the base64 text), not {type(text).__name__}")
    stripped = text.strip()
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if not raw:
        raise CredentialsError(
            f"{what} is not valid base64 ({len(stripped)} characters): give the private key "
            "exactly as the exchange showed it, the base64 text"
        ) from None
    return _Secret(raw)


def _check_public(text: object, what: str) -> str:
    if not isinstance(text, str) or not text.strip():
        raise CredentialsError(f"{what} is missing or empty")
    text = text.strip()
    if not text.isprintable() or any(c.isspace() for c in text):
        raise CredentialsError(f"{what} holds whitespace or control characters")
    return text


def _short(public: str) -> str:
    return public if len(public) <= 12 else f"{public[:8]}...{public[-4:]}"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class BtcTurkSigner:
    """Signs BtcTurk REST v1 requests and builds the websocket login message.

    Args:
        public_key: the API public key (``X-PCK``).
        private_key: the API private key, the base64 text the exchange shows; it is decoded
            here, so a key that is not base64 is a :class:`~obengine.CredentialsError` now,
            not a wrong signature later.
    """

    __slots__ = ("public_key", "_private")

    def __init__(self, public_key: str, private_key: str) -> None:
        self.public_key = _check_public(public_key, "the BtcTurk public key")
        self._private = _decode_key(private_key, "the BtcTurk private key")

    def signature(self, nonce: int | str) -> str:
        """The signature of ``public_key + nonce``."""
        return btcturk_signature(self._private.reveal(), self.public_key, nonce)

    def headers(self, nonce_ms: int | None = None) -> dict[str, str]:
        """The REST v1 authentication headers. ``nonce_ms``: the stamp, UTC ms since the
        epoch; by default this machine's clock (the REST client passes its server-corrected
        time)."""
        stamp = _now_ms() if nonce_ms is None else int(nonce_ms)
        return {"X-PCK": self.public_key, "X-Stamp": str(stamp), "X-Signature": self.signature(stamp)}

    def ws_login(self, nonce: int | None = None, timestamp_ms: int | None = None) -> list[Any]:
        """The websocket login message (type 114), ready to be JSON-encoded:
        ``[114, {"type": 114, "publicKey": .., "timestamp": ms, "nonce": n, "signature": ..}]``.
        ``nonce`` defaults to a fresh random integer in 1..2**31-1; ``timestamp_ms`` to now."""
        if nonce is None:
            nonce = secrets.randbelow(MAX_WS_NONCE) + 1
        elif isinstance(nonce, bool) or not isinstance(nonce, int) or nonce < 1:
            raise ValueError(f"nonce must be a positive int, not {nonce!r}")
        timestamp = _now_ms() if timestamp_ms is None else int(timestamp_ms)
        return [
            114,
            {
                "type": 114,
                "publicKey": self.public_key,
                "timestamp": timestamp,
                "nonce": nonce,
                "signature": self.signature(nonce),
            },
        ]

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> BtcTurkSigner:
        """From ``OBENGINE_BTCTURK_PUBLIC_KEY`` and ``OBENGINE_BTCTURK_PRIVATE_KEY``."""
        creds = load_credentials(environ=environ)
        if creds.btcturk is None:
            raise CredentialsError(
                f"no BtcTurk credentials: set {ENV_BTCTURK_PUBLIC_KEY} and {ENV_BTCTURK_PRIVATE_KEY}"
            )
        return creds.btcturk

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> BtcTurkSigner:
        """From a credentials file (see :func:`load_credentials`)."""
        creds = load_credentials(path, environ={})
        if creds.btcturk is None:
            raise CredentialsError(
                f"{os.fspath(path)}: no {ENV_BTCTURK_PUBLIC_KEY} and {ENV_BTCTURK_PRIVATE_KEY} in it"
            )
        return creds.btcturk

    def __repr__(self) -> str:
        return f"BtcTurkSigner(public_key={_short(self.public_key)!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a signer is not picklable: it holds a secret")


class KrakenSigner:
    """Signs Kraken private REST calls (``API-Key`` and ``API-Sign``).

    Args:
        api_key: the API key (``API-Key``).
        secret: the API secret, the base64 text Kraken shows.
    """

    __slots__ = ("api_key", "_secret")

    def __init__(self, api_key: str, secret: str) -> None:
        self.api_key = _check_public(api_key, "the Kraken API key")
        self._secret = _decode_key(secret, "the Kraken secret")

    def sign(self, path: str, nonce: int | str, body: str | bytes) -> str:
        """The ``API-Sign`` value for a POST of ``body`` to ``path`` with ``nonce``."""
        return kraken_signature(self._secret.reveal(), path, nonce, body)

    def headers(self, path: str, nonce: int | str, body: str | bytes) -> dict[str, str]:
        """``API-Key`` and ``API-Sign`` for that POST."""
        return {"API-Key": self.api_key, "API-Sign": self.sign(path, nonce, body)}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> KrakenSigner:
        """From ``OBENGINE_KRAKEN_API_KEY`` and ``OBENGINE_KRAKEN_SECRET``."""
        creds = load_credentials(environ=environ)
        if creds.kraken is None:
            raise CredentialsError(f"no Kraken credentials: set {ENV_KRAKEN_API_KEY} and {ENV_KRAKEN_SECRET}")
        return creds.kraken

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> KrakenSigner:
        """From a credentials file (see :func:`load_credentials`)."""
        creds = load_credentials(path, environ={})
        if creds.kraken is None:
            raise CredentialsError(f"{os.fspath(path)}: no {ENV_KRAKEN_API_KEY} and {ENV_KRAKEN_SECRET} in it")
        return creds.kraken

    def __repr__(self) -> str:
        return f"KrakenSigner(api_key={_short(self.api_key)!r})"

    def __reduce__(self) -> NoReturn:
        raise TypeError("a signer is not picklable: it holds a secret")


WS_LOGIN_HINT = (
    "websocket login needs keys created for websocket access (API Access, 'WebSocket', with this "
    "machine's IP), the private key as the base64 text shown, and a clock in sync with UTC"
)


def check_ws_login(payload: Mapping[str, Any]) -> None:
    """Check the exchange's answer to a websocket login (the payload of its type 114 message,
    ``{"type":114,"ok":false,"id":0,"message":"Unauthorized - Invalid Public key"}`` when
    refused, BTCTrader/broker-api-docs #436): return when ``ok`` is true, else raise
    :class:`~obengine.AuthError` carrying the server's message and what usually causes it."""
    if payload.get("ok") is True:
        return
    message = payload.get("message")
    text = message if isinstance(message, str) and message else "login refused without a message"
    raise AuthError(text, hint=WS_LOGIN_HINT, endpoint="websocket login (114)")


@dataclass(frozen=True)
class Credentials:
    """What :func:`load_credentials` found: a signer per exchange, or ``None``."""

    btcturk: BtcTurkSigner | None = None
    kraken: KrakenSigner | None = None


_KNOWN = (ENV_BTCTURK_PUBLIC_KEY, ENV_BTCTURK_PRIVATE_KEY, ENV_KRAKEN_API_KEY, ENV_KRAKEN_SECRET)


def _read_file(path: str | os.PathLike[str]) -> dict[str, str]:
    """``NAME=value`` lines (the format of a systemd ``EnvironmentFile``): ``#`` comments,
    blank lines, optional ``export``, values optionally in matching quotes."""
    name = os.fspath(path)
    try:
        fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise CredentialsError(f"cannot open credentials file {name}: {exc.strerror}") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise CredentialsError(f"credentials file {name} is not a regular file")
    with os.fdopen(fd, "r", encoding="utf-8") as f:
        if os.name == "posix" and st.st_mode & 0o077:
            raise CredentialsError(
                f"credentials file {name} can be read or written by group or others (mode "
                f"{stat.S_IMODE(st.st_mode):04o}); it is refused, as ssh refuses such a key file: "
                f"run chmod 600 {name}"
            )
        text = f.read()
    values: dict[str, str] = {}
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            raise CredentialsError(f"{name}, line {lineno}: expected NAME=value")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key not in _KNOWN:
            raise CredentialsError(f"{name}, line {lineno}: unknown name {key!r} (known: {', '.join(_KNOWN)})")
        values[key] = value
    return values


def load_credentials(
    path: str | os.PathLike[str] | None = None, *, environ: Mapping[str, str] | None = None
) -> Credentials:
    """The credentials from a file and the environment, the file's values first.

    The file holds ``NAME=value`` lines with the environment variables' names
    (``OBENGINE_BTCTURK_PUBLIC_KEY``, ``OBENGINE_BTCTURK_PRIVATE_KEY``,
    ``OBENGINE_KRAKEN_API_KEY``, ``OBENGINE_KRAKEN_SECRET``), so that the same file serves as a
    systemd ``EnvironmentFile``. A file that group or others can read is refused. An exchange
    whose two values are both absent is ``None``; one of the two without the other is an error.
    ``environ`` defaults to ``os.environ``.
    """
    env = dict(os.environ if environ is None else environ)
    values = {k: env[k] for k in _KNOWN if env.get(k)}
    if path is not None:
        values.update(_read_file(path))
    return Credentials(
        btcturk=_pair(values, ENV_BTCTURK_PUBLIC_KEY, ENV_BTCTURK_PRIVATE_KEY, BtcTurkSigner),
        kraken=_pair(values, ENV_KRAKEN_API_KEY, ENV_KRAKEN_SECRET, KrakenSigner),
    )


def _pair(values: Mapping[str, str], public: str, private: str, cls: Any) -> Any:
    if public not in values and private not in values:
        return None
    for name in (public, private):
        if name not in values:
            other = private if name == public else public
            raise CredentialsError(f"{other} is set but {name} is not")
    return cls(values[public], values[private])
