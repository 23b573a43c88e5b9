"""The room: who is in it, the ids and times of its events, its history, delivery.

:class:`Room` is the seam the chat server talks to. :class:`LocalRoom` keeps
everything in this process. A hub backend (``hub/``, Redis Streams for many
processes) implements the same five methods: ids come from the stream, the
history is the stream's tail, and each process delivers to its own
connections with a :class:`~ripple.chat.publish.Fanout`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from ..connection import Connection
from ..hub import Backlog, Entry, Hub, HubUnavailable
from . import schema
from .history import History
from .publish import Fanout
from .schema import Event, User

__all__ = ["HubRoom", "LocalRoom", "Room"]

logger = logging.getLogger("ripple.chat")


class Room(ABC):
    """What the chat server needs from a room. Every method keeps this promise:
    each connection in the room gets the events in the order of their ids."""

    @abstractmethod
    async def join(
        self,
        connection: Connection,
        user: User,
        *,
        since: int | None = None,
        epoch: str | None = None,
    ) -> None:
        """Add ``user`` on ``connection``: it gets a welcome first (the users and
        the recent history, or with ``since``, what it missed), then everyone,
        the newcomer included, a ``join``."""

    @abstractmethod
    async def post(self, connection: Connection, text: str) -> Event | None:
        """Publish a chat message from the user on ``connection`` to everyone, and
        remember it. None if that user isn't in the room (any more)."""

    @abstractmethod
    async def leave(self, connection: Connection) -> None:
        """Remove the user on ``connection`` and tell the others (a ``leave``).
        Does nothing if the connection didn't join."""

    @abstractmethod
    def users(self) -> list[User]:
        """Who is in the room, in order of arrival."""

    @abstractmethod
    async def aclose(self) -> None:
        """Stop delivering; the server closes the connections."""

    @property
    def available(self) -> bool:
        """False while the room can't publish (its hub's Redis is down)."""
        return True


class LocalRoom(Room):
    """A room in this process's memory.

    Events are published one at a time (a lock), so their ids reach every
    connection in increasing order whatever the fanout strategy.

    Args:
        fanout: how events reach the connections.
        history: how many chat messages a newcomer gets in its welcome.
        limits: what the welcome tells clients about the server's limits.
        clock: seconds since the Unix epoch, for the events' ``ts``.
    """

    def __init__(
        self,
        fanout: Fanout,
        *,
        history: int = 50,
        limits: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.fanout = fanout
        self.history = History(history)
        self.limits = dict(limits or {})
        #: Names this run of the room: ids increase within an epoch, and a
        #: client that sees a new epoch knows the server restarted.
        self.epoch = secrets.token_hex(8)
        self._clock = clock
        self._next_id = 1
        self._members: dict[Connection, User] = {}
        self._lock = asyncio.Lock()
        self._leaving: set[asyncio.Task[None]] = set()
        fanout.on_drop = self._dropped

    def _dropped(self, connection: Connection) -> None:
        # The fanout gave up on a slow client (maybe while we hold the lock):
        # it leaves now, not when its closing handshake ends.
        task = asyncio.get_running_loop().create_task(self.leave(connection))
        self._leaving.add(task)
        task.add_done_callback(self._leaving.discard)

    def _event(self, kind: str, user: User, text: str | None = None) -> Event:
        event = Event(kind, self._next_id, int(self._clock() * 1000), user, text)
        self._next_id += 1
        return event

    async def _publish(self, event: Event) -> None:
        await self.fanout.publish(schema.dumps(event.as_json()))

    async def join(
        self,
        connection: Connection,
        user: User,
        *,
        since: int | None = None,
        epoch: str | None = None,
    ) -> None:
        # No resuming here: the welcome's history is the recent messages.
        async with self._lock:
            self._members[connection] = user
            welcome = schema.welcome(
                user,
                list(self._members.values()),
                self.history.recent(),
                epoch=self.epoch,
                limits=self.limits,
            )
            await self.fanout.add(connection, welcome)
            await self._publish(self._event("join", user))

    async def post(self, connection: Connection, text: str) -> Event | None:
        async with self._lock:
            user = self._members.get(connection)
            if user is None:
                return None  # dropped as too slow, while its messages still arrive
            event = self._event("message", user, text)
            self.history.append(event)
            await self._publish(event)
        return event

    async def leave(self, connection: Connection) -> None:
        async with self._lock:
            user = self._members.pop(connection, None)
            if user is None:
                return
            self.fanout.remove(connection)
            await self._publish(self._event("leave", user))

    def users(self) -> list[User]:
        return list(self._members.values())

    async def aclose(self) -> None:
        if self._leaving:
            await asyncio.gather(*self._leaving, return_exceptions=True)
        await self.fanout.aclose()


def _is_message(data: str) -> bool:
    return data.startswith('{"type":"message"')


def _render(topic: str, entry: Entry) -> str:
    # The stored event lacks its id, which the hub's backend assigned.
    return f'{{"id":{entry.id},{entry.data[1:]}'


def _reset(topic: str, epoch: str, last_id: int) -> str:
    return schema.resync(epoch, last_id)


class HubRoom(Room):
    """A room on a :class:`~ripple.hub.Hub`: one topic of its backend.

    Ids, history and delivery come from the hub: with the memory backend
    they stay in this process; with the redis backend every process serving
    the room shares them (a Redis Stream), and the users are the room's
    presence entries, which expire when their process stops refreshing them
    (one surviving process then says they left).

    Every event is stored as its JSON without the id; the hub renders the
    id in once per event. A client that joins with ``since`` (the last id it
    saw, and its ``epoch``) gets what it missed in its welcome's history
    (``resumed: true``), or, when that's no longer there, the recent
    messages with ``gap: true``.

    Args:
        hub: the hub; the room sets its ``render`` and ``reset``.
        topic: the hub topic this room is.
        history: chat messages a newcomer (not resuming) gets.
        limits: what the welcome tells clients about the server's limits.
        clock: seconds since the Unix epoch, for the events' ``ts``.
    """

    def __init__(
        self,
        hub: Hub,
        *,
        topic: str = "lobby",
        history: int = 50,
        limits: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(history, bool) or not isinstance(history, int) or history < 0:
            raise ValueError(f"history size must be an int >= 0, got {history!r}")
        self.hub = hub
        hub.render = _render
        hub.reset = _reset
        hub.on_expired.append(self._expired)
        hub.on_drop.append(self._dropped)
        self.topic = topic
        self.history = history
        self.limits = dict(limits or {})
        self._clock = clock
        self._members: dict[Connection, User] = {}
        self._users: dict[str, User] = {}  # the last presence read, by id
        self._started = False
        self._start_lock = asyncio.Lock()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def available(self) -> bool:
        return self.hub.available

    async def _start(self) -> None:
        if not self._started:
            async with self._start_lock:
                if not self._started:
                    await self.hub.start()
                    self._started = True

    def _event(self, kind: str, user: User, text: str | None = None) -> str:
        out: dict[str, Any] = {
            "type": kind,
            "ts": int(self._clock() * 1000),
            "user": user.as_json(),
        }
        if text is not None:
            out["text"] = text
        return schema.dumps(out)

    async def _present_users(self) -> list[User]:
        try:
            table = await self.hub.presence(self.topic)
        except HubUnavailable:
            return list(self._members.values())
        found: list[tuple[int, User]] = []
        for value in table.values():
            try:
                item = json.loads(value)
                found.append((int(item["t"]), User(str(item["id"]), str(item["name"]))))
            except (ValueError, KeyError, TypeError):
                continue
        found.sort(key=lambda pair: pair[0])
        users = [u for _, u in found]
        self._users = {u.id: u for u in users}
        return users

    async def join(
        self,
        connection: Connection,
        user: User,
        *,
        since: int | None = None,
        epoch: str | None = None,
    ) -> None:
        await self._start()
        value = schema.dumps({"id": user.id, "name": user.name, "t": int(self._clock() * 1000)})
        self._members[connection] = user
        try:
            await self.hub.enter(self.topic, user.id, value)
            users = await self._present_users()
            if user not in users:
                users.append(user)

            def first(backlog: Backlog) -> str:
                history = [{"id": e.id, **json.loads(e.data)} for e in backlog.entries]
                extra: dict[str, Any] = {"last_id": backlog.last_id}
                if since is not None:
                    extra["resumed"] = not backlog.gap
                    if backlog.gap:
                        extra["gap"] = True
                return schema.welcome(
                    user, users, history, epoch=backlog.epoch, limits=self.limits, **extra
                )

            await self.hub.subscribe(
                connection,
                self.topic,
                since=since,
                epoch=epoch,
                history=self.history,
                keep=_is_message,
                first=first,
            )
            await self.hub.publish(self.topic, self._event("join", user))
        except BaseException:
            self._members.pop(connection, None)
            await self.hub.unsubscribe(connection, self.topic)
            with contextlib.suppress(HubUnavailable):
                await self.hub.exit(self.topic, user.id)
            raise

    async def post(self, connection: Connection, text: str) -> Event | None:
        user = self._members.get(connection)
        if user is None:
            return None
        ts = int(self._clock() * 1000)
        data = schema.dumps({"type": "message", "ts": ts, "user": user.as_json(), "text": text})
        event_id = await self.hub.publish(self.topic, data)
        return Event("message", event_id, ts, user, text)

    async def leave(self, connection: Connection) -> None:
        user = self._members.pop(connection, None)
        if user is None:
            return
        await self.hub.unsubscribe(connection, self.topic)
        try:
            was_there = await self.hub.exit(self.topic, user.id)
        except HubUnavailable:
            # Its presence expires, and whoever reaps it says it left.
            logger.warning("%s left while the hub is unavailable", user.id)
            return
        if was_there:
            await self._publish_leave(user)

    async def _publish_leave(self, user: User) -> None:
        try:
            await self.hub.publish(self.topic, self._event("leave", user))
        except HubUnavailable:
            logger.warning("couldn't publish that %s left: the hub is unavailable", user.id)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _dropped(self, connection: Connection) -> None:
        # broadcast() closed a slow client: it leaves now, not when its
        # closing handshake ends.
        if connection in self._members:
            self._spawn(self.leave(connection))

    def _expired(self, topic: str, key: str, value: str) -> None:
        # A process stopped refreshing its users (it died): they left.
        if topic != self.topic:
            return
        try:
            item = json.loads(value)
            user = User(str(item["id"]), str(item["name"]))
        except (ValueError, KeyError, TypeError):
            user = User(key, "?")
        self._spawn(self._publish_leave(user))

    def users(self) -> list[User]:
        users = dict(self._users)
        for user in self._members.values():
            users.setdefault(user.id, user)
        return list(users.values())

    async def aclose(self) -> None:
        for connection in list(self._members):
            await self.leave(connection)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.hub.aclose()
