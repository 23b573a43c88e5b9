"""The `ripple` command: `ripple echo` (more commands arrive with the chat service)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

from .server import ServerConnection, serve, unix_serve

__all__ = ["main"]


async def echo_handler(websocket: ServerConnection) -> None:
    """Send every message back as it came: text as text, binary as binary."""
    async for message in websocket:
        await websocket.send(message)


async def run_echo(
    host: str, port: int, unix: str | None, max_size: int | None, compression: str | None
) -> None:
    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def stop_once() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop_once)
    if unix:
        server = await unix_serve(echo_handler, unix, max_size=max_size, compression=compression)
        print(f"ripple echo on unix socket {unix}", flush=True)
    else:
        server = await serve(echo_handler, host, port, max_size=max_size, compression=compression)
        bound = next(iter(server.sockets)).getsockname()
        shown = f"[{host}]" if ":" in host else host
        print(f"ripple echo on ws://{shown}:{bound[1]}/", flush=True)
    async with server:
        await stop


def main(argv: list[str] | None = None) -> None:
    """Entry point of the `ripple` command."""
    # -v works before or after the command: `ripple -v echo`, `ripple echo -v`.
    parser = argparse.ArgumentParser(prog="ripple", description="ripple WebSocket tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    echo = sub.add_parser("echo", help="run a WebSocket echo server")
    # SUPPRESS: the subcommand's default must not reset a -v given before it.
    echo.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging"
    )
    echo.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    echo.add_argument("--port", type=int, default=8765, help="TCP port (8765; 0 picks one)")
    echo.add_argument("--unix", metavar="PATH", help="listen on a unix socket instead")
    echo.add_argument(
        "--max-size",
        type=int,
        default=2**25,
        help="largest message in bytes (32 MiB; 0 for no limit)",
    )
    echo.add_argument(
        "--no-compression", action="store_true", help="don't accept permessage-deflate"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command == "echo":
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(
                run_echo(
                    args.host,
                    args.port,
                    args.unix,
                    args.max_size or None,
                    None if args.no_compression else "deflate",
                )
            )
    sys.exit(0)
