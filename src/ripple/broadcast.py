"""broadcast(): one message to many connections, encoded once.

A connection that doesn't read can't make memory grow without bound: each one
has a cap on the bytes waiting in its write buffer (``broadcast_limit``), and
a connection over it is closed with 1013 or skipped (``broadcast_overflow``).
"""

from __future__ import annotations

import enum
import logging
import sys
from collections.abc import Iterable
from typing import Any, Final, Literal

from .connection import Connection
from .exceptions import WebSocketException
from .protocol.deflate import PerMessageDeflate, compress_message
from .protocol.frames import OP_BINARY, OP_TEXT, RSV1, encode_frame
from .protocol.state import OPEN, Protocol
from .typing import Data

__all__ = [
    "DEFAULT_LIMIT",
    "OVERFLOW_CODE",
    "OVERFLOW_REASON",
    "BroadcastOverflow",
    "BroadcastStats",
    "DefaultLimit",
    "Overflow",
    "broadcast",
    "check_broadcast_options",
    "default_broadcast_limit",
]

logger = logging.getLogger("ripple.broadcast")

Overflow = Literal["close", "skip"]

#: The close code for a connection closed because its write buffer went over
#: its broadcast limit: 1013 "Try Again Later", a temporary condition on the
#: server's side that the client should answer by reconnecting (with backoff)
#: and resynchronizing, not a protocol or policy violation (1008) it must fix.
OVERFLOW_CODE: Final = 1013
OVERFLOW_REASON: Final = "too slow: broadcast buffer full"


class DefaultLimit(enum.Enum):
    """The type of :data:`DEFAULT_LIMIT`."""

    LIMIT = "default"


#: ``serve(broadcast_limit=...)`` when not given: see :func:`default_broadcast_limit`.
DEFAULT_LIMIT: Final = DefaultLimit.LIMIT


def default_broadcast_limit(write_limit: int) -> int:
    """The default cap on a connection's buffered bytes: 16 x ``write_limit``,
    at least 1 MiB (1 MiB with the default ``write_limit`` of 64 KiB).

    Well above ``write_limit``, so a connection that ``send()`` keeps near its
    high-water mark, or a burst of broadcasts to a client that reads, isn't
    taken for a slow one.
    """
    return max(16 * write_limit, 2**20)


def check_broadcast_options(
    broadcast_limit: int | DefaultLimit | None, broadcast_overflow: str, write_limit: int
) -> int | None:
    """Check ``serve()``'s broadcast options; return the limit to use.

    Raises:
        ValueError: with the option's name and what to pass.
    """
    if broadcast_limit is DEFAULT_LIMIT:
        broadcast_limit = default_broadcast_limit(write_limit)
    elif broadcast_limit is not None and (
        isinstance(broadcast_limit, bool)
        or not isinstance(broadcast_limit, int)
        or broadcast_limit < 0
    ):
        raise ValueError(
            f"broadcast_limit must be a non-negative int or None, got {broadcast_limit!r}"
        )
    if broadcast_overflow not in ("close", "skip"):
        raise ValueError(
            f'broadcast_overflow must be "close" or "skip", got {broadcast_overflow!r}'
        )
    return broadcast_limit


class BroadcastStats:
    """What :func:`broadcast` did about a server's connections over their limit.

    Read the counters, or call :meth:`reset` to read and zero them at once
    (e.g. for a metrics exporter). They only grow otherwise.

    Attributes:
        skipped: messages not written, one per connection per message, because
            the connection was over ``broadcast_limit`` (``broadcast_overflow="skip"``).
        closed: connections closed with 1013 because they were over
            ``broadcast_limit`` (``broadcast_overflow="close"``).
    """

    __slots__ = ("closed", "skipped")

    def __init__(self, skipped: int = 0, closed: int = 0) -> None:
        self.skipped = skipped
        self.closed = closed

    def reset(self) -> BroadcastStats:
        """Zero the counters; return a copy with their values before."""
        before = BroadcastStats(self.skipped, self.closed)
        self.skipped = self.closed = 0
        return before

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BroadcastStats):
            return NotImplemented
        return (self.skipped, self.closed) == (other.skipped, other.closed)

    def __repr__(self) -> str:
        return f"BroadcastStats(skipped={self.skipped}, closed={self.closed})"


class BroadcastOverflow(WebSocketException):
    """A connection was over its broadcast limit: the message wasn't written to it.

    Reported by ``broadcast(..., raise_exceptions=True)``.

    Attributes:
        connection: the connection.
        buffered: bytes that were waiting in its write buffer.
        limit: its broadcast limit.
        closed: True if it was closed with 1013 (``broadcast_overflow="close"``),
            False if only this message was skipped (``"skip"``).
    """

    def __init__(self, connection: Connection, buffered: int, limit: int, closed: bool) -> None:
        action = f"closed with {OVERFLOW_CODE}" if closed else "message skipped"
        super().__init__(
            f"connection {connection.id} had {buffered} bytes waiting to be written, "
            f"over broadcast_limit={limit}: {action}"
        )
        self.connection = connection
        self.buffered = buffered
        self.limit = limit
        self.closed = closed


if sys.version_info >= (3, 11):
    _ExceptionGroup = ExceptionGroup  # noqa: F821 (3.11+ builtin)
else:  # pragma: no cover - Python 3.10

    class _ExceptionGroup(Exception):
        """Stand-in for ExceptionGroup on Python 3.10."""

        def __init__(self, message: str, exceptions: list[Exception]) -> None:
            super().__init__(message)
            self.exceptions = exceptions


def broadcast(
    websockets: Iterable[Connection],
    message: Data,
    raise_exceptions: bool = False,
) -> None:
    """Send a message to many connections without waiting.

    Server frames aren't masked, so the frame is encoded once and the same
    bytes are written to every open connection without extensions. With
    permessage-deflate negotiated under ``server_no_context_takeover``, the
    message is compressed once per group of connections with the same
    parameters; other compressed connections get their own encoding.
    Connections that aren't open are skipped, and so are connections busy
    sending a fragmented message (their frames can't interleave). Nothing
    waits for slow clients: use it for fan-out.

    Small frames are queued until the end of the current event loop
    iteration (up to 64 KiB per connection; larger ones are written at once)
    and each connection's queue goes out in one write: several broadcasts in
    a row cost one send per connection. Anything else sent on a connection
    meanwhile (``send()``, ``close()``, a ping) goes out after them, in call
    order.

    A connection whose write buffer holds more than its broadcast limit
    (``serve(broadcast_limit=...)``; for client connections, the default:
    :func:`default_broadcast_limit`) doesn't get the message: under
    ``broadcast_overflow="close"`` (the default, and always for client
    connections) it is closed with 1013, under ``"skip"`` only this message
    is skipped. The frames queued in this iteration count as buffered. So a
    buffer never holds more than the limit plus one message (and a close
    frame) because of broadcast(). The server's
    ``broadcast_stats`` and the connection's ``broadcast_skipped`` count them.

    Args:
        websockets: the connections to send to.
        message: str for a text message, bytes-like for binary.
        raise_exceptions: raise an ExceptionGroup of the failures (closed or
            busy connections, :class:`BroadcastOverflow` for those over their
            limit) instead of logging them at debug level. Closing a
            connection over its limit is logged at warning level either way.

    Raises:
        TypeError: the message isn't str or bytes-like.
    """
    if isinstance(message, str):
        opcode = OP_TEXT
        payload = message.encode()
    elif isinstance(message, (bytes, bytearray, memoryview)):
        opcode = OP_BINARY
        payload = bytes(message)
    else:
        raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
    shared: bytes | None = None
    compressed: dict[tuple[int, int, int], bytes] = {}
    errors: list[Exception] = []
    debug = logger.isEnabledFor(logging.DEBUG)  # connection.id is made on first use
    for connection in websockets:
        p = connection.protocol
        transport = connection.transport
        if p is None or p.state is not OPEN or transport is None:
            if raise_exceptions:
                errors.append(connection._closed_exc())
            elif debug:
                logger.debug("broadcast skipped %s: not open", connection.id)
            continue
        if connection._send_frag is not None:
            if raise_exceptions:
                errors.append(RuntimeError("skipped: a fragmented message is being sent"))
            elif debug:
                logger.debug("broadcast skipped %s: fragmented send in progress", connection.id)
            continue
        # Before encoding: a message skipped mustn't advance a compression context.
        server: Any = getattr(connection, "server", None)
        limit: int | None
        if server is None:
            limit = default_broadcast_limit(connection.write_limit)
        else:
            limit = server.broadcast_limit
        if limit is not None:
            # Frames queued in this loop iteration count: they are buffered too.
            buffered = transport.get_write_buffer_size() + connection._pending_size
            if buffered > limit:
                closed = _overflow(connection, p, buffered, limit, server)
                if raise_exceptions:
                    errors.append(BroadcastOverflow(connection, buffered, limit, closed))
                elif debug and not closed:
                    logger.debug(
                        "broadcast skipped %s: %d bytes waiting, over broadcast_limit=%d",
                        connection.id,
                        buffered,
                        limit,
                    )
                continue
        extensions = p.extensions
        if p.mask:
            data = _own_frame(p, opcode, message, payload)
        elif not extensions:
            if shared is None:
                # Encoded once: the same bytes go to every plain server connection.
                shared = encode_frame(opcode, payload)
            data = shared
        elif (
            len(extensions) == 1
            and isinstance(extensions[0], PerMessageDeflate)
            and (key := extensions[0].shared_key) is not None
        ):
            # No context takeover on our side: a compressed message depends
            # only on these parameters, so compress once per group.
            data = compressed.get(key)  # type: ignore[assignment]
            if data is None:
                data = compressed[key] = encode_frame(
                    opcode, compress_message(payload, key), rsv=RSV1
                )
        else:
            data = _own_frame(p, opcode, message, payload)
        # Queued, not written: a burst of broadcasts in one loop iteration
        # reaches each connection in one write (one syscall, not one per message).
        connection._queue_write(data)
    if errors:
        raise _ExceptionGroup("broadcast failed for some connections", errors)


def _overflow(
    connection: Connection,
    p: Protocol,
    buffered: int,
    limit: int,
    server: Any,
) -> bool:
    """Apply the overflow policy to a connection over its limit; True if it closed it."""
    if server is not None and server.broadcast_overflow == "skip":
        connection.broadcast_skipped += 1
        server.broadcast_stats.skipped += 1
        return False
    if server is not None:
        server.broadcast_stats.closed += 1
    logger.warning(
        "closing %s (peer %s) with %d: %d bytes waiting to be written, over broadcast_limit=%d",
        connection.id,
        connection.remote_address,
        OVERFLOW_CODE,
        buffered,
        limit,
    )
    # It doesn't read: the close frame (a few bytes) goes after what's
    # buffered, then the transport flushes and closes, and is dropped after
    # close_timeout if it can't. Nothing here waits, and as the connection
    # isn't open anymore, later messages aren't written to it.
    connection._write(p.send_close(OVERFLOW_CODE, OVERFLOW_REASON))  # after queued frames
    connection._close_transport()
    return True


def _own_frame(p: Protocol, opcode: int, message: Data, payload: bytes) -> bytes:
    # Masked (client) or with its own compression context: encode for it alone.
    if opcode == OP_TEXT:
        assert isinstance(message, str)
        return p.send_text(message)
    return p.send_binary(payload)
