"""Data messages between ripple and each peer, in both directions.

Every test runs for each pairing (see conftest.py): ripple as the server with
the websockets, aiohttp and node ws clients, and ripple as the client with
their servers.
"""

from __future__ import annotations

import random

import pytest

from .peers import PAIRINGS, NodePeer, Pair, within


def _text_of_utf8_size(size: int) -> str:
    # Mixed 1-, 2-, 3- and 4-byte UTF-8 sequences, padded to exactly `size` bytes.
    unit = "ripple ✓ wörld 🌊 ¿ñ? "
    unit_size = len(unit.encode())
    text = unit * (size // unit_size)
    return text + "x" * (size - len(text.encode()))


MIB = 2**20
TEXT_1MIB = _text_of_utf8_size(MIB)
BINARY_1MIB = random.Random(6455).randbytes(MIB)
assert len(TEXT_1MIB.encode()) == MIB

MESSAGES = {
    "text": "Hello, ripple! ¿ünïcödé? ☃ 🌊",
    "binary": bytes(range(256)),
    "empty_text": "",
    "empty_binary": b"",
    "text_1MiB": TEXT_1MIB,
    "binary_1MiB": BINARY_1MIB,
}

FRAGMENTED = {
    "text": ["frag", "mented ", "", "tëxt ☃", " 🌊"],
    "binary": [b"\x00\x01", b"", b"\xff" * 1000, bytes(range(256))],
    "binary_1MiB_in_16": [BINARY_1MIB[i : i + MIB // 16] for i in range(0, MIB, MIB // 16)],
}


def _joined(chunks: list[str] | list[bytes]) -> str | bytes:
    return "".join(chunks) if isinstance(chunks[0], str) else b"".join(chunks)


@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
async def test_ripple_sends_message(pair: Pair, message: str | bytes) -> None:
    async with within():
        await pair.ripple.send(message)
        received = await pair.peer.recv()
    assert type(received) is type(message)
    assert received == message


@pytest.mark.parametrize("message", MESSAGES.values(), ids=MESSAGES.keys())
async def test_ripple_receives_message(pair: Pair, message: str | bytes) -> None:
    async with within():
        await pair.peer.send(message)
        received = await pair.ripple.recv()
    assert type(received) is type(message)
    assert received == message


@pytest.mark.parametrize("chunks", FRAGMENTED.values(), ids=FRAGMENTED.keys())
async def test_ripple_sends_fragmented_message(
    pair: Pair, chunks: list[str] | list[bytes]
) -> None:
    async with within():
        await pair.ripple.send(chunks)
        received = await pair.peer.recv()
    assert received == _joined(chunks)


# aiohttp has no API to send one message in several frames: it has no cell here.
@pytest.mark.parametrize(
    "pairing",
    [pytest.param(p, id=str(p)) for p in PAIRINGS if p.peer != "aiohttp"],
    indirect=True,
)
@pytest.mark.parametrize("chunks", FRAGMENTED.values(), ids=FRAGMENTED.keys())
async def test_ripple_receives_fragmented_message(
    pair: Pair, chunks: list[str] | list[bytes]
) -> None:
    async with within():
        await pair.peer.send_fragments(chunks)
        received = await pair.ripple.recv()
    assert received == _joined(chunks)


@pytest.mark.parametrize(
    "pairing",
    [pytest.param(p, id=str(p)) for p in PAIRINGS if p.peer == "node"],
    indirect=True,
)
async def test_ripple_receives_text_fragments_splitting_a_character(pair: Pair) -> None:
    # Text frames may end inside a UTF-8 sequence; only the whole message must
    # be valid (RFC 6455 §5.6). node's ws sends raw bytes as text fragments.
    assert isinstance(pair.peer, NodePeer)
    wave = "🌊".encode()
    chunks = [b"surf " + wave[:1], wave[1:3], wave[3:] + " é".encode()[:2], " é".encode()[2:]]
    async with within():
        await pair.peer.send_text_fragments_raw(chunks)
        received = await pair.ripple.recv()
    assert received == "surf 🌊 é"


async def test_messages_keep_their_order(pair: Pair) -> None:
    # Both directions at once, interleaving single-frame and fragmented messages.
    outgoing: list[str | bytes] = [f"text {i}" if i % 2 else bytes([i]) * i for i in range(20)]
    async with within():
        for i, message in enumerate(outgoing):
            if i % 5 == 0:
                await pair.ripple.send([message[: i // 2], message[i // 2 :]])
            else:
                await pair.ripple.send(message)
        for message in outgoing:
            await pair.peer.send(message)
        to_peer = [await pair.peer.recv() for _ in outgoing]
        to_ripple = [await pair.ripple.recv() for _ in outgoing]
    assert to_peer == outgoing
    assert to_ripple == outgoing
