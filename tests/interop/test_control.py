"""Pings and the closing handshake between ripple and each peer.

Close codes are checked on both sides: what the closing side sent is what
the other side reports.
"""

from __future__ import annotations

import asyncio

import pytest

import ripple

from .peers import OpenPair, Pair, within


@pytest.mark.parametrize("payload", [b"ripple ping", b"", bytes(range(125))], ids=len)
async def test_ripple_ping_is_answered(pair: Pair, payload: bytes) -> None:
    async with within():
        pong = await pair.ripple.ping(payload)
        rtt = await pong
        seen = await pair.peer.ping_seen()
    assert isinstance(rtt, float)
    if seen is not None:  # only node's ws reports the pings it answers
        assert seen == payload


async def test_ripple_ping_without_payload_is_answered(pair: Pair) -> None:
    async with within():
        rtt = await (await pair.ripple.ping())
    assert isinstance(rtt, float)
    assert pair.ripple.latency == rtt


async def test_peer_ping_is_answered_by_ripple(connect_pair: OpenPair) -> None:
    # aiohttp reports pongs only with autoping=False (observe_pongs).
    pair = await connect_pair(observe_pongs=True)
    async with within():
        # Returns when the pong carrying the same payload arrived.
        await pair.peer.ping(b"peer ping")
        # The connection still carries data after the control frames.
        await pair.peer.send("after ping")
        assert await pair.ripple.recv() == "after ping"


# A short reason, and the longest allowed (123 bytes of UTF-8, multi-byte characters).
REASONS = ["bye", "au revoir ☃ " + "x" * (123 - len("au revoir ☃ ".encode()))]


@pytest.mark.parametrize("reason", REASONS, ids=["bye", "123_bytes"])
async def test_ripple_closes_with_code_and_reason(pair: Pair, reason: str) -> None:
    async with within():
        await pair.ripple.close(4000, reason)
        seen = await pair.peer.wait_closed()
    # The peer got ripple's close frame...
    assert seen.code == 4000
    assert seen.reason == reason
    # ...and ripple got the peer's reply: an echo of the code, or 1000 from aiohttp.
    assert pair.ripple.closed
    assert pair.ripple.close_code == (4000 if pair.peer.echoes_close_code else 1000)
    with pytest.raises(ripple.ConnectionClosedError) as raised:
        await pair.ripple.recv()
    assert raised.value.sent is not None
    assert (raised.value.sent.code, raised.value.sent.reason) == (4000, reason)


@pytest.mark.parametrize("reason", ["later", *REASONS[1:]], ids=["later", "123_bytes"])
async def test_peer_closes_with_code_and_reason(pair: Pair, reason: str) -> None:
    async with within():
        seen = await pair.peer.close(4001, reason)
        await pair.ripple.wait_closed()
    # ripple got the peer's close frame...
    assert pair.ripple.close_code == 4001
    assert pair.ripple.close_reason == reason
    with pytest.raises(ripple.ConnectionClosedError) as raised:
        await pair.ripple.recv()
    assert raised.value.rcvd is not None
    assert (raised.value.rcvd.code, raised.value.rcvd.reason) == (4001, reason)
    # ...and echoed the code (RFC 6455 §5.5.1).
    assert seen.code == 4001


async def test_peer_close_wakes_ripple_recv(pair: Pair) -> None:
    async with within():
        receiving = asyncio.ensure_future(pair.ripple.recv())
        await asyncio.sleep(0)
        await pair.peer.close(4002, "while you wait")
        with pytest.raises(ripple.ConnectionClosedError) as raised:
            await receiving
    assert raised.value.rcvd is not None
    assert (raised.value.rcvd.code, raised.value.rcvd.reason) == (4002, "while you wait")


async def test_normal_close_ends_ripple_iteration(pair: Pair) -> None:
    sent: list[str | bytes] = ["one", b"two", "three"]
    async with within():
        for message in sent:
            await pair.peer.send(message)
        seen = await pair.peer.close(1000, "done")
        # Messages sent before the close come out, then the loop just ends.
        received = [message async for message in pair.ripple]
        await pair.ripple.wait_closed()
    assert received == sent
    assert pair.ripple.close_code == 1000
    assert pair.ripple.close_reason == "done"
    assert seen.code == 1000


async def test_ripple_normal_close(pair: Pair) -> None:
    async with within():
        await pair.ripple.close()
        seen = await pair.peer.wait_closed()
    assert seen.code == 1000
    assert pair.ripple.close_code == 1000
    with pytest.raises(ripple.ConnectionClosedOK):
        await pair.ripple.recv()
