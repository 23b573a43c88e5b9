"""broadcast(): one message to many connections, encoded once."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import AsyncIterator
from typing import Any

import pytest

import ripple
from aio_helpers import Parked, Servers, within
from ripple.protocol.deflate import PerMessageDeflate, ServerPerMessageDeflateFactory

pytestmark = pytest.mark.timeout(30)

# The module: the package attribute ripple.broadcast is the function.
broadcast_module = importlib.import_module("ripple.broadcast")

# ExceptionGroup on 3.11+, ripple's stand-in with .exceptions on 3.10.
EXCEPTION_GROUP: Any = broadcast_module._ExceptionGroup


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


@pytest.fixture
async def group(
    servers: Servers,
) -> AsyncIterator[tuple[list[ripple.ClientConnection], list[ripple.ServerConnection]]]:
    clients, conns = await connect_many(servers, 20)
    try:
        yield clients, conns
    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abort()


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

    async def fragments() -> AsyncIterator[str]:
        yield "frag-1 "
        await release.wait()
        yield "frag-2"

    sending = asyncio.create_task(conns[0].send(fragments()))
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
