"""Pings, pongs and keepalive.

Keepalive uses ``loop.call_later`` timers, not a task per connection: an
idle connection costs memory only.
"""

from __future__ import annotations

import asyncio
import os
import struct

try:  # Linux: the bytes the kernel holds for the peer (sent, not yet acknowledged)
    import fcntl
    import termios

    _OUTQ: int = termios.TIOCOUTQ
except ImportError:  # pragma: no cover - not POSIX
    _OUTQ = 0

from .exceptions import ConcurrencyError
from .protocol.state import OPEN
from .sending import Sending
from .typing import Data

__all__ = ["Keepalive"]

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


class Keepalive(Sending):
    """ping(), pong() and the keepalive timers (a layer of Connection)."""

    __slots__ = (
        "_ka_handle",
        "_ka_sent",
        "_pings",
        "_rx_seen",
        "latency",
        "ping_interval",
        "ping_timeout",
    )

    ping_interval: float | None
    ping_timeout: float | None
    #: Round-trip time of the latest ping, in seconds (0 until one returns).
    latency: float
    # Pings awaiting their pong, oldest first: future (None for keepalive's) and time sent.
    _pings: dict[bytes, tuple[asyncio.Future[float] | None, float]]
    _ka_handle: asyncio.TimerHandle | None
    # Keepalive's ping awaiting its pong, and our write buffer's size when
    # keepalive last looked; one slot, not two: 8 bytes of every connection.
    _ka_sent: tuple[bytes, int] | None
    # Something arrived since keepalive last looked: the peer is alive.
    _rx_seen: bool

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
        if self._ka_sent is not None and self._ka_sent[0] not in pings:
            self._ka_pong(now)

    def _ka_ping(self) -> None:
        self._ka_handle = None
        p = self.protocol
        if p is None or p.state is not OPEN or self.transport is None:
            return
        data = os.urandom(4)
        while data in self._pings:
            data = os.urandom(4)
        self._pings[data] = (None, self.loop.time())
        self._rx_seen = False
        self._write(p.send_ping(data))
        self._ka_sent = (data, _unsent(self.transport))
        if self.ping_timeout is not None:
            self._ka_handle = self.loop.call_later(self.ping_timeout, self._ka_timeout)

    def _ka_pong(self, now: float) -> None:
        self._ka_sent = None
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
        assert self._ka_sent is not None  # armed with the ping, cancelled by its pong
        data, before = self._ka_sent
        wbuf = _unsent(self.transport)
        drained = wbuf < before
        self._ka_sent = (data, wbuf)
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
