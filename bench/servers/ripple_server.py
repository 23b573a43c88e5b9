"""ripple benchmark server (see common.py for the scenarios and the control channel).

``RIPPLE_NO_SPEEDUPS=1`` in the environment runs the pure-Python masking.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import types
from typing import Any

import common


def uvloop_transport_shim() -> bool:
    """Let ripple accept uvloop's transports if it still asserts
    ``isinstance(transport, asyncio.Transport)`` (uvloop's don't subclass it).

    ripple.connection gets a copy of the asyncio module whose ``Transport`` is
    a tuple of both classes; nothing else changes. Returns whether it was
    needed (reported in the server's info line and the results).
    """
    import uvloop.loop

    import ripple.connection

    source = inspect.getsource(ripple.connection.Connection.connection_made)
    if "asyncio.Transport)" not in source:
        return False
    shim = types.ModuleType("asyncio")
    shim.__dict__.update(asyncio.__dict__)
    shim.Transport = (asyncio.Transport, uvloop.loop.TCPTransport)  # type: ignore[attr-defined]
    ripple.connection.asyncio = shim  # type: ignore[attr-defined]
    print("ripple_server: uvloop transport shim applied", file=sys.stderr)
    return True


async def serve(args: Any) -> None:
    import ripple
    from ripple.protocol.masking import SPEEDUPS

    shim = args.loop == "uvloop" and uvloop_transport_shim()
    control = common.Control()

    async def echo(ws: ripple.ServerConnection) -> None:
        control.active += 1
        try:
            async for message in ws:
                await ws.send(message)
        except ripple.ConnectionClosed:
            pass
        finally:
            control.active -= 1

    async def idle(ws: ripple.ServerConnection) -> None:
        control.active += 1
        try:
            await ws.wait_closed()
        finally:
            control.active -= 1

    fanout = common.Fanout(control, args.strategy, lambda ws, m: ws.send(m), ripple.broadcast)

    async def pubsub(ws: ripple.ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path == "/pub":
            publish = fanout.publish
            try:
                async for message in ws:
                    await publish(message)  # type: ignore[arg-type]
            except ripple.ConnectionClosed:
                pass
            return
        fanout.add(ws)
        try:
            await ws.wait_closed()
        finally:
            fanout.discard(ws)

    handler = {"echo": echo, "idle": idle, "broadcast": pubsub}[args.scenario]
    async with ripple.serve(
        handler,
        args.host,
        args.port,
        compression=None,
        ping_interval=None,
        max_size=common.MAX_SIZE,
        backlog=1024,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        await control.run(
            port,
            library="ripple",
            version=ripple.__version__,
            speedups=int(SPEEDUPS),
            uvloop_shim=int(shim),
        )


if __name__ == "__main__":
    arguments = common.parse_args("ripple")
    common.run(arguments, lambda: serve(arguments))
