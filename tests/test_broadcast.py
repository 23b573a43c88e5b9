"""broadcast(): one message to many connections, encoded once."""

from __future__ import annotations

import asyncio
import base64
import importlib
import logging
import os
import resource
import socket
import sys
import tracemalloc
from collections.abc import Iterator
from typing import Any

import pytest

import ripple
from aio_helpers import Parked, Servers, connect_many, eventually, gated_parts, server_port, within
from ripple.protocol.deflate import PerMessageDeflate, ServerPerMessageDeflateFactory

pytestmark = pytest.mark.timeout(30)

# The module: the package attribute ripple.broadcast is the function.
broadcast_module = importlib.import_module("ripple.broadcast")

# ExceptionGroup on 3.11+, ripple's stand-in with .exceptions on 3.10.
EXCEPTION_GROUP: Any = broadcast_module._ExceptionGroup
BroadcastStats = broadcast_module.BroadcastStats
BroadcastOverflow = broadcast_module.BroadcastOverflow


async def test_broadcast_text_and_binary_to_many(group: Any) -> None:
    clients, conns = group
    assert ripple.broadcast(conns, "to everyone") is None  # doesn't wait
    ripple.broadcast(conns, b"\x00bytes")
    ripple.broadcast(iter(conns), bytearray(b"from an iterator"))
    for client in clients:
        assert await within(client.recv()) == "to everyone"
        assert await within(client.recv()) == b"\x00bytes"
        assert await within(client.recv()) == b"from an iterator"


async def test_broadcast_large_message(group: Any) -> None:
    clients, conns = group
    big = "é" * 40000  # 80000 bytes: a 64-bit length
    ripple.broadcast(conns, big)
    for client in clients:
        assert await within(client.recv()) == big


async def test_broadcast_skips_closed_connections(group: Any) -> None:
    clients, conns = group
    for client in clients[:5]:
        await within(client.close())
    for conn in conns[:5]:
        await within(conn.wait_closed())
    ripple.broadcast(conns, "to the living")  # no exception
    for client in clients[5:]:
        assert await within(client.recv()) == "to the living"
    for client in clients[:5]:
        with pytest.raises(ripple.ConnectionClosed):
            await client.recv()


async def test_broadcast_skips_closing_connections(group: Any) -> None:
    clients, conns = group
    # A close frame sent but no answer yet: CLOSING, nothing may follow.
    assert clients[0].transport is not None
    clients[0].transport.pause_reading()
    closing = asyncio.create_task(conns[0].close())
    await asyncio.sleep(0.01)
    assert conns[0].state is ripple.State.CLOSING
    ripple.broadcast(conns, "after close")
    assert await within(clients[1].recv()) == "after close"
    clients[0].transport.resume_reading()
    with pytest.raises(ripple.ConnectionClosedOK):
        await within(clients[0].recv())
    await within(closing)


async def test_broadcast_raise_exceptions_lists_closed_connections(group: Any) -> None:
    clients, conns = group
    for client in clients[:3]:
        await within(client.close())
    for conn in conns[:3]:
        await within(conn.wait_closed())
    with pytest.raises(EXCEPTION_GROUP) as info:
        ripple.broadcast(conns, "partial", raise_exceptions=True)
    if sys.version_info >= (3, 11):
        assert isinstance(info.value, ExceptionGroup)  # noqa: F821 (3.11+ builtin)
    errors = info.value.exceptions
    assert len(errors) == 3
    assert all(isinstance(e, ripple.ConnectionClosed) for e in errors)
    assert all(e.code == 1000 for e in errors)  # type: ignore[attr-defined]
    # The open connections got the message anyway.
    for client in clients[3:]:
        assert await within(client.recv()) == "partial"


async def test_broadcast_raise_exceptions_without_failures_doesnt_raise(group: Any) -> None:
    clients, conns = group
    ripple.broadcast(conns, "all open", raise_exceptions=True)
    for client in clients:
        assert await within(client.recv()) == "all open"


async def test_broadcast_encodes_the_frame_once(
    group: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    clients, conns = group
    real = broadcast_module.encode_frame
    calls: list[Any] = []

    def counting(*args: Any, **kwargs: Any) -> bytes:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(broadcast_module, "encode_frame", counting)
    ripple.broadcast(conns, "encoded once")
    assert len(calls) == 1
    ripple.broadcast(conns, b"binary, once")
    assert len(calls) == 2
    for client in clients:
        assert await within(client.recv()) == "encoded once"
        assert await within(client.recv()) == b"binary, once"


async def test_broadcast_from_clients_masks_each_frame(servers: Servers) -> None:
    clients, conns = await connect_many(servers, 3)
    try:
        # Client frames are masked: each connection encodes its own; the
        # servers accept them (an unmasked frame would close with 1002).
        ripple.broadcast(clients, "from clients")
        for conn in conns:
            assert await within(conn.recv()) == "from clients"
    finally:
        for client in clients:
            await within(client.close())


async def test_broadcast_skips_connection_sending_fragments(group: Any) -> None:
    clients, conns = group
    release = asyncio.Event()

    sending = asyncio.create_task(conns[0].send(gated_parts("frag-1 ", "frag-2", release)))
    await asyncio.sleep(0.01)
    ripple.broadcast(conns, "broadcast")
    with pytest.raises(EXCEPTION_GROUP) as info:
        ripple.broadcast(conns, "again", raise_exceptions=True)
    assert len(info.value.exceptions) == 1
    release.set()
    await within(sending)
    # The busy connection's message isn't corrupted by the broadcast.
    assert await within(clients[0].recv()) == "frag-1 frag-2"
    assert await within(clients[1].recv()) == "broadcast"


@pytest.mark.parametrize("bad", [{"a": 1}, 42, None, ["list"]])
async def test_broadcast_rejects_non_messages(group: Any, bad: object) -> None:
    _, conns = group
    with pytest.raises(TypeError):
        ripple.broadcast(conns, bad)  # type: ignore[arg-type]


def test_broadcast_to_nobody() -> None:
    ripple.broadcast([], "nobody listens")
    ripple.broadcast([], "nobody listens", raise_exceptions=True)


async def test_broadcast_compresses_once_per_group_without_context_takeover(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # server_no_context_takeover: a compressed message is the same bytes for
    # every connection with the same parameters.
    shared = ServerPerMessageDeflateFactory(server_no_context_takeover=True)
    clients, conns = await connect_many(servers, 10, compression=None, extensions=[shared])
    try:
        for conn in conns:
            assert conn.protocol is not None
            (ext,) = conn.protocol.extensions
            assert isinstance(ext, PerMessageDeflate) and ext.shared_key is not None
        real = broadcast_module.compress_message
        calls: list[Any] = []

        def counting(*args: Any) -> bytes:
            calls.append(args)
            return real(*args)

        monkeypatch.setattr(broadcast_module, "compress_message", counting)
        message = "compressible " * 200
        ripple.broadcast(conns, message)
        assert len(calls) == 1
        for client in clients:
            assert await within(client.recv()) == message
        # The connections' own contexts still work after a shared frame.
        for conn, client in zip(conns, clients, strict=True):
            await conn.send("own " * 50)
            assert await within(client.recv()) == "own " * 50
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abort()


async def test_broadcast_with_context_takeover_compresses_per_connection(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    takeover = ServerPerMessageDeflateFactory()  # context takeover on both sides
    clients, conns = await connect_many(servers, 5, extensions=[takeover])
    try:
        calls: list[Any] = []
        real = broadcast_module.compress_message
        monkeypatch.setattr(
            broadcast_module, "compress_message", lambda *a: calls.append(a) or real(*a)
        )
        for _ in range(3):  # each connection's context carries over correctly
            ripple.broadcast(conns, "context " * 100)
            for client in clients:
                assert await within(client.recv()) == "context " * 100
        assert calls == []  # never shared: each connection used its own compressor
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abort()


async def test_default_compression_shares_one_compressed_frame(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    # compression="deflate" (the default) negotiates server_no_context_takeover.
    clients, conns = await connect_many(servers, 5, compression="deflate")
    try:
        calls: list[Any] = []
        real = broadcast_module.compress_message
        monkeypatch.setattr(
            broadcast_module, "compress_message", lambda *a: calls.append(a) or real(*a)
        )
        ripple.broadcast(conns, "shared " * 100)
        for client in clients:
            assert await within(client.recv()) == "shared " * 100
            ext = client.response_headers["Sec-WebSocket-Extensions"]
            assert "server_no_context_takeover" in ext
        assert len(calls) == 1
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abort()


# -- slow consumers: broadcast_limit and broadcast_overflow -------------------------
#
# A slow consumer is a socket that did the handshake and doesn't read, with
# small kernel buffers on both ends (the client's SO_RCVBUF before connect, the
# server side's SO_SNDBUF), so what it doesn't read piles up in the server's
# transport buffer: the bytes broadcast_limit caps.

LIMIT = 64 * 1024
KIB = 1024
FRAME = 4 + KIB  # a 1 KiB message in an unmasked frame: 2-byte header + 16-bit length
CLOSE_FRAME = 2 + 2 + len(broadcast_module.OVERFLOW_REASON.encode())


def numbered(n: int, size: int = KIB) -> list[bytes]:
    """n binary messages of `size` bytes, each starting with its index."""
    return [i.to_bytes(4, "big") + os.urandom(size - 4) for i in range(n)]


def small_kernel_buffers(conn: ripple.Connection) -> None:
    assert conn.transport is not None
    sock = conn.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)


def buffered(conn: ripple.Connection) -> int:
    # The transport's buffer plus the broadcast frames queued in this iteration.
    return conn._buffered()


async def small_socket(port: int) -> socket.socket:
    """A connected TCP socket with a small receive window."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect
    sock.setblocking(False)
    await within(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)))
    return sock


async def silent_client(port: int) -> socket.socket:
    """A raw client that does the handshake, then never reads."""
    loop = asyncio.get_running_loop()
    sock = await small_socket(port)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    )
    await within(loop.sock_sendall(sock, request.encode()))
    head = b""
    while b"\r\n\r\n" not in head:  # nothing else comes before a broadcast
        chunk = await within(loop.sock_recv(sock, 4096))
        assert chunk, "closed during the handshake"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101 ")
    return sock


class Slow:
    """A server, readers, and one silent client, with every server connection."""

    def __init__(
        self,
        server: ripple.Server,
        readers: list[ripple.ClientConnection],
        conns: list[ripple.ServerConnection],
        slow: ripple.ServerConnection,
        sock: socket.socket,
    ) -> None:
        self.server = server
        self.readers = readers
        self.conns = conns  # the readers' first, in order, then the slow one
        self.slow = slow
        self.sock = sock

    def close(self) -> None:
        for client in self.readers:
            if client.transport is not None:
                client.transport.abort()
        self.sock.close()


async def slow_setup(servers: Servers, n_readers: int, **server_options: Any) -> Slow:
    parked = Parked()
    server_options.setdefault("compression", None)
    server_options.setdefault("ping_interval", None)
    server, url = await servers.start(parked, **server_options)
    readers: list[ripple.ClientConnection] = []
    for start in range(0, n_readers, 100):  # in batches: the listen backlog
        batch = [
            ripple.connect(url, compression=None, ping_interval=None)
            for _ in range(min(100, n_readers - start))
        ]
        readers += await within(asyncio.gather(*batch), 30)
    sock = await silent_client(server_port(server))
    by_addr = {}
    for _ in range(n_readers + 1):
        conn = await parked.next()
        by_addr[conn.remote_address] = conn
    slow = by_addr.pop(sock.getsockname())
    small_kernel_buffers(slow)
    conns = [by_addr[client.local_address] for client in readers] + [slow]
    return Slow(server, readers, conns, slow, sock)


async def consume(client: ripple.ClientConnection, expected: list[bytes]) -> int:
    """Receive len(expected) messages; return how many matched, in order."""
    for i, want in enumerate(expected):
        if await client.recv() != want:
            return i
    return len(expected)


@pytest.fixture
def many_files() -> Iterator[None]:
    # 1,000 clients: 2,000+ sockets in this process.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 4096
    if soft >= needed:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {needed}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.timeout(60)  # ~5-15 s: 200,000 writes and as many messages received
async def test_slow_consumer_among_1000_readers_is_closed_with_1013(
    servers: Servers, many_files: None, caplog: pytest.LogCaptureFixture
) -> None:
    n_readers, n_messages = 1000, 200
    setup = await slow_setup(servers, n_readers, broadcast_limit=LIMIT, close_timeout=1)
    try:
        messages = numbered(n_messages)
        consumers = [asyncio.create_task(consume(c, messages)) for c in setup.readers]
        slow = setup.slow
        max_slow = max_readers = 0
        after_close: list[int] = []
        with caplog.at_level(logging.DEBUG, logger="ripple.broadcast"):
            for i, message in enumerate(messages):
                ripple.broadcast(setup.conns, message)
                if slow.state is ripple.State.OPEN:
                    max_slow = max(max_slow, buffered(slow))
                else:
                    after_close.append(buffered(slow))
                max_readers = max(max_readers, *(buffered(c) for c in setup.conns[:-1]))
                if i % 10 == 9:
                    await asyncio.sleep(0)  # let the readers read, in bursts of 10
            counts = await within(asyncio.gather(*consumers), 20)
        # Every reader got every message, in order.
        assert counts == [n_messages] * n_readers
        # The slow one went over the limit by at most one message, then was
        # closed with 1013 (the close frame queued after the rest), and got
        # nothing more: its buffer never grew after that.
        assert LIMIT < max_slow <= LIMIT + FRAME
        assert after_close and max(after_close) <= max_slow + CLOSE_FRAME
        assert slow.protocol is not None and slow.protocol.close_sent is not None
        assert slow.protocol.close_sent.code == 1013
        assert slow.protocol.close_sent.reason == broadcast_module.OVERFLOW_REASON
        # It doesn't read, so close_timeout (1 s) drops it.
        await within(slow.wait_closed())
        with pytest.raises(ripple.ConnectionClosedError) as info:
            await within(slow.recv())  # what its handler sees
        assert info.value.sent is not None and info.value.sent.code == 1013
        assert setup.server.broadcast_stats == BroadcastStats(skipped=0, closed=1)
        assert all(c.broadcast_skipped == 0 for c in setup.conns)
        assert max_readers <= LIMIT  # no reader came near the limit
        # One warning, for the one closed connection.
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 1 and "1013" in warnings[0].getMessage()
        print(
            f"\nslow consumer: max buffered {max_slow} B (limit {LIMIT} B + one frame "
            f"{FRAME} B); after close {max(after_close)} B; readers' max {max_readers} B"
        )
    finally:
        setup.close()


async def test_skip_policy_keeps_the_slow_consumer_and_memory_flat(servers: Servers) -> None:
    n_readers, n_messages = 10, 1500
    setup = await slow_setup(servers, n_readers, broadcast_limit=LIMIT, broadcast_overflow="skip")
    try:
        messages = numbered(n_messages)
        consumers = [asyncio.create_task(consume(c, messages)) for c in setup.readers]
        slow = setup.slow
        samples: list[int] = []
        written = 0
        try:
            for i, message in enumerate(messages):
                skipped = slow.broadcast_skipped
                ripple.broadcast(setup.conns, message)
                written += slow.broadcast_skipped == skipped
                samples.append(buffered(slow))
                if i == 499:
                    # Well past the limit; the readers have caught up. From
                    # here, count what is allocated and still held.
                    await eventually(lambda: all(c._qbytes == 0 for c in setup.readers))
                    tracemalloc.start()
                await asyncio.sleep(0)
            counts = await within(asyncio.gather(*consumers), 20)
            growth = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        assert counts == [n_messages] * n_readers
        # Capped: never more than the limit plus one frame, whatever the count.
        assert max(samples) <= LIMIT + FRAME
        assert max(samples[500:]) == max(samples[:500])
        # 1,000 messages (1 MB) more for a client that doesn't read: without
        # the limit, its buffer alone would have grown by that much.
        assert growth < 256 * KIB, growth
        stats = setup.server.broadcast_stats
        assert stats == BroadcastStats(skipped=n_messages - written, closed=0)
        assert slow.broadcast_skipped == stats.skipped > 1000
        assert written > LIMIT // FRAME  # it did get messages up to the limit
        assert slow.state is ripple.State.OPEN  # skipped, not closed
        assert all(c.broadcast_skipped == 0 for c in setup.conns[:-1])
        print(
            f"\nskip: slow max buffered {max(samples)} B (limit {LIMIT} B); written "
            f"{written}, skipped {stats.skipped}; memory held after the last "
            f"1000 messages {growth} B"
        )
    finally:
        setup.close()


@pytest.mark.parametrize("policy", ["close", "skip"])
@pytest.mark.parametrize("deflate", [False, True], ids=["plain", "deflate-takeover"])
async def test_slow_ripple_client_catches_up(servers: Servers, policy: str, deflate: bool) -> None:
    # A ripple client that stops reading, then reads again: with "close" it
    # gets what was written before the overflow, in order, then the 1013; with
    # "skip", an in-order subsequence. With a compression context carried from
    # message to message, a skipped message mustn't have advanced it.
    parked = Parked()
    options: dict[str, Any] = {}
    if deflate:
        options["extensions"] = [ServerPerMessageDeflateFactory()]  # context takeover
    server, url = await servers.start(
        parked,
        compression=None,
        ping_interval=None,
        broadcast_limit=16 * KIB,
        broadcast_overflow=policy,
        **options,
    )
    sock = await small_socket(server_port(server))
    client = await within(
        ripple.connect(
            url, sock=sock, ping_interval=None, compression="deflate" if deflate else None
        )
    )
    try:
        conn = await parked.next()
        assert conn.protocol is not None and bool(conn.protocol.extensions) is deflate
        small_kernel_buffers(conn)
        assert client.transport is not None
        client.transport.pause_reading()
        messages = numbered(200)  # random: compression doesn't shrink them
        written: list[bytes] = []
        for message in messages:
            open_before, skipped = conn.state is ripple.State.OPEN, conn.broadcast_skipped
            ripple.broadcast([conn], message)
            if (
                open_before
                and conn.state is ripple.State.OPEN
                and skipped == conn.broadcast_skipped
            ):
                written.append(message)
            assert buffered(conn) <= 16 * KIB + len(message) + 64 + CLOSE_FRAME
            await asyncio.sleep(0)
        assert 0 < len(written) < len(messages)
        client.transport.resume_reading()
        if policy == "close":
            assert conn.state is ripple.State.CLOSING
            assert server.broadcast_stats == BroadcastStats(closed=1)
            received = []
            with pytest.raises(ripple.ConnectionClosedError) as info:
                while True:
                    received.append(await within(client.recv()))
            assert received == written
            assert info.value.rcvd is not None
            assert info.value.rcvd.code == 1013
            assert info.value.rcvd.reason == broadcast_module.OVERFLOW_REASON
        else:
            assert conn.state is ripple.State.OPEN
            assert server.broadcast_stats == BroadcastStats(skipped=200 - len(written))
            assert conn.broadcast_skipped == 200 - len(written)
            received = [await within(client.recv()) for _ in written]
            assert received == written  # in order, with gaps, none corrupted
            ripple.broadcast([conn], "caught up")  # the buffer drained: written again
            assert await within(client.recv()) == "caught up"
    finally:
        if client.transport is not None:
            client.transport.abort()


@pytest.mark.parametrize("policy", ["close", "skip"])
async def test_raise_exceptions_reports_the_overflowing_connection(
    servers: Servers, policy: str
) -> None:
    limit = 16 * KIB
    setup = await slow_setup(servers, 3, broadcast_limit=limit, broadcast_overflow=policy)
    try:
        messages = numbered(200)
        consumers = [asyncio.create_task(consume(c, messages)) for c in setup.readers]
        reports: list[Any] = []
        for message in messages:
            try:
                ripple.broadcast(setup.conns, message, raise_exceptions=True)
            except EXCEPTION_GROUP as group:
                reports.append(group.exceptions)
            await asyncio.sleep(0)
        assert await within(asyncio.gather(*consumers)) == [200] * 3
        assert reports
        assert all(len(errors) == 1 for errors in reports)  # only the slow one
        first = reports[0][0]
        assert isinstance(first, BroadcastOverflow)
        assert first.connection is setup.slow
        assert first.limit == limit and limit < first.buffered <= limit + FRAME
        assert str(setup.slow.id) in str(first)
        if policy == "close":
            assert first.closed
            # Then it isn't open anymore: reported like any closed connection.
            assert all(isinstance(e, ripple.ConnectionClosed) for (e,) in reports[1:])
            assert setup.server.broadcast_stats == BroadcastStats(closed=1)
        else:
            assert all(isinstance(e, BroadcastOverflow) and not e.closed for (e,) in reports)
            assert setup.server.broadcast_stats == BroadcastStats(skipped=len(reports))
            assert setup.slow.broadcast_skipped == len(reports)
    finally:
        setup.close()


async def test_skip_logs_at_debug_without_warning(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    setup = await slow_setup(servers, 1, broadcast_limit=4 * KIB, broadcast_overflow="skip")
    try:
        consumer = asyncio.create_task(consume(setup.readers[0], messages := numbered(100)))
        with caplog.at_level(logging.DEBUG, logger="ripple.broadcast"):
            for message in messages:
                ripple.broadcast(setup.conns, message)
                await asyncio.sleep(0)
        assert await within(consumer) == 100
        skips = [r for r in caplog.records if "over broadcast_limit" in r.getMessage()]
        assert len(skips) == setup.server.broadcast_stats.skipped > 0
        assert all(r.levelno == logging.DEBUG for r in skips)
    finally:
        setup.close()


async def test_no_limit_lets_the_buffer_grow(servers: Servers) -> None:
    # broadcast_limit=None: the behavior before the limit (for those who
    # bound memory another way).
    setup = await slow_setup(servers, 0, broadcast_limit=None)
    try:
        for message in numbered(300):
            ripple.broadcast(setup.conns, message)
        assert buffered(setup.slow) > 200 * KIB
        assert setup.slow.state is ripple.State.OPEN
        assert setup.server.broadcast_stats == BroadcastStats()
    finally:
        setup.close()


async def test_a_message_over_the_limit_still_reaches_idle_connections(group: Any) -> None:
    # The limit is on what is already waiting, not on the message: an empty
    # buffer takes a message of any size.
    clients, conns = group
    conns[0].server.broadcast_limit = 1024
    big = b"x" * (100 * KIB)
    ripple.broadcast(conns, big)
    for client in clients:
        assert await within(client.recv()) == big
    assert conns[0].server.broadcast_stats == BroadcastStats()


async def test_client_connections_close_over_the_default_limit(raw_server: Any) -> None:
    # Broadcasting from clients: the default limit (16 x write_limit, at least
    # 1 MiB) and the "close" policy; counted on no server.
    url = await raw_server.start()
    port = int(url.rsplit(":", 1)[1].rstrip("/"))
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.setblocking(False)
    await within(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port)))
    client = await within(ripple.connect(url, sock=sock, compression=None, ping_interval=None))
    peer = await raw_server.next_peer()
    try:
        peer.writer.transport.pause_reading()
        limit = broadcast_module.default_broadcast_limit(client.write_limit)
        assert limit == 2**20
        message = b"m" * (64 * KIB)
        for _ in range(1000):
            ripple.broadcast([client], message)
            assert buffered(client) <= limit + len(message) + 14 + CLOSE_FRAME + 4
            if client.state is not ripple.State.OPEN:
                break
        assert client.protocol is not None and client.protocol.close_sent is not None
        assert client.protocol.close_sent.code == 1013
        assert client.broadcast_skipped == 0
    finally:
        if client.transport is not None:
            client.transport.abort()
        peer.writer.transport.abort()  # paused, it wouldn't see the reset (3.12 waits for it)


def test_default_broadcast_limit_follows_write_limit() -> None:
    assert broadcast_module.default_broadcast_limit(2**16) == 2**20  # the default
    assert broadcast_module.default_broadcast_limit(0) == 2**20
    assert broadcast_module.default_broadcast_limit(2**18) == 2**22


async def test_serve_broadcast_options(servers: Servers) -> None:
    server, _ = await servers.start(Parked())
    assert server.broadcast_limit == 2**20
    assert server.broadcast_overflow == "close"
    assert server.broadcast_stats == BroadcastStats()
    server, _ = await servers.start(Parked(), write_limit=2**18)
    assert server.broadcast_limit == 2**22
    server, _ = await servers.start(Parked(), broadcast_limit=0, broadcast_overflow="skip")
    assert (server.broadcast_limit, server.broadcast_overflow) == (0, "skip")
    server, _ = await servers.start(Parked(), broadcast_limit=None)
    assert server.broadcast_limit is None


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"broadcast_limit": -1}, "broadcast_limit"),
        ({"broadcast_limit": 1.5}, "broadcast_limit"),
        ({"broadcast_limit": True}, "broadcast_limit"),
        ({"broadcast_limit": "1MiB"}, "broadcast_limit"),
        ({"broadcast_overflow": "drop"}, "broadcast_overflow"),
        ({"broadcast_overflow": None}, "broadcast_overflow"),
    ],
)
def test_serve_rejects_bad_broadcast_options(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ripple.serve(Parked(), "127.0.0.1", 0, **options)


def test_broadcast_stats_reset() -> None:
    stats = BroadcastStats(skipped=3, closed=1)
    assert repr(stats) == "BroadcastStats(skipped=3, closed=1)"
    assert stats.reset() == BroadcastStats(skipped=3, closed=1)
    assert stats == BroadcastStats() and (stats.skipped, stats.closed) == (0, 0)
    assert stats != (0, 0)


async def test_queued_frames_count_towards_the_limit_skip(servers: Servers) -> None:
    limit = 10 * KIB
    clients, conns = await connect_many(
        servers, 3, broadcast_limit=limit, broadcast_overflow="skip"
    )
    try:
        messages = numbered(30)
        # One iteration: nothing reaches the transports, the queued bytes
        # alone go over the limit after 10 frames (10 x 1028 > 10240).
        for message in messages:
            ripple.broadcast(conns, message)
        assert all(limit < c._buffered() <= limit + FRAME for c in conns)
        for client in clients:
            assert [await within(client.recv()) for _ in range(10)] == messages[:10]
        assert all(c.broadcast_skipped == 20 for c in conns)
        server = conns[0].server
        assert server.broadcast_stats == BroadcastStats(skipped=60, closed=0)
        ripple.broadcast(conns, b"next")  # written out meanwhile: under the limit again
        for client in clients:
            assert await within(client.recv()) == b"next"
    finally:
        for client in clients:
            await within(client.close())


async def test_queued_frames_count_towards_the_limit_close(servers: Servers) -> None:
    limit = 10 * KIB
    clients, conns = await connect_many(servers, 3, broadcast_limit=limit, close_timeout=1)
    try:
        messages = numbered(30)
        for message in messages:
            ripple.broadcast(conns, message)
        server = conns[0].server
        assert server.broadcast_stats == BroadcastStats(skipped=0, closed=3)
        for client in clients:
            # The ten queued messages, then the 1013 that followed them.
            assert [await within(client.recv()) for _ in range(10)] == messages[:10]
            with pytest.raises(ripple.ConnectionClosedError) as info:
                await within(client.recv())
            assert info.value.rcvd is not None and info.value.rcvd.code == 1013
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abort()
