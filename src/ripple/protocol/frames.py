"""Frame format (RFC 6455 §5): opcodes, header encoding, close payloads.

Parsing lives in :mod:`ripple.protocol.state`, in one loop over the receive
buffer; this module holds what both directions share.
"""

from __future__ import annotations

import struct
from typing import Final

from ..exceptions import InvalidUTF8, ProtocolError
from .masking import apply_mask, encode_frame_c, new_mask

__all__ = [
    "CLOSE_CODE_EXPLANATIONS",
    "OK_CLOSE_CODES",
    "OP_BINARY",
    "OP_CLOSE",
    "OP_CONT",
    "OP_PING",
    "OP_PONG",
    "OP_TEXT",
    "Close",
    "encode_frame",
]

OP_CONT: Final = 0x0
OP_TEXT: Final = 0x1
OP_BINARY: Final = 0x2
OP_CLOSE: Final = 0x8
OP_PING: Final = 0x9
OP_PONG: Final = 0xA

DATA_OPCODES: Final = frozenset((OP_CONT, OP_TEXT, OP_BINARY))
CONTROL_OPCODES: Final = frozenset((OP_CLOSE, OP_PING, OP_PONG))

FIN: Final = 0x80
RSV1: Final = 0x40
RSV2: Final = 0x20
RSV3: Final = 0x10
MASK_BIT: Final = 0x80

# Precompiled packers: struct.Struct skips the format-string cache lookup.
PACK_2 = struct.Struct("!BB").pack
PACK_4 = struct.Struct("!BBH").pack
PACK_10 = struct.Struct("!BBQ").pack
UNPACK_H = struct.Struct("!H").unpack_from
UNPACK_Q = struct.Struct("!Q").unpack_from

MAX_CONTROL_PAYLOAD: Final = 125

CLOSE_CODE_EXPLANATIONS: Final[dict[int, str]] = {
    1000: "OK",
    1001: "going away",
    1002: "protocol error",
    1003: "unsupported data",
    1005: "no status received [internal]",
    1006: "connection closed abnormally [internal]",
    1007: "invalid frame payload data",
    1008: "policy violation",
    1009: "message too big",
    1010: "mandatory extension",
    1011: "internal error",
    1012: "service restart",
    1013: "try again later",
    1014: "bad gateway",
    1015: "TLS handshake failure [internal]",
}

# §7.4.1: 1005, 1006 and 1015 are for reporting only and MUST NOT be sent;
# 1004 is reserved. 1012-1014 are registered with IANA since RFC 6455.
SENDABLE_CLOSE_CODES: Final = frozenset(
    (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014)
)

OK_CLOSE_CODES: Final = frozenset((1000, 1001))


def is_valid_close_code(code: int) -> bool:
    """Whether `code` may appear in a close frame (§7.4.1, §7.4.2).

    3000-3999 are registered with IANA for libraries and frameworks, 4000-4999
    are for private use; both are valid on the wire.
    """
    return code in SENDABLE_CLOSE_CODES or 3000 <= code < 5000


class Close:
    """The payload of a close frame: a code and a reason.

    Attributes:
        code: the close code; 1005 stands for a close frame without a code.
        reason: the reason, at most 123 bytes once UTF-8 encoded.
    """

    __slots__ = ("code", "reason")

    def __init__(self, code: int, reason: str) -> None:
        self.code = code
        self.reason = reason

    def __repr__(self) -> str:
        return f"Close({self.code!r}, {self.reason!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Close):
            return NotImplemented
        return (self.code, self.reason) == (other.code, other.reason)

    def __hash__(self) -> int:
        return hash((self.code, self.reason))

    def __str__(self) -> str:
        if 3000 <= self.code < 4000:
            explanation = "registered"
        elif 4000 <= self.code < 5000:
            explanation = "private use"
        else:
            explanation = CLOSE_CODE_EXPLANATIONS.get(self.code, "unknown")
        result = f"{self.code} ({explanation})"
        if self.reason:
            result = f"{result} {self.reason}"
        return result

    @classmethod
    def parse(cls, data: bytes) -> Close:
        """Parse a close frame's payload.

        Raises:
            ProtocolError: a one-byte payload or a code that isn't allowed.
            InvalidUTF8: a reason that isn't valid UTF-8 (close 1007).
        """
        if len(data) >= 2:
            (code,) = UNPACK_H(data)
            if not is_valid_close_code(code):
                raise ProtocolError(f"invalid close code {code}")
            try:
                reason = data[2:].decode()
            except UnicodeDecodeError as exc:
                raise InvalidUTF8(f"invalid UTF-8 in close reason: {exc}") from None
            return cls(code, reason)
        if len(data) == 0:
            # §7.1.5: a close frame without a code means "no status received".
            return cls(1005, "")
        raise ProtocolError("close frame payload of 1 byte")

    def serialize(self) -> bytes:
        """The close frame payload; empty for 1005 (no code)."""
        if self.code == 1005:
            return b""
        return PACK_2(self.code >> 8, self.code & 0xFF) + self.reason.encode()


def check_close(code: int, reason: str) -> bytes:
    """Validate a close code and reason given by the application; return the payload.

    Raises:
        ProtocolError: the code can't be sent or the reason is over 123 bytes.
    """
    if code == 1005 and not reason:
        return b""
    if not is_valid_close_code(code):
        raise ProtocolError(
            f"close code {code} can't be sent: use 1000-1003, 1007-1014, or 3000-4999"
        )
    payload = Close(code, reason).serialize()
    if len(payload) > MAX_CONTROL_PAYLOAD:
        raise ProtocolError(
            f"close reason is {len(payload) - 2} bytes in UTF-8; at most 123 fit in a frame"
        )
    return payload


def encode_frame(
    opcode: int,
    payload: bytes | bytearray | memoryview,
    fin: bool = True,
    rsv: int = 0,
    mask: bool = False,
) -> bytes:
    """Encode one frame.

    Args:
        opcode: one of the OP_* constants.
        payload: the frame's payload (unmasked).
        fin: whether this is the final frame of its message.
        rsv: RSV bits already shifted into place (RSV1 | RSV2 | RSV3).
        mask: whether to mask the payload (clients must, servers must not).
    """
    if encode_frame_c is not None and fin and not rsv and not mask:
        return encode_frame_c(opcode, payload)  # C: header and payload in one allocation
    head = (FIN if fin else 0) | rsv | opcode
    length = len(payload)
    mask_bit = MASK_BIT if mask else 0
    # Common case first: small payloads use the 7-bit length.
    if length < 126:
        header = PACK_2(head, mask_bit | length)
    elif length < 65536:
        header = PACK_4(head, mask_bit | 126, length)
    else:
        header = PACK_10(head, mask_bit | 127, length)
    if mask:
        key = new_mask()
        return header + key + apply_mask(payload, key)
    return header + payload
