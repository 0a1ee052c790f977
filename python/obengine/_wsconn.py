"""One websocket client connection for the feed: websockets' sans-I/O ``ClientProtocol`` driven
by an asyncio protocol that hands over whole text messages as the bytes received.

Why not websockets' own asyncio connection: it wakes a reader (a future, a queue, a coroutine)
for every message, which costs more than applying the frame to its book. Here one read of the
socket turns into a batch of messages in a deque, and the feed takes them one by one without
awaiting anything until the deque is empty. The websocket framing, the handshake, the close
handshake, answering pings and permessage-deflate are all websockets' (its ``ClientProtocol``);
this module only moves bytes and keeps the client's own keepalive.

Backpressure: at ``HIGH_WATER`` buffered messages the transport stops reading the socket, and
starts again at ``LOW_WATER``; TCP holds the rest. Nothing is ever dropped or coalesced.
"""
from __future__ import annotations

import asyncio
import logging
import os
import ssl
import time
from collections import deque

from websockets.client import ClientProtocol
from websockets.exceptions import InvalidState
from websockets.extensions.permessage_deflate import enable_client_permessage_deflate
from websockets.frames import Frame, Opcode
from websockets.http11 import USER_AGENT, Response
from websockets.protocol import State
from websockets.uri import parse_uri

__all__ = ["Connection", "open_connection", "HIGH_WATER", "LOW_WATER"]

log = logging.getLogger("obengine.feed")

HIGH_WATER = 4096        # buffered messages at which the socket stops being read
LOW_WATER = 1024         # ... and starts again
MAX_MESSAGE = 2**24      # bytes: a larger message closes the connection (1009)
CLOSE_TIMEOUT_S = 1.0
_TEXT = Opcode.TEXT


class Connection(asyncio.Protocol):
    """An open (or opening) websocket connection. ``messages`` holds the text and binary
    messages received and not yet taken, as bytes, in order; ``lost`` is true once the
    connection cannot deliver more (closed, failed, or a protocol error)."""

    def __init__(self, ws: ClientProtocol, ping_interval_s: float | None, ping_timeout_s: float | None) -> None:
        self.ws = ws
        self.messages: deque[bytes] = deque()
        self.lost = False
        self.reason = ""
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._handshake: asyncio.Future[Response] = self._loop.create_future()
        self._closed: asyncio.Future[None] = self._loop.create_future()
        self._waiter: asyncio.Future[None] | None = None
        self._paused = False
        self._parts: list[bytes] | None = None      # a fragmented message being assembled
        self._ping = (ping_interval_s, ping_timeout_s)
        self._ping_payload: bytes | None = None      # the unanswered ping, if any
        self._ping_sent = 0.0
        self._keepalive: asyncio.TimerHandle | None = None
        self._close_timer: asyncio.TimerHandle | None = None
        # Receive times, kept only when asked (the recorder): per socket read that brought
        # messages, (messages received so far, wall ns, monotonic ns).
        self.stamping = False
        self._stamps: deque[tuple[int, int, int]] = deque()
        self._received = 0
        self._taken = 0

    # -- the feed's side ------------------------------------------------------------------------

    def take(self) -> bytes:
        """The next message (the caller checked that ``messages`` is not empty)."""
        data = self.messages.popleft()
        if self._paused and len(self.messages) <= LOW_WATER and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()
        return data

    def take_stamped(self) -> tuple[bytes, int, int]:
        """The next message with the times its bytes were read from the socket: wall clock
        (ns since the epoch) and monotonic (ns). Only with ``stamping`` on from the start."""
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
        try:
            self.ws.send_text(data)
        except InvalidState:
            self._lose("closed while sending")
            return False
        self._write()
        return True

    async def close(self) -> None:
        """The closing handshake, at most ``CLOSE_TIMEOUT_S``; then the socket is closed."""
        if self.ws.state is State.OPEN:
            self.ws.send_close()
            self._write()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await asyncio.shield(self._closed)
        except TimeoutError:
            pass
        if self._transport is not None:
            self._transport.abort()
        self._stop_timers()

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._write()                                # the handshake request

    def data_received(self, data: bytes) -> None:
        if self.stamping:
            wall_ns, mono_ns = time.time_ns(), time.monotonic_ns()
            before = len(self.messages)
        ws = self.ws
        ws.receive_data(data)
        append = self.messages.append
        for event in ws.events_received():
            if type(event) is Frame and event.opcode is _TEXT and event.fin:
                append(bytes(event.data))            # nearly every event: a whole text message
            elif type(event) is Frame:
                self._frame(event)
            elif isinstance(event, Response) and not self._handshake.done():
                self._handshake.set_result(event)
        if self.stamping and len(self.messages) > before:
            self._received += len(self.messages) - before
            self._stamps.append((self._received, wall_ns, mono_ns))
        self._write()                                # pongs, the close handshake
        if ws.close_expected() and self._close_timer is None:
            self._close_timer = self._loop.call_later(CLOSE_TIMEOUT_S, self._abort, "no close from the server")
        if len(self.messages) >= HIGH_WATER and not self._paused:
            self._paused = True
            assert self._transport is not None
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self.ws.receive_eof()
        self._write()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.ws.receive_eof()                        # idempotent: the protocol is CLOSED
        self._stop_timers()
        if not self._handshake.done():
            self._handshake.set_exception(ConnectionError(f"connection lost during the handshake: {exc}"))
        if not self._closed.done():
            self._closed.set_result(None)
        close = self.ws.close_rcvd
        self._lose(f"closed by the server ({close})" if close is not None else f"lost ({exc or 'EOF'})")

    # -- internals ------------------------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        opcode = frame.opcode
        if opcode is Opcode.TEXT or opcode is Opcode.BINARY:
            if frame.fin:
                self.messages.append(bytes(frame.data))
            else:
                self._parts = [bytes(frame.data)]
        elif opcode is Opcode.CONT:
            if self._parts is not None:
                self._parts.append(bytes(frame.data))
                if frame.fin:
                    self.messages.append(b"".join(self._parts))
                    self._parts = None
        elif opcode is Opcode.PONG:
            if self._ping_payload is not None and frame.data == self._ping_payload:
                self._ping_payload = None
        # PING is answered by the protocol itself; CLOSE is handled by close_expected().
        # (websockets' parser gives each frame's data as a bytearray: a message is handed over
        # as bytes, immutable, like the bytes websockets' own recv returns.)

    def _write(self) -> None:
        transport = self._transport
        if transport is None:
            return
        for data in self.ws.data_to_send():
            if data:
                transport.write(data)
            elif transport.can_write_eof():
                transport.write_eof()
            else:
                transport.close()

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
            self._transport.abort()

    def start_keepalive(self) -> None:
        interval, _ = self._ping
        if interval is not None:
            self._keepalive = self._loop.call_later(interval, self._keepalive_tick)

    def _keepalive_tick(self) -> None:
        interval, timeout = self._ping
        assert interval is not None
        now = self._loop.time()
        if self._ping_payload is not None:
            if timeout is not None and now - self._ping_sent >= timeout:
                log.warning("no pong within %.0f s: dropping the connection", now - self._ping_sent)
                self._abort("keepalive ping timeout")
                return
        elif self.ws.state is State.OPEN:
            self._ping_payload = os.urandom(4)
            self._ping_sent = now
            self.ws.send_ping(self._ping_payload)
            self._write()
        step = interval if timeout is None else min(interval, timeout)
        self._keepalive = self._loop.call_later(step, self._keepalive_tick)

    def _stop_timers(self) -> None:
        for handle in (self._keepalive, self._close_timer):
            if handle is not None:
                handle.cancel()
        self._keepalive = self._close_timer = None


async def open_connection(
    url: str,
    *,
    compression: str | None,
    open_timeout_s: float | None,
    ping_interval_s: float | None,
    ping_timeout_s: float | None,
    stamping: bool = False,
) -> Connection:
    """Open a websocket connection (TLS verified for ``wss://``). Raises websockets'
    ``InvalidURI``, ``InvalidHandshake`` (``InvalidStatus`` for a refused handshake, e.g. a
    503), ``OSError`` or ``TimeoutError``."""
    uri = parse_uri(url)
    if compression not in (None, "deflate"):
        raise ValueError(f"compression must be None or 'deflate', got {compression!r}")
    extensions = enable_client_permessage_deflate(None) if compression == "deflate" else None
    ws = ClientProtocol(uri, extensions=extensions, max_size=MAX_MESSAGE)
    request = ws.connect()
    request.headers["User-Agent"] = f"obengine {USER_AGENT}"
    ws.send_request(request)
    loop = asyncio.get_running_loop()
    conn = Connection(ws, ping_interval_s, ping_timeout_s)
    conn.stamping = stamping
    context = ssl.create_default_context() if uri.secure else None
    try:
        async with asyncio.timeout(open_timeout_s):
            await loop.create_connection(
                lambda: conn, uri.host, uri.port, ssl=context,
                server_hostname=uri.host if context is not None else None,
            )
            await conn._handshake
    except BaseException:
        if conn._transport is not None:
            conn._transport.abort()
        raise
    if ws.handshake_exc is not None:
        if conn._transport is not None:
            conn._transport.abort()
        raise ws.handshake_exc
    conn.start_keepalive()
    return conn

