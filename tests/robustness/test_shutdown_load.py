"""Shutdown under load: Server.close() while 1,000 clients are sending.

The small-scale version (three echo clients, slow cleanup in handlers) is
tests/test_server.py::test_close_closes_every_connection_with_1001_and_waits_for_handlers.
"""

from __future__ import annotations

import asyncio
import gc
from typing import Any

import pytest
from robust_helpers import fd_count, linux_only, raise_fd_limit, report

import ripple
from aio_helpers import eventually, within, ws_url

pytestmark = [pytest.mark.timeout(120), linux_only]

CLIENTS = 1000


async def test_close_while_a_thousand_clients_send(record_property: Any) -> None:
    # Clients and server share this process: two descriptors per connection.
    raise_fd_limit(2 * CLIENTS + 512)
    gc.collect()
    fds_before = fd_count()
    tasks_before = asyncio.all_tasks()
    received = 0
    started = 0
    finished = 0

    async def sink(ws: ripple.ServerConnection) -> None:
        nonlocal received, started, finished
        started += 1
        try:
            async for _ in ws:
                received += 1
        finally:
            finished += 1

    server = await within(ripple.serve(sink, "127.0.0.1", 0, backlog=1024))
    url = ws_url(server)
    clients: list[ripple.ClientConnection] = []
    for _ in range(CLIENTS // 100):  # batches stay under the listen backlog
        clients += await within(
            asyncio.gather(*(ripple.connect(url, compression=None) for _ in range(100))), 30
        )
    sent = [0] * CLIENTS

    async def keep_sending(i: int, client: ripple.ClientConnection) -> None:
        for n in range(1_000_000):  # bounded; the server closes us long before
            try:
                await client.send(f"{i}:{n}")
            except ripple.ConnectionClosed:
                return
            sent[i] += 1
            if n % 10 == 0:
                await asyncio.sleep(0)

    senders = [asyncio.create_task(keep_sending(i, c)) for i, c in enumerate(clients)]
    try:
        await eventually(lambda: started == CLIENTS and all(sent), 30)
        await eventually(lambda: received > 10 * CLIENTS, 30)  # all of them are busy

        loop = asyncio.get_running_loop()
        start = loop.time()
        server.close()
        await within(server.wait_closed(), 60)
        shutdown_s = loop.time() - start
        # Every handler ran to its end (wait_closed waits for them).
        assert finished == CLIENTS
        await within(asyncio.gather(*senders), 30)
        await within(asyncio.gather(*(c.wait_closed() for c in clients)), 30)
        codes = [c.close_code for c in clients]
        assert codes == [1001] * CLIENTS, sorted(set(map(str, codes)))
        assert all(c.close_reason == "server shutting down" for c in clients)
        report(record_property, "shutdown_clients", CLIENTS)
        report(record_property, "shutdown_messages_received", received)
        report(record_property, "shutdown_seconds", round(shutdown_s, 2))
    finally:
        for task in senders:
            task.cancel()
        await asyncio.gather(*senders, return_exceptions=True)
        for client in clients:
            if client.transport is not None:
                client.transport.abort()
        server.close()
        await within(server.wait_closed(), 60)

    # Nothing leaked: no task left behind, no socket left open.
    await eventually(lambda: asyncio.all_tasks() == tasks_before, 10)
    del clients
    gc.collect()
    await eventually(lambda: fd_count() <= fds_before, 10)
    assert fd_count() == fds_before
