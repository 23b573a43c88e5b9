"""The sending half of the protocol after the handshake (RFC 6455 §5-§7).

:class:`SendingMixin` holds the ``send_*`` methods of
:class:`~ripple.protocol.state.Protocol`, which inherits them: each call
returns the bytes of one frame to write, or raises when the connection's
state doesn't allow it. It declares the slots of the state it changes
(the send side of fragmentation and closing); :class:`~ripple.protocol.state.Protocol`
declares the rest and sets them all up.
"""

from __future__ import annotations

from ..exceptions import InvalidState, ProtocolError
from .events import CLOSED, CLOSING, OPEN, SERVER, Side, State
from .extensions import Extension, Frame
from .frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    PACK_4,
    PACK_10,
    Close,
    check_close,
    encode_frame,
)
from .masking import encode_frame_c

__all__ = ["SendingMixin"]


class SendingMixin:
    """The ``send_*`` methods of :class:`~ripple.protocol.state.Protocol`."""

    # What these methods assign has its slot here; Protocol.__init__ sets them.
    __slots__ = ("_send_frag_op", "close_rcvd_then_sent", "close_sent", "close_transport", "state")

    state: State
    close_sent: Close | None
    close_rcvd_then_sent: bool | None
    close_transport: bool
    _send_frag_op: int
    # Read only here; slots in Protocol.
    side: Side
    mask: bool
    plain_out: bool
    extensions: list[Extension]
    close_rcvd: Close | None

    def _encode(self, opcode: int, data: bytes, fin: bool) -> bytes:
        if self.extensions:
            frame = Frame(opcode, data, fin, 0)
            for ext in self.extensions:
                frame = ext.encode(frame)
            return encode_frame(frame.opcode, frame.data, frame.fin, frame.rsv, self.mask)
        return encode_frame(opcode, data, fin, 0, self.mask)

    def _check_send(self, opcode: int, fin: bool) -> int:
        # Returns the opcode to put on the wire, tracking fragmentation.
        if self.state is not OPEN:
            raise InvalidState(f"cannot send a message: connection is {self.state.name}")
        if self._send_frag_op:
            if opcode != OP_CONT:
                raise InvalidState("a fragmented message is being sent; send continuations")
            if fin:
                self._send_frag_op = 0
            return OP_CONT
        if opcode == OP_CONT:
            raise InvalidState("no fragmented message is being sent")
        if not fin:
            self._send_frag_op = opcode
        return opcode

    def send_text(self, data: str, fin: bool = True) -> bytes:
        """Encode a text frame (or the first frame of a fragmented text message)."""
        if self.state is OPEN and not self._send_frag_op and not self.extensions and fin:
            # Common case first: one frame, no extension.
            if self.plain_out:
                return encode_frame_c(OP_TEXT, data)  # type: ignore[misc]  # no UTF-8 bytes between
            return encode_frame(OP_TEXT, data.encode(), True, 0, self.mask)
        return self._encode(self._check_send(OP_TEXT, fin), data.encode(), fin)

    def send_binary(self, data: bytes | bytearray | memoryview, fin: bool = True) -> bytes:
        """Encode a binary frame (or the first frame of a fragmented binary message)."""
        if self.state is OPEN and not self._send_frag_op and not self.extensions and fin:
            return encode_frame(OP_BINARY, data, True, 0, self.mask)  # C when unmasked
        return self._encode(self._check_send(OP_BINARY, fin), bytes(data), fin)

    def send_binary_head(self, length: int) -> bytes | None:
        """The header of a whole binary frame of ``length`` bytes (at least 126)
        whose payload the caller writes right after it, as is: no copy of a
        large payload into the frame. None when the frame can't be sent that
        way (masked, extensions, a fragmented message being sent, not open):
        use :meth:`send_binary`.
        """
        if self.state is not OPEN or self._send_frag_op or self.extensions or self.mask:
            return None
        if length < 65536:
            return PACK_4(0x80 | OP_BINARY, 126, length)
        return PACK_10(0x80 | OP_BINARY, 127, length)

    def send_continuation(self, data: bytes, fin: bool) -> bytes:
        """Encode the next frame of a message being sent in fragments."""
        return self._encode(self._check_send(OP_CONT, fin), data, fin)

    def _check_control(self, data: bytes) -> None:
        if self.close_sent is not None or self.state is CLOSED:
            raise InvalidState("cannot send a control frame after a close frame")
        if len(data) > 125:
            raise ProtocolError(f"control frame payload is {len(data)} bytes; at most 125")

    def send_ping(self, data: bytes) -> bytes:
        """Encode a ping."""
        self._check_control(data)
        return encode_frame(OP_PING, data, mask=self.mask)

    def send_pong(self, data: bytes) -> bytes:
        """Encode a pong."""
        self._check_control(data)
        return encode_frame(OP_PONG, data, mask=self.mask)

    def send_close(self, code: int = 1000, reason: str = "") -> bytes:
        """Start (or finish) the closing handshake; b"" if a close was already sent.

        Raises:
            ProtocolError: the code can't be sent or the reason is too long.
        """
        payload = check_close(code, reason)
        if self.close_sent is not None or self.state is CLOSED:
            return b""
        self.close_sent = Close(code, reason) if payload else Close(1005, "")
        if self.close_rcvd is not None:
            self.close_rcvd_then_sent = True
            if self.side is SERVER:
                self.close_transport = True
        else:
            self.close_rcvd_then_sent = False
        self.state = CLOSING
        return encode_frame(OP_CLOSE, payload, mask=self.mask)
