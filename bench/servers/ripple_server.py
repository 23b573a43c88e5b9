"""ripple benchmark server (see common.py for the scenarios and the control channel).

``RIPPLE_NO_SPEEDUPS=1`` in the environment runs the pure-Python masking;
``RIPPLE_BENCH_CALLBACK=1`` echoes through ``on_message()`` and
``send_nowait()`` instead of ``async for`` and ``await send()``.
"""

from __future__ import annotations

import os
from typing import Any

import common


async def serve(args: Any) -> None:
    import ripple
    from ripple.protocol.masking import SPEEDUPS

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

    async def echo_callback(ws: ripple.ServerConnection) -> None:
        control.active += 1
        try:
            ws.on_message(ws.send_nowait)  # no task switch per message
            await ws.wait_closed()
        finally:
            control.active -= 1

    if os.environ.get("RIPPLE_BENCH_CALLBACK") == "1":
        echo = echo_callback

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
        )


if __name__ == "__main__":
    arguments = common.parse_args("ripple")
    common.run(arguments, lambda: serve(arguments))
