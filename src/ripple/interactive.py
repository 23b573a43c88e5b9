"""``ripple connect URL``: an interactive client for any WebSocket server.

Each line typed (or piped) on standard input is sent as a text message; each
message received is printed on standard output after ``< ``. End of input
(Ctrl-D), Ctrl-C or SIGTERM closes the connection with 1000. Status lines go
to standard error, so standard output holds only what the server sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import unicodedata
from typing import Any, TextIO

from .client import ClientConnection, connect
from .exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from .typing import Data

__all__ = ["printable", "run_connect"]

#: Bytes of a binary message shown in hex; the rest is summarized.
HEX_SHOWN = 64


def printable(message: Data) -> str:
    """How a received message is shown: text with control characters escaped
    (a server can't move the cursor or change colours), binary in hex."""
    if isinstance(message, str):
        return "".join(
            ch
            if ch in "\n\t" or unicodedata.category(ch) not in ("Cc", "Cf", "Cs")
            else f"\\u{ord(ch):04x}"
            if ord(ch) > 0xFF
            else f"\\x{ord(ch):02x}"
            for ch in message
        )
    data = bytes(message)
    shown = data[:HEX_SHOWN].hex(" ")
    more = f" ... (+{len(data) - HEX_SHOWN} bytes)" if len(data) > HEX_SHOWN else ""
    return f"[binary, {len(data)} bytes] {shown}{more}"


def _read_lines(
    fd: int, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue[str | None]
) -> None:
    # A daemon thread with plain os.read: it works for terminals, pipes and
    # files alike, and holds no lock that would block the interpreter's exit
    # while it waits for input.
    pending = b""
    try:
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for raw in complete:
                line = raw.decode("utf-8", "replace").removesuffix("\r")
                loop.call_soon_threadsafe(lines.put_nowait, line)
    except (OSError, RuntimeError):
        pass  # stdin closed, or the loop is gone
    with contextlib.suppress(RuntimeError):
        if pending:
            line = pending.decode("utf-8", "replace").removesuffix("\r")
            loop.call_soon_threadsafe(lines.put_nowait, line)
        loop.call_soon_threadsafe(lines.put_nowait, None)


async def _send_lines(ws: ClientConnection, lines: asyncio.Queue[str | None]) -> None:
    """Send each line until end of input; empty lines are skipped."""
    while (line := await lines.get()) is not None:
        if line:
            await ws.send(line)


async def _print_messages(ws: ClientConnection, out: TextIO) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in ws:
            out.write(f"< {printable(message)}\n")
            out.flush()


async def run_connect(
    url: str,
    *,
    stdin_fd: int = 0,
    out: TextIO | None = None,
    err: TextIO | None = None,
    **connect_kwargs: Any,
) -> int:
    """Talk to ``url`` from the terminal; returns the exit status.

    0: we closed (end of input, Ctrl-C) or the server closed with 1000 or
    1001. 1: the connection failed, or closed with another code. 2: the URL
    isn't a WebSocket URL.
    """
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        ws = await connect(url, **connect_kwargs)
    except InvalidURI as exc:
        err.write(f"ripple connect: {exc}\n")
        return 2
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        err.write(f"ripple connect: couldn't connect to {url}: {exc}\n")
        return 1
    err.write(f"connected to {url}; type a line and press Enter to send it, Ctrl-D to close\n")
    err.flush()

    loop = asyncio.get_running_loop()
    stop = loop.create_future()

    def stop_once() -> None:
        if not stop.done():
            stop.set_result(None)

    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_once)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(
        target=_read_lines, args=(stdin_fd, loop, lines), name="ripple-stdin", daemon=True
    ).start()
    receiver = loop.create_task(_print_messages(ws, out))
    sender = loop.create_task(_send_lines(ws, lines))
    we_closed = False
    try:
        done, _ = await asyncio.wait({receiver, sender, stop}, return_when=asyncio.FIRST_COMPLETED)
        failed = sender.exception() if sender in done else None
        if failed is not None and not isinstance(failed, ConnectionClosed):
            raise failed
        if receiver not in done and failed is None:
            # End of input or a signal: close, and print what arrives meanwhile.
            we_closed = True
            await ws.close()
        await receiver
    finally:
        for sig in signals:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        for task in (receiver, sender):
            task.cancel()
        await asyncio.gather(receiver, sender, return_exceptions=True)
        if not ws.closed:
            await ws.close()
    code, reason = ws.close_code, ws.close_reason
    err.write(f"connection closed: {code}{f' {reason}' if reason else ''}\n")
    err.flush()
    return 0 if we_closed or code in (1000, 1001) else 1
