"""ripple: a fast asyncio WebSocket library (RFC 6455), server and client.

Example::

    import asyncio
    import ripple

    async def echo(websocket):
        async for message in websocket:
            await websocket.send(message)

    async def main():
        async with ripple.serve(echo, "localhost", 8765):
            await asyncio.Future()

    asyncio.run(main())
"""

from .auth import BasicAuth, basic_auth
from .broadcast import BroadcastOverflow, BroadcastStats, broadcast
from .client import Backoff, ClientConnection, connect, unix_connect
from .connection import Connection
from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderFormat,
    InvalidHeaderValue,
    InvalidMessage,
    InvalidOrigin,
    InvalidState,
    InvalidStatus,
    InvalidUpgrade,
    InvalidURI,
    InvalidUTF8,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
    SecurityError,
    WebSocketException,
)
from .protocol.deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)
from .protocol.extensions import ClientExtensionFactory, Extension, ServerExtensionFactory
from .protocol.frames import Close
from .protocol.headers import Headers, HeadersLike, MultipleValuesError
from .protocol.http11 import Request, Response
from .protocol.state import State
from .proxy import ProxyError
from .server import Server, ServerConnection, serve, unix_serve
from .typing import Data, LoggerLike, Subprotocol

__version__ = "0.1.0"

__all__ = [
    "Backoff",
    "BasicAuth",
    "BroadcastOverflow",
    "BroadcastStats",
    "ClientConnection",
    "ClientExtensionFactory",
    "ClientPerMessageDeflateFactory",
    "Close",
    "ConcurrencyError",
    "Connection",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "Data",
    "Extension",
    "Headers",
    "HeadersLike",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHeaderFormat",
    "InvalidHeaderValue",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUTF8",
    "InvalidUpgrade",
    "LoggerLike",
    "MultipleValuesError",
    "NegotiationError",
    "PayloadTooBig",
    "PerMessageDeflate",
    "ProtocolError",
    "ProxyError",
    "Request",
    "Response",
    "SecurityError",
    "Server",
    "ServerConnection",
    "ServerExtensionFactory",
    "ServerPerMessageDeflateFactory",
    "State",
    "Subprotocol",
    "WebSocketException",
    "basic_auth",
    "broadcast",
    "connect",
    "serve",
    "unix_connect",
    "unix_serve",
]
