"""The Connection API (both sides) over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
import enum
import uuid

import pytest

import ripple
from aio_helpers import (
    Pair,
    Servers,
    build_frame,
    eventually,
    open_raw,
    raw_pair,
    server_port,
    within,
)
from ripple.protocol.state import CLOSED, OPEN

pytestmark = pytest.mark.timeout(20)


# -- properties ---------------------------------------------------------------


async def test_properties_while_open(pair: Pair) -> None:
    client, server = pair
    assert client.closed is False and server.closed is False
    assert client.state is OPEN and server.state is OPEN
    # The two ends of one TCP connection.
    assert client.local_address == server.remote_address
    assert client.remote_address == server.local_address
    assert client.remote_address[0] == "127.0.0.1"
    assert client.subprotocol is None and server.subprotocol is None
    # The request a client sent is the one the server received.
    assert client.request is not None and server.request is not None
    assert client.request.path == server.request.path == "/"
    key = client.request_headers["Sec-WebSocket-Key"]
    assert server.request_headers["Sec-WebSocket-Key"] == key
    assert server.request_headers["Upgrade"] == "websocket"
    assert client.response is not None and client.response.status_code == 101
    assert server.response is not None and server.response.status_code == 101
    accept = client.response_headers["Sec-WebSocket-Accept"]
    assert server.response_headers["Sec-WebSocket-Accept"] == accept
    assert isinstance(client.id, uuid.UUID) and isinstance(server.id, uuid.UUID)
    assert client.id != server.id
    assert client.close_code is None and client.close_reason is None
    assert server.close_code is None and server.close_reason is None
    assert client.latency == 0.0


async def test_properties_after_close(pair: Pair) -> None:
    client, server = pair
    await within(client.close(4001, "done here"))
    await within(server.wait_closed())
    assert client.closed is True and server.closed is True
    assert client.state is CLOSED and server.state is CLOSED
    assert server.close_code == 4001 and server.close_reason == "done here"
    # The client receives the server's echo of the code (no reason).
    assert client.close_code == 4001 and client.close_reason == ""


# -- send / recv --------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        ("héllo", "héllo"),
        ("", ""),
        (b"\x00\xffbytes", b"\x00\xffbytes"),
        (bytearray(b"array"), b"array"),
        (memoryview(b"view"), b"view"),
        ("x" * 70000, "x" * 70000),  # 64-bit length
        (b"y" * 300, b"y" * 300),  # 16-bit length
    ],
)
async def test_send_and_recv_both_ways(
    pair: Pair, message: str | bytes, expected: str | bytes
) -> None:
    client, server = pair
    await within(client.send(message))
    got = await within(server.recv())
    assert got == expected and type(got) is type(expected)
    await within(server.send(message))
    got = await within(client.recv())
    assert got == expected and type(got) is type(expected)


class Color(str, enum.Enum):
    RED = "red"


class Blob(bytes):
    pass


async def test_send_str_and_bytes_subclasses(pair: Pair) -> None:
    client, server = pair
    await within(client.send(Color.RED))
    got = await within(server.recv())
    assert got == "red" and type(got) is str
    await within(client.send(Blob(b"blob")))
    got = await within(server.recv())
    assert got == b"blob" and type(got) is bytes
    await within(client.send([Color.RED, "!"]))
    assert await within(server.recv()) == "red!"


async def test_messages_arrive_in_order(pair: Pair) -> None:
    client, server = pair
    for i in range(100):
        await client.send(str(i))
    assert [await within(server.recv()) for _ in range(100)] == [str(i) for i in range(100)]


async def test_concurrent_recv_raises_concurrency_error(pair: Pair) -> None:
    client, server = pair
    first = asyncio.create_task(server.recv())
    await asyncio.sleep(0.01)
    with pytest.raises(ripple.ConcurrencyError):
        await within(server.recv())
    # The first recv() is unaffected.
    await within(client.send("for the first"))
    assert await within(first) == "for the first"


async def test_recv_cancelled_after_a_message_was_handed_to_it_keeps_it(pair: Pair) -> None:
    # A message arriving alone goes straight to the waiting recv()'s future.
    # If the task is cancelled after that but before it runs (a timeout
    # firing in the same loop iteration), the message must not be lost.
    client, server = pair
    waiting = asyncio.ensure_future(server.recv())
    await eventually(lambda: server._recv_waiter is not None)
    waiter = server._recv_waiter
    assert waiter is not None
    await client.send("kept")
    # sleep(0) polls once per loop iteration, ahead of the task's wake-up
    # that the read schedules: the cancel lands between the two.
    for _ in range(10_000):
        if waiter.done():
            break
        await asyncio.sleep(0)
    assert waiter.done() and waiter.result() == "kept"
    assert not waiting.done()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert server._recv_waiter is None
    await client.send("next")
    assert await within(server.recv()) == "kept"
    assert await within(server.recv()) == "next"


# -- bad input from the peer ----------------------------------------------------


async def test_invalid_utf8_closes_with_1007(servers: Servers) -> None:
    peer, conn, _ = await raw_pair(servers)
    try:
        peer.send_frame(0x1, b"\xff\xfe")
        payload = await peer.recv_until(0x8)
        assert int.from_bytes(payload[:2], "big") == 1007
        assert await peer.read_eof() == b""
        with pytest.raises(ripple.ConnectionClosedError):
            await within(conn.recv())
    finally:
        peer.writer.transport.abort()


async def test_recv_gets_the_message_before_an_error_in_the_same_read(servers: Servers) -> None:
    # recv() is already waiting; one read holds a message and then a frame
    # with an RSV bit. The message is the application's (it may answer it)
    # before the connection fails with 1002: at the next recv(), or after
    # close_timeout if there is none.
    peer, conn, _ = await raw_pair(servers, close_timeout=0.2)
    try:
        waiting = asyncio.ensure_future(conn.recv())
        await eventually(lambda: conn._recv_waiter is not None)
        peer.writer.write(build_frame(0x1, b"first") + build_frame(0x1, b"bad", rsv=0x40))
        assert await within(waiting) == "first"
        await within(conn.send("answer"))
        assert await peer.recv_frame() == (True, 0x1, b"answer")
        assert int.from_bytes((await peer.recv_until(0x8))[:2], "big") == 1002
        with pytest.raises(ripple.ConnectionClosedError):
            await within(conn.recv())
    finally:
        peer.writer.transport.abort()


async def test_unmasked_client_frame_closes_with_1002(servers: Servers) -> None:
    peer, conn, _ = await raw_pair(servers)
    try:
        peer.mask = False
        peer.send_frame(0x1, b"unmasked")
        payload = await peer.recv_until(0x8)
        assert int.from_bytes(payload[:2], "big") == 1002
        await within(conn.wait_closed())
    finally:
        peer.writer.transport.abort()


async def test_peer_ping_is_answered_with_pong(servers: Servers) -> None:
    peer, conn, _ = await raw_pair(servers)
    try:
        peer.send_frame(0x9, b"are you there")
        assert await peer.recv_frame() == (True, 0xA, b"are you there")
        assert conn.state is OPEN
    finally:
        peer.writer.transport.abort()


async def test_close_completes_while_reading_is_paused(servers: Servers) -> None:
    # More unread messages than max_queue pauses reading; close() must still
    # see the server's close frame behind them, not time out with 1006.
    async def flood(ws: ripple.ServerConnection) -> None:
        for i in range(100):
            await ws.send(f"m{i}")
        await ws.wait_closed()

    _, url = await servers.start(flood)
    client = await within(ripple.connect(url, max_queue=4, close_timeout=30))
    await eventually(lambda: client._reading_paused)
    await within(client.close(), 10)
    assert client.close_code == 1000


async def test_reads_are_copied_out_of_the_shared_read_buffer(pair: Pair) -> None:
    # Every connection of a thread reads into one buffer (get_buffer); what
    # arrived must be copied out before buffer_updated returns.
    client, server = pair
    assert isinstance(client, asyncio.BufferedProtocol)
    buf = client.get_buffer(-1)
    assert buf is server.get_buffer(-1)  # shared: no 256 KiB per connection
    frame = b"\x81\x05hello\x82\x03abc\x81\x05wor"  # server frames are unmasked
    buf[: len(frame)] = frame
    client.buffer_updated(len(frame))
    buf[:64] = b"\xff" * 64  # the next read overwrites it
    assert await within(client.recv()) == "hello"
    assert await within(client.recv()) == b"abc"
    # The incomplete third frame was kept too, not a view of the buffer.
    buf[:2] = b"ld"
    client.buffer_updated(2)
    assert await within(client.recv()) == "world"


# -- on_message() and send_nowait(): receiving without a task switch ---------


async def test_on_message_gets_every_message_in_order(pair: Pair) -> None:
    client, server = pair
    got: list[ripple.Data] = []
    server.on_message(got.append)
    for i in range(50):
        await client.send(f"m{i}" if i % 2 else bytes([i]) * 200)
    await eventually(lambda: len(got) == 50)
    assert got == [f"m{i}" if i % 2 else bytes([i]) * 200 for i in range(50)]


async def test_on_message_echo_with_send_nowait(servers: Servers) -> None:
    async def handler(ws: ripple.ServerConnection) -> None:
        ws.on_message(ws.send_nowait)
        await ws.wait_closed()

    _, url = await servers.start(handler)
    async with ripple.connect(url) as client:
        big = bytes(range(256)) * 1000  # large enough for the in-place read path
        for message in ["hé", b"\x00\x01", big, "x" * 70000]:
            await client.send(message)
            assert await within(client.recv()) == message


async def test_messages_queued_before_on_message_go_to_it_first(pair: Pair) -> None:
    client, server = pair
    for i in range(3):
        await client.send(str(i))
    await eventually(lambda: server._queue is not None and len(server._queue) == 3)
    got: list[ripple.Data] = []
    server.on_message(got.append)
    assert got == ["0", "1", "2"]  # delivered before on_message() returned
    await client.send("3")
    await eventually(lambda: got == ["0", "1", "2", "3"])


async def test_recv_refuses_while_a_callback_is_set_and_works_after(pair: Pair) -> None:
    client, server = pair
    got: list[ripple.Data] = []
    server.on_message(got.append)
    with pytest.raises(ripple.ConcurrencyError, match="on_message"):
        await server.recv()
    await client.send("to the callback")
    await eventually(lambda: got == ["to the callback"])
    server.on_message(None)
    await client.send("to recv")
    assert await within(server.recv()) == "to recv"
    assert got == ["to the callback"]


async def test_callback_can_hand_the_rest_back_to_recv(servers: Servers) -> None:
    # Two messages in one read: the first to the callback, which switches
    # back to recv(); the second must reach recv(), not be lost.
    got: list[ripple.Data] = []
    switched = asyncio.Event()
    results: asyncio.Queue[ripple.Data] = asyncio.Queue()

    async def handler(ws: ripple.ServerConnection) -> None:
        def first_only(message: ripple.Data) -> None:
            got.append(message)
            ws.on_message(None)
            switched.set()

        ws.on_message(first_only)
        await switched.wait()
        await results.put(await ws.recv())
        await ws.wait_closed()

    server, _ = await servers.start(handler)
    peer = await open_raw("127.0.0.1", server_port(server))
    assert (await peer.handshake())[0] == 101
    peer.writer.write(build_frame(0x1, b"a") + build_frame(0x1, b"b"))
    assert await within(results.get()) == "b"
    assert got == ["a"]
    peer.close()


async def test_callback_with_control_frames_in_the_same_read(servers: Servers) -> None:
    # One message alone in a read is delivered on a shorter path; with a
    # ping or a close frame behind it in the same read, the pong and the
    # closing handshake still happen.
    got: list[ripple.Data] = []
    conns: list[ripple.ServerConnection] = []

    async def handler(ws: ripple.ServerConnection) -> None:
        conns.append(ws)
        ws.on_message(got.append)
        await ws.wait_closed()

    server, _ = await servers.start(handler)
    peer = await open_raw("127.0.0.1", server_port(server))
    try:
        assert (await peer.handshake())[0] == 101
        peer.send_frame(0x1, b"alone")
        await eventually(lambda: got == ["alone"])
        peer.writer.write(build_frame(0x1, b"a") + build_frame(0x9, b"p"))
        assert await peer.recv_until(0xA) == b"p"
        assert got == ["alone", "a"]
        peer.writer.write(build_frame(0x2, b"b") + build_frame(0x8, (1000).to_bytes(2, "big")))
        assert int.from_bytes(await peer.recv_until(0x8), "big") == 1000
        assert await peer.read_eof() == b""
        assert got == ["alone", "a", b"b"]
        await within(conns[0].wait_closed())
        assert conns[0].close_code == 1000
    finally:
        peer.writer.transport.abort()


async def test_on_message_refuses_while_recv_waits(pair: Pair) -> None:
    _, server = pair
    waiting = asyncio.ensure_future(server.recv())
    await eventually(lambda: server._recv_waiter is not None)
    with pytest.raises(ripple.ConcurrencyError, match="recv"):
        server.on_message(print)
    waiting.cancel()


async def test_on_message_refuses_a_non_callable(pair: Pair) -> None:
    _, server = pair
    with pytest.raises(TypeError, match="callable"):
        server.on_message("not a function")  # type: ignore[arg-type]


async def test_callback_error_closes_1011_and_spares_others(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    def boom(message: ripple.Data) -> None:
        raise RuntimeError("callback bug")

    async def handler(ws: ripple.ServerConnection) -> None:
        ws.on_message(
            boom if ws.request is not None and ws.request.path == "/bad" else ws.send_nowait
        )
        await ws.wait_closed()

    _, url = await servers.start(handler)
    async with ripple.connect(url) as good, ripple.connect(url + "bad") as bad:
        await bad.send("x")
        with pytest.raises(ripple.ConnectionClosedError) as info:
            await within(bad.recv())
        assert info.value.rcvd is not None and info.value.rcvd.code == 1011
        await good.send("still here")
        assert await within(good.recv()) == "still here"
    assert "callback bug" in caplog.text


async def test_callback_reading_pauses_while_replies_pile_up(servers: Servers) -> None:
    # A peer that sends but doesn't read: with a callback nothing queues, so
    # reading pauses on the write buffer instead, and memory stays bounded.
    conns: list[ripple.ServerConnection] = []

    async def handler(ws: ripple.ServerConnection) -> None:
        conns.append(ws)
        ws.on_message(ws.send_nowait)
        await ws.wait_closed()

    server, _ = await servers.start(handler, write_limit=2**16)
    peer = await open_raw("127.0.0.1", server_port(server))
    assert (await peer.handshake())[0] == 101
    await eventually(lambda: len(conns) == 1)
    ws = conns[0]
    chunk = b"y" * 60000
    for _ in range(400):  # 24 MB offered; far more than the socket buffers hold
        peer.send_frame(0x2, chunk)
        if ws._reading_paused:
            break
        await asyncio.sleep(0)
    await eventually(lambda: ws._reading_paused)
    assert ws.transport is not None
    buffered = ws.transport.get_write_buffer_size()
    # At most the replies to the read that crossed the limit (256 KiB reads).
    assert buffered < 2**16 + 2**18 + len(chunk)
    # Reading again drains it, and reading resumes.
    for _ in range(500):
        _, op, payload = await peer.recv_frame()
        assert (op, payload) == (0x2, chunk)
        if not ws._reading_paused:
            break
    assert not ws._reading_paused
    peer.close()
