"""The WebSocket protocol after the handshake, sans I/O (RFC 6455 §5-§7).

Bytes go in through :meth:`Protocol.receive_data`, which returns the events
they complete (:mod:`ripple.protocol.events`); calls go in through the
``send_*`` methods (:mod:`ripple.protocol.sending`), which return the bytes
to write. Replies the protocol owes the peer on its own (pongs, the close
echo) collect in :meth:`Protocol.data_to_send`.

The closing handshake shows in :attr:`Protocol.close_rcvd`,
:attr:`Protocol.close_sent` and :attr:`Protocol.close_transport`.

A protocol violation never raises out of :meth:`receive_data`: it fails the
connection (§7.1.7), queuing a close frame with the error's code, and records
the error in :attr:`Protocol.failed`.

The names of :mod:`ripple.protocol.events` are importable from here too.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence
from typing import Final

from ..exceptions import InvalidUTF8, PayloadTooBig, ProtocolError
from .events import CLIENT, CLOSED, CLOSING, OPEN, SERVER, Event, Ping, Pong, Side, State
from .extensions import Extension, Frame
from .frames import (
    FIN,
    MASK_BIT,
    OK_CLOSE_CODES,
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    UNPACK_H,
    UNPACK_Q,
    Close,
    encode_frame,
)
from .masking import apply_mask, encode_frame_c, parse_frames_c, unmask_frame
from .sending import SendingMixin
from .sink import PayloadSink

# A literal list: mypy and ruff only see re-exports they can read statically.
__all__ = [
    "CLIENT",
    "CLOSED",
    "CLOSING",
    "OPEN",
    "SERVER",
    "Event",
    "Ping",
    "Pong",
    "Protocol",
    "Side",
    "State",
]

_utf8_decoder = codecs.getincrementaldecoder("utf-8")


# Binary frames at least this large (header included) that arrive in several
# reads are received in place (sink.py): appending each read to the bytearray
# buffer copies it again every time the buffer grows.
_CHUNKED: Final = 2**16


# Tiny fragments each cost an object (~40 bytes of overhead for 2 bytes of
# payload): once this many parts follow the last merged one, they are joined.
_MERGE_PARTS: Final = 256


def _rotate(key: bytes, offset: int) -> bytes:
    # Masking restarts at payload offset 0; a chunk starting at `offset`
    # needs the key rotated by offset % 4.
    r = offset & 3
    return key[r:] + key[:r] if r else key


def _decode(decoder: codecs.IncrementalDecoder, data: bytes, final: bool) -> str:
    # Fail fast: CPython keeps a surrogate's first two bytes (ED A0-BF) as
    # pending input instead of rejecting them; no continuation makes them valid.
    try:
        text = decoder.decode(data, final)
    except UnicodeDecodeError as exc:
        raise InvalidUTF8(f"invalid UTF-8 in text message: {exc}") from None
    pending = decoder.getstate()[0]
    if len(pending) >= 2 and pending[0] == 0xED and pending[1] >= 0xA0:
        raise InvalidUTF8("invalid UTF-8 in text message: surrogate")
    return text


def _short(message: str) -> str:
    # Close reasons must fit the 123 bytes left in a control frame.
    data = message.encode()
    return data[:120].decode(errors="ignore") if len(data) > 123 else message


class Protocol(SendingMixin):
    """One side of an open WebSocket connection.

    Args:
        side: SERVER or CLIENT; decides masking (§5.1).
        max_size: the largest message accepted, in bytes; None for no limit.
        extensions: extensions negotiated in the handshake, in order.
    """

    # With SendingMixin's (state, the send side of closing and fragmentation).
    __slots__ = (
        "_buf",
        "_cfast",
        "_cmax",
        "_cready",
        "_decoder",
        "_discard",
        "_ext_rsv",
        "_ext_slack",
        "_fast",
        "_frag_merged",
        "_frag_op",
        "_frag_parts",
        "_frag_size",
        "_held_pong",
        "_masked_in",
        "_out",
        "_part_done",
        "close_rcvd",
        "defer_failure",
        "extensions",
        "failed",
        "mask",
        "max_size",
        "pending_failure",
        "plain_out",
        "side",
        "sink",
    )

    def __init__(
        self,
        side: Side,
        *,
        max_size: int | None = 2**20,
        extensions: Sequence[Extension] = (),
        defer_failure: bool = False,
    ) -> None:
        self.side = side
        #: With defer_failure, a protocol error doesn't fail the connection at
        #: once: it waits in :attr:`pending_failure` until the caller has
        #: handled the messages received before it, then calls :meth:`fail`.
        self.defer_failure = defer_failure
        self.pending_failure: ProtocolError | None = None
        self.mask = side is CLIENT
        self.max_size = max_size
        self.extensions = list(extensions)
        # Precomputed for receive_data, which runs for every chunk read.
        self._masked_in = side is SERVER  # frames from clients must be masked
        # The fast path needs no extension and a max_size no 7-bit length exceeds.
        self._fast = not self.extensions and (max_size is None or max_size >= 125)
        # receive_buffer() parses in C straight from the caller's buffer.
        self._cfast = self._fast and parse_frames_c is not None
        self._cmax = -1 if max_size is None else max_size
        # Whether C may parse the next read whole (receive_buffer(), and the
        # I/O layer's inlined copy of it): _cfast and nothing partial, pending
        # or ended (_c_ready()). The methods that change those keep it up to
        # date: one check per read instead of six.
        self._cready = self._cfast
        #: Data frames go out as C encodes them: unmasked (a server's), no
        #: extension. Fixed for the connection, so the I/O layer's hot send
        #: path checks this one flag, then the state.
        self.plain_out = not self.mask and not self.extensions and encode_frame_c is not None
        self._ext_rsv = 0
        for ext in self.extensions:
            self._ext_rsv |= ext.rsv_bits
        # An extension's encoding (deflate) can be slightly larger than the
        # message: allow that much before buffering; the extension checks
        # the decoded size exactly.
        self._ext_slack = 0
        if self.extensions and max_size is not None:
            self._ext_slack = (max_size >> 8) + 1024
        self.state = OPEN
        self.close_rcvd: Close | None = None
        self.close_sent: Close | None = None
        self.close_rcvd_then_sent: bool | None = None
        #: The I/O layer should close the TCP connection once it has written
        #: what's pending: the server after the closing handshake (§7.1.1),
        #: either side after failing the connection (§7.1.7).
        self.close_transport = False
        #: The protocol error that failed the connection, if any.
        self.failed: ProtocolError | None = None
        self._buf = bytearray()
        #: A large binary frame's payload being received, if any: while
        #: ``sink.in_place``, the I/O layer may read straight into
        #: ``sink.missing()`` and call :meth:`receive_sink` instead of
        #: feeding bytes.
        self.sink: PayloadSink | None = None
        self._out: list[bytes] = []
        # While holding pongs (hold_pongs): the payload of the one owed, if any.
        self._held_pong: list[bytes] | None = None
        self._discard = False
        # Message being received in fragments: opcode (0 = none), parts, size.
        self._frag_op = 0
        self._frag_parts: list[bytes] | list[str] = []
        self._frag_merged = 0  # parts at the front already merged (see _frame)
        self._frag_size = 0
        self._decoder: codecs.IncrementalDecoder | None = None
        # Payload bytes of the incomplete text frame at the buffer's start
        # that were already UTF-8 validated (fail fast inside a frame).
        self._part_done = 0
        # Opcode of a message being sent in fragments (0 = none).
        self._send_frag_op = 0

    # -- receiving ---------------------------------------------------------

    def receive_buffer(self, buf: memoryview, end: int) -> list[Event]:
        """Feed ``buf[:end]``, which the caller reuses after this call; return
        the events it completes.

        The same as ``receive_data(buf[:end].tobytes())``, but with the C
        speedup the common frames are parsed straight from ``buf``: what is
        consumed is never copied, and only a partial frame is kept.
        """
        # Nothing buffered, no fragment or partial text open: C takes the lot.
        if self._cready:
            events: list[Event] = []
            pos = parse_frames_c(buf, 0, end, self._masked_in, self._cmax, events)  # type: ignore[misc]
            if pos == end:
                return events
            events += self.receive_data(buf[pos:end].tobytes())
            return events
        return self.receive_data(buf[:end].tobytes())

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; return the events they complete."""
        events: list[Event] = []
        # Until the end says otherwise (the other early returns leave a
        # state C can't take: a sink, a close, a failure).
        self._cready = False
        if self._discard:
            # §5.5.1: after a close frame, data is ignored.
            return events
        sink = self.sink
        if sink is not None:
            # The rest of a large frame's payload: no parsing.
            used = sink.feed(data)
            if not sink.done:
                return events
            self._sink_done(events, sink)
            if self._discard or used == len(data):
                self._cready = self._c_ready()
                return events
            data = data[used:]  # the frames after it
        buf = self._buf
        if buf:
            buf += data
            view: bytes | bytearray = buf
        else:
            view = data
        end = len(view)
        pos = 0
        masked_side = self._masked_in
        max_size = self.max_size
        # The fast path below also needs no text frame validated while incomplete.
        fast = self._fast and not self._part_done
        # Per call, not slots: each slot is 8 bytes of every idle connection.
        mask_bit = MASK_BIT if masked_side else 0
        head = 6 if masked_side else 2  # a 7-bit length's header (+ key)
        # C speedup: the common frames in one call; it stops at anything else.
        cparse = parse_frames_c if fast else None
        cmax = self._cmax
        try:
            while end - pos >= 2:
                if cparse is not None and not self._frag_op:
                    pos = cparse(view, pos, end, masked_side, cmax, events)
                    if end - pos < 2:
                        break
                b0 = view[pos]
                b1 = view[pos + 1]
                # Fast path, most frames: FIN + text/binary, no RSV, masking as
                # expected, 7-bit length, whole in the buffer, no fragments open.
                if fast and (b0 == 0x82 or b0 == 0x81) and not self._frag_op:
                    length = b1 ^ mask_bit  # >= 128 when the mask bit is wrong
                    fend = pos + head + length
                    if length < 126 and fend <= end:
                        # One call, one allocation: unmasked straight from the buffer.
                        payload = (
                            unmask_frame(view, pos + 2, length)
                            if masked_side
                            else bytes(view[pos + 2 : fend])
                        )
                        pos = fend
                        if b0 == 0x82:
                            events.append(payload)
                            continue
                        try:
                            events.append(payload.decode())
                        except UnicodeDecodeError as exc:
                            raise InvalidUTF8(f"invalid UTF-8 in text message: {exc}") from None
                        continue
                length = b1 & 0x7F
                hdr = pos + 2
                if length >= 126:
                    if length == 126:
                        if end - pos < 4:
                            break
                        (length,) = UNPACK_H(view, hdr)
                        if length < 126:
                            raise ProtocolError("non-minimal 16-bit payload length")
                        hdr += 2
                    else:
                        if end - pos < 10:
                            break
                        (length,) = UNPACK_Q(view, hdr)
                        if length >> 63:
                            raise ProtocolError("most significant bit of 64-bit length set")
                        if length < 65536:
                            raise ProtocolError("non-minimal 64-bit payload length")
                        hdr += 8
                if bool(b1 & MASK_BIT) is not masked_side:
                    raise ProtocolError(
                        "incorrect masking: client frames must be masked"
                        if masked_side
                        else "incorrect masking: server frames must not be masked"
                    )
                opcode = b0 & 0x0F
                rsv = b0 & 0x70
                if rsv & ~self._ext_rsv:
                    raise ProtocolError("reserved bits must be 0")
                if opcode >= OP_CLOSE:
                    if opcode > OP_PONG:
                        raise ProtocolError(f"invalid opcode {opcode:#x}")
                    if not b0 & FIN:
                        raise ProtocolError("fragmented control frame")
                    if length > 125:
                        raise ProtocolError("control frame too long")
                elif opcode == OP_CONT:
                    if not self._frag_op:
                        raise ProtocolError("unexpected continuation frame")
                elif opcode > OP_BINARY:
                    raise ProtocolError(f"invalid opcode {opcode:#x}")
                elif self._frag_op:
                    raise ProtocolError("expected a continuation frame")
                if (
                    max_size is not None
                    and opcode < OP_CLOSE
                    and self._frag_size + length > max_size + self._ext_slack
                ):
                    # Decided from the declared length, before buffering.
                    raise PayloadTooBig(
                        f"message of {self._frag_size + length} bytes exceeds "
                        f"max_size of {max_size} bytes"
                    )
                if masked_side:
                    key = view[hdr : hdr + 4]
                    hdr += 4
                    if end < hdr:
                        break
                fend = hdr + length
                if fend > end:
                    if (
                        not self.extensions  # extensions decode whole frames
                        and end > hdr
                        and (opcode == OP_TEXT or (opcode == OP_CONT and self._frag_op == OP_TEXT))
                    ):
                        self._validate_partial(view, hdr, end, key if masked_side else b"")
                    elif fend - pos >= _CHUNKED and opcode != OP_TEXT and self._frag_op != OP_TEXT:
                        # Large binary frame: receive the rest of its payload in
                        # place (text frames are validated as they arrive instead).
                        sink = PayloadSink(b0, bytes(key) if masked_side else None, length)
                        sink.feed(memoryview(view)[hdr:end])
                        self.sink = sink
                        pos = end
                    break
                if masked_side:
                    payload = unmask_frame(view, hdr - 4, length)
                elif length > 4096:
                    # Large: one copy through a memoryview, not slice + bytes().
                    payload = bytes(memoryview(view)[hdr:fend])
                else:
                    payload = bytes(view[hdr:fend])
                pos = fend
                fin = b0 & FIN
                # Common case first: a whole, unfragmented, plain message.
                if rsv == 0 and fin and opcode == OP_BINARY and not self.extensions:
                    events.append(payload)
                elif (
                    rsv == 0
                    and fin
                    and opcode == OP_TEXT
                    and not self.extensions
                    and not self._part_done
                ):
                    try:
                        events.append(payload.decode())
                    except UnicodeDecodeError as exc:
                        raise InvalidUTF8(f"invalid UTF-8 in text message: {exc}") from None
                else:
                    self._frame(events, opcode, payload, bool(fin), rsv)
                    if self._discard:
                        break
        except ProtocolError as exc:
            self._receive_failed(exc)
            return events
        if self._discard:
            self._buf = bytearray()
        elif buf:
            del buf[:pos]
        elif pos < end:
            self._buf = bytearray(memoryview(view)[pos:])
        # Without C (every read comes here), no call to find out.
        self._cready = self._cfast and self._c_ready()
        return events

    def _c_ready(self) -> bool:
        # What _cready caches: C's fast path parses whole frames from a
        # fresh buffer, so nothing may be partial, pending or ended.
        return (
            self._cfast
            and not self._buf
            and self.sink is None
            and not self._frag_op
            and not self._part_done
            and not self._discard
        )

    def receive_sink(self, nbytes: int) -> list[Event]:
        """``nbytes`` were read into ``sink.missing()``; return the events
        they complete (the frame, once its payload is whole)."""
        events: list[Event] = []
        sink = self.sink
        assert sink is not None, "no payload is being received in place"
        sink.filled(nbytes)
        if sink.done:
            self._sink_done(events, sink)
            self._cready = self._c_ready()
        return events

    def _sink_done(self, events: list[Event], sink: PayloadSink) -> None:
        self.sink = None
        b0 = sink.b0
        rsv = b0 & 0x70
        try:
            if rsv == 0 and b0 & FIN and b0 & 0x0F == OP_BINARY and not self.extensions:
                events.append(sink.payload())
            else:
                self._frame(events, b0 & 0x0F, sink.payload(), bool(b0 & FIN), rsv)
        except ProtocolError as exc:
            self._receive_failed(exc)

    def _receive_failed(self, exc: ProtocolError) -> None:
        self._buf = bytearray()
        self.sink = None
        if self.defer_failure:
            # Messages that came before the error are delivered first; the
            # error follows them, as it did on the wire.
            self.pending_failure = exc
            self._discard = True
        else:
            self.fail(exc)

    def _validate_partial(
        self, view: bytes | bytearray, start: int, end: int, key: bytes | bytearray
    ) -> None:
        # Fail fast (Autobahn 6.4.3/6.4.4): validate the part of a text frame
        # that has arrived, without waiting for the rest of the frame.
        done = self._part_done
        chunk = bytes(view[start + done : end])
        if not chunk:
            return
        if key:
            chunk = apply_mask(chunk, _rotate(bytes(key), done))
        if self._decoder is None:
            self._decoder = _utf8_decoder()
        text = _decode(self._decoder, chunk, False)
        self._frag_parts.append(text)  # type: ignore[arg-type]
        self._part_done = done + len(chunk)

    def _frame(
        self, events: list[Event], opcode: int, payload: bytes, fin: bool, rsv: int
    ) -> None:
        # Slow path: fragments, control frames, extensions.
        done = self._part_done
        if done:
            # The frame's head was validated while incomplete; the payload
            # slice here starts at offset 0 so drop what was decoded.
            payload = payload[done:]
            self._part_done = 0
        if self.extensions:
            frame = Frame(opcode, payload, fin, rsv)
            for ext in reversed(self.extensions):
                frame = ext.decode(frame, max_size=self.max_size)
            if frame.rsv:
                raise ProtocolError("reserved bits must be 0")
            payload = frame.data
        if opcode >= OP_CLOSE:
            self._control(events, opcode, payload)
            return
        if opcode != OP_CONT:
            self._frag_op = opcode
            self._frag_size = 0
            self._frag_merged = 0
            if not done:  # else parts hold the text validated while incomplete
                self._frag_parts = []
        size = self._frag_size + len(payload) + done
        if self.max_size is not None and size > self.max_size:
            raise PayloadTooBig(
                f"message of {size} bytes exceeds max_size of {self.max_size} bytes"
            )
        self._frag_size = size
        parts = self._frag_parts
        if self._frag_op == OP_TEXT:
            decoder = self._decoder
            if decoder is None:
                decoder = self._decoder = _utf8_decoder()
            text = _decode(decoder, payload, fin)
            if text:  # empty fragments hold nothing (a million of them cost no memory)
                parts.append(text)  # type: ignore[arg-type]
            if fin:
                events.append("".join(parts))  # type: ignore[arg-type]
                self._decoder = None
        else:
            if payload:
                parts.append(payload)  # type: ignore[arg-type]
            if fin:
                events.append(b"".join(parts))  # type: ignore[arg-type]
        if fin:
            self._frag_op = 0
            self._frag_parts = []
            self._frag_size = 0
            self._frag_merged = 0
        elif len(parts) - self._frag_merged >= _MERGE_PARTS:
            # n tiny fragments hold about n / _MERGE_PARTS objects, and each
            # byte is copied once here (merged parts aren't merged again).
            merged = self._frag_merged
            tail = parts[merged:]
            parts[merged:] = ["".join(tail) if type(tail[0]) is str else b"".join(tail)]  # type: ignore[arg-type,list-item]
            self._frag_merged = merged + 1

    def _control(self, events: list[Event], opcode: int, payload: bytes) -> None:
        if opcode == OP_PING:
            # §5.5.2: answer with a pong carrying the same payload, unless we
            # already sent a close frame (nothing may follow it).
            if self.close_sent is None:
                held = self._held_pong
                if held is None:
                    self._out.append(encode_frame(OP_PONG, payload, mask=self.mask))
                else:
                    # §5.5.3: an endpoint may answer only the most recent
                    # ping: while our writes are stalled, owe just that one.
                    held[:] = [payload]
            events.append(Ping(payload))
        elif opcode == OP_PONG:
            # §5.5.3: unsolicited pongs are allowed; the I/O layer ignores
            # those that match no ping.
            events.append(Pong(payload))
        else:
            self.close_rcvd = close = Close.parse(payload)
            self._discard = True
            if self.close_sent is None:
                # §5.5.1: echo the peer's status code.
                self.close_rcvd_then_sent = True
                self.close_sent = Close(close.code, "")
                self._out.append(
                    encode_frame(OP_CLOSE, self.close_sent.serialize(), mask=self.mask)
                )
            else:
                self.close_rcvd_then_sent = False
            self.state = CLOSING
            if self.side is SERVER:
                # §7.1.1: the server closes the TCP connection first.
                self.close_transport = True

    def hold_pongs(self) -> None:
        """Owe only the latest ping's pong until :meth:`release_pongs`.

        The I/O layer calls it while the peer doesn't read what we write: a
        peer flooding pings then can't make us buffer a pong for each.
        """
        if self._held_pong is None:
            self._held_pong = []

    def release_pongs(self) -> None:
        """Stop holding pongs; the one owed, if any, is in :meth:`data_to_send`."""
        held = self._held_pong
        self._held_pong = None
        if held and self.close_sent is None:
            self._out.append(encode_frame(OP_PONG, held[0], mask=self.mask))

    def receive_eof(self) -> None:
        """The peer closed the TCP connection."""
        self.state = CLOSED
        self._discard = True
        self._cready = False
        self._buf = bytearray()
        self.sink = None

    def fail(self, exc: ProtocolError) -> None:
        """Fail the connection (§7.1.7): send a close frame, then close TCP.

        The server closes TCP at once; the client, as §7.1.1 asks, leaves
        that to the server (the I/O layer bounds the wait by close_timeout).
        Either way, nothing received afterwards is processed.
        """
        self.pending_failure = None
        if self.failed is None:
            self.failed = exc
        if self.close_sent is None and self.state is not CLOSED:
            self.close_sent = Close(exc.code, _short(str(exc)))
            self._out.append(encode_frame(OP_CLOSE, self.close_sent.serialize(), mask=self.mask))
            if self.close_rcvd is not None:
                self.close_rcvd_then_sent = True
        if self.state is OPEN:
            self.state = CLOSING
        self._discard = True
        self._cready = False
        if self.side is SERVER:
            self.close_transport = True

    def data_to_send(self) -> list[bytes]:
        """Return and clear the bytes the protocol queued on its own."""
        out = self._out
        if out:
            self._out = []
        return out

    # -- state -------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """The close code received; 1006 if the connection closed without one."""
        if self.state is not CLOSED:
            return None
        return 1006 if self.close_rcvd is None else self.close_rcvd.code

    @property
    def close_reason(self) -> str | None:
        """The close reason received; "" if none."""
        if self.state is not CLOSED:
            return None
        return "" if self.close_rcvd is None else self.close_rcvd.reason

    @property
    def closed_ok(self) -> bool:
        """Whether both close frames were exchanged with 1000 or 1001."""
        return (
            self.close_rcvd is not None
            and self.close_sent is not None
            and self.close_rcvd.code in OK_CLOSE_CODES
            and self.close_sent.code in OK_CLOSE_CODES
        )
