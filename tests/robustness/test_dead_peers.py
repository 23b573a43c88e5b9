"""Dead and unresponsive peers: keepalive finds them, close() never hangs.

Already proven elsewhere, and not repeated here:
- a peer that stops reading and writing after the handshake (server side):
  tests/test_server.py::test_keepalive_closes_peer_that_doesnt_read;
- a peer that reads but never answers pings:
  tests/test_server.py::test_keepalive_closes_silent_peer_with_1011 and
  tests/test_client.py::test_client_keepalive_closes_silent_server_with_1011;
- a peer that never answers the closing handshake:
  tests/test_server.py::test_close_timeout_drops_peer_that_doesnt_answer_close and
  tests/test_client.py::test_client_close_timeout.

Here the peer vanishes *without a FIN* (a black-holing proxy keeps TCP up and
drops every byte), and close() is raced against each way a peer can hang.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from robust_helpers import BlackHoleProxy, report

import ripple
from aio_helpers import Parked, Servers, open_raw, server_port, within

pytestmark = pytest.mark.timeout(60)

PING_INTERVAL = 0.2
PING_TIMEOUT = 0.2
#: Generous: keepalive should take ping_interval + ping_timeout (0.4 s), up to
#: one more ping_timeout when a check lands just after data arrived.
DETECTION_BOUND = 5.0


async def test_peer_vanishing_without_fin_is_detected_by_both_sides(
    servers: Servers, record_property: Any
) -> None:
    parked = Parked()
    server, _ = await servers.start(
        parked, ping_interval=PING_INTERVAL, ping_timeout=PING_TIMEOUT, close_timeout=0.5
    )
    proxy = BlackHoleProxy(server_port(server))
    port = await proxy.start()
    try:
        client = await within(
            ripple.connect(
                f"ws://127.0.0.1:{port}/",
                ping_interval=PING_INTERVAL,
                ping_timeout=PING_TIMEOUT,
                close_timeout=0.5,
            )
        )
        conn = await parked.next()
        # Alive through the proxy: several keepalive rounds pass.
        await asyncio.sleep(3 * (PING_INTERVAL + PING_TIMEOUT))
        assert conn.state is ripple.State.OPEN and client.state is ripple.State.OPEN
        await client.send("still there")
        assert await within(conn.recv()) == "still there"

        loop = asyncio.get_running_loop()
        proxy.black_hole()
        start = loop.time()
        await within(asyncio.gather(conn.wait_closed(), client.wait_closed()), DETECTION_BOUND)
        elapsed = loop.time() - start
        # Both sides failed the connection themselves, as keepalive does:
        # 1011 sent, nothing received (1006).
        for side in (conn, client):
            assert side.protocol is not None and side.protocol.close_sent is not None
            assert side.protocol.close_sent.code == 1011
            assert side.protocol.close_sent.reason == "keepalive ping timeout"
            assert side.close_code == 1006
        with pytest.raises(ripple.ConnectionClosedError):
            await conn.recv()
        report(record_property, "dead_peer_detection_s", round(elapsed, 3))
    finally:
        await proxy.aclose()


@pytest.mark.parametrize("side", ["server", "client"])
async def test_close_against_a_black_hole_is_bounded_by_close_timeout(
    servers: Servers, side: str
) -> None:
    # close() right after the peer vanished: no close frame comes back, no
    # FIN either; the TCP connection is dropped after close_timeout.
    parked = Parked()
    server, _ = await servers.start(parked, ping_interval=None, close_timeout=0.3)
    proxy = BlackHoleProxy(server_port(server))
    port = await proxy.start()
    try:
        client = await within(
            ripple.connect(f"ws://127.0.0.1:{port}/", ping_interval=None, close_timeout=0.3)
        )
        conn = await parked.next()
        proxy.black_hole()
        closer = conn if side == "server" else client
        await within(closer.close(1000, "bye"), DETECTION_BOUND)
        assert closer.closed
        assert closer.close_code == 1006  # the peer's close frame never came
    finally:
        await proxy.aclose()


async def test_close_with_a_full_write_buffer_and_a_peer_that_never_reads(
    servers: Servers,
) -> None:
    # The close frame can't even be written: the peer stopped reading while
    # the server had megabytes queued for it. close() still returns.
    parked = Parked()
    server, _ = await servers.start(
        parked, ping_interval=None, close_timeout=0.3, write_limit=2**16, compression=None
    )
    peer = await open_raw("127.0.0.1", server_port(server))
    try:
        status, _, _ = await peer.handshake()
        assert status == 101
        conn = await parked.next()
        sender = asyncio.create_task(send_until_blocked(conn))
        # The kernel buffers fill, then the transport's: send() suspends.
        await within(sender)
        assert conn.transport is not None and conn.transport.get_write_buffer_size() > 0
        await within(conn.close(), DETECTION_BOUND)
        assert conn.closed and conn.close_code == 1006
    finally:
        peer.writer.transport.abort()


async def send_until_blocked(conn: ripple.ServerConnection) -> None:
    """Send 64 KiB messages until send() suspends (bounded: at most 4096)."""
    chunk = b"x" * 65536
    for _ in range(4096):
        try:
            await asyncio.wait_for(conn.send(chunk), 0.2)
        except TimeoutError:
            return
    raise AssertionError("send() never suspended: the peer seems to read")


async def test_close_while_the_peer_floods_us(servers: Servers) -> None:
    # The peer keeps sending and never answers our close frame: close()
    # returns after close_timeout, whatever keeps arriving.
    parked = Parked()
    server, _ = await servers.start(parked, ping_interval=None, close_timeout=0.3)
    peer = await open_raw("127.0.0.1", server_port(server))
    flooding = True

    async def flood() -> None:
        for _ in range(100_000):  # bounded; the server drops us long before
            if not flooding or peer.writer.is_closing():
                return
            peer.send_frame(0x2, b"z" * 100)
            await peer.writer.drain()

    try:
        status, _, _ = await peer.handshake()
        assert status == 101
        conn = await parked.next()
        flooder = asyncio.create_task(flood())
        await asyncio.sleep(0.1)
        await within(conn.close(), DETECTION_BOUND)
        assert conn.closed
        flooding = False
        await within(asyncio.gather(flooder, return_exceptions=True))
    finally:
        peer.writer.transport.abort()
