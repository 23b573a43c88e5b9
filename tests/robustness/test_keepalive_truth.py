"""Keepalive that doesn't lie: a busy peer isn't declared dead.

The rule (connection.py, ``_ka_timeout``): a peer is dead only after a whole
``ping_timeout`` in which nothing arrived while we were reading and it took
nothing we sent. Data arriving, the bytes waiting for the peer shrinking (our
buffer plus, on Linux, the socket's send queue), or our own reading paused
because the application is behind, means the pong may be queued behind a
burst: keepalive waits another ``ping_timeout``. A peer that sends nothing
and reads nothing is still found (see test_dead_peers.py).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from robust_helpers import report

import ripple
from aio_helpers import Parked, Servers, within

pytestmark = pytest.mark.timeout(90)

#: Short keepalive: the burst below lasts many times ping_interval + ping_timeout.
PING = 0.05
MESSAGES = 400
SIZE = 64 * 1024  # 25 MiB in all


async def _slow_reader(client: ripple.ClientConnection) -> int:
    received = 0
    async for message in client:
        assert len(message) == SIZE
        received += 1
        if received % 8 == 0:
            # Slower than the server sends: the client's queue fills, its
            # reading pauses, and its keepalive pong waits behind the burst.
            await asyncio.sleep(0.02)
        if received == MESSAGES:
            break
    return received


async def test_receiver_of_a_long_burst_is_not_closed_as_ping_timeout(
    servers: Servers, record_property: Any
) -> None:
    # The client pings every 50 ms with a 50 ms timeout while the server
    # streams 25 MiB it can only drain slowly: its pongs come back late,
    # queued behind the burst, and the client must not give up.
    parked = Parked()
    _, url = await servers.start(parked, ping_interval=None, compression=None)
    client = await within(
        ripple.connect(url, ping_interval=PING, ping_timeout=PING, max_queue=4, compression=None)
    )
    conn = await parked.next()
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def burst() -> None:
        payload = b"b" * SIZE
        for _ in range(MESSAGES):
            await conn.send(payload)

    sender = asyncio.create_task(burst())
    received = await within(_slow_reader(client), 60)
    await within(sender)
    elapsed = loop.time() - start
    assert received == MESSAGES
    assert client.state is ripple.State.OPEN  # not failed with 1011
    await client.send("done")
    assert await within(conn.recv()) == "done"
    await within(client.close())
    assert client.close_code == 1000
    report(record_property, "burst_seconds_vs_keepalive_window", round(elapsed / (2 * PING), 1))


async def test_sender_of_a_long_burst_keeps_a_slow_but_alive_receiver(
    servers: Servers,
) -> None:
    # The other direction: the *server* pings while it streams to a slow
    # client. The client's pong is behind the server's own burst in the
    # client's receive buffer; the client is alive and reading.
    parked = Parked()
    _, url = await servers.start(parked, ping_interval=PING, ping_timeout=PING, compression=None)
    client = await within(ripple.connect(url, ping_interval=None, max_queue=4, compression=None))
    conn = await parked.next()

    async def burst() -> None:
        payload = b"b" * SIZE
        for _ in range(MESSAGES):
            await conn.send(payload)

    sender = asyncio.create_task(burst())
    try:
        received = await within(_slow_reader(client), 60)
    except ripple.ConnectionClosed:
        received = -1
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)
    await within(client.close())
    assert conn.protocol is not None
    assert received == MESSAGES, f"the server closed with {conn.protocol.close_sent}"
