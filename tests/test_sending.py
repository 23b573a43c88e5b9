"""send() and send_nowait() (ripple/sending.py) over real sockets on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import ripple
from aio_helpers import (
    Pair,
    Parked,
    Servers,
    eventually,
    gated_parts,
    open_raw,
    server_port,
    within,
)
from ripple import sending as sending_module

pytestmark = pytest.mark.timeout(20)


async def test_send_list_of_str_is_one_message(pair: Pair) -> None:
    client, server = pair
    await within(client.send(["frag", "men", "ted"]))
    await within(client.send("next"))
    assert await within(server.recv()) == "fragmented"
    assert await within(server.recv()) == "next"


async def test_send_list_of_bytes_is_one_message(pair: Pair) -> None:
    client, server = pair
    await within(server.send([b"ab", bytearray(b"cd"), memoryview(b"ef")]))
    await within(server.send(b"next"))
    assert await within(client.recv()) == b"abcdef"
    assert await within(client.recv()) == b"next"


async def test_send_generator_and_async_generator(pair: Pair) -> None:
    client, server = pair

    async def agen() -> AsyncIterator[str]:
        for part in ("as", "ync"):
            await asyncio.sleep(0)
            yield part

    await within(client.send(agen()))
    await within(client.send(b for b in (b"g", b"en")))
    assert await within(server.recv()) == "async"
    assert await within(server.recv()) == b"gen"


async def test_send_empty_iterable_sends_nothing(pair: Pair) -> None:
    client, server = pair
    await within(client.send([]))
    await within(client.send("after"))
    assert await within(server.recv()) == "after"


async def test_fragments_go_out_as_separate_frames(servers: Servers) -> None:
    # Seen by a hand-written peer: one frame per item, continuation opcodes.
    parked = Parked()
    server, _ = await servers.start(parked)
    peer = await open_raw("127.0.0.1", server_port(server))
    try:
        status, _, _ = await peer.handshake()
        assert status == 101
        conn = await parked.next()
        await within(conn.send(["a", "b", "c"]))
        frames = [await peer.recv_frame() for _ in range(3)]
        assert frames == [(False, 0x1, b"a"), (False, 0x0, b"b"), (True, 0x0, b"c")]
        await within(conn.send([b"x", b"y"]))
        frames = [await peer.recv_frame() for _ in range(2)]
        assert frames == [(False, 0x2, b"x"), (True, 0x0, b"y")]
    finally:
        peer.writer.transport.abort()


async def test_mixed_fragment_types_raise_type_error(pair: Pair) -> None:
    client, server = pair
    # The type clash is found before any frame went out: the connection
    # stays usable.
    with pytest.raises(TypeError):
        await within(client.send(["text", b"bytes"]))
    with pytest.raises(TypeError):
        await within(client.send([b"bytes", "text"]))
    with pytest.raises(TypeError):
        await within(client.send([1, 2]))
    await within(client.send("still fine"))
    assert await within(server.recv()) == "still fine"


async def test_type_error_in_the_middle_of_a_fragmented_message_fails_1011(
    pair: Pair,
) -> None:
    client, server = pair
    # "a" went out as a first fragment when b"c" turns out to be bytes: the
    # message can't be finished, so the connection fails with 1011.
    with pytest.raises(TypeError):
        await within(client.send(["a", "b", b"c"]))
    with pytest.raises(ripple.ConnectionClosedError) as info:
        await within(server.recv())
    assert info.value.code == 1011
    await within(client.wait_closed())


@pytest.mark.parametrize("bad", [{"a": 1}, 42, None, 1.5])
async def test_send_unsupported_type_raises_type_error(pair: Pair, bad: object) -> None:
    client, server = pair
    with pytest.raises(TypeError):
        await within(client.send(bad))  # type: ignore[arg-type]
    await within(client.send("ok"))
    assert await within(server.recv()) == "ok"


async def test_concurrent_fragmented_sends_dont_interleave(pair: Pair) -> None:
    client, server = pair
    release = asyncio.Event()

    first = asyncio.create_task(client.send(gated_parts("slow-1 ", "slow-2", release)))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(client.send("plain"))
    await asyncio.sleep(0.01)
    assert not second.done()  # waits for the fragmented message to finish
    release.set()
    await within(asyncio.gather(first, second))
    assert await within(server.recv()) == "slow-1 slow-2"
    assert await within(server.recv()) == "plain"


async def test_send_nowait_types_and_states(pair: Pair) -> None:
    client, server = pair
    server.send_nowait("text")
    server.send_nowait(bytearray(b"bytes"))
    assert await within(client.recv()) == "text"
    assert await within(client.recv()) == b"bytes"
    with pytest.raises(TypeError, match="await send"):
        server.send_nowait(["a", "b"])  # type: ignore[arg-type]
    await client.close()
    await within(server.wait_closed())
    with pytest.raises(ripple.ConnectionClosedOK):
        server.send_nowait("late")


async def test_send_nowait_refuses_during_a_fragmented_send(pair: Pair) -> None:
    client, server = pair
    release = asyncio.Event()

    sending = asyncio.ensure_future(server.send(gated_parts("a", "b", release)))
    await eventually(lambda: server._send_frag is not None)
    with pytest.raises(ripple.ConcurrencyError, match="fragmented"):
        server.send_nowait("c")
    release.set()
    await within(sending)
    assert await within(client.recv()) == "ab"


@pytest.mark.parametrize("joins", [True, False])
async def test_large_bytes_arrive_whole_either_way_they_are_written(
    pair: Pair, monkeypatch: pytest.MonkeyPatch, joins: bool
) -> None:
    # Two writes (asyncio before 3.12, whose writelines() copies) or one
    # writelines(): the same frame on the wire.
    monkeypatch.setattr(sending_module, "_WRITELINES_JOINS", joins)
    client, server = pair
    payload = bytes(range(256)) * 1000
    await server.send(payload)
    server.send_nowait(payload[::-1])
    assert await within(client.recv()) == payload
    assert await within(client.recv()) == payload[::-1]
