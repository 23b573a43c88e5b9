"""``async for ws in connect(...)``: reconnecting, backoff, giving up."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

import pytest
import trustme

import ripple
from aio_helpers import (
    Parked,
    Servers,
    bounded,
    echo,
    eventually,
    free_port,
    server_port,
    within,
)
from ripple.client import Backoff

pytestmark = pytest.mark.timeout(30)

FAST = Backoff(initial_delay=0.01, factor=2, max_delay=0.05)


class Stop(Exception):
    """Raised by a fake sleep to end a reconnecting loop."""


class FakeSleep:
    """Records the delays asked for, without waiting; stops after ``limit``."""

    def __init__(self, limit: int = 8) -> None:
        self.delays: list[float] = []
        self.limit = limit

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        if len(self.delays) >= self.limit:
            raise Stop
        await asyncio.sleep(0)


def test_backoff_delays_grow_then_stay_at_the_bound() -> None:
    delays = Backoff(initial_delay=1, factor=2, max_delay=10, jitter=0).delays()
    assert [next(delays) for _ in range(7)] == [1, 2, 4, 8, 10, 10, 10]


def test_backoff_jitter_stays_within_its_fraction() -> None:
    exact = Backoff(initial_delay=1, factor=3, max_delay=20, jitter=0).delays()
    jittered = Backoff(initial_delay=1, factor=3, max_delay=20, jitter=0.5).delays()
    for _ in range(200):
        bound = next(exact)
        assert bound / 2 <= next(jittered) <= bound


def test_backoff_defaults_and_bad_values() -> None:
    b = Backoff()
    assert (b.initial_delay, b.factor, b.max_delay, b.jitter) == (1.0, 2.0, 60.0, 0.5)
    for kwargs in (
        {"initial_delay": 0},
        {"max_delay": -1},
        {"factor": 0.5},
        {"jitter": 2},
        {"initial_delay": 5, "max_delay": 1},
    ):
        with pytest.raises(ValueError):
            Backoff(**kwargs)
    with pytest.raises(TypeError, match="Backoff"):
        ripple.connect("ws://127.0.0.1/", backoff=3)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (ripple.InvalidMessage("connection closed during the opening handshake"), True),
        (ripple.InvalidStatus(ripple.Response(503)), True),
        (ripple.InvalidStatus(ripple.Response(500)), True),
        (ripple.InvalidStatus(ripple.Response(429)), True),
        (ripple.InvalidStatus(ripple.Response(403)), False),
        (ripple.InvalidStatus(ripple.Response(404)), False),
        (ripple.InvalidStatus(ripple.Response(301)), False),
        (ripple.InvalidStatus(ripple.Response(200)), False),
        (ripple.InvalidUpgrade("Upgrade"), False),
        (ripple.NegotiationError("no"), False),
        (ripple.SecurityError("too big"), False),
        (ssl.SSLCertVerificationError(), False),
        (ssl.SSLError(), False),
        (ssl.SSLEOFError(), True),
        (ValueError(), False),
    ],
)
def test_which_errors_are_retried(exc: Exception, transient: bool) -> None:
    assert Backoff().transient(exc) is transient


async def test_each_round_gets_a_new_connection(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked)
    seen: list[ripple.ClientConnection] = []
    async with bounded(10):
        async for ws in ripple.connect(url, backoff=FAST):
            seen.append(ws)
            server_side = await parked.next()
            if len(seen) == 3:
                break
            await server_side.close(1001)
            with pytest.raises(ripple.ConnectionClosed):
                await ws.recv()
    assert len({id(ws) for ws in seen}) == 3
    assert all(ws.closed for ws in seen[:2])
    # Leaving the loop (break) closes the last connection once the iterator is finalized.
    await eventually(lambda: seen[2].closed)


async def test_going_round_closes_a_connection_the_body_left_open(echo_url: str) -> None:
    seen: list[ripple.ClientConnection] = []
    async with bounded(10):
        async for ws in ripple.connect(echo_url, backoff=FAST):
            seen.append(ws)
            if len(seen) == 2:
                break
    assert seen[0].closed and seen[0].close_code == 1000


async def test_an_exception_in_the_body_propagates_and_closes(echo_url: str) -> None:
    seen: list[ripple.ClientConnection] = []
    with pytest.raises(ZeroDivisionError):
        async with bounded(10):
            async for ws in ripple.connect(echo_url, backoff=FAST):
                seen.append(ws)
                1 / 0  # noqa: B018
    assert len(seen) == 1
    await eventually(lambda: seen[0].closed)


async def test_refused_port_delays_grow_and_are_bounded() -> None:
    port = free_port()
    sleep = FakeSleep(limit=8)
    opening = ripple.connect(
        f"ws://127.0.0.1:{port}/",
        backoff=Backoff(initial_delay=0.5, factor=2, max_delay=4, jitter=0),
    )
    opening._sleep = sleep  # type: ignore[method-assign]
    with pytest.raises(Stop):
        async with bounded(10):
            async for _ in opening:
                pytest.fail("nothing listens there")
    assert sleep.delays == [0.5, 1, 2, 4, 4, 4, 4, 4]


async def test_no_hammering_a_server_that_drops_every_connection() -> None:
    attempts = 0

    async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal attempts
        attempts += 1
        writer.close()

    server = await asyncio.start_server(drop, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    backoff = Backoff(initial_delay=0.05, factor=2, max_delay=0.2, jitter=0.5)

    async def run() -> None:
        async for _ in ripple.connect(f"ws://127.0.0.1:{port}/", backoff=backoff):
            pytest.fail("the server drops every connection")

    loop = asyncio.get_running_loop()
    start = loop.time()
    task = asyncio.create_task(run())
    try:
        await eventually(lambda: attempts >= 3)
        await asyncio.sleep(0.5)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        server.close()
        await within(server.wait_closed())
    elapsed = loop.time() - start
    # The most attempts the shortest (fully jittered) delays allow in `elapsed`.
    most, total, delays = 1, 0.0, Backoff(0.05, 2, 0.2, jitter=0).delays()
    while (total := total + next(delays) / 2) <= elapsed:
        most += 1
    assert 3 <= attempts <= most


async def test_gives_up_on_403_after_one_attempt(servers: Servers) -> None:
    calls = 0

    def refuse(connection: Any, request: Any) -> ripple.Response:
        nonlocal calls
        calls += 1
        return ripple.Response(403, "Forbidden", b"go away")

    _, url = await servers.start(echo, process_request=refuse)
    with pytest.raises(ripple.InvalidStatus, match="HTTP 403: go away") as info:
        async with bounded(10):
            async for _ in ripple.connect(url, backoff=FAST):
                pytest.fail("refused")
    assert info.value.response.status_code == 403
    assert calls == 1


async def test_retries_503_until_the_server_accepts(servers: Servers) -> None:
    calls = 0

    def busy_twice(connection: Any, request: Any) -> ripple.Response | None:
        nonlocal calls
        calls += 1
        return ripple.Response(503, "Service Unavailable") if calls <= 2 else None

    _, url = await servers.start(echo, process_request=busy_twice)
    opening = ripple.connect(url, backoff=Backoff(initial_delay=0.5, jitter=0))
    sleep = FakeSleep()
    opening._sleep = sleep  # type: ignore[method-assign]
    async with bounded(10):
        async for ws in opening:
            await ws.send("in")
            assert await ws.recv() == "in"
            break
    assert calls == 3
    assert sleep.delays == [0.5, 1.0]


async def test_gives_up_on_an_untrusted_certificate(servers: Servers) -> None:
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    server, _ = await servers.start(echo, ssl=server_ctx)
    with pytest.raises(ssl.SSLCertVerificationError):
        async with bounded(10):
            async for _ in ripple.connect(
                f"wss://127.0.0.1:{server_port(server)}/", backoff=FAST, proxy=None
            ):
                pytest.fail("the certificate isn't trusted")


def test_an_invalid_uri_raises_at_the_call() -> None:
    with pytest.raises(ripple.InvalidURI):
        ripple.connect("http://127.0.0.1/")


async def test_the_client_carries_on_when_the_server_restarts(servers: Servers) -> None:
    first, url = await servers.start(echo)
    port = server_port(first)
    got: list[str] = []
    lost: list[int] = []

    async def client() -> None:
        async for ws in ripple.connect(url, backoff=FAST):
            try:
                await ws.send(f"hello {len(got) + 1}")
                got.append(await ws.recv())
                if len(got) == 2:
                    return
                await ws.recv()  # until the server goes away
            except ripple.ConnectionClosed as exc:
                lost.append(exc.code)
                continue

    task = asyncio.create_task(client())
    try:
        await eventually(lambda: len(got) == 1)
        first.close()  # closes the connection with 1001
        await within(first.wait_closed())
        await eventually(lambda: bool(lost))
        await servers.start(echo, port=port, reuse_address=True)
        await within(task, 10)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert got == ["hello 1", "hello 2"]
    assert lost == [1001]
