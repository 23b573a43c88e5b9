"""Limits that hold against a hostile peer: frame and message sizes, fragment
counts, HTTP heads, ping floods.

Already proven elsewhere, and not repeated here:
- a message over max_size closes with 1009: tests/test_server.py::
  test_max_size_closes_with_1009, test_max_size_applies_to_fragmented_messages;
  the sans-I/O decision from the declared length: tests/protocol/test_state.py::
  test_declared_length_over_max_size, test_declared_length_checked_before_mask_key;
- decompression bombs: tests/test_deflate_limits.py::
  test_decompression_bomb_closes_1009_with_bounded_memory;
- HTTP line length and header count over sockets: tests/test_server.py::
  test_huge_header_line_gets_431, test_too_many_headers_get_431.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from typing import Any

import pytest
from robust_helpers import echo_server_process, linux_only, report, rss_kib, rss_kib_of

import ripple
from aio_helpers import (
    Parked,
    RawPeer,
    Servers,
    build_frame,
    echo,
    open_raw,
    read_http_response,
    server_port,
    within,
)
from ripple.protocol.frames import encode_frame

pytestmark = pytest.mark.timeout(90)

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


async def _echo_peer(servers: Servers, **kwargs: Any) -> tuple[RawPeer, ripple.Server]:
    server, _ = await servers.start(echo, **kwargs)
    peer = await open_raw("127.0.0.1", server_port(server))
    status, _, _ = await peer.handshake()
    assert status == 101
    return peer, server


async def _echo_rounds(url: str, rounds: int, stop: asyncio.Event) -> int:
    """A well-behaved client echoing until `stop` (at most `rounds` times)."""
    done = 0
    async with ripple.connect(url, compression=None) as client:
        for i in range(rounds):
            await client.send(f"m{i}")
            assert await within(client.recv()) == f"m{i}"
            done += 1
            if stop.is_set():
                break
            await asyncio.sleep(0.001)
    return done


# -- frame and message size ----------------------------------------------------------


async def test_frame_declaring_a_huge_length_is_refused_before_its_payload(
    servers: Servers,
) -> None:
    # 2**40 bytes declared, none sent: the server answers 1009 from the
    # header alone, so it never waits for (or buffers) the payload.
    peer, _ = await _echo_peer(servers, max_size=2**20)
    try:
        peer.writer.write(b"\x82\xff" + struct.pack("!Q", 2**40) + b"\x00\x00\x00\x00")
        payload = await peer.recv_until(OP_CLOSE)
        assert struct.unpack("!H", payload[:2])[0] == 1009
        assert await peer.read_eof() == b""
    finally:
        peer.writer.transport.abort()


@pytest.mark.parametrize(("max_size", "declared"), [(None, 2**40), (2**25, 2**25)])
async def test_declared_lengths_reserve_no_memory(
    servers: Servers, max_size: int | None, declared: int
) -> None:
    # 50 connections each declare a huge frame (within max_size) and send
    # 64 KiB of it. What a header declares isn't reserved in memory (in
    # place: address space only; past IN_PLACE_MAX: grown as data arrives),
    # so RSS grows by about what arrived, and the server keeps echoing.
    server, url = await servers.start(echo, max_size=max_size, compression=None)
    before = rss_kib()
    peers = []
    try:
        for _ in range(50):
            peer = await open_raw("127.0.0.1", server_port(server))
            assert (await peer.handshake())[0] == 101
            peer.writer.write(
                b"\x82\xff" + struct.pack("!Q", declared) + b"\x00" * 4 + b"z" * 65536
            )
            peers.append(peer)
        for peer in peers:
            await within(peer.writer.drain())
        stop = asyncio.Event()
        assert await within(_echo_rounds(url, 20, stop)) == 20
        grown = rss_kib() - before
        # 3.2 MB arrived; 50 declared frames of 32 MiB would be 1.6 GB.
        assert grown < 50 * 64 * 4 + 8192, f"RSS grew by {grown} KiB"
    finally:
        for peer in peers:
            peer.writer.transport.abort()


# -- fragments per message -----------------------------------------------------------

MILLION = 1_000_000


def _empty_fragments(count: int) -> bytes:
    first = encode_frame(OP_BINARY, b"", fin=False, mask=True)
    return first + encode_frame(OP_CONT, b"", fin=False, mask=True) * count


async def test_a_million_empty_fragments_make_one_message(
    servers: Servers, record_property: Any
) -> None:
    # ripple has no limit on fragments per message: a message of a million
    # 0-byte fragments (6 MB on the wire) is parsed as one empty message,
    # and another connection keeps being served meanwhile.
    peer, server = await _echo_peer(servers, compression=None)
    url = f"ws://127.0.0.1:{server_port(server)}/"
    stop = asyncio.Event()
    bystander = asyncio.create_task(_echo_rounds(url, 100_000, stop))
    try:
        before = rss_kib()
        wire = _empty_fragments(MILLION)
        for i in range(0, len(wire), 2**16):  # bounded: 6 MB in 64 KiB writes
            peer.writer.write(wire[i : i + 2**16])
            await peer.writer.drain()
        peer.send_frame(OP_CONT, b"end")
        fin, opcode, payload = await within(peer.recv_frame(), 60)
        grown = rss_kib() - before
        assert (fin, opcode, payload) == (True, OP_BINARY, b"end")
        stop.set()
        assert await within(bystander, 30) > 0
        report(record_property, "million_empty_fragments_rss_growth_kib", grown)
    finally:
        stop.set()
        peer.writer.transport.abort()
        await asyncio.gather(bystander, return_exceptions=True)


_FEED = """
import os, sys
from ripple.protocol.frames import encode_frame
from ripple.protocol.state import SERVER, Protocol

count, size, max_size = map(int, sys.argv[1:])
proto = Protocol(SERVER, max_size=max_size)
first = encode_frame(0x2, b"a" * size, fin=False, mask=True)
batch = encode_frame(0x0, b"a" * size, fin=False, mask=True) * 1000

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

before = rss()
assert proto.receive_data(first) == []
for _ in range(count // 1000):
    assert proto.receive_data(batch) == []
print(rss() - before, proto.failed is None)
"""


async def _held_by_fragments(count: int, size: int, max_size: int) -> int:
    """RSS growth of a fresh process whose server Protocol received the first
    `count` fragments of a message, `size` bytes each (a clean measurement:
    nothing else runs in that process)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _FEED,
        str(count),
        str(size),
        str(max_size),
        stdout=asyncio.subprocess.PIPE,
    )
    out, _ = await within(proc.communicate(), 60)
    assert proc.returncode == 0
    held, ok = out.split()
    assert ok == b"True", "the message failed before max_size"
    return int(held)


# Empty fragments add nothing to the message being assembled, and tiny ones
# are merged every few hundred (Protocol._frame): memory follows the payload.


@linux_only
async def test_empty_fragments_hold_no_memory(record_property: Any) -> None:
    held = await _held_by_fragments(MILLION, 0, 2**20)
    report(record_property, "million_empty_fragments_held_kib", held // 1024)
    assert held < 2**20, f"{held} bytes held for an empty message"


@linux_only
async def test_tiny_fragments_hold_about_max_size(record_property: Any) -> None:
    max_size = 2**20
    held = await _held_by_fragments(max_size // 2 - 1000, 2, max_size)
    report(record_property, "two_byte_fragments_held_per_max_size", round(held / max_size, 1))
    assert held < 3 * max_size, f"{held} bytes held for a message under {max_size} bytes"


# -- HTTP head --------------------------------------------------------------------------


async def test_head_over_64_kib_gets_431_before_it_ends(servers: Servers) -> None:
    # Lines under 8192 bytes, fewer than 128 of them, but 64 KiB+ in all: the
    # server answers 431 without waiting for the blank line.
    server, _ = await servers.start(echo)
    reader, writer = await within(asyncio.open_connection("127.0.0.1", server_port(server)))
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        line = b"X-Filler: " + b"f" * 1000 + b"\r\n"
        for _ in range(70):  # 71 KiB, never ended
            writer.write(line)
        status, headers, body = await within(read_http_response(reader))
        assert status == 431
        assert b"65536" in body
        assert headers["connection"] == "close"
        assert await within(reader.read()) == b""
    finally:
        writer.transport.abort()


# -- ping floods -----------------------------------------------------------------------

FLOOD = 50_000
PING_PAYLOAD = b"p" * 125  # the largest a control frame may carry


@linux_only
async def test_ping_flood_gets_every_pong_and_spares_other_connections(
    record_property: Any,
) -> None:
    # The server runs alone in a child process (ripple echo), so its memory
    # is measured without the flooder's. The flooder reads its pongs.
    async with echo_server_process("--no-compression") as (pid, port):
        url = f"ws://127.0.0.1:{port}/"
        peer = await open_raw("127.0.0.1", port)
        status, _, _ = await peer.handshake()
        assert status == 101
        stop = asyncio.Event()
        bystander = asyncio.create_task(_echo_rounds(url, 100_000, stop))
        ping = build_frame(OP_PING, PING_PAYLOAD, mask=True)

        pong = build_frame(OP_PONG, PING_PAYLOAD, mask=False)

        async def read_pongs() -> int:
            pongs = 0
            for _ in range(FLOOD // 500):
                assert await peer.reader.readexactly(len(pong) * 500) == pong * 500
                pongs += 500
            return pongs

        peak = before = rss_kib_of(pid)
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            reader = asyncio.create_task(read_pongs())
            for _ in range(FLOOD // 500):  # as fast as TCP takes them
                peer.writer.write(ping * 500)
                await peer.writer.drain()
                peak = max(peak, rss_kib_of(pid))
            assert await within(reader, 60) == FLOOD
            elapsed = loop.time() - start
            peak = max(peak, rss_kib_of(pid))
            stop.set()
            echoed = await within(bystander, 30)
            assert echoed > 0
            report(record_property, "ping_flood_pongs_per_s", round(FLOOD / elapsed))
            report(record_property, "ping_flood_server_rss_growth_kib", peak - before)
            report(record_property, "ping_flood_bystander_echoes", echoed)
            # Bounded: far less than the 6.5 MB the flood carried each way.
            assert peak - before < 4096
        finally:
            stop.set()
            peer.writer.transport.abort()
            await asyncio.gather(bystander, return_exceptions=True)


@linux_only
async def test_ping_flood_from_a_peer_that_never_reads_is_bounded(
    servers: Servers, record_property: Any
) -> None:
    parked = Parked()
    server, _ = await servers.start(
        parked, compression=None, ping_interval=None, write_limit=2**16
    )
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # reads nothing, holds little
    raw.setblocking(False)
    await asyncio.get_running_loop().sock_connect(raw, ("127.0.0.1", server_port(server)))
    reader, writer = await within(asyncio.open_connection(sock=raw))
    peer = RawPeer(reader, writer, mask=True)
    try:
        status, _, _ = await peer.handshake()
        assert status == 101
        conn = await parked.next()
        assert conn.transport is not None
        conn.transport.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_SNDBUF, 4096
        )
        ping = build_frame(OP_PING, PING_PAYLOAD, mask=True)
        for _ in range(FLOOD // 500):
            peer.writer.write(ping * 500)
            await peer.writer.drain()
        peer.send_frame(OP_TEXT, b"end")
        assert await within(conn.recv(), 60) == "end"  # every ping was processed
        buffered = conn.transport.get_write_buffer_size()
        report(record_property, "ping_flood_unread_pongs_buffered_kib", buffered // 1024)
        assert buffered <= 4 * conn.write_limit, f"{buffered} bytes of pongs buffered"
    finally:
        peer.writer.transport.abort()
