"""The Hub: topics that connections subscribe to, fed by a backend, fanned out locally."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..broadcast import BroadcastOverflow, broadcast
from ..connection import Connection
from .base import Backend, Backlog, Entry, HubUnavailable
from .memory import MemoryBackend

__all__ = ["Hub", "default_render", "default_reset"]

logger = logging.getLogger("ripple.hub")

#: Builds the frame subscribers get for an entry of a topic.
Render = Callable[[str, Entry], str]
#: Builds the frame that tells subscribers the topic's ids start over (a new
#: epoch), or that a resuming subscriber missed entries (a gap).
Reset = Callable[[str, str, int], str]
#: Builds the first frame a new subscriber gets from what the backend gave.
First = Callable[[Backlog], str]


def default_render(topic: str, entry: Entry) -> str:
    """``{"type": "entry", "topic": ..., "id": ..., "data": ...}``."""
    return json.dumps({"type": "entry", "topic": topic, "id": entry.id, "data": entry.data})


def default_reset(topic: str, epoch: str, last_id: int) -> str:
    """``{"type": "resync", "topic": ..., "epoch": ..., "last_id": ...}``."""
    return json.dumps({"type": "resync", "topic": topic, "epoch": epoch, "last_id": last_id})


@dataclass
class _Topic:
    live: dict[Connection, None] = field(default_factory=dict)
    # Subscribing: what arrived meanwhile, as (epoch, id, frame); a frame
    # with id 0 is a reset.
    pending: dict[Connection, list[tuple[str, int, str]]] = field(default_factory=dict)
    # Live connections that already got the entries up to this id.
    floor: dict[Connection, int] = field(default_factory=dict)
    epoch: str | None = None
    watched: bool = False


class Hub:
    """Topics (rooms) of connections, on a backend (memory by default).

    ``publish(topic, data)`` appends to the topic in the backend, which gives
    the entry its id; every process with subscribers to the topic gets the
    entry from the backend and sends it to them with :func:`ripple.broadcast`,
    rendered once. Each subscriber gets the entries of a topic in id order,
    each once.

    Args:
        backend: where topics live; a :class:`MemoryBackend` by default.
        render: the frame for an entry (:func:`default_render`).
        reset: the frame saying ids start over or were missed (:func:`default_reset`).
        presence_ttl: seconds a presence entry lives unless refreshed; this
            process refreshes its own every third of that.

    Raises:
        ValueError: ``presence_ttl`` isn't a positive number of seconds.
    """

    def __init__(
        self,
        backend: Backend | None = None,
        *,
        render: Render = default_render,
        reset: Reset = default_reset,
        presence_ttl: float = 15.0,
    ) -> None:
        self.backend = backend if backend is not None else MemoryBackend()
        self.render = render
        self.reset = reset
        if not (isinstance(presence_ttl, (int, float)) and 0 < presence_ttl < float("inf")):
            raise ValueError(f"presence_ttl must be > 0 seconds, got {presence_ttl!r}")
        self.presence_ttl = presence_ttl
        #: Called with True or False when the backend becomes (un)available.
        self.on_status: list[Callable[[bool], None]] = []
        #: Called with (topic, key, value) for each presence entry that
        #: expired (its process stopped refreshing it); one process hears of each.
        self.on_expired: list[Callable[[str, str, str], None]] = []
        #: Called with each connection broadcast() closed for being too slow
        #: (not those it skipped): its room needn't wait for the closing handshake.
        self.on_drop: list[Callable[[Connection], None]] = []
        self._topics: dict[str, _Topic] = {}
        self._present: dict[tuple[str, str], str] = {}
        self._refresher: asyncio.Task[None] | None = None
        self.backend.on_entries = self._deliver
        self.backend.on_status = self._status

    @property
    def available(self) -> bool:
        """False while the backend can't be reached."""
        return self.backend.available

    async def start(self) -> None:
        """Connect the backend and start refreshing presence."""
        await self.backend.start()
        if self._refresher is None:
            self._refresher = asyncio.get_running_loop().create_task(self._refresh_forever())

    async def aclose(self) -> None:
        """Stop; subscribers are left to their server to close."""
        if self._refresher is not None:
            self._refresher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._refresher
            self._refresher = None
        for topic, key in list(self._present):
            with contextlib.suppress(HubUnavailable):
                await self.backend.absent(topic, key)
        self._present.clear()
        self._topics.clear()
        await self.backend.aclose()

    def _status(self, up: bool) -> None:
        for callback in list(self.on_status):
            try:
                callback(up)
            except Exception:
                logger.exception("hub status callback failed")

    def _send(self, connections: Iterable[Connection], frame: str) -> None:
        try:
            broadcast(connections, frame, raise_exceptions=True)
        except Exception as group:  # ExceptionGroup; ripple's stand-in on 3.10
            failures = getattr(group, "exceptions", None)
            if failures is None:
                raise
            for exc in failures:
                # Others are connections closing: their handlers unsubscribe.
                if isinstance(exc, BroadcastOverflow) and exc.closed:
                    for callback in list(self.on_drop):
                        try:
                            callback(exc.connection)
                        except Exception:
                            logger.exception("hub drop callback failed")

    # -- topics -----------------------------------------------------------------

    async def publish(self, topic: str, data: str) -> int:
        """Publish ``data`` to ``topic``; its id.

        Raises:
            HubUnavailable: the backend can't take it now; nothing was sent.
        """
        return await self.backend.publish(topic, data)

    def subscribers(self, topic: str) -> list[Connection]:
        """The connections subscribed to ``topic`` in this process (those still
        getting their backlog, before ``subscribe`` returns, aren't counted)."""
        state = self._topics.get(topic)
        return [] if state is None else list(state.live)

    def topics(self) -> list[str]:
        """The topics with subscribers in this process."""
        return list(self._topics)

    async def subscribe(
        self,
        connection: Connection,
        topic: str,
        *,
        since: int | None = None,
        epoch: str | None = None,
        history: int = 0,
        keep: Callable[[str], bool] | None = None,
        first: First | None = None,
    ) -> Backlog:
        """Send ``topic``'s entries to ``connection`` from now on.

        Before the live entries it gets, in this order: the frame ``first``
        builds from the backlog (if given; else the backlog's entries, each
        rendered, after a reset frame when there's a gap). The backlog is the
        entries after ``since`` (of ``epoch``) when they're all still there;
        otherwise (or when ``since`` is None) the last ``history`` entries
        that ``keep`` accepts, with ``gap`` set if ``since`` was given.

        Raises:
            HubUnavailable: the backend couldn't be read; not subscribed.
        """
        state = self._topics.get(topic)
        if state is None:
            state = self._topics[topic] = _Topic()
        state.pending[connection] = []
        try:
            if not state.watched:
                watched = await self.backend.watch(topic)
                state.watched = True
                if state.epoch is None:
                    state.epoch = watched.epoch
            backlog: Backlog | None = None
            if since is not None:
                backlog = await self.backend.since(topic, since, epoch)
            if backlog is None or backlog.gap:
                recent = await self.backend.recent(topic, history, keep)
                backlog = Backlog(recent.epoch, recent.last_id, recent.entries, since is not None)
        except BaseException:
            state.pending.pop(connection, None)
            await self._forget(topic, state)
            raise
        if first is not None:
            frames = [first(backlog)]
        else:
            frames = [self.reset(topic, backlog.epoch, backlog.last_id)] if backlog.gap else []
            frames.extend(self.render(topic, e) for e in backlog.entries)
        for frame in frames:
            self._send((connection,), frame)
        floor = backlog.last_id
        current = backlog.epoch
        for entry_epoch, entry_id, frame in state.pending.pop(connection, []):
            if entry_id == 0:  # a reset while we read the backlog
                if entry_epoch != current:
                    self._send((connection,), frame)
                    current, floor = entry_epoch, 0
                # Else the backlog was read in that new epoch already: telling
                # this subscriber ids start over would make it take them twice.
            elif entry_epoch == current and entry_id <= floor:
                continue  # in the backlog already
            else:
                self._send((connection,), frame)
                floor = entry_id
        state.live[connection] = None
        if floor and current == state.epoch:
            state.floor[connection] = floor
        return backlog

    async def unsubscribe(self, connection: Connection, topic: str) -> None:
        """Stop sending ``topic`` to ``connection`` (no error if it wasn't)."""
        state = self._topics.get(topic)
        if state is None:
            return
        state.live.pop(connection, None)
        state.pending.pop(connection, None)
        state.floor.pop(connection, None)
        await self._forget(topic, state)

    async def _forget(self, topic: str, state: _Topic) -> None:
        if state.live or state.pending or self._topics.get(topic) is not state:
            return
        del self._topics[topic]
        if state.watched:
            with contextlib.suppress(HubUnavailable):
                await self.backend.unwatch(topic)

    def _deliver(self, topic: str, epoch: str, entries: list[Entry]) -> None:
        state = self._topics.get(topic)
        if state is None:
            return
        if state.epoch is not None and epoch != state.epoch:
            logger.warning("topic %r starts over in a new epoch: telling its subscribers", topic)
            frame = self.reset(topic, epoch, 0)
            self._send(state.live, frame)
            for buffered in state.pending.values():
                buffered.append((epoch, 0, frame))
            state.floor.clear()
        state.epoch = epoch
        for entry in entries:
            frame = self.render(topic, entry)
            for buffered in state.pending.values():
                buffered.append((epoch, entry.id, frame))
            if state.floor:
                recipients = [c for c in state.live if state.floor.get(c, 0) < entry.id]
                for c in [c for c, f in state.floor.items() if f <= entry.id]:
                    del state.floor[c]
                self._send(recipients, frame)
            else:
                self._send(state.live, frame)

    # -- presence ---------------------------------------------------------------

    async def enter(self, topic: str, key: str, value: str) -> None:
        """Show ``key`` present in ``topic`` (with ``value``) while this process runs.

        Raises:
            HubUnavailable: not recorded in the backend now; it will be at
                the next refresh.
        """
        self._present[(topic, key)] = value
        await self.backend.present(topic, key, value, self.presence_ttl)

    async def exit(self, topic: str, key: str) -> bool:
        """Remove ``key`` from ``topic``'s presence; True if it was there."""
        self._present.pop((topic, key), None)
        return await self.backend.absent(topic, key)

    async def presence(self, topic: str) -> dict[str, str]:
        """Who is present in ``topic``, in every process."""
        return await self.backend.presence(topic)

    async def _refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.presence_ttl / 3)
            try:
                await self.refresh()
            except HubUnavailable:
                pass  # said already; the next round tries again
            except Exception:
                logger.exception("refreshing presence failed")

    async def refresh(self) -> None:
        """Refresh this process's presence entries, and reap expired ones."""
        for (topic, key), value in list(self._present.items()):
            await self.backend.present(topic, key, value, self.presence_ttl)
        for topic in {t for t, _ in self._present} | set(self._topics):
            for key, value in (await self.backend.expired(topic)).items():
                for callback in list(self.on_expired):
                    try:
                        callback(topic, key, value)
                    except Exception:
                        logger.exception("presence expiry callback failed")
