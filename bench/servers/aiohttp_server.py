"""aiohttp benchmark server (see common.py).

aiohttp's sends are coroutines with no synchronous variant in its public API,
so its ``broadcast`` strategy is the awaited loop of ``send_str`` (which only
suspends when the transport's buffer is over its limit).
"""

from __future__ import annotations

from typing import Any

import common


async def serve(args: Any) -> None:
    import aiohttp
    from aiohttp import WSMsgType, web

    control = common.Control()

    def response() -> web.WebSocketResponse:
        return web.WebSocketResponse(compress=False, heartbeat=None, max_msg_size=common.MAX_SIZE)

    async def echo(request: web.Request) -> web.WebSocketResponse:
        ws = response()
        await ws.prepare(request)
        control.active += 1
        try:
            async for msg in ws:
                t = msg.type
                if t is WSMsgType.TEXT:
                    await ws.send_str(msg.data)
                elif t is WSMsgType.BINARY:
                    await ws.send_bytes(msg.data)
        finally:
            control.active -= 1
        return ws

    async def idle(request: web.Request) -> web.WebSocketResponse:
        ws = response()
        await ws.prepare(request)
        control.active += 1
        try:
            async for _ in ws:
                pass
        finally:
            control.active -= 1
        return ws

    async def awaited_loop(subscribers: set[Any], message: str) -> None:
        for ws in list(subscribers):
            try:
                await ws.send_str(message)
            except Exception:
                pass

    fanout = common.Fanout(control, args.strategy, lambda ws, m: ws.send_str(m), lambda s, m: None)
    if args.strategy == "broadcast":
        fanout.publish = lambda message: awaited_loop(fanout.subscribers, message)

    async def pubsub(request: web.Request) -> web.WebSocketResponse:
        ws = response()
        await ws.prepare(request)
        if request.path == "/pub":
            publish = fanout.publish
            async for msg in ws:
                if msg.type is WSMsgType.TEXT:
                    await publish(msg.data)
            return ws
        fanout.add(ws)
        try:
            async for _ in ws:
                pass
        finally:
            fanout.discard(ws)
        return ws

    handler = {"echo": echo, "idle": idle, "broadcast": pubsub}[args.scenario]
    app = web.Application()
    app.router.add_get("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port, backlog=1024)
    await site.start()
    try:
        port = runner.addresses[0][1]
        await control.run(port, library="aiohttp", version=aiohttp.__version__)
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    arguments = common.parse_args("aiohttp")
    common.run(arguments, lambda: serve(arguments))
