"""Fixtures for the asyncio-layer tests: real servers on 127.0.0.1 (port 0)
and unix sockets. Plain helpers live in aio_helpers.py.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator

import pytest

import ripple
from aio_helpers import Pair, Parked, RawServer, Servers, connect_many, echo, within


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    s = Servers()
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
async def raw_server() -> AsyncIterator[RawServer]:
    s = RawServer()
    try:
        yield s
    finally:
        await s.aclose()


@pytest.fixture
async def echo_url(servers: Servers) -> str:
    """The ws:// URL of an echo server on 127.0.0.1, port 0."""
    _, url = await servers.start(echo)
    return url


@pytest.fixture
async def pair(
    servers: Servers,
) -> AsyncIterator[Pair]:
    """A connected (client, server-side connection) pair; the server handler
    just waits, so the test drives both ends."""
    parked = Parked()
    _, url = await servers.start(parked)
    client = await within(ripple.connect(url))
    server_conn = await parked.next()
    try:
        yield client, server_conn
    finally:
        if client.transport is not None:
            client.transport.abort()
        await within(client.wait_closed())


@pytest.fixture
def sock_path() -> Iterator[str]:
    """A short unix socket path (tmp_path can exceed the 108-byte limit)."""
    d = tempfile.mkdtemp(prefix="rpl")
    try:
        yield os.path.join(d, "ws.sock")
    finally:
        shutil.rmtree(d, ignore_errors=True)


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
