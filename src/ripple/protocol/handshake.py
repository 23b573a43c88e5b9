"""The opening handshake (RFC 6455 §4), both sides, sans I/O."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
from collections.abc import Callable, Sequence

from ..exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderValue,
    InvalidOrigin,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
)
from .extensions import (
    ClientExtensionFactory,
    Extension,
    ExtensionHeader,
    ServerExtensionFactory,
    parse_extension_header,
    serialize_extension_header,
)
from .headers import Headers
from .http11 import Request, Response
from .uri import WebSocketURI

__all__ = [
    "GUID",
    "HandshakeRejected",
    "accept_key",
    "build_request",
    "check_origin",
    "check_response",
    "generate_key",
    "parse_token_list",
    "printable",
    "server_accept",
]

# §1.3: the GUID concatenated to the key before hashing.
GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
# A key that b64decode(validate=True) turns into 16 bytes: checked without
# decoding it; anything else takes the decoding check and its error.
_KEY = re.compile(r"[A-Za-z0-9+/]{22}==")


def printable(text: str) -> str:
    """`text` with every non-printable character escaped (``\\x85``, ``\\u2028``).

    Refusals quote what the client sent (an Origin, a version); header values
    may hold latin-1 C1 controls such as NEL (a line break to many log
    readers) or CSI (a terminal escape). Escaped, a client can't forge log
    lines or drive the terminal of whoever reads the log.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


class HandshakeRejected(InvalidHandshake):
    """The server refuses a handshake; carries the HTTP response to send.

    Attributes:
        response: the error response (400, 426, ...) with a one-line reason.
    """

    def __init__(self, response: Response, message: str) -> None:
        self.response = response
        super().__init__(printable(message))


def reject(status: int, message: str, headers: Sequence[tuple[str, str]] = ()) -> Response:
    """A plain-text error response whose body says what was wrong (one line,
    control characters escaped)."""
    body = (printable(message) + "\n").encode()
    hdrs = Headers(headers)
    hdrs["Content-Type"] = "text/plain; charset=utf-8"
    hdrs["Content-Length"] = str(len(body))
    if "Connection" not in hdrs:
        hdrs["Connection"] = "close"
    return Response(status, "", hdrs, body)


def generate_key() -> str:
    """A random Sec-WebSocket-Key: 16 bytes from os.urandom, base64 (§4.1)."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_key(key: str) -> str:
    """The Sec-WebSocket-Accept value for a key (§4.2.2)."""
    digest = hashlib.sha1((key + GUID).encode()).digest()
    # What base64.b64encode does, without its Python-level wrapper.
    return binascii.b2a_base64(digest, newline=False).decode()


def parse_token_list(values: Sequence[str]) -> list[str]:
    """Split header values that are comma-separated token lists (RFC 9110 §5.6.1)."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _single(headers: Headers, name: str) -> str | None:
    # The index itself: get() goes through the Mapping machinery.
    values = headers._index().get(name.lower())
    if not values:
        return None
    if len(values) > 1:
        raise InvalidHeader(name, "more than one " + name + " header")
    return values[0]


def _has_token(values: Sequence[str], token: str) -> bool:
    # The usual single value that is the token itself, without the split.
    if len(values) == 1 and values[0].lower() == token:
        return True
    return token in [t.lower() for t in parse_token_list(values)]


def _check_upgrade(headers: Headers) -> None:
    # §4.2.1: Upgrade includes "websocket" and Connection includes "Upgrade",
    # both case-insensitive, possibly among other tokens.
    index = headers._index()  # one lookup per field, not get_all's copies
    connection = index.get("connection", ())
    if not _has_token(connection, "upgrade"):
        raise InvalidUpgrade("Connection", ", ".join(connection) or None)
    upgrade = index.get("upgrade", ())
    if not _has_token(upgrade, "websocket"):
        raise InvalidUpgrade("Upgrade", ", ".join(upgrade) or None)


def check_origin(headers: Headers, origins: Sequence[str | None]) -> None:
    """Check the Origin header against an allowlist (RFC 6455 §10.2).

    Args:
        headers: the request's headers.
        origins: allowed origins, lower-case (scheme and host compare
            case-insensitively); None in the list allows requests without
            an Origin header.

    Raises:
        InvalidOrigin: the origin isn't allowed, or is missing and None isn't
            in the list.
        InvalidHeader: more than one Origin header.
    """
    origin = _single(headers, "Origin")
    if origin is None:
        if None not in origins:
            raise InvalidOrigin(None)
    elif origin.lower() not in origins:
        raise InvalidOrigin(origin)


def server_accept(
    request: Request,
    *,
    select_subprotocol: Callable[[list[str]], str | None],
    extension_factories: Sequence[ServerExtensionFactory] = (),
    origins: Sequence[str | None] | None = None,
) -> tuple[Response, str | None, list[Extension]]:
    """Check a handshake request; build the 101 response.

    Args:
        request: the client's request.
        select_subprotocol: picks one of the client's subprotocols, or None.
        extension_factories: extensions the server supports, in preference order.
        origins: if given, the allowed origins (see :func:`check_origin`).

    Returns:
        The 101 response, the subprotocol and the negotiated extensions.

    Raises:
        HandshakeRejected: with the error response to send (400, 403, 405, 426).
    """
    headers = request.headers
    # Lookups in the index itself: get_all copies, get() goes through the
    # Mapping machinery; the values are only read here.
    index = headers._index()
    if request.method != "GET":
        raise HandshakeRejected(
            reject(
                405, f"WebSocket handshake needs GET, not {request.method}", [("Allow", "GET")]
            ),
            f"method {request.method}",
        )
    if not index.get("upgrade"):
        # A plain HTTP request (a probe, a browser visiting the URL).
        raise HandshakeRejected(
            reject(
                426,
                "this is a WebSocket endpoint: send Upgrade: websocket",
                [("Upgrade", "websocket"), ("Connection", "Upgrade, close")],
            ),
            "no Upgrade header",
        )
    try:
        _check_upgrade(headers)
        if _single(headers, "Host") is None:
            raise InvalidHeader("Host")
        key = _single(headers, "Sec-WebSocket-Key")
        if key is None:
            raise InvalidHeader("Sec-WebSocket-Key")
        if _KEY.fullmatch(key) is None:
            try:
                raw = base64.b64decode(key.encode(), validate=True)
            except binascii.Error:
                raise InvalidHeaderValue("Sec-WebSocket-Key", key) from None
            if len(raw) != 16:
                raise InvalidHeaderValue("Sec-WebSocket-Key", key)
    except InvalidHeader as exc:
        raise HandshakeRejected(reject(400, str(exc)), str(exc)) from None
    versions = index.get("sec-websocket-version", [])
    if versions != ["13"]:
        # §4.4: answer with the versions we speak.
        message = (
            f"unsupported Sec-WebSocket-Version {', '.join(versions)}; use 13"
            if versions
            else "missing Sec-WebSocket-Version header; use 13"
        )
        raise HandshakeRejected(reject(426, message, [("Sec-WebSocket-Version", "13")]), message)
    if origins is not None:
        # After the checks above: a plain probe still gets its 426.
        try:
            check_origin(headers, origins)
        except InvalidOrigin as exc:
            message = (
                "missing Origin header; this endpoint requires one"
                if exc.value is None
                else f"Origin {exc.value} isn't allowed"
            )
            raise HandshakeRejected(reject(403, message), message) from None
        except InvalidHeader as exc:
            raise HandshakeRejected(reject(400, str(exc)), str(exc)) from None

    # Known-good fields (the accept is base64): no need for __setitem__'s checks.
    response_headers = Headers._parsed(
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(key)),
        ],
        None,
    )

    extensions: list[Extension] = []
    offers = index.get("sec-websocket-extensions")
    if offers and extension_factories:
        try:
            parsed = [h for value in offers for h in parse_extension_header(value)]
        except InvalidHeader as exc:
            raise HandshakeRejected(reject(400, str(exc)), str(exc)) from None
        accepted_headers: list[ExtensionHeader] = []
        for name, params in parsed:
            for factory in extension_factories:
                if factory.name != name:
                    continue
                try:
                    response_params, extension = factory.process_request_params(params, extensions)
                except NegotiationError:
                    continue  # §9.1: decline this offer; try the next one.
                accepted_headers.append((name, response_params))
                extensions.append(extension)
                break
        if accepted_headers:
            response_headers["Sec-WebSocket-Extensions"] = serialize_extension_header(
                accepted_headers
            )

    protocols = index.get("sec-websocket-protocol")
    offered = parse_token_list(protocols) if protocols else []
    subprotocol = select_subprotocol(offered) if offered else None
    if subprotocol is not None:
        if subprotocol not in offered:
            raise NegotiationError(f"selected subprotocol {subprotocol!r} wasn't offered")
        response_headers["Sec-WebSocket-Protocol"] = subprotocol
    return Response(101, "Switching Protocols", response_headers), subprotocol, extensions


def build_request(
    wsuri: WebSocketURI,
    key: str,
    *,
    origin: str | None = None,
    subprotocols: Sequence[str] | None = None,
    extension_factories: Sequence[ClientExtensionFactory] = (),
    additional_headers: Headers | None = None,
    user_agent: str | None = None,
) -> Request:
    """The client's handshake request (§4.1)."""
    headers = Headers()
    headers["Host"] = wsuri.host_header
    headers["Upgrade"] = "websocket"
    headers["Connection"] = "Upgrade"
    headers["Sec-WebSocket-Key"] = key
    headers["Sec-WebSocket-Version"] = "13"
    if wsuri.user_info is not None:
        credentials = ":".join(wsuri.user_info).encode()
        headers["Authorization"] = "Basic " + base64.b64encode(credentials).decode()
    if origin is not None:
        headers["Origin"] = origin
    if extension_factories:
        headers["Sec-WebSocket-Extensions"] = serialize_extension_header(
            [(f.name, f.get_request_params()) for f in extension_factories]
        )
    if subprotocols:
        headers["Sec-WebSocket-Protocol"] = ", ".join(subprotocols)
    if user_agent is not None:
        headers["User-Agent"] = user_agent
    if additional_headers is not None:
        headers.update(additional_headers)
    return Request(wsuri.resource_name, headers)


def check_response(
    response: Response,
    key: str,
    *,
    subprotocols: Sequence[str] | None = None,
    extension_factories: Sequence[ClientExtensionFactory] = (),
) -> tuple[str | None, list[Extension]]:
    """Check the server's handshake response (§4.1, client's requirements).

    Returns:
        The subprotocol the server chose and the negotiated extensions.

    Raises:
        InvalidStatus: the status isn't 101.
        InvalidHeader: a required header is missing or wrong.
        NegotiationError: extensions or subprotocol don't match the offer.
    """
    if response.status_code != 101:
        raise InvalidStatus(response)
    headers = response.headers
    _check_upgrade(headers)
    accept = _single(headers, "Sec-WebSocket-Accept")
    if accept is None:
        raise InvalidHeader("Sec-WebSocket-Accept")
    if accept != accept_key(key):
        raise InvalidHeaderValue("Sec-WebSocket-Accept", accept)

    extensions: list[Extension] = []
    for value in headers.get_all("Sec-WebSocket-Extensions"):
        for name, params in parse_extension_header(value):
            for factory in extension_factories:
                if factory.name == name:
                    extensions.append(factory.process_response_params(params, extensions))
                    break
            else:
                raise NegotiationError(f"server accepted extension {name!r} that wasn't offered")

    chosen = parse_token_list(headers.get_all("Sec-WebSocket-Protocol"))
    subprotocol: str | None = None
    if chosen:
        if len(chosen) > 1:
            raise InvalidHeader("Sec-WebSocket-Protocol", ", ".join(chosen))
        subprotocol = chosen[0]
        if not subprotocols or subprotocol not in subprotocols:
            raise NegotiationError(f"server chose subprotocol {subprotocol!r} that wasn't offered")
    return subprotocol, extensions
