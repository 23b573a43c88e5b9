"""The memory backend: one process, topics in a bounded deque each."""

from __future__ import annotations

import secrets
import time
from collections import deque
from collections.abc import Callable

from .base import Backend, Backlog, Entry

__all__ = ["MemoryBackend"]


class _Log:
    __slots__ = ("entries", "epoch", "last_id", "presence")

    def __init__(self, maxlen: int) -> None:
        self.epoch = secrets.token_hex(8)
        self.last_id = 0
        self.entries: deque[Entry] = deque(maxlen=maxlen)
        self.presence: dict[str, tuple[str, float]] = {}  # key -> (value, deadline)


class MemoryBackend(Backend):
    """Topics in this process's memory: the last ``maxlen`` entries of each.

    Publishing delivers at once (before ``publish`` returns), in id order.
    """

    name = "memory"

    def __init__(self, *, maxlen: int = 1000, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        if isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1:
            raise ValueError(f"maxlen must be an int >= 1, got {maxlen!r}")
        self.maxlen = maxlen
        self._clock = clock
        self._logs: dict[str, _Log] = {}
        self._watched: set[str] = set()

    def _log(self, topic: str) -> _Log:
        log = self._logs.get(topic)
        if log is None:
            log = self._logs[topic] = _Log(self.maxlen)
        return log

    async def publish(self, topic: str, data: str) -> int:
        log = self._log(topic)
        log.last_id += 1
        entry = Entry(log.last_id, data)
        log.entries.append(entry)
        if topic in self._watched and self.on_entries is not None:
            self.on_entries(topic, log.epoch, [entry])
        return entry.id

    async def watch(self, topic: str) -> Backlog:
        self._watched.add(topic)
        log = self._log(topic)
        return Backlog(log.epoch, log.last_id)

    async def unwatch(self, topic: str) -> None:
        self._watched.discard(topic)

    async def since(self, topic: str, last_id: int, epoch: str | None) -> Backlog:
        log = self._log(topic)
        if (epoch is not None and epoch != log.epoch) or last_id > log.last_id or last_id < 0:
            return Backlog(log.epoch, log.last_id, gap=True)
        if last_id == log.last_id:
            return Backlog(log.epoch, log.last_id)
        first = log.entries[0].id if log.entries else log.last_id + 1
        if first > last_id + 1:
            return Backlog(log.epoch, log.last_id, gap=True)
        # Ids are contiguous in the deque: slice from the one after last_id.
        entries = list(log.entries)[last_id + 1 - first :]
        return Backlog(log.epoch, log.last_id, entries)

    async def recent(
        self, topic: str, count: int, keep: Callable[[str], bool] | None = None
    ) -> Backlog:
        log = self._log(topic)
        found: list[Entry] = []
        if count > 0:
            for entry in reversed(log.entries):
                if keep is None or keep(entry.data):
                    found.append(entry)
                    if len(found) == count:
                        break
        found.reverse()
        return Backlog(log.epoch, log.last_id, found)

    async def present(self, topic: str, key: str, value: str, ttl: float) -> None:
        self._log(topic).presence[key] = (value, self._clock() + ttl)

    async def absent(self, topic: str, key: str) -> bool:
        return self._log(topic).presence.pop(key, None) is not None

    async def presence(self, topic: str) -> dict[str, str]:
        now = self._clock()
        return {k: v for k, (v, deadline) in self._log(topic).presence.items() if deadline > now}

    async def expired(self, topic: str) -> dict[str, str]:
        now = self._clock()
        table = self._log(topic).presence
        gone = {k: v for k, (v, deadline) in table.items() if deadline <= now}
        for key in gone:
            del table[key]
        return gone
