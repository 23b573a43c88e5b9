"""Closing (ripple/closing.py): the closing handshake, close codes, and what
recv(), send() and iteration do once a connection is closed, over real
sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio

import pytest

import ripple
from aio_helpers import Pair, Parked, Servers, eventually, open_raw, server_port, within
from ripple.protocol.state import CLOSED, CLOSING

pytestmark = pytest.mark.timeout(20)


# -- closing ------------------------------------------------------------------


async def test_close_code_and_reason_reach_the_peer(pair: Pair) -> None:
    client, server = pair
    await within(client.close(4321, "bye now"))
    with pytest.raises(ripple.ConnectionClosedError) as info:
        await within(server.recv())
    assert info.value.code == 4321
    assert info.value.reason == "bye now"
    assert server.close_code == 4321 and server.close_reason == "bye now"


async def test_server_close_code_and_reason_reach_the_client(pair: Pair) -> None:
    client, server = pair
    await within(server.close(1001, "going away"))
    with pytest.raises(ripple.ConnectionClosedOK) as info:
        await within(client.recv())
    assert info.value.code == 1001 and info.value.reason == "going away"
    await within(client.wait_closed())
    assert client.close_code == 1001 and client.close_reason == "going away"


@pytest.mark.parametrize("code", [1005, 1006, 999, 1004, 1015, 5000])
async def test_close_with_invalid_code_raises_protocol_error(pair: Pair, code: int) -> None:
    client, server = pair
    with pytest.raises(ripple.ProtocolError):
        await within(client.close(code))
    # Nothing was sent: the connection is still open.
    await within(client.send("open"))
    assert await within(server.recv()) == "open"


async def test_close_with_too_long_reason_raises_protocol_error(pair: Pair) -> None:
    client, _ = pair
    with pytest.raises(ripple.ProtocolError):
        await within(client.close(1000, "r" * 124))


async def test_close_twice_is_harmless(pair: Pair) -> None:
    client, server = pair
    await within(client.close())
    await within(client.close())
    await within(server.wait_closed())
    assert client.close_code == 1000


@pytest.mark.parametrize("code", [1000, 1001])
async def test_async_for_ends_on_normal_close(pair: Pair, code: int) -> None:
    client, server = pair
    for i in range(3):
        await client.send(f"m{i}")
    await within(client.close(code))
    received = []

    async def consume() -> None:
        async for message in server:
            received.append(message)

    await within(consume())
    # Messages sent before the close are delivered before iteration ends.
    assert received == ["m0", "m1", "m2"]


@pytest.mark.parametrize("code", [1011, 4000, 1008])
async def test_async_for_raises_on_error_close(pair: Pair, code: int) -> None:
    client, server = pair
    await client.send("before")
    await within(client.close(code, "reason"))
    received = []

    async def consume() -> None:
        async for message in server:
            received.append(message)

    with pytest.raises(ripple.ConnectionClosedError) as info:
        await within(consume())
    assert received == ["before"]
    assert info.value.code == code


async def test_async_for_raises_on_abrupt_disconnect(pair: Pair) -> None:
    client, server = pair
    client.transport.abort()  # type: ignore[union-attr]

    async def consume() -> None:
        async for _ in server:
            pass

    with pytest.raises(ripple.ConnectionClosedError) as info:
        await within(consume())
    assert info.value.code == 1006
    await within(server.wait_closed())
    assert server.close_code == 1006


async def test_send_after_close_raises_connection_closed(pair: Pair) -> None:
    client, server = pair
    await within(client.close())
    with pytest.raises(ripple.ConnectionClosedOK):
        await client.send("too late")
    with pytest.raises(ripple.ConnectionClosed):
        await client.send([b"too", b"late"])
    await within(server.wait_closed())
    with pytest.raises(ripple.ConnectionClosedOK):
        await server.send("too late")


async def test_recv_after_normal_close_raises_connection_closed_ok(pair: Pair) -> None:
    client, server = pair
    await within(client.close())
    with pytest.raises(ripple.ConnectionClosedOK):
        await within(client.recv())
    with pytest.raises(ripple.ConnectionClosedOK):
        await within(server.recv())
    # Again: a closed connection keeps raising.
    with pytest.raises(ripple.ConnectionClosedOK):
        await within(server.recv())


async def test_recv_after_error_close_raises_connection_closed_error(pair: Pair) -> None:
    client, server = pair
    await within(server.close(1011, "oops"))
    with pytest.raises(ripple.ConnectionClosedError) as info:
        await within(client.recv())
    assert info.value.code == 1011 and info.value.reason == "oops"
    with pytest.raises(ripple.ConnectionClosedError):
        await within(server.recv())


async def test_pending_recv_is_woken_by_close(pair: Pair) -> None:
    client, server = pair
    pending = asyncio.create_task(server.recv())
    await asyncio.sleep(0.01)
    await within(client.close())
    with pytest.raises(ripple.ConnectionClosedOK):
        await within(pending)


async def test_wait_closed(pair: Pair) -> None:
    client, server = pair
    # Cancelling a waiter doesn't affect the connection.
    waits_before = len(server._lost._callbacks or ())  # the handler's, if it waits
    for _ in range(3):
        cancelled = asyncio.create_task(server.wait_closed())
        await asyncio.sleep(0.01)
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
    assert not server.closed
    assert not server._lost.done()
    # Cancelled waits leave nothing behind on the connection.
    assert len(server._lost._callbacks or ()) == waits_before
    waiter = asyncio.create_task(server.wait_closed())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    await client.send("still open")
    assert await within(server.recv()) == "still open"
    await within(client.close())
    await within(waiter)
    assert server.closed
    await within(client.wait_closed())  # returns at once when closed


async def test_state_goes_closing_then_closed(servers: Servers) -> None:
    parked = Parked()
    server, _ = await servers.start(parked, close_timeout=5)
    peer = await open_raw("127.0.0.1", server_port(server))
    try:
        await peer.handshake()
        conn = await parked.next()
        closing = asyncio.create_task(conn.close(1000, "x"))
        await eventually(lambda: conn.state is CLOSING)
        assert not closing.done()
        assert await peer.recv_until(0x8) == b"\x03\xe8x"
        peer.send_close(1000)
        await within(closing)
        assert conn.state is CLOSED and conn.close_code == 1000
    finally:
        peer.writer.transport.abort()
