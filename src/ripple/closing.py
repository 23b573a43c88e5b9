"""The closing side of a connection: acting on what the protocol asks for
after input (its frames to send, closing TCP), failing a connection, the
closing handshake and its timers, and the exception a closed connection raises.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK, ProtocolError
from .protocol.state import Protocol
from .writing import Writer

if TYPE_CHECKING:
    from .typing import Data

__all__ = ["Closing"]


class Closing(Writer):
    """Closing, failing, and the close timers (a layer of Connection)."""

    __slots__ = (
        "_close_handle",
        "_lost",
        "_queue",
        "_reading_paused",
        "_recv_waiter",
        "close_timeout",
        "logger",
        "protocol",
    )

    protocol: Protocol | None
    logger: logging.Logger | logging.LoggerAdapter[Any]
    close_timeout: float | None
    _close_handle: asyncio.TimerHandle | None
    # Done when the TCP connection is lost (connection_lost).
    _lost: asyncio.Future[None]
    # Created with the first message: an empty deque is ~600 bytes, and
    # most idle connections never queue anything.
    _queue: collections.deque[Data] | None
    _reading_paused: bool
    # recv()'s wait: its result is the message itself when one arrives
    # alone with nothing queued, None for anything else (see _receive()).
    _recv_waiter: asyncio.Future[Data | None] | None

    def _after_receive(self, p: Protocol) -> None:
        transport = self.transport
        assert transport is not None
        if p.pending_failure is not None:
            if self._queue:
                # Let the application handle what came before the error,
                # but not forever.
                self._arm_close_timer(self._fail_pending)
            else:
                p.fail(p.pending_failure)
        out = p.data_to_send()
        if out and self._pending is not None:
            self._flush_pending()  # queued broadcasts came first
        for chunk in out:
            transport.write(chunk)
        if p.failed is not None and self._close_handle is None:
            self.logger.debug("protocol error: %s", p.failed)
        if p.close_transport:
            self._close_transport()
        elif p.close_rcvd is not None or p.failed is not None:
            # Client side: the server should close TCP first (§7.1.1); keep
            # reading (and discarding) so it can, but no longer than
            # close_timeout.
            self._arm_close_timer()
        if p.close_rcvd is not None or p.failed is not None:
            self._wake_waiters()

    def _wake_waiters(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _closed_exc(self) -> ConnectionClosed:
        p = self.protocol
        if p is None:
            return ConnectionClosedError(None, None)
        cls = ConnectionClosedOK if p.closed_ok else ConnectionClosedError
        exc = cls(p.close_rcvd, p.close_sent, p.close_rcvd_then_sent)
        if p.failed is not None:
            exc.__cause__ = p.failed
        return exc

    def _fail(self, code: int, reason: str) -> None:
        p = self.protocol
        assert p is not None
        exc = ProtocolError(reason)
        exc.code = code
        p.fail(exc)
        self._after_receive(p)

    def _arm_close_timer(self, callback: Callable[[], None] | None = None) -> None:
        # close_timeout=None: no limit, as the caller asked.
        if self._close_handle is None and not self._lost.done() and self.close_timeout is not None:
            self._close_handle = self.loop.call_later(
                self.close_timeout, callback or self._close_expired
            )

    def _fail_pending(self) -> None:
        # The protocol error that followed the messages now in the queue.
        p = self.protocol
        if p is not None and p.pending_failure is not None:
            if self._close_handle is not None:
                self._close_handle.cancel()
                self._close_handle = None
            p.fail(p.pending_failure)
            self._after_receive(p)

    def _close_expired(self) -> None:
        if self.transport is not None and not self._lost.done():
            self.logger.debug("closing handshake timed out; dropping the connection")
            self.transport.abort()

    def _close_transport(self) -> None:
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.close()
        # close() waits to flush the buffer: if the peer stops reading, drop it.
        self._arm_close_timer()

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Perform the closing handshake and wait for the TCP connection to close.

        Args:
            code: the close code (1000 normal, 1001 going away, 3000-4999 for
                applications).
            reason: a short reason, at most 123 bytes in UTF-8.

        Raises:
            ProtocolError: the code can't be sent or the reason is too long.
        """
        if code == 1005:
            # The sans-I/O layer takes 1005 to mean "a close frame without a
            # code"; for applications it is reserved (RFC 6455 §7.4.1).
            raise ProtocolError(
                "close code 1005 can't be sent: use 1000-1003, 1007-1014, or 3000-4999"
            )
        p = self.protocol
        if p is None:
            if self.transport is not None:
                self.transport.close()
            await self.wait_closed()
            return
        self._start_close(p, code, reason)
        await self.wait_closed()

    def _start_close(self, p: Protocol, code: int, reason: str) -> None:
        """Send our close frame; close TCP (server) or wait for the peer's close."""
        data = p.send_close(code, reason)
        if data and self.transport is not None and not self._lost.done():
            self._write(data)  # after queued broadcasts: nothing may follow a close frame
        if self._reading_paused and self.transport is not None and not self._lost.done():
            # The peer's close frame is behind what we haven't read: read on,
            # or the closing handshake can only time out.
            self._reading_paused = False
            self.transport.resume_reading()
        if p.close_transport:
            self._close_transport()
        else:
            self._arm_close_timer()

    async def wait_closed(self) -> None:
        """Wait until the TCP connection is closed."""
        lost = self._lost
        if lost.done():
            return
        # A waiter of our own rather than asyncio.shield(): cancelling it
        # mustn't cancel _lost, and shield's outer future and two closures
        # were 0.5 KiB of every idle connection whose handler waits here.
        waiter = self.loop.create_future()
        wake = functools.partial(_wake, waiter)
        lost.add_done_callback(wake)
        try:
            await waiter
        finally:
            if not lost.done():
                lost.remove_done_callback(wake)  # cancelled: leave nothing behind


def _wake(waiter: asyncio.Future[None], _lost: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
