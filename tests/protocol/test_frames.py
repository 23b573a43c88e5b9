"""frames.py: opcodes, frame encoding, close payloads (RFC 6455 §5.2, §5.5.1, §7.4)."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_helpers import FIN, RSV1, RSV2, RSV3, parse_frames

from ripple.exceptions import InvalidUTF8, ProtocolError
from ripple.protocol.frames import (
    OK_CLOSE_CODES,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    check_close,
    encode_frame,
    is_valid_close_code,
)

# -- opcodes -----------------------------------------------------------------


def test_opcode_values_match_rfc() -> None:
    # §5.2: %x0 continuation, %x1 text, %x2 binary, %x8 close, %x9 ping, %xA pong.
    assert (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG) == (0, 1, 2, 8, 9, 10)


# -- encode_frame ------------------------------------------------------------


@pytest.mark.parametrize(
    ("opcode", "fin", "rsv", "first_byte"),
    [
        (OP_CONT, True, 0, 0x80),
        (OP_CONT, False, 0, 0x00),
        (OP_TEXT, True, 0, 0x81),
        (OP_TEXT, False, 0, 0x01),
        (OP_BINARY, True, 0, 0x82),
        (OP_BINARY, False, 0, 0x02),
        (OP_CLOSE, True, 0, 0x88),
        (OP_PING, True, 0, 0x89),
        (OP_PONG, True, 0, 0x8A),
        (OP_TEXT, True, RSV1, 0xC1),
        (OP_BINARY, True, RSV2, 0xA2),
        (OP_BINARY, False, RSV3, 0x12),
        (OP_TEXT, True, RSV1 | RSV2 | RSV3, 0xF1),
    ],
)
def test_encode_first_byte(opcode: int, fin: bool, rsv: int, first_byte: int) -> None:
    data = encode_frame(opcode, b"ab", fin=fin, rsv=rsv)
    assert data == bytes([first_byte, 2]) + b"ab"


@pytest.mark.parametrize(
    ("length", "header"),
    [
        (0, b"\x82\x00"),
        (1, b"\x82\x01"),
        (125, b"\x82\x7d"),
        (126, b"\x82\x7e\x00\x7e"),
        (127, b"\x82\x7e\x00\x7f"),
        (65535, b"\x82\x7e\xff\xff"),
        (65536, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x00"),
        (65537, b"\x82\x7f\x00\x00\x00\x00\x00\x01\x00\x01"),
    ],
    ids=lambda v: str(v) if isinstance(v, int) else None,
)
def test_encode_length_uses_minimal_encoding(length: int, header: bytes) -> None:
    payload = bytes(range(256)) * (length // 256) + bytes(range(length % 256))
    data = encode_frame(OP_BINARY, payload)
    assert data[: len(header)] == header
    assert data[len(header) :] == payload


@pytest.mark.parametrize("length", [0, 1, 3, 4, 5, 125, 126, 65535, 65536])
def test_encode_masked(length: int) -> None:
    payload = bytes(i % 251 for i in range(length))
    data = encode_frame(OP_BINARY, payload, mask=True)
    (frame,) = parse_frames(data)
    assert frame.masked  # mask bit set
    assert frame.payload == payload  # unmasking with the key in the frame gives it back
    assert frame.length_width == (7 if length < 126 else 16 if length < 65536 else 64)


def test_encode_masked_uses_fresh_keys() -> None:
    payload = b"\x00" * 8  # masked zeros show the key
    keys = {encode_frame(OP_BINARY, payload, mask=True)[2:6] for _ in range(20)}
    assert len(keys) > 1
    data = encode_frame(OP_BINARY, payload, mask=True)
    assert data[6:] == data[2:6] * 2  # XOR with the key itself


def test_encode_accepts_bytearray_and_memoryview() -> None:
    assert encode_frame(OP_BINARY, bytearray(b"xy")) == b"\x82\x02xy"
    assert encode_frame(OP_BINARY, memoryview(b"xyz")[1:]) == b"\x82\x02yz"
    (frame,) = parse_frames(encode_frame(OP_BINARY, memoryview(b"hello"), mask=True))
    assert frame.payload == b"hello"


def test_encode_unmasked_by_default() -> None:
    data = encode_frame(OP_TEXT, b"hi")
    assert not data[1] & 0x80
    assert data == b"\x81\x02hi"


@settings(max_examples=200, deadline=None)
@given(
    opcode=st.sampled_from([OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG]),
    payload=st.binary(max_size=300),
    fin=st.booleans(),
    rsv=st.sampled_from([0, RSV1, RSV2, RSV3, RSV1 | RSV3]),
    mask=st.booleans(),
)
def test_encode_decodes_with_reference(
    opcode: int, payload: bytes, fin: bool, rsv: int, mask: bool
) -> None:
    (frame,) = parse_frames(encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=mask))
    assert (frame.opcode, frame.fin, frame.rsv, frame.masked) == (opcode, fin, rsv, mask)
    assert frame.payload == payload


# -- close codes ---------------------------------------------------------------

VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014]
VALID_CODES += [3000, 3999, 4000, 4999]
INVALID_CODES = [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]


@pytest.mark.parametrize("code", VALID_CODES)
def test_valid_close_code(code: int) -> None:
    assert is_valid_close_code(code)


@pytest.mark.parametrize("code", INVALID_CODES)
def test_invalid_close_code(code: int) -> None:
    assert not is_valid_close_code(code)


def test_ok_close_codes() -> None:
    assert frozenset({1000, 1001}) == OK_CLOSE_CODES


# -- Close.parse ---------------------------------------------------------------


@pytest.mark.parametrize("code", VALID_CODES)
def test_close_parse_valid_code(code: int) -> None:
    assert Close.parse(struct.pack("!H", code) + b"bye") == Close(code, "bye")


@pytest.mark.parametrize("code", INVALID_CODES)
def test_close_parse_invalid_code(code: int) -> None:
    with pytest.raises(ProtocolError, match=f"invalid close code {code}") as exc_info:
        Close.parse(struct.pack("!H", code))
    assert type(exc_info.value) is ProtocolError
    assert exc_info.value.code == 1002


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"", Close(1005, "")),  # §7.1.5: no status code
        (b"\x03\xe8", Close(1000, "")),
        (b"\x03\xe8OK", Close(1000, "OK")),
        (b"\x03\xe9caf\xc3\xa9", Close(1001, "café")),
        (b"\x0f\xa0" + "€".encode() * 41, Close(4000, "€" * 41)),  # 123-byte reason
    ],
)
def test_close_parse(payload: bytes, expected: Close) -> None:
    assert Close.parse(payload) == expected


@pytest.mark.parametrize("payload", [b"\x03", b"\x00", b"\xff"])
def test_close_parse_one_byte_payload(payload: bytes) -> None:
    with pytest.raises(ProtocolError, match="1 byte") as exc_info:
        Close.parse(payload)
    assert exc_info.value.code == 1002


@pytest.mark.parametrize(
    "reason",
    [b"\xff", b"\xc3", b"caf\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"ok\x80", b"\xf4\x90\x80\x80"],
)
def test_close_parse_invalid_utf8_reason(reason: bytes) -> None:
    with pytest.raises(InvalidUTF8) as exc_info:
        Close.parse(b"\x03\xe8" + reason)
    assert exc_info.value.code == 1007


@pytest.mark.parametrize(
    ("close", "payload"),
    [
        (Close(1000, ""), b"\x03\xe8"),
        (Close(1001, "bye"), b"\x03\xe9bye"),
        (Close(4999, "é"), b"\x13\x87\xc3\xa9"),
        (Close(1005, ""), b""),
    ],
)
def test_close_serialize(close: Close, payload: bytes) -> None:
    assert close.serialize() == payload
    assert Close.parse(payload) == close


@pytest.mark.parametrize(
    ("close", "text"),
    [
        (Close(1000, ""), "1000 (OK)"),
        (Close(1001, "bye"), "1001 (going away) bye"),
        (Close(1002, ""), "1002 (protocol error)"),
        (Close(1005, ""), "1005 (no status received [internal])"),
        (Close(3001, ""), "3001 (registered)"),
        (Close(4001, "x"), "4001 (private use) x"),
        (Close(2500, ""), "2500 (unknown)"),
    ],
)
def test_close_str(close: Close, text: str) -> None:
    assert str(close) == text


def test_close_equality_and_hash() -> None:
    assert Close(1000, "a") == Close(1000, "a")
    assert Close(1000, "a") != Close(1000, "b")
    assert Close(1000, "a") != Close(1001, "a")
    assert Close(1000, "") != (1000, "")
    assert len({Close(1000, "a"), Close(1000, "a"), Close(1001, "a")}) == 2
    assert repr(Close(1000, "a")) == "Close(1000, 'a')"


# -- check_close (what the application may send) -------------------------------


@pytest.mark.parametrize(
    ("code", "reason", "payload"),
    [
        (1000, "", b"\x03\xe8"),
        (1001, "bye", b"\x03\xe9bye"),
        (1014, "", b"\x03\xf6"),
        (3000, "x" * 123, b"\x0b\xb8" + b"x" * 123),
        (4999, "é" * 61 + "x", b"\x13\x87" + "é".encode() * 61 + b"x"),
        (1005, "", b""),  # an empty close frame
    ],
)
def test_check_close_accepts(code: int, reason: str, payload: bytes) -> None:
    assert check_close(code, reason) == payload


@pytest.mark.parametrize("code", [c for c in INVALID_CODES if c != 1005])
def test_check_close_rejects_code(code: int) -> None:
    with pytest.raises(ProtocolError, match=rf"close code {code} can't be sent: use 1000-1003"):
        check_close(code, "")


def test_check_close_rejects_1005_with_reason() -> None:
    # 1005 means "no code": there is no frame that carries it with a reason.
    with pytest.raises(ProtocolError, match="close code 1005 can't be sent"):
        check_close(1005, "why")


@pytest.mark.parametrize(
    ("reason", "size"),
    [("x" * 124, 124), ("é" * 62, 124), ("€" * 42, 126), ("x" * 1000, 1000)],
)
def test_check_close_rejects_long_reason(reason: str, size: int) -> None:
    with pytest.raises(ProtocolError, match=f"close reason is {size} bytes in UTF-8; at most 123"):
        check_close(1000, reason)


@settings(max_examples=200, deadline=None)
@given(
    code=st.sampled_from(VALID_CODES) | st.integers(3000, 4999),
    reason=st.text(max_size=40),
)
def test_check_close_round_trips(code: int, reason: str) -> None:
    if len(reason.encode()) > 123:
        with pytest.raises(ProtocolError):
            check_close(code, reason)
        return
    payload = check_close(code, reason)
    assert Close.parse(payload) == Close(code, reason)


def test_header_bits_constants() -> None:
    # The frame's first byte: FIN, RSV1-3, opcode (§5.2).
    frame = encode_frame(OP_TEXT, b"", fin=True, rsv=RSV1)
    assert frame[0] == FIN | RSV1 | OP_TEXT
