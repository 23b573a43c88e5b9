"""websockets (its new asyncio API) benchmark server (see common.py)."""

from __future__ import annotations

from typing import Any

import common


async def serve(args: Any) -> None:
    import websockets
    from websockets.asyncio.server import ServerConnection, broadcast
    from websockets.asyncio.server import serve as ws_serve
    from websockets.exceptions import ConnectionClosed

    control = common.Control()

    async def echo(ws: ServerConnection) -> None:
        control.active += 1
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass
        finally:
            control.active -= 1

    async def idle(ws: ServerConnection) -> None:
        control.active += 1
        try:
            await ws.wait_closed()
        finally:
            control.active -= 1

    fanout = common.Fanout(control, args.strategy, lambda ws, m: ws.send(m), broadcast)

    async def pubsub(ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.path == "/pub":
            publish = fanout.publish
            try:
                async for message in ws:
                    await publish(message)  # type: ignore[arg-type]
            except ConnectionClosed:
                pass
            return
        fanout.add(ws)
        try:
            await ws.wait_closed()
        finally:
            fanout.discard(ws)

    handler = {"echo": echo, "idle": idle, "broadcast": pubsub}[args.scenario]
    async with ws_serve(
        handler,
        args.host,
        args.port,
        compression=None,
        ping_interval=None,
        max_size=common.MAX_SIZE,
        backlog=1024,
    ) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        await control.run(port, library="websockets", version=websockets.__version__)


if __name__ == "__main__":
    arguments = common.parse_args("websockets")
    common.run(arguments, lambda: serve(arguments))
