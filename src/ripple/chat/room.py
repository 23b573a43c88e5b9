"""The room: who is in it, the ids and times of its events, its history, delivery.

:class:`Room` is the seam the chat server talks to. :class:`LocalRoom` keeps
everything in this process. A hub backend (``hub/``, Redis Streams for many
processes) implements the same five methods: ids come from the stream, the
history is the stream's tail, and each process delivers to its own
connections with a :class:`~ripple.chat.publish.Fanout`.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import Any

from ..connection import Connection
from . import schema
from .history import History
from .publish import Fanout
from .schema import Event, User

__all__ = ["LocalRoom", "Room"]


class Room(ABC):
    """What the chat server needs from a room. Every method keeps this promise:
    each connection in the room gets the events in the order of their ids."""

    @abstractmethod
    async def join(self, connection: Connection, user: User) -> None:
        """Add ``user`` on ``connection``: it gets a welcome first (the users and
        the recent history), then everyone, the newcomer included, a ``join``."""

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

    async def join(self, connection: Connection, user: User) -> None:
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
