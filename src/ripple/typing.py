"""Type aliases used in ripple's public signatures."""

from __future__ import annotations

import logging
from typing import Any, NewType, Union

__all__ = ["Data", "LoggerLike", "Subprotocol"]

#: A message: str for text, bytes for binary.
Data = Union[str, bytes]

#: A logger or a logger adapter (None means ripple's own logger).
LoggerLike = Union[logging.Logger, "logging.LoggerAdapter[Any]", None]

#: A subprotocol name, as sent in Sec-WebSocket-Protocol.
Subprotocol = NewType("Subprotocol", str)
