"""The write queue (ripple/writing.py): a burst of broadcasts is one write per
connection, and every write keeps call order, over real sockets on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import pytest

import ripple
from aio_helpers import within

pytestmark = pytest.mark.timeout(30)


# -- coalescing: a burst of broadcasts is one write per connection ------------


class WriteLog:
    """Records what a server connection's transport is asked to write."""

    def __init__(self, conn: ripple.Connection) -> None:
        assert conn.transport is not None
        self.writes: list[bytes] = []
        transport: Any = conn.transport
        real = transport.write

        def write(data: bytes) -> None:
            self.writes.append(bytes(data))
            real(data)

        transport.write = write


def text_frame(text: str) -> bytes:
    data = text.encode()
    assert len(data) < 126
    return bytes([0x81, len(data)]) + data


async def test_a_burst_of_broadcasts_is_one_write_per_connection(group: Any) -> None:
    clients, conns = group
    logs = [WriteLog(conn) for conn in conns]
    for i in range(5):
        ripple.broadcast(conns, f"burst {i}")
    assert all(log.writes == [] for log in logs)  # queued until the iteration ends
    for client in clients:
        for i in range(5):
            assert await within(client.recv()) == f"burst {i}"
    expected = b"".join(text_frame(f"burst {i}") for i in range(5))
    assert all(log.writes == [expected] for log in logs)


async def test_send_after_broadcast_keeps_the_call_order(group: Any) -> None:
    clients, conns = group
    log = WriteLog(conns[0])
    ripple.broadcast(conns, "b1")
    ripple.broadcast(conns, "b2")
    await conns[0].send("s1")  # writes the queued broadcasts first
    assert log.writes == [text_frame("b1") + text_frame("b2"), text_frame("s1")]
    ripple.broadcast(conns, "b3")
    await conns[0].send(["f1", "f2"])  # a fragmented message, after b3
    ripple.broadcast(conns, "b4")
    await conns[0].ping(b"p")
    ripple.broadcast(conns, "b5")
    assert [await within(clients[0].recv()) for _ in range(6)] == [
        "b1",
        "b2",
        "s1",
        "b3",
        "f1f2",
        "b4",
    ]
    assert await within(clients[0].recv()) == "b5"
    for client in clients[1:]:
        assert [await within(client.recv()) for _ in range(5)] == ["b1", "b2", "b3", "b4", "b5"]


async def test_send_nowait_after_broadcast_keeps_the_call_order(group: Any) -> None:
    # send_nowait() writes a lone text frame itself (its fast path) only
    # with nothing queued: here the queued broadcasts must go first.
    clients, conns = group
    log = WriteLog(conns[0])
    ripple.broadcast(conns, "b1")
    conns[0].send_nowait("s1")
    conns[0].send_nowait("s2")  # nothing queued now: the fast path
    assert log.writes == [text_frame("b1"), text_frame("s1"), text_frame("s2")]
    assert [await within(clients[0].recv()) for _ in range(3)] == ["b1", "s1", "s2"]
    assert await within(clients[1].recv()) == "b1"


async def test_close_after_broadcast_sends_the_broadcasts_first(group: Any) -> None:
    clients, conns = group
    log = WriteLog(conns[0])
    ripple.broadcast(conns, "before close 1")
    ripple.broadcast(conns, "before close 2")
    # Awaited directly: the close frame is written in this iteration, before
    # the end-of-iteration flush, so close() must write the queued frames first.
    await conns[0].close(1000, "bye")
    assert log.writes[0] == text_frame("before close 1") + text_frame("before close 2")
    assert log.writes[1][:2] == b"\x88\x05"  # then the close frame: 1000, "bye"
    ripple.broadcast(conns, "after close")  # conns[0] is closed: skipped
    assert await within(clients[0].recv()) == "before close 1"
    assert await within(clients[0].recv()) == "before close 2"
    with pytest.raises(ripple.ConnectionClosedOK) as info:
        await within(clients[0].recv())
    assert info.value.rcvd is not None and info.value.rcvd.reason == "bye"
    for client in clients[1:]:
        assert await within(client.recv()) == "before close 1"
        assert await within(client.recv()) == "before close 2"
        assert await within(client.recv()) == "after close"


async def test_connection_lost_with_queued_broadcasts(group: Any) -> None:
    clients, conns = group
    ripple.broadcast(conns, "lost")
    assert conns[0].transport is not None
    conns[0].transport.abort()  # the queued frame has nowhere to go: dropped
    await within(conns[0].wait_closed())
    assert conns[0]._buffered() == 0
    for client in clients[1:]:
        assert await within(client.recv()) == "lost"


async def test_a_large_broadcast_is_written_at_once_after_the_queue(group: Any) -> None:
    clients, conns = group
    log = WriteLog(conns[0])
    big = b"B" * 100_000  # over the 64 KiB a connection queues: nothing to gain
    ripple.broadcast(conns, "small")
    ripple.broadcast(conns, big)
    assert log.writes == [
        text_frame("small"),
        bytes([0x82, 127]) + (100_000).to_bytes(8, "big") + big,
    ]
    assert conns[0]._pending is None
    for client in clients:
        assert await within(client.recv()) == "small"
        assert await within(client.recv()) == big
