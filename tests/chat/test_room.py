"""LocalRoom with a recording fanout: what goes where, in which order."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from aio_helpers import eventually
from ripple.chat import Fanout, LocalRoom, User
from ripple.connection import Connection

from .helpers import FakeClock


class Recording(Fanout):
    """Delivers into lists, one per connection (any hashable stands for one)."""

    name = "recording"

    def __init__(self) -> None:
        super().__init__()
        self.inbox: dict[Any, list[dict[str, Any]]] = {}

    @property
    def connections(self) -> Iterable[Connection]:
        return self.inbox.keys()

    async def add(self, connection: Connection, first: str) -> None:
        self.inbox[connection] = [json.loads(first)]

    def remove(self, connection: Connection) -> None:
        self.inbox.pop(connection, None)

    async def publish(self, message: str) -> None:
        for box in self.inbox.values():
            box.append(json.loads(message))

    def drop(self, connection: Any) -> None:
        # What a strategy does with a slow client, minus the closing.
        self.remove(connection)
        assert self.on_drop is not None
        self.on_drop(connection)


def kinds(box: list[dict[str, Any]]) -> list[str]:
    return [m["type"] for m in box]


async def test_room_events_ids_history_and_leaving() -> None:
    fanout = Recording()
    clock = FakeClock(1000.0)
    room = LocalRoom(fanout, history=2, limits={"x": 1}, clock=clock)
    a: Any = object()
    b: Any = object()
    alice, bob = User("a", "alice"), User("b", "bob")

    await room.join(a, alice)
    assert kinds(fanout.inbox[a]) == ["welcome", "join"]
    welcome = fanout.inbox[a][0]
    assert welcome["limits"] == {"x": 1} and welcome["epoch"] == room.epoch
    for text in ("one", "two", "three"):
        clock.advance(1)
        event = await room.post(a, text)
        assert event is not None and event.ts == int(clock.now * 1000)

    await room.join(b, bob)
    welcome = fanout.inbox[b][0]
    assert [m["text"] for m in welcome["history"]] == ["two", "three"]
    assert welcome["users"] == [{"id": "a", "name": "alice"}, {"id": "b", "name": "bob"}]
    assert room.users() == [alice, bob]

    ids = [m["id"] for m in fanout.inbox[a][1:]]
    assert ids == list(range(1, len(ids) + 1))

    await room.leave(b)
    assert fanout.inbox[a][-1] == {
        "type": "leave",
        "id": ids[-1] + 1,
        "ts": int(clock.now * 1000),
        "user": {"id": "b", "name": "bob"},
    }
    assert b not in fanout.inbox
    assert await room.post(b, "gone") is None  # not in the room: nothing published
    await room.leave(b)  # twice is fine
    assert fanout.inbox[a][-1]["type"] == "leave"


async def test_a_dropped_client_leaves_at_once_and_cant_post() -> None:
    fanout = Recording()
    room = LocalRoom(fanout, clock=FakeClock())
    a: Any = object()
    slow: Any = object()
    await room.join(a, User("a", "alice"))
    await room.join(slow, User("s", "slow"))
    fanout.drop(slow)
    await eventually(lambda: fanout.inbox[a][-1]["type"] == "leave")
    assert fanout.inbox[a][-1]["user"] == {"id": "s", "name": "slow"}
    assert await room.post(slow, "late") is None
    assert room.users() == [User("a", "alice")]
    await room.aclose()
