"""Helpers for the sans-I/O tests: build frames byte by byte, decode what the
protocol writes, feed data in chunks.

The decoder here is written independently of ripple's parser (and unmasks
with its own XOR) so that outgoing bytes are checked against RFC 6455 §5.2,
not against the code under test.
"""

from __future__ import annotations

import importlib
import os
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

import pytest

from ripple.protocol.frames import OP_CLOSE, encode_frame
from ripple.protocol.state import Event, Protocol

FIN = 0x80
RSV1 = 0x40
RSV2 = 0x20
RSV3 = 0x10

#: A fixed masking key for hand-built client frames.
KEY = b"\x37\xfa\x21\x3d"


def xor(data: bytes, key: bytes) -> bytes:
    """Mask or unmask with a 4-byte key (a deliberately naive reference)."""
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def cframe(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """A frame as a client sends it (masked): feed it to a server."""
    return encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=True)


def sframe(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0) -> bytes:
    """A frame as a server sends it (unmasked): feed it to a client."""
    return encode_frame(opcode, payload, fin=fin, rsv=rsv, mask=False)


def raw_frame(
    b0: int,
    payload: bytes = b"",
    *,
    key: bytes | None = None,
    length: int | None = None,
    width: int | None = None,
) -> bytes:
    """Build a frame by hand.

    Args:
        b0: the first byte (FIN | RSV | opcode).
        payload: the unmasked payload.
        key: a masking key (sets the mask bit) or None.
        length: the declared length (defaults to len(payload)).
        width: 7, 16 or 64: force the length encoding (for non-minimal lengths).
    """
    n = len(payload) if length is None else length
    if width is None:
        width = 7 if n < 126 else 16 if n < 65536 else 64
    mask_bit = 0x80 if key is not None else 0
    if width == 7:
        head = bytes([b0, mask_bit | n])
    elif width == 16:
        head = bytes([b0, mask_bit | 126]) + struct.pack("!H", n)
    else:
        head = bytes([b0, mask_bit | 127]) + struct.pack("!Q", n)
    if key is None:
        return head + payload
    return head + key + xor(payload, key)


@dataclass
class WireFrame:
    fin: bool
    rsv: int
    opcode: int
    masked: bool
    payload: bytes  # unmasked
    length_width: int  # 7, 16 or 64


def parse_frames(data: bytes) -> list[WireFrame]:
    """Decode a sequence of complete frames; assert nothing is left over."""
    frames: list[WireFrame] = []
    pos = 0
    while pos < len(data):
        b0, b1 = data[pos], data[pos + 1]
        pos += 2
        n = b1 & 0x7F
        width = 7
        if n == 126:
            (n,) = struct.unpack_from("!H", data, pos)
            pos += 2
            width = 16
        elif n == 127:
            (n,) = struct.unpack_from("!Q", data, pos)
            pos += 8
            width = 64
        masked = bool(b1 & 0x80)
        key = b""
        if masked:
            key = data[pos : pos + 4]
            pos += 4
        payload = data[pos : pos + n]
        assert len(payload) == n, "truncated frame"
        pos += n
        if masked:
            payload = xor(payload, key)
        frames.append(WireFrame(bool(b0 & FIN), b0 & 0x70, b0 & 0x0F, masked, payload, width))
    return frames


def close_codes(out: Iterable[bytes]) -> list[int | None]:
    """The close codes of the close frames in `out` (None for an empty payload)."""
    codes: list[int | None] = []
    for f in parse_frames(b"".join(out)):
        if f.opcode == OP_CLOSE:
            codes.append(struct.unpack("!H", f.payload[:2])[0] if f.payload else None)
    return codes


def split(data: bytes, sizes: Sequence[int]) -> list[bytes]:
    """Cut `data` into pieces of the given sizes, cycling; the rest goes last."""
    pieces: list[bytes] = []
    pos = 0
    i = 0
    while pos < len(data):
        size = max(1, sizes[i % len(sizes)]) if sizes else len(data)
        pieces.append(data[pos : pos + size])
        pos += size
        i += 1
    return pieces


def feed(proto: Protocol, pieces: Iterable[bytes]) -> list[Event]:
    """Feed pieces one receive_data call each; return all events."""
    events: list[Event] = []
    for piece in pieces:
        events.extend(proto.receive_data(piece))
        assert_c_ready_cached(proto)
    return events


def assert_c_ready_cached(proto: Protocol) -> None:
    """The flag receive_buffer() checks matches the state it stands for."""
    assert proto._cready == proto._c_ready()


def feed_bytewise(proto: Protocol, data: bytes) -> list[Event]:
    return feed(proto, [data[i : i + 1] for i in range(len(data))])


def speedups() -> ModuleType:
    """ripple._speedups (even under RIPPLE_NO_SPEEDUPS=1); skipped when not
    built, and a failure under CI=true, whose image has a compiler."""
    try:
        return importlib.import_module("ripple._speedups")
    except ImportError:
        if os.environ.get("CI") == "true":
            pytest.fail("ripple._speedups is not built, but CI=true requires it")
        pytest.skip("ripple._speedups (C extension) is not built")
