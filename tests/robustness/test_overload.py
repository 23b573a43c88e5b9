"""Overload: 10,000 idle connections in one server process, and the cap.

Small-scale versions of the cap are in tests/test_server.py
(test_max_connections_refuses_with_503_and_retry_after,
test_max_connections_counts_handshakes_in_progress); slow handshakes in
test_many_half_sent_requests_dont_delay_a_real_client.
"""

from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path
from typing import Any

import pytest
from robust_helpers import linux_only, raise_fd_limit, report, rss_kib

import ripple
from aio_helpers import Servers, echo, eventually, within

pytestmark = [pytest.mark.timeout(240), linux_only]

CONNECTIONS = 10_000
#: The clients live in child processes (their descriptors count there).
CHILDREN = 2
IDLE_CLIENTS = Path(__file__).with_name("idle_clients.py")


async def _open_idle(port: int, count: int) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(IDLE_CLIENTS),
        str(port),
        str(count),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )


async def test_ten_thousand_idle_connections_and_503_past_the_cap(
    servers: Servers, record_property: Any
) -> None:
    raise_fd_limit(CONNECTIONS + 1024)
    server, url = await servers.start(echo, max_connections=CONNECTIONS, backlog=1024)
    port = int(url.rsplit(":", 1)[1].strip("/"))
    # One well-behaved connection among the idle ones: it must keep working.
    client = await within(ripple.connect(url, compression=None))
    await client.send("warm")
    assert await within(client.recv()) == "warm"
    gc.collect()
    before = rss_kib()
    per_child = (CONNECTIONS - 1) // CHILDREN
    counts = [per_child] * (CHILDREN - 1) + [CONNECTIONS - 1 - per_child * (CHILDREN - 1)]
    children = [await _open_idle(port, n) for n in counts]
    try:
        opened = refused = 0
        for child in children:
            assert child.stdout is not None
            line = await within(child.stdout.readline(), 180)
            word, ok, no = line.split()
            assert word == b"ready", line
            opened, refused = opened + int(ok), refused + int(no)
        assert (opened, refused) == (CONNECTIONS - 1, 0)
        await eventually(lambda: len(server.connections) == CONNECTIONS, 60)
        gc.collect()
        per_connection = (rss_kib() - before) / (CONNECTIONS - 1)
        report(record_property, "idle_connections", len(server.connections))
        report(record_property, "rss_kib_per_idle_connection", round(per_connection, 1))

        # Past the cap: a new handshake gets 503 with Retry-After...
        with pytest.raises(ripple.InvalidStatus) as refusal:
            await within(ripple.connect(url, compression=None))
        assert refusal.value.response.status_code == 503
        assert refusal.value.response.headers["Retry-After"] == "5"
        # ...and the established connection doesn't notice.
        for i in range(10):
            await client.send(f"still here {i}")
            assert await within(client.recv()) == f"still here {i}"
        assert len(server.connections) == CONNECTIONS
    finally:
        for child in children:
            assert child.stdin is not None
            child.stdin.close()
        for child in children:
            await within(child.wait(), 60)
    # The idle clients left: their slots are free again.
    await eventually(lambda: len(server.connections) == 1, 60)
    async with ripple.connect(url, compression=None) as again:
        await again.send("a slot is free")
        assert await within(again.recv()) == "a slot is free"
    await within(client.close())
