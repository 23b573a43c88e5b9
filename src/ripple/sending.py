"""Sending messages: ``send()``, ``send_nowait()``, fragmented messages, and
waiting for the transport to drain.

``send()`` encodes and writes at once; it suspends only while the transport
has paused writing (its buffer is above ``write_limit``).
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any

from .closing import Closing
from .exceptions import ConcurrencyError, InvalidState
from .protocol.frames import OP_TEXT
from .protocol.masking import encode_frame_c
from .protocol.state import CLOSED, OPEN, Protocol
from .typing import Data

__all__ = ["Sending"]

# Binary messages at least this large are written without copying them into
# the frame (header and payload as two buffers): below it, a copy is cheaper
# than a second buffer.
_NO_COPY_SIZE = 2**16

# asyncio's own transports join writelines()' buffers before Python 3.12
# (3.12 sends them with sendmsg); uvloop's use writev.
_WRITELINES_JOINS = sys.version_info < (3, 12)


class Sending(Closing):
    """send(), send_nowait() and flow control on writes (a layer of Connection)."""

    __slots__ = ("_drain_waiters", "_send_frag", "_writing_paused")

    _writing_paused: bool
    _drain_waiters: list[asyncio.Future[None]]
    # Done when the fragmented message being sent is complete.
    _send_frag: asyncio.Future[None] | None

    async def send(
        self,
        message: Data | Iterable[Data] | AsyncIterable[Data],
    ) -> None:
        """Send a message.

        A str is sent as a text frame, bytes-like as a binary frame. An
        iterable (or async iterable) of str or of bytes is sent as one
        fragmented message, one frame per item.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: the message isn't str, bytes-like or an iterable of them.
        """
        p = self.protocol
        if (
            type(message) is str
            and p is not None
            and p.plain_out
            and p.state is OPEN
            and self._send_frag is None
            and self._pending is None
        ):
            # send_nowait()'s inline case, repeated rather than called (a
            # call costs an `async for` echo 650 instructions per message),
            # then the wait for the buffer to drain.
            self.transport.write(encode_frame_c(OP_TEXT, message))  # type: ignore[misc,union-attr]
            if self._writing_paused:
                await self._drain()
            return
        if p is None:
            raise InvalidState("the opening handshake hasn't completed")
        if self._send_frag is not None:
            await self._wait_fragmented()
        if p.state is not OPEN:
            raise self._closed_exc()
        if self._write_message(p, message):
            if self._writing_paused:
                await self._drain()
            return
        if isinstance(message, Mapping):
            raise TypeError(f"message must be str or bytes, not {type(message).__name__}")
        elif isinstance(message, Iterable):
            await self._send_fragments(iter(message), None)
        elif isinstance(message, AsyncIterable):
            await self._send_fragments(None, aiter(message))
        else:
            raise TypeError(
                f"message must be str, bytes, or an iterable of them, not {type(message).__name__}"
            )

    def _write_message(self, p: Protocol, message: object) -> bool:
        """Encode and write a str or bytes-like message; False for anything else."""
        t = type(message)
        if t is str:
            # (send() and send_nowait() write the common case themselves.)
            data = p.send_text(message)  # type: ignore[arg-type]
        elif t is bytes and len(message) >= _NO_COPY_SIZE:  # type: ignore[arg-type]
            head = p.send_binary_head(len(message))  # type: ignore[arg-type]
            if head is None:
                data = p.send_binary(message)  # type: ignore[arg-type]
            else:
                # Large and immutable: header and payload as two buffers, not
                # a copy of the payload into the frame.
                transport = self.transport
                assert transport is not None
                if self._pending is not None:
                    self._flush_pending()
                if _WRITELINES_JOINS and not type(transport).__module__.startswith("uvloop"):
                    # asyncio before 3.12 joins writelines() (a copy in fresh
                    # pages); two writes send the payload from where it is.
                    transport.write(head)
                    transport.write(message)  # type: ignore[arg-type]
                else:
                    transport.writelines((head, message))  # type: ignore[arg-type]  # one writev
                return True
        elif t is bytes or isinstance(message, (bytes, bytearray, memoryview)):
            data = p.send_binary(message)  # type: ignore[arg-type]
        elif isinstance(message, str):
            # A str subclass, e.g. a StrEnum member: text, not an iterable.
            data = p.send_text(message)
        else:
            return False
        transport = self.transport
        assert transport is not None
        if self._pending is not None:
            self._flush_pending()  # broadcasts queued before this send go first
        transport.write(data)
        return True

    def send_nowait(self, message: Data) -> None:
        """Send a message now, from code that can't await: an
        :meth:`on_message` callback, a protocol callback, a timer.

        The frame goes to the transport at once, even while its write buffer
        is above ``write_limit``; :meth:`send` is the one that waits for it
        to drain. See :meth:`on_message` for how reading then keeps the
        buffer bounded.

        Args:
            message: str for a text frame, bytes-like for a binary frame.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ConcurrencyError: a fragmented message is being sent.
            TypeError: the message isn't str or bytes-like (iterables need
                :meth:`send`).
        """
        p = self.protocol
        if (
            type(message) is str
            and p is not None
            and p.plain_out
            and p.state is OPEN
            and self._send_frag is None
            and self._pending is None
        ):
            # The common case inline, from encoding to the transport: the
            # calls it skips were 8% of a callback echo's instructions.
            self.transport.write(encode_frame_c(OP_TEXT, message))  # type: ignore[misc,union-attr]
            return
        if p is None:
            raise InvalidState("the opening handshake hasn't completed")
        if p.state is not OPEN:
            raise self._closed_exc()
        if self._send_frag is not None:
            raise ConcurrencyError(
                "a fragmented message is being sent; await send() to queue behind it"
            )
        if not self._write_message(p, message):
            raise TypeError(
                f"message must be str or bytes-like, not {type(message).__name__}; "
                "send fragmented messages with await send()"
            )

    async def _wait_fragmented(self) -> None:
        # Another coroutine is sending a fragmented message: frames of two
        # messages can't interleave (§5.4).
        while self._send_frag is not None:
            await asyncio.shield(self._send_frag)

    async def _drain(self) -> None:
        if self._lost.done():
            raise self._closed_exc()
        fut: asyncio.Future[None] = self.loop.create_future()
        self._drain_waiters.append(fut)
        await fut
        if self._lost.done() and self.protocol is not None and self.protocol.state is CLOSED:
            raise self._closed_exc()

    async def _send_fragments(self, items: Any, aitems: Any) -> None:
        p = self.protocol
        assert p is not None
        done: asyncio.Future[None] = self.loop.create_future()
        self._send_frag = done
        kind: type | None = None
        prev: Data | None = None
        started = False
        try:
            while True:
                try:
                    item = next(items) if aitems is None else await anext(aitems)
                except (StopIteration, StopAsyncIteration):
                    break
                if isinstance(item, str):
                    this: type = str
                elif isinstance(item, (bytes, bytearray, memoryview)):
                    this = bytes
                else:
                    raise TypeError(f"fragments must be str or bytes, not {type(item).__name__}")
                if kind is None:
                    kind = this
                elif this is not kind:
                    raise TypeError("all fragments of a message must be str or all bytes")
                if prev is not None:
                    first, started = not started, True
                    await self._send_fragment(p, prev, first, False)
                prev = item
            if prev is not None:
                first, started = not started, True
                await self._send_fragment(p, prev, first, True)
        except BaseException:
            if started and p.state is OPEN and p._send_frag_op:
                # A message cut in the middle can't be finished: fail the
                # connection rather than leave the peer waiting (1011).
                self._fail(1011, "fragmented message was interrupted")
            raise
        finally:
            self._send_frag = None
            done.set_result(None)

    async def _send_fragment(self, p: Protocol, item: Data, first: bool, fin: bool) -> None:
        if p.state is not OPEN:
            raise self._closed_exc()
        assert self.transport is not None
        if first:
            data = p.send_text(item, fin) if isinstance(item, str) else p.send_binary(item, fin)
        else:
            payload = item.encode() if isinstance(item, str) else bytes(item)
            data = p.send_continuation(payload, fin)
        self._write(data)
        if self._writing_paused:
            await self._drain()
