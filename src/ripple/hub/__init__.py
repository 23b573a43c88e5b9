"""Topics (rooms) shared by connections, in one process or many.

- :class:`Hub`: subscribe connections to topics, publish, resume with the
  last id seen, presence; local fan-out with :func:`ripple.broadcast`.
- :class:`MemoryBackend` (one process) and :class:`RedisBackend` (Redis
  Streams, many processes; needs ``pip install 'ripple[redis]'``).

See docs/deployment.md.
"""

from __future__ import annotations

from typing import Any

from .base import Backend, Backlog, Entry, HubUnavailable
from .hub import Hub, default_render, default_reset
from .memory import MemoryBackend

__all__ = [
    "Backend",
    "Backlog",
    "Entry",
    "Hub",
    "HubUnavailable",
    "MemoryBackend",
    "RedisBackend",
    "default_render",
    "default_reset",
    "make_backend",
]


def make_backend(url: str | None = None, **kwargs: Any) -> Backend:
    """The backend for ``url``: None or ``memory`` for memory, ``redis://...``
    (``rediss://``, ``unix://``) for Redis. kwargs go to the backend."""
    if url is None or url == "memory":
        return MemoryBackend(**kwargs)
    if url.startswith(("redis://", "rediss://", "unix://")):
        from .redis import RedisBackend

        return RedisBackend(url, **kwargs)
    raise ValueError(f"hub URL must be 'memory' or redis://host:port/db, got {url!r}")


def __getattr__(name: str) -> Any:
    # RedisBackend imports lazily: redis-py is optional.
    if name == "RedisBackend":
        from .redis import RedisBackend

        return RedisBackend
    raise AttributeError(name)
