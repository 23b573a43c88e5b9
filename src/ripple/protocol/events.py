"""What the protocol after the handshake reports: sides, states and events.

Events are chosen for the common case: a complete message is returned as the
``str`` or ``bytes`` itself, with no wrapper; only pings and pongs are
:class:`Ping` and :class:`Pong` objects. :class:`Side` and :class:`State`
come with module-level aliases for their members (``SERVER``, ``OPEN``...),
which the hot path compares against with ``is``.
"""

from __future__ import annotations

import enum
from typing import Final, Union

__all__ = [
    "CLIENT",
    "CLOSED",
    "CLOSING",
    "OPEN",
    "SERVER",
    "Event",
    "Ping",
    "Pong",
    "Side",
    "State",
]


class Side(enum.IntEnum):
    SERVER = 0
    CLIENT = 1


class State(enum.IntEnum):
    OPEN = 1
    CLOSING = 2
    CLOSED = 3


SERVER: Final = Side.SERVER
CLIENT: Final = Side.CLIENT
OPEN: Final = State.OPEN
CLOSING: Final = State.CLOSING
CLOSED: Final = State.CLOSED


class _Control:
    # What Ping and Pong share: the payload. Callers tell them apart by type.
    __slots__ = ("data",)

    def __init__(self, data: bytes) -> None:
        self.data = data

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.data!r})"


class Ping(_Control):
    """A ping was received (the protocol already queued the pong)."""

    __slots__ = ()


class Pong(_Control):
    """A pong was received."""

    __slots__ = ()


Event = Union[str, bytes, Ping, Pong]
