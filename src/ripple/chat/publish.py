"""Publishing: one serialized event to every connection of this process.

Four strategies, chosen with ``ripple chat --publish``:

- ``sequential``: ``await`` each ``send`` in turn (the course's first way).
- ``gather``: start every ``send`` at once and ``await asyncio.gather`` them all.
- ``tasks``: fire and forget. Instead of one ``create_task`` per send, which
  promises nothing about the order in which the tasks' sends happen (a task
  waiting for a slow client's buffer can resume after a later one), every
  connection has one queue and one task that sends from it. ``publish``
  appends to every queue without waiting, so each connection gets the
  events in the order they were published.
- ``broadcast``: ripple's :func:`ripple.broadcast`, which encodes the frame
  once and writes the same bytes to every connection without waiting.

Whatever the strategy, :class:`~ripple.chat.room.LocalRoom` publishes one
event at a time, so every connection gets the events in the order of their
ids: per-sender order follows.

A client that can't keep up is disconnected (close code 1013, as
``broadcast()`` does) rather than allowed to slow the room down or fill the
server's memory: with ``sequential`` and ``gather``, when a send waits more
than ``send_timeout`` seconds for its buffer to drain; with ``tasks``, when
over ``max_backlog`` characters wait in its queue; with ``broadcast``, when
``broadcast()`` finds over ``serve(broadcast_limit=...)`` bytes in its write
buffer (the chat sets that limit to ``max_backlog``).
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable

from ..broadcast import OVERFLOW_CODE, BroadcastOverflow, broadcast
from ..connection import Connection
from ..exceptions import ConnectionClosed

__all__ = ["PUBLISH_STRATEGIES", "Fanout", "make_fanout"]

#: The values of ``--publish``; the default is ``broadcast``.
PUBLISH_STRATEGIES = ("sequential", "gather", "tasks", "broadcast")

#: Close code and reason for a client dropped for being too slow: 1013 "Try
#: Again Later", like broadcast() (reconnect with backoff, then catch up).
SLOW_CODE = OVERFLOW_CODE
SLOW_REASON = "too slow: fell behind the chat"

logger = logging.getLogger("ripple.chat")


class Fanout(ABC):
    """Delivers messages to a set of connections, in the order published.

    Args:
        send_timeout: seconds a send may wait for a slow client (sequential
            and gather); None waits forever.
        max_backlog: characters or bytes a client may fall behind by (tasks
            and broadcast) before it is disconnected.
    """

    name = ""

    def __init__(self, *, send_timeout: float | None = 10.0, max_backlog: int = 2**20) -> None:
        self.send_timeout = send_timeout
        self.max_backlog = max_backlog
        #: Called with each connection dropped for being slow, right away:
        #: the room needn't wait for the closing handshake to say it left.
        self.on_drop: Callable[[Connection], None] | None = None
        self._dropping: set[asyncio.Task[None]] = set()

    @property
    @abstractmethod
    def connections(self) -> Iterable[Connection]:
        """The connections messages go to."""

    @abstractmethod
    async def add(self, connection: Connection, first: str) -> None:
        """Deliver to ``connection`` from now on, ``first`` before anything else."""

    @abstractmethod
    def remove(self, connection: Connection) -> None:
        """Stop delivering to ``connection`` (no error if it isn't there)."""

    @abstractmethod
    async def publish(self, message: str) -> None:
        """Deliver ``message`` to every connection."""

    async def aclose(self) -> None:
        """Stop delivering; connections are left to the server to close."""
        for connection in list(self.connections):
            self.remove(connection)
        for task in list(self._dropping):
            task.cancel()
        if self._dropping:
            await asyncio.gather(*self._dropping, return_exceptions=True)

    def _drop(self, connection: Connection, why: str, *, close: bool = True) -> None:
        # Disconnect a client that can't keep up (unless that's done already),
        # and tell the room, which shouldn't wait for the closing handshake.
        self.remove(connection)
        logger.info("dropping client %s (%s): %s", connection.id, connection.remote_address, why)
        if self.on_drop is not None:
            self.on_drop(connection)
        if close:
            task = asyncio.get_running_loop().create_task(connection.close(SLOW_CODE, SLOW_REASON))
            self._dropping.add(task)
            task.add_done_callback(self._dropping.discard)


class _AwaitingFanout(Fanout):
    """The strategies that wait for sends: sequential and gather."""

    def __init__(self, *, send_timeout: float | None = 10.0, max_backlog: int = 2**20) -> None:
        super().__init__(send_timeout=send_timeout, max_backlog=max_backlog)
        self._connections: dict[Connection, None] = {}  # insertion-ordered set

    @property
    def connections(self) -> Iterable[Connection]:
        return self._connections.keys()

    async def add(self, connection: Connection, first: str) -> None:
        self._connections[connection] = None
        await self._send(connection, first)

    def remove(self, connection: Connection) -> None:
        self._connections.pop(connection, None)

    async def _send(self, connection: Connection, message: str) -> None:
        try:
            if self.send_timeout is None:
                await connection.send(message)
            else:
                await asyncio.wait_for(connection.send(message), self.send_timeout)
        except ConnectionClosed:
            self.remove(connection)  # its handler is leaving the room
        except asyncio.TimeoutError:
            self._drop(connection, f"a send waited over {self.send_timeout} s")


class SequentialFanout(_AwaitingFanout):
    """``await`` each send, one connection after the other."""

    name = "sequential"

    async def publish(self, message: str) -> None:
        for connection in list(self._connections):
            await self._send(connection, message)


class GatherFanout(_AwaitingFanout):
    """Start every send, then wait for them all with ``asyncio.gather``."""

    name = "gather"

    async def publish(self, message: str) -> None:
        await asyncio.gather(*(self._send(c, message) for c in list(self._connections)))


class _Outbox:
    """One connection's queue and the task that sends from it, in order."""

    __slots__ = ("backlog", "queue", "task")

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.backlog = 0  # characters queued
        self.task: asyncio.Task[None] | None = None


class TasksFanout(Fanout):
    """Fire and forget, in order: a queue and a sending task per connection."""

    name = "tasks"

    def __init__(self, *, send_timeout: float | None = 10.0, max_backlog: int = 2**20) -> None:
        super().__init__(send_timeout=send_timeout, max_backlog=max_backlog)
        self._outboxes: dict[Connection, _Outbox] = {}

    @property
    def connections(self) -> Iterable[Connection]:
        return self._outboxes.keys()

    async def add(self, connection: Connection, first: str) -> None:
        outbox = _Outbox()
        self._outboxes[connection] = outbox
        self._put(outbox, first)
        outbox.task = asyncio.get_running_loop().create_task(self._sender(connection, outbox))

    def remove(self, connection: Connection) -> None:
        outbox = self._outboxes.pop(connection, None)
        if outbox is not None and outbox.task is not None:
            outbox.task.cancel()

    async def publish(self, message: str) -> None:
        size = len(message)
        for connection, outbox in list(self._outboxes.items()):
            if outbox.backlog + size > self.max_backlog:
                self._drop(connection, f"over {self.max_backlog} characters queued")
            else:
                self._put(outbox, message)

    @staticmethod
    def _put(outbox: _Outbox, message: str) -> None:
        outbox.backlog += len(message)
        outbox.queue.put_nowait(message)

    async def _sender(self, connection: Connection, outbox: _Outbox) -> None:
        try:
            while True:
                message = await outbox.queue.get()
                outbox.backlog -= len(message)
                await connection.send(message)
        except ConnectionClosed:
            if self._outboxes.get(connection) is outbox:
                del self._outboxes[connection]
        except Exception:
            logger.exception("sending to %s failed", connection.id)
            if self._outboxes.get(connection) is outbox:
                del self._outboxes[connection]
                await connection.close(1011, "internal error")


class BroadcastFanout(Fanout):
    """ripple's ``broadcast()``: encode once, write to every connection, don't wait.

    ``broadcast()`` itself closes a connection whose write buffer is over the
    server's ``broadcast_limit`` (1013); this fanout hears of it through
    ``raise_exceptions=True`` and lets the room know at once.
    """

    name = "broadcast"

    def __init__(self, *, send_timeout: float | None = 10.0, max_backlog: int = 2**20) -> None:
        super().__init__(send_timeout=send_timeout, max_backlog=max_backlog)
        self._connections: dict[Connection, None] = {}

    @property
    def connections(self) -> Iterable[Connection]:
        return self._connections.keys()

    async def add(self, connection: Connection, first: str) -> None:
        self._connections[connection] = None
        broadcast((connection,), first)

    def remove(self, connection: Connection) -> None:
        self._connections.pop(connection, None)

    async def publish(self, message: str) -> None:
        try:
            broadcast(self._connections, message, raise_exceptions=True)
        except Exception as group:  # ExceptionGroup; ripple's stand-in on 3.10
            failures = getattr(group, "exceptions", None)
            if failures is None:
                raise
            for exc in failures:
                if isinstance(exc, BroadcastOverflow):
                    self._drop(exc.connection, str(exc), close=not exc.closed)
                # Others are connections closing: their handlers leave the room.


_STRATEGIES: dict[str, type[Fanout]] = {
    f.name: f for f in (SequentialFanout, GatherFanout, TasksFanout, BroadcastFanout)
}


def make_fanout(
    strategy: str, *, send_timeout: float | None = 10.0, max_backlog: int = 2**20
) -> Fanout:
    """The Fanout for a ``--publish`` value.

    Raises:
        ValueError: ``strategy`` isn't one of PUBLISH_STRATEGIES.
    """
    try:
        cls = _STRATEGIES[strategy]
    except KeyError:
        raise ValueError(
            f"publish strategy must be one of {', '.join(PUBLISH_STRATEGIES)}; got {strategy!r}"
        ) from None
    return cls(send_timeout=send_timeout, max_backlog=max_backlog)
