"""extensions.py: the extension seam and Sec-WebSocket-Extensions (RFC 6455 §9)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_helpers import RSV2

from ripple.exceptions import InvalidHeader, InvalidHeaderFormat
from ripple.protocol.extensions import (
    ClientExtensionFactory,
    Extension,
    ExtensionHeader,
    Frame,
    ServerExtensionFactory,
    parse_extension_header,
    serialize_extension_header,
)
from ripple.protocol.frames import OP_BINARY, OP_TEXT, RSV1


@pytest.mark.parametrize(
    ("header", "parsed"),
    [
        ("", []),
        ("  ", []),
        (",", []),
        (" , ,", []),
        ("foo", [("foo", [])]),
        ("foo, bar", [("foo", []), ("bar", [])]),
        ("foo,bar", [("foo", []), ("bar", [])]),
        (",foo,,bar,", [("foo", []), ("bar", [])]),
        ("foo; a", [("foo", [("a", None)])]),
        ("foo;a;b", [("foo", [("a", None), ("b", None)])]),
        ("foo; a=1", [("foo", [("a", "1")])]),
        ("foo ; a = 1 ; b", [("foo", [("a", "1"), ("b", None)])]),
        ('foo; a="1"', [("foo", [("a", "1")])]),
        ('foo; a=""', [("foo", [("a", "")])]),
        ('foo; a="x,y;z"', [("foo", [("a", "x,y;z")])]),
        ("foo\t;\ta=1", [("foo", [("a", "1")])]),
        (
            "permessage-deflate; client_max_window_bits, permessage-deflate",
            [
                ("permessage-deflate", [("client_max_window_bits", None)]),
                ("permessage-deflate", []),
            ],
        ),
        (
            'permessage-deflate; server_max_window_bits="10"; client_no_context_takeover',
            [
                (
                    "permessage-deflate",
                    [("server_max_window_bits", "10"), ("client_no_context_takeover", None)],
                )
            ],
        ),
    ],
)
def test_parse_extension_header(header: str, parsed: list[ExtensionHeader]) -> None:
    assert parse_extension_header(header) == parsed


@pytest.mark.parametrize(
    ("header", "error", "pos"),
    [
        (";", "expected extension name", 0),
        ("foo, ;a", "expected extension name", 5),
        ("=", "expected extension name", 0),
        ('"foo"', "expected extension name", 0),
        ("foo;", "expected parameter name", 4),
        ("foo; ", "expected parameter name", 5),
        ("foo;;a", "expected parameter name", 4),
        ("foo; =1", "expected parameter name", 5),
        ("foo; a=", "expected value", 7),
        ("foo; a=;b", "expected value", 7),
        ("foo; a=,", "expected value", 7),
        ('foo; a="1', "unterminated quote", 7),
        ("foo bar", "expected comma", 4),
        ("foo; a=1 2", "expected comma", 9),
        ('foo; a="1"2', "expected comma", 10),
        ("foo=1", "expected comma", 3),
    ],
)
def test_parse_extension_header_errors(header: str, error: str, pos: int) -> None:
    with pytest.raises(InvalidHeaderFormat) as exc_info:
        parse_extension_header(header)
    exc = exc_info.value
    assert isinstance(exc, InvalidHeader)
    assert exc.name == "Sec-WebSocket-Extensions"
    assert str(exc) == f"invalid Sec-WebSocket-Extensions header: {error} at {pos} in {header}"


@pytest.mark.parametrize(
    ("extensions", "header"),
    [
        ([], ""),
        ([("foo", [])], "foo"),
        ([("foo", []), ("bar", [])], "foo, bar"),
        ([("foo", [("a", None), ("b", "2")])], "foo; a; b=2"),
        ([("x", [("a", "1")]), ("y", [("b", None)])], "x; a=1, y; b"),
    ],
)
def test_serialize_extension_header(extensions: list[ExtensionHeader], header: str) -> None:
    assert serialize_extension_header(extensions) == header
    assert parse_extension_header(header) == extensions


TOKEN = st.text(
    alphabet="!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
    min_size=1,
    max_size=8,
)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(TOKEN, st.lists(st.tuples(TOKEN, st.none() | TOKEN), max_size=4)), max_size=4
    )
)
def test_serialize_parse_round_trip(extensions: list[ExtensionHeader]) -> None:
    assert parse_extension_header(serialize_extension_header(extensions)) == extensions


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=' \t,;="abc\\', max_size=30) | st.text(max_size=30))
def test_parse_extension_header_raises_only_invalid_header_format(header: str) -> None:
    try:
        parsed = parse_extension_header(header)
    except InvalidHeaderFormat as exc:
        assert exc.name == "Sec-WebSocket-Extensions"
        return
    for name, params in parsed:
        assert name and not set(name) & set(' \t,;="')
        for pname, _ in params:
            assert pname and not set(pname) & set(' \t,;="')


# -- the seam ---------------------------------------------------------------------------


def test_frame() -> None:
    frame = Frame(OP_TEXT, b"abc")
    assert (frame.opcode, frame.data, frame.fin, frame.rsv) == (OP_TEXT, b"abc", True, 0)
    frame = Frame(OP_BINARY, b"x" * 10, False, RSV1)
    assert (frame.fin, frame.rsv) == (False, RSV1)
    assert repr(frame) == "Frame(opcode=2, len=10, fin=False, rsv=64)"


def test_extension_defaults_pass_frames_through() -> None:
    ext = Extension()
    assert ext.rsv_bits == RSV1
    frame = Frame(OP_TEXT, b"abc", True, RSV2)
    assert ext.decode(frame) is frame
    assert ext.decode(frame, max_size=1) is frame
    assert ext.encode(frame) is frame


def test_factories_must_be_implemented() -> None:
    client = ClientExtensionFactory()
    assert client.get_request_params() == []
    with pytest.raises(NotImplementedError):
        client.process_response_params([], [])
    with pytest.raises(NotImplementedError):
        ServerExtensionFactory().process_request_params([], [])
