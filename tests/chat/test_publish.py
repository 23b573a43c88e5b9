"""The four publish strategies: everything reaches every client, in per-sender
order (and in id order); a client that can't keep up is dropped (1013), not
waited for."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
from typing import Any

import pytest

from aio_helpers import RawPeer, accept_value, eventually, read_http_response, within
from ripple.chat import PUBLISH_STRATEGIES, ChatConfig, make_fanout

from .conftest import MakeChat
from .helpers import Chat, Client

pytestmark = pytest.mark.timeout(60)

CLIENTS = 6
MESSAGES = 40


@pytest.mark.parametrize("publish", PUBLISH_STRATEGIES)
async def test_every_client_gets_every_message_in_per_sender_order(
    make_chat: MakeChat, publish: str
) -> None:
    chat = await make_chat(ChatConfig(publish=publish, rate=0, history=0))
    clients = [await chat.client(f"user{i}") for i in range(CLIENTS)]
    # Everyone reads while everyone sends, all at once.
    total = CLIENTS * MESSAGES

    async def read_all(client: Client) -> list[dict[str, Any]]:
        got = []
        while len(got) < total:
            msg = await client.recv(10)
            if msg["type"] == "message":
                got.append(msg)
        return got

    async def send_all(client: Client, i: int) -> None:
        for j in range(MESSAGES):
            await client.say(f"{i}:{j}")

    readers = [asyncio.create_task(read_all(c)) for c in clients]
    await within(asyncio.gather(*(send_all(c, i) for i, c in enumerate(clients))), 20)
    received = await within(asyncio.gather(*readers), 30)

    names = {c.me["id"]: c.me["name"] for c in clients if c.me is not None}
    for got in received:
        # Every message, once.
        assert sorted(m["text"] for m in got) == sorted(
            f"{i}:{j}" for i in range(CLIENTS) for j in range(MESSAGES)
        )
        # Per-sender order, and the sender's id and name on each.
        for i in range(CLIENTS):
            mine = [m for m in got if m["text"].startswith(f"{i}:")]
            assert [m["text"] for m in mine] == [f"{i}:{j}" for j in range(MESSAGES)]
            assert {names[m["user"]["id"]] for m in mine} == {f"user{i}"}
        # Ids increase for every client, whatever the strategy.
        ids = [m["id"] for m in got]
        assert ids == sorted(ids)
    # And every client saw the same sequence.
    assert all([m["id"] for m in got] == [m["id"] for m in received[0]] for got in received)
    for client in clients:
        await client.close()


@pytest.mark.parametrize("publish", PUBLISH_STRATEGIES)
async def test_join_and_leave_reach_everyone(make_chat: MakeChat, publish: str) -> None:
    chat = await make_chat(ChatConfig(publish=publish))
    alice = await chat.client("alice")
    bob = await chat.client("bob")
    assert (await alice.expect("join"))["user"] == bob.me
    await bob.close()
    assert (await alice.expect("leave"))["user"] == bob.me
    await alice.close()


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="sequential, gather, tasks, broadcast"):
        make_fanout("carrier-pigeon")
    with pytest.raises(ValueError, match="publish must be one of"):
        ChatConfig(publish="carrier-pigeon")


# -- slow clients ----------------------------------------------------------------------


async def stuck_client(chat: Chat) -> RawPeer:
    """A client that joins, then never reads (with a small receive buffer)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await within(asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", chat.port)))
    reader, writer = await within(asyncio.open_connection(sock=sock))
    peer = RawPeer(reader, writer, mask=True)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )
    status, headers, _ = await within(read_http_response(reader))
    assert status == 101 and headers["sec-websocket-accept"] == accept_value(key).decode()
    writer.transport.pause_reading()  # from now on, nothing is read
    peer.send_frame(0x1, json.dumps({"type": "join", "name": "stuck"}).encode())
    return peer


@pytest.mark.parametrize("publish", PUBLISH_STRATEGIES)
async def test_a_client_that_stops_reading_is_dropped(make_chat: MakeChat, publish: str) -> None:
    chat = await make_chat(
        ChatConfig(publish=publish, rate=0, history=0, send_timeout=0.2, max_backlog=50_000),
        write_limit=4096,
        close_timeout=10,
        compression=None,  # so the bytes add up quickly
    )
    # Accepted sockets inherit the listener's buffer sizes (Linux): keep the
    # kernel's share small, so the backlog builds up in the server.
    for listener in chat.server.sockets:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    alice = await chat.client("alice")
    stuck = await stuck_client(chat)
    try:
        joined = await alice.expect("join")
        stuck_user = joined["user"]
        # Alice talks (and reads, like a live client) until the stuck client is gone.
        text = "x" * 3000
        left: dict[str, Any] | None = None
        sent = 0
        while left is None:
            await alice.say(f"{sent} {text}")
            sent += 1
            while True:
                msg = await alice.recv(10)
                if msg["type"] == "leave":
                    assert msg["user"] == stuck_user
                    left = msg
                    break
                if msg["type"] == "message" and msg["text"].startswith(f"{sent - 1} "):
                    break
            assert sent < 2_000, "the stuck client was never dropped"
        # The room goes on without it.
        await alice.say("carry on")
        await alice.until("message", text="carry on")
        # Once it reads again, it finds out why: a close frame with 1013.
        stuck.writer.transport.resume_reading()
        payload = await within(stuck.recv_until(0x8), 15)
        assert int.from_bytes(payload[:2], "big") == 1013
        assert payload[2:].decode().startswith("too slow")
        stuck.send_close(1013)
        await eventually(lambda: len(chat.server.connections) == 1, 15)
    finally:
        stuck.writer.transport.abort()
        await alice.close()


async def test_closing_the_room_stops_every_sender_task(make_chat: MakeChat) -> None:
    chat = await make_chat(ChatConfig(publish="tasks"))
    clients = [await chat.client(f"u{i}") for i in range(3)]
    room: Any = chat.chat.room
    outboxes = list(room.fanout._outboxes.values())
    assert len(outboxes) == 3
    await within(chat.chat.aclose())
    assert list(room.fanout.connections) == []
    await eventually(lambda: all(o.task.done() for o in outboxes))
    for client in clients:
        await client.close()
