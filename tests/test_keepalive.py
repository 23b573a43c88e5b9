"""ping() and pong() (ripple/keepalive.py) over real sockets on 127.0.0.1; the
keepalive timers' tests, end to end through a server, are in test_server.py."""

from __future__ import annotations

import pytest

import ripple
from aio_helpers import Pair, Parked, Servers, open_raw, server_port, within
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
