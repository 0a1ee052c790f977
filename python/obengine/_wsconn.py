"""One websocket client connection for the feed: picows (a websocket client written in Cython
for market data) on an asyncio transport, handing over whole messages as the bytes received.

Why picows, not websockets' client: websockets parses each frame with a chain of Python
generators, about 2.8 us a frame on this project's typical change sets, four times what applying
the frame to its book costs. picows parses in C and calls :meth:`Connection.on_ws_frame` for each
frame, about 0.1 us. The websocket framing, the opening handshake and answering the server's
pings are picows'; this module keeps the messages, reassembles fragments, answers the closing
handshake, and keeps the client's own keepalive (a ping whose pong does not come drops the
connection). The simulated exchange and ``obengine serve`` stay on websockets' server.

Each read of the socket turns into a batch of messages in a deque, and the feed takes them one
by one without awaiting anything until the deque is empty.

Backpressure: at ``HIGH_WATER`` buffered messages the transport stops reading the socket, and
starts again at ``LOW_WATER``; TCP holds the rest. Nothing is ever dropped or coalesced.

No compression: the exchange does not offer permessage-deflate, and a message stays the bytes
received.
"""
from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
import time
from collections import deque

from picows import (
    WSCloseCode,
    WSError,
    WSFrame,
    WSHandshakeError,
    WSInvalidURL,
    WSListener,
    WSMsgType,
    WSTransport,
    ws_connect,
)
from picows.url import parse_url

__all__ = [
    "Connection", "open_connection", "InvalidURL", "HandshakeFailed", "HIGH_WATER", "LOW_WATER", "USER_AGENT",
]

log = logging.getLogger("obengine.feed")

HIGH_WATER = 4096       # buffered messages at which the socket stops being read
LOW_WATER = 1024        # ... and starts again
MAX_MESSAGE = 2**24      # bytes: a larger message (or frame) closes the connection (1009)
# The socket's receive buffer, fixed (Linux doubles it for its bookkeeping, and stops tuning
# it). Left to the kernel it grows to tcp_rmem's maximum (32 MiB on the machine CI runs on)
# under a fast stream whose reader is paused; one read can then return all of it, and picows
# doubles its own read buffer whenever a read fills it: 50 MiB more a connection in CI's
# recorder soak. Fixed, a read brings at most about 512 KiB, and picows' buffer and the
# messages read past HIGH_WATER stay within a few MiB. That still carries 5 MB/s at a 100 ms
# round trip: sixty times the feed's rate of 380 pairs, and its burst of snapshots in well
# under a second.
RECEIVE_BUFFER = 256 << 10
CLOSE_TIMEOUT_S = 1.0


def _user_agent() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        ours = version("obengine")
    except PackageNotFoundError:
        ours = "dev"
    return f"obengine/{ours} picows/{version('picows')}"


USER_AGENT = _user_agent()

_TEXT = WSMsgType.TEXT
_BINARY = WSMsgType.BINARY
_CONTINUATION = WSMsgType.CONTINUATION
_PONG = WSMsgType.PONG
_CLOSE = WSMsgType.CLOSE


class InvalidURL(ValueError):
    """The feed's URL is not a ``ws://`` or ``wss://`` URL with a host."""


class HandshakeFailed(ConnectionError):
    """The server did not accept the websocket handshake; ``status`` is its HTTP status (503
    while it refuses connections), ``None`` when its answer was not a valid response."""

    def __init__(self, message: str, status: int | None) -> None:
        super().__init__(message)
        self.status = status


def _closed_by(who: str, code: int, reason: str | None) -> str:
    """A lost connection's reason, from a close frame: ``closed by the server (1001 going away)``."""
    return f"closed by {who} ({int(code)} {reason})" if reason else f"closed by {who} ({int(code)})"


class Connection(WSListener):
    """An open (or opening) websocket connection. ``messages`` holds the text and binary
    messages received and not yet taken, as bytes, in order; ``lost`` is true once the
    connection cannot deliver more (closed, failed, or a protocol error), and ``reason`` says
    why."""

    def __init__(self, ping_interval_s: float | None, ping_timeout_s: float | None, stamping: bool = False) -> None:
        super().__init__()
        self.messages: deque[bytes] = deque()
        self.lost = False
        self.reason = ""
        self._loop = asyncio.get_running_loop()
        self._transport: WSTransport | None = None
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._parts: list[bytes] | None = None      # a fragmented message being assembled
        self._parts_size = 0
        self._close_rcvd: str | None = None
        self._ping = (ping_interval_s, ping_timeout_s)
        self._ping_payload: bytes | None = None      # the unanswered ping, if any
        self._ping_sent = 0.0
        self._keepalive: asyncio.TimerHandle | None = None
        # Receive times, kept only when asked (the recorder): per socket read that brought
        # messages, (messages received so far, wall ns, monotonic ns).
        self.stamping = stamping
        self._stamps: deque[tuple[int, int, int]] = deque()
        self._received = 0
        self._taken = 0

    # -- the feed's side ------------------------------------------------------------------------

    def take(self) -> bytes:
        """The next message (the caller checked that ``messages`` is not empty)."""
        data = self.messages.popleft()
        if self._paused and len(self.messages) <= LOW_WATER:
            self._paused = False
            if self._transport is not None and not self._transport.is_disconnected:
                self._transport.underlying_transport.resume_reading()
        return data

    def take_stamped(self) -> tuple[bytes, int, int]:
        """The next message with the times the socket read that completed it was handed over:
        wall clock (ns since the epoch) and monotonic (ns). Only with ``stamping`` on."""
        data = self.take()
        self._taken += 1
        stamps = self._stamps
        while stamps[0][0] < self._taken:
            stamps.popleft()
        _, wall_ns, mono_ns = stamps[0]
        return data, wall_ns, mono_ns

    async def wait(self, timeout: float | None) -> bool:
        """Wait until a message is buffered or the connection is lost (``True``), or until
        ``timeout`` seconds passed (``False``)."""
        if self.messages or self.lost:
            return True
        waiter = self._waiter = self._loop.create_future()
        try:
            if timeout is None:
                await waiter
            else:
                async with asyncio.timeout(timeout):
                    await waiter
        except TimeoutError:
            return False
        finally:
            self._waiter = None
        return True

    def send_text(self, data: bytes) -> bool:
        """Send a text message; ``False`` (and the connection marked lost) when it is closing."""
        transport = self._transport
        if transport is None or transport.is_disconnected or transport.is_close_frame_sent:
            self._lose("closed while sending")
            return False
        transport.send(_TEXT, data)
        return True

    async def close(self) -> None:
        """The closing handshake, at most ``CLOSE_TIMEOUT_S``; then the socket is closed."""
        self._stop_timers()
        transport = self._transport
        if transport is None:
            return
        if not transport.is_disconnected:
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            try:
                async with asyncio.timeout(CLOSE_TIMEOUT_S):
                    await asyncio.shield(self._closed)
            except TimeoutError:
                pass
        transport.disconnect(graceful=False)

    # -- picows' listener -----------------------------------------------------------------------

    def on_ws_connected(self, transport: WSTransport) -> None:
        self._transport = transport
        sock = transport.underlying_transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is _TEXT and frame.fin:
            self.messages.append(frame.get_payload_as_bytes())     # nearly every frame
        else:
            self._frame(transport, frame)
        if frame.last_in_buffer:
            self._read_done()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._stamp()       # every message handed over has its time, however the connection ended
        self._stop_timers()
        if not self._closed.done():
            self._closed.set_result(None)
        reason = self._close_rcvd
        if reason is None:
            handshake = transport.close_handshake
            sent = handshake.sent if handshake is not None else None
            if sent is not None and sent.code != WSCloseCode.OK:   # picows refused what came
                reason = _closed_by("the client", sent.code, sent.reason)
        self._lose(reason or "lost (EOF)")

    # -- internals ------------------------------------------------------------------------------

    def _read_done(self) -> None:
        """After the last whole frame of a socket read: stamp it, stop reading at the high water
        mark, wake the reader."""
        self._stamp()
        if len(self.messages) >= HIGH_WATER and not self._paused and self._transport is not None:
            self._paused = True
            self._transport.underlying_transport.pause_reading()
        self._wake()

    def _stamp(self) -> None:
        """Give the messages received since the last stamp this read's time (when stamping)."""
        if not self.stamping:
            return
        received = self._taken + len(self.messages)
        if received > self._received:
            self._received = received
            self._stamps.append((received, time.time_ns(), time.monotonic_ns()))

    def _frame(self, transport: WSTransport, frame: WSFrame) -> None:
        opcode = frame.msg_type
        if opcode is _TEXT or opcode is _BINARY:
            if frame.fin:
                self.messages.append(frame.get_payload_as_bytes())
            else:
                self._parts = [frame.get_payload_as_bytes()]
                self._parts_size = frame.payload_size
        elif opcode is _CONTINUATION:
            if self._parts is not None:
                self._parts.append(frame.get_payload_as_bytes())
                self._parts_size += frame.payload_size
                if self._parts_size > MAX_MESSAGE:
                    self._parts = None
                    transport.send_close(WSCloseCode.MESSAGE_TOO_BIG)
                    self._abort(f"a message larger than {MAX_MESSAGE} bytes")
                elif frame.fin:
                    self.messages.append(b"".join(self._parts))
                    self._parts = None
        elif opcode is _PONG:
            if self._ping_payload is not None and frame.get_payload_as_bytes() == self._ping_payload:
                self._ping_payload = None
        elif opcode is _CLOSE:
            self._close_rcvd = _closed_by("the server", frame.get_close_code(), frame.get_close_reason())
            if not transport.is_close_frame_sent:
                transport.send_close(WSCloseCode.OK)
            transport.disconnect()
        # PING is answered by picows itself.

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _lose(self, reason: str) -> None:
        if not self.lost:
            self.lost = True
            self.reason = reason
        self._wake()

    def _abort(self, reason: str) -> None:
        self._lose(reason)
        if self._transport is not None:
            self._transport.disconnect(graceful=False)

    def start_keepalive(self) -> None:
        interval, _ = self._ping
        if interval is not None:
            self._keepalive = self._loop.call_later(interval, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        interval, timeout = self._ping
        assert interval is not None
        now = self._loop.time()
        transport = self._transport
        if self._ping_payload is not None:
            if timeout is not None and now - self._ping_sent >= timeout:
                log.warning("no pong within %.0f s: dropping the connection", now - self._ping_sent)
                self._abort("keepalive ping timeout")
                return
        elif transport is not None and not transport.is_disconnected and not transport.is_close_frame_sent:
            self._ping_payload = os.urandom(4)
            self._ping_sent = now
            transport.send_ping(self._ping_payload)
        step = interval if timeout is None else min(interval, timeout)
        self._keepalive = self._loop.call_later(step, self._keepalive_tick)

    def _stop_timers(self) -> None:
        if self._keepalive is not None:
            self._keepalive.cancel()
            self._keepalive = None


async def open_connection(
    url: str,
    *,
    open_timeout_s: float | None,
    ping_interval_s: float | None,
    ping_timeout_s: float | None,
    stamping: bool = False,
) -> Connection:
    """Open a websocket connection (TLS verified for ``wss://``: the system's trust store, the
    host name checked). Raises :class:`InvalidURL` before connecting, then
    :class:`HandshakeFailed` for a refused handshake (e.g. an HTTP 503), ``OSError`` or
    ``TimeoutError``."""
    try:
        secure = parse_url(url).is_secure
    except WSInvalidURL as exc:
        raise InvalidURL(str(exc)) from None
    conn = Connection(ping_interval_s, ping_timeout_s, stamping)
    try:
        async with asyncio.timeout(open_timeout_s):
            await ws_connect(
                lambda: conn, url,
                ssl_context=ssl.create_default_context() if secure else None,
                websocket_handshake_timeout=open_timeout_s,
                max_frame_size=MAX_MESSAGE,
                max_redirects=0,
                extra_headers={"User-Agent": USER_AGENT},
                enable_auto_pong=True,
            )
    except WSHandshakeError as exc:
        response = exc.response
        status = int(response.status) if response is not None else None
        raise HandshakeFailed(f"{url}: websocket handshake refused: {exc}", status) from None
    except WSError as exc:
        raise HandshakeFailed(f"{url}: websocket handshake failed: {exc}", None) from None
    except BaseException:
        if conn._transport is not None:
            conn._transport.disconnect(graceful=False)
        raise
    conn.start_keepalive()
    return conn
