"""permessage-deflate (RFC 7692) between ripple and each peer.

test_messages.py and test_control.py already run every pairing with
permessage-deflate on both sides ("deflate") and off on both ("plain"); the
``pair`` fixture checks it was negotiated or not. The tests here look at the
negotiation itself, and, through a relay that parses the frames, at the wire:
RSV1 where it belongs, compressed sizes, and context takeover.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from typing import Any

import pytest

import ripple
from ripple.protocol.deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
)

from .peers import (
    MAX_SIZE,
    PAIRINGS,
    RIPPLE_OPTIONS,
    OpenPair,
    Options,
    Pair,
    Pairing,
    Peer,
    connect_peer_client,
    require_node,
    within,
)
from .wire import OP_CLOSE, WireLog

DEFLATE_PAIRINGS = [pytest.param(p, id=str(p)) for p in PAIRINGS if p.compression]

MIB = 2**20
# Compresses about 100:1; random bytes don't compress at all.
COMPRESSIBLE = "".join(f"line {i % 64}: ripple says hello\n" for i in range(MIB // 20))[:MIB]
INCOMPRESSIBLE = random.Random(7692).randbytes(MIB)
assert len(COMPRESSIBLE) == MIB


def parse_extensions(header: str | None) -> list[tuple[str, dict[str, str | None]]]:
    """``Sec-WebSocket-Extensions`` as [(name, {param: value or None})] (no quoted values)."""
    extensions: list[tuple[str, dict[str, str | None]]] = []
    for item in (header or "").split(","):
        if not item.strip():
            continue
        name, *params = (part.strip() for part in item.split(";"))
        values: dict[str, str | None] = {}
        for param in params:
            key, eq, value = param.partition("=")
            values[key.strip()] = value.strip() if eq else None
        extensions.append((name, values))
    return extensions


# -- negotiation -------------------------------------------------------------


async def test_negotiation_headers(pair: Pair) -> None:
    offered = pair.ripple.request_headers.get("Sec-WebSocket-Extensions")
    accepted = pair.ripple.response_headers.get("Sec-WebSocket-Extensions")
    # Both ends saw the same headers (where the peer's library shows them).
    if pair.peer.extensions_offered is not None:
        assert pair.peer.extensions_offered == offered
    if pair.peer.extensions_accepted is not None:
        assert pair.peer.extensions_accepted == accepted
    if not pair.pairing.compression:
        assert offered is None
        assert accepted is None
        assert pair.deflate is None
        return

    assert [name for name, _ in parse_extensions(offered)] == ["permessage-deflate"]
    ((name, params),) = parse_extensions(accepted)
    assert name == "permessage-deflate"
    ext = pair.deflate
    assert ext is not None
    assert pair.ripple.protocol is not None
    assert pair.ripple.protocol.extensions == [ext]
    # The extension works with what the response says (RFC 7692 §7.1).
    if pair.pairing.ripple_role == "server":
        server_bits, client_bits = ext.local_max_window_bits, ext.remote_max_window_bits
        server_nct, client_nct = ext.local_no_context_takeover, ext.remote_no_context_takeover
    else:
        server_bits, client_bits = ext.remote_max_window_bits, ext.local_max_window_bits
        server_nct, client_nct = ext.remote_no_context_takeover, ext.local_no_context_takeover
    assert server_bits == int(params.get("server_max_window_bits") or 15)
    if params.get("client_max_window_bits"):
        assert client_bits == int(params["client_max_window_bits"] or 15)
    assert server_nct is ("server_no_context_takeover" in params)
    assert client_nct is ("client_no_context_takeover" in params)


@pytest.mark.parametrize("pairing", DEFLATE_PAIRINGS, indirect=True)
@pytest.mark.parametrize(
    ("ripple_deflate", "peer_deflate"),
    [(True, False), (False, True)],
    ids=["only_ripple_deflate", "only_peer_deflate"],
)
async def test_one_side_without_deflate(
    connect_pair: OpenPair, ripple_deflate: bool, peer_deflate: bool
) -> None:
    # Either side declining leaves the connection uncompressed, and working.
    pair = await connect_pair(ripple_deflate=ripple_deflate, peer_deflate=peer_deflate, wire=True)
    assert pair.deflate is None
    assert not pair.peer.deflate
    assert "Sec-WebSocket-Extensions" not in pair.ripple.response_headers
    async with within():
        await pair.ripple.send(COMPRESSIBLE)
        assert await pair.peer.recv() == COMPRESSIBLE
        await pair.peer.send(COMPRESSIBLE)
        assert await pair.ripple.recv() == COMPRESSIBLE
    for log in (pair.from_ripple, pair.to_ripple):
        assert [(m.compressed, m.length) for m in log.messages()] == [(False, MIB)]


# -- on the wire ---------------------------------------------------------------


def _check_no_rsv1_on_control_frames(*logs: WireLog) -> None:
    for log in logs:
        assert not [f for f in log.frames if f.opcode >= OP_CLOSE and f.rsv1]


async def test_compressed_on_the_wire(connect_pair: OpenPair, pairing: Pairing) -> None:
    pair = await connect_pair(wire=True)
    messages: list[str | bytes] = ["small", b"\x00\x01\x02", "", COMPRESSIBLE, INCOMPRESSIBLE]
    async with within():
        for message in messages:
            await pair.ripple.send(message)
            assert await pair.peer.recv() == message
            await pair.peer.send(message)
            assert await pair.ripple.recv() == message
        await pair.ripple.ping(b"ping")
        await pair.peer.ping_seen()  # node's ws reports it; the others return None at once
        await pair.ripple.close(4000, "compressed enough")
        await pair.peer.wait_closed()

    for direction, log in (("ripple->peer", pair.from_ripple), ("peer->ripple", pair.to_ripple)):
        sent = log.messages()
        assert len(sent) == len(messages), direction
        # Every library here compresses every message, however small, once
        # permessage-deflate is on (node's ws is told threshold: 0).
        assert [m.compressed for m in sent] == [pairing.compression] * len(messages), direction
        names = ["small", "bin", "empty", "text", "random"]
        sizes = {name: m.length for name, m in zip(names, sent, strict=True)}
        if pairing.compression:
            assert sizes["text"] < MIB // 20, (direction, sizes)
            # Random bytes take a few more bytes than they are (stored blocks).
            assert MIB <= sizes["random"] < MIB + MIB // 100, (direction, sizes)
        else:
            assert (sizes["text"], sizes["random"]) == (MIB, MIB), direction
    _check_no_rsv1_on_control_frames(pair.from_ripple, pair.to_ripple)
    assert [f.opcode for f in pair.from_ripple.control_frames()][-1] == OP_CLOSE


@pytest.mark.parametrize("pairing", DEFLATE_PAIRINGS, indirect=True)
async def test_fragmented_compressed_message(connect_pair: OpenPair) -> None:
    # §6.1: RSV1 on the first frame of a compressed message only.
    pair = await connect_pair(wire=True)
    chunks = [COMPRESSIBLE[i : i + MIB // 8] for i in range(0, MIB, MIB // 8)]
    async with within():
        await pair.ripple.send(chunks)
        assert await pair.peer.recv() == COMPRESSIBLE
        if pair.peer.can_send_fragmented:
            await pair.peer.send_fragments(chunks)
            assert await pair.ripple.recv() == COMPRESSIBLE
    logs = (
        [pair.from_ripple, pair.to_ripple] if pair.peer.can_send_fragmented else [pair.from_ripple]
    )
    for log in logs:
        (message,) = log.messages()
        # websockets ends a fragmented message with an empty frame: 8 or 9 frames.
        assert message.frames >= len(chunks)
        assert [f.rsv1 for f in log.frames] == [True] + [False] * (message.frames - 1)
        assert message.compressed
        assert message.length < MIB // 20


def _deflate_options(role: str, takeover: bool) -> dict[str, Any]:
    """ripple options for context takeover on both sides, or on neither."""
    if role == "server":
        # The default server resets its compressor (server_no_context_takeover).
        server = ServerPerMessageDeflateFactory(
            server_no_context_takeover=not takeover,
            client_no_context_takeover=not takeover,
            server_max_window_bits=12,
            client_max_window_bits=12,
        )
        return {"extensions": [server]}
    if takeover:
        return {}  # the default client keeps its context and asks nothing of the server
    client = ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True, client_max_window_bits=12
    )
    return {"extensions": [client]}


@pytest.mark.parametrize("pairing", DEFLATE_PAIRINGS, indirect=True)
@pytest.mark.parametrize("takeover", [True, False], ids=["takeover", "no_context_takeover"])
async def test_context_takeover(connect_pair: OpenPair, pairing: Pairing, takeover: bool) -> None:
    # Many messages in a row, alike. With context takeover each compresses
    # against the ones before, so after the first they take a few bytes;
    # without it (negotiated for both directions here), each costs the same.
    options = _deflate_options(pairing.ripple_role, takeover)
    pair = await connect_pair(wire=True, ripple_options=options)
    body = "".join(f'{{"user": "u{i}", "text": "message number {i}"}}' for i in range(60))
    outgoing = [f"{n:03d} {body}" for n in range(200)]
    async with within(2 * 5.0):
        for message in outgoing:
            await pair.ripple.send(message)
            await pair.peer.send(message)
        to_peer = [await pair.peer.recv() for _ in outgoing]
        to_ripple = [await pair.ripple.recv() for _ in outgoing]
    assert to_peer == outgoing
    assert to_ripple == outgoing
    ext = pair.deflate
    assert ext is not None
    assert ext.local_no_context_takeover is not takeover
    assert ext.remote_no_context_takeover is not takeover

    from_ripple = [m.length for m in pair.from_ripple.messages()]
    to_ripple_sizes = [m.length for m in pair.to_ripple.messages()]
    assert len(from_ripple) == len(to_ripple_sizes) == len(outgoing)
    assert from_ripple[0] < len(body) // 4
    if takeover:
        # ripple's compressor: a few dozen bytes after the first (some 300).
        assert max(from_ripple[1:]) < from_ripple[0] // 4, from_ripple
        # The peer's: what matters is that ripple's decompressor kept the
        # context to decode them; aiohttp compresses them less tightly.
        assert sum(to_ripple_sizes[1:]) < (len(outgoing) - 1) * to_ripple_sizes[0] // 2
    else:
        # Each message on its own: all alike in size (only a counter differs).
        for sizes in (from_ripple, to_ripple_sizes):
            assert max(sizes) - min(sizes) < 8, sizes


@pytest.mark.parametrize("pairing", DEFLATE_PAIRINGS, indirect=True)
async def test_compressed_message_over_max_size(pair: Pair) -> None:
    # A message that is small on the wire but inflates past max_size is
    # refused with 1009, like an uncompressed one would be.
    too_big = b"\x00" * (MAX_SIZE + 1)
    async with within(10):
        await pair.peer.send(too_big)
        with pytest.raises(ripple.ConnectionClosedError) as raised:
            await pair.ripple.recv()
        await pair.ripple.wait_closed()
    assert raised.value.sent is not None
    assert raised.value.sent.code == 1009


# -- broadcast ---------------------------------------------------------------------


@pytest.mark.parametrize("takeover", [False, True], ids=["shared", "per_connection"])
async def test_broadcast_to_every_peer(takeover: bool) -> None:
    # broadcast() compresses a message once for every connection without
    # context takeover on ripple's side (the default), or once per connection
    # otherwise; each peer's decompressor must read what it gets.
    require_node()
    options: dict[str, Any] = {**RIPPLE_OPTIONS}
    if takeover:
        options["extensions"] = [ServerPerMessageDeflateFactory(server_max_window_bits=12)]
    accepted: asyncio.Queue[ripple.ServerConnection] = asyncio.Queue()

    async def handler(ws: ripple.ServerConnection) -> None:
        accepted.put_nowait(ws)
        await ws.wait_closed()

    clients = [("websockets", True), ("aiohttp", True), ("node", True)]
    clients += [("websockets", False), ("node", False)]
    messages: list[str | bytes] = ["hello", bytes(range(256)), "", COMPRESSIBLE, b"\x00" * 1000]
    async with contextlib.AsyncExitStack() as stack, within(10):
        server = await ripple.serve(handler, "127.0.0.1", 0, **options)
        stack.push_async_callback(server.wait_closed)
        stack.callback(server.close)
        url = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/"
        peers: list[Peer] = []
        for name, deflate in clients:
            peer_options = Options(False, True, deflate, False, {})
            peers.append(await connect_peer_client(stack, name, url, peer_options))
        connections = [await accepted.get() for _ in clients]
        for ws in connections:
            deflates = [e for e in ws.protocol.extensions if isinstance(e, PerMessageDeflate)]
            if deflates:
                assert deflates[0].local_no_context_takeover is not takeover
        assert [p.deflate for p in peers] == [deflate for _, deflate in clients]

        for message in messages:
            ripple.broadcast(connections, message, raise_exceptions=True)
        for peer, (name, deflate) in zip(peers, clients, strict=True):
            received = [await peer.recv() for _ in messages]
            assert received == messages, (name, deflate)
