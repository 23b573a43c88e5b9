"""Run the examples from examples/ against real sockets.

Each example but page.py and hub_rooms.py is the seed's code with only its
import changed to ripple. To keep tests on free ports, the test copies the file
and swaps the hard-coded port (8765) and socket path for its own; nothing else
changes.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

import ripple
from aio_helpers import bounded
from hub.redis_server import RedisServer, redis_server_path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def run_example(
    name: str, tmp_path: Path, replacements: dict[str, str], args: tuple[str, ...] = ()
) -> AsyncIterator[asyncio.subprocess.Process]:
    source = (EXAMPLES / name).read_text()
    for old, new in replacements.items():
        assert old in source, f"{old!r} not in {name}"
        source = source.replace(old, new)
    script = tmp_path / name
    script.write_text(source)
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(script), *args, stdout=asyncio.subprocess.PIPE, env=env
    )
    try:
        assert proc.stdout is not None
        async with bounded(10):
            banner = await proc.stdout.readline()
        assert b"started" in banner, banner
        yield proc
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        async with bounded(10):
            await proc.wait()


async def test_echo_example(tmp_path: Path) -> None:
    port = free_port()
    async with (
        run_example("echo.py", tmp_path, {"8765": str(port)}),
        bounded(10),
        ripple.connect(f"ws://127.0.0.1:{port}/") as ws,
    ):
        await ws.send("hello")
        assert await ws.recv() == "Echo: hello"
        await ws.send("again")
        assert await ws.recv() == "Echo: again"


async def test_chat_example_broadcasts_to_every_client(tmp_path: Path) -> None:
    port = free_port()
    uri = f"ws://127.0.0.1:{port}/"
    async with run_example("chat.py", tmp_path, {"8765": str(port)}), bounded(10):
        alice = await ripple.connect(uri)
        bob = await ripple.connect(uri)
        await alice.send(json.dumps({"user": "alice", "message": "hi all"}))
        for ws in (alice, bob):
            got = json.loads(await ws.recv())
            assert got["user"] == "alice"
            assert got["message"] == "hi all"
            assert isinstance(got["timestamp"], float)
        # Bad JSON gets an error back to the sender only.
        await bob.send("not json")
        assert json.loads(await bob.recv()) == {"error": "Invalid JSON format"}
        # max_size=10 KiB from the example: a larger message closes with 1009.
        await alice.send("x" * 20000)
        with pytest.raises(ripple.ConnectionClosedError) as info:
            await alice.recv()
        assert info.value.code == 1009
        # bob is unaffected.
        await bob.send(json.dumps({"message": "still here"}))
        assert json.loads(await bob.recv())["user"] == "Anonymous"
        await bob.close()


async def test_process_request_example(tmp_path: Path) -> None:
    port = free_port()
    uri = f"ws://127.0.0.1:{port}/"
    async with run_example("process_request.py", tmp_path, {"8765": str(port)}), bounded(10):
        with pytest.raises(ripple.InvalidStatus) as info:
            await ripple.connect(uri)
        assert info.value.response.status_code == 403
        assert info.value.response.body == b"Invalid API key"
        async with ripple.connect(uri, additional_headers={"X-API-Key": "valid-api-key"}) as ws:
            assert await ws.recv() == "API connection established"
            await ws.send("GET /status")
            assert json.loads(await ws.recv())["status"] == "success"
            await ws.send("DELETE /")
            assert json.loads(await ws.recv()) == {"error": "Unknown command"}


async def test_unix_example(tmp_path: Path) -> None:
    path = str(tmp_path / "ws.sock")
    async with (
        run_example("unix.py", tmp_path, {"/tmp/websocket.sock": path}),
        bounded(10),
        ripple.unix_connect(path) as ws,
    ):
        assert await ws.recv() == "Connected via Unix socket"
        await ws.send("ping")
        assert await ws.recv() == "Unix echo: ping"


async def test_auth_example(tmp_path: Path) -> None:
    port = free_port()
    uri = f"ws://127.0.0.1:{port}/"
    async with run_example("auth.py", tmp_path, {"8765": str(port)}), bounded(10):
        with pytest.raises(ripple.InvalidStatus) as info:
            await ripple.connect(uri)
        response = info.value.response
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="WebSocket", charset="UTF-8"'
        assert response.headers["Server"] == "MyWebSocketServer/1.0"
        with pytest.raises(ripple.InvalidStatus) as info:
            await ripple.connect(f"ws://admin:wrong@127.0.0.1:{port}/")
        assert info.value.response.status_code == 401
        # The header the example prints, sent as is.
        header = {"Authorization": "Basic YWRtaW46c2VjcmV0MTIz"}
        async with ripple.connect(uri, additional_headers=header) as ws:
            assert ws.response_headers["Server"] == "MyWebSocketServer/1.0"
            assert await ws.recv() == "Welcome! You are authenticated."
        async with ripple.connect(f"ws://admin:secret123@127.0.0.1:{port}/") as ws:
            assert await ws.recv() == "Welcome! You are authenticated."
            await ws.send("STATUS")
            assert await ws.recv() == "Server is running normally"
            await ws.send("hi")
            assert await ws.recv() == "Received: hi"


def http_get(url: str) -> tuple[int, str, str]:
    """A plain HTTP client (urllib): status, Content-Type, body."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers["Content-Type"], exc.read().decode()


async def test_page_and_websocket_on_one_port(tmp_path: Path) -> None:
    port = free_port()
    base = f"127.0.0.1:{port}"
    async with run_example("page.py", tmp_path, {"8765": str(port)}), bounded(20):
        status, content_type, body = await asyncio.to_thread(http_get, f"http://{base}/")
        assert status == 200
        assert content_type == "text/html; charset=utf-8"
        assert "new WebSocket(`ws://${location.host}/ws`)" in body
        # What the page's script does, from the page's origin.
        async with ripple.connect(f"ws://{base}/ws", origin=f"http://{base}") as ws:
            await ws.send("hello from the page")
            assert await ws.recv() == "echo: hello from the page"
        # A non-browser client sends no Origin: allowed too.
        async with ripple.connect(f"ws://{base}/ws") as ws:
            await ws.send("plain")
            assert await ws.recv() == "echo: plain"
        # Another site's page may not open it.
        with pytest.raises(ripple.InvalidStatus) as info:
            await ripple.connect(f"ws://{base}/ws", origin="https://evil.example")
        assert info.value.response.status_code == 403
        # Plain HTTP elsewhere: 426 at the endpoint, 404 anywhere else.
        status, _, body = await asyncio.to_thread(http_get, f"http://{base}/ws")
        assert status == 426 and "Upgrade" in body
        status, _, body = await asyncio.to_thread(http_get, f"http://{base}/nothing")
        assert status == 404 and "/ws" in body


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_hub_rooms_example(tmp_path: Path, backend: str) -> None:
    async with AsyncExitStack() as stack:
        args: tuple[str, ...] = ()
        if backend == "redis":
            redis = RedisServer(redis_server_path(), free_port())  # skips without redis-server
            await redis.start()
            stack.push_async_callback(redis.stop)
            args = ("--redis", redis.url)
        port = free_port()
        await stack.enter_async_context(
            run_example("hub_rooms.py", tmp_path, {"8765": str(port)}, args)
        )
        await stack.enter_async_context(bounded(20))
        base = f"ws://127.0.0.1:{port}"

        async def join(path: str) -> tuple[ripple.ClientConnection, dict[str, Any]]:
            ws = await ripple.connect(base + path)
            stack.push_async_callback(ws.close)
            welcome = json.loads(await ws.recv())
            assert welcome["type"] == "welcome", welcome
            return ws, welcome

        async def entry(ws: ripple.ClientConnection) -> tuple[str, int, str]:
            got = json.loads(await ws.recv())
            assert got["type"] == "entry", got
            return got["topic"], got["id"], got["data"]

        alice, hello = await join("/kitchen")
        assert (hello["room"], hello["last_id"], hello["gap"], hello["entries"]) == (
            "kitchen",
            0,
            False,
            [],
        )
        bob, hello_bob = await join("/kitchen")
        assert hello_bob["epoch"] == hello["epoch"]
        carol, _ = await join("/garden")

        # One room: both see each message, with the room's next id.
        await alice.send("hi bob")
        assert [await entry(ws) for ws in (alice, bob)] == [("kitchen", 1, "hi bob")] * 2
        await bob.send("hi alice")
        assert [await entry(ws) for ws in (alice, bob)] == [("kitchen", 2, "hi alice")] * 2

        # bob leaves after id 2; alice goes on.
        await bob.close()
        for n, text in ((3, "three"), (4, "four")):
            await alice.send(text)
            assert await entry(alice) == ("kitchen", n, text)

        # The other room saw none of it: its first entry is its own id 1.
        await carol.send("weeding")
        assert await entry(carol) == ("garden", 1, "weeding")

        # bob resumes: the welcome holds exactly what he missed, then he is live.
        bob, back = await join(f"/kitchen?since=2&epoch={hello['epoch']}")
        assert (back["epoch"], back["last_id"], back["gap"]) == (hello["epoch"], 4, False)
        assert back["entries"] == [{"id": 3, "data": "three"}, {"id": 4, "data": "four"}]
        await alice.send("five")
        assert [await entry(ws) for ws in (alice, bob)] == [("kitchen", 5, "five")] * 2

        # Up to date: nothing missed. Another epoch: a gap, and the recent entries.
        _, same = await join(f"/kitchen?since=5&epoch={hello['epoch']}")
        assert (same["last_id"], same["gap"], same["entries"]) == (5, False, [])
        _, other = await join("/kitchen?since=2&epoch=another")
        assert (other["last_id"], other["gap"]) == (5, True)
        assert [e["id"] for e in other["entries"]] == [1, 2, 3, 4, 5]
