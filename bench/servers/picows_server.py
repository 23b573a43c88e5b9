"""picows benchmark server (see common.py).

picows hands the listener frames, not messages, and its ``send`` is
synchronous. The echo decodes text to str (as the other libraries do before
their handler sees it) and sends it back encoded; binary payloads go back as
the frame's memoryview, picows' own zero-copy idiom. Its only publish
strategy is ``broadcast``: a loop of ``transport.send`` (no awaitable send
exists, so ``await``/``gather``/``task`` don't apply).
"""

from __future__ import annotations

from typing import Any

import common


async def serve(args: Any) -> None:
    import picows
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

    if args.scenario == "broadcast" and args.strategy != "broadcast":
        raise SystemExit("picows has no awaitable send: only --strategy broadcast applies")

    control = common.Control()
    TEXT, BINARY, CLOSE = WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CLOSE
    subscribers: set[WSTransport] = set()

    class Base(WSListener):  # type: ignore[misc]
        def on_ws_connected(self, transport: WSTransport) -> None:
            control.active += 1

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            control.active -= 1

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    class Echo(Base):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            t = frame.msg_type
            if t == TEXT:
                transport.send(TEXT, frame.get_payload_as_utf8_text().encode())
            elif t == BINARY:
                transport.send(BINARY, frame.get_payload_as_memoryview())
            elif t == CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()

    class Subscriber(Base):
        def on_ws_connected(self, transport: WSTransport) -> None:
            subscribers.add(transport)
            control.active = len(subscribers)

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            subscribers.discard(transport)
            control.active = len(subscribers)

    class Publisher(Base):
        def on_ws_connected(self, transport: WSTransport) -> None:
            pass

        def on_ws_disconnected(self, transport: WSTransport) -> None:
            pass

        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == TEXT:
                data = frame.get_payload_as_utf8_text().encode()
                for sub in subscribers:
                    sub.send(TEXT, data)
            else:
                super().on_ws_frame(transport, frame)

    def factory(request: Any) -> WSListener:
        if args.scenario == "echo":
            return Echo()
        if args.scenario == "idle":
            return Base()
        return Publisher() if request.path == b"/pub" else Subscriber()

    server = await ws_create_server(
        factory,
        args.host,
        args.port,
        enable_auto_ping=False,
        max_frame_size=common.MAX_SIZE,
        backlog=1024,
    )
    try:
        port = server.sockets[0].getsockname()[1]
        await control.run(port, library="picows", version=picows.__version__)
    finally:
        server.close()


if __name__ == "__main__":
    arguments = common.parse_args("picows")
    common.run(arguments, lambda: serve(arguments))
