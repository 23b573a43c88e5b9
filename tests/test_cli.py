"""`python -m ripple echo`, started as a real subprocess."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import ripple
from aio_helpers import within

pytestmark = pytest.mark.timeout(60)

SRC = str(Path(__file__).resolve().parents[1] / "src")


class Echo:
    def __init__(self, proc: asyncio.subprocess.Process, first_line: str) -> None:
        self.proc = proc
        self.first_line = first_line

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        self.proc.send_signal(sig)
        return await within(self.proc.wait(), 10)


async def start_echo(*args: str) -> Echo:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ripple",
        "echo",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    try:
        line = await within(proc.stdout.readline(), 20)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    if not line:
        assert proc.stderr is not None
        err = await proc.stderr.read()
        await proc.wait()
        raise AssertionError(f"ripple echo exited: {err.decode(errors='replace')}")
    return Echo(proc, line.decode().rstrip("\n"))


@pytest.fixture
async def echo_tcp() -> AsyncIterator[Echo]:
    echo = await start_echo("--port", "0")
    try:
        yield echo
    finally:
        if echo.proc.returncode is None:
            echo.proc.kill()
            await echo.proc.wait()


async def exchange(client: ripple.ClientConnection) -> None:
    await client.send("hello, echo")
    assert await within(client.recv()) == "hello, echo"
    await client.send(b"\x00\x01\xfe\xff")
    assert await within(client.recv()) == b"\x00\x01\xfe\xff"
    await client.send(["frag", "mented"])
    assert await within(client.recv()) == "fragmented"


async def test_echo_prints_url_and_echoes_text_and_binary(echo_tcp: Echo) -> None:
    match = re.fullmatch(r"ripple echo on (ws://127\.0\.0\.1:(\d+)/)", echo_tcp.first_line)
    assert match is not None, echo_tcp.first_line
    url, port = match.group(1), int(match.group(2))
    assert port > 0
    async with ripple.connect(url) as client:
        await exchange(client)
    # Several clients at once.
    clients = [await within(ripple.connect(url)) for _ in range(5)]
    for i, client in enumerate(clients):
        await client.send(f"client {i}")
    for i, client in enumerate(clients):
        assert await within(client.recv()) == f"client {i}"
        await within(client.close())


async def test_echo_exits_0_on_sigterm(echo_tcp: Echo) -> None:
    url = echo_tcp.first_line.rsplit(" ", 1)[1]
    client = await within(ripple.connect(url))
    await exchange(client)
    assert await echo_tcp.stop(signal.SIGTERM) == 0
    # Open connections were closed on the way out ("going away").
    with pytest.raises(ripple.ConnectionClosedOK) as info:
        await within(client.recv())
    assert info.value.code == 1001


async def test_echo_exits_0_on_sigint(echo_tcp: Echo) -> None:
    assert await echo_tcp.stop(signal.SIGINT) == 0


async def test_echo_max_size_option() -> None:
    echo = await start_echo("--port", "0", "--max-size", "100")
    try:
        url = echo.first_line.rsplit(" ", 1)[1]
        async with ripple.connect(url) as client:
            await client.send("x" * 100)
            assert await within(client.recv()) == "x" * 100
            await client.send("x" * 101)
            with pytest.raises(ripple.ConnectionClosedError) as info:
                await within(client.recv())
            assert info.value.code == 1009
        assert await echo.stop() == 0
    finally:
        if echo.proc.returncode is None:
            echo.proc.kill()
            await echo.proc.wait()


async def test_echo_on_unix_socket(sock_path: str) -> None:
    echo = await start_echo("--unix", sock_path)
    try:
        assert echo.first_line == f"ripple echo on unix socket {sock_path}"
        assert os.path.exists(sock_path)
        async with ripple.unix_connect(sock_path) as client:
            await exchange(client)
        assert await echo.stop() == 0
    finally:
        if echo.proc.returncode is None:
            echo.proc.kill()
            await echo.proc.wait()


@pytest.mark.parametrize("before", [True, False], ids=["ripple -v echo", "ripple echo -v"])
async def test_verbose_flag_before_or_after_the_command(before: bool) -> None:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    args = ["-v", "echo"] if before else ["echo", "-v"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "ripple",
        *args,
        "--port",
        "0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    await within(proc.stdout.readline(), 20)
    proc.send_signal(signal.SIGTERM)
    _, err = await within(proc.communicate(), 10)
    assert proc.returncode == 0
    assert b"DEBUG" in err  # debug logging is on either way
