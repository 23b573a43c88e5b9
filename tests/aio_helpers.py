"""Helpers for the asyncio-layer tests (fixtures are in conftest.py).

A hand-written raw WebSocket peer and server cover what a well-behaved
ripple peer can't do: stay silent, send half a request, stop reading.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import socket
import struct
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import ripple

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

#: The bound for anything that should happen "soon" in these tests.
BOUND = 5.0

#: What the ``pair`` fixture yields: a client and the server side of its connection.
Pair = tuple[ripple.ClientConnection, ripple.ServerConnection]


async def gated_parts(first: str, second: str, release: asyncio.Event) -> AsyncIterator[str]:
    """Two fragments with a wait between them: a fragmented send held open
    until ``release`` is set."""
    yield first
    await release.wait()
    yield second


async def within(aw: Awaitable[Any], seconds: float = BOUND) -> Any:
    """Await with a generous upper bound (works on Python 3.10 too)."""
    return await asyncio.wait_for(aw, seconds)


async def eventually(
    predicate: Callable[[], bool], seconds: float = BOUND, step: float = 0.005
) -> None:
    """Poll until predicate() is true; fail after `seconds`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {seconds} s")
        await asyncio.sleep(step)


def ws_url(server: ripple.Server) -> str:
    host, port = next(iter(server.sockets)).getsockname()[:2]
    return f"ws://{host}:{port}/"


def server_port(server: ripple.Server) -> int:
    return int(next(iter(server.sockets)).getsockname()[1])


def accept_value(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def build_frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True, rsv: int = 0
) -> bytes:
    """Encode one frame by hand (independent of ripple's encoder)."""
    head = bytearray([(0x80 if fin else 0) | rsv | opcode])
    mask_bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head.append(mask_bit | n)
    elif n < 65536:
        head.append(mask_bit | 126)
        head += struct.pack("!H", n)
    else:
        head.append(mask_bit | 127)
        head += struct.pack("!Q", n)
    if not mask:
        return bytes(head) + payload
    key = os.urandom(4)
    masked = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes(head) + key + masked


async def read_http_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """Read an HTTP/1.1 response: status, headers (lower-case names), body."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    body = b""
    if "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    return status, headers, body


class RawPeer:
    """A WebSocket peer written by hand over asyncio streams.

    It does only what a test tells it to: it answers nothing on its own,
    so it can play a silent, slow or misbehaving peer.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, mask: bool
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.mask = mask

    async def handshake(
        self, path: str = "/", extra: str = ""
    ) -> tuple[int, dict[str, str], bytes]:
        """Send a client handshake; return the server's response."""
        key = base64.b64encode(os.urandom(16))
        self.writer.write(
            f"GET {path} HTTP/1.1\r\n"
            "Host: 127.0.0.1\r\n"
            "Upgrade: websocket\r\n"
            "Connection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key.decode()}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            f"{extra}\r\n".encode()
        )
        status, headers, body = await within(read_http_response(self.reader))
        if status == 101:
            assert headers["sec-websocket-accept"] == accept_value(key).decode()
        return status, headers, body

    def send_frame(self, opcode: int, payload: bytes = b"", *, fin: bool = True) -> None:
        self.writer.write(build_frame(opcode, payload, fin=fin, mask=self.mask))

    def send_close(self, code: int = 1000, reason: str = "") -> None:
        self.send_frame(0x8, struct.pack("!H", code) + reason.encode())

    async def recv_frame(self) -> tuple[bool, int, bytes]:
        """Read one frame: (fin, opcode, payload); unmasks if needed."""
        b0, b1 = await within(self.reader.readexactly(2))
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        key = await self.reader.readexactly(4) if b1 & 0x80 else b""
        payload = await within(self.reader.readexactly(n))
        if key:
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        return bool(b0 & 0x80), b0 & 0x0F, payload

    async def recv_until(self, opcode: int) -> bytes:
        """Skip frames (pings, ...) until one with `opcode`; return its payload."""
        while True:
            _, op, payload = await self.recv_frame()
            if op == opcode:
                return payload

    async def read_eof(self, seconds: float = BOUND) -> bytes:
        """Read until the other side closes the connection; return what came."""
        return bytes(await within(self.reader.read(), seconds))

    def close(self) -> None:
        self.writer.close()


async def open_raw(host: str, port: int, **kwargs: Any) -> RawPeer:
    reader, writer = await within(asyncio.open_connection(host, port, **kwargs))
    return RawPeer(reader, writer, mask=True)


async def open_raw_unix(path: str) -> RawPeer:
    reader, writer = await within(asyncio.open_unix_connection(path))
    return RawPeer(reader, writer, mask=True)


class RawServer:
    """A hand-written WebSocket server: answers the handshake, then does only
    what the test does with the :class:`RawPeer` it hands out.

    ``reply(key)`` builds the bytes answering a request whose
    Sec-WebSocket-Key is ``key``: a valid 101 by default; None sends nothing
    (a server that never answers); b"" closes the connection at once.
    """

    def __init__(self) -> None:
        self.peers: asyncio.Queue[RawPeer] = asyncio.Queue()
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None
        self.reply: Callable[[bytes], bytes | None] = self.accept

    @staticmethod
    def accept(key: bytes) -> bytes:
        return (
            b"HTTP/1.1 101 Switching Protocols\r\n"
            b"Upgrade: websocket\r\n"
            b"Connection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept_value(key) + b"\r\n\r\n"
        )

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        self.requests.append(head)
        key = b""
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"sec-websocket-key":
                key = value.strip()
        peer = RawPeer(reader, writer, mask=False)
        answer = self.reply(key)
        if answer == b"":
            writer.close()
        elif answer is not None:
            writer.write(answer)
        await self.peers.put(peer)

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/"

    async def next_peer(self) -> RawPeer:
        return await within(self.peers.get())

    async def aclose(self) -> None:
        while not self.peers.empty():
            self.peers.get_nowait().writer.transport.abort()
        if self.server is not None:
            self.server.close()
            await within(self.server.wait_closed())


class Servers:
    """Starts ripple servers and makes sure they all stop at teardown."""

    def __init__(self) -> None:
        self.servers: list[ripple.Server] = []

    async def start(self, handler: Any, **kwargs: Any) -> tuple[ripple.Server, str]:
        kwargs.setdefault("host", "127.0.0.1")
        kwargs.setdefault("port", 0)
        server = await within(ripple.serve(handler, **kwargs))
        self.servers.append(server)
        return server, ws_url(server)

    async def start_unix(self, handler: Any, path: str, **kwargs: Any) -> ripple.Server:
        server = await within(ripple.unix_serve(handler, path, **kwargs))
        self.servers.append(server)
        return server

    async def aclose(self) -> None:
        for server in self.servers:
            server.close()
        for server in self.servers:
            await within(server.wait_closed())


async def echo(ws: ripple.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


class Parked:
    """A handler that hands its connection to the test and waits for it to close."""

    def __init__(self) -> None:
        self.connections: asyncio.Queue[ripple.ServerConnection] = asyncio.Queue()

    async def __call__(self, ws: ripple.ServerConnection) -> None:
        await self.connections.put(ws)
        await ws.wait_closed()

    async def next(self) -> ripple.ServerConnection:
        return await within(self.connections.get())


def free_port() -> int:
    """A port nobody listens on (bound then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def raw_connection(port: int) -> AsyncIterator[RawPeer]:
    peer = await open_raw("127.0.0.1", port)
    try:
        yield peer
    finally:
        peer.writer.transport.abort()


if sys.version_info >= (3, 11):
    bounded = asyncio.timeout
else:  # pragma: no cover - Python 3.10 has no asyncio.timeout

    @contextlib.asynccontextmanager
    async def bounded(seconds: float) -> AsyncIterator[None]:
        """Cancel the block after `seconds` and raise TimeoutError."""
        task = asyncio.current_task()
        assert task is not None
        fired = False

        def expire() -> None:
            nonlocal fired
            fired = True
            task.cancel()

        handle = asyncio.get_running_loop().call_later(seconds, expire)
        try:
            yield
        except asyncio.CancelledError:
            if fired:
                raise TimeoutError(f"block took longer than {seconds} s") from None
            raise
        finally:
            handle.cancel()


async def connect_many(
    servers: Servers, n: int, **server_options: Any
) -> tuple[list[ripple.ClientConnection], list[ripple.ServerConnection]]:
    parked = Parked()
    server_options.setdefault("compression", None)  # plain frames unless asked
    _, url = await servers.start(parked, **server_options)
    clients = [await within(ripple.connect(url)) for _ in range(n)]
    conns = [await parked.next() for _ in range(n)]
    # Order the server connections like the clients.
    by_addr = {c.remote_address: c for c in conns}
    return clients, [by_addr[c.local_address] for c in clients]


async def raw_pair(
    servers: Servers, **server_options: Any
) -> tuple[RawPeer, ripple.ServerConnection, ripple.Server]:
    """A server with ``server_options``, a raw peer that completed the
    handshake, and the server side of its connection (held open by ``Parked``)."""
    parked = Parked()
    server, _ = await servers.start(parked, **server_options)
    peer = await open_raw("127.0.0.1", server_port(server))
    status, _, _ = await peer.handshake()
    assert status == 101
    return peer, await parked.next(), server
