"""Just enough HTTP/1.1 (RFC 9110, RFC 9112) for the opening handshake, sans I/O.

Parsers take the bytes received so far and return ``None`` until a whole
message is there. Every limit is checked before buffering past it, and every
error names what was wrong.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from typing import Final

from ..exceptions import InvalidMessage, SecurityError
from .headers import Headers, HeadersLike

__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_SIZE",
    "MAX_LINE_LENGTH",
    "Request",
    "Response",
    "parse_request",
    "parse_response",
]

#: Longest request line, status line or header line, in bytes.
MAX_LINE_LENGTH: Final = 8192
#: Most header fields in one message.
MAX_HEADERS: Final = 128
#: Most bytes before the blank line that ends the head.
MAX_HEAD_SIZE: Final = 65536
#: Largest body read from a non-101 response.
MAX_BODY_SIZE: Final = 2**20

# RFC 9110 §5.6.2: token = 1*tchar.
_TOKEN = re.compile(rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+")
# RFC 9110 §5.5: field values are visible characters, spaces and tabs, plus
# obs-text (bytes >= 0x80); never CR, LF or NUL.
_VALUE = re.compile(rb"[\x09\x20-\x7e\x80-\xff]*")
_REQUEST_LINE = re.compile(rb"([-!#$%&'*+.^_`|~0-9a-zA-Z]+) ([^ ]+) HTTP/(\d)\.(\d)")
_STATUS_LINE = re.compile(rb"HTTP/(\d)\.(\d) (\d{3})(?: ([\x09\x20-\x7e\x80-\xff]*))?")
# The fast path: a whole valid request head (latin-1 decoded, up to its last
# CRLF) in one match: what the line-by-line parse accepts, no more, so
# anything else goes to that parse and gets its error. The target is
# printable ASCII without spaces, as that parse requires.
_FAST_HEAD = re.compile(
    r"([-!#$%&'*+.^_`|~0-9a-zA-Z]+) ([!-~]+) HTTP/1\.1\r\n"
    r"((?:[-!#$%&'*+.^_`|~0-9a-zA-Z]+:[\x09\x20-\x7e\x80-\xff]*\r\n)*)"
)
# One field of a head _FAST_HEAD matched; the value is rstripped after.
_FAST_FIELD = re.compile(r"([-!#$%&'*+.^_`|~0-9a-zA-Z]+):[\t ]*([^\r]*)\r\n")

STATUS_PHRASES: Final[dict[int, str]] = {
    101: "Switching Protocols",
    200: "OK",
    204: "No Content",
    301: "Moved Permanently",
    302: "Found",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    426: "Upgrade Required",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


@dataclass
class Request:
    """An HTTP request from the opening handshake.

    Attributes:
        path: the request target, e.g. "/chat?room=1".
        headers: the request's header fields.
        method: the request method; a WebSocket handshake uses GET.
    """

    path: str
    headers: Headers
    method: str = "GET"

    def serialize(self) -> bytes:
        return f"{self.method} {self.path} HTTP/1.1\r\n".encode() + self.headers.serialize()


@dataclass(init=False)
class Response:
    """An HTTP response: the handshake's 101 or a plain answer instead of it.

    ``Response(403, "Forbidden", b"Invalid API key")`` gives a body as the third
    argument; ``Response(200, "OK", headers, body)`` gives headers and body.

    Attributes:
        status_code: the HTTP status code.
        reason_phrase: the reason phrase; the standard one when empty.
        headers: the header fields.
        body: the body, bytes.
    """

    status_code: int
    reason_phrase: str
    headers: Headers
    body: bytes = field(default=b"")

    def __init__(
        self,
        status_code: int,
        reason_phrase: str = "",
        headers: HeadersLike | bytes | str | None = None,
        body: bytes | str = b"",
    ) -> None:
        if isinstance(headers, (bytes, str)):
            body = headers  # Response(403, "Forbidden", b"body")
            headers = None
        self.status_code = status_code
        self.reason_phrase = reason_phrase or STATUS_PHRASES.get(status_code, "")
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self.body = body.encode() if isinstance(body, str) else body

    def serialize(self) -> bytes:
        head = f"HTTP/1.1 {self.status_code} {self.reason_phrase}\r\n".encode()
        return head + self.headers.serialize() + self.body


def _split_head(buf: bytes | bytearray) -> tuple[list[bytes], int] | None:
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        # Up to 3 bytes of the CRLFCRLF ending the head may already be here.
        if len(buf) > MAX_HEAD_SIZE + 3:
            raise SecurityError(f"HTTP head exceeds {MAX_HEAD_SIZE} bytes")
        # A single line can't be over the limit while we wait for the rest
        # (a trailing CR may start the line's CRLF).
        last = buf.rfind(b"\r\n")
        partial = len(buf) - (last + 2 if last >= 0 else 0) - buf.endswith(b"\r")
        if partial > MAX_LINE_LENGTH:
            raise SecurityError(f"HTTP line exceeds {MAX_LINE_LENGTH} bytes")
        return None
    if end > MAX_HEAD_SIZE:
        raise SecurityError(f"HTTP head exceeds {MAX_HEAD_SIZE} bytes")
    lines = bytes(buf[:end]).split(b"\r\n")
    if len(lines) - 1 > MAX_HEADERS:
        raise SecurityError(f"more than {MAX_HEADERS} header fields")
    for line in lines:
        if len(line) > MAX_LINE_LENGTH:
            raise SecurityError(f"HTTP line exceeds {MAX_LINE_LENGTH} bytes")
    return lines, end + 4


def _parse_headers(lines: list[bytes]) -> Headers:
    headers = Headers()
    for line in lines:
        name, sep, value = line.partition(b":")
        if line[:1] in (b" ", b"\t"):
            raise InvalidMessage(
                f"obsolete line folding (a header line starting with whitespace): {line[:80]!r}"
            )
        if not sep:
            raise InvalidMessage(f"invalid HTTP header line: {line[:80]!r}")
        if not _TOKEN.fullmatch(name):
            raise InvalidMessage(f"invalid HTTP header name: {name[:80]!r}")
        value = value.strip(b" \t")
        if not _VALUE.fullmatch(value):
            raise InvalidMessage(f"invalid HTTP header value for {name.decode()}")
        # Latin-1 maps every byte; names are ASCII tokens.
        # Interned: the same few names repeat on every connection.
        headers[sys.intern(name.decode("ascii"))] = value.decode("latin-1")
    return headers


def _parse_request_fast(buf: bytes | bytearray, end: int) -> Request | None:
    # A head no longer than a line can't break the size and line limits:
    # only the field count is left to check. None: let parse_request decide.
    if end > MAX_LINE_LENGTH:
        return None
    # One decode and two C scans instead of a loop of partition, strip and
    # two matches per line: this runs for every connection.
    match = _FAST_HEAD.fullmatch(buf[: end + 2].decode("latin-1"))
    if match is None:
        return None
    method, path, block = match.groups()
    if block.count("\r\n") > MAX_HEADERS:
        return None
    fields: list[tuple[str, str]] = []
    index: dict[str, list[str]] = {}
    intern = sys.intern
    for name, value in _FAST_FIELD.findall(block):
        value = value.rstrip(" \t")  # the regex took the leading whitespace
        name = intern(name)  # as _parse_headers does
        fields.append((name, value))
        lower = name.lower()
        if lower in index:
            index[lower].append(value)
        else:
            index[lower] = [value]
    if "content-length" in index or "transfer-encoding" in index:
        return None  # refused below, with its message
    # The handshake looks fields up next: hand the index over already built.
    return Request(path, Headers._parsed(fields, index), method)


def parse_request(buf: bytes | bytearray) -> tuple[Request, int] | None:
    """Parse a request head; return it and the bytes consumed, or None for more.

    Raises:
        InvalidMessage: the request is malformed (answer 400).
        SecurityError: a limit was exceeded (answer 431).
    """
    end = buf.find(b"\r\n\r\n")
    if end >= 0:
        request = _parse_request_fast(buf, end)
        if request is not None:
            return request, end + 4
    return _parse_request_lines(buf)


def _parse_request_lines(buf: bytes | bytearray) -> tuple[Request, int] | None:
    # Line by line, with every limit and error; the reference for the fast path.
    split = _split_head(buf)
    if split is None:
        return None
    lines, consumed = split
    match = _REQUEST_LINE.fullmatch(lines[0])
    if match is None:
        raise InvalidMessage(f"invalid HTTP request line: {lines[0][:80]!r}")
    method, target, major, minor = match.groups()
    if (major, minor) != (b"1", b"1"):
        raise InvalidMessage(
            f"unsupported HTTP version: {major.decode()}.{minor.decode()}; use HTTP/1.1"
        )
    try:
        path = target.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidMessage("request target isn't ASCII") from None
    if not path.isprintable():
        raise InvalidMessage("request target contains control characters")
    headers = _parse_headers(lines[1:])
    if "Content-Length" in headers or "Transfer-Encoding" in headers:
        # §4.1: the handshake is a GET without a body; refusing bodies keeps
        # request smuggling out.
        raise InvalidMessage("the handshake request must not have a body")
    return Request(path, headers, method.decode("ascii")), consumed


def parse_response(buf: bytes | bytearray) -> tuple[Response, int] | None:
    """Parse a response head (and its body, unless it is a 101).

    Returns the response and the bytes consumed, or None when more are needed.

    Raises:
        InvalidMessage: the response is malformed.
        SecurityError: a limit was exceeded.
    """
    split = _split_head(buf)
    if split is None:
        return None
    lines, consumed = split
    match = _STATUS_LINE.fullmatch(lines[0])
    if match is None:
        raise InvalidMessage(f"invalid HTTP status line: {lines[0][:80]!r}")
    major, minor, status, reason = match.groups(b"")
    if (major, minor) != (b"1", b"1"):
        raise InvalidMessage(f"unsupported HTTP version: {major.decode()}.{minor.decode()}")
    code = int(status)
    if not 100 <= code < 600:
        raise InvalidMessage(f"invalid HTTP status code: {code}")
    headers = _parse_headers(lines[1:])
    body = b""
    if code != 101 and code >= 200 and code not in (204, 304):
        lengths = headers.get_all("Content-Length")
        if len(lengths) > 1:
            raise InvalidMessage(f"more than one Content-Length: {', '.join(lengths)}")
        if lengths:
            raw = lengths[0]
            if not (raw.isascii() and raw.isdigit()):  # "²".isdigit() is True
                raise InvalidMessage(f"invalid Content-Length: {raw}")
            size = int(raw)
            if size > MAX_BODY_SIZE:
                raise SecurityError(f"response body of {size} bytes exceeds {MAX_BODY_SIZE}")
            if len(buf) - consumed < size:
                return None
            body = bytes(buf[consumed : consumed + size])
            consumed += size
    response = Response(code, reason.decode("latin-1"), headers, body)
    response.reason_phrase = reason.decode("latin-1")
    return response, consumed
