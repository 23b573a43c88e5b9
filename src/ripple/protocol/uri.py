"""ws:// and wss:// URIs (RFC 6455 §3)."""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass

from ..exceptions import InvalidURI

__all__ = ["WebSocketURI", "parse_uri"]


@dataclass(frozen=True)
class WebSocketURI:
    """A parsed WebSocket URI.

    Attributes:
        secure: True for wss://.
        host: the host name or address, without brackets.
        port: the port, defaulting to 80 or 443.
        resource_name: the path and query sent in the request line.
        user_info: (username, password) from the URI, if any.
    """

    secure: bool
    host: str
    port: int
    resource_name: str
    user_info: tuple[str, str] | None = None

    @property
    def host_header(self) -> str:
        """The Host header value: the port is left out when it's the default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        if self.port == (443 if self.secure else 80):
            return host
        return f"{host}:{self.port}"


def parse_uri(uri: str) -> WebSocketURI:
    """Parse a ws:// or wss:// URI.

    Raises:
        InvalidURI: with what to pass instead.
    """
    try:
        parsed = urllib.parse.urlsplit(uri)
        port = parsed.port
    except ValueError as exc:
        raise InvalidURI(uri, str(exc)) from None
    if parsed.scheme not in ("ws", "wss"):
        raise InvalidURI(uri, "scheme isn't ws or wss (use ws://host:port/path)")
    if not parsed.hostname:
        raise InvalidURI(uri, "missing host")
    if parsed.fragment:
        # §3: fragment identifiers are meaningless in WebSocket URIs.
        raise InvalidURI(uri, "fragments aren't allowed")
    secure = parsed.scheme == "wss"
    resource_name = parsed.path or "/"
    if parsed.query:
        resource_name += "?" + parsed.query
    # An IRI (non-ASCII, spaces) doesn't fit an HTTP request line: percent-encode
    # what needs it, leaving reserved characters and existing escapes alone.
    resource_name = urllib.parse.quote(resource_name, safe="!$%&'()*+,/:;=?@[]~")
    user_info = None
    if parsed.username is not None:
        user_info = (
            urllib.parse.unquote(parsed.username),
            urllib.parse.unquote(parsed.password or ""),
        )
    return WebSocketURI(
        secure,
        parsed.hostname,
        port if port is not None else (443 if secure else 80),
        resource_name,
        user_info,
    )
