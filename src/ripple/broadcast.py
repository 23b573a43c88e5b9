"""broadcast(): one message to many connections, encoded once."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

from .connection import Connection
from .protocol.deflate import PerMessageDeflate, compress_message
from .protocol.frames import OP_BINARY, OP_TEXT, RSV1, encode_frame
from .protocol.state import OPEN, Protocol
from .typing import Data

__all__ = ["broadcast"]

logger = logging.getLogger("ripple.broadcast")

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

    Args:
        websockets: the connections to send to.
        message: str for a text message, bytes-like for binary.
        raise_exceptions: raise an ExceptionGroup of the failures (closed or
            busy connections) instead of logging them at debug level.

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
    for connection in websockets:
        p = connection.protocol
        transport = connection.transport
        if p is None or p.state is not OPEN or transport is None:
            if raise_exceptions:
                errors.append(connection._closed_exc())
            else:
                logger.debug("broadcast skipped %s: not open", connection.id)
            continue
        if connection._send_frag is not None:
            if raise_exceptions:
                errors.append(RuntimeError("skipped: a fragmented message is being sent"))
            else:
                logger.debug("broadcast skipped %s: fragmented send in progress", connection.id)
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
        transport.write(data)
    if errors:
        raise _ExceptionGroup("broadcast failed for some connections", errors)


def _own_frame(p: Protocol, opcode: int, message: Data, payload: bytes) -> bytes:
    # Masked (client) or with its own compression context: encode for it alone.
    if opcode == OP_TEXT:
        assert isinstance(message, str)
        return p.send_text(message)
    return p.send_binary(payload)
