"""The chat on the hub: resuming with the last id (memory and Redis), servers
sharing a room through a real redis-server, a worker SIGKILLed while messages
flow, Redis restarted mid-run, --workers."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import ripple
from aio_helpers import eventually, read_http_response, within
from ripple.chat import ChatConfig
from ripple.exceptions import ConnectionClosed

from .conftest import MakeChat
from .helpers import Client, start_chat_process, start_ripple

pytestmark = pytest.mark.timeout(120)


async def rejoin(chat: Any, name: str, since: int, epoch: str) -> Any:
    client = await chat.client()
    await client.send({"type": "join", "name": name, "since": since, "epoch": epoch})
    return client


async def test_resume_gets_exactly_what_was_missed(hub_url: str, make_chat: MakeChat) -> None:
    url = hub_url
    chat = await make_chat(ChatConfig(hub=url, rate=0))
    alice = await chat.client("alice")
    bob = await chat.client("bob")
    await alice.expect("join")
    assert bob.welcome is not None
    last = (await bob.say("here") or await bob.until("message", text="here"))["id"]
    epoch = bob.welcome["epoch"]
    await bob.close()
    await alice.until("leave", user=bob.me)
    for i in range(5):
        await alice.say(f"m{i}")
    await alice.until("message", text="m4")
    bob2 = await rejoin(chat, "bob", last, epoch)
    welcome = await bob2.expect("welcome")
    assert welcome["resumed"] is True and "gap" not in welcome
    missed = welcome["history"]
    assert [e["id"] for e in missed] == list(range(last + 1, last + 1 + len(missed)))
    assert [e["type"] for e in missed] == ["leave"] + ["message"] * 5
    assert [e["text"] for e in missed[1:]] == [f"m{i}" for i in range(5)]
    assert welcome["last_id"] == missed[-1]["id"]
    joined = await bob2.expect("join")
    assert joined["id"] == welcome["last_id"] + 1
    await alice.say("live")
    live = await bob2.until("message", text="live")
    assert live["id"] == joined["id"] + 1


@pytest.fixture
async def redis_url(redis_server: Any) -> str:
    return str(redis_server.url)


async def test_resume_older_than_retained_is_a_gap(hub_url: str, make_chat: MakeChat) -> None:
    url = hub_url
    chat = await make_chat(ChatConfig(hub=url, rate=0, retain=5, history=3))
    alice = await chat.client("alice")
    assert alice.welcome is not None
    epoch = alice.welcome["epoch"]
    for i in range(200):
        await alice.say(f"m{i}")
    await alice.until("message", text="m199")
    late = await rejoin(chat, "late", 1, epoch)
    welcome = await late.expect("welcome")
    assert welcome["resumed"] is False and welcome["gap"] is True
    assert [e["text"] for e in welcome["history"]] == ["m197", "m198", "m199"]
    bad = await chat.client()
    await bad.send({"type": "join", "name": "x", "since": "7"})
    assert (await bad.expect("error"))["code"] == "bad_resume"


async def test_two_servers_share_a_room_through_redis(redis_url: str, make_chat: MakeChat) -> None:
    a = await make_chat(ChatConfig(hub=redis_url, rate=0))
    b = await make_chat(ChatConfig(hub=redis_url, rate=0))
    alice = await a.client("alice")
    bob = await b.client("bob")
    assert bob.welcome is not None
    assert [u["name"] for u in bob.welcome["users"]] == ["alice", "bob"]
    await alice.until("join", user=bob.me)
    for i in range(30):
        await alice.say(f"a{i}")
    got = [await bob.until("message") for _ in range(30)]
    assert [m["text"] for m in got] == [f"a{i}" for i in range(30)]
    assert [m["id"] for m in got] == sorted(m["id"] for m in got)


async def _healthz(port: int) -> int:
    reader, writer = await within(asyncio.open_connection("127.0.0.1", port))
    writer.write(f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
    status, _, _ = await within(read_http_response(reader))
    writer.close()
    return int(status)


async def test_redis_restarted_mid_run(redis_server: Any, make_chat: MakeChat) -> None:
    chat = await make_chat(ChatConfig(hub=redis_server.url, rate=0))
    alice = await chat.client("alice")
    await alice.say("before")
    await alice.until("message", text="before")
    assert await _healthz(chat.port) == 200

    await redis_server.stop()
    # The sender is told; nothing is dropped silently.
    await alice.say("lost")
    error = await alice.expect("error", 15)
    assert error["code"] == "unavailable", error
    await eventually(lambda: not chat.chat.room.available, 10)
    assert await _healthz(chat.port) == 503
    # Local clients are still served: the page, the connection.
    assert alice.ws.state is ripple.State.OPEN

    await redis_server.start()
    await eventually(lambda: chat.chat.room.available, 15)
    assert await _healthz(chat.port) == 200
    await alice.say("after")
    # Redis came back empty: the room's ids start over, and the client is told.
    resync = await alice.until("resync", 10)
    assert resync["last_id"] == 0
    after = await alice.until("message", 10, text="after")
    assert after["id"] == 1


class Resilient:
    """A chat client that reconnects to the next URL with its last id, and
    checks that the ids it gets are contiguous: no gap, no duplicate."""

    def __init__(self, name: str, urls: list[str], start: int) -> None:
        self.name = name
        self.urls = urls
        self.index = start
        self.ws: ripple.ClientConnection | None = None
        self.joined = asyncio.Event()
        self.epoch: str | None = None
        self.last_id = 0
        self.first_last_id: int | None = None
        self.messages: list[tuple[int, str]] = []
        self.problems: list[str] = []
        self.reconnects = 0

    def take(self, event: dict[str, Any]) -> None:
        if event["id"] != self.last_id + 1:
            self.problems.append(f"{self.name}: got {event['id']} after {self.last_id}")
        self.last_id = max(self.last_id, event["id"])
        if event["type"] == "message":
            self.messages.append((event["id"], event["text"]))

    async def run(self) -> None:
        for _ in range(200):  # bounded: the test cancels it long before
            try:
                ws = await ripple.connect(self.urls[self.index], open_timeout=2)
            except (OSError, asyncio.TimeoutError, ripple.InvalidHandshake):
                self.index = (self.index + 1) % len(self.urls)
                await asyncio.sleep(0.05)
                continue
            join: dict[str, Any] = {"type": "join", "name": self.name}
            if self.epoch is not None:
                join.update(since=self.last_id, epoch=self.epoch)
            try:
                await ws.send(json.dumps(join))
                async for data in ws:
                    msg = json.loads(data)
                    if msg["type"] == "welcome":
                        if self.epoch is None:
                            self.epoch = msg["epoch"]
                            self.last_id = self.first_last_id = msg["last_id"]
                        elif msg.get("resumed") is not True:
                            self.problems.append(f"{self.name}: not resumed: {msg}")
                        else:
                            for event in msg["history"]:
                                self.take(event)
                        self.ws = ws
                        self.joined.set()
                    elif msg["type"] in ("message", "join", "leave"):
                        self.take(msg)
                    elif msg["type"] == "error":
                        pass  # a send to a dying worker: it may not have been published
            except ConnectionClosed:
                pass
            self.ws = None
            self.reconnects += 1
            self.index = (self.index + 1) % len(self.urls)

    async def send_many(self, count: int) -> None:
        for i in range(count):
            ws = self.ws
            if ws is not None:
                with contextlib.suppress(ConnectionClosed):
                    await ws.send(json.dumps({"type": "message", "text": f"{self.name}-{i}"}))
            await asyncio.sleep(0.005)


async def _kill_while_flowing(
    clients: list[Resilient], redis_url: str, kill: Callable[[], Awaitable[list[Resilient]]]
) -> None:
    """Run ``clients``, kill a worker (``kill`` says whose clients it had) while
    they all send, then check every client has every message exactly once, in
    order, and that the killed worker's clients came back."""
    from redis.asyncio import Redis

    loop = asyncio.get_running_loop()
    tasks = [loop.create_task(c.run()) for c in clients]
    redis = Redis.from_url(redis_url, decode_responses=True)
    try:
        for client, task in zip(clients, tasks, strict=True):
            await within(
                asyncio.wait(
                    [task, loop.create_task(client.joined.wait())],
                    return_when=asyncio.FIRST_COMPLETED,
                ),
                10,
            )
            if task.done():
                task.result()
        senders = asyncio.gather(*(c.send_many(60) for c in clients))
        await asyncio.sleep(0.2)
        orphans = await kill()
        assert orphans, "the killed worker had no clients"
        await within(senders, 30)

        async def stream() -> list[dict[str, Any]]:
            items = await redis.xrange("ripple:{lobby}:s", "-", "+")
            return [{"id": int(i.split("-")[0]), **json.loads(f["d"])} for i, f in items]

        async def settled() -> None:
            while True:
                events = await stream()
                last = events[-1]["id"]
                if all(c.last_id == last for c in clients):
                    return
                await asyncio.sleep(0.05)

        await within(settled(), 20)
        events = await stream()
        for client in clients:
            assert client.problems == [], client.problems
            assert client.first_last_id is not None
            expected = [
                (e["id"], e["text"])
                for e in events
                if e["type"] == "message" and e["id"] > client.first_last_id
            ]
            assert client.messages == expected, client.name
        # Every client of the killed worker resumed elsewhere.
        assert all(c.reconnects >= 1 for c in orphans), [c.name for c in orphans]
        assert len(events) > 100
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await redis.aclose()


async def test_server_sigkilled_clients_resume_on_another(redis_url: str) -> None:
    a, url_a = await start_chat_process("--redis", redis_url, "--rate", "0")
    b, url_b = await start_chat_process("--redis", redis_url, "--rate", "0")
    ws_a, ws_b = (u.replace("http://", "ws://") + "ws" for u in (url_a, url_b))
    clients = [Resilient(f"c{i}", [ws_a, ws_b], 0 if i < 4 else 1) for i in range(6)]

    async def kill() -> list[Resilient]:
        a.proc.send_signal(signal.SIGKILL)
        await within(a.proc.wait(), 10)
        return clients[:4]

    try:
        await _kill_while_flowing(clients, redis_url, kill)
    finally:
        await a.kill()
        await b.stop()


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _socket_owners(pids: list[int]) -> dict[int, int]:
    """{socket inode: pid} for the sockets the processes ``pids`` hold."""
    owners = {}
    for pid in pids:
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("socket:["):
                    owners[int(target[8:-1])] = pid
    return owners


def _server_side_inode(port: int, client_port: int) -> int | None:
    """The inode of the server's end of the loopback connection from ``client_port``."""
    want_local, want_remote = f"0100007F:{port:04X}", f"0100007F:{client_port:04X}"
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if fields[1] == want_local and fields[2] == want_remote:
                return int(fields[9])
    return None


async def test_workers_child_sigkilled_clients_resume_on_another(redis_url: str) -> None:
    proc, page = await start_chat_process("--redis", redis_url, "--workers", "2", "--rate", "0")
    url = page.replace("http://", "ws://") + "ws"
    port = int(page.rstrip("/").rsplit(":", 1)[1])
    clients = [Resilient(f"c{i}", [url], 0) for i in range(8)]

    async def kill() -> list[Resilient]:
        # Which worker holds each client's connection: its socket's inode.
        workers = _children(proc.proc.pid)
        assert len(workers) == 2, workers
        owners = _socket_owners(workers)
        by_worker: dict[int, list[Resilient]] = {pid: [] for pid in workers}
        for client in clients:
            assert client.ws is not None
            inode = _server_side_inode(port, client.ws.local_address[1])
            assert inode is not None and inode in owners, client.name
            by_worker[owners[inode]].append(client)
        victim = max(workers, key=lambda pid: len(by_worker[pid]))
        os.kill(victim, signal.SIGKILL)
        return by_worker[victim]

    try:
        await _kill_while_flowing(clients, redis_url, kill)
    finally:
        assert await proc.stop() == 0


async def test_users_of_a_dead_process_leave_when_presence_expires(redis_url: str) -> None:
    args = ("--redis", redis_url, "--rate", "0", "--presence-ttl", "1")
    a, url_a = await start_chat_process(*args)
    b, url_b = await start_chat_process(*args)
    ws_a, ws_b = (u.replace("http://", "ws://") + "ws" for u in (url_a, url_b))
    try:
        alice = Client(await within(ripple.connect(ws_a)))
        await alice.join("alice")
        bob = Client(await within(ripple.connect(ws_b)))
        welcome = await bob.join("bob")
        assert sorted(u["name"] for u in welcome["users"]) == ["alice", "bob"]
        a.proc.send_signal(signal.SIGKILL)  # no leave, no unsubscribe: it just dies
        await within(a.proc.wait(), 10)
        # The survivor reaps the entry that's no longer refreshed and says so.
        left = await bob.until("leave", 15)
        assert left["user"] == alice.me
        carol = Client(await within(ripple.connect(ws_b)))
        welcome = await carol.join("carol")
        assert sorted(u["name"] for u in welcome["users"]) == ["bob", "carol"]
        await bob.close()
        await carol.close()
    finally:
        await a.kill()
        await b.stop()


async def test_workers_need_redis_and_share_a_port(redis_url: str) -> None:
    refused = await start_ripple("chat", "--workers", "2", first_line=False)
    assert await within(refused.proc.wait(), 20) == 2
    err = await refused.stderr()
    assert "--redis" in err, err
    proc, page = await start_chat_process("--redis", redis_url, "--workers", "2", "--rate", "0")
    try:
        assert "workers: 2" in proc.first_line, proc.first_line
        ws = page.replace("http://", "ws://") + "ws"
        first = await within(ripple.connect(ws))
        second = await within(ripple.connect(ws))
        for client, name in ((first, "x"), (second, "y")):
            await client.send(json.dumps({"type": "join", "name": name}))
        await first.send(json.dumps({"type": "message", "text": "hi"}))

        async def until_hi(conn: ripple.ClientConnection) -> None:
            async for data in conn:
                if json.loads(data).get("text") == "hi":
                    return

        await within(asyncio.gather(until_hi(first), until_hi(second)), 10)
        await first.close()
        await second.close()
    finally:
        assert await proc.stop() == 0


async def test_a_burst_of_joins_on_redis_waits_for_connections(
    redis_url: str, make_chat: MakeChat
) -> None:
    # Far more joins at once than Redis connections (32; redis-py's own pool
    # used to raise past 100): each waits its turn, none is refused.
    chat = await make_chat(ChatConfig(hub=redis_url, rate=0))
    url = f"ws://127.0.0.1:{chat.port}/ws"

    async def join(i: int) -> tuple[ripple.ClientConnection, dict[str, Any]]:
        ws = await ripple.connect(url, max_queue=None)
        await ws.send(json.dumps({"type": "join", "name": f"u{i}"}))
        while True:
            msg = json.loads(await ws.recv())
            if msg["type"] in ("welcome", "error"):
                return ws, msg

    joined = await within(asyncio.gather(*(join(i) for i in range(250))), 60)
    assert [m for _, m in joined if m["type"] != "welcome"] == []
    first = joined[0][0]
    await first.send(json.dumps({"type": "message", "text": "all here?"}))

    async def hears(ws: ripple.ClientConnection) -> None:
        while json.loads(await ws.recv()).get("text") != "all here?":
            pass

    await within(asyncio.gather(*(hears(ws) for ws, _ in joined)), 30)
    assert chat.chat.room.available
    await asyncio.gather(*(ws.close() for ws, _ in joined))
