"""A large frame's payload, received in place.

Once the header of a large binary frame has arrived but not its payload,
the payload goes straight into the object that becomes the message: the
I/O layer reads into :meth:`PayloadSink.missing` (asyncio's
``BufferedProtocol.get_buffer``) and the payload is unmasked in place once
whole. Collecting the reads and joining them cost two more copies of the
payload, each in fresh pages (page faults on every large message).

With the C speedup the object is the final ``bytes``, written through a
view before anyone else sees it; without it, a ``bytearray`` copied once at
the end.
"""

from __future__ import annotations

from .masking import BytesLike, apply_mask, mask_inplace_c, payload_buffer_c

__all__ = ["PayloadSink"]


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
        if payload_buffer_c is not None:
            obj, view = payload_buffer_c(size)
            self._obj: bytes | bytearray = obj
        else:
            self._obj = bytearray(size)
            view = memoryview(self._obj)
        self._view: memoryview | None = view

    @property
    def done(self) -> bool:
        """Whether the whole payload has arrived."""
        return self._at >= self.size

    def missing(self) -> memoryview:
        """A writable view of the part still to come (never empty before done)."""
        assert self._view is not None
        return self._view[self._at :]

    def filled(self, nbytes: int) -> None:
        """``nbytes`` were written at the start of :meth:`missing`."""
        self._at += nbytes

    def feed(self, data: BytesLike) -> int:
        """Copy what fits of ``data``; return how many bytes were taken."""
        assert self._view is not None
        at = self._at
        n = min(len(data), self.size - at)
        self._view[at : at + n] = memoryview(data)[:n]
        self._at = at + n
        return n

    def payload(self) -> bytes:
        """The whole payload, unmasked. Call once, when :attr:`done`."""
        view, obj, key = self._view, self._obj, self.key
        assert view is not None and self.done
        self._view = None
        if type(obj) is bytes:
            if key is not None:
                assert mask_inplace_c is not None
                mask_inplace_c(view, key)
            # The view doesn't own obj: drop it before obj is handed out.
            view.release()
            return obj
        view.release()
        return apply_mask(obj, key) if key is not None else bytes(obj)
