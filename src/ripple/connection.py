"""One asyncio protocol per socket: recv, send, ping, close, flow control, keepalive.

This is the hot path. The rules it follows (see DESIGN.md):

- ``data_received`` parses every complete frame in the chunk in one call and
  wakes a waiting ``recv()`` at most once.
- ``recv()`` on a non-empty queue returns without suspending.
- ``send()`` encodes and writes at once; it suspends only while the transport
  has paused writing (its buffer is above ``write_limit``).
- keepalive uses ``loop.call_later`` timers, not a task per connection.
- reads go into one buffer per thread (``asyncio.BufferedProtocol``), and
  what arrived is copied out: no 256 KiB bytes object per read.
- ``broadcast()`` doesn't write at once: it queues its frames on each
  connection, and one callback per loop iteration writes each connection's
  queued frames with one ``transport.write`` (a burst of K broadcasts costs
  one send syscall per connection, not K). Every other write first writes
  what is queued, so bytes go out in the order they were sent.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import struct
import sys
import threading
import uuid
from collections.abc import AsyncIterable, Callable, Coroutine, Iterable, Mapping
from typing import Any, cast

try:  # Linux: the bytes the kernel holds for the peer (sent, not yet acknowledged)
    import fcntl
    import termios

    _OUTQ: int = termios.TIOCOUTQ
except ImportError:  # pragma: no cover - not POSIX
    _OUTQ = 0

from .exceptions import (
    ConcurrencyError,
    ConnectionClosed,
    ConnectionClosedError,
    ConnectionClosedOK,
    InvalidState,
    ProtocolError,
)
from .protocol.headers import Headers
from .protocol.http11 import Request, Response
from .protocol.state import CLOSED, OPEN, Event, Pong, Protocol, State
from .typing import Data, LoggerLike

__all__ = ["Connection", "check_options"]


def check_options(
    *,
    ping_interval: float | None,
    ping_timeout: float | None,
    close_timeout: float | None,
    max_size: int | None,
    max_queue: int | None,
    read_limit: int,
    write_limit: int,
    **_: Any,
) -> None:
    """Check connection options at the call that takes them (serve, connect).

    Raises:
        ValueError: with the option's name and what to pass.
    """
    for name, value in (
        ("ping_interval", ping_interval),
        ("ping_timeout", ping_timeout),
        ("close_timeout", close_timeout),
        ("max_size", max_size),
        ("max_queue", max_queue),
    ):
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0
        ):
            raise ValueError(f"{name} must be a non-negative number or None, got {value!r}")
    for name, value in (("read_limit", read_limit), ("write_limit", write_limit)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative int, got {value!r}")
    if ping_interval == 0:
        raise ValueError("ping_interval must be > 0; pass None to disable keepalive")


# Binary messages at least this large are written without copying them into
# the frame (header and payload as two buffers): below it, a copy is cheaper
# than a second buffer.
_NO_COPY_SIZE = 2**16

# asyncio's own transports join writelines()' buffers before Python 3.12
# (3.12 sends them with sendmsg); uvloop's use writev.
_WRITELINES_JOINS = sys.version_info < (3, 12)

# Broadcast frames are queued per connection up to this many bytes; a larger
# frame, or one that would make the queue larger, is written at once (after
# what is queued): a write this big amortises its syscall already.
_COALESCE_MAX = 2**16

# Connections with broadcast frames queued, per event loop, and the one
# callback per loop iteration that writes them (see Connection._queue_write).
_dirty: dict[asyncio.AbstractEventLoop, list[Connection]] = {}


_INT = struct.Struct("i")


def _unsent(transport: asyncio.Transport | None) -> int:
    """Bytes written and not yet read by the peer's TCP stack that we can see:
    the transport's buffer plus, on Linux, the socket's send queue (several
    MB on loopback: keepalive must look through it to see a slow reader)."""
    if transport is None:
        return 0
    size = transport.get_write_buffer_size()
    sock = transport.get_extra_info("socket")
    if sock is not None and _OUTQ:
        try:
            size += _INT.unpack(fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0"))[0]
        except (OSError, ValueError):
            pass  # not a TCP socket (a pipe in tests), or closed meanwhile
    return size


def _new_dirty(loop: asyncio.AbstractEventLoop) -> list[Connection]:
    # Once per loop iteration with broadcasts, not per frame. A loop closed
    # before its callback ran leaves its list here: drop those first.
    for other in [lp for lp in _dirty if lp.is_closed()]:
        del _dirty[other]
    dirty: list[Connection] = []
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


#: Bytes a read may take at once (asyncio's own read size).
_READ_SIZE = 2**18
_reads = threading.local()


def _read_buffer() -> memoryview:
    # One read buffer per thread, shared by its connections: asyncio calls
    # get_buffer(), recv_into() and buffer_updated() back to back, and
    # buffer_updated() copies what arrived out of it before returning. Plain
    # Protocol reads cost a fresh 256 KiB bytes object per read, which
    # glibc often maps and unmaps (mmap/munmap per read on the hot path).
    view: memoryview | None = getattr(_reads, "view", None)
    if view is None:
        view = _reads.view = memoryview(bytearray(_READ_SIZE))
    return view


class Connection(asyncio.BufferedProtocol):
    """A WebSocket connection, either side. See :class:`ServerConnection`
    and :class:`ClientConnection` for the handshakes.

    Args:
        logger: where to log; None for ``ripple.server`` / ``ripple.client``.
        ping_interval: seconds between keepalive pings; None disables them.
        ping_timeout: seconds to wait for the pong before closing with 1011;
            None waits forever.
        close_timeout: seconds the closing handshake may take before the TCP
            connection is dropped.
        max_size: largest incoming message in bytes; None for no limit.
        max_queue: incoming messages buffered before reading pauses; None for
            no limit.
        read_limit: incoming bytes buffered (queued messages) before reading
            pauses; a single message up to ``max_size`` is always accepted.
        write_limit: the transport's write buffer high-water mark: ``send()``
            waits while the buffer is above it.
        loop: the running event loop, if the caller has it at hand (a server
            does: asyncio.get_running_loop() costs a getpid() per call).
    """

    # No per-instance __dict__: idle connections are most of a server's memory.
    __slots__ = (
        "_close_handle",
        "_drain_waiters",
        "_id",
        "_ka_data",
        "_ka_handle",
        "_ka_wbuf",
        "_lost",
        "_on_message",
        "_pending",
        "_pending_size",
        "_pings",
        "_qbytes",
        "_queue",
        "_reading_paused",
        "_recv_waiter",
        "_rx_seen",
        "_send_frag",
        "_writing_paused",
        "broadcast_skipped",
        "close_timeout",
        "latency",
        "logger",
        "loop",
        "max_queue",
        "max_size",
        "ping_interval",
        "ping_timeout",
        "protocol",
        "read_limit",
        "request",
        "response",
        "subprotocol",
        "transport",
        "write_limit",
    )

    side_name = "connection"

    def __init__(
        self,
        *,
        logger: LoggerLike = None,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_size: int | None = 2**20,
        max_queue: int | None = 2**5,
        read_limit: int = 2**16,
        write_limit: int = 2**16,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.loop = loop if loop is not None else asyncio.get_running_loop()
        self.logger: logging.Logger | logging.LoggerAdapter[Any] = logger or logging.getLogger(
            f"ripple.{self.side_name}"
        )
        self._id: uuid.UUID | None = None  # made on first use: ids cost memory
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_size = max_size
        self.max_queue = max_queue
        self.read_limit = read_limit
        self.write_limit = write_limit
        #: The negotiated subprotocol, if any.
        self.subprotocol: str | None = None
        #: The handshake request (sent by a client, received by a server).
        self.request: Request | None = None
        #: The handshake response.
        self.response: Response | None = None
        #: Round-trip time of the latest ping, in seconds (0 until one returns).
        self.latency = 0.0
        self.transport: asyncio.Transport | None = None
        self.protocol: Protocol | None = None
        #: Broadcast messages not written to it: over broadcast_limit, "skip".
        self.broadcast_skipped = 0

        # Created with the first message: an empty deque is ~600 bytes, and
        # most idle connections never queue anything.
        self._queue: collections.deque[Data] | None = None
        self._qbytes = 0
        self._recv_waiter: asyncio.Future[None] | None = None
        self._on_message: Callable[[Data], object] | None = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self._send_frag: asyncio.Future[None] | None = None
        self._pings: dict[bytes, tuple[asyncio.Future[float] | None, float]] = {}
        self._ka_handle: asyncio.TimerHandle | None = None
        self._ka_data: bytes | None = None
        self._rx_seen = False
        self._ka_wbuf = 0  # our write buffer's size when keepalive last looked
        self._close_handle: asyncio.TimerHandle | None = None
        self._lost = self.loop.create_future()
        # Broadcast frames waiting for the end of this loop iteration (None:
        # nothing queued; a list only while there is).
        self._pending: list[bytes] | None = None
        self._pending_size = 0

    # -- properties ---------------------------------------------------------

    @property
    def id(self) -> uuid.UUID:
        """A unique id for this connection, handy in logs."""
        if self._id is None:
            self._id = uuid.uuid4()
        return self._id

    @property
    def local_address(self) -> Any:
        """The local socket address: (host, port) for TCP, a path for unix sockets."""
        return None if self.transport is None else self.transport.get_extra_info("sockname")

    @property
    def remote_address(self) -> Any:
        """The peer's socket address: (host, port) for TCP."""
        return None if self.transport is None else self.transport.get_extra_info("peername")

    @property
    def state(self) -> State | None:
        """OPEN, CLOSING or CLOSED once the handshake is done; None before."""
        return None if self.protocol is None else self.protocol.state

    @property
    def closed(self) -> bool:
        """Whether the TCP connection is closed."""
        return self._lost.done()

    @property
    def close_code(self) -> int | None:
        """The close code received (1006 if none); None while the connection is open."""
        return None if self.protocol is None else self.protocol.close_code

    @property
    def close_reason(self) -> str | None:
        """The close reason received; None while the connection is open."""
        return None if self.protocol is None else self.protocol.close_reason

    @property
    def request_headers(self) -> Headers:
        """The handshake request's headers."""
        assert self.request is not None, "the opening handshake hasn't happened"
        return self.request.headers

    @property
    def response_headers(self) -> Headers:
        """The handshake response's headers."""
        assert self.response is not None, "the opening handshake hasn't completed"
        return self.response.headers

    # -- asyncio.BufferedProtocol -------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # No isinstance check: uvloop's transports don't derive from
        # asyncio.Transport, and ripple runs on any loop (DESIGN rule 8).
        self.transport = cast(asyncio.Transport, transport)
        self.transport.set_write_buffer_limits(self.write_limit, self.write_limit // 4)

    def get_buffer(self, sizehint: int) -> memoryview:
        p = self.protocol
        if p is not None and p.sink is not None and p.sink.in_place:
            # A large payload: read straight into the message (no copy).
            return p.sink.missing()  # type: ignore[return-value]  # in place: a view
        try:
            return _reads.view  # type: ignore[no-any-return]  # inlined _read_buffer(): per read
        except AttributeError:
            return _read_buffer()

    def buffer_updated(self, nbytes: int) -> None:
        # Same state as get_buffer() saw: nothing runs for us in between.
        p = self.protocol
        if p is None:
            # Copy out of the shared buffer: what arrived must outlive this call.
            self.handshake_data(_read_buffer()[:nbytes].tobytes())
            return
        self._rx_seen = True  # keepalive: the peer is alive
        if p.sink is not None and p.sink.in_place:
            self._received(p, p.receive_sink(nbytes))
            return
        # The protocol copies out only what it keeps (messages, a partial frame).
        self._received(p, p.receive_buffer(_reads.view, nbytes))

    def data_received(self, data: bytes) -> None:
        p = self.protocol
        if p is None:
            self.handshake_data(data)
            return
        self._rx_seen = True  # keepalive: the peer is alive
        self._received(p, p.receive_data(data))

    def _received(self, p: Protocol, events: list[Event]) -> None:
        if events and self._on_message is not None:
            events = self._deliver(p, events)  # what's left is recv()'s
        if events:
            q = self._queue
            if q is None:
                q = self._queue = collections.deque()
            qbytes = self._qbytes
            for ev in events:
                # Messages are str/bytes themselves: the common case first.
                t = type(ev)
                if t is str or t is bytes:
                    q.append(ev)  # type: ignore[arg-type]
                    qbytes += len(ev)  # type: ignore[arg-type]
                elif t is Pong:
                    self._pong(ev.data)  # type: ignore[union-attr]
            self._qbytes = qbytes
            recv_waiter = self._recv_waiter
            # Wake the consumer once per chunk, not once per message.
            if q and recv_waiter is not None and not recv_waiter.done():
                recv_waiter.set_result(None)
            # Only with messages queued: recv() is what resumes reading, so
            # pausing on an empty queue (max_queue=0, a pong) would stall.
            # Not after our close frame: the peer's close is what we wait for.
            if (
                q
                and not self._reading_paused
                and p.close_sent is None
                and (
                    (self.max_queue is not None and len(q) >= self.max_queue)
                    or qbytes > self.read_limit
                )
            ):
                self._pause_reading()
        if p._out or p._discard:
            self._after_receive(p)

    def _deliver(self, p: Protocol, events: list[Event]) -> list[Event]:
        """on_message(): each message to the callback, in the read callback.
        Returns the events left for recv() if the callback switched back."""
        it = iter(events)  # not enumerate(): the index is only for the rare switch
        for ev in it:
            t = type(ev)
            if t is str or t is bytes:
                callback = self._on_message
                if callback is None:
                    return [ev, *it]  # on_message(None) from the callback
                try:
                    callback(ev)  # type: ignore[arg-type]
                except Exception:
                    self.logger.error("error in the on_message callback", exc_info=True)
                    self._on_message = None
                    if p.state is OPEN:
                        self._start_close(p, 1011, "internal error")
                    return []
            elif t is Pong:
                self._pong(ev.data)  # type: ignore[union-attr]
        return []

    def on_message(self, callback: Callable[[Data], object] | None) -> None:
        """Hand each message to ``callback`` as it arrives, instead of
        queuing it for :meth:`recv`. ``None`` goes back to :meth:`recv`.

        The callback runs in the event loop's read callback, with the
        message (str or bytes) as its argument; there is no task switch per
        message, so it is the fastest way to receive. It must not block; to
        reply, call :meth:`send_nowait`; to do async work, start a task.
        Messages already queued go to the callback before this returns.

        Nothing is queued while a callback is set, so ``max_queue`` and
        ``read_limit`` don't apply; instead, reading pauses while the write
        buffer is above ``write_limit`` (replies the peer doesn't read), and
        resumes when it drains. If the callback raises, the error is logged
        and the connection closed with 1011, as for a handler.

        Args:
            callback: called with each message; None to stop.

        Raises:
            ConcurrencyError: a coroutine is waiting in :meth:`recv`.
            TypeError: ``callback`` isn't callable.
        """
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable or None, not {type(callback).__name__}")
        if callback is not None and self._recv_waiter is not None:
            raise ConcurrencyError("recv() is waiting for the next message; it would never get it")
        self._on_message = callback
        q = self._queue
        if callback is not None and q and self.protocol is not None:
            queued: list[Event] = list(q)
            q.clear()
            left = self._deliver(self.protocol, queued)
            q.extend(left)  # type: ignore[arg-type]  # messages only: they were queued
            self._qbytes = sum(len(m) for m in q)
        if self._reading_paused and not self._writing_paused:
            self._maybe_resume_reading()

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

    def eof_received(self) -> bool | None:
        # Let the transport close itself: a half-closed WebSocket is useless.
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        p = self.protocol
        if p is not None:
            p.receive_eof()
        for handle in (self._ka_handle, self._close_handle):
            if handle is not None:
                handle.cancel()
        self._ka_handle = None
        self._pending = None  # nobody to write them to
        self._pending_size = 0
        if not self._lost.done():
            self._lost.set_result(None)
        self._wake_waiters()
        if p is not None and self._pings:  # the exception only for waiters (per connection)
            closed = self._closed_exc()
            for pong_waiter, _ in self._pings.values():
                if pong_waiter is not None and not pong_waiter.done():
                    pong_waiter.set_exception(closed)
                    pong_waiter.exception()  # retrieved: nobody awaiting must not log it
            self._pings.clear()
        self.resume_writing()  # release send() calls waiting to drain
        self.handshake_lost(exc)

    def pause_writing(self) -> None:
        self._writing_paused = True
        p = self.protocol
        if p is not None:
            p.hold_pongs()  # a ping flood from a peer that doesn't read stays bounded
            if self._on_message is not None and not self._reading_paused and p.close_sent is None:
                # Nothing queues with a callback: its replies are what piles up.
                self._pause_reading()

    def resume_writing(self) -> None:
        self._writing_paused = False
        # The peer read what we wrote: alive, as much as if it had sent data
        # (keepalive: our ping may be stuck behind a burst it's draining).
        self._rx_seen = True
        p = self.protocol
        if p is not None:
            p.release_pongs()
            transport = self.transport
            if transport is not None and not transport.is_closing():
                for chunk in p.data_to_send():
                    self._write(chunk)
        waiters = self._drain_waiters
        self._drain_waiters = []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)
        if self._on_message is not None and self._reading_paused:
            self._maybe_resume_reading()

    # -- handshake hooks, overridden per side --------------------------------

    def handshake_data(self, data: bytes) -> None:
        raise NotImplementedError

    def handshake_lost(self, exc: Exception | None) -> None:
        """The TCP connection closed; the side releases what it waits on."""

    def start_protocol(self, protocol: Protocol, leftover: bytes) -> None:
        """Switch from the handshake to frames; feed bytes that came early."""
        self.protocol = protocol
        if self.ping_interval is not None:
            self._ka_handle = self.loop.call_later(self.ping_interval, self._ka_ping)
        if leftover:
            self.data_received(leftover)

    # -- receiving ----------------------------------------------------------

    def _pause_reading(self) -> None:
        if self.transport is not None and not self._lost.done():
            self._reading_paused = True
            self.transport.pause_reading()

    def _maybe_resume_reading(self) -> None:
        # Low-water marks at a quarter of the limits: resume in batches.
        queued = len(self._queue) if self._queue is not None else 0
        if (
            self.max_queue is None or queued <= self.max_queue // 4
        ) and self._qbytes <= self.read_limit // 4:
            self._reading_paused = False
            if self.transport is not None and not self._lost.done():
                self.transport.resume_reading()

    def _wake_waiters(self) -> None:
        waiter = self._recv_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def recv(self) -> Data:
        """Receive the next message.

        Returns:
            str for a text message, bytes for a binary one.

        Raises:
            ConnectionClosed: the connection is closed and every message
                received before that was returned.
            ConcurrencyError: another coroutine is already in recv().
        """
        if self._queue and self._recv_waiter is None:
            # Fast path: a message is waiting; no suspension, no future.
            # (With a waiter, the message is the waiter's: ConcurrencyError.)
            return self._pop()
        return await self._receive(False)

    def _pop(self) -> Data:
        q = self._queue
        assert q is not None
        msg = q.popleft()
        self._qbytes -= len(msg)
        if self._reading_paused:
            self._maybe_resume_reading()
        return msg

    async def _receive(self, iterating: bool) -> Data:
        # recv() and async iteration; `iterating` ends with StopAsyncIteration
        # instead of ConnectionClosedOK.
        if self._queue and self._recv_waiter is None:
            return self._pop()
        if self._recv_waiter is not None:
            raise ConcurrencyError(
                "recv() is already running in another coroutine; use one consumer per connection"
            )
        if self._on_message is not None:
            raise ConcurrencyError(
                "messages go to the on_message() callback; call on_message(None) to use recv()"
            )
        p = self.protocol
        if p is None:
            raise InvalidState("the opening handshake hasn't completed")
        if p.pending_failure is not None:
            self._fail_pending()
        if p.state is not OPEN and (p._discard or p.state is CLOSED):
            raise self._end_exc(iterating)
        while True:
            waiter: asyncio.Future[None] = self.loop.create_future()
            self._recv_waiter = waiter
            try:
                await waiter
            finally:
                self._recv_waiter = None
            if self._queue:  # may have been created while we waited
                return self._pop()
            if p.pending_failure is not None:
                self._fail_pending()
            # After our own close() the peer may still send messages until
            # its close frame: keep waiting until input has ended.
            if p._discard or self.state is CLOSED:
                raise self._end_exc(iterating)

    def _end_exc(self, iterating: bool) -> Exception:
        exc = self._closed_exc()
        if iterating and isinstance(exc, ConnectionClosedOK):
            return StopAsyncIteration()
        return exc

    def __aiter__(self) -> Connection:
        return self

    def __anext__(self) -> Coroutine[Any, Any, Data]:
        """The next message; iteration ends when the connection closes with 1000/1001.

        Raises:
            ConnectionClosedError: the connection closed with any other code.
        """
        # A plain def returning the coroutine: one coroutine per message
        # instead of __anext__ awaiting recv() (0.3 µs per message measured).
        return self._receive(True)

    def _closed_exc(self) -> ConnectionClosed:
        p = self.protocol
        if p is None:
            return ConnectionClosedError(None, None)
        cls = ConnectionClosedOK if p.closed_ok else ConnectionClosedError
        exc = cls(p.close_rcvd, p.close_sent, p.close_rcvd_then_sent)
        if p.failed is not None:
            exc.__cause__ = p.failed
        return exc

    # -- sending ------------------------------------------------------------

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

    # -- writing: direct, or queued until the end of the loop iteration -----

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

    async def ping(self, data: Data | None = None) -> asyncio.Future[float]:
        """Send a ping.

        Args:
            data: the payload (at most 125 bytes; str is UTF-8 encoded); a
                random 4-byte payload when None.

        Returns:
            A future that resolves to the round-trip time in seconds when the
            matching pong arrives: ``latency = await (await ws.ping())``.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ConcurrencyError: a ping with the same payload is awaiting its pong.
        """
        p = self.protocol
        if p is None or p.state is not OPEN:
            raise self._closed_exc()
        if data is None:
            data = os.urandom(4)
            while data in self._pings:
                data = os.urandom(4)
        elif isinstance(data, str):
            data = data.encode()
        else:
            data = bytes(data)
        if data in self._pings:
            raise ConcurrencyError("already waiting for a pong with the same data")
        frame = p.send_ping(data)
        fut: asyncio.Future[float] = self.loop.create_future()
        self._pings[data] = (fut, self.loop.time())
        self._write(frame)
        return fut

    async def pong(self, data: Data = b"") -> None:
        """Send an unsolicited pong (a unidirectional heartbeat, §5.5.3).

        Raises:
            ConnectionClosed: the connection is closing or closed.
        """
        p = self.protocol
        if p is None or p.state is not OPEN:
            raise self._closed_exc()
        payload = data.encode() if isinstance(data, str) else bytes(data)
        self._write(p.send_pong(payload))

    def _pong(self, data: bytes) -> None:
        pings = self._pings
        if data not in pings:
            return  # unsolicited pong (§5.5.3)
        now = self.loop.time()
        # A pong acknowledges its ping and every ping sent before it.
        while pings:
            key, (fut, sent) = next(iter(pings.items()))
            del pings[key]
            if fut is not None and not fut.done():
                fut.set_result(now - sent)
            if key == data:
                self.latency = now - sent
                break
        if self._ka_data is not None and self._ka_data not in pings:
            self._ka_pong(now)

    # -- keepalive ----------------------------------------------------------

    def _ka_ping(self) -> None:
        self._ka_handle = None
        p = self.protocol
        if p is None or p.state is not OPEN or self.transport is None:
            return
        data = os.urandom(4)
        while data in self._pings:
            data = os.urandom(4)
        self._pings[data] = (None, self.loop.time())
        self._ka_data = data
        self._rx_seen = False
        self._write(p.send_ping(data))
        self._ka_wbuf = _unsent(self.transport)
        if self.ping_timeout is not None:
            self._ka_handle = self.loop.call_later(self.ping_timeout, self._ka_timeout)

    def _ka_pong(self, now: float) -> None:
        self._ka_data = None
        if self._ka_handle is not None:
            self._ka_handle.cancel()
        assert self.ping_interval is not None
        self._ka_handle = self.loop.call_later(self.ping_interval, self._ka_ping)

    def _ka_timeout(self) -> None:
        self._ka_handle = None
        p = self.protocol
        if p is None or p.state is not OPEN:
            return  # closing already: close_timeout bounds that
        # What we sent and it hasn't taken shrank: the peer is reading.
        wbuf = _unsent(self.transport)
        drained = wbuf < self._ka_wbuf
        self._ka_wbuf = wbuf
        if (self._rx_seen or drained or self._reading_paused) and self.ping_timeout is not None:
            # The rule: a peer is dead only after a whole ping_timeout in
            # which nothing arrived while we were reading and it read nothing
            # we wrote. Data arriving, our write buffer draining (it shrank,
            # or resume_writing),
            # or reading paused because the application is behind, means the
            # pong may be queued behind a burst: wait another ping_timeout.
            self._rx_seen = False
            self._ka_handle = self.loop.call_later(self.ping_timeout, self._ka_timeout)
            return
        self.logger.debug("keepalive ping timeout; closing the connection")
        self._fail(1011, "keepalive ping timeout")
        # The peer is unresponsive: don't wait for it to close TCP.
        self._close_transport()

    # -- closing ------------------------------------------------------------

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
        await asyncio.shield(self._lost)
