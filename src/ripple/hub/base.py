"""What every hub backend provides: ordered, numbered, bounded topics and presence.

A topic is a log of entries. Each entry gets the next integer id of its topic
(1, 2, 3...): ids order the entries, and a reader that saw id N and then sees
N + 2 knows it missed one. An *epoch* names one life of a topic's log: when a
backend loses the log (Redis restarted without persistence), the ids start
over in a new epoch, and a client holding ids of the old one must resync.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["Backend", "Backlog", "Entry", "HubUnavailable"]


class HubUnavailable(Exception):
    """The backend can't publish or read now (Redis is down); try again later."""


@dataclass(frozen=True)
class Entry:
    """One published message: its id in the topic, and the data as published."""

    id: int
    data: str


@dataclass(frozen=True)
class Backlog:
    """What a topic holds for a reader.

    Attributes:
        epoch: the topic's current epoch.
        last_id: the topic's newest id (0 when nothing was published).
        entries: the entries asked for, oldest first.
        gap: True when entries the reader asked for are gone: older than the
            retained history, or from another epoch. ``entries`` is then
            empty; the reader must start over from the recent history.
    """

    epoch: str
    last_id: int
    entries: list[Entry] = field(default_factory=list)
    gap: bool = False


#: Called by a backend with (topic, epoch, entries) for the entries of a
#: watched topic, in id order, each once.
EntriesCallback = Callable[[str, str, list[Entry]], None]
#: Called by a backend with True or False when it can (not) reach its store.
StatusCallback = Callable[[bool], None]


class Backend(ABC):
    """A hub's store and transport. :class:`~ripple.hub.Hub` sets the callbacks."""

    #: "memory" or "redis".
    name = ""

    def __init__(self) -> None:
        self.on_entries: EntriesCallback | None = None
        self.on_status: StatusCallback | None = None
        #: False while the store can't be reached.
        self.available = True

    async def start(self) -> None:  # noqa: B027 (optional hook)
        """Connect and start delivering (idempotent)."""

    async def aclose(self) -> None:  # noqa: B027 (optional hook)
        """Stop delivering and disconnect."""

    @abstractmethod
    async def publish(self, topic: str, data: str) -> int:
        """Append ``data`` to ``topic``; its id. Raises HubUnavailable."""

    @abstractmethod
    async def watch(self, topic: str) -> Backlog:
        """Deliver the entries of ``topic`` published after the returned
        ``last_id`` (``entries`` empty) to ``on_entries``."""

    @abstractmethod
    async def unwatch(self, topic: str) -> None:
        """Stop delivering ``topic``."""

    @abstractmethod
    async def since(self, topic: str, last_id: int, epoch: str | None) -> Backlog:
        """The entries after ``last_id`` (of ``epoch``; None: the current one),
        or a gap when some of them are gone."""

    @abstractmethod
    async def recent(
        self, topic: str, count: int, keep: Callable[[str], bool] | None = None
    ) -> Backlog:
        """The last ``count`` entries (whose data ``keep`` accepts), oldest first."""

    # -- presence ---------------------------------------------------------------

    @abstractmethod
    async def present(self, topic: str, key: str, value: str, ttl: float) -> None:
        """Say ``key`` is in ``topic`` for ``ttl`` seconds (call again to refresh)."""

    @abstractmethod
    async def absent(self, topic: str, key: str) -> bool:
        """Remove ``key`` from ``topic``'s presence; True if it was there."""

    @abstractmethod
    async def presence(self, topic: str) -> dict[str, str]:
        """The keys present in ``topic`` and their values, oldest first."""

    @abstractmethod
    async def expired(self, topic: str) -> dict[str, str]:
        """Remove the entries whose time ran out; those this call removed
        (each removed entry is returned to exactly one caller)."""
