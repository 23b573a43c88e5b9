"""state.py: the WebSocket protocol after the handshake, bytes in -> events out
(RFC 6455 §5-§7)."""

from __future__ import annotations

import struct
from itertools import pairwise
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from protocol_helpers import (
    FIN,
    KEY,
    RSV1,
    RSV2,
    RSV3,
    assert_c_ready_cached,
    cframe,
    close_codes,
    feed,
    feed_bytewise,
    parse_frames,
    raw_frame,
    sframe,
    split,
)

from ripple.exceptions import InvalidState, InvalidUTF8, PayloadTooBig, ProtocolError
from ripple.protocol.extensions import Extension, Frame
from ripple.protocol.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Close,
    encode_frame,
)
from ripple.protocol.state import CLIENT, SERVER, Event, Ping, Pong, Protocol, Side, State

SIDES = [SERVER, CLIENT]


def peer_frame(side: Side, opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0):
    """A frame as the peer of `side` sends it (masked iff the peer is a client)."""
    if side is SERVER:
        return cframe(opcode, payload, fin=fin, rsv=rsv)
    return sframe(opcode, payload, fin=fin, rsv=rsv)


def peer_key(side: Side) -> bytes | None:
    return KEY if side is SERVER else None


def norm(events: list[Event]) -> list[object]:
    """Events in a comparable form: Ping/Pong become tuples."""
    out: list[object] = []
    for e in events:
        if isinstance(e, Ping):
            out.append(("ping", e.data))
        elif isinstance(e, Pong):
            out.append(("pong", e.data))
        else:
            out.append(e)
    return out


def assert_failed(proto: Protocol, exc_type: type[ProtocolError], code: int) -> None:
    """The connection failed (§7.1.7) with this error and sent exactly one close."""
    assert type(proto.failed) is exc_type, repr(proto.failed)
    assert proto.failed.code == code
    out = proto.data_to_send()
    assert close_codes(out) == [code]
    (close,) = parse_frames(b"".join(out))
    assert close.masked is (proto.side is CLIENT)
    assert close.opcode == OP_CLOSE
    assert proto.close_sent is not None and proto.close_sent.code == code
    # §7.1.1: the server closes TCP; a client waits for the server to.
    assert proto.close_transport is (proto.side is SERVER)
    assert proto.state is State.CLOSING
    # Nothing more is processed after a failure.
    assert proto.receive_data(peer_frame(proto.side, OP_TEXT, b"late")) == []
    assert proto.data_to_send() == []


def assert_ok(proto: Protocol) -> None:
    assert proto.failed is None
    assert proto.state is State.OPEN
    assert not proto.close_transport


# -- every opcode ----------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize(
    ("opcode", "payload", "expected"),
    [
        (OP_TEXT, b"", ""),
        (OP_TEXT, b"hello", "hello"),
        (OP_TEXT, "café ☃ 😀".encode(), "café ☃ 😀"),
        (OP_BINARY, b"", b""),
        (OP_BINARY, b"\x00\xff\x80", b"\x00\xff\x80"),
        (OP_PING, b"", ("ping", b"")),
        (OP_PING, b"p" * 125, ("ping", b"p" * 125)),
        (OP_PONG, b"", ("pong", b"")),
        (OP_PONG, b"\x01\x02", ("pong", b"\x01\x02")),
    ],
)
def test_receive_each_opcode(side: Side, opcode: int, payload: bytes, expected: object) -> None:
    proto = Protocol(side)
    events = proto.receive_data(peer_frame(side, opcode, payload))
    assert norm(events) == [expected]
    assert_ok(proto)
    if isinstance(expected, str):
        assert type(events[0]) is str
    elif isinstance(expected, bytes):
        assert type(events[0]) is bytes


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_receive_close_opcode(side: Side) -> None:
    proto = Protocol(side)
    assert proto.receive_data(peer_frame(side, OP_CLOSE, b"\x03\xe8bye")) == []
    assert proto.close_rcvd == Close(1000, "bye")
    assert proto.state is State.CLOSING
    assert close_codes(proto.data_to_send()) == [1000]


def test_receive_several_frames_in_one_chunk(server: Protocol) -> None:
    data = b"".join(
        [
            cframe(OP_TEXT, b"one"),
            cframe(OP_BINARY, b"two"),
            cframe(OP_PING, b"3"),
            cframe(OP_TEXT, b"four"),
        ]
    )
    assert norm(server.receive_data(data)) == ["one", b"two", ("ping", b"3"), "four"]


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_receive_byte_by_byte(side: Side) -> None:
    proto = Protocol(side)
    data = b"".join(
        [
            peer_frame(side, OP_TEXT, "añb€😀".encode()),
            peer_frame(side, OP_BINARY, bytes(300)),
            peer_frame(side, OP_PONG, b"x"),
        ]
    )
    assert norm(feed_bytewise(proto, data)) == ["añb€😀", bytes(300), ("pong", b"x")]
    assert_ok(proto)


def test_receive_accepts_bytearray_and_memoryview(server: Protocol) -> None:
    assert server.receive_data(bytearray(cframe(OP_TEXT, b"a"))) == ["a"]
    assert server.receive_data(memoryview(cframe(OP_BINARY, b"b"))) == [b"b"]  # type: ignore[arg-type]


# -- payload lengths -------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize(
    ("length", "width"),
    [(0, 7), (125, 7), (126, 16), (127, 16), (65535, 16), (65536, 64), (70000, 64)],
)
def test_receive_lengths(side: Side, length: int, width: int) -> None:
    proto = Protocol(side, max_size=None)
    payload = bytes(i % 256 for i in range(length))
    data = peer_frame(side, OP_BINARY, payload)
    assert parse_frames(data)[0].length_width == width
    assert proto.receive_data(data) == [payload]
    # The same frame in pieces that cut through the extended length field.
    proto = Protocol(side, max_size=None)
    assert feed(proto, [data[:1], data[1:3], data[3:9], data[9:]]) == [payload]
    assert_ok(proto)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize(
    ("length", "width"),
    [(0, 16), (125, 16), (0, 64), (125, 64), (126, 64), (65535, 64)],
)
def test_non_minimal_length_rejected(side: Side, length: int, width: int) -> None:
    proto = Protocol(side)
    data = raw_frame(FIN | OP_BINARY, bytes(length), key=peer_key(side), width=width)
    assert proto.receive_data(data) == []
    assert_failed(proto, ProtocolError, 1002)
    assert "non-minimal" in str(proto.failed)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_64_bit_length_with_high_bit_rejected(side: Side) -> None:
    proto = Protocol(side, max_size=None)
    data = raw_frame(FIN | OP_BINARY, key=peer_key(side), length=2**63, width=64)
    assert proto.receive_data(data) == []
    assert_failed(proto, ProtocolError, 1002)


# -- masking (§5.1, §5.3) ----------------------------------------------------------


def test_server_rejects_unmasked_frame(server: Protocol) -> None:
    assert server.receive_data(sframe(OP_TEXT, b"hi")) == []
    assert_failed(server, ProtocolError, 1002)
    assert "must be masked" in str(server.failed)


def test_client_rejects_masked_frame(client: Protocol) -> None:
    assert client.receive_data(cframe(OP_TEXT, b"hi")) == []
    assert_failed(client, ProtocolError, 1002)
    assert "must not be masked" in str(client.failed)


@pytest.mark.parametrize("opcode", [OP_PING, OP_CLOSE, OP_BINARY])
def test_server_rejects_unmasked_any_opcode(server: Protocol, opcode: int) -> None:
    server.receive_data(sframe(opcode, b""))
    assert_failed(server, ProtocolError, 1002)


def test_server_unmasks_with_frame_key(server: Protocol) -> None:
    data = raw_frame(FIN | OP_BINARY, b"abcdefgh", key=b"\x01\x02\x03\x04")
    assert data[6:] == b"\x60\x60\x60\x60\x64\x64\x64\x6c"
    assert server.receive_data(data) == [b"abcdefgh"]


def test_server_accepts_zero_mask(server: Protocol) -> None:
    assert server.receive_data(raw_frame(FIN | OP_TEXT, b"ok", key=b"\0\0\0\0")) == ["ok"]


# -- RSV bits and extensions (§5.2, §9) --------------------------------------------


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("rsv", [RSV1, RSV2, RSV3, RSV1 | RSV2 | RSV3])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_CLOSE])
def test_rsv_without_extension_rejected(side: Side, rsv: int, opcode: int) -> None:
    proto = Protocol(side)
    assert proto.receive_data(peer_frame(side, opcode, b"", rsv=rsv)) == []
    assert_failed(proto, ProtocolError, 1002)
    assert "reserved bits" in str(proto.failed)


def test_rsv_on_continuation_without_extension_rejected(server: Protocol) -> None:
    server.receive_data(cframe(OP_TEXT, b"a", fin=False))
    server.receive_data(cframe(OP_CONT, b"b", rsv=RSV1))
    assert_failed(server, ProtocolError, 1002)


class RecordingExtension(Extension):
    """Claims RSV1; records what decode() sees and clears RSV1."""

    name = "x-recording"
    rsv_bits = RSV1

    def __init__(self) -> None:
        self.decoded: list[tuple[int, bytes, bool, int]] = []

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        self.decoded.append((frame.opcode, frame.data, frame.fin, frame.rsv))
        return Frame(frame.opcode, frame.data.upper(), frame.fin, frame.rsv & ~RSV1)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_extension_rsv1_accepted_and_decode_called(side: Side) -> None:
    ext = RecordingExtension()
    proto = Protocol(side, extensions=[ext])
    events = proto.receive_data(peer_frame(side, OP_TEXT, b"hello", rsv=RSV1))
    assert events == ["HELLO"]
    assert ext.decoded == [(OP_TEXT, b"hello", True, RSV1)]
    events = proto.receive_data(peer_frame(side, OP_BINARY, b"plain"))
    assert events == [b"PLAIN"]
    assert ext.decoded[-1] == (OP_BINARY, b"plain", True, 0)
    assert_ok(proto)


def test_extension_sees_fragments_and_control_frames(server: Protocol) -> None:
    ext = RecordingExtension()
    proto = Protocol(SERVER, extensions=[ext])
    data = cframe(OP_TEXT, b"ab", fin=False, rsv=RSV1) + cframe(OP_PING, b"p")
    data += cframe(OP_CONT, b"cd")
    assert norm(proto.receive_data(data)) == [("ping", b"P"), "ABCD"]
    assert ext.decoded == [
        (OP_TEXT, b"ab", False, RSV1),
        (OP_PING, b"p", True, 0),
        (OP_CONT, b"cd", True, 0),
    ]


@pytest.mark.parametrize("rsv", [RSV2, RSV3])
def test_extension_claiming_rsv1_does_not_allow_other_bits(rsv: int) -> None:
    ext = RecordingExtension()
    proto = Protocol(SERVER, extensions=[ext])
    proto.receive_data(cframe(OP_TEXT, b"x", rsv=RSV1 | rsv))
    assert_failed(proto, ProtocolError, 1002)
    assert ext.decoded == []


def test_extension_leaving_rsv_set_fails() -> None:
    class Lazy(Extension):
        name = "x-lazy"

    proto = Protocol(SERVER, extensions=[Lazy()])
    proto.receive_data(cframe(OP_TEXT, b"x", rsv=RSV1))
    assert_failed(proto, ProtocolError, 1002)


def test_extension_decode_error_fails_connection() -> None:
    class Strict(Extension):
        name = "x-strict"

        def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
            raise PayloadTooBig("too big once decoded")

    proto = Protocol(SERVER, extensions=[Strict()])
    proto.receive_data(cframe(OP_BINARY, b"x", rsv=RSV1))
    assert_failed(proto, PayloadTooBig, 1009)


class XorMessageExtension(Extension):
    """A per-message transform like permessage-deflate: RSV1 on the first
    frame marks the whole message (continuations carry RSV1 = 0) as
    transformed; every byte is XORed with 0x80 (ASCII -> invalid UTF-8)."""

    name = "x-xor"
    rsv_bits = RSV1

    def __init__(self) -> None:
        self.active = False

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if frame.opcode >= OP_CLOSE:
            return frame
        if frame.opcode != OP_CONT:
            self.active = bool(frame.rsv & RSV1)
        data = bytes(b ^ 0x80 for b in frame.data) if self.active else frame.data
        if frame.fin:
            self.active = False
        return Frame(frame.opcode, data, frame.fin, frame.rsv & ~RSV1)

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode >= OP_CLOSE:
            return frame
        rsv = frame.rsv | RSV1 if frame.opcode != OP_CONT else frame.rsv
        return Frame(frame.opcode, bytes(b ^ 0x80 for b in frame.data), frame.fin, rsv)


def _xor80(data: bytes) -> bytes:
    return bytes(b ^ 0x80 for b in data)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1000])
def test_transforming_extension_gets_whole_frames(side: Side, chunk: int) -> None:
    # Continuation frames of a transformed message have RSV1 = 0, yet their
    # bytes on the wire aren't the text: the protocol must not validate them
    # as UTF-8 (or cut them) before the extension decodes them.
    proto = Protocol(side, extensions=[XorMessageExtension()])
    data = peer_frame(side, OP_TEXT, _xor80(b"hello "), fin=False, rsv=RSV1)
    data += peer_frame(side, OP_CONT, _xor80(b"wonderful "), fin=False)
    data += peer_frame(side, OP_CONT, _xor80(b"world"))
    data += peer_frame(side, OP_TEXT, _xor80(b"again"), rsv=RSV1)
    data += peer_frame(side, OP_TEXT, "plain é".encode())
    assert feed(proto, split(data, [chunk])) == [
        "hello wonderful world",
        "again",
        "plain é",
    ]
    assert_ok(proto)


def test_extension_encode_on_send() -> None:
    for side in SIDES:
        proto = Protocol(side, extensions=[XorMessageExtension()])
        data = proto.send_text("ab", fin=False) + proto.send_continuation(b"cd", fin=True)
        data += proto.send_binary(b"\x01") + proto.send_ping(b"p")
        frames = parse_frames(data)
        assert [(f.opcode, f.rsv, f.fin, f.payload) for f in frames] == [
            (OP_TEXT, RSV1, False, _xor80(b"ab")),
            (OP_CONT, 0, True, _xor80(b"cd")),
            (OP_BINARY, RSV1, True, b"\x81"),
            (OP_PING, 0, True, b"p"),
        ]
        assert all(f.masked is (side is CLIENT) for f in frames)
        # The peer with the same extension reads it back.
        peer = Protocol(CLIENT if side is SERVER else SERVER, extensions=[XorMessageExtension()])
        assert norm(peer.receive_data(data)) == ["abcd", b"\x01", ("ping", b"p")]


# -- opcodes and control frames (§5.2, §5.4, §5.5) ------------------------------


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_reserved_opcode_rejected(side: Side, opcode: int) -> None:
    proto = Protocol(side)
    assert proto.receive_data(peer_frame(side, opcode, b"x")) == []
    assert_failed(proto, ProtocolError, 1002)
    assert f"invalid opcode {opcode:#x}" in str(proto.failed)


def test_reserved_opcode_inside_fragmented_message(server: Protocol) -> None:
    events = server.receive_data(cframe(OP_TEXT, b"a", fin=False) + cframe(0x3, b"b"))
    assert events == []
    assert_failed(server, ProtocolError, 1002)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
@pytest.mark.parametrize("length", [126, 200, 65535, 65536])
def test_control_frame_too_long(side: Side, opcode: int, length: int) -> None:
    proto = Protocol(side)
    payload = b"\x03\xe8" + b"x" * (length - 2)
    # Only the header: the error is known before the payload arrives.
    header = peer_frame(side, opcode, payload)[: 2 + (2 if length < 65536 else 8)]
    header += KEY if side is SERVER else b""
    assert proto.receive_data(header) == []
    assert_failed(proto, ProtocolError, 1002)
    assert "control frame too long" in str(proto.failed)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame(side: Side, opcode: int) -> None:
    proto = Protocol(side)
    assert proto.receive_data(peer_frame(side, opcode, b"", fin=False)) == []
    assert_failed(proto, ProtocolError, 1002)
    assert "fragmented control frame" in str(proto.failed)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_message(side: Side, fin: bool) -> None:
    proto = Protocol(side)
    assert proto.receive_data(peer_frame(side, OP_CONT, b"x", fin=fin)) == []
    assert_failed(proto, ProtocolError, 1002)
    assert "unexpected continuation" in str(proto.failed)


def test_continuation_after_finished_message(server: Protocol) -> None:
    data = cframe(OP_TEXT, b"a", fin=False) + cframe(OP_CONT, b"b") + cframe(OP_CONT, b"c")
    assert server.receive_data(data) == ["ab"]
    assert_failed(server, ProtocolError, 1002)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("first", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
def test_new_data_frame_while_fragmented(side: Side, first: int, second: int) -> None:
    proto = Protocol(side)
    data = peer_frame(side, first, b"a", fin=False) + peer_frame(side, second, b"b")
    assert proto.receive_data(data) == []
    assert_failed(proto, ProtocolError, 1002)
    assert "expected a continuation" in str(proto.failed)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize(
    ("opcode", "parts", "expected"),
    [
        (OP_TEXT, [b"he", b"ll", b"o"], "hello"),
        (OP_TEXT, [b"", b"", b"x", b""], "x"),
        (OP_TEXT, [b"caf\xc3", b"\xa9 \xe2\x98", b"\x83"], "café ☃"),
        (OP_TEXT, [b"\xf0", b"\x9f", b"\x98", b"\x80"], "😀"),
        (OP_BINARY, [b"\x00", b"\x01\x02", b""], b"\x00\x01\x02"),
        (OP_BINARY, [b"", b""], b""),
    ],
)
def test_fragmented_message_reassembled(
    side: Side, opcode: int, parts: list[bytes], expected: object
) -> None:
    frames = [
        peer_frame(side, opcode if i == 0 else OP_CONT, p, fin=i == len(parts) - 1)
        for i, p in enumerate(parts)
    ]
    proto = Protocol(side)
    events: list[Event] = []
    for f in frames[:-1]:
        events += proto.receive_data(f)
    assert events == []  # nothing until the final fragment
    assert proto.receive_data(frames[-1]) == [expected]
    # And all at once, and byte by byte.
    assert Protocol(side).receive_data(b"".join(frames)) == [expected]
    assert feed_bytewise(Protocol(side), b"".join(frames)) == [expected]


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_control_frames_interleaved_in_fragmented_message(side: Side) -> None:
    proto = Protocol(side)
    data = b"".join(
        [
            peer_frame(side, OP_TEXT, b"fra", fin=False),
            peer_frame(side, OP_PING, b"1"),
            peer_frame(side, OP_CONT, b"gme", fin=False),
            peer_frame(side, OP_PONG, b"2"),
            peer_frame(side, OP_PING, b"3"),
            peer_frame(side, OP_CONT, b"nted"),
            peer_frame(side, OP_BINARY, b"next"),
        ]
    )
    events = feed(proto, split(data, [5, 3]))
    assert norm(events) == [("ping", b"1"), ("pong", b"2"), ("ping", b"3"), "fragmented", b"next"]
    pongs = parse_frames(b"".join(proto.data_to_send()))
    assert [(f.opcode, f.payload) for f in pongs] == [(OP_PONG, b"1"), (OP_PONG, b"3")]
    assert_ok(proto)


def test_close_interleaved_in_fragmented_message(server: Protocol) -> None:
    data = cframe(OP_TEXT, b"a", fin=False) + cframe(OP_CLOSE, b"\x03\xe8")
    data += cframe(OP_CONT, b"b")
    assert server.receive_data(data) == []
    assert server.close_rcvd == Close(1000, "")
    assert close_codes(server.data_to_send()) == [1000]


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("payload", [b"", b"ping!", bytes(range(125))])
def test_ping_answered_with_pong(side: Side, payload: bytes) -> None:
    proto = Protocol(side)
    (event,) = proto.receive_data(peer_frame(side, OP_PING, payload))
    assert isinstance(event, Ping)
    assert event.data == payload
    out = proto.data_to_send()
    (pong,) = parse_frames(b"".join(out))
    assert (pong.opcode, pong.fin, pong.rsv, pong.payload) == (OP_PONG, True, 0, payload)
    assert pong.masked is (side is CLIENT)
    assert proto.data_to_send() == []  # cleared
    assert repr(event) == f"Ping({payload!r})"


def test_several_pings_answered_in_order(server: Protocol) -> None:
    server.receive_data(cframe(OP_PING, b"a") + cframe(OP_PING, b"b"))
    pongs = parse_frames(b"".join(server.data_to_send()))
    assert [(f.opcode, f.payload) for f in pongs] == [(OP_PONG, b"a"), (OP_PONG, b"b")]


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_unsolicited_pong(side: Side) -> None:
    proto = Protocol(side)
    (event,) = proto.receive_data(peer_frame(side, OP_PONG, b"surprise"))
    assert isinstance(event, Pong)
    assert event.data == b"surprise"
    assert repr(event) == "Pong(b'surprise')"
    assert proto.data_to_send() == []
    assert_ok(proto)


def test_ping_after_close_sent_not_answered(server: Protocol) -> None:
    server.send_close(1000)
    (event,) = server.receive_data(cframe(OP_PING, b"x"))
    assert isinstance(event, Ping)
    assert server.data_to_send() == []  # nothing may follow our close frame


# -- UTF-8 (§8.1) --------------------------------------------------------------------

INVALID_UTF8 = [
    b"\xff",
    b"\x80",  # lone continuation byte
    b"\xc0\xaf",  # overlong
    b"\xe0\x80\xaf",  # overlong
    b"\xed\xa0\x80",  # surrogate
    b"\xf4\x90\x80\x80",  # above U+10FFFF
    b"\xf5",
    b"caf\xc3",  # truncated at the end of the message
    b"a\xc3(",
    b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
]


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_text(side: Side, payload: bytes) -> None:
    proto = Protocol(side)
    assert proto.receive_data(peer_frame(side, OP_TEXT, payload)) == []
    assert_failed(proto, InvalidUTF8, 1007)


@pytest.mark.parametrize("payload", INVALID_UTF8)
def test_invalid_utf8_binary_is_fine(server: Protocol, payload: bytes) -> None:
    assert server.receive_data(cframe(OP_BINARY, payload)) == [payload]


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_invalid_utf8_at_end_of_fragmented_message(side: Side) -> None:
    proto = Protocol(side)
    data = peer_frame(side, OP_TEXT, b"ok", fin=False) + peer_frame(side, OP_CONT, b"\xe2\x82")
    assert proto.receive_data(data) == []
    assert_failed(proto, InvalidUTF8, 1007)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("bad", [b"\xff", b"\xc0", b"\xed\xa0", b"\xf4\x90", b"\xe0\x80"])
def test_fail_fast_on_first_fragment(side: Side, bad: bytes) -> None:
    # Autobahn 6.4.1: the first fragment is invalid; fail before the rest comes.
    proto = Protocol(side)
    assert proto.receive_data(peer_frame(side, OP_TEXT, b"ok " + bad, fin=False)) == []
    assert_failed(proto, InvalidUTF8, 1007)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_fail_fast_on_middle_fragment(side: Side) -> None:
    proto = Protocol(side)
    proto.receive_data(peer_frame(side, OP_TEXT, "κόσμε".encode(), fin=False))
    assert proto.failed is None
    proto.receive_data(peer_frame(side, OP_CONT, b"\xce\xbc\xce\xb5\xf4\x90\x80\x80", fin=False))
    assert_failed(proto, InvalidUTF8, 1007)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_CONT])
@pytest.mark.parametrize("valid_prefix", [0, 1, 2, 3, 4, 5, 9])
@pytest.mark.parametrize("bad", [b"\xf4\x90", b"\xed\xa0", b"\xff\xff"])
def test_fail_fast_inside_incomplete_frame(
    side: Side, opcode: int, valid_prefix: int, bad: bytes
) -> None:
    # Autobahn 6.4.3/6.4.4: a frame declares 40 bytes; its first bytes
    # contain invalid UTF-8. Fail when that part arrives, without the rest.
    proto = Protocol(side)
    if opcode == OP_CONT:
        proto.receive_data(peer_frame(side, OP_TEXT, b"first", fin=False))
    payload = b"v" * valid_prefix + bad + b"\x80\x80" + b"x" * 40
    payload = payload[:40]
    data = peer_frame(side, opcode, payload)
    head = len(data) - 40
    # First the header and the valid prefix: no error yet.
    assert proto.receive_data(data[: head + valid_prefix]) == []
    assert proto.failed is None
    # Then the invalid bytes (the rest of the frame never comes).
    assert proto.receive_data(data[head + valid_prefix : head + valid_prefix + 2]) == []
    assert_failed(proto, InvalidUTF8, 1007)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_fail_fast_in_single_chunk_with_incomplete_frame(side: Side) -> None:
    proto = Protocol(side)
    data = peer_frame(side, OP_TEXT, b"abc\xffdefghijklmnop")
    assert proto.receive_data(data[:-10]) == []
    assert_failed(proto, InvalidUTF8, 1007)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("chunk", [1, 2, 3, 5, 6, 7, 11])
def test_multibyte_split_across_chunks(side: Side, chunk: int) -> None:
    text = "a€b😀cé" * 7 + "ü"
    proto = Protocol(side)
    data = peer_frame(side, OP_TEXT, text.encode()) + peer_frame(side, OP_TEXT, b"next")
    assert feed(proto, split(data, [chunk])) == [text, "next"]
    assert_ok(proto)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_multibyte_split_across_fragments_and_chunks(side: Side) -> None:
    text = "€😀" * 5
    raw = text.encode()
    cuts = [0, 1, 3, 4, 8, 9, 10, 15, 20, 21, len(raw)]
    parts = [raw[a:b] for a, b in pairwise(cuts)]
    data = b"".join(
        peer_frame(side, OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(parts) - 1)
        for i, p in enumerate(parts)
    )
    for sizes in ([1], [2, 5], [3], [7, 1, 1], [len(data)]):
        proto = Protocol(side)
        assert feed(proto, split(data, sizes)) == [text], sizes
        assert_ok(proto)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    side=st.sampled_from(SIDES),
    text=st.text(max_size=60),
    data=st.data(),
)
def test_random_text_fragmentation_and_chunking(
    side: Side, text: str, data: st.DataObject
) -> None:
    raw = text.encode()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
    bounds = [0, *cuts, len(raw)]
    parts = [raw[a:b] for a, b in pairwise(bounds)]
    wire = b"".join(
        peer_frame(side, OP_TEXT if i == 0 else OP_CONT, p, fin=i == len(parts) - 1)
        for i, p in enumerate(parts)
    )
    sizes = data.draw(st.lists(st.integers(1, 12), min_size=1, max_size=8))
    proto = Protocol(side)
    assert feed(proto, split(wire, sizes)) == [text]
    assert_ok(proto)


# -- the closing handshake (§5.5.1, §7) ----------------------------------------------


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1014, 3000, 4999])
def test_close_echoes_peer_code(side: Side, code: int) -> None:
    proto = Protocol(side)
    assert proto.receive_data(peer_frame(side, OP_CLOSE, struct.pack("!H", code) + b"why")) == []
    assert proto.close_rcvd == Close(code, "why")
    out = proto.data_to_send()
    (echo,) = parse_frames(b"".join(out))
    assert echo.opcode == OP_CLOSE
    assert echo.payload == struct.pack("!H", code)  # the code, without the reason
    assert echo.masked is (side is CLIENT)
    assert proto.close_sent == Close(code, "")
    assert proto.close_rcvd_then_sent is True
    assert proto.state is State.CLOSING
    assert proto.failed is None


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000])
def test_close_with_invalid_code(side: Side, code: int) -> None:
    proto = Protocol(side)
    proto.receive_data(peer_frame(side, OP_CLOSE, struct.pack("!H", code)))
    assert_failed(proto, ProtocolError, 1002)
    assert f"invalid close code {code}" in str(proto.failed)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_close_with_one_byte_payload(side: Side) -> None:
    proto = Protocol(side)
    proto.receive_data(peer_frame(side, OP_CLOSE, b"\x03"))
    assert_failed(proto, ProtocolError, 1002)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_close_with_invalid_utf8_reason(side: Side) -> None:
    proto = Protocol(side)
    proto.receive_data(peer_frame(side, OP_CLOSE, b"\x03\xe8bad \xff"))
    assert_failed(proto, InvalidUTF8, 1007)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_close_with_empty_payload(side: Side) -> None:
    proto = Protocol(side)
    proto.receive_data(peer_frame(side, OP_CLOSE))
    assert proto.close_rcvd == Close(1005, "")
    (echo,) = parse_frames(b"".join(proto.data_to_send()))
    assert (echo.opcode, echo.payload) == (OP_CLOSE, b"")  # 1005 is never sent
    assert proto.close_sent == Close(1005, "")


def test_server_closes_transport_after_peer_close(server: Protocol) -> None:
    server.receive_data(cframe(OP_CLOSE, b"\x03\xe8"))
    assert server.close_transport  # §7.1.1: the server closes TCP first


def test_client_does_not_close_transport_after_peer_close(client: Protocol) -> None:
    client.receive_data(sframe(OP_CLOSE, b"\x03\xe8"))
    assert client.close_rcvd == Close(1000, "")
    assert not client.close_transport  # it waits for the server to close TCP


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_send_close_then_receive_close(side: Side) -> None:
    proto = Protocol(side)
    data = proto.send_close(1001, "going")
    (frame,) = parse_frames(data)
    assert (frame.opcode, frame.payload) == (OP_CLOSE, b"\x03\xe9going")
    assert frame.masked is (side is CLIENT)
    assert proto.state is State.CLOSING
    assert proto.close_sent == Close(1001, "going")
    assert not proto.close_transport
    # Messages still arrive until the peer's close.
    assert proto.receive_data(peer_frame(side, OP_TEXT, b"late")) == ["late"]
    assert proto.receive_data(peer_frame(side, OP_CLOSE, b"\x03\xe9")) == []
    assert proto.close_rcvd == Close(1001, "")
    assert proto.close_rcvd_then_sent is False
    assert proto.data_to_send() == []  # no second close frame
    assert proto.close_transport is (side is SERVER)
    assert proto.closed_ok
    assert proto.failed is None
    assert proto.close_code is None  # not CLOSED until the TCP connection is
    proto.receive_eof()
    assert proto.state is State.CLOSED
    assert proto.close_code == 1001
    assert proto.close_reason == ""


def test_send_close_after_receiving_close_returns_nothing(server: Protocol) -> None:
    server.receive_data(cframe(OP_CLOSE, b"\x03\xe8"))
    assert close_codes(server.data_to_send()) == [1000]
    assert server.send_close(1000) == b""
    assert server.send_close(1001) == b""


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_data_after_close_ignored(side: Side) -> None:
    proto = Protocol(side)
    data = peer_frame(side, OP_TEXT, b"before") + peer_frame(side, OP_CLOSE, b"\x03\xe8")
    data += peer_frame(side, OP_TEXT, b"after") + peer_frame(side, OP_PING, b"p")
    assert proto.receive_data(data) == ["before"]
    assert proto.receive_data(peer_frame(side, OP_BINARY, b"later")) == []
    assert proto.receive_data(b"\xff\xff garbage") == []  # not even parsed
    assert close_codes(proto.data_to_send()) == [1000]  # only the echo, no pong
    assert proto.failed is None


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_second_close_ignored(side: Side) -> None:
    proto = Protocol(side)
    proto.receive_data(peer_frame(side, OP_CLOSE, b"\x03\xe8first"))
    proto.receive_data(peer_frame(side, OP_CLOSE, b"\x03\xe9second"))
    proto.receive_data(peer_frame(side, OP_CLOSE, b"\x00\x00"))  # even an invalid one
    assert proto.close_rcvd == Close(1000, "first")
    assert close_codes(proto.data_to_send()) == [1000]
    assert proto.failed is None


def test_receive_eof_without_close(server: Protocol) -> None:
    server.receive_eof()
    assert server.state is State.CLOSED
    assert server.close_code == 1006
    assert server.close_reason == ""
    assert not server.closed_ok
    assert server.receive_data(cframe(OP_TEXT, b"x")) == []


def test_failure_close_reason_fits_control_frame(server: Protocol) -> None:
    server.fail(ProtocolError("é" * 200))
    (close,) = parse_frames(b"".join(server.data_to_send()))
    assert len(close.payload) <= 125
    assert close.payload[:2] == b"\x03\xea"
    close.payload[2:].decode()  # still valid UTF-8 after truncation


def test_fail_keeps_first_error(server: Protocol) -> None:
    first = ProtocolError("first")
    server.fail(first)
    server.fail(InvalidUTF8("second"))
    assert server.failed is first
    assert close_codes(server.data_to_send()) == [1002]


def test_failure_after_peer_close_sends_nothing_more(server: Protocol) -> None:
    server.receive_data(cframe(OP_CLOSE, b"\x03\xe8"))
    server.data_to_send()
    server.fail(ProtocolError("late"))
    assert server.data_to_send() == []


# -- deferred failure (messages before an error are handled first) ----------------


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize(
    ("bad", "exc_type", "code"),
    [
        (lambda side: peer_frame(side, 0x3, b"x"), ProtocolError, 1002),
        (lambda side: peer_frame(side, OP_TEXT, b"\xff"), InvalidUTF8, 1007),
        (lambda side: peer_frame(side, OP_BINARY, bytes(11)), PayloadTooBig, 1009),
        (lambda side: peer_frame(side, OP_CLOSE, b"\x03"), ProtocolError, 1002),
    ],
)
def test_deferred_failure(side: Side, bad: Any, exc_type: type[ProtocolError], code: int) -> None:
    proto = Protocol(side, max_size=10, defer_failure=True)
    data = peer_frame(side, OP_TEXT, b"one") + peer_frame(side, OP_PING, b"p")
    data += peer_frame(side, OP_BINARY, b"two") + bad(side) + peer_frame(side, OP_TEXT, b"never")
    events = proto.receive_data(data)
    assert norm(events) == ["one", ("ping", b"p"), b"two"]
    # The error waits; the connection isn't failed yet.
    assert type(proto.pending_failure) is exc_type
    assert proto.failed is None
    assert proto.state is State.OPEN
    assert not proto.close_transport
    (pong,) = parse_frames(b"".join(proto.data_to_send()))
    assert (pong.opcode, pong.payload) == (OP_PONG, b"p")
    assert proto.receive_data(peer_frame(side, OP_TEXT, b"later")) == []
    # The caller fails it once the earlier messages are handled.
    proto.fail(proto.pending_failure)
    assert proto.pending_failure is None
    assert_failed(proto, exc_type, code)


def test_deferred_failure_unused_without_error() -> None:
    proto = Protocol(SERVER, defer_failure=True)
    assert proto.receive_data(cframe(OP_TEXT, b"ok")) == ["ok"]
    assert proto.pending_failure is None
    assert_ok(proto)


# -- max_size (§10.4) ------------------------------------------------------------------


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize(("max_size", "length"), [(0, 1), (10, 11), (125, 126), (1000, 65536)])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_declared_length_over_max_size(
    side: Side, max_size: int, length: int, opcode: int
) -> None:
    proto = Protocol(side, max_size=max_size)
    # The header only (with the masking key): no payload at all is fed.
    header = raw_frame(FIN | opcode, key=peer_key(side), length=length)
    assert len(header) <= 14
    assert proto.receive_data(header) == []
    assert_failed(proto, PayloadTooBig, 1009)


def test_declared_length_checked_before_mask_key(server: Protocol) -> None:
    # Even the 4 key bytes aren't needed to know the frame is too big.
    proto = Protocol(SERVER, max_size=100)
    proto.receive_data(b"\x82\xfe\x10\x00")
    assert_failed(proto, PayloadTooBig, 1009)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_max_size_exactly(side: Side, opcode: int) -> None:
    proto = Protocol(side, max_size=10)
    events = proto.receive_data(peer_frame(side, opcode, b"0123456789"))
    assert events == ["0123456789" if opcode == OP_TEXT else b"0123456789"]
    assert_ok(proto)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_fragments_over_max_size(side: Side, opcode: int) -> None:
    proto = Protocol(side, max_size=10)
    assert proto.receive_data(peer_frame(side, opcode, b"01234", fin=False)) == []
    assert proto.receive_data(peer_frame(side, OP_CONT, b"56789", fin=False)) == []
    assert proto.failed is None
    # The header of the next fragment is enough.
    header = peer_frame(side, OP_CONT, b"x")[:2]
    assert proto.receive_data(header) == []
    assert_failed(proto, PayloadTooBig, 1009)


def test_fragments_up_to_max_size_then_new_message(server: Protocol) -> None:
    proto = Protocol(SERVER, max_size=4)
    data = cframe(OP_BINARY, b"ab", fin=False) + cframe(OP_CONT, b"cd")
    data += cframe(OP_TEXT, b"efgh")
    assert proto.receive_data(data) == [b"abcd", "efgh"]  # the count restarts
    assert_ok(proto)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_control_frames_not_counted_in_max_size(side: Side) -> None:
    proto = Protocol(side, max_size=3)
    data = peer_frame(side, OP_TEXT, b"ab", fin=False) + peer_frame(side, OP_PING, b"x" * 100)
    data += peer_frame(side, OP_CONT, b"c")
    assert norm(proto.receive_data(data)) == [("ping", b"x" * 100), "abc"]
    assert_ok(proto)


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_max_size_none_is_unlimited(side: Side) -> None:
    proto = Protocol(side, max_size=None)
    big = bytes(3 * 2**20)
    data = peer_frame(side, OP_BINARY, big[: 2**20], fin=False)
    data += peer_frame(side, OP_CONT, big[2**20 :])
    assert proto.receive_data(data) == [big]
    assert_ok(proto)


def test_default_max_size_is_one_mib(server: Protocol) -> None:
    assert server.max_size == 2**20
    assert server.receive_data(cframe(OP_BINARY, bytes(2**20))) == [bytes(2**20)]
    server.receive_data(raw_frame(FIN | OP_BINARY, key=KEY, length=2**20 + 1))
    assert_failed(server, PayloadTooBig, 1009)


# -- sending --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "arg", "opcode", "payload"),
    [
        ("send_text", "héllo", OP_TEXT, "héllo".encode()),
        ("send_text", "", OP_TEXT, b""),
        ("send_binary", b"\x00\x01", OP_BINARY, b"\x00\x01"),
        ("send_binary", bytearray(b"ba"), OP_BINARY, b"ba"),
        ("send_binary", memoryview(b"mv"), OP_BINARY, b"mv"),
        ("send_binary", bytes(70000), OP_BINARY, bytes(70000)),
        ("send_ping", b"pi", OP_PING, b"pi"),
        ("send_pong", b"po", OP_PONG, b"po"),
        ("send_close", 1000, OP_CLOSE, b"\x03\xe8"),
    ],
)
def test_send_masking(method: str, arg: object, opcode: int, payload: bytes) -> None:
    for side in SIDES:
        data = getattr(Protocol(side), method)(arg)
        (frame,) = parse_frames(data)
        assert (frame.opcode, frame.fin, frame.rsv, frame.payload) == (opcode, True, 0, payload)
        # §5.1: a client masks every frame; a server masks none.
        assert frame.masked is (side is CLIENT)


def test_client_masks_with_fresh_keys(client: Protocol) -> None:
    keys = {client.send_binary(bytes(4))[2:6] for _ in range(20)}
    assert len(keys) > 1


@pytest.mark.parametrize("side", SIDES, ids=["server", "client"])
def test_send_fragmented(side: Side) -> None:
    proto = Protocol(side)
    data = proto.send_text("frag", fin=False)
    data += proto.send_ping(b"in between")
    data += proto.send_continuation(b"men", fin=False)
    data += proto.send_continuation("té".encode(), fin=True)
    data += proto.send_binary(b"b1", fin=False) + proto.send_continuation(b"b2", fin=True)
    frames = parse_frames(data)
    assert [(f.opcode, f.fin, f.payload) for f in frames] == [
        (OP_TEXT, False, b"frag"),
        (OP_PING, True, b"in between"),
        (OP_CONT, False, b"men"),
        (OP_CONT, True, "té".encode()),
        (OP_BINARY, False, b"b1"),
        (OP_CONT, True, b"b2"),
    ]
    peer = Protocol(CLIENT if side is SERVER else SERVER)
    assert norm(peer.receive_data(data)) == [("ping", b"in between"), "fragmenté", b"b1b2"]


@pytest.mark.parametrize(
    "calls",
    [
        [("send_continuation", b"x", True)],
        [("send_continuation", b"x", False)],
        [("send_text", "a", False), ("send_text", "b", True)],
        [("send_text", "a", False), ("send_binary", b"b", True)],
        [("send_binary", b"a", False), ("send_text", "b", False)],
        [
            ("send_binary", b"a", False),
            ("send_continuation", b"b", True),
            ("send_continuation", b"c", True),
        ],
    ],
)
def test_fragmentation_order_errors(calls: list[tuple[str, object, bool]]) -> None:
    for side in SIDES:
        proto = Protocol(side)
        *ok, (method, arg, fin) = calls
        for m, a, f in ok:
            getattr(proto, m)(a, fin=f)
        with pytest.raises(InvalidState, match="fragmented message"):
            getattr(proto, method)(arg, fin=fin)


@pytest.mark.parametrize(
    ("method", "arg"),
    [
        ("send_text", "x"),
        ("send_binary", b"x"),
        ("send_ping", b"x"),
        ("send_pong", b"x"),
    ],
)
@pytest.mark.parametrize("how", ["sent", "received", "failed", "eof"])
def test_send_after_close(method: str, arg: object, how: str) -> None:
    for side in SIDES:
        proto = Protocol(side)
        if how == "sent":
            proto.send_close()
        elif how == "received":
            proto.receive_data(peer_frame(side, OP_CLOSE, b"\x03\xe8"))
        elif how == "failed":
            proto.receive_data(b"\x8f\x80\x00\x00\x00\x00")  # reserved opcode
            assert proto.failed is not None
        else:
            proto.receive_eof()
        with pytest.raises(InvalidState):
            getattr(proto, method)(arg)


def test_send_continuation_after_close(server: Protocol) -> None:
    server.send_text("a", fin=False)
    server.send_close()
    with pytest.raises(InvalidState):
        server.send_continuation(b"b", fin=True)


def test_send_close_twice(server: Protocol) -> None:
    assert server.send_close(1000) != b""
    assert server.send_close(1000) == b""
    assert server.close_sent == Close(1000, "")


def test_send_close_after_eof(server: Protocol) -> None:
    server.receive_eof()
    assert server.send_close(1000) == b""


@pytest.mark.parametrize(
    ("args", "payload", "sent"),
    [
        ((), b"\x03\xe8", Close(1000, "")),
        ((1001,), b"\x03\xe9", Close(1001, "")),
        ((4000, "app"), b"\x0f\xa0app", Close(4000, "app")),
        ((1005,), b"", Close(1005, "")),
    ],
)
def test_send_close_payload(
    server: Protocol, args: tuple[object, ...], payload: bytes, sent: Close
) -> None:
    (frame,) = parse_frames(server.send_close(*args))  # type: ignore[arg-type]
    assert frame.payload == payload
    assert server.close_sent == sent


@pytest.mark.parametrize(
    ("code", "reason"), [(1005, "x"), (1006, ""), (999, ""), (1000, "x" * 124)]
)
def test_send_close_invalid(server: Protocol, code: int, reason: str) -> None:
    with pytest.raises(ProtocolError):
        server.send_close(code, reason)
    assert server.close_sent is None
    assert server.state is State.OPEN


@pytest.mark.parametrize("method", ["send_ping", "send_pong"])
@pytest.mark.parametrize("size", [126, 1000])
def test_control_payload_too_long(method: str, size: int) -> None:
    for side in SIDES:
        with pytest.raises(ProtocolError, match=f"control frame payload is {size} bytes"):
            getattr(Protocol(side), method)(bytes(size))


@pytest.mark.parametrize("method", ["send_ping", "send_pong"])
def test_control_payload_125_ok(method: str) -> None:
    (frame,) = parse_frames(getattr(Protocol(SERVER), method)(bytes(125)))
    assert len(frame.payload) == 125


def test_protocol_attributes() -> None:
    proto = Protocol(CLIENT, max_size=5)
    assert proto.side is CLIENT and proto.mask
    assert proto.max_size == 5
    assert proto.extensions == []
    assert proto.state is State.OPEN
    assert proto.close_rcvd is None and proto.close_sent is None
    assert proto.close_rcvd_then_sent is None
    assert proto.close_code is None and proto.close_reason is None
    assert not Protocol(SERVER).mask


# -- hypothesis: arbitrary input never raises ----------------------------------------

FRAME_BYTE0 = st.integers(0, 255)


@st.composite
def wire_soup(draw: st.DrawFn, side: Side) -> bytes:
    """Mostly frame-shaped bytes (random headers, masking, lengths), some junk."""
    pieces: list[bytes] = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 9))
        if kind == 0:
            pieces.append(draw(st.binary(max_size=30)))
            continue
        b0 = (
            draw(FRAME_BYTE0)
            if kind == 1
            else draw(
                st.sampled_from([0x81, 0x82, 0x01, 0x02, 0x00, 0x80, 0x88, 0x89, 0x8A, 0xC1])
            )
        )
        payload = draw(
            st.binary(max_size=140)
            | st.text(max_size=40).map(str.encode)
            | st.sampled_from([b"\x03\xe8", b"\x03\xe8ok", b"\x00", b"\x03\xe8\xff", b""])
        )
        masked = draw(st.booleans()) if kind == 2 else side is SERVER
        key = draw(st.binary(min_size=4, max_size=4)) if masked else None
        length = draw(st.sampled_from([None] * 5 + [0, 1, 126, 2**16, 2**40, 2**63]))
        n = len(payload) if length is None else length
        width = draw(st.sampled_from([None, None, None, 7, 16, 64]))
        if (width == 7 and n > 125) or (width == 16 and n > 65535):
            width = None  # can't be encoded that way
        pieces.append(raw_frame(b0, payload, key=key, length=length, width=width))
    return b"".join(pieces)


def check_invariants(proto: Protocol, events: list[Event]) -> None:
    for event in events:
        assert type(event) in (str, bytes, Ping, Pong)
    out = b"".join(proto.data_to_send())
    frames = parse_frames(out)  # whatever it queued is well-formed
    assert all(f.masked is (proto.side is CLIENT) for f in frames)
    assert all(f.opcode in (OP_PONG, OP_CLOSE) for f in frames)
    if proto.failed is not None:
        assert isinstance(proto.failed, ProtocolError)
        assert proto.failed.code in (1002, 1007, 1009)
        assert proto.close_transport is (proto.side is SERVER)
        closes = [f for f in frames if f.opcode == OP_CLOSE]
        assert len(closes) == 1
        assert struct.unpack("!H", closes[0].payload[:2])[0] == proto.failed.code
        assert len(closes[0].payload) <= 125


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    side=st.sampled_from(SIDES),
    max_size=st.sampled_from([None, 0, 10, 200, 2**20]),
    data=st.data(),
)
def test_parser_never_raises(side: Side, max_size: int | None, data: st.DataObject) -> None:
    wire = data.draw(wire_soup(side) | st.binary(max_size=200))
    sizes = data.draw(st.lists(st.integers(1, 20), min_size=1, max_size=6))
    proto = Protocol(side, max_size=max_size)
    events = feed(proto, split(wire, sizes))
    check_invariants(proto, events)
    # Chunking changes nothing: the same bytes in one piece give the same result.
    whole = Protocol(side, max_size=max_size)
    assert norm(whole.receive_data(wire)) == norm(events)
    assert type(whole.failed) is type(proto.failed)
    assert whole.close_rcvd == proto.close_rcvd
    # With defer_failure (what server.py and client.py use), the same events
    # come out and the same error waits in pending_failure instead.
    deferred = Protocol(side, max_size=max_size, defer_failure=True)
    assert norm(feed(deferred, split(wire, sizes))) == norm(events)
    assert deferred.failed is None
    assert type(deferred.pending_failure) is type(proto.failed)
    if deferred.pending_failure is not None:
        assert all(f.opcode == OP_PONG for f in parse_frames(b"".join(deferred.data_to_send())))
        assert deferred.receive_data(wire) == []  # nothing more is parsed
        deferred.fail(deferred.pending_failure)
        assert deferred.pending_failure is None
        check_invariants(deferred, [])


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from(SIDES), junk=st.binary(min_size=1, max_size=64))
def test_parser_after_valid_traffic_never_raises(side: Side, junk: bytes) -> None:
    proto = Protocol(side)
    events = proto.receive_data(peer_frame(side, OP_TEXT, b"hi") + junk)
    assert events[:1] == ["hi"]
    check_invariants(proto, events)


# -- hypothesis: encode -> parse round trip --------------------------------------------


@st.composite
def conversation(draw: st.DrawFn) -> tuple[list[tuple[int, bytes, bool]], list[object]]:
    """Frames (opcode, payload, fin) making up random messages, and the events expected."""
    frames: list[tuple[int, bytes, bool]] = []
    expected: list[object] = []
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["text", "binary", "ping", "pong"]))
        if kind in ("ping", "pong"):
            payload = draw(st.binary(max_size=125))
            frames.append((OP_PING if kind == "ping" else OP_PONG, payload, True))
            expected.append((kind, payload))
            continue
        if kind == "text":
            message: str | bytes = draw(st.text(max_size=80))
            raw = message.encode()  # type: ignore[union-attr]
        else:
            message = raw = draw(st.binary(max_size=300))
        cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=4)))
        bounds = [0, *cuts, len(raw)]
        parts = [raw[a:b] for a, b in pairwise(bounds)]
        for i, part in enumerate(parts):
            opcode = (OP_TEXT if kind == "text" else OP_BINARY) if i == 0 else OP_CONT
            last = i == len(parts) - 1
            frames.append((opcode, part, last))
            if not last and draw(st.booleans()):
                ping = draw(st.binary(max_size=10))
                frames.append((OP_PING, ping, True))
                expected.append(("ping", ping))
        expected.append(message)
    return frames, expected


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    side=st.sampled_from(SIDES),
    conv=conversation(),
    close=st.none()
    | st.tuples(st.sampled_from([1000, 1001, 1011, 3000, 4999]), st.text(max_size=20)),
    data=st.data(),
)
def test_round_trip(
    side: Side,
    conv: tuple[list[tuple[int, bytes, bool]], list[object]],
    close: tuple[int, str] | None,
    data: st.DataObject,
) -> None:
    frames, expected = conv
    wire = b"".join(
        encode_frame(op, payload, fin=fin, mask=side is SERVER) for op, payload, fin in frames
    )
    if close is not None:
        wire += encode_frame(
            OP_CLOSE, Close(*close).serialize(), mask=side is SERVER
        ) + peer_frame(side, OP_TEXT, b"ignored")
    sizes = data.draw(st.lists(st.integers(1, 64), min_size=1, max_size=6))
    proto = Protocol(side, max_size=None)
    assert norm(feed(proto, split(wire, sizes))) == expected
    assert proto.failed is None
    out = parse_frames(b"".join(proto.data_to_send()))
    pings = [e[1] for e in expected if isinstance(e, tuple) and e[0] == "ping"]
    assert [f.payload for f in out if f.opcode == OP_PONG] == pings
    if close is None:
        assert proto.close_rcvd is None
        assert not [f for f in out if f.opcode == OP_CLOSE]
    else:
        assert proto.close_rcvd == Close(*close)
        assert [f.payload[:2] for f in out if f.opcode == OP_CLOSE] == [
            struct.pack("!H", close[0])
        ]
        assert proto.close_transport is (side is SERVER)


@settings(max_examples=200, deadline=None)
@given(
    sender_side=st.sampled_from(SIDES),
    messages=st.lists(st.text(max_size=50) | st.binary(max_size=200), max_size=5),
)
def test_send_then_receive(sender_side: Side, messages: list[str | bytes]) -> None:
    sender = Protocol(sender_side)
    receiver = Protocol(CLIENT if sender_side is SERVER else SERVER)
    wire = b"".join(
        sender.send_text(m) if isinstance(m, str) else sender.send_binary(m) for m in messages
    )
    assert feed(receiver, split(wire, [7])) == messages
    assert receiver.failed is None


# -- large frames arriving in several reads ----------------------------------


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("sizes", [[65536], [100, 70000, 3], [262144], [1, 2, 65533, 9999]])
def test_large_binary_frames_across_reads(side: Side, sizes: list[int]) -> None:
    # Frames over 64 KiB are received in place (the sink) read by read;
    # what follows them in the last read (more frames, a ping) still counts.
    proto = Protocol(side, max_size=None)
    big = bytes(range(256)) * 1200  # 307,200 bytes: a 64-bit length
    mid = bytes(i * 7 % 256 for i in range(65535))  # the largest 16-bit length
    wire = (
        peer_frame(side, OP_TEXT, b"before")
        + peer_frame(side, OP_BINARY, big)
        + peer_frame(side, OP_BINARY, mid)
        + peer_frame(side, OP_PING, b"p")
        + peer_frame(side, OP_BINARY, mid[:1000], fin=False)
        + peer_frame(side, OP_CONT, big, fin=True)
        + peer_frame(side, OP_TEXT, b"after")
    )
    events = feed(proto, split(wire, sizes))
    assert norm(events) == ["before", big, mid, ("ping", b"p"), mid[:1000] + big, "after"]
    assert_ok(proto)
    assert proto.sink is None and not proto._buf


def feed_like_the_connection(proto: Protocol, data: bytes, sizes: list[int]) -> list[Any]:
    """Feed as Connection does: reads land in the sink's missing part while
    there is one (receive_sink), else in a reused buffer (receive_buffer)."""
    events: list[Any] = []
    shared = memoryview(bytearray(2**18))
    pos = 0
    i = 0
    while pos < len(data):
        size = max(1, sizes[i % len(sizes)])
        i += 1
        in_place = proto.sink is not None and proto.sink.in_place
        target = proto.sink.missing() if in_place else shared  # type: ignore[union-attr]
        assert target is not None
        n = min(size, len(target), len(data) - pos)
        target[:n] = data[pos : pos + n]
        pos += n
        if in_place:
            events += proto.receive_sink(n)
        else:
            events += proto.receive_buffer(shared, n)
            shared[:n] = b"\xee" * n  # the buffer is reused: nothing may point into it
        assert_c_ready_cached(proto)
    return events


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("sizes", [[65536], [100, 70000, 3], [262144], [1000, 7, 65533, 9999]])
def test_large_binary_frames_read_in_place(side: Side, sizes: list[int]) -> None:
    proto = Protocol(side, max_size=None)
    big = bytes(range(256)) * 1200
    mid = bytes(i * 7 % 256 for i in range(65535))
    wire = (
        peer_frame(side, OP_TEXT, b"before")
        + peer_frame(side, OP_BINARY, big)
        + peer_frame(side, OP_PING, b"p")
        + peer_frame(side, OP_BINARY, mid[:1000], fin=False)
        + peer_frame(side, OP_CONT, big, fin=True)
        + peer_frame(side, OP_BINARY, mid)
        + peer_frame(side, OP_TEXT, b"after")
    )
    events = feed_like_the_connection(proto, wire, sizes)
    assert norm(events) == ["before", big, ("ping", b"p"), mid[:1000] + big, mid, "after"]
    assert [type(e) for e in events if not isinstance(e, Ping)] == [str, bytes, bytes, bytes, str]
    assert_ok(proto)
    assert proto.sink is None and not proto._buf


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("end", ["eof", "fail"])
def test_nothing_is_parsed_after_eof_or_failure(side: Side, end: str) -> None:
    # The I/O layer ends a connection from outside receive_*() too (TCP
    # EOF, a timeout): the flag that lets C take a whole buffer must drop.
    proto = Protocol(side)
    assert_c_ready_cached(proto)
    if end == "eof":
        proto.receive_eof()
    else:
        proto.fail(ProtocolError("ended by the I/O layer"))
    assert_c_ready_cached(proto)
    wire = peer_frame(side, OP_TEXT, b"late")
    assert proto.receive_buffer(memoryview(bytearray(wire)), len(wire)) == []


@pytest.mark.parametrize("side", SIDES)
def test_a_huge_declared_length_reserves_nothing(side: Side) -> None:
    # max_size=None: a header may declare 2^62 bytes; nothing is allocated
    # for it up front, and what arrives is kept as it comes.
    proto = Protocol(side, max_size=None)
    wire = peer_frame(side, OP_BINARY, b"x" * 70000)
    header = bytearray(wire[:10])
    header[2:10] = (2**62).to_bytes(8, "big")  # the 64-bit length
    assert proto.receive_data(bytes(header) + wire[10:]) == []
    assert proto.sink is not None and not proto.sink.in_place
    assert proto.failed is None


def test_receive_sink_without_a_sink_is_a_programming_error() -> None:
    with pytest.raises(AssertionError):
        Protocol(SERVER).receive_sink(1)


@pytest.mark.parametrize("side", SIDES)
def test_large_text_frame_across_reads_still_fails_fast(side: Side) -> None:
    # Text isn't collected blindly: invalid UTF-8 fails before the frame is whole.
    proto = Protocol(side, max_size=None)
    wire = peer_frame(side, OP_TEXT, b"a" * 1000 + b"\xff" + b"a" * 100000)
    proto.receive_data(wire[:5000])
    assert_failed(proto, InvalidUTF8, 1007)


@pytest.mark.parametrize("side", SIDES)
def test_large_frame_over_max_size_rejected_before_collecting(side: Side) -> None:
    proto = Protocol(side, max_size=100000)
    wire = peer_frame(side, OP_BINARY, b"x" * 100001)
    proto.receive_data(wire[:20])
    assert_failed(proto, PayloadTooBig, 1009)
    assert proto.sink is None


@pytest.mark.parametrize("side", SIDES)
def test_eof_inside_a_large_frame(side: Side) -> None:
    proto = Protocol(side, max_size=None)
    wire = peer_frame(side, OP_BINARY, b"x" * 100000)
    assert proto.receive_data(wire[:70000]) == []
    assert proto.sink is not None
    proto.receive_eof()
    assert proto.sink is None
    assert proto.receive_data(wire[70000:]) == []


@pytest.mark.parametrize("side", [SERVER, CLIENT])
def test_many_tiny_fragments_reassemble(side: Side) -> None:
    # Over _MERGE_PARTS parts: the merged ones and the rest join in order;
    # UTF-8 sequences split across fragments and empty fragments included.
    proto = Protocol(side)
    text = "é€a" * 400
    raw = text.encode()
    frames = [peer_frame(side, OP_TEXT, raw[:1], fin=False)]
    for i in range(1, len(raw)):
        frames.append(peer_frame(side, OP_CONT, raw[i : i + 1], fin=False))
        if i % 7 == 0:
            frames.append(peer_frame(side, OP_CONT, b"", fin=False))
    frames.append(peer_frame(side, OP_CONT, b"", fin=True))
    data = bytes(range(256)) * 3
    frames.append(peer_frame(side, OP_BINARY, data[:1], fin=False))
    frames += [peer_frame(side, OP_CONT, data[i : i + 1], fin=False) for i in range(1, len(data))]
    frames.append(peer_frame(side, OP_CONT, b"", fin=True))
    assert proto.receive_data(b"".join(frames)) == [text, data]
    assert_ok(proto)


def test_large_frame_kept_from_a_reused_bytearray(server: Protocol) -> None:
    # A caller may reuse its buffer between calls: a large frame collected
    # over several calls must not keep references to it.
    payload = bytes(range(256)) * 512  # 128 KiB: the chunked path
    frame = peer_frame(SERVER, OP_BINARY, payload)
    buf = bytearray(frame[:70_000])
    events = server.receive_data(buf)
    buf[:] = b"\0" * len(buf)
    rest = bytearray(frame[70_000:])
    events += server.receive_data(rest)
    assert events == [payload]


def test_held_pongs_owe_only_the_latest(server: Protocol) -> None:
    # §5.5.3: while writes are stalled, only the most recent ping is answered.
    server.hold_pongs()
    pings = b"".join(peer_frame(SERVER, OP_PING, b"p%d" % i) for i in range(100))
    events = server.receive_data(pings)
    assert [e.data for e in events if isinstance(e, Ping)] == [b"p%d" % i for i in range(100)]
    assert server.data_to_send() == []
    server.release_pongs()
    assert server.data_to_send() == [b"\x8a\x03p99"]
    server.release_pongs()  # nothing more owed
    assert server.data_to_send() == []
    server.receive_data(peer_frame(SERVER, OP_PING, b"x"))
    assert server.data_to_send() == [b"\x8a\x01x"]  # answered at once again


def test_no_held_pong_after_our_close(server: Protocol) -> None:
    server.hold_pongs()
    server.receive_data(peer_frame(SERVER, OP_PING, b"late"))
    server.send_close(1000)
    server.release_pongs()
    assert b"\x8a" not in b"".join(server.data_to_send())
