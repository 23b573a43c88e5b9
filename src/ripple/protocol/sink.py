"""A large frame's payload, received in place.

Once the header of a large binary frame has arrived but not its payload,
the payload goes straight into the object that becomes the message: the
I/O layer reads into :meth:`PayloadSink.missing` (asyncio's
``BufferedProtocol.get_buffer``) and the payload is unmasked in place once
whole. Collecting the reads and joining them cost two more copies of the
payload, each in fresh pages (page faults on every large message).

In place needs the C speedup: the object is the final ``bytes``, allocated
at the declared size without being written (so a peer that declares a large
frame and sends nothing costs address space, not memory) and filled through
a view before anyone else sees it. Without the speedup, or for frames over
:data:`IN_PLACE_MAX`, the payload is copied into a ``bytearray`` that grows
as data arrives, and :meth:`PayloadSink.missing` is None.
"""

from __future__ import annotations

from typing import Final

from .masking import BytesLike, apply_mask, mask_inplace_c, payload_buffer_c

__all__ = ["IN_PLACE_MAX", "PayloadSink"]

#: Larger payloads (max_size above it, or None) grow as they arrive instead:
#: a declared length must not reserve unbounded memory before any data.
IN_PLACE_MAX: Final = 2**26


class PayloadSink:
    """The payload of one frame whose header was parsed, filled as it arrives.

    Args:
        b0: the frame's first byte (FIN, RSV, opcode).
        key: the masking key, or None for an unmasked frame.
        size: the payload length from the header.
    """

    __slots__ = ("_at", "_obj", "_view", "b0", "key", "size")

    def __init__(self, b0: int, key: bytes | None, size: int) -> None:
        self.b0 = b0
        self.key = key
        self.size = size
        self._at = 0
        self._view: memoryview | None = None
        self._obj: bytes | bytearray | None = bytearray()
        if payload_buffer_c is not None and size <= IN_PLACE_MAX:
            try:
                self._obj, self._view = payload_buffer_c(size)
            except MemoryError:
                pass  # grow as data arrives, like without the speedup

    @property
    def in_place(self) -> bool:
        """Whether the payload is read straight into it (see :meth:`missing`)."""
        return self._view is not None

    @property
    def done(self) -> bool:
        """Whether the whole payload has arrived."""
        return self._at >= self.size

    def missing(self) -> memoryview | None:
        """A writable view of the part still to come (never empty before
        done), or None when the payload isn't received in place: feed it."""
        view = self._view
        return None if view is None else view[self._at :]

    def filled(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of :meth:`missing`."""
        assert self._view is not None, "not received in place: use feed()"
        self._at += nbytes

    def feed(self, data: BytesLike) -> int:
        """Copy what fits of ``data``; return how many bytes were taken."""
        at = self._at
        n = min(len(data), self.size - at)
        if self._view is not None:
            self._view[at : at + n] = memoryview(data)[:n]
        else:
            obj = self._obj
            assert isinstance(obj, bytearray), "feed() after payload()"
            obj += memoryview(data)[:n]
        self._at = at + n
        return n

    def payload(self) -> bytes:
        """The whole payload, unmasked. Call once, when :attr:`done`."""
        view, obj, key = self._view, self._obj, self.key
        assert self.done and obj is not None, "payload() is for a whole payload, once"
        self._view = None
        self._obj = None
        if view is not None:
            assert type(obj) is bytes
            if key is not None:
                assert mask_inplace_c is not None
                mask_inplace_c(view, key)
            # The view doesn't own obj: drop it before obj is handed out.
            view.release()
            return obj
        return apply_mask(obj, key) if key is not None else bytes(obj)
