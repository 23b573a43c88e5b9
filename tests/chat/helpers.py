"""Helpers for the chat tests: an in-process chat on 127.0.0.1 and a JSON client."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import ripple
from aio_helpers import within
from ripple.chat import ChatConfig, ChatServer

SRC = str(Path(__file__).resolve().parents[2] / "src")


class FakeClock:
    """A clock the test moves by hand (for timestamps and token buckets)."""

    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Chat:
    """A ChatServer serving on 127.0.0.1, port 0."""

    def __init__(self, chat: ChatServer, server: ripple.Server, clock: FakeClock) -> None:
        self.chat = chat
        self.server = server
        self.clock = clock
        self.port = int(next(iter(server.sockets)).getsockname()[1])
        self.http = f"http://127.0.0.1:{self.port}/"
        self.url = f"ws://127.0.0.1:{self.port}/ws"

    async def client(self, name: str | None = None, **kwargs: Any) -> Client:
        """A connected client; joined as ``name`` (its welcome read) if given."""
        client = Client(await within(ripple.connect(self.url, **kwargs)))
        if name is not None:
            await client.join(name)
        return client

    async def aclose(self) -> None:
        self.server.close()
        await within(self.server.wait_closed(), 15)
        await within(self.chat.aclose())


async def start_chat(config: ChatConfig | None = None, port: int = 0, **kwargs: Any) -> Chat:
    clock = FakeClock()
    chat = ChatServer(config, clock=clock, monotonic=clock)
    server = await within(chat.serve("127.0.0.1", port, **kwargs))
    return Chat(chat, server, clock)


class Client:
    """A chat client over ripple's client, reading JSON messages."""

    def __init__(self, ws: ripple.ClientConnection) -> None:
        self.ws = ws
        self.me: dict[str, str] | None = None
        self.welcome: dict[str, Any] | None = None

    async def send(self, obj: Any) -> None:
        await self.ws.send(obj if isinstance(obj, (str, bytes)) else json.dumps(obj))

    async def say(self, text: str) -> None:
        await self.send({"type": "message", "text": text})

    async def recv(self, seconds: float = 5.0) -> dict[str, Any]:
        data = await within(self.ws.recv(), seconds)
        assert isinstance(data, str), data
        msg = json.loads(data)
        assert isinstance(msg, dict), msg
        return msg

    async def expect(self, kind: str, seconds: float = 5.0) -> dict[str, Any]:
        msg = await self.recv(seconds)
        assert msg["type"] == kind, msg
        return msg

    async def join(self, name: str) -> dict[str, Any]:
        """Join; return the welcome, after reading our own join notice."""
        await self.send({"type": "join", "name": name})
        welcome = await self.expect("welcome")
        self.welcome = welcome
        self.me = welcome["you"]
        joined = await self.expect("join")
        assert joined["user"] == self.me
        return welcome

    async def until(self, kind: str, seconds: float = 5.0, **fields: Any) -> dict[str, Any]:
        """Skip messages until one of ``kind`` whose fields match (within ``seconds``)."""

        async def find() -> dict[str, Any]:
            while True:
                msg = await self.recv(seconds)
                if msg["type"] == kind and all(msg.get(k) == v for k, v in fields.items()):
                    return msg

        return await within(find(), seconds)  # type: ignore[no-any-return]

    async def close(self) -> None:
        await within(self.ws.close())


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    return env


class Process:
    """`python -m ripple ...` as a child process, its first line read."""

    def __init__(self, proc: asyncio.subprocess.Process, first_line: str) -> None:
        self.proc = proc
        self.first_line = first_line

    async def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        return await within(self.proc.wait(), 20)

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await within(self.proc.wait(), 20)

    async def stderr(self) -> str:
        assert self.proc.stderr is not None
        return (await within(self.proc.stderr.read(), 20)).decode(errors="replace")


async def start_ripple(*args: str, first_line: bool = True, **kwargs: Any) -> Process:
    """Start `python -m ripple ARGS`; wait for its first line of output if asked."""
    kwargs.setdefault("stdout", asyncio.subprocess.PIPE)
    kwargs.setdefault("stderr", asyncio.subprocess.PIPE)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ripple", *args, env=subprocess_env(), **kwargs
    )
    if not first_line:
        return Process(proc, "")
    assert proc.stdout is not None
    try:
        line = await within(proc.stdout.readline(), 30)
    except BaseException:
        proc.kill()
        await proc.wait()
        raise
    if not line:
        assert proc.stderr is not None
        err = await proc.stderr.read()
        await proc.wait()
        raise AssertionError(f"ripple {args[0]} exited: {err.decode(errors='replace')}")
    return Process(proc, line.decode().rstrip("\n"))


async def start_chat_process(*args: str) -> tuple[Process, str]:
    """`ripple chat --port 0 ARGS`; the process and the page's URL."""
    proc = await start_ripple("chat", "--host", "127.0.0.1", "--port", "0", *args)
    words = proc.first_line.split()
    assert words[:3] == ["ripple", "chat", "on"], proc.first_line
    return proc, words[3]
