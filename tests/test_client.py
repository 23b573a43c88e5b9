"""connect / unix_connect / ClientConnection over real sockets."""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

import pytest

import ripple
from aio_helpers import (
    Parked,
    RawServer,
    Servers,
    echo,
    eventually,
    free_port,
    server_port,
    within,
)

pytestmark = pytest.mark.timeout(30)


async def test_connect_awaited(echo_url: str) -> None:
    client = await within(ripple.connect(echo_url))
    assert isinstance(client, ripple.ClientConnection)
    await client.send("awaited")
    assert await within(client.recv()) == "awaited"
    await within(client.close())
    assert client.closed and client.close_code == 1000


async def test_connect_as_context_manager_closes_with_1000(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked)
    async with ripple.connect(url) as client:
        conn = await parked.next()
        await client.send("in context")
        assert await within(conn.recv()) == "in context"
    assert client.closed
    await within(conn.wait_closed())
    assert conn.close_code == 1000


async def test_connect_to_closed_port_raises_os_error() -> None:
    with pytest.raises(OSError):
        await within(ripple.connect(f"ws://127.0.0.1:{free_port()}/"))


async def test_server_answering_404_raises_invalid_status(servers: Servers) -> None:
    _, url = await servers.start(echo, process_request=lambda conn, req: conn.respond(404, "nope"))
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(url))
    assert isinstance(info.value, ripple.InvalidHandshake)
    assert info.value.response.status_code == 404
    assert info.value.response.body == b"nope"
    assert "404" in str(info.value)


async def test_non_websocket_http_server_raises_invalid_status(raw_server: RawServer) -> None:
    raw_server.reply = lambda key: (
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nContent-Type: text/plain\r\n\r\nnot here!"
    )
    url = await raw_server.start()
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(url))
    assert info.value.response.status_code == 404
    assert info.value.response.reason_phrase == "Not Found"
    assert info.value.response.body == b"not here!"


async def test_wrong_accept_key_raises_invalid_header(raw_server: RawServer) -> None:
    raw_server.reply = lambda key: RawServer.accept(b"some other key")
    url = await raw_server.start()
    with pytest.raises(ripple.InvalidHeader) as info:
        await within(ripple.connect(url))
    assert info.value.name == "Sec-WebSocket-Accept"


async def test_server_closing_during_handshake_raises_invalid_message(
    raw_server: RawServer,
) -> None:
    raw_server.reply = lambda key: b""
    url = await raw_server.start()
    with pytest.raises(ripple.InvalidMessage):
        await within(ripple.connect(url))


async def test_unoffered_subprotocol_from_server_raises_negotiation_error(
    raw_server: RawServer,
) -> None:
    raw_server.reply = lambda key: (
        RawServer.accept(key)[:-2] + b"Sec-WebSocket-Protocol: surprise\r\n\r\n"
    )
    url = await raw_server.start()
    with pytest.raises(ripple.NegotiationError):
        await within(ripple.connect(url, subprotocols=["expected"]))


@pytest.mark.parametrize("uri", ["http://x", "https://example.com/", "x", "ws://"])
def test_invalid_uri(uri: str) -> None:
    with pytest.raises(ripple.InvalidURI) as info:
        ripple.connect(uri)
    assert info.value.uri == uri


def test_invalid_uri_says_what_to_pass() -> None:
    with pytest.raises(ripple.InvalidURI) as info:
        ripple.connect("http://x")
    assert "ws://" in str(info.value)


def test_client_option_errors() -> None:
    with pytest.raises(ValueError, match="compression"):
        ripple.connect("ws://localhost/", compression="brotli")
    with pytest.raises(TypeError, match="subprotocols"):
        ripple.connect("ws://localhost/", subprotocols="chat")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ssl"):
        ripple.connect("ws://localhost/", ssl=True)
    with pytest.raises(ValueError, match="max_size"):
        ripple.connect("ws://localhost/", max_size=-5)


async def test_open_timeout_on_a_server_that_never_answers(raw_server: RawServer) -> None:
    raw_server.reply = lambda key: None
    url = await raw_server.start()
    loop = asyncio.get_running_loop()
    start = loop.time()
    with pytest.raises(TimeoutError):
        await within(ripple.connect(url, open_timeout=0.3))
    assert loop.time() - start < 3
    assert len(raw_server.requests) == 1  # the request was sent


async def test_request_headers(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked)
    async with ripple.connect(
        url + "chat?room=1",
        origin="https://example.test",
        additional_headers={"X-Trace": "abc"},
        subprotocols=["one", "two"],
    ) as client:
        conn = await parked.next()
        headers = conn.request_headers
        assert conn.request is not None and conn.request.path == "/chat?room=1"
        assert headers["Origin"] == "https://example.test"
        assert headers["X-Trace"] == "abc"
        assert headers["Sec-WebSocket-Protocol"] == "one, two"
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        assert headers["User-Agent"] == f"Python/{version} ripple"
        assert headers["Host"] == url.split("/")[2]
        assert client.request_headers["X-Trace"] == "abc"


async def test_user_agent_replaced_and_removed(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked)
    async with ripple.connect(url, user_agent_header="agent/2"):
        assert (await parked.next()).request_headers["User-Agent"] == "agent/2"
    async with ripple.connect(url, user_agent_header=None):
        assert "User-Agent" not in (await parked.next()).request_headers


async def test_additional_headers_as_list_of_pairs(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked)
    async with ripple.connect(url, additional_headers=[("X-Multi", "1"), ("X-Multi", "2")]):
        conn = await parked.next()
        assert conn.request_headers.get_all("X-Multi") == ["1", "2"]


async def test_user_info_in_uri_sends_basic_authorization(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked)
    async with ripple.connect(url.replace("ws://", "ws://user:pass@")):
        conn = await parked.next()
        # base64("user:pass")
        assert conn.request_headers["Authorization"] == "Basic dXNlcjpwYXNz"


async def test_connect_with_a_connected_socket(servers: Servers) -> None:
    server, _ = await servers.start(echo)
    sock = socket.create_connection(("127.0.0.1", server_port(server)))
    async with ripple.connect("ws://example.test/", sock=sock) as client:
        assert client.request_headers["Host"] == "example.test"
        await client.send("via sock")
        assert await within(client.recv()) == "via sock"


async def test_client_max_size_closes_with_1009(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked)
    async with ripple.connect(url, max_size=1000) as client:
        conn = await parked.next()
        await conn.send(b"a" * 1000)
        assert await within(client.recv()) == b"a" * 1000
        await conn.send(b"b" * 1001)
        with pytest.raises(ripple.ConnectionClosedError) as info:
            await within(client.recv())
        assert info.value.sent is not None and info.value.sent.code == 1009
        await within(conn.wait_closed())
        assert conn.close_code == 1009


async def test_client_keepalive_closes_silent_server_with_1011(raw_server: RawServer) -> None:
    url = await raw_server.start()
    client = await within(ripple.connect(url, ping_interval=0.2, ping_timeout=0.2))
    peer = await raw_server.next_peer()
    try:
        _, opcode, _ = await peer.recv_frame()
        assert opcode == 0x9  # a keepalive ping, never answered
        payload = await peer.recv_until(0x8)
        assert int.from_bytes(payload[:2], "big") == 1011
        # The client waits for the server to close TCP; it doesn't, so the
        # client drops it after close_timeout.
        await within(client.wait_closed())
        with pytest.raises(ripple.ConnectionClosedError):
            await client.recv()
    finally:
        peer.writer.transport.abort()
        if client.transport is not None:
            client.transport.abort()


async def test_client_keepalive_with_responsive_server(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked, ping_interval=None)
    async with ripple.connect(url, ping_interval=0.1, ping_timeout=0.1) as client:
        conn = await parked.next()
        await asyncio.sleep(0.5)
        assert client.state is ripple.State.OPEN
        assert client.latency > 0
        await conn.send("alive")
        assert await within(client.recv()) == "alive"


async def test_client_close_timeout(raw_server: RawServer) -> None:
    url = await raw_server.start()
    client = await within(ripple.connect(url, close_timeout=0.3, ping_interval=None))
    peer = await raw_server.next_peer()
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        await within(client.close(), 3)  # the server never answers the close
        assert loop.time() - start < 3
        assert client.closed and client.close_code == 1006
        assert await peer.recv_until(0x8) == b"\x03\xe8"
    finally:
        peer.writer.transport.abort()


async def test_client_waits_for_server_to_close_tcp(raw_server: RawServer) -> None:
    url = await raw_server.start()
    client = await within(ripple.connect(url, close_timeout=5, ping_interval=None))
    peer = await raw_server.next_peer()
    try:
        peer.send_close(1001, "restart")
        assert await peer.recv_until(0x8) == b"\x03\xe9"  # the client echoes the code
        await asyncio.sleep(0.05)
        assert not client.closed  # §7.1.1: the server closes TCP first
        peer.writer.close()
        await within(client.wait_closed())
        assert client.close_code == 1001 and client.close_reason == "restart"
    finally:
        peer.writer.transport.abort()


async def test_client_max_queue_pauses_reading(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked)
    async with ripple.connect(url, max_queue=3) as client:
        conn = await parked.next()
        assert client.transport is not None
        for i in range(10):
            await conn.send(f"s{i}")
            await asyncio.sleep(0.01)
        await eventually(lambda: client._reading_paused)
        assert not client.transport.is_reading()
        assert len(client._queue) < 10
        assert [await within(client.recv()) for _ in range(10)] == [f"s{i}" for i in range(10)]
        assert client.transport.is_reading()


async def test_client_write_limit_suspends_send(raw_server: RawServer) -> None:
    url = await raw_server.start()
    client = await within(ripple.connect(url, write_limit=8192, ping_interval=None))
    peer = await raw_server.next_peer()
    try:
        peer.writer.transport.pause_reading()  # the server stops reading
        chunk = b"c" * 65536
        sent = 0
        pending = None
        for _ in range(500):
            task = asyncio.create_task(client.send(chunk))
            done, _ = await asyncio.wait({task}, timeout=0.2)
            sent += 1
            if not done:
                pending = task
                break
        assert pending is not None, "send() never suspended"
        assert client._writing_paused
        peer.writer.transport.resume_reading()
        for _ in range(sent):
            _, opcode, payload = await peer.recv_frame()
            assert opcode == 0x2 and payload == chunk
        await within(pending)
        assert not client._writing_paused
    finally:
        peer.writer.transport.abort()
        if client.transport is not None:
            client.transport.abort()


async def test_unix_connect_to_missing_path_raises_os_error(sock_path: str) -> None:
    with pytest.raises(OSError):
        await within(ripple.unix_connect(sock_path))


async def test_frames_right_after_the_101_are_kept(raw_server: RawServer) -> None:
    # The server's first frame arrives in the same segment as its 101.
    raw_server.reply = lambda key: RawServer.accept(key) + b"\x81\x05first"
    url = await raw_server.start()
    async with ripple.connect(url, ping_interval=None, close_timeout=0.5) as client:
        assert await within(client.recv()) == "first"


# -- every refusal, seen from the client ------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "status", "reason"),
    [
        # A second key: malformed handshake, named in the one-line reason.
        (
            {"Sec-WebSocket-Key": "AAAAAAAAAAAAAAAAAAAAAA=="},
            400,
            b"invalid Sec-WebSocket-Key header: more than one Sec-WebSocket-Key header\n",
        ),
        ({"Host": "another.example"}, 400, b"invalid Host header: more than one Host header\n"),
        (
            {"Sec-WebSocket-Version": "8"},
            426,
            b"unsupported Sec-WebSocket-Version 13, 8; use 13\n",
        ),
        (
            {"X-Huge": "a" * 9000},
            431,
            b"request headers too large: HTTP line exceeds 8192 bytes\n",
        ),
        (
            [(f"X-H{i}", "v") for i in range(200)],
            431,
            b"request headers too large: more than 128 header fields\n",
        ),
    ],
)
async def test_server_refusals_raise_invalid_status_with_the_response(
    servers: Servers, headers: Any, status: int, reason: bytes
) -> None:
    _, url = await servers.start(echo)
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(url, additional_headers=headers))
    response = info.value.response
    assert response.status_code == status
    assert response.body == reason
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert str(status) in str(info.value)


@pytest.mark.parametrize(
    ("reply", "error", "reason"),
    [
        (b"HTTP/1.1 abc\r\n\r\n", ripple.InvalidMessage, "invalid HTTP status line"),
        (b"HTTP/1.0 101 OK\r\n\r\n", ripple.InvalidMessage, "unsupported HTTP version: 1.0"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", ripple.InvalidMessage, "invalid HTTP status line"),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\n",
            ripple.InvalidUpgrade,
            "missing Upgrade header",
        ),
        (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\n\r\n",
            ripple.InvalidHeader,
            "missing Sec-WebSocket-Accept header",
        ),
        (
            b"HTTP/1.1 200 OK\r\n" + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n",
            ripple.SecurityError,
            "HTTP line exceeds 8192 bytes",
        ),
        (
            b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n",
            ripple.SecurityError,
            "exceeds 1048576",
        ),
    ],
)
async def test_invalid_server_responses_raise_with_the_reason(
    raw_server: RawServer, reply: bytes, error: type[Exception], reason: str
) -> None:
    raw_server.reply = lambda key: reply
    url = await raw_server.start()
    with pytest.raises(error) as info:
        await within(ripple.connect(url))
    assert isinstance(info.value, ripple.InvalidHandshake)
    assert reason in str(info.value)


def test_invalid_status_message_carries_the_servers_reason() -> None:
    response = ripple.Response(400, "", None, b"missing Sec-WebSocket-Key header\n")
    assert str(ripple.InvalidStatus(response)) == (
        "server rejected WebSocket connection: HTTP 400: missing Sec-WebSocket-Key header"
    )
    # A page, not a one-line reason: only the status.
    page = ripple.Response(404, "", None, b"<html>\n<body>nope</body>\n</html>")
    assert str(ripple.InvalidStatus(page)) == "server rejected WebSocket connection: HTTP 404"


async def test_client_compression_offers_deflate_or_nothing(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked)
    async with ripple.connect(url) as client:
        offered = (await parked.next()).request_headers["Sec-WebSocket-Extensions"]
        assert offered.startswith("permessage-deflate")
        assert "permessage-deflate" in client.response_headers["Sec-WebSocket-Extensions"]
    async with ripple.connect(url, compression=None) as client:
        assert "Sec-WebSocket-Extensions" not in (await parked.next()).request_headers
        assert "Sec-WebSocket-Extensions" not in client.response_headers


async def test_client_subprotocol_negotiated(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked, subprotocols=["two"])
    async with ripple.connect(url, subprotocols=["one", "two"]) as client:
        assert client.subprotocol == "two"
        assert (await parked.next()).subprotocol == "two"
