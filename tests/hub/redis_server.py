"""A real redis-server on a free loopback port, as a child process, for the tests.

Under CI=true a missing redis-server fails the test; elsewhere it is skipped
with the reason.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
from collections.abc import AsyncIterator

import pytest

from aio_helpers import within


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_path() -> str:
    path = shutil.which("redis-server")
    if path is None:
        why = "redis-server isn't installed (apt-get install redis-server)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    try:
        import redis  # noqa: F401
    except ImportError:
        why = "redis-py isn't installed (pip install 'ripple[redis]')"
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return path


class RedisServer:
    """``redis-server --port P --save '' --appendonly no``: no data survives a restart."""

    def __init__(self, path: str, port: int) -> None:
        self.path = path
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.proc: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            self.path,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10
        while True:
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.write(b"PING\r\n")
                line = await within(reader.readline())
                writer.close()
                if line.startswith(b"+PONG"):
                    return
            except OSError:
                pass
            if self.proc.returncode is not None or loop.time() > deadline:
                raise RuntimeError(f"redis-server didn't start on port {self.port}")
            await asyncio.sleep(0.05)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await within(self.proc.wait(), 10)
        self.proc = None

    async def restart(self) -> None:
        await self.stop()
        await self.start()


async def redis_fixture() -> AsyncIterator[RedisServer]:
    server = RedisServer(redis_server_path(), free_port())
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
