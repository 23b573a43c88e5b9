"""ping(), pong() and the keepalive timers (ripple/keepalive.py), over real
sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

import ripple
from aio_helpers import Pair, Parked, Servers, open_raw, raw_pair, server_port, within
from ripple.protocol.state import OPEN

pytestmark = pytest.mark.timeout(20)


# -- ping / pong --------------------------------------------------------------


async def test_ping_future_resolves_to_rtt(pair: Pair) -> None:
    client, server = pair
    for conn in (client, server):
        waiter = await within(conn.ping(b"payload"))
        rtt = await within(waiter)
        assert isinstance(rtt, float) and rtt >= 0
    # str payloads and random payloads.
    rtt = await within(await within(client.ping("text")))
    assert isinstance(rtt, float)
    rtt = await within(await within(client.ping()))
    assert isinstance(rtt, float)
    assert client.latency == pytest.approx(rtt)


async def test_duplicate_ping_payload_raises_concurrency_error(pair: Pair) -> None:
    client, _ = pair
    waiter = await client.ping(b"same")
    with pytest.raises(ripple.ConcurrencyError):
        await client.ping(b"same")
    await within(waiter)
    # Once answered, the payload may be used again.
    await within(await within(client.ping(b"same")))


async def test_ping_payload_too_long(pair: Pair) -> None:
    client, _ = pair
    with pytest.raises(ripple.ProtocolError):
        await client.ping(b"x" * 126)


async def test_pong_sends_an_unsolicited_pong(servers: Servers) -> None:
    parked = Parked()
    server, _ = await servers.start(parked)
    peer = await open_raw("127.0.0.1", server_port(server))
    try:
        await peer.handshake()
        conn = await parked.next()
        await within(conn.pong(b"heartbeat"))
        assert await peer.recv_frame() == (True, 0xA, b"heartbeat")
        await within(conn.pong())
        assert await peer.recv_frame() == (True, 0xA, b"")
    finally:
        peer.writer.transport.abort()


async def test_unsolicited_pong_is_ignored_by_the_peer(pair: Pair) -> None:
    client, server = pair
    await within(client.pong(b"nobody asked"))
    await within(client.send("after"))
    assert await within(server.recv()) == "after"
    assert server.state is OPEN


async def test_pending_ping_fails_when_connection_closes(pair: Pair) -> None:
    client, server = pair
    # Pause the server's reading so the ping can't be answered.
    assert server.transport is not None
    server.transport.pause_reading()
    waiter = await client.ping(b"never")
    client.transport.abort()  # type: ignore[union-attr]
    with pytest.raises(ripple.ConnectionClosed):
        await within(waiter)
    server.transport.resume_reading()  # let the server see the EOF
    await within(server.wait_closed())


async def test_ping_and_pong_after_close_raise(pair: Pair) -> None:
    client, _ = pair
    await within(client.close())
    with pytest.raises(ripple.ConnectionClosed):
        await client.ping()
    with pytest.raises(ripple.ConnectionClosed):
        await client.pong()


# -- keepalive: ping_interval and ping_timeout ----------------------------------


async def test_keepalive_closes_silent_peer_with_1011(servers: Servers) -> None:
    peer, conn, _ = await raw_pair(servers, ping_interval=0.2, ping_timeout=0.2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        # The peer reads but never answers: it gets a ping, then a close.
        fin, opcode, _ = await peer.recv_frame()
        assert (fin, opcode) == (True, 0x9)
        payload = await peer.recv_until(0x8)
        assert int.from_bytes(payload[:2], "big") == 1011
        assert await peer.read_eof() == b""
        await within(conn.wait_closed())
        # interval + timeout is 0.4 s; allow a lot more, but not the 20 s default.
        assert loop.time() - start < 3
        with pytest.raises(ripple.ConnectionClosedError):
            await conn.recv()
    finally:
        peer.writer.transport.abort()


async def test_keepalive_closes_peer_that_doesnt_read(servers: Servers) -> None:
    # A peer that does nothing at all after the handshake (no reads).
    peer, conn, _ = await raw_pair(servers, ping_interval=0.1, ping_timeout=0.2)
    try:
        await within(conn.wait_closed(), 3)
        assert conn.protocol is not None and conn.protocol.close_sent is not None
        assert conn.protocol.close_sent.code == 1011
    finally:
        peer.writer.transport.abort()


async def test_keepalive_keeps_responsive_peer_and_measures_latency(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked, ping_interval=0.1, ping_timeout=0.1)
    async with ripple.connect(url, ping_interval=None) as client:
        conn = await parked.next()
        assert conn.latency == 0.0
        await asyncio.sleep(0.6)  # several intervals
        assert conn.state is ripple.State.OPEN and client.state is ripple.State.OPEN
        assert conn.latency > 0
        assert client.latency == 0.0  # the client sent no pings
        await client.send("alive")
        assert await within(conn.recv()) == "alive"


async def test_keepalive_disabled_with_none(servers: Servers) -> None:
    peer, conn, _ = await raw_pair(servers, ping_interval=None)
    try:
        await asyncio.sleep(0.3)
        assert conn.state is ripple.State.OPEN
        peer.send_frame(0x1, b"no pings came")
        assert await within(conn.recv()) == "no pings came"
        assert conn.latency == 0.0
    finally:
        peer.writer.transport.abort()
