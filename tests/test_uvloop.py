"""ripple on uvloop: the same server and client, on uvloop's transports.

uvloop's transports don't derive from asyncio.Transport; nothing in ripple may
depend on that (DESIGN rule 8: any asyncio loop).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

import ripple

uvloop = pytest.importorskip(
    "uvloop", reason="uvloop is in the test extra: pip install -e '.[test]'"
)


def run_on_uvloop(scenario: Callable[[], Awaitable[None]]) -> None:
    loop = uvloop.new_event_loop()
    try:
        loop.run_until_complete(asyncio.wait_for(scenario(), 20))
    finally:
        loop.close()


async def echo(ws: ripple.ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


@pytest.mark.parametrize("compression", ["deflate", None])
def test_echo_and_close_on_uvloop(compression: str | None) -> None:
    async def scenario() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        async with ripple.serve(echo, "127.0.0.1", 0, compression=compression) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            async with ripple.connect(f"ws://127.0.0.1:{port}/", compression=compression) as ws:
                negotiated = ws.response_headers.get("Sec-WebSocket-Extensions")
                assert (negotiated is not None) is (compression is not None)
                await ws.send("hello")
                assert await ws.recv() == "hello"
                await ws.send(b"\x00" * 2**20)
                assert await ws.recv() == b"\x00" * 2**20
                await ws.send(["frag", "mented"])
                assert await ws.recv() == "fragmented"
                assert isinstance(await (await ws.ping()), float)
                await ws.close(4000, "bye")
            assert ws.close_code == 4000

    run_on_uvloop(scenario)


def test_broadcast_and_server_shutdown_on_uvloop() -> None:
    async def scenario() -> None:
        async def park(ws: ripple.ServerConnection) -> None:
            await ws.wait_closed()

        server = await ripple.serve(park, "127.0.0.1", 0, compression=None)
        port = next(iter(server.sockets)).getsockname()[1]
        clients = [await ripple.connect(f"ws://127.0.0.1:{port}/") for _ in range(20)]
        while len(server.connections) < 20:
            await asyncio.sleep(0.01)
        ripple.broadcast(server.connections, "to all")
        for client in clients:
            assert await client.recv() == "to all"
        server.close()
        await server.wait_closed()
        for client in clients:
            with pytest.raises(ripple.ConnectionClosedOK):
                await client.recv()
            assert client.close_code == 1001

    run_on_uvloop(scenario)
