"""The feed's websocket connection (``obengine._wsconn``) against real servers on loopback:
websockets' own server, and a bare server built on its sans-I/O protocol that never answers a
ping. Messages come whole and in order (fragments assembled), a consumer that does not take them
stops the socket being read (bounded memory, nothing dropped), an unanswered ping drops the
connection, a close from the server comes after every message it sent, and a refused handshake
raises the server's status. Waits are hang guards, never timed assertions."""
from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response
from websockets.server import ServerProtocol

import obengine
from obengine._wsconn import (
    HIGH_WATER,
    LOW_WATER,
    RECEIVE_BUFFER,
    Connection,
    HandshakeFailed,
    InvalidURL,
    open_connection,
)

GUARD_S = 20.0


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 60))


async def _open(url: str, ping_interval_s: float | None = None, ping_timeout_s: float | None = None,
                stamping: bool = False) -> Connection:
    return await open_connection(
        url, open_timeout_s=5.0, ping_interval_s=ping_interval_s, ping_timeout_s=ping_timeout_s, stamping=stamping,
    )


async def _take_all(conn: Connection, count: int) -> list[bytes]:
    got: list[bytes] = []
    while len(got) < count:
        assert await conn.wait(GUARD_S), f"only {len(got)} of {count} messages within the guard"
        while conn.messages:
            got.append(conn.take())
        if conn.lost and not conn.messages:
            break
    return got


def test_fragmented_and_whole_messages_come_whole_as_bytes_and_in_order() -> None:
    sent = [b"[432,{\"CS\":1}]", "t\u00e9xt as str", b"\x00\x01binary", b"x" * 100_000]

    async def handler(ws: ServerConnection) -> None:
        await ws.send(sent[0].decode(), text=True)
        await ws.send([sent[1][:3], sent[1][3:]])                  # a text message in two fragments
        await ws.send(sent[2])                                    # binary
        await ws.send([sent[3][i:i + 7_000] for i in range(0, len(sent[3]), 7_000)], text=True)
        await ws.wait_closed()

    async def test() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            conn = await _open(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            got = await _take_all(conn, 4)
            await conn.close()
        assert got == [sent[0], sent[1].encode(), sent[2], sent[3]]
        assert all(type(m) is bytes for m in got)

    run(test)


def test_a_consumer_that_takes_nothing_stops_the_socket_being_read_and_loses_nothing() -> None:
    count = HIGH_WATER * 6
    pad = b'{"CP":1,"P":"1","A":"1"},' * 40                   # ~1 KiB a message: 24 MiB in all,
    messages = [b'[432,{"CS":%d,"AO":[%s],"BO":[]}]' % (i, pad[:-1]) for i in range(count)]  # beyond any socket buffer
    server_done = asyncio.Event

    async def test() -> None:
        done = server_done()

        async def handler(ws: ServerConnection) -> None:
            for m in messages:
                await ws.send(m, text=True)           # blocks once the client stops reading
            done.set()
            await ws.wait_closed()

        async with serve(handler, "127.0.0.1", 0, write_limit=2**14) as server:
            conn = await _open(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            # Take nothing until the client has stopped reading and the buffer stays put.
            seen = -1
            while len(conn.messages) != seen:
                seen = len(conn.messages)
                await asyncio.sleep(0.2)
            # bounded: at most one socket read past the mark (the receive buffer is fixed, and
            # Linux doubles the figure given), the rest waits in TCP and in the server
            most = HIGH_WATER + 2 * RECEIVE_BUFFER // len(messages[0]) + 1
            assert conn._paused
            assert HIGH_WATER <= len(conn.messages) <= most
            assert not done.is_set()                              # the server is held back
            # Take down to the low mark: reading starts again, with the kernel's buffer full.
            got = [conn.take() for _ in range(len(conn.messages) - LOW_WATER)]
            assert not conn._paused
            seen = -1
            while len(conn.messages) != seen:
                seen = len(conn.messages)
                await asyncio.sleep(0.2)
            assert conn._paused and HIGH_WATER <= len(conn.messages) <= most
            got += await _take_all(conn, count - len(got))
            await asyncio.wait_for(done.wait(), GUARD_S)
            await conn.close()
        assert got == messages

    run(test)


@pytest.mark.parametrize("code", [1000, 1001])
def test_a_close_from_the_server_comes_after_every_message_it_sent(code: int) -> None:
    async def handler(ws: ServerConnection) -> None:
        for i in range(500):
            await ws.send(f"[432,{{\"CS\":{i}}}]")
        await ws.close(code)

    async def test() -> None:
        async with serve(handler, "127.0.0.1", 0) as server:
            conn = await _open(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            got = await _take_all(conn, 501)
            assert conn.lost and str(code) in conn.reason
            await conn.close()
        assert got == [f"[432,{{\"CS\":{i}}}]".encode() for i in range(500)]

    run(test)


def test_a_refused_handshake_raises_the_servers_status() -> None:
    def refuse(connection: ServerConnection, request: Request) -> Response:
        return connection.respond(503, "maintenance\n")

    async def test() -> None:
        async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=refuse) as server:
            with pytest.raises(HandshakeFailed) as info:
                await _open(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")
        assert info.value.status == 503 and "503" in str(info.value)

    run(test)


async def _accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> ServerProtocol | None:
    """A bare server's side of the opening handshake, on websockets' sans-I/O protocol: the
    protocol, open, with the response written; ``None`` if the client left first."""
    protocol = ServerProtocol()
    while True:
        data = await reader.read(65536)
        if not data:
            return None
        protocol.receive_data(data)
        requests = [e for e in protocol.events_received() if isinstance(e, Request)]
        if requests:
            break
    protocol.send_response(protocol.accept(requests[0]))
    for out in protocol.data_to_send():
        writer.write(out)
    return protocol


async def _deaf_server() -> AsyncIterator[int]:
    """A websocket server that accepts, sends a hello, and never writes again: pings go
    unanswered. Yields its port; counts its connections in ``_deaf_server.connections``."""
    connections: list[int] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(1)
        protocol = await _accept(reader, writer)
        if protocol is None:
            return
        protocol.send_text(b'[991,{"type":991,"current":"6.0.0","min":"2.3.0"}]')
        for out in protocol.data_to_send():
            writer.write(out)
        while await reader.read(65536):      # reads (joins, pings) and answers nothing
            pass
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    _deaf_server.connections = connections   # type: ignore[attr-defined]
    async with server:
        yield server.sockets[0].getsockname()[1]


def test_a_ping_left_unanswered_drops_the_connection_and_the_feed_reconnects() -> None:
    async def test() -> None:
        servers = _deaf_server()
        port = await servers.__anext__()
        conn = await _open(f"ws://127.0.0.1:{port}", ping_interval_s=0.1, ping_timeout_s=0.2)
        got = await _take_all(conn, 2)           # the hello, then the loss
        assert got[0].startswith(b"[991,") and conn.lost and "ping" in conn.reason
        await conn.close()

        async with obengine.connect(
            ["BTCTRY"], url=f"ws://127.0.0.1:{port}", scales={"BTCTRY": (0, 8)},
            ping_interval_s=0.1, ping_timeout_s=0.2, reconnect_initial_s=0.01, reconnect_max_s=0.05,
        ) as feed:
            async def until_reconnected() -> None:
                async for _ in feed:
                    pass

            task = asyncio.create_task(until_reconnected())
            while feed.connections < 3:
                assert not task.done(), task
                await asyncio.sleep(0.05)
            task.cancel()
        assert feed.stats.reconnects >= 2
        await servers.aclose()

    run(test)


def test_the_handshake_sends_a_user_agent_naming_obengine() -> None:
    agents: list[str] = []

    def record(connection: ServerConnection, request: Request) -> None:
        agents.append(Headers(request.headers).get("User-Agent", ""))

    async def test() -> None:
        async with serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=record) as server:
            conn = await _open(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}")
            await conn.close()
        assert agents and agents[0].startswith("obengine/") and " picows/" in agents[0]

    run(test)


def test_tls_is_verified_against_the_systems_trust_store() -> None:
    """A ``wss://`` server whose certificate no trusted authority signed is refused; the same
    server is accepted once its authority is trusted (``SSL_CERT_FILE``, read by OpenSSL's
    default paths), so the refusal is the verification, not a broken TLS path."""
    import os
    import ssl

    import trustme          # the test extra
    authority = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("localhost").configure_cert(server_context)

    async def test() -> None:
        async with serve(lambda ws: ws.wait_closed(), "localhost", 0, ssl=server_context) as server:
            url = f"wss://localhost:{server.sockets[0].getsockname()[1]}"
            with pytest.raises(ssl.SSLCertVerificationError):
                await _open(url)
            with authority.cert_pem.tempfile() as ca_file:
                before = os.environ.get("SSL_CERT_FILE")
                os.environ["SSL_CERT_FILE"] = ca_file
                try:
                    conn = await _open(url)
                finally:
                    if before is None:
                        del os.environ["SSL_CERT_FILE"]
                    else:
                        os.environ["SSL_CERT_FILE"] = before
            await conn.close()

    run(test)


@pytest.mark.parametrize("url", ["http://127.0.0.1:1/", "ws:///no-host", "127.0.0.1:9000"])
def test_a_url_that_is_not_a_websocket_url_is_refused_before_connecting(url: str) -> None:
    async def test() -> None:
        with pytest.raises(InvalidURL, match="isn't a valid URL") as info:
            await _open(url)
        assert isinstance(info.value, ValueError) and url in str(info.value)

    run(test)


def test_messages_before_a_protocol_error_come_whole_and_stamped() -> None:
    """A read whose last frame breaks the protocol (a reserved opcode): the messages before it
    are delivered, each with its receive time (the recorder's stamps), then the loss."""
    from websockets.frames import Frame, Opcode

    good = [b'[432,{"CS":%d}]' % i for i in range(5)]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await _accept(reader, writer) is None:
            return
        await writer.drain()
        await asyncio.sleep(0.05)
        # one write: five text frames, then a frame with the reserved opcode 3
        writer.write(b"".join(Frame(Opcode.TEXT, m).serialize(mask=False) for m in good) + b"\x83\x01x")
        await writer.drain()
        await reader.read()                      # until the client closes
        writer.close()

    async def test() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        async with server:
            conn = await _open(f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}", stamping=True)
            got = []
            while not (conn.lost and not conn.messages):
                assert await conn.wait(GUARD_S), "neither a message nor the loss within the guard"
                while conn.messages:
                    got.append(conn.take_stamped())
            await conn.close()
        assert [m for m, _, _ in got] == good
        assert all(wall > 0 and mono > 0 for _, wall, mono in got)
        assert conn.lost and "1002" in conn.reason and "opcode" in conn.reason, conn.reason

    run(test)
