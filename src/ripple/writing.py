"""The write path every other part of a connection uses: direct writes, and
the per-loop-iteration queue that coalesces broadcast frames.

``broadcast()`` doesn't write at once: it queues its frames on each
connection, and one callback per loop iteration writes each connection's
queued frames with one ``transport.write`` (a burst of K broadcasts costs one
send syscall per connection, not K). Every other write first writes what is
queued, so bytes go out in the order they were sent.
"""

from __future__ import annotations

import asyncio

__all__ = ["Writer"]

# Broadcast frames are queued per connection up to this many bytes; a larger
# frame, or one that would make the queue larger, is written at once (after
# what is queued): a write this big amortises its syscall already.
_COALESCE_MAX = 2**16

# Connections with broadcast frames queued, per event loop, and the one
# callback per loop iteration that writes them (see Writer._queue_write).
_dirty: dict[asyncio.AbstractEventLoop, list[Writer]] = {}


def _new_dirty(loop: asyncio.AbstractEventLoop) -> list[Writer]:
    # Once per loop iteration with broadcasts, not per frame. A loop closed
    # before its callback ran leaves its list here: drop those first.
    for other in [lp for lp in _dirty if lp.is_closed()]:
        del _dirty[other]
    dirty: list[Writer] = []
    _dirty[loop] = dirty
    loop.call_soon(_flush_dirty, loop)
    return dirty


def _flush_dirty(loop: asyncio.AbstractEventLoop) -> None:
    conns = _dirty.pop(loop, None)
    if not conns:
        return
    last: list[bytes] | None = None
    joined = b""
    for conn in conns:
        pending = conn._pending
        if pending is None:
            continue  # written by a direct write meanwhile
        conn._pending = None
        conn._pending_size = 0
        transport = conn.transport
        if transport is None or transport.is_closing():
            continue
        if len(pending) == 1:
            transport.write(pending[0])
            continue
        # Broadcast frames are shared: most connections queued the very same
        # objects, so join them once (list == compares identities first).
        if pending != last:
            joined = b"".join(pending)
            last = pending
        transport.write(joined)


class Writer(asyncio.BufferedProtocol):
    """The bottom layer of :class:`~ripple.connection.Connection`: the
    transport, and writes to it in call order."""

    # Each layer declares the slots of what it uses; Connection.__init__ sets them all.
    __slots__ = ("_pending", "_pending_size", "loop", "transport")

    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport | None
    # Broadcast frames waiting for the end of this loop iteration (None:
    # nothing queued; a list only while there is).
    _pending: list[bytes] | None
    _pending_size: int

    def _write(self, data: bytes) -> None:
        """Write now, after the broadcast frames still queued (call order = wire order)."""
        transport = self.transport
        assert transport is not None
        if self._pending is not None:
            self._flush_pending()
        transport.write(data)

    def _queue_write(self, data: bytes) -> None:
        """Queue a frame to be written at the end of this loop iteration, with
        every other frame queued for this connection until then (broadcast).

        Up to _COALESCE_MAX bytes: past that, one write is big enough to be
        worth its syscall, and the kernel takes it now instead of holding it here.
        """
        size = len(data)
        pending = self._pending
        if pending is not None:
            if self._pending_size + size <= _COALESCE_MAX:
                pending.append(data)
                self._pending_size += size
                return
            self._flush_pending()
        if size >= _COALESCE_MAX:
            transport = self.transport
            assert transport is not None
            transport.write(data)
            return
        self._pending = [data]
        self._pending_size = size
        loop = self.loop
        dirty = _dirty.get(loop)
        if dirty is None:
            dirty = _new_dirty(loop)
        dirty.append(self)

    def _flush_pending(self) -> None:
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        self._pending_size = 0
        transport = self.transport
        if transport is None or transport.is_closing():
            return  # closed meanwhile (not by us: our close frame flushes first)
        transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def _buffered(self) -> int:
        """Bytes written or queued for this connection but not yet handed to the
        kernel: the transport's write buffer plus queued broadcast frames."""
        transport = self.transport
        size = 0 if transport is None else transport.get_write_buffer_size()
        return size + self._pending_size
