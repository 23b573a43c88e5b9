"""Sans-I/O WebSocket protocol: bytes in, events out; calls in, bytes out.

Nothing here imports asyncio or touches a socket or a clock.
"""

from .extensions import ClientExtensionFactory, Extension, Frame, ServerExtensionFactory
from .frames import Close
from .headers import Headers, HeadersLike, MultipleValuesError
from .http11 import Request, Response
from .state import Ping, Pong, Protocol, Side, State

__all__ = [
    "ClientExtensionFactory",
    "Close",
    "Extension",
    "Frame",
    "Headers",
    "HeadersLike",
    "MultipleValuesError",
    "Ping",
    "Pong",
    "Protocol",
    "Request",
    "Response",
    "ServerExtensionFactory",
    "Side",
    "State",
]
