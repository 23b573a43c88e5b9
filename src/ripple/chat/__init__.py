"""The realtime chat service built on ripple (``ripple chat``, ``ripple bot``).

- :mod:`~ripple.chat.server`: the page at ``/``, the WebSocket at ``/ws``,
  ``/healthz``; :class:`ChatServer` and :func:`run_chat`.
- :mod:`~ripple.chat.schema`: the JSON messages (docs/chat.md).
- :mod:`~ripple.chat.room`: who is in the room, ids, history; the :class:`Room`
  seam a hub backend fills.
- :mod:`~ripple.chat.publish`: the four ways to publish an event.
- :mod:`~ripple.chat.ratelimit`: the token bucket for floods.
- :mod:`~ripple.chat.bot`: the course's bot.

The chat knows users and messages, not frames: it uses ripple's public API.
"""

from .publish import PUBLISH_STRATEGIES, Fanout, make_fanout
from .ratelimit import TokenBucket
from .room import LocalRoom, Room
from .schema import Event, User
from .server import ChatConfig, ChatServer, run_chat

__all__ = [
    "PUBLISH_STRATEGIES",
    "ChatConfig",
    "ChatServer",
    "Event",
    "Fanout",
    "LocalRoom",
    "Room",
    "TokenBucket",
    "User",
    "make_fanout",
    "run_chat",
]
