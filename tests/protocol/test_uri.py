"""uri.py: ws:// and wss:// URIs (RFC 6455 §3)."""

from __future__ import annotations

import pytest

from ripple.exceptions import InvalidURI
from ripple.protocol.handshake import build_request
from ripple.protocol.http11 import parse_request
from ripple.protocol.uri import WebSocketURI, parse_uri


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("ws://localhost", WebSocketURI(False, "localhost", 80, "/")),
        ("ws://localhost/", WebSocketURI(False, "localhost", 80, "/")),
        ("wss://localhost", WebSocketURI(True, "localhost", 443, "/")),
        ("ws://localhost:8765/chat", WebSocketURI(False, "localhost", 8765, "/chat")),
        ("wss://example.com:443/a/b", WebSocketURI(True, "example.com", 443, "/a/b")),
        ("ws://example.com?x=1", WebSocketURI(False, "example.com", 80, "/?x=1")),
        ("ws://example.com/p?x=1&y=2", WebSocketURI(False, "example.com", 80, "/p?x=1&y=2")),
        ("ws://127.0.0.1:9000", WebSocketURI(False, "127.0.0.1", 9000, "/")),
        ("ws://[::1]:9000/", WebSocketURI(False, "::1", 9000, "/")),
        ("ws://[::1]/", WebSocketURI(False, "::1", 80, "/")),
        ("WS://EXAMPLE.com/Path", WebSocketURI(False, "example.com", 80, "/Path")),
        ("ws://example.com/a%20b", WebSocketURI(False, "example.com", 80, "/a%20b")),
        (
            "ws://user:pass@example.com/",
            WebSocketURI(False, "example.com", 80, "/", ("user", "pass")),
        ),
        (
            "ws://us%40er:p%3Ass@example.com/",
            WebSocketURI(False, "example.com", 80, "/", ("us@er", "p:ss")),
        ),
        ("ws://user@example.com/", WebSocketURI(False, "example.com", 80, "/", ("user", ""))),
    ],
)
def test_parse_uri(uri: str, expected: WebSocketURI) -> None:
    assert parse_uri(uri) == expected


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("http://example.com", "scheme isn't ws or wss (use ws://host:port/path)"),
        ("https://example.com", "scheme isn't ws or wss"),
        ("example.com", "scheme isn't ws or wss"),
        ("ws:/path", "missing host"),
        ("ws://", "missing host"),
        ("ws://:8080/", "missing host"),
        ("ws://example.com/#frag", "fragments aren't allowed"),
        ("ws://example.com:99999/", "Port out of range"),
        ("ws://example.com:abc/", "Port could not be cast"),
        ("ws://[::1/", "Invalid IPv6 URL"),
    ],
)
def test_invalid_uri(uri: str, message: str) -> None:
    with pytest.raises(InvalidURI) as exc_info:
        parse_uri(uri)
    assert exc_info.value.uri == uri
    assert message in exc_info.value.msg
    assert str(exc_info.value) == f"{uri} isn't a valid URI: {exc_info.value.msg}"


@pytest.mark.parametrize(
    ("uri", "host_header"),
    [
        ("ws://example.com", "example.com"),
        ("ws://example.com:80", "example.com"),
        ("ws://example.com:443", "example.com:443"),
        ("wss://example.com:443", "example.com"),
        ("wss://example.com:80", "example.com:80"),
        ("ws://example.com:8765", "example.com:8765"),
        ("ws://[::1]", "[::1]"),
        ("ws://[::1]:8765", "[::1]:8765"),
        ("wss://[2001:db8::1]:443", "[2001:db8::1]"),
    ],
)
def test_host_header(uri: str, host_header: str) -> None:
    assert parse_uri(uri).host_header == host_header


@pytest.mark.parametrize(
    ("uri", "resource_name"),
    [
        ("ws://example.com/caf\u00e9", "/caf%C3%A9"),
        ("ws://example.com/a b", "/a%20b"),
        ("ws://example.com/?q=\u2603", "/?q=%E2%98%83"),
        ("ws://example.com/a%20b?c=%2F", "/a%20b?c=%2F"),  # already quoted: unchanged
        ("ws://example.com/p;x=1,y@z:w+v$!*'()~", "/p;x=1,y@z:w+v$!*'()~"),
    ],
)
def test_resource_name_is_ascii_for_the_request_line(uri: str, resource_name: str) -> None:
    # An IRI's path must be percent-encoded to fit an HTTP request line; the
    # server side (parse_request) rejects anything else.
    wsuri = parse_uri(uri)
    assert wsuri.resource_name == resource_name
    request = build_request(wsuri, "dGhlIHNhbXBsZSBub25jZQ==")
    parsed = parse_request(request.serialize())
    assert parsed is not None
    assert parsed[0].path == resource_name


def test_uri_is_frozen() -> None:
    wsuri = parse_uri("ws://example.com")
    with pytest.raises(AttributeError):
        wsuri.port = 81  # type: ignore[misc]


def test_invalid_uri_message_hides_credentials() -> None:
    with pytest.raises(InvalidURI) as info:
        parse_uri("http://alice:s3cret@example.com/")
    assert "s3cret" not in str(info.value)
    assert "alice" not in str(info.value)
    assert "***@example.com" in str(info.value)
