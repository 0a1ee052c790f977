"""A websocket server for the live-feed benchmark, run in its own process: it serves one stream
(the hello, a 431 of every pair, then the workload's 432s) to every connection, and reads and
drops what the client sends (its joins). Usage: ``python feed_server.py WORKLOAD SHORT`` prints
its port and the stream's message count on the first line of stdout.

The stream is framed once, up front (websockets' own frame serializer, the handshake through its
sans-I/O ``ServerProtocol``), and written to each connection with one ``sendall``: the server
sends at the kernel's speed, so the client under test is always the slower side and the
benchmark times the client, not this server. A server that framed and sent each message in
Python costs about as much per message as the clients it serves, and its pace would be timed
instead."""
from __future__ import annotations

import os
import socket
import sys
import threading

sys.path.insert(0, os.path.dirname(__file__))

import workloads  # noqa: E402
from websockets.frames import Frame, Opcode  # noqa: E402
from websockets.http11 import Request  # noqa: E402
from websockets.server import ServerProtocol  # noqa: E402

HELLO = b'[991,{"type":991,"current":"6.0.0","min":"2.3.0"}]'


def serve_one(conn: socket.socket, blob: bytes) -> None:
    with conn:
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        protocol = ServerProtocol(max_size=None)
        while True:
            data = conn.recv(65536)
            if not data:
                return
            protocol.receive_data(data)
            requests = [e for e in protocol.events_received() if isinstance(e, Request)]
            if requests:
                break
        protocol.send_response(protocol.accept(requests[0]))
        for out in protocol.data_to_send():
            conn.sendall(out)
        conn.sendall(blob)
        while not protocol.close_rcvd:  # the client's joins are read and dropped; its close answered
            data = conn.recv(65536)
            if not data:
                return
            protocol.receive_data(data)
            protocol.events_received()
        for out in protocol.data_to_send():
            conn.sendall(out)


def main(name: str, short: bool) -> None:
    wl = workloads.build(name, short)
    stream = [HELLO, *wl.prefix, *wl.frames]
    blob = b"".join(Frame(Opcode.TEXT, bytes(m)).serialize(mask=False) for m in stream)
    listener = socket.create_server(("127.0.0.1", 0))
    print(listener.getsockname()[1], len(stream), flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve_one, args=(conn, blob), daemon=True).start()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2] == "1")
