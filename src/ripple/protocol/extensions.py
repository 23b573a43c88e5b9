"""The extensions seam (RFC 6455 §9): base classes an extension implements.

An extension sees every frame as a :class:`Frame` on the way in and out;
when no extension is negotiated the protocol never builds one (fast path).
Factories take part in the opening handshake: the client's factory offers
parameters and checks the server's answer; the server's factory accepts or
declines an offer.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..exceptions import InvalidHeaderFormat
from .frames import RSV1

__all__ = [
    "ClientExtensionFactory",
    "Extension",
    "ExtensionHeader",
    "ExtensionParameter",
    "Frame",
    "ServerExtensionFactory",
    "parse_extension_header",
    "serialize_extension_header",
]

ExtensionParameter = tuple[str, "str | None"]
ExtensionHeader = tuple[str, list[ExtensionParameter]]


class Frame:
    """One frame as extensions see it.

    Attributes:
        opcode: the frame's opcode.
        data: the payload, unmasked.
        fin: whether it ends its message.
        rsv: the RSV bits still set (RSV1 | RSV2 | RSV3 in place); an extension
            clears the bits it handled.
    """

    __slots__ = ("data", "fin", "opcode", "rsv")

    def __init__(self, opcode: int, data: bytes, fin: bool = True, rsv: int = 0) -> None:
        self.opcode = opcode
        self.data = data
        self.fin = fin
        self.rsv = rsv

    def __repr__(self) -> str:
        return f"Frame(opcode={self.opcode}, len={len(self.data)}, fin={self.fin}, rsv={self.rsv})"


class Extension:
    """A negotiated extension, one instance per connection.

    Subclasses set :attr:`name` and :attr:`rsv_bits` and override
    :meth:`decode` and :meth:`encode`.
    """

    #: The extension's registered token, e.g. "permessage-deflate".
    name: str = ""
    #: RSV bits this extension may set on frames (§5.2: others must be 0).
    rsv_bits: int = RSV1

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Transform a received frame.

        Raises:
            ProtocolError: the frame is invalid for this extension.
            PayloadTooBig: the decoded message would exceed `max_size`.
        """
        return frame

    def encode(self, frame: Frame) -> Frame:
        """Transform a frame about to be sent."""
        return frame


class ClientExtensionFactory:
    """Offers an extension in the client's handshake and accepts the answer."""

    name: str = ""

    def get_request_params(self) -> list[ExtensionParameter]:
        """Parameters to offer in Sec-WebSocket-Extensions."""
        return []

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Extension:
        """Build the extension from the server's parameters.

        Raises:
            NegotiationError: the server's answer doesn't match the offer.
        """
        raise NotImplementedError


class ServerExtensionFactory:
    """Accepts or declines a client's offer of an extension."""

    name: str = ""

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        """Accept an offer: return the parameters to answer with and the extension.

        Raises:
            NegotiationError: to decline this offer (the next one is tried).
        """
        raise NotImplementedError


def _token_end(header: str, pos: int) -> int:
    end = pos
    while end < len(header) and header[end] not in ' \t,;="':
        end += 1
    return end


def _skip_ows(header: str, pos: int) -> int:
    while pos < len(header) and header[pos] in " \t":
        pos += 1
    return pos


def parse_extension_header(header: str) -> list[ExtensionHeader]:
    """Parse a Sec-WebSocket-Extensions value (§9.1) into (name, params) pairs.

    Quoted parameter values are unquoted; empty list elements are skipped.

    Raises:
        InvalidHeaderFormat: the value doesn't follow the grammar.
    """
    name_of = "Sec-WebSocket-Extensions"
    result: list[ExtensionHeader] = []
    pos = 0
    n = len(header)
    while True:
        pos = _skip_ows(header, pos)
        while pos < n and header[pos] == ",":
            pos = _skip_ows(header, pos + 1)
        if pos >= n:
            return result
        end = _token_end(header, pos)
        if end == pos:
            raise InvalidHeaderFormat(name_of, "expected extension name", header, pos)
        name = header[pos:end]
        params: list[ExtensionParameter] = []
        pos = _skip_ows(header, end)
        while pos < n and header[pos] == ";":
            pos = _skip_ows(header, pos + 1)
            end = _token_end(header, pos)
            if end == pos:
                raise InvalidHeaderFormat(name_of, "expected parameter name", header, pos)
            pname = header[pos:end]
            pos = _skip_ows(header, end)
            value: str | None = None
            if pos < n and header[pos] == "=":
                pos = _skip_ows(header, pos + 1)
                if pos < n and header[pos] == '"':
                    close = header.find('"', pos + 1)
                    if close < 0:
                        raise InvalidHeaderFormat(name_of, "unterminated quote", header, pos)
                    value = header[pos + 1 : close]
                    pos = close + 1
                else:
                    end = _token_end(header, pos)
                    if end == pos:
                        raise InvalidHeaderFormat(name_of, "expected value", header, pos)
                    value = header[pos:end]
                    pos = end
                pos = _skip_ows(header, pos)
            params.append((pname, value))
        result.append((name, params))
        if pos < n and header[pos] != ",":
            raise InvalidHeaderFormat(name_of, "expected comma", header, pos)


def serialize_extension_header(extensions: Sequence[ExtensionHeader]) -> str:
    """Build a Sec-WebSocket-Extensions value from (name, params) pairs."""
    return ", ".join(
        "; ".join([name, *(p if v is None else f"{p}={v}" for p, v in params)])
        for name, params in extensions
    )
