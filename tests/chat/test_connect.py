"""`ripple connect URL`: the interactive client, through a pipe and through a pty."""

from __future__ import annotations

import asyncio
import os
import pty
import signal
import sys
import termios
from collections.abc import AsyncIterator

import pytest

import ripple
from aio_helpers import Servers, echo, server_port, within
from ripple.interactive import printable

from .helpers import Chat, Process, start_ripple, subprocess_env

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def echo_url(servers: Servers) -> str:
    _, url = await servers.start(echo)
    return url


async def read_line(proc: Process) -> str:
    assert proc.proc.stdout is not None
    return (await within(proc.proc.stdout.readline(), 10)).decode()


async def start_connect(url: str) -> Process:
    return await start_ripple("connect", url, first_line=False, stdin=asyncio.subprocess.PIPE)


async def test_lines_in_messages_out_through_pipes(echo_url: str) -> None:
    proc = await start_connect(echo_url)
    try:
        stdin = proc.proc.stdin
        assert stdin is not None
        for text in ("hello", "ünïcödé ☃", "  spaces kept  "):
            stdin.write(f"{text}\n".encode())
            await stdin.drain()
            assert await read_line(proc) == f"< {text}\n"
        stdin.write(b"\n")  # empty lines aren't sent
        stdin.write(b"crlf\r\n")
        await stdin.drain()
        assert await read_line(proc) == "< crlf\n"
        stdin.close()  # end of input: close with 1000, exit 0
        assert await within(proc.proc.wait(), 20) == 0
        err = await proc.stderr()
        assert "connected to" in err and "connection closed: 1000" in err
    finally:
        await proc.kill()


async def test_what_the_server_sends_unasked_is_printed_and_its_close_ends_it(
    servers: Servers,
) -> None:
    async def talk(ws: ripple.ServerConnection) -> None:
        await ws.send("\x1b[31mred\x07 and a bell")
        await ws.send(b"\x00\x01\xfe\xff")
        await ws.send("line one\nline two")
        await ws.close(4000, "done talking")

    _, url = await servers.start(talk)
    proc = await start_connect(url)
    try:
        assert await read_line(proc) == "< \\x1b[31mred\\x07 and a bell\n"
        assert await read_line(proc) == "< [binary, 4 bytes] 00 01 fe ff\n"
        assert await read_line(proc) == "< line one\n"
        assert await read_line(proc) == "line two\n"
        assert await within(proc.proc.wait(), 20) == 1  # not a normal close
        assert "connection closed: 4000 done talking" in await proc.stderr()
    finally:
        await proc.kill()


async def read_err_until(proc: Process, needle: str) -> str:
    """Standard error lines until one containing ``needle``; all of them."""
    assert proc.proc.stderr is not None
    seen = ""
    while needle not in seen:
        line = (await within(proc.proc.stderr.readline(), 20)).decode(errors="replace")
        assert line, f"stderr ended before {needle!r}: {seen}"
        seen += line
    return seen


async def test_server_restart_is_shown_and_survived(servers: Servers) -> None:
    server, url = await servers.start(echo)
    port = server_port(server)
    proc = await start_connect(url)
    try:
        await read_err_until(proc, "connected to")
        await ripple_client_seen(server)
        server.close()  # 1001: the client reconnects
        await within(server.wait_closed())
        await read_err_until(proc, "connection lost: 1001")
        await servers.start(echo, port=port, reuse_address=True)
        await read_err_until(proc, "reconnected to")
        assert proc.proc.stdin is not None
        proc.proc.stdin.write(b"still here\n")
        assert await read_line(proc) == "< still here\n"
        proc.proc.stdin.close()
        assert await within(proc.proc.wait(), 20) == 0
        assert "connection closed: 1000" in await proc.stderr()
    finally:
        await proc.kill()


async def test_sigterm_while_reconnecting_stops(servers: Servers) -> None:
    server, url = await servers.start(echo)
    proc = await start_connect(url)
    try:
        await read_err_until(proc, "connected to")
        await ripple_client_seen(server)
        server.close()
        await read_err_until(proc, "connection lost: 1001")
        await read_err_until(proc, "retrying in")  # nothing listens any more
        assert await proc.stop(signal.SIGTERM) == 0
    finally:
        await proc.kill()


async def ripple_client_seen(server: ripple.Server) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while not server.connections:
        assert loop.time() < deadline, "the client never connected"
        await asyncio.sleep(0.01)


async def test_sigterm_closes_cleanly(echo_url: str) -> None:
    proc = await start_connect(echo_url)
    try:
        assert proc.proc.stdin is not None
        proc.proc.stdin.write(b"first\n")
        assert await read_line(proc) == "< first\n"
        assert await proc.stop(signal.SIGTERM) == 0
        assert "connection closed: 1000" in await proc.stderr()
    finally:
        await proc.kill()


async def test_against_the_chat(chat: Chat) -> None:
    proc = await start_connect(chat.url)
    try:
        assert proc.proc.stdin is not None
        proc.proc.stdin.write(b'{"type": "join", "name": "term"}\nnot json\n')
        assert '"type":"welcome"' in await read_line(proc)
        assert '"type":"join"' in await read_line(proc)
        assert '"code":"invalid_json"' in await read_line(proc)
        proc.proc.stdin.close()
        assert await within(proc.proc.wait(), 20) == 0
    finally:
        await proc.kill()


@pytest.mark.parametrize(
    ("url", "status", "complaint"),
    [
        ("http://127.0.0.1:1/", 2, "ws://"),
        ("ws://127.0.0.1:1/", 1, "couldn't connect"),
    ],
)
async def test_connection_errors(url: str, status: int, complaint: str) -> None:
    proc = await start_ripple("connect", url, first_line=False)
    try:
        assert await within(proc.proc.wait(), 20) == status
        assert complaint in await proc.stderr()
    finally:
        await proc.kill()


# -- a terminal ---------------------------------------------------------------------


@pytest.fixture
async def pty_connect(echo_url: str) -> AsyncIterator[tuple[asyncio.subprocess.Process, int]]:
    controller, terminal = pty.openpty()
    attrs = termios.tcgetattr(terminal)
    attrs[3] &= ~termios.ECHO  # no echo of what we type: only what arrives
    termios.tcsetattr(terminal, termios.TCSANOW, attrs)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ripple",
        "connect",
        echo_url,
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=subprocess_env(),
    )
    os.close(terminal)
    try:
        yield proc, controller
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        os.close(controller)


async def read_until(fd: int, needle: bytes) -> bytes:
    loop = asyncio.get_running_loop()
    seen = b""
    while needle not in seen:
        try:
            chunk = await within(loop.run_in_executor(None, os.read, fd, 4096), 10)
        except OSError:  # EIO: the other side closed
            break
        if not chunk:
            break
        seen += chunk
    return seen


async def test_in_a_terminal_type_and_ctrl_d(
    pty_connect: tuple[asyncio.subprocess.Process, int],
) -> None:
    proc, controller = pty_connect
    assert b"Ctrl-D to close" in await read_until(controller, b"Ctrl-D to close")
    os.write(controller, b"typed in a terminal\n")
    assert b"< typed in a terminal" in await read_until(controller, b"< typed in a terminal")
    os.write(controller, b"\x04")  # Ctrl-D on an empty line: end of input
    assert b"connection closed: 1000" in await read_until(controller, b"connection closed")
    assert await within(proc.wait(), 20) == 0


# -- how messages are shown -------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "shown"),
    [
        ("plain", "plain"),
        ("tab\there", "tab\there"),
        ("esc \x1b[2J", "esc \\x1b[2J"),
        ("cr\rlf", "cr\\x0dlf"),
        ("bidi \u202e", "bidi \\u202e"),
        (b"", "[binary, 0 bytes] "),
        (bytes(range(70)), "[binary, 70 bytes] " + bytes(range(64)).hex(" ") + " ... (+6 bytes)"),
    ],
)
def test_printable(message: str | bytes, shown: str) -> None:
    assert printable(message) == shown
