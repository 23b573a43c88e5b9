"""Exceptions raised by ripple.

The tree mirrors where a failure comes from::

    WebSocketException
    ├── ConnectionClosed            the connection is closed (recv/send after close)
    │   ├── ConnectionClosedOK      both sides closed with 1000 or 1001
    │   └── ConnectionClosedError   anything else (error code, no close frame)
    ├── InvalidHandshake            the opening handshake failed
    │   ├── SecurityError           a limit on the handshake was exceeded
    │   ├── InvalidMessage          the HTTP message is malformed
    │   ├── InvalidStatus           the server answered something other than 101
    │   ├── InvalidHeader           a header is missing or wrong
    │   │   ├── InvalidHeaderFormat
    │   │   ├── InvalidHeaderValue
    │   │   ├── InvalidOrigin
    │   │   └── InvalidUpgrade
    │   └── NegotiationError        extensions or subprotocols don't match
    │       ├── DuplicateParameter
    │       ├── InvalidParameterName
    │       └── InvalidParameterValue
    ├── InvalidURI                  not a ws:// or wss:// URI
    ├── ProtocolError               the peer broke RFC 6455 (close 1002)
    │   ├── InvalidPayload          undecodable payload (close 1007)
    │   │   └── InvalidUTF8         text that isn't UTF-8
    │   └── PayloadTooBig           a message over max_size (close 1009)
    ├── InvalidState                an operation not allowed in this state
    └── ConcurrencyError            two coroutines recv() at once; a duplicate ping
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .protocol.frames import Close
    from .protocol.http11 import Response

__all__ = [
    "ConcurrencyError",
    "ConnectionClosed",
    "ConnectionClosedError",
    "ConnectionClosedOK",
    "DuplicateParameter",
    "InvalidHandshake",
    "InvalidHeader",
    "InvalidHeaderFormat",
    "InvalidHeaderValue",
    "InvalidMessage",
    "InvalidOrigin",
    "InvalidParameterName",
    "InvalidParameterValue",
    "InvalidPayload",
    "InvalidState",
    "InvalidStatus",
    "InvalidURI",
    "InvalidUTF8",
    "InvalidUpgrade",
    "NegotiationError",
    "PayloadTooBig",
    "ProtocolError",
    "SecurityError",
    "WebSocketException",
]


class WebSocketException(Exception):
    """Base class for every exception ripple raises."""


class ConnectionClosed(WebSocketException):
    """Raised when using a connection that is closed or closing.

    Attributes:
        rcvd: the close frame received from the peer, if any.
        sent: the close frame sent to the peer, if any.
        rcvd_then_sent: whether the peer closed first (None if not both).
    """

    def __init__(
        self, rcvd: Close | None, sent: Close | None, rcvd_then_sent: bool | None = None
    ) -> None:
        self.rcvd = rcvd
        self.sent = sent
        self.rcvd_then_sent = rcvd_then_sent
        # The constructor's arguments, not the message: str() is built when
        # asked (most are caught unread, one per closed connection), and
        # pickle and copy can rebuild the exception from args.
        super().__init__(rcvd, sent, rcvd_then_sent)

    def __str__(self) -> str:
        if self.rcvd is None:
            if self.sent is None:
                return "no close frame received or sent"
            return f"sent {self.sent}; no close frame received"
        if self.sent is None:
            return f"received {self.rcvd}; no close frame sent"
        if self.rcvd_then_sent:
            return f"received {self.rcvd}; then sent {self.sent}"
        return f"sent {self.sent}; then received {self.rcvd}"

    @property
    def code(self) -> int:
        """The close code received, or 1006 if none was."""
        return 1006 if self.rcvd is None else self.rcvd.code

    @property
    def reason(self) -> str:
        """The close reason received, or "" if none was."""
        return "" if self.rcvd is None else self.rcvd.reason


class ConnectionClosedOK(ConnectionClosed):
    """The connection closed normally: both sides used 1000 or 1001."""


class ConnectionClosedError(ConnectionClosed):
    """The connection closed with an error code or without a closing handshake."""


class InvalidHandshake(WebSocketException):
    """The opening handshake failed."""


class SecurityError(InvalidHandshake):
    """The handshake exceeded a limit (line length, header count, size)."""


class InvalidMessage(InvalidHandshake):
    """The handshake's HTTP message is malformed."""


class InvalidStatus(InvalidHandshake):
    """The server rejected the handshake with an HTTP status other than 101.

    Attributes:
        response: the server's HTTP response.
    """

    def __init__(self, response: Response) -> None:
        self.response = response
        super().__init__(str(self))

    def __str__(self) -> str:
        message = f"server rejected WebSocket connection: HTTP {self.response.status_code:d}"
        # The server's one-line reason, when its body is short plain text.
        body = self.response.body
        if 0 < len(body) <= 200:
            reason = body.decode("utf-8", "replace").strip()
            if reason and "\n" not in reason and reason.isprintable():
                message += f": {reason}"
        return message


class InvalidHeader(InvalidHandshake):
    """A handshake header is missing or has a wrong value.

    Attributes:
        name: the header's name.
        value: the header's value, None when it is missing.
    """

    def __init__(self, name: str, value: str | None = None) -> None:
        self.name = name
        self.value = value
        super().__init__(str(self))

    def __str__(self) -> str:
        if self.value is None:
            return f"missing {self.name} header"
        if self.value == "":
            return f"empty {self.name} header"
        return f"invalid {self.name} header: {self.value}"


class InvalidHeaderFormat(InvalidHeader):
    """A header could not be parsed."""

    def __init__(self, name: str, error: str, header: str, pos: int) -> None:
        super().__init__(name, f"{error} at {pos} in {header}")


class InvalidHeaderValue(InvalidHeader):
    """A header has a value that isn't allowed."""


class InvalidOrigin(InvalidHeader):
    """The Origin header isn't allowed."""

    def __init__(self, origin: str | None) -> None:
        super().__init__("Origin", origin)


class InvalidUpgrade(InvalidHeader):
    """The Upgrade or Connection header doesn't ask for a WebSocket upgrade."""


class NegotiationError(InvalidHandshake):
    """Extensions or subprotocols could not be negotiated."""


class DuplicateParameter(NegotiationError):
    """An extension parameter appears twice."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"duplicate parameter: {name}")


class InvalidParameterName(NegotiationError):
    """An extension parameter this extension doesn't define."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"invalid parameter name: {name}")


class InvalidParameterValue(NegotiationError):
    """An extension parameter with a value it can't take."""

    def __init__(self, name: str, value: str | None) -> None:
        self.name = name
        self.value = value
        super().__init__(f"invalid value for parameter {name}: {value}")


class InvalidURI(WebSocketException):
    """A URI that isn't a valid ws:// or wss:// URI."""

    def __init__(self, uri: str, msg: str) -> None:
        self.uri = uri
        self.msg = msg
        super().__init__(str(self))

    def __str__(self) -> str:
        # Never echo credentials: messages end up in logs.
        shown = re.sub(r"//[^/@]*@", "//***@", self.uri)
        return f"{shown} isn't a valid URI: {self.msg}"


class ProtocolError(WebSocketException):
    """The peer broke the WebSocket protocol.

    Attributes:
        code: the close code this error closes the connection with.
    """

    code = 1002


class InvalidPayload(ProtocolError):
    """A payload that isn't what the message says it is (close 1007)."""

    code = 1007


class InvalidUTF8(InvalidPayload):
    """A text message or close reason that isn't valid UTF-8."""


class PayloadTooBig(ProtocolError):
    """A message larger than max_size."""

    code = 1009


class InvalidState(WebSocketException, AssertionError):
    """An operation that the connection's state does not allow."""


class ConcurrencyError(WebSocketException, RuntimeError):
    """Two coroutines called recv() (or iterated) on one connection at once,
    or ping() was called with the payload of a ping still awaiting its pong."""
