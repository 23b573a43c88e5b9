"""http11.py: parsing the handshake's HTTP/1.1 request and response (RFC 9112)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ripple.exceptions import InvalidHandshake, InvalidMessage, SecurityError
from ripple.protocol import http11
from ripple.protocol.headers import Headers
from ripple.protocol.http11 import (
    MAX_BODY_SIZE,
    MAX_HEAD_SIZE,
    MAX_HEADERS,
    MAX_LINE_LENGTH,
    Request,
    Response,
    parse_request,
    parse_response,
)

Parser = Callable[[bytes], Any]

REQUEST = (
    b"GET /chat?room=1 HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n"
    b"\r\n"
)

RESPONSE_101 = (
    b"HTTP/1.1 101 Switching Protocols\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
    b"\r\n"
)


def parse_bytewise(parser: Parser, data: bytes) -> Any:
    """Call the parser on every prefix, as an I/O layer buffering byte by byte
    would: None until the last byte, then the result."""
    for i in range(len(data)):
        assert parser(data[:i]) is None, f"finished early at byte {i}"
    return parser(data)


def parse_growing(parser: Parser, data: bytes, step: int) -> Any:
    """Like parse_bytewise, in steps (for big messages)."""
    for i in range(0, len(data), step):
        assert parser(data[:i]) is None, f"finished early at byte {i}"
    return parser(data)


# -- requests ------------------------------------------------------------------------


def test_parse_request() -> None:
    result = parse_request(REQUEST)
    assert result is not None
    request, consumed = result
    assert consumed == len(REQUEST)
    assert request.method == "GET"
    assert request.path == "/chat?room=1"
    assert request.headers["host"] == "server.example.com"
    assert request.headers["Sec-WebSocket-Protocol"] == "chat, superchat"
    assert list(request.headers) == [
        "host",
        "upgrade",
        "connection",
        "sec-websocket-key",
        "origin",
        "sec-websocket-protocol",
        "sec-websocket-version",
    ]


def test_parse_request_byte_by_byte() -> None:
    assert parse_bytewise(parse_request, REQUEST) == parse_request(REQUEST)


def test_parse_request_leaves_following_bytes() -> None:
    frame = b"\x81\x85\x00\x00\x00\x00hello"
    result = parse_request(REQUEST + frame)
    assert result is not None
    _, consumed = result
    assert (REQUEST + frame)[consumed:] == frame


@pytest.mark.parametrize(
    "data",
    [b"", b"G", b"GET / HTTP/1.1", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r"],
)
def test_parse_request_incomplete(data: bytes) -> None:
    assert parse_request(data) is None
    assert parse_request(bytearray(data)) is None


def test_parse_request_bytearray() -> None:
    result = parse_request(bytearray(REQUEST))
    assert result is not None
    assert result[0].path == "/chat?room=1"


def test_parse_request_without_headers() -> None:
    assert parse_request(b"GET / HTTP/1.1\r\n\r\n") == (Request("/", Headers(), "GET"), 18)


@pytest.mark.parametrize(
    ("line", "name", "value"),
    [
        (b"X: a", "X", "a"),
        (b"X:a", "X", "a"),
        (b"X:   a  b \t", "X", "a  b"),  # OWS around the value, not inside
        (b"X:", "X", ""),
        (b"X: \t", "X", ""),
        (b"X-Latin: \xe9t\xe9", "X-Latin", "\xe9t\xe9"),  # obs-text is Latin-1
        (b"!#$%&'*+-.^_`|~09az: tchar", "!#$%&'*+-.^_`|~09az", "tchar"),
        (b"X: a: b", "X", "a: b"),
        (b"X: \x7e\x21\xff\x80", "X", "~!\xff\x80"),
    ],
)
def test_parse_header_field(line: bytes, name: str, value: str) -> None:
    data = b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n"
    result = parse_request(data)
    assert result is not None
    assert result[0].headers.get_all(name) == [value]


def test_parse_repeated_headers() -> None:
    data = b"GET / HTTP/1.1\r\nX: 1\r\nY: 2\r\nx: 3\r\n\r\n"
    result = parse_request(data)
    assert result is not None
    headers = result[0].headers
    assert headers.get_all("X") == ["1", "3"]
    assert list(headers.raw_items()) == [("X", "1"), ("Y", "2"), ("x", "3")]


@pytest.mark.parametrize(
    ("method", "target"),
    [
        (b"GET", b"/"),
        (b"POST", b"/x"),
        (b"GET", b"*"),
        (b"GET", b"http://example.com/x?y=%20"),
        (b"M-SEARCH", b"/a;b,c"),
    ],
)
def test_parse_request_line(method: bytes, target: bytes) -> None:
    result = parse_request(method + b" " + target + b" HTTP/1.1\r\n\r\n")
    assert result is not None
    assert (result[0].method, result[0].path) == (method.decode(), target.decode())


@pytest.mark.parametrize(
    "line",
    [
        b"GET /",
        b"GET / HTTP/1.1 extra",
        b"GET  / HTTP/1.1",
        b"GET /  HTTP/1.1",
        b" GET / HTTP/1.1",
        b"GET / HTTP/1.1 ",
        b"G@T / HTTP/1.1",
        b"GET / HTTP/1",
        b"GET / HTTP/1.",
        b"GET / HTTP/a.b",
        b"GET / HTTP/11.1",
        b"GET / http/1.1",
        b"GET / HTTPS/1.1",
        b"GET\t/ HTTP/1.1",
        b"/ HTTP/1.1",
        b"GET HTTP/1.1",
        b"",
        b"\x16\x03\x01\x02\x00\x01",  # TLS ClientHello on a plain port
    ],
)
def test_malformed_request_line(line: bytes) -> None:
    with pytest.raises(InvalidMessage, match="invalid HTTP request line"):
        parse_request(line + b"\r\nHost: x\r\n\r\n")


@pytest.mark.parametrize(("version", "text"), [(b"1.0", "1.0"), (b"2.0", "2.0"), (b"0.9", "0.9")])
def test_request_http_version(version: bytes, text: str) -> None:
    with pytest.raises(InvalidMessage, match=rf"unsupported HTTP version: {text}; use HTTP/1.1"):
        parse_request(b"GET / HTTP/" + version + b"\r\nHost: x\r\n\r\n")


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (b"/caf\xc3\xa9", "request target isn't ASCII"),
        (b"/\xff", "request target isn't ASCII"),
        (b"/a\x7fb", "control characters"),
        (b"/a\x00b", "control characters"),
        (b"/a\x1bb", "control characters"),
    ],
)
def test_bad_request_target(target: bytes, message: str) -> None:
    with pytest.raises(InvalidMessage, match=message):
        parse_request(b"GET " + target + b" HTTP/1.1\r\n\r\n")


@pytest.mark.parametrize(
    "line",
    [
        b"Bad Name: x",
        b"Host : x",  # RFC 9112 §5.1: no whitespace between name and colon
        b"Host\t: x",
        b": x",
        b"X(y): z",
        b"X\x00: z",
        b"X\x80: z",
        b"X@Y: z",
        b"X/Y: z",
        b'X"Y: z',
    ],
)
def test_bad_header_name(line: bytes) -> None:
    with pytest.raises(InvalidMessage, match="invalid HTTP header name"):
        parse_request(b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n")


@pytest.mark.parametrize("line", [b"NoColon", b"X-Header", b"\x00"])
def test_header_line_without_colon(line: bytes) -> None:
    with pytest.raises(InvalidMessage, match="invalid HTTP header line"):
        parse_request(b"GET / HTTP/1.1\r\n" + line + b"\r\n\r\n")


@pytest.mark.parametrize(
    "value", [b"a\x00b", b"a\rb", b"a\nb", b"\x01", b"a\x7fb", b"\x0b", b"a\x1fb"]
)
def test_bad_header_value(value: bytes) -> None:
    with pytest.raises(InvalidMessage, match="invalid HTTP header value for X-Test"):
        parse_request(b"GET / HTTP/1.1\r\nX-Test: " + value + b"\r\n\r\n")


@pytest.mark.parametrize(
    "continuation", [b" folded", b"\tfolded", b"  more: text", b" ", b"\t: x"]
)
@pytest.mark.parametrize("parser", [parse_request, parse_response])
def test_obsolete_line_folding(parser: Parser, continuation: bytes) -> None:
    # RFC 9112 §5.2: obs-fold is rejected in a request (and we reject it in
    # responses too); the error says what it is.
    first = b"GET / HTTP/1.1" if parser is parse_request else b"HTTP/1.1 101 Switching"
    data = first + b"\r\nX-Long: first part\r\n" + continuation + b"\r\n\r\n"
    with pytest.raises(InvalidMessage, match="obsolete line folding"):
        parser(data)


@pytest.mark.parametrize(
    "header",
    [
        b"Content-Length: 0",
        b"Content-Length: 5",
        b"content-length: 5",
        b"Transfer-Encoding: chunked",
        b"TRANSFER-ENCODING: gzip, chunked",
    ],
)
def test_request_body_rejected(header: bytes) -> None:
    data = b"GET / HTTP/1.1\r\nHost: x\r\n" + header + b"\r\n\r\nhello"
    with pytest.raises(InvalidMessage, match="the handshake request must not have a body"):
        parse_request(data)


def test_bare_lf_line_endings_are_not_a_head_end() -> None:
    # LF alone doesn't end the head (nor a line): nothing is parsed.
    assert parse_request(b"GET / HTTP/1.1\nHost: x\n\n") is None
    with pytest.raises(InvalidMessage):
        parse_request(b"GET / HTTP/1.1\nHost: x\n\n\r\n\r\n")


# -- limits -------------------------------------------------------------------------


@pytest.mark.parametrize("parser", [parse_request, parse_response])
def test_line_length_limit(parser: Parser) -> None:
    first = b"GET / HTTP/1.1" if parser is parse_request else b"HTTP/1.1 200 OK"
    prefix = b"X-Long: "
    ok = prefix + b"a" * (MAX_LINE_LENGTH - len(prefix))
    assert len(ok) == MAX_LINE_LENGTH
    data = first + b"\r\n" + ok + b"\r\n\r\n"
    result = parser(data)
    assert result is not None
    assert len(result[0].headers["X-Long"]) == MAX_LINE_LENGTH - len(prefix)
    # Growing one byte at a time, the line at the limit is no error either,
    # even while only its CR has arrived.
    assert parse_growing(parser, data, 1) == result
    with pytest.raises(SecurityError, match=f"HTTP line exceeds {MAX_LINE_LENGTH} bytes"):
        parser(first + b"\r\n" + ok + b"a\r\n\r\n")


@pytest.mark.parametrize("parser", [parse_request, parse_response])
def test_line_length_limit_before_line_ends(parser: Parser) -> None:
    # A line over the limit fails before its end (or the head's end) arrives.
    first = b"GET / HTTP/1.1" if parser is parse_request else b"HTTP/1.1 200 OK"
    data = first + b"\r\nX-Long: " + b"a" * MAX_LINE_LENGTH
    with pytest.raises(SecurityError, match="HTTP line exceeds"):
        parser(data)
    with pytest.raises(SecurityError, match="HTTP line exceeds"):
        parser(b"GET /" + b"a" * MAX_LINE_LENGTH)  # the first line too
    assert parser(data[: len(first) + 2 + MAX_LINE_LENGTH]) is None


def test_request_line_length_limit() -> None:
    target = b"/" + b"a" * (MAX_LINE_LENGTH - len(b"GET / HTTP/1.1"))
    line = b"GET " + target + b" HTTP/1.1"
    assert len(line) == MAX_LINE_LENGTH
    result = parse_request(line + b"\r\n\r\n")
    assert result is not None
    assert result[0].path == target.decode()
    with pytest.raises(SecurityError, match="HTTP line exceeds"):
        parse_request(b"GET " + target + b"a HTTP/1.1\r\n\r\n")


@pytest.mark.parametrize("parser", [parse_request, parse_response])
def test_header_count_limit(parser: Parser) -> None:
    first = b"GET / HTTP/1.1\r\n" if parser is parse_request else b"HTTP/1.1 101 OK\r\n"
    fields = b"".join(b"X-%d: v\r\n" % i for i in range(MAX_HEADERS))
    result = parser(first + fields + b"\r\n")
    assert result is not None
    assert len(result[0].headers) == MAX_HEADERS
    with pytest.raises(SecurityError, match=f"more than {MAX_HEADERS} header fields"):
        parser(first + fields + b"X-Last: v\r\n\r\n")
    # Repeating one name counts each field.
    with pytest.raises(SecurityError, match="header fields"):
        parser(first + b"X: v\r\n" * (MAX_HEADERS + 1) + b"\r\n")


def _head_of_size(first: bytes, size: int) -> bytes:
    """A head (without the blank line) of exactly `size` bytes, lines within limits."""
    lines = [first]
    total = len(first)
    i = 0
    while total < size:
        room = size - total - 2  # the CRLF before the next line
        value_len = min(room - len(b"X-%03d: " % i), 4000)
        assert value_len >= 0
        line = b"X-%03d: " % i + b"v" * value_len
        lines.append(line)
        total += 2 + len(line)
        i += 1
    head = b"\r\n".join(lines)
    assert len(head) == size
    return head


@pytest.mark.parametrize("parser", [parse_request, parse_response])
def test_head_size_limit(parser: Parser) -> None:
    first = b"GET / HTTP/1.1" if parser is parse_request else b"HTTP/1.1 101 Switching"
    head = _head_of_size(first, MAX_HEAD_SIZE)
    data = head + b"\r\n\r\n"
    result = parser(data)
    assert result is not None
    assert result[1] == len(data)
    # Growing, the last bytes of the blank line don't push it over the limit.
    for n in range(len(data) - 4, len(data)):
        assert parser(data[:n]) is None
    too_big = _head_of_size(first, MAX_HEAD_SIZE + 1) + b"\r\n\r\n"
    with pytest.raises(SecurityError, match=f"HTTP head exceeds {MAX_HEAD_SIZE} bytes"):
        parser(too_big)


@pytest.mark.parametrize("parser", [parse_request, parse_response])
def test_head_size_limit_before_head_ends(parser: Parser) -> None:
    # Without the blank line, the parser gives up once the head can't fit.
    first = b"GET / HTTP/1.1" if parser is parse_request else b"HTTP/1.1 101 Switching"
    head = _head_of_size(first, MAX_HEAD_SIZE + 10)
    with pytest.raises(SecurityError, match="HTTP head exceeds"):
        parser(head)


# -- responses -------------------------------------------------------------------------


def test_parse_response_101() -> None:
    result = parse_response(RESPONSE_101)
    assert result is not None
    response, consumed = result
    assert consumed == len(RESPONSE_101)
    assert response.status_code == 101
    assert response.reason_phrase == "Switching Protocols"
    assert response.headers["Sec-WebSocket-Accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert response.body == b""


def test_parse_response_byte_by_byte() -> None:
    assert parse_bytewise(parse_response, RESPONSE_101) == parse_response(RESPONSE_101)


def test_101_body_is_not_read() -> None:
    # After a 101 the bytes are WebSocket frames, whatever the headers say.
    frame = b"\x81\x02hi"
    data = RESPONSE_101[:-2] + b"Content-Length: 2\r\n\r\n" + frame
    result = parse_response(data)
    assert result is not None
    response, consumed = result
    assert response.body == b""
    assert data[consumed:] == frame


def test_response_body_with_content_length() -> None:
    data = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 11\r\n\r\nGo away!!!\n"
    result = parse_bytewise(parse_response, data)
    assert result is not None
    response, consumed = result
    assert (response.status_code, response.reason_phrase) == (403, "Forbidden")
    assert response.body == b"Go away!!!\n"
    assert consumed == len(data)
    # Extra bytes after the body are left alone.
    result = parse_response(data + b"HTTP/1.1 ...")
    assert result is not None
    assert result[1] == len(data)


def test_response_body_max_size() -> None:
    head = b"HTTP/1.1 500 Oops\r\nContent-Length: %d\r\n\r\n"
    assert parse_response(head % MAX_BODY_SIZE) is None  # waits for the body
    with pytest.raises(SecurityError, match=f"response body of {MAX_BODY_SIZE + 1} bytes"):
        parse_response(head % (MAX_BODY_SIZE + 1))


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\n\r\nno length",
        b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 304 Not Modified\r\nContent-Length: 5\r\n\r\n",
        b"HTTP/1.1 100 Continue\r\nContent-Length: 5\r\n\r\n",
    ],
)
def test_response_without_body(data: bytes) -> None:
    result = parse_response(data)
    assert result is not None
    response, consumed = result
    assert response.body == b""
    assert consumed == data.index(b"\r\n\r\n") + 4


@pytest.mark.parametrize(
    "value", ["abc", "-1", "+1", "1.0", " ", "1,1", "0x10", "\xb2", "\xb9", "1 1", "\u0661"]
)
def test_invalid_content_length(value: str) -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: " + value.encode("utf-8") + b"\r\n\r\nbody"
    with pytest.raises(InvalidMessage, match="Content-Length"):
        parse_response(data)


def test_invalid_latin1_digit_content_length() -> None:
    # Latin-1 b"\xb2" is "²": str.isdigit() says yes, int() says no.
    data = b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nbody"
    with pytest.raises(InvalidMessage, match="invalid Content-Length"):
        parse_response(data)


def test_duplicate_content_length() -> None:
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 4\r\n\r\nbody"
    with pytest.raises(InvalidMessage, match="Content-Length"):
        parse_response(data)


@pytest.mark.parametrize(
    ("line", "code", "reason"),
    [
        (b"HTTP/1.1 200 OK", 200, "OK"),
        (b"HTTP/1.1 200 ", 200, ""),
        (b"HTTP/1.1 200", 200, ""),
        (b"HTTP/1.1 404 Not Found Here", 404, "Not Found Here"),
        (b"HTTP/1.1 599 x", 599, "x"),
        (b"HTTP/1.1 100 Continue", 100, "Continue"),
        (b"HTTP/1.1 418 I'm a teapot \xe9", 418, "I'm a teapot \xe9"),
        (b"HTTP/1.1 200 Fine\tthanks", 200, "Fine\tthanks"),
    ],
)
def test_status_line(line: bytes, code: int, reason: str) -> None:
    result = parse_response(line + b"\r\n\r\n")
    assert result is not None
    assert (result[0].status_code, result[0].reason_phrase) == (code, reason)


@pytest.mark.parametrize(
    "line",
    [
        b"HTTP/1.1 20 OK",
        b"HTTP/1.1 2000 OK",
        b"HTTP/1.1 2000",
        b"HTTP/1.1 20x OK",
        b"HTTP/1.1  200 OK",
        b"HTTP/1.1200 OK",
        b"HTTP/1.1 OK",
        b"ICY 200 OK",
        b"http/1.1 200 OK",
        b"HTTP/1 200 OK",
        b"HTTP/1.1 200 O\x00K",
        b"HTTP/1.1 200 O\x7fK",
        b"",
    ],
)
def test_malformed_status_line(line: bytes) -> None:
    with pytest.raises(InvalidMessage, match="invalid HTTP status line"):
        parse_response(line + b"\r\n\r\n")


@pytest.mark.parametrize("code", [b"000", b"099", b"600", b"999"])
def test_status_code_out_of_range(code: bytes) -> None:
    with pytest.raises(InvalidMessage, match=f"invalid HTTP status code: {int(code)}"):
        parse_response(b"HTTP/1.1 " + code + b" X\r\n\r\n")


@pytest.mark.parametrize("version", [b"1.0", b"2.0"])
def test_response_http_version(version: bytes) -> None:
    with pytest.raises(InvalidMessage, match="unsupported HTTP version"):
        parse_response(b"HTTP/" + version + b" 101 Switching Protocols\r\n\r\n")


# -- serialization -----------------------------------------------------------------------


def test_request_serialize_round_trip() -> None:
    result = parse_request(REQUEST)
    assert result is not None
    assert result[0].serialize() == REQUEST
    assert parse_request(result[0].serialize()) == result


def test_response_serialize_round_trip() -> None:
    response = Response(101, "", Headers([("Upgrade", "websocket")]))
    data = response.serialize()
    assert data == b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"
    result = parse_response(data)
    assert result is not None
    assert result[0] == response


@pytest.mark.parametrize(
    ("args", "status", "reason", "headers", "body"),
    [
        ((404,), 404, "Not Found", [], b""),
        ((403, "Forbidden", b"Invalid API key"), 403, "Forbidden", [], b"Invalid API key"),
        ((403, "No", "text body"), 403, "No", [], b"text body"),
        ((200, "OK", {"X": "1"}, b"b"), 200, "OK", [("X", "1")], b"b"),
        (
            (200, "", [("X", "1"), ("X", "2")], "é"),
            200,
            "OK",
            [("X", "1"), ("X", "2")],
            "é".encode(),
        ),
        ((299,), 299, "", [], b""),
    ],
)
def test_response_constructor(
    args: tuple[Any, ...], status: int, reason: str, headers: list[tuple[str, str]], body: bytes
) -> None:
    response = Response(*args)
    assert response.status_code == status
    assert response.reason_phrase == reason
    assert list(response.headers.raw_items()) == headers
    assert response.body == body


def test_response_with_body_round_trip() -> None:
    body = b"nope\n"
    response = Response(400, "Bad Request", Headers([("Content-Length", str(len(body)))]), body)
    result = parse_response(response.serialize())
    assert result is not None
    assert result[0] == response
    assert result[1] == len(response.serialize())


# -- hypothesis: arbitrary bytes raise only InvalidHandshake --------------------------------

HEADER_NAMES = [b"Host", b"Content-Length", b"content-length", b"Transfer-Encoding", b"X", b""]
FIRST_LINES = [
    b"GET / HTTP/1.1",
    b"GET /\xff HTTP/1.1",
    b"HTTP/1.1 101 Switching Protocols",
    b"HTTP/1.1 200 OK",
    b"HTTP/1.1 204",
    b"HTTP/1.0 200 OK",
]


@st.composite
def http_soup(draw: st.DrawFn) -> bytes:
    """HTTP-shaped bytes: a plausible first line, odd headers, odd values."""
    first = draw(st.sampled_from(FIRST_LINES) | st.binary(max_size=30))
    lines = [first]
    for _ in range(draw(st.integers(0, 5))):
        name = draw(st.sampled_from(HEADER_NAMES) | st.binary(max_size=8))
        value = draw(
            st.sampled_from([b"0", b"3", b"10", b"\xb2", b"\xb9", b" 2", b"chunked", b"-1"])
            | st.binary(max_size=12)
        )
        sep = draw(st.sampled_from([b": ", b":", b" : ", b"", b":\t"]))
        lines.append(draw(st.sampled_from([b"", b" ", b"\t"])) + name + sep + value)
    end = draw(st.sampled_from([b"\r\n\r\n", b"\r\n", b"\n\n", b""]))
    return b"\r\n".join(lines) + end + draw(st.binary(max_size=12))


def check_outcome(parser: Parser, data: bytes) -> object:
    """Run the parser; only None, a result, or an InvalidHandshake are allowed."""
    try:
        result = parser(data)
    except InvalidHandshake as exc:
        assert str(exc)  # every error says something
        return type(exc)
    if result is not None:
        message, consumed = result
        assert 0 < consumed <= len(data)
        assert isinstance(message, (Request, Response))
    return result


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.binary(max_size=200) | http_soup(),
    parser=st.sampled_from([parse_request, parse_response]),
)
def test_parsers_raise_only_invalid_handshake(data: bytes, parser: Parser) -> None:
    outcome = check_outcome(parser, data)
    # Incremental parsing agrees with parsing in one piece: every prefix of a
    # message that parses (or is incomplete) gives None, and no prefix of a
    # message that fails succeeds (it may fail earlier).
    if isinstance(outcome, tuple):
        for i in range(outcome[1]):
            assert check_outcome(parser, data[:i]) is None, i
        assert check_outcome(parser, data[: outcome[1]]) == outcome
    elif outcome is None:
        for i in range(len(data)):
            assert check_outcome(parser, data[:i]) is None, i
    else:
        for i in range(len(data)):
            early = check_outcome(parser, data[:i])
            if early is not None:
                assert isinstance(early, type) and issubclass(early, InvalidHandshake), i
                break


# -- the fast path agrees with the line-by-line parse ----------------------------------


def _outcome(parser: Callable[[bytes], Any], data: bytes) -> object:
    """Everything observable about a parse: the request, field by field, or the error."""
    try:
        result = parser(data)
    except InvalidHandshake as exc:
        return type(exc), str(exc)
    if result is None:
        return None
    request, consumed = result
    fields = list(request.headers.raw_items())
    return request.method, request.path, fields, consumed, request


def test_fast_path_takes_the_usual_request() -> None:
    end = REQUEST.find(b"\r\n\r\n")
    request = http11._parse_request_fast(REQUEST, end)
    assert request is not None
    assert _outcome(parse_request, REQUEST) == _outcome(http11._parse_request_lines, REQUEST)
    # Its names are interned like the slow path's.
    for name, _ in request.headers.raw_items():
        assert name is sys.intern(name)


@pytest.mark.parametrize(
    "data",
    [
        REQUEST,
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nX:   a  b \t\r\nX:\r\nY: \t\r\n\r\n",
        b"GET /\xe9 HTTP/1.1\r\n\r\n",  # target isn't ASCII
        b"GET /\x7f HTTP/1.1\r\n\r\n",  # target has a control character
        b"GET / HTTP/1.0\r\n\r\n",
        b"get / HTTP/1.1\r\nX-Latin: \xe9t\xe9\xff\x80\r\n\r\n",
        b"GET / HTTP/1.1\r\n folded: x\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n",
        b"GET / HTTP/1.1\r\nX a\r\n\r\n",
        b"GET / HTTP/1.1\r\nX\x80: a\r\n\r\n",
        b"GET / HTTP/1.1\r\ncontent-LENGTH: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: v\r\n" * MAX_HEADERS + b"\r\n",
        b"GET / HTTP/1.1\r\n" + b"X: v\r\n" * (MAX_HEADERS + 1) + b"\r\n",
        # Longer than a line: the fast path leaves the limits to the slow one.
        b"GET / HTTP/1.1\r\nX: " + b"v" * MAX_LINE_LENGTH + b"\r\n\r\n",
        b"GET / HTTP/1.1\r\nX: " + b"v" * 5000 + b"\r\nY: " + b"v" * 5000 + b"\r\n\r\n",
        REQUEST + b"\x81\x80\x00\x00\x00\x00",
    ],
)
def test_fast_path_agrees(data: bytes) -> None:
    expected = _outcome(http11._parse_request_lines, data)
    assert _outcome(parse_request, data) == expected
    assert _outcome(parse_request, bytearray(data)) == expected  # type: ignore[arg-type]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=200) | http_soup())
def test_fast_path_agrees_on_anything(data: bytes) -> None:
    assert _outcome(parse_request, data) == _outcome(http11._parse_request_lines, data)
