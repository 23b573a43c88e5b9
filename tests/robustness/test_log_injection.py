"""Log injection: what a client sends can't forge log lines or drive a terminal.

Header values may carry latin-1 bytes 0x80-0xFF (RFC 9110 obs-text), among
them the C1 controls NEL (0x85, a line break to many log readers) and CSI
(0x9B, a terminal escape). Refusals quote client values (an Origin, a
version); those quotes are escaped in the log and in the response body.
CR, LF and other C0 controls never get that far: tests/protocol/
test_http11.py::test_bad_header_value refuses them at parsing.
"""

from __future__ import annotations

import logging

import pytest

from aio_helpers import Servers, echo, open_raw, read_http_response, server_port, within

pytestmark = pytest.mark.timeout(30)

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
HOSTILE = "\x85FAKE 200 ok\x9b[2J"


def _request(*extra: str) -> bytes:
    lines = [
        "GET / HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {KEY}",
        *extra,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.mark.parametrize(
    ("extra", "status"),
    [
        (("Sec-WebSocket-Version: 13", f"Origin: https://x{HOSTILE}.example"), 403),
        ((f"Sec-WebSocket-Version: 1{HOSTILE}3",), 426),
        (
            (
                "Sec-WebSocket-Version: 13",
                "Origin: https://app.example",
                f'Sec-WebSocket-Extensions: a; b="{HOSTILE}',
            ),
            400,
        ),
    ],
    ids=["origin", "version", "extensions"],
)
async def test_refusals_escape_control_characters(
    servers: Servers, caplog: pytest.LogCaptureFixture, extra: tuple[str, ...], status: int
) -> None:
    caplog.set_level(logging.DEBUG, logger="ripple")
    server, _ = await servers.start(echo, origins=["https://app.example"])
    peer = await open_raw("127.0.0.1", server_port(server))
    try:
        peer.writer.write(_request(*extra))
        got, _, body = await within(read_http_response(peer.reader))
    finally:
        peer.writer.transport.abort()
    assert got == status
    text = body.decode()
    assert text.endswith("\n") and text[:-1].isprintable(), repr(text)
    refusals = [r.getMessage() for r in caplog.records if "handshake refused" in r.getMessage()]
    assert refusals, "the refusal wasn't logged"
    for message in refusals:
        assert message.isprintable(), repr(message)
    # Escaped, not dropped: the log still shows what the client sent.
    assert any("\\x85FAKE 200 ok\\x9b[2J" in m for m in refusals)
