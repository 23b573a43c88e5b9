"""Tests for the C frame parser and encoder in ripple/_speedups.c (used by state.py
and sending.py).

Masking has its own tests (tests/protocol/test_masking.py). Here the C
``parse_frames`` is checked against the Python parser it sits in front of:
the same bytes, cut the same way, must give the same messages and the same
failure with speedups on and off; and ``encode_frame`` against frames built
by hand from RFC 6455 §5.2.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from protocol_helpers import KEY, close_codes, feed, raw_frame, speedups, split

from ripple.protocol import sending, state
from ripple.protocol.state import CLIENT, SERVER, Protocol, Side


@pytest.fixture
def c() -> ModuleType:
    return speedups()


def frame(side: Side, b0: int, payload: bytes, **kw: Any) -> bytes:
    """A frame as the peer of ``side`` sends it (masked towards a server)."""
    return raw_frame(b0, payload, key=KEY if side is SERVER else None, **kw)


# -- parse_frames -------------------------------------------------------------


@pytest.mark.parametrize("side", [SERVER, CLIENT])
def test_parses_whole_text_and_binary_frames(c: ModuleType, side: Side) -> None:
    data = (
        frame(side, 0x81, "héllo".encode())
        + frame(side, 0x82, b"\x00\x01")
        + frame(side, 0x81, b"")
        + frame(side, 0x82, b"x" * 300)
        + frame(side, 0x81, "é".encode() * 3000)
    )
    events: list[Any] = []
    pos = c.parse_frames(data, 0, len(data), side is SERVER, -1, events)
    assert pos == len(data)
    assert events == ["héllo", b"\x00\x01", "", b"x" * 300, "é" * 3000]
    assert [type(e) for e in events] == [str, bytes, str, bytes, str]


@pytest.mark.parametrize("side", [SERVER, CLIENT])
@pytest.mark.parametrize(
    ("what", "second"),
    [
        ("ping", lambda side: frame(side, 0x89, b"p")),
        ("fragment", lambda side: frame(side, 0x01, b"a")),
        ("continuation", lambda side: frame(side, 0x80, b"a")),
        ("rsv1", lambda side: frame(side, 0xC1, b"a")),
        ("bad opcode", lambda side: frame(side, 0x83, b"a")),
        ("invalid utf-8", lambda side: frame(side, 0x81, b"\xff")),
        ("surrogate", lambda side: frame(side, 0x81, b"\xed\xa0\x80")),
        ("64-bit length", lambda side: frame(side, 0x82, b"y" * 70000)),
        ("non-minimal 16-bit", lambda side: frame(side, 0x82, b"ab", width=16)),
        ("wrong masking", lambda side: raw_frame(0x82, b"a", key=None if side is SERVER else KEY)),
        ("incomplete", lambda side: frame(side, 0x82, b"abcdef")[:-1]),
        ("header only", lambda side: frame(side, 0x82, b"x" * 200)[:3]),
    ],
)
def test_stops_at_what_it_leaves_to_python(
    c: ModuleType, side: Side, what: str, second: Any
) -> None:
    first = frame(side, 0x81, b"ok")
    data = first + second(side)
    if what not in ("incomplete", "header only"):
        data += frame(side, 0x82, b"after")  # parsing doesn't resume past it
    events: list[Any] = []
    pos = c.parse_frames(data, 0, len(data), side is SERVER, -1, events)
    assert (pos, events) == (len(first), ["ok"]), what


def test_stops_before_a_frame_over_max_size(c: ModuleType) -> None:
    data = frame(SERVER, 0x82, b"a" * 10) + frame(SERVER, 0x82, b"b" * 11)
    events: list[Any] = []
    assert c.parse_frames(data, 0, len(data), True, 10, events) == len(data) - 17
    assert events == [b"a" * 10]


def test_respects_pos_and_end_and_reads_bytearrays(c: ModuleType) -> None:
    one = frame(CLIENT, 0x82, b"one")
    data = bytearray(b"junk" + one + one)
    events: list[Any] = []
    assert c.parse_frames(data, 4, 4 + len(one), False, -1, events) == 4 + len(one)
    assert events == [b"one"]


@pytest.mark.parametrize(
    ("args", "exc"),
    [
        ((b"ab", 0, 3, True, -1, []), ValueError),  # end past the buffer
        ((b"ab", 2, 1, True, -1, []), ValueError),  # end before pos
        ((b"ab", -1, 2, True, -1, []), ValueError),
        ((b"ab", 0, 2, True, -1, ()), TypeError),  # events not a list
        (("ab", 0, 2, True, -1, []), TypeError),  # not a buffer
        ((b"ab", 0, 2, True), TypeError),  # too few arguments
    ],
)
def test_programming_errors_raise(c: ModuleType, args: tuple[Any, ...], exc: type) -> None:
    with pytest.raises(exc):
        c.parse_frames(*args)


# Frames for the property tests: mostly common ones, some of every other kind.
_B0 = st.sampled_from([0x81, 0x82, 0x81, 0x82, 0x01, 0x80, 0x00, 0x89, 0x8A, 0x88, 0xC1, 0x83])
_PAYLOAD = st.one_of(
    st.binary(max_size=140),
    st.text(max_size=60).map(str.encode),
    st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xe2\x82", b"x" * 200, b"y" * 1000]),
)


# -- parse_message: a read that is exactly one message ------------------------


@pytest.mark.parametrize("side", [SERVER, CLIENT])
def test_parse_message_returns_a_lone_message(c: ModuleType, side: Side) -> None:
    for b0, payload, message in [
        (0x81, "héllo".encode(), "héllo"),
        (0x82, b"\x00\x01", b"\x00\x01"),
        (0x81, b"", ""),
        (0x82, b"x" * 300, b"x" * 300),
    ]:
        data = bytearray(frame(side, b0, payload) + b"junk after end")
        end = len(data) - len(b"junk after end")
        got = c.parse_message(data, end, side is SERVER, -1)
        assert (got, type(got)) == (message, type(message))


@pytest.mark.parametrize("side", [SERVER, CLIENT])
def test_parse_message_returns_none_for_anything_else(c: ModuleType, side: Side) -> None:
    one = frame(side, 0x81, b"ok")
    others = {
        "two messages": one + one,
        "a message and a ping": one + frame(side, 0x89, b"p"),
        "a ping": frame(side, 0x89, b"p"),
        "a fragment": frame(side, 0x01, b"a"),
        "invalid utf-8": frame(side, 0x81, b"\xff"),
        "incomplete": one[:-1],
        "empty": b"",
        "64-bit length": frame(side, 0x82, b"y" * 70000),
        "wrong masking": raw_frame(0x82, b"a", key=None if side is SERVER else KEY),
    }
    for what, data in others.items():
        assert c.parse_message(data, len(data), side is SERVER, -1) is None, what
    assert c.parse_message(one, len(one), side is SERVER, 1) is None  # over max_size


@pytest.mark.parametrize(
    ("args", "exc"),
    [
        ((b"ab", 3, True, -1), ValueError),  # end past the buffer
        ((b"ab", -1, True, -1), ValueError),
        (("ab", 2, True, -1), TypeError),  # not a buffer
        ((b"ab", 2, True), TypeError),  # too few arguments
    ],
)
def test_parse_message_programming_errors_raise(
    c: ModuleType, args: tuple[Any, ...], exc: type
) -> None:
    with pytest.raises(exc):
        c.parse_message(*args)


@settings(max_examples=300, deadline=None)
@example(side=SERVER, frames=[(0x81, b"hi", False)], cut=0, max_size=-1)
@example(side=CLIENT, frames=[(0x82, b"x" * 200, False)], cut=0, max_size=150)
@given(
    side=st.sampled_from([SERVER, CLIENT]),
    frames=st.lists(st.tuples(_B0, _PAYLOAD, st.booleans()), max_size=3),
    cut=st.integers(0, 8),
    max_size=st.sampled_from([-1, 125, 150]),
)
def test_parse_message_is_parse_frames_of_exactly_one(
    side: Side, frames: list[tuple[int, bytes, bool]], cut: int, max_size: int
) -> None:
    c = speedups()
    data = b""
    for b0, payload, wrong_mask in frames:
        masked = (side is SERVER) is not wrong_mask
        data += raw_frame(b0, payload, key=KEY if masked else None)
    end = max(0, len(data) - cut)
    events: list[Any] = []
    pos = c.parse_frames(data, 0, end, side is SERVER, max_size, events)
    expected = events[0] if pos == end and len(events) == 1 else None
    got = c.parse_message(data, end, side is SERVER, max_size)
    assert (got, type(got)) == (expected, type(expected))


# -- the parser with and without it gives the same results --------------------


def _run(side: Side, pieces: list[bytes], max_size: int, use_c: bool) -> tuple[Any, ...]:
    # Set explicitly: under RIPPLE_NO_SPEEDUPS=1 the module holds None.
    saved = state.parse_frames_c
    state.parse_frames_c = speedups().parse_frames if use_c else None  # type: ignore[misc]
    try:
        proto = Protocol(side, max_size=max_size)
        events = feed(proto, pieces)
    finally:
        state.parse_frames_c = saved  # type: ignore[misc]
    failed = type(proto.failed).__name__ if proto.failed is not None else None
    # repr: Ping and Pong events have no __eq__; str and bytes repr exactly.
    return [repr(e) for e in events], failed, close_codes(proto.data_to_send())


@settings(max_examples=300, deadline=None)
@example(side=SERVER, frames=[(0x82, b"x" * 200, False)], sizes=[], max_size=125)
@example(
    side=CLIENT, frames=[(0x81, b"ok", False), (0x81, b"\xff", False)], sizes=[], max_size=150
)
@example(side=SERVER, frames=[(0x82, b"a", True)], sizes=[], max_size=2**20)
@given(
    side=st.sampled_from([SERVER, CLIENT]),
    frames=st.lists(st.tuples(_B0, _PAYLOAD, st.booleans()), max_size=8),
    sizes=st.lists(st.integers(1, 300), max_size=5),
    max_size=st.sampled_from([125, 150, 1000, 2**20]),
)
def test_c_and_python_parsers_agree(
    side: Side,
    frames: list[tuple[int, bytes, bool]],
    sizes: list[int],
    max_size: int,
) -> None:
    speedups()
    data = b""
    for b0, payload, wrong_mask in frames:
        masked = (side is SERVER) is not wrong_mask
        data += raw_frame(b0, payload, key=KEY if masked else None)
    pieces = split(data, sizes)
    assert _run(side, pieces, max_size, True) == _run(side, pieces, max_size, False)


# -- encode_frame --------------------------------------------------------------


@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 65535, 65536, 70000])
@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_encode_binary_matches_rfc_layout(c: ModuleType, length: int, kind: type) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(length % 256)
    assert c.encode_frame(0x2, kind(payload)) == raw_frame(0x82, payload)


@pytest.mark.parametrize("text", ["", "ascii", "héllo wörld", "€" * 50, "🙂" * 40, "a" * 200])
def test_encode_text_is_utf8(c: ModuleType, text: str) -> None:
    assert c.encode_frame(0x1, text) == raw_frame(0x81, text.encode())


def test_encode_control_opcodes(c: ModuleType) -> None:
    assert c.encode_frame(0x9, b"ping") == raw_frame(0x89, b"ping")
    assert c.encode_frame(0x8, b"\x03\xe8") == raw_frame(0x88, b"\x03\xe8")


@pytest.mark.parametrize(
    ("args", "exc"),
    [
        ((16, b""), ValueError),
        ((-1, b""), ValueError),
        ((1, 5), TypeError),
        ((1, "\ud800"), UnicodeEncodeError),  # a lone surrogate has no UTF-8
        ((1,), TypeError),
    ],
)
def test_encode_errors(c: ModuleType, args: tuple[Any, ...], exc: type) -> None:
    with pytest.raises(exc):
        c.encode_frame(*args)


def test_protocol_uses_the_c_parser_and_encoder_unless_disabled(c: ModuleType) -> None:
    if os.environ.get("RIPPLE_NO_SPEEDUPS") == "1":
        assert state.parse_frames_c is None
        assert sending.encode_frame_c is None
    else:
        assert state.parse_frames_c is c.parse_frames
        assert sending.encode_frame_c is c.encode_frame
