"""``ripple connect URL``: an interactive client for any WebSocket server.

Each line typed (or piped) on standard input is sent as a text message; each
message received is printed on standard output after ``< ``. End of input
(Ctrl-D), Ctrl-C or SIGTERM closes the connection with 1000. Status lines go
to standard error, so standard output holds only what the server sent.

It runs on the reconnecting form of :func:`~ripple.connect`: once connected,
a lost connection (closed with 1001, 1006, 1011, 1012, 1013 or 1014) is
reported ("connection lost") and opened again with backoff ("reconnected").
Failing to connect the first time ends it, as does an error that retrying
can't fix, or the server closing with any other code.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import unicodedata
from typing import Any, TextIO

from ._stop import stop_on_signals
from .client import Backoff, ClientConnection, connect
from .exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from .typing import Data

__all__ = ["printable", "run_connect"]

#: Bytes of a binary message shown in hex; the rest is summarized.
HEX_SHOWN = 64

#: Close codes after which ``ripple connect`` reconnects: the server going
#: away or restarting, an abnormal closure, a server error, "try again later".
RECONNECT_CODES = frozenset({1001, 1006, 1011, 1012, 1013, 1014})


class _AfterFirst(Backoff):
    """Retries only once a connection has opened: a first failure is reported."""

    def __init__(self) -> None:
        super().__init__()
        self.connected = False

    def transient(self, exc: BaseException) -> bool:
        return self.connected and super().transient(exc)


def _status_logger(err: TextIO) -> logging.Logger:
    # Not registered with logging.getLogger: it only writes connect's retry
    # messages ("connecting to ... failed: ...; retrying in 2.0 s") to err.
    log = logging.Logger("ripple.connect", logging.INFO)
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    return log


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
    backoff = _AfterFirst()
    try:
        opening = connect(url, backoff=backoff, logger=_status_logger(err), **connect_kwargs)
    except InvalidURI as exc:
        err.write(f"ripple connect: {exc}\n")
        return 2

    loop = asyncio.get_running_loop()
    stop, restore_signals = stop_on_signals(loop)
    lines: asyncio.Queue[str | None] = asyncio.Queue()
    threading.Thread(
        target=_read_lines, args=(stdin_fd, loop, lines), name="ripple-stdin", daemon=True
    ).start()

    in_session = False

    async def sessions() -> int:
        nonlocal in_session
        async with contextlib.aclosing(aiter(opening)) as connections:
            async for ws in connections:
                if backoff.connected:
                    err.write(f"reconnected to {url}\n")
                else:
                    backoff.connected = True
                    err.write(
                        f"connected to {url}; type a line and press Enter to send it, "
                        "Ctrl-D to close\n"
                    )
                err.flush()
                in_session = True
                try:
                    we_closed = await _session(ws, lines, stop, out)
                finally:
                    in_session = False
                code, reason = ws.close_code, ws.close_reason
                if not we_closed and code in RECONNECT_CODES:
                    err.write(f"connection lost: {code}{f' {reason}' if reason else ''}\n")
                    err.flush()
                    continue
                err.write(f"connection closed: {code}{f' {reason}' if reason else ''}\n")
                err.flush()
                return 0 if we_closed or code in (1000, 1001) else 1
        raise AssertionError("unreachable: connect() reconnects forever")  # pragma: no cover

    task = loop.create_task(sessions())
    try:
        while True:
            waiting: set[asyncio.Future[Any]] = {task, stop}
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            if not in_session:
                # Ctrl-C or SIGTERM while waiting to reconnect: nothing to close.
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                err.write("stopped while reconnecting\n")
                return 0
            # In a session: it sees `stop` too, closes with 1000 and returns.
            return await task
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        if backoff.connected:
            err.write(f"ripple connect: gave up reconnecting to {url}: {exc}\n")
        else:
            err.write(f"ripple connect: couldn't connect to {url}: {exc}\n")
        return 1
    finally:
        restore_signals()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _session(
    ws: ClientConnection,
    lines: asyncio.Queue[str | None],
    stop: asyncio.Future[None],
    out: TextIO,
) -> bool:
    """Relay until the connection closes; True if we closed it (end of input, a signal)."""
    loop = asyncio.get_running_loop()
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
        for task in (receiver, sender):
            task.cancel()
        await asyncio.gather(receiver, sender, return_exceptions=True)
        if not ws.closed:
            await ws.close()
    return we_closed
