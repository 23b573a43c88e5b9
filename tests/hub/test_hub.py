"""The Hub on both backends: order, ids, resume, gaps, presence; Redis shared by
hubs (as by processes), and Redis lost and back. Real redis-server, loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

import ripple
from aio_helpers import eventually, within
from ripple.hub import Hub, HubUnavailable, MemoryBackend, make_backend

from .redis_server import RedisServer, free_port, redis_server_path

pytestmark = pytest.mark.timeout(60)


class Served:
    """A ripple server whose handler subscribes each connection to the topic in
    its path (``/topic?since=N&epoch=E``) on ``hub``."""

    def __init__(self, hub: Hub, server: ripple.Server) -> None:
        self.hub = hub
        self.server = server
        self.port = int(next(iter(server.sockets)).getsockname()[1])

    async def client(self, topic: str, **query: Any) -> Reader:
        qs = "&".join(f"{k}={v}" for k, v in query.items())
        url = f"ws://127.0.0.1:{self.port}/{topic}" + (f"?{qs}" if qs else "")
        before = len(self.hub.subscribers(topic))
        ws = await within(ripple.connect(url))
        reader = Reader(ws)
        # A subscriber without ``since`` gets what's published once it's live.
        await eventually(lambda: len(self.hub.subscribers(topic)) > before)
        return reader


class Reader:
    def __init__(self, ws: ripple.ClientConnection) -> None:
        self.ws = ws

    async def recv(self, seconds: float = 5.0) -> dict[str, Any]:
        data = await within(self.ws.recv(), seconds)
        msg = json.loads(data)
        assert isinstance(msg, dict)
        return msg

    async def entries(self, n: int) -> list[tuple[int, str]]:
        out = []
        for _ in range(n):
            msg = await self.recv()
            assert msg["type"] == "entry", msg
            out.append((msg["id"], msg["data"]))
        return out


async def serve_hub(hub: Hub) -> Served:
    await hub.start()

    async def handler(ws: ripple.ServerConnection) -> None:
        assert ws.request is not None
        parts = urlsplit(ws.request.path)
        topic = parts.path.lstrip("/")
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        since = int(query["since"]) if "since" in query else None
        await hub.subscribe(
            ws, topic, since=since, epoch=query.get("epoch"), history=int(query.get("h", 0))
        )
        try:
            await ws.wait_closed()
        finally:
            await hub.unsubscribe(ws, topic)

    server = await within(ripple.serve(handler, "127.0.0.1", 0))
    return Served(hub, server)


class MakeHub:
    """``await make_hub(maxlen=...)``; ``make_hub.redis`` is the redis-server, if any."""

    def __init__(self, make: Callable[..., Awaitable[Served]], redis: RedisServer | None) -> None:
        self.make = make
        self.redis = redis

    async def __call__(self, maxlen: int = 1000, **kwargs: Any) -> Served:
        return await self.make(maxlen, **kwargs)


async def hub_maker(kind: str) -> AsyncIterator[MakeHub]:
    made: list[Served] = []
    redis: RedisServer | None = None
    url: str | None = None
    if kind == "redis":
        redis = RedisServer(redis_server_path(), free_port())
        await redis.start()
        url = redis.url
    memory: MemoryBackend | None = None

    async def make(maxlen: int = 1000, **kwargs: Any) -> Served:
        nonlocal memory
        if url is None:
            # Memory hubs can't share a backend across processes; in one
            # process, every hub made here is the same one.
            if memory is None:
                memory = MemoryBackend(maxlen=maxlen)
                hub = Hub(memory, **kwargs)
                made.append(await serve_hub(hub))
            return made[0]
        hub = Hub(make_backend(url, maxlen=maxlen, block=0.5), **kwargs)
        served = await serve_hub(hub)
        made.append(served)
        return served

    try:
        yield MakeHub(make, redis)
    finally:
        try:
            for served in made:
                served.server.close()
                await within(served.server.wait_closed(), 10)
                await within(served.hub.aclose(), 10)
        finally:
            if redis is not None:
                await redis.stop()


@pytest.fixture(params=["memory", "redis"])
async def make_hub(request: pytest.FixtureRequest) -> AsyncIterator[MakeHub]:
    async for maker in hub_maker(request.param):
        yield maker


@pytest.fixture
async def make_redis_hub() -> AsyncIterator[MakeHub]:
    async for maker in hub_maker("redis"):
        yield maker


async def test_publish_reaches_subscribers_in_order_with_ids(make_hub: MakeHub) -> None:
    a = await make_hub()
    one, two = await a.client("room"), await a.client("room")
    other = await a.client("elsewhere")
    ids = [await a.hub.publish("room", f"m{i}") for i in range(50)]
    assert ids == list(range(1, 51))
    expected = [(i, f"m{i - 1}") for i in ids]
    assert await one.entries(50) == expected
    assert await two.entries(50) == expected
    await a.hub.publish("elsewhere", "x")
    assert await other.entries(1) == [(1, "x")]


async def test_two_hubs_share_a_topic_through_redis(make_hub: MakeHub) -> None:
    # Memory: both are the same hub (one process); redis: two hubs, one Redis.
    a, b = await make_hub(), await make_hub()
    on_a, on_b = await a.client("room"), await b.client("room")
    published = []
    for i in range(40):
        hub = a.hub if i % 2 else b.hub
        published.append((await hub.publish("room", f"m{i}"), f"m{i}"))
    assert await on_a.entries(40) == published
    assert await on_b.entries(40) == published


async def test_resume_gets_exactly_what_was_missed_then_live(make_hub: MakeHub) -> None:
    a = await make_hub()
    for i in range(10):
        await a.hub.publish("room", f"m{i}")
    again = await a.client("room", since=6)
    assert await again.entries(4) == [(7, "m6"), (8, "m7"), (9, "m8"), (10, "m9")]
    await a.hub.publish("room", "live")
    assert await again.entries(1) == [(11, "live")]
    # Up to date: nothing to replay.
    current = await a.client("room", since=11)
    await a.hub.publish("room", "next")
    assert await current.entries(1) == [(12, "next")]


async def test_resume_while_publishing_has_no_gap_and_no_duplicate(make_hub: MakeHub) -> None:
    a = await make_hub()
    for i in range(20):
        await a.hub.publish("room", f"m{i}")

    async def flood() -> None:
        for i in range(20, 200):
            await a.hub.publish("room", f"m{i}")
            if i % 10 == 0:
                await asyncio.sleep(0)

    task = asyncio.get_running_loop().create_task(flood())
    readers = [await a.client("room", since=s) for s in (0, 5, 20)]
    await within(task)
    for since, reader in zip((0, 5, 20), readers, strict=True):
        got = await reader.entries(200 - since)
        assert [i for i, _ in got] == list(range(since + 1, 201))


async def test_resume_older_than_history_is_told_as_a_gap(make_hub: MakeHub) -> None:
    a = await make_hub(maxlen=5)
    for i in range(200):
        await a.hub.publish("room", f"m{i}")
    late = await a.client("room", since=3, h=2)
    gap = await late.recv()
    assert gap["type"] == "resync" and gap["last_id"] == 200, gap
    # Then the recent history, then live.
    assert await late.entries(2) == [(199, "m198"), (200, "m199")]
    await a.hub.publish("room", "live")
    assert await late.entries(1) == [(201, "live")]


async def test_resume_from_another_epoch_is_a_gap(make_hub: MakeHub) -> None:
    a = await make_hub()
    await a.hub.publish("room", "m")
    stale = await a.client("room", since=1, epoch="not-this-one")
    assert (await stale.recv())["type"] == "resync"


async def test_presence_expires_when_its_process_stops_refreshing(
    redis_server: RedisServer,
) -> None:
    url = redis_server.url
    dying = Hub(make_backend(url), presence_ttl=0.3)
    alive = Hub(make_backend(url), presence_ttl=0.3)
    expired: list[tuple[str, str, str]] = []
    alive.on_expired.append(lambda *args: expired.append(args))
    seen_by_dying: list[tuple[str, str, str]] = []
    dying.on_expired.append(lambda *args: seen_by_dying.append(args))
    try:
        await dying.start()
        await alive.start()
        await dying.enter("room", "u1", "alice")
        await alive.enter("room", "u2", "bob")
        assert await alive.presence("room") == {"u1": "alice", "u2": "bob"}
        # The dying process stops refreshing (as if SIGKILLed).
        assert dying._refresher is not None
        dying._refresher.cancel()
        await eventually(lambda: bool(expired), 5)
        assert expired == [("room", "u1", "alice")]
        assert await alive.presence("room") == {"u2": "bob"}
        await asyncio.sleep(0.3)
        assert expired == [("room", "u1", "alice")] and seen_by_dying == []
        assert await alive.exit("room", "u2") is True
        assert await alive.exit("room", "u2") is False
    finally:
        await within(dying.aclose())
        await within(alive.aclose())


async def test_memory_presence_and_history_bounds() -> None:
    now = [0.0]
    backend = MemoryBackend(maxlen=3, clock=lambda: now[0])
    for i in range(5):
        await backend.publish("t", str(i))
    recent = await backend.recent("t", 10)
    assert [e.id for e in recent.entries] == [3, 4, 5] and recent.last_id == 5
    assert (await backend.since("t", 1, None)).gap
    assert [e.id for e in (await backend.since("t", 2, None)).entries] == [3, 4, 5]
    assert (await backend.since("t", 9, None)).gap
    assert (await backend.recent("t", 2, keep=lambda d: d != "4")).entries[0].data == "2"
    await backend.present("t", "k", "v", 1.0)
    assert await backend.presence("t") == {"k": "v"}
    now[0] = 2.0
    assert await backend.presence("t") == {}
    assert await backend.expired("t") == {"k": "v"}
    assert await backend.expired("t") == {}
    with pytest.raises(ValueError):
        MemoryBackend(maxlen=0)
    with pytest.raises(ValueError):
        make_backend("http://nope")


async def test_redis_lost_and_back(make_redis_hub: MakeHub) -> None:
    redis_server = make_redis_hub.redis
    assert redis_server is not None
    a = await make_redis_hub()
    statuses: list[bool] = []
    a.hub.on_status.append(statuses.append)
    local = await a.client("room")
    await a.hub.publish("room", "before")
    assert await local.entries(1) == [(1, "before")]

    await redis_server.stop()
    # Publishing is an error to the publisher, not a silent drop.
    with pytest.raises(HubUnavailable):
        await within(a.hub.publish("room", "lost"), 10)
    await eventually(lambda: statuses == [False], 10)
    assert not a.hub.available
    # Local subscribers stay connected while Redis is away.
    assert not local.ws.closed

    await redis_server.start()
    await eventually(lambda: statuses == [False, True], 15)
    # Redis came back empty (no persistence): a new epoch, told to subscribers.
    new_id = await within(a.hub.publish("room", "after"))
    assert new_id == 1
    reset = await local.recv(10)
    assert reset["type"] == "resync" and reset["last_id"] == 0, reset
    assert await local.entries(1) == [(1, "after")]


class StartsOver(MemoryBackend):
    """A memory backend whose store loses a topic (as Redis restarted empty
    does) while a subscriber reads its backlog, and gets two new entries in
    the new epoch before that read returns."""

    armed = False

    async def recent(self, topic: str, count: int, keep: Any = None) -> Any:
        if self.armed:
            self.armed = False
            del self._logs[topic]  # a new log: a new epoch, ids from 1
            await self.publish(topic, "x1")
            await self.publish(topic, "x2")
        return await super().recent(topic, count, keep)


async def test_new_epoch_while_reading_the_backlog_sends_nothing_twice() -> None:
    backend = StartsOver()
    served = await serve_hub(Hub(backend))
    try:
        first = await served.client("room")
        await served.hub.publish("room", "old")
        assert await first.entries(1) == [(1, "old")]
        backend.armed = True
        second = await served.client("room", h=10)
        await served.hub.publish("room", "x3")
        # The backlog is already in the new epoch: no reset, no entry twice.
        assert await second.entries(3) == [(1, "x1"), (2, "x2"), (3, "x3")]
        # The live subscriber is told the ids start over, then gets them once.
        reset = await first.recv()
        assert reset["type"] == "resync" and reset["last_id"] == 0, reset
        assert await first.entries(3) == [(1, "x1"), (2, "x2"), (3, "x3")]
    finally:
        served.server.close()
        await within(served.server.wait_closed(), 10)
        await within(served.hub.aclose(), 10)


@pytest.mark.parametrize("ttl", [0, -1.0, float("inf"), float("nan"), "15"])
def test_presence_ttl_must_be_positive(ttl: Any) -> None:
    with pytest.raises(ValueError, match="presence_ttl must be > 0 seconds"):
        Hub(MemoryBackend(), presence_ttl=ttl)


@pytest.mark.parametrize("bad", [0, -3, True, 2.5])
def test_redis_max_connections_must_be_a_positive_int(bad: Any) -> None:
    with pytest.raises(ValueError, match="max_connections must be an int >= 1"):
        make_backend("redis://127.0.0.1:1/0", max_connections=bad)
