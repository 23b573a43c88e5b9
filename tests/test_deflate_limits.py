"""permessage-deflate over real sockets: decompression bombs against a live
server (memory measured in a subprocess), and the compressor's state when
sends are cancelled or fragmented messages are cut short.

The raw peers here read compressed frames with their own zlib inflater, so a
compressor that drifted from what was written would show as garbage or as a
missing message.
"""

from __future__ import annotations

import asyncio
import os
import random
import socket
import struct
import sys
import zlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

import ripple
from aio_helpers import Parked, RawPeer, RawServer, Servers, open_raw, within
from ripple.protocol.deflate import ServerPerMessageDeflateFactory

pytestmark = pytest.mark.timeout(60)

TAIL = b"\x00\x00\xff\xff"
RSV1 = 0x40
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE = 0x0, 0x1, 0x2, 0x8
OFFER = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
SRC = str(Path(__file__).resolve().parent.parent / "src")


# -- a raw peer's view of compressed frames ---------------------------------------------------


def xor_mask(data: bytes, key: bytes) -> bytes:
    """Mask or unmask (independent of ripple's masking module)."""
    n = len(data)
    if not n:
        return data
    pad = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(pad, "big")).to_bytes(n, "big")


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """A masked frame, built by hand."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    return head + key + xor_mask(payload, key)


def deflate(data: bytes) -> bytes:
    """One message, compressed on its own (no back-references), tail stripped."""
    c = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


class Reader:
    """Reads frames off a raw peer; inflates compressed messages with one
    zlib stream kept across messages (context takeover, 15-bit window)."""

    def __init__(self, peer: RawPeer) -> None:
        self.reader = peer.reader
        self.inflater = zlib.decompressobj(-15)

    async def frame(self) -> tuple[bool, int, int, bytes]:
        """(fin, rsv, opcode, payload unmasked)."""
        read = self.reader.readexactly
        b0, b1 = await within(read(2))
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await within(read(2)))
        elif n == 127:
            (n,) = struct.unpack("!Q", await within(read(8)))
        key = await within(read(4)) if b1 & 0x80 else b""
        payload = await within(read(n))
        return bool(b0 & 0x80), b0 & 0x70, b0 & 0x0F, xor_mask(payload, key) if key else payload

    def inflate(self, payload: bytes, fin: bool) -> bytes:
        out = self.inflater.decompress(payload + TAIL if fin else payload)
        assert not self.inflater.unconsumed_tail
        return out

    async def message(self) -> tuple[int, bytes]:
        """The next data message (decompressed) or close frame: (opcode, payload).
        Pings are skipped."""
        fin, rsv, opcode, payload = await self.frame()
        while opcode in (0x9, 0xA):
            fin, rsv, opcode, payload = await self.frame()
        if opcode == OP_CLOSE:
            assert rsv == 0
            return opcode, payload
        assert opcode in (OP_TEXT, OP_BINARY)
        compressed = rsv == RSV1
        parts = [self.inflate(payload, fin) if compressed else payload]
        while not fin:
            fin, rsv, op, payload = await self.frame()
            assert op == OP_CONT and rsv == 0
            parts.append(self.inflate(payload, fin) if compressed else payload)
        return opcode, b"".join(parts)


def close_code(payload: bytes) -> int:
    return int(struct.unpack("!H", payload[:2])[0])


# -- a decompression bomb against a server in a subprocess -------------------------------------

SERVER_SCRIPT = """
import os, sys

# Linux carries ru_maxrss over exec: this process starts with the test
# runner's peak. A forked child starts with its own, so the server runs there.
pid = os.fork()
if pid:
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))

import asyncio, resource
import ripple

async def handler(ws):
    async for message in ws:
        # Echo small messages; report the size of big ones.
        await ws.send(message if len(message) < 10_000 else f"{len(message)} bytes")

def rss_kib():
    # Peak RSS (ru_maxrss, KiB on Linux), then /proc's VmHWM and VmRSS.
    status = {}
    with open("/proc/self/status") as f:
        for line in f:
            name, _, value = line.partition(":")
            status[name] = value.split()[0] if value.split() else "0"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak, int(status.get("VmHWM", 0)), int(status.get("VmRSS", 0))

async def main():
    limited = await ripple.serve(handler, "127.0.0.1", 0, max_size=2**20, ping_interval=None)
    unlimited = await ripple.serve(handler, "127.0.0.1", 0, max_size=None, ping_interval=None)
    ports = [next(iter(s.sockets)).getsockname()[1] for s in (limited, unlimited)]
    print("PORTS", *ports, flush=True)
    loop = asyncio.get_running_loop()
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "rss":
        print("RSS", *rss_kib(), flush=True)
    for s in (limited, unlimited):
        s.close()
        await s.wait_closed()

asyncio.run(main())
"""


def bomb(mib: int) -> bytes:
    """`mib` MiB of zeros, compressed: independent 1 MiB pieces (a full flush
    resets the compressor), so the piece repeats and building it is instant."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(bytes(2**20)) + c.flush(zlib.Z_FULL_FLUSH)
    # Each piece inflates to 1 MiB on its own and after another.
    d = zlib.decompressobj(-15)
    assert d.decompress(piece * 2) == bytes(2**21)
    return (piece * mib)[:-4]  # §7.2.1: strip the final empty block


class BombServer:
    """Talks to the server script: ports and peak RSS on request."""

    def __init__(self, proc: asyncio.subprocess.Process, ports: list[int]) -> None:
        self.proc = proc
        self.limited, self.unlimited = ports

    async def rss_kib(self) -> tuple[int, int, int]:
        """The server process's ru_maxrss, VmHWM and VmRSS, in KiB."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"rss\n")
        await self.proc.stdin.drain()
        label, *values = (await within(self.proc.stdout.readline())).split()
        assert label == b"RSS"
        peak, hwm, current = (int(v) for v in values)
        return peak, hwm, current


@pytest.fixture
async def bomb_server(tmp_path: Path) -> AsyncIterator[BombServer]:
    script = tmp_path / "bomb_server.py"
    script.write_text(SERVER_SCRIPT)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (SRC, env.get("PYTHONPATH")) if p)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    try:
        line = await within(proc.stdout.readline(), 30)
        label, *ports = line.split()
        assert label == b"PORTS", line
        yield BombServer(proc, [int(p) for p in ports])
    finally:
        if proc.returncode is None:
            proc.stdin.write(b"quit\n")
            try:
                await within(proc.wait(), 10)
            except asyncio.TimeoutError:
                proc.kill()
                await proc.wait()
    stderr = (await proc.stderr.read()).decode(errors="replace")
    # Nothing crashed or logged an error on the way.
    assert "Traceback" not in stderr, stderr
    assert proc.returncode == 0, stderr


async def raw_deflate_client(port: int) -> tuple[RawPeer, Reader]:
    peer = await open_raw("127.0.0.1", port)
    status, headers, _ = await peer.handshake(extra=OFFER)
    assert status == 101
    # ripple's default answer to a bare offer: our 15-bit window is left alone.
    answer = headers["sec-websocket-extensions"]
    assert answer.startswith("permessage-deflate") and "client_max_window_bits" not in answer
    return peer, Reader(peer)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units and /proc are Linux's")
async def test_decompression_bomb_closes_1009_with_bounded_memory(
    bomb_server: BombServer, record_property: Callable[[str, object], None]
) -> None:
    max_size = 2**20
    # The largest frame the server buffers for a compressed message of max_size.
    frame_limit = max_size + (max_size >> 8) + 1024
    payload = bomb(1016)  # ~1016 MiB inflated
    assert len(payload) < frame_limit
    bomb_frame = client_frame(OP_BINARY, payload, rsv=RSV1)
    url = f"ws://127.0.0.1:{bomb_server.limited}/"

    # A connection that stays up through the attack (ripple's client: deflate too).
    bystander = await within(ripple.connect(url, ping_interval=None))
    try:
        assert bystander.response_headers["Sec-WebSocket-Extensions"].startswith(
            "permessage-deflate"
        )
        await bystander.send("warm up " * 100)
        assert await within(bystander.recv()) == "warm up " * 100

        peer, reader = await raw_deflate_client(bomb_server.limited)
        # Warm up the server's decompression path too.
        peer.writer.write(client_frame(OP_TEXT, deflate(b"hello " * 100), rsv=RSV1))
        assert await reader.message() == (OP_TEXT, b"hello " * 100)

        before, hwm_before, current_before = await bomb_server.rss_kib()
        peer.writer.write(bomb_frame)
        opcode, close = await reader.message()
        assert (opcode, close_code(close)) == (OP_CLOSE, 1009)
        # Stopped while decompressing, not by the frame's declared length.
        assert close[2:].endswith(b"once decompressed")
        assert await peer.read_eof() == b""  # the server closed TCP after the close frame
        peer.close()
        after, hwm_after, current_after = await bomb_server.rss_kib()

        # The server still serves the other connection, and new ones.
        await bystander.send("still here " * 100)
        assert await within(bystander.recv()) == "still here " * 100
        async with ripple.connect(url, ping_interval=None) as fresh:
            await fresh.send(b"\x00" * 5000)
            assert await within(fresh.recv()) == b"\x00" * 5000
    finally:
        await within(bystander.close())

    # Control: the same measurement sees an unbounded inflation (32 MiB,
    # max_size=None), so the bound above means something.
    peer, reader = await raw_deflate_client(bomb_server.unlimited)
    peer.writer.write(client_frame(OP_BINARY, bomb(32), rsv=RSV1))
    assert await reader.message() == (OP_TEXT, f"{32 * 2**20} bytes".encode())
    peer.close()
    control, _, _ = await bomb_server.rss_kib()

    growth_mib = (after - before) / 1024
    control_mib = (control - after) / 1024
    record_property("bomb_peak_rss_growth_mib", round(growth_mib, 2))
    record_property("control_32mib_peak_rss_growth_mib", round(control_mib, 2))
    print(
        f"\nru_maxrss before bomb {before / 1024:.1f} MiB, after {after / 1024:.1f} MiB "
        f"(growth {growth_mib:.2f} MiB); VmHWM {hwm_before / 1024:.1f} -> "
        f"{hwm_after / 1024:.1f} MiB; VmRSS {current_before / 1024:.1f} -> "
        f"{current_after / 1024:.1f} MiB; unlimited 32 MiB control +{control_mib:.1f} MiB"
    )
    assert growth_mib < 64
    assert (hwm_after - hwm_before) / 1024 < 64
    assert control_mib > 24


# -- cancelled sends and the compressor's state ------------------------------------------------

WRITE_LIMIT = 4096


def shrink_buffers(transport: asyncio.BaseTransport, option: int) -> None:
    sock = transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, option, 4096)


async def stalled_raw_client(port: int) -> RawPeer:
    """A raw client with small buffers that reads only when told to."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await within(loop.sock_connect(sock, ("127.0.0.1", port)))
    reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
    return RawPeer(reader, writer, mask=True)


@pytest.fixture(params=["server-sends", "server-sends-context-takeover", "client-sends"])
async def stalled(
    request: pytest.FixtureRequest, servers: Servers, raw_server: RawServer
) -> AsyncIterator[tuple[ripple.Connection, RawPeer]]:
    """A ripple connection with deflate negotiated and write_limit=4096, and
    a raw peer on the other end that doesn't read until the test does."""
    options: dict[str, Any] = {"write_limit": WRITE_LIMIT, "ping_interval": None}
    ws: ripple.Connection
    if request.param.startswith("server-sends"):
        context_takeover = request.param.endswith("context-takeover")
        if context_takeover:
            # The server's compressor keeps its state from message to message.
            options["extensions"] = [ServerPerMessageDeflateFactory(server_max_window_bits=12)]
        parked = Parked()
        server, _ = await servers.start(parked, **options)
        port = next(iter(server.sockets)).getsockname()[1]
        peer = await stalled_raw_client(port)
        status, headers, _ = await peer.handshake(extra=OFFER)
        assert status == 101
        answer = headers["sec-websocket-extensions"]
        assert ("server_no_context_takeover" in answer) is not context_takeover
        ws = await parked.next()
    else:
        raw_server.reply = lambda key: (
            RawServer.accept(key)[:-2] + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        )
        url = await raw_server.start()
        ws = await within(ripple.connect(url, **options))
        peer = await raw_server.next_peer()
        shrink_buffers(peer.writer.transport, socket.SO_RCVBUF)
        # The raw server's reader pauses the socket at 2 x 64 KiB buffered.
    assert ws.protocol is not None and ws.protocol.extensions
    assert ws.transport is not None
    shrink_buffers(ws.transport, socket.SO_SNDBUF)
    try:
        yield ws, peer
    finally:
        peer.writer.transport.abort()
        # (Not once closed: a transport that flushed before closing can't abort.)
        if ws.transport is not None and not ws.closed:
            ws.transport.abort()
        await within(ws.wait_closed())


async def send_until_blocked(
    ws: ripple.Connection, messages: Callable[[int], bytes]
) -> tuple[list[bytes], asyncio.Task[None]]:
    """Send messages until one waits on drain; return those sent and that send's task."""
    sent: list[bytes] = []
    for i in range(4000):
        message = messages(i)
        sent.append(message)
        task = asyncio.ensure_future(ws.send(message))
        await asyncio.sleep(0)
        if not task.done():
            await asyncio.sleep(0.05)
            if not task.done():
                return sent, task
        task.result()
    raise AssertionError("the peer's buffers never filled up")


async def test_cancelled_send_leaves_compressor_consistent(
    stalled: tuple[ripple.Connection, RawPeer],
) -> None:
    ws, peer = stalled
    rng = random.Random(1)
    motif = rng.randbytes(1024)
    # Random (incompressible) bodies fill buffers; the motif repeats, so the
    # compressor refers back to earlier messages.
    sent, blocked = await send_until_blocked(
        ws, lambda i: motif + rng.randbytes(rng.randrange(1024, 6144)) + motif
    )
    blocked.cancel()
    with pytest.raises(asyncio.CancelledError):
        await blocked
    assert ws.state is ripple.State.OPEN

    # Messages after the cancel: repetitive, text and binary, referring back.
    after: list[str | bytes] = []
    for i in range(30):
        after.append(motif + rng.randbytes(100) if i % 3 else f"after {i} " * 200)
        after.append(motif * 3)

    async def send_rest() -> None:
        for message in after:
            await ws.send(message)
        await ws.close()

    async def read_all() -> list[tuple[int, bytes]]:
        # Everything up to the close frame: a message missing or extra, or a
        # compressor out of step with the stream, shows as a difference.
        reader = Reader(peer)
        received = []
        while (message := await reader.message())[0] != OP_CLOSE:
            received.append(message)
        assert close_code(message[1]) == 1000
        peer.send_close()
        peer.writer.close()
        return received

    _, received = await within(asyncio.gather(send_rest(), read_all()), 30)
    # The cancelled send had already written its message: cancelling only
    # stopped the wait for the buffer to drain.
    expected = [(OP_BINARY, m) for m in sent] + [
        (OP_TEXT, m.encode()) if isinstance(m, str) else (OP_BINARY, m) for m in after
    ]
    assert len(received) == len(expected)
    assert received == expected
    assert ws.close_code == 1000


async def test_fragmented_send_cancelled_between_fragments_fails_1011(
    stalled: tuple[ripple.Connection, RawPeer],
) -> None:
    ws, peer = stalled
    gate = asyncio.Event()

    async def fragments() -> AsyncIterator[str]:
        yield "first part " * 50
        yield "second part"
        await gate.wait()  # never set: the send is cancelled here
        yield "never sent"

    task = asyncio.ensure_future(ws.send(fragments()))
    reader = Reader(peer)
    fin, rsv, opcode, payload = await reader.frame()
    assert (fin, rsv, opcode) == (False, RSV1, OP_TEXT)
    # A non-final frame ends with a sync flush: it inflates completely.
    assert reader.inflate(payload, fin) == ("first part " * 50).encode()
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(task)
    # Then a close frame, not a continuation built on a half-used compressor.
    fin, rsv, opcode, payload = await reader.frame()
    assert (fin, rsv, opcode) == (True, 0, OP_CLOSE)
    assert close_code(payload) == 1011
    assert payload[2:] == b"fragmented message was interrupted"
    with pytest.raises(ripple.ConnectionClosed):
        await ws.send("too late")


async def test_fragmented_send_cancelled_while_draining_fails_1011(
    stalled: tuple[ripple.Connection, RawPeer],
) -> None:
    ws, peer = stalled
    rng = random.Random(2)
    parts = [rng.randbytes(16384) for _ in range(64)]
    task = asyncio.ensure_future(ws.send(parts))
    await asyncio.sleep(0.2)
    assert not task.done(), "the send should be waiting for the peer to read"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(task)

    # The peer reads: the fragments written so far, each decodable, then 1011.
    reader = Reader(peer)
    got: list[bytes] = []
    while True:
        fin, rsv, opcode, payload = await reader.frame()
        if opcode == OP_CLOSE:
            assert close_code(payload) == 1011
            break
        assert not fin, "the interrupted message must not be finished"
        assert (rsv, opcode) == ((RSV1, OP_BINARY) if not got else (0, OP_CONT))
        got.append(reader.inflate(payload, fin))
    assert 0 < len(got) < len(parts)
    assert got == parts[: len(got)]
    with pytest.raises(ripple.ConnectionClosed):
        await ws.send(b"too late")
