"""Write the seed corpus in fuzz/corpus/ (checked in; rerun after changing it).

    .venv/bin/python fuzz/seeds.py

Seeds are small valid or nearly valid inputs for each target, so the fuzzer
starts from inputs that reach deep code (fragmentation, control frames,
compressed messages, a full handshake) instead of rediscovering the formats.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

from harnesses import KEY, MASK_KEY, frame_input

from ripple.protocol.handshake import accept_key
from ripple.protocol.state import CLIENT, SERVER, Side

CORPUS = Path(__file__).resolve().parent / "corpus"

SERVER_CFG = 0x00
CLIENT_CFG = 0x01
DEFLATE = 0x02
STRUCTURED = 0x10
DEFER = 0x20
SMALL_MAX = 0x04  # max_size 125
NO_MAX = 0x0C  # max_size None


def deflate(data: bytes, wbits: int = 15) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -wbits)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def wire(side: Side, b0: int, payload: bytes) -> bytes:
    """A frame as it arrives at `side` (masked for a server)."""
    masked = side is SERVER
    n = len(payload)
    bit = 0x80 if masked else 0
    head = bytes((b0, bit | n)) if n < 126 else bytes((b0, bit | 126)) + struct.pack("!H", n)
    if not masked:
        return head + payload
    return head + MASK_KEY + bytes(b ^ MASK_KEY[i & 3] for i, b in enumerate(payload))


def frame_seeds() -> dict[str, bytes]:
    seeds: dict[str, bytes] = {}
    hello = deflate(b"Hello, hello, hello!")
    conversations: dict[str, list[tuple[int, bytes]]] = {
        "text": [(0x81, b"hello")],
        "binary": [(0x82, bytes(range(40)))],
        "fragments": [(0x01, b"hel"), (0x89, b"ping"), (0x00, b"l"), (0x80, b"o")],
        "close": [(0x81, b"bye"), (0x88, b"\x03\xe8done")],
        "pong": [(0x8A, b"1234")],
        "bad-utf8": [(0x81, b"caf\xe9")],
        "split-utf8": [(0x01, "é".encode()[:1]), (0x80, "é".encode()[1:])],
        "compressed": [(0xC1, hello), (0xC2, deflate(b"\x00" * 200))],
        "compressed-fragments": [(0x41, hello[:5]), (0x00, hello[5:]), (0x80, b"")],
        "compressed-bomb": [(0xC2, deflate(b"\x00" * 60000))],
        "compressed-final-block": [(0xC1, zlib.compressobj(6, zlib.DEFLATED, -15).compress(b"x"))],
        "rsv1-on-control": [(0xC9, b"")],
    }
    for name, frames in conversations.items():
        for side, side_cfg in ((SERVER, SERVER_CFG), (CLIENT, CLIENT_CFG)):
            tag = "s" if side is SERVER else "c"
            compressed = any(b0 & 0x40 for b0, _ in frames)
            cfg = side_cfg | STRUCTURED | (DEFLATE if compressed else 0)
            body = frame_input(frames)
            seeds[f"structured-{name}-{tag}"] = bytes((cfg, 0)) + body
            seeds[f"structured-{name}-{tag}-chunked"] = (
                bytes((side_cfg | STRUCTURED | DEFER | SMALL_MAX, 3)) + body
            )
            raw = b"".join(wire(side, b0, payload) for b0, payload in frames)
            seeds[f"raw-{name}-{tag}"] = bytes((side_cfg | DEFLATE | NO_MAX, 0)) + raw
            seeds[f"raw-{name}-{tag}-plain"] = bytes((side_cfg, 7)) + raw
    seeds["raw-16-bit-length-s"] = bytes((SERVER_CFG, 0)) + wire(SERVER, 0x82, b"x" * 300)
    seeds["raw-64-bit-length-c"] = bytes((CLIENT_CFG | NO_MAX, 0)) + (
        b"\x82\x7f" + struct.pack("!Q", 70000) + b"y" * 100
    )
    return seeds


def request(*extra: str) -> bytes:
    lines = [
        "GET /chat?room=1 HTTP/1.1",
        "Host: example.com",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        "Sec-WebSocket-Version: 13",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def response(*extra: str, status: str = "101 Switching Protocols") -> bytes:
    lines = [f"HTTP/1.1 {status}"]
    if status.startswith("101"):
        lines += [
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {accept_key(KEY)}",
        ]
    lines += extra
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_seeds() -> dict[str, bytes]:
    req = b"\x00"
    resp = b"\x01"
    return {
        "request": req + request(),
        "request-deflate": req
        + request("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"),
        "request-offers": req
        + request(
            "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10, "
            'permessage-deflate; client_no_context_takeover; client_max_window_bits="9"',
            "Sec-WebSocket-Protocol: chat, superchat",
            "Origin: https://app.example",
        ),
        "request-bad-origin": req + request("Origin: https://evil.example"),
        "request-post": req + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        "request-plain": req + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
        "response": resp + response(),
        "response-deflate": resp
        + response(
            "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; "
            "server_max_window_bits=12; client_max_window_bits=12",
            "Sec-WebSocket-Protocol: chat",
        ),
        "response-403": resp
        + response("Content-Length: 9", "Content-Type: text/plain", status="403 Forbidden")
        + b"forbidden",
        "response-503": resp + response("Retry-After: 5", status="503 Service Unavailable"),
    }


def extension_seeds() -> dict[str, bytes]:
    offer = b"\x00"
    answer = b"\x01"
    return {
        "offer-browser": offer + b"permessage-deflate; client_max_window_bits",
        "offer-full": offer
        + b"permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        b"server_max_window_bits=10; client_max_window_bits=9",
        "offer-quoted": offer
        + b'permessage-deflate; client_max_window_bits="12", x-webkit-deflate',
        "offer-two": offer + b"permessage-deflate; server_max_window_bits=8, permessage-deflate",
        "answer-default": answer
        + b"permessage-deflate; server_no_context_takeover; server_max_window_bits=12; "
        b"client_max_window_bits=12",
        "answer-plain": answer + b"permessage-deflate",
        "answer-bad": answer + b"permessage-deflate; client_max_window_bits=016; unknown=1",
    }


def main() -> None:
    for target, seeds in (
        ("frames", frame_seeds()),
        ("http", http_seeds()),
        ("extensions", extension_seeds()),
    ):
        directory = CORPUS / target
        directory.mkdir(parents=True, exist_ok=True)
        for old in directory.iterdir():
            old.unlink()
        for name, data in seeds.items():
            (directory / name).write_bytes(data)
        print(f"{directory}: {len(seeds)} seeds")


if __name__ == "__main__":
    main()
