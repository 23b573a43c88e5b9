"""The room's memory: the last N chat messages, for newcomers."""

from __future__ import annotations

from collections import deque

from .schema import Event

__all__ = ["History"]


class History:
    """The last ``size`` events appended, oldest first; ``size=0`` keeps none."""

    __slots__ = ("_events", "size")

    def __init__(self, size: int) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError(f"history size must be an int >= 0, got {size!r}")
        self.size = size
        self._events: deque[Event] = deque(maxlen=size)

    def append(self, event: Event) -> None:
        self._events.append(event)

    def recent(self) -> list[Event]:
        """The events kept, oldest first."""
        return list(self._events)

    def __len__(self) -> int:
        return len(self._events)
