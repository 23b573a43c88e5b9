"""A TCP relay that records the WebSocket frames passing through it.

Put between ripple and a peer, it shows what neither library reports: the
RSV1 bit of each frame (set on the first frame of a compressed message,
RFC 7692 §6) and how many bytes each message took on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import NamedTuple

OP_CONT = 0x0
OP_CLOSE = 0x8


class WireFrame(NamedTuple):
    opcode: int
    fin: bool
    rsv1: bool
    #: Payload length on the wire (compressed, if it is).
    length: int


class WireMessage(NamedTuple):
    opcode: int
    #: RSV1 on its first frame: the message is compressed.
    compressed: bool
    #: Payload bytes on the wire, all frames together.
    length: int
    frames: int


@dataclass
class WireLog:
    """The frames sent in one direction, parsed from the bytes relayed."""

    #: Bytes relayed, handshake included.
    total: int = 0
    frames: list[WireFrame] = field(default_factory=list)
    _buffer: bytearray = field(default_factory=bytearray)
    _in_handshake: bool = True

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        self._buffer += data
        buf = self._buffer
        if self._in_handshake:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            del buf[: end + 4]
            self._in_handshake = False
        while len(buf) >= 2:
            length = buf[1] & 0x7F
            start = 2
            if length == 126:
                start = 4
            elif length == 127:
                start = 10
            if len(buf) < start:
                return
            if start > 2:
                length = int.from_bytes(buf[2:start], "big")
            if buf[1] & 0x80:  # masked
                start += 4
            if len(buf) < start + length:
                return
            self.frames.append(
                WireFrame(buf[0] & 0x0F, bool(buf[0] & 0x80), bool(buf[0] & 0x40), length)
            )
            del buf[: start + length]

    def messages(self) -> list[WireMessage]:
        """Data messages, fragments joined; control frames left out."""
        messages: list[WireMessage] = []
        first: WireFrame | None = None
        length = count = 0
        for frame in self.frames:
            if frame.opcode >= OP_CLOSE:
                continue
            if frame.opcode != OP_CONT:
                first, length, count = frame, 0, 0
            assert first is not None, "continuation frame without a first frame"
            length += frame.length
            count += 1
            if frame.fin:
                messages.append(WireMessage(first.opcode, first.rsv1, length, count))
                first = None
        return messages

    def control_frames(self) -> list[WireFrame]:
        return [frame for frame in self.frames if frame.opcode >= OP_CLOSE]


class Relay:
    """Listens on 127.0.0.1 and relays each connection to ``target_port``.

    ``upstream`` logs what clients send, ``downstream`` what the target
    sends back: one connection's worth (the tests relay one each).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.upstream = WireLog()
        self.downstream = WireLog()
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        writers = [writer]
        self._writers.append(writer)
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            writers.append(up_writer)
            self._writers.append(up_writer)
            await asyncio.gather(
                self._pump(reader, up_writer, self.upstream),
                self._pump(up_reader, writer, self.downstream),
            )
        except asyncio.CancelledError:
            # stop() gave up waiting; ending quietly keeps asyncio's
            # start_server callback from logging the cancellation.
            pass
        finally:
            for w in writers:
                w.close()
            self._tasks.discard(task)

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, log: WireLog
    ) -> None:
        try:
            while data := await reader.read(65536):
                log.feed(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            # Pass the EOF on (half-close), as a direct connection would.
            with contextlib.suppress(OSError, RuntimeError):
                if writer.can_write_eof():
                    writer.write_eof()
                else:
                    writer.close()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Closing the sockets ends the pumps; cancel what's left after a while.
        for writer in self._writers:
            writer.close()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=1.0)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        if self._server is not None:
            await self._server.wait_closed()
