"""serve / unix_serve / Server / ServerConnection over real sockets."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
from typing import Any

import pytest

import ripple
from aio_helpers import (
    BOUND,
    Parked,
    RawPeer,
    Servers,
    bounded,
    build_frame,
    echo,
    eventually,
    open_raw_unix,
    raw_connection,
    raw_pair,
    read_http_response,
    server_port,
    within,
    ws_url,
)
from ripple.protocol.extensions import (
    ClientExtensionFactory,
    Extension,
    Frame,
    ServerExtensionFactory,
)

pytestmark = pytest.mark.timeout(30)


# -- starting and stopping ----------------------------------------------------


async def test_serve_as_async_context_manager() -> None:
    async with ripple.serve(echo, "127.0.0.1", 0) as server:
        assert isinstance(server, ripple.Server)
        assert server.is_serving()
        (sock,) = server.sockets
        host, port = sock.getsockname()[:2]
        assert host == "127.0.0.1" and port > 0
        async with ripple.connect(f"ws://127.0.0.1:{port}/") as client:
            await client.send("hello")
            assert await within(client.recv()) == "hello"
    assert not server.is_serving()
    with pytest.raises(OSError):
        await within(ripple.connect(f"ws://127.0.0.1:{port}/"))


async def test_serve_awaited_then_closed() -> None:
    server = await within(ripple.serve(echo, "127.0.0.1", 0))
    try:
        url = ws_url(server)
        client = await within(ripple.connect(url))
        await client.send(b"bin")
        assert await within(client.recv()) == b"bin"
        await within(client.close())
    finally:
        server.close()
        await within(server.wait_closed())
    assert not server.is_serving()
    assert server.sockets == set()
    with pytest.raises(OSError):
        await within(ripple.connect(url))


async def test_serve_with_a_pre_bound_socket() -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    async with ripple.serve(echo, sock=sock) as server:
        (listening,) = server.sockets
        assert listening.getsockname() == ("127.0.0.1", port)
        async with ripple.connect(f"ws://127.0.0.1:{port}/") as client:
            await client.send("via sock=")
            assert await within(client.recv()) == "via sock="


async def test_serve_reuse_port_reaches_create_server() -> None:
    if not hasattr(socket, "SO_REUSEPORT"):  # pragma: no cover - not on Linux
        pytest.fail("SO_REUSEPORT is missing on this platform")
    async with ripple.serve(echo, "127.0.0.1", 0, reuse_port=True) as first:
        port = server_port(first)
        (sock,) = first.sockets
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        # Without reuse_port, a second server can't bind the same port...
        with pytest.raises(OSError):
            await within(ripple.serve(echo, "127.0.0.1", port))
        # ...with it, it can.
        async with ripple.serve(echo, "127.0.0.1", port, reuse_port=True) as second:
            assert server_port(second) == port
            async with ripple.connect(f"ws://127.0.0.1:{port}/") as client:
                await client.send("shared port")
                assert await within(client.recv()) == "shared port"


async def test_serve_passes_backlog_to_create_server(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = asyncio.get_running_loop()
    real = loop.create_server
    seen: list[dict[str, Any]] = []

    async def spy(*args: Any, **kwargs: Any) -> asyncio.Server:
        seen.append(kwargs)
        return await real(*args, **kwargs)

    monkeypatch.setattr(loop, "create_server", spy)
    async with ripple.serve(echo, "127.0.0.1", 0, backlog=7) as server:
        client = await within(ripple.connect(ws_url(server)))
        await client.send("ok")
        assert await within(client.recv()) == "ok"
        await within(client.close())
    assert len(seen) == 1 and seen[0]["backlog"] == 7


async def test_unix_serve_and_unix_connect(sock_path: str) -> None:
    seen: list[Any] = []

    async def handler(ws: ripple.ServerConnection) -> None:
        seen.append((ws.local_address, ws.request_headers["Host"]))
        await ws.send("from server")
        assert await ws.recv() == "from client"
        await ws.send(b"bye")

    async with ripple.unix_serve(handler, sock_path) as server:
        (sock,) = server.sockets
        assert sock.family == socket.AF_UNIX and sock.getsockname() == sock_path
        async with ripple.unix_connect(sock_path) as client:
            assert await within(client.recv()) == "from server"
            await client.send("from client")
            assert await within(client.recv()) == b"bye"
            assert client.remote_address == sock_path
    assert seen == [(sock_path, "localhost")]


async def test_unix_serve_and_unix_connect_awaited(sock_path: str) -> None:
    server = await within(ripple.unix_serve(echo, sock_path))
    try:
        client = await within(ripple.unix_connect(sock_path, uri="ws://example.test/room"))
        assert client.request is not None and client.request.path == "/room"
        assert client.request_headers["Host"] == "example.test"
        await client.send("over unix")
        assert await within(client.recv()) == "over unix"
        (conn,) = server.connections
        assert conn.request_headers["Host"] == "example.test"
        await within(client.close())
    finally:
        server.close()
        await within(server.wait_closed())


async def test_unix_serve_and_connect_with_sock(sock_path: str) -> None:
    listening = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listening.bind(sock_path)
    async with ripple.unix_serve(echo, sock=listening) as server:
        assert {s.getsockname() for s in server.sockets} == {sock_path}
        client_sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client_sock.connect(sock_path)
        async with ripple.unix_connect(sock=client_sock) as client:
            await client.send("sock both ends")
            assert await within(client.recv()) == "sock both ends"


async def test_sockets_connections_and_websockets(servers: Servers) -> None:
    parked = Parked()
    server, url = await servers.start(parked)
    assert server.connections == set() and server.websockets == set()
    clients = [await within(ripple.connect(url)) for _ in range(3)]
    conns = {await parked.next() for _ in range(3)}
    assert server.connections == conns
    assert server.websockets == conns
    assert all(isinstance(c, ripple.ServerConnection) for c in conns)
    # The server side of each client is in the set.
    assert {c.remote_address for c in conns} == {c.local_address for c in clients}
    await within(clients[0].close())
    await eventually(lambda: len(server.connections) == 2)
    assert clients[0].local_address not in {c.remote_address for c in server.websockets}
    # A returned set is a copy: mutating it doesn't affect the server.
    server.connections.clear()
    assert len(server.connections) == 2
    for client in clients[1:]:
        await within(client.close())
    await eventually(lambda: server.websockets == set())


async def test_close_closes_every_connection_with_1001_and_waits_for_handlers() -> None:
    finished: list[int] = []

    async def handler(ws: ripple.ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        finally:
            # Cleanup that takes a while: wait_closed() must wait for it.
            await asyncio.sleep(0.2)
            finished.append(1)

    server = await within(ripple.serve(handler, "127.0.0.1", 0))
    clients = [await within(ripple.connect(ws_url(server))) for _ in range(3)]
    for client in clients:
        await client.send("ping")
        assert await within(client.recv()) == "ping"
    server.close()
    await within(server.wait_closed())
    assert finished == [1, 1, 1]
    assert server.connections == set()
    for client in clients:
        with pytest.raises(ripple.ConnectionClosedOK) as info:
            await within(client.recv())
        assert info.value.code == 1001
        await within(client.wait_closed())
        assert client.close_code == 1001


async def test_close_can_leave_connections_open() -> None:
    parked = Parked()
    server = await within(ripple.serve(parked, "127.0.0.1", 0))
    client = await within(ripple.connect(ws_url(server)))
    conn = await parked.next()
    server.close(close_connections=False)
    closing = asyncio.create_task(server.wait_closed())
    await asyncio.sleep(0.05)
    assert not server.is_serving()
    await client.send("still open")
    assert await within(conn.recv()) == "still open"
    assert not closing.done()
    await within(client.close())
    await within(closing)


async def test_wait_closed_waits_for_close() -> None:
    server = await within(ripple.serve(echo, "127.0.0.1", 0))
    waiter = asyncio.create_task(server.wait_closed())
    await asyncio.sleep(0.05)
    assert not waiter.done()
    server.close()
    await within(waiter)
    assert not server.is_serving()


async def test_serve_forever_cancelled() -> None:
    parked = Parked()
    server = await within(ripple.serve(parked, "127.0.0.1", 0))
    task = asyncio.create_task(server.serve_forever())
    client = await within(ripple.connect(ws_url(server)))
    await parked.next()
    await asyncio.sleep(0.01)
    assert not task.done()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await within(task)
    assert not server.is_serving()
    with pytest.raises(ripple.ConnectionClosedOK) as info:
        await within(client.recv())
    assert info.value.code == 1001


async def test_serve_forever_returns_when_closed() -> None:
    parked = Parked()
    server = await within(ripple.serve(parked, "127.0.0.1", 0))
    task = asyncio.create_task(server.serve_forever())
    client = await within(ripple.connect(ws_url(server)))
    await parked.next()
    server.close()
    # close() is a normal shutdown: serve_forever returns instead of raising.
    assert await within(task) is None
    with pytest.raises(ripple.ConnectionClosedOK) as info:
        await within(client.recv())
    assert info.value.code == 1001


async def test_handler_returning_closes_with_1000(servers: Servers) -> None:
    async def handler(ws: ripple.ServerConnection) -> None:
        await ws.send("one message")

    _, url = await servers.start(handler)
    async with ripple.connect(url) as client:
        assert await within(client.recv()) == "one message"
        with pytest.raises(ripple.ConnectionClosedOK) as info:
            await within(client.recv())
        assert info.value.code == 1000


# -- options checked at the call ----------------------------------------------


async def test_compression_deflate_and_none_accepted(servers: Servers) -> None:
    for compression in ("deflate", None):
        _, url = await servers.start(echo, compression=compression)
        for client_compression in ("deflate", None):
            async with ripple.connect(url, compression=client_compression) as client:
                await client.send("compressible " * 50)
                assert await within(client.recv()) == "compressible " * 50


@pytest.mark.parametrize("bad", ["gzip", "permessage-deflate", ""])
def test_compression_other_values_rejected(bad: str) -> None:
    with pytest.raises(ValueError, match="compression"):
        ripple.serve(echo, "127.0.0.1", 0, compression=bad)
    with pytest.raises(ValueError, match="compression"):
        ripple.unix_serve(echo, "/tmp/unused.sock", compression=bad)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ping_interval", -1),
        ("ping_interval", 0),
        ("ping_timeout", "20"),
        ("close_timeout", -0.5),
        ("max_size", -1),
        ("max_queue", True),
        ("read_limit", -1),
        ("write_limit", 1.5),
    ],
)
def test_bad_connection_options_rejected_at_the_call(name: str, value: object) -> None:
    with pytest.raises(ValueError, match=name):
        ripple.serve(echo, "127.0.0.1", 0, **{name: value})


def test_handler_must_be_callable() -> None:
    with pytest.raises(TypeError, match="handler"):
        ripple.serve("not a handler", "127.0.0.1", 0)  # type: ignore[arg-type]


# -- logging and failing handlers --------------------------------------------


async def failing_echo(ws: ripple.ServerConnection) -> None:
    async for message in ws:
        if message == "boom":
            raise ValueError("handler exploded")
        await ws.send(message)


async def test_handler_exception_logged_and_closes_only_that_connection(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ripple.server")
    _, url = await servers.start(failing_echo)
    healthy = await within(ripple.connect(url))
    doomed = await within(ripple.connect(url))
    await doomed.send("boom")
    with pytest.raises(ripple.ConnectionClosedError) as info:
        await within(doomed.recv())
    assert info.value.code == 1011
    records = [r for r in caplog.records if r.getMessage() == "connection handler failed"]
    assert len(records) == 1
    (record,) = records
    assert record.name == "ripple.server" and record.levelno == logging.ERROR
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert "handler exploded" in caplog.text and "Traceback" in caplog.text
    # The other connection keeps working.
    await healthy.send("still here")
    assert await within(healthy.recv()) == "still here"
    await within(healthy.close())


class ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_custom_logger_receives_handler_failure(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ripple")
    logger = logging.getLogger("tests.custom_server_logger")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    capture = ListHandler()
    logger.addHandler(capture)
    try:
        parked: list[ripple.ServerConnection] = []

        async def handler(ws: ripple.ServerConnection) -> None:
            parked.append(ws)
            await failing_echo(ws)

        _, url = await servers.start(handler, logger=logger)
        other = await within(ripple.connect(url))
        client = await within(ripple.connect(url))
        await eventually(lambda: len(parked) == 2)
        assert all(ws.logger is logger for ws in parked)
        await client.send("boom")
        with pytest.raises(ripple.ConnectionClosedError) as info:
            await within(client.recv())
        assert info.value.code == 1011
        failures = [r for r in capture.records if r.getMessage() == "connection handler failed"]
        assert len(failures) == 1
        assert failures[0].exc_info is not None and failures[0].exc_info[0] is ValueError
        # Nothing went to ripple's own logger.
        assert "connection handler failed" not in caplog.text
        await other.send("unaffected")
        assert await within(other.recv()) == "unaffected"
        await within(other.close())
    finally:
        logger.removeHandler(capture)


async def test_handler_connection_closed_is_not_an_error(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ripple.server")
    done = asyncio.Event()

    async def handler(ws: ripple.ServerConnection) -> None:
        try:
            await ws.recv()
            await ws.recv()  # the client closes in between: ConnectionClosed
        finally:
            done.set()

    _, url = await servers.start(handler)
    async with ripple.connect(url) as client:
        await client.send("one")
    await within(done.wait())
    await asyncio.sleep(0.05)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


# -- subprotocols -------------------------------------------------------------


async def test_subprotocol_negotiated_on_both_sides(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked, subprotocols=["chat", "superchat"])
    async with ripple.connect(url, subprotocols=["unknown", "superchat"]) as client:
        conn = await parked.next()
        assert client.subprotocol == "superchat"
        assert conn.subprotocol == "superchat"
        assert client.response_headers["Sec-WebSocket-Protocol"] == "superchat"
    # Both acceptable: the server's preference order wins.
    async with ripple.connect(url, subprotocols=["superchat", "chat"]) as client:
        conn = await parked.next()
        assert client.subprotocol == conn.subprotocol == "chat"


async def test_no_subprotocol_offered_gives_none(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked, subprotocols=["chat"])
    async with ripple.connect(url) as client:
        conn = await parked.next()
        assert client.subprotocol is None and conn.subprotocol is None
        assert "Sec-WebSocket-Protocol" not in client.response_headers
    # Offered but not supported: the handshake succeeds without one.
    async with ripple.connect(url, subprotocols=["other"]) as client:
        conn = await parked.next()
        assert client.subprotocol is None and conn.subprotocol is None


async def test_select_subprotocol(servers: Servers) -> None:
    parked = Parked()
    calls: list[tuple[ripple.ServerConnection, list[str]]] = []

    def select(conn: ripple.ServerConnection, offered: Any) -> str | None:
        calls.append((conn, list(offered)))
        return offered[-1] if "pick-last" in offered else None

    # select_subprotocol overrides subprotocols.
    _, url = await servers.start(parked, subprotocols=["a"], select_subprotocol=select)
    async with ripple.connect(url, subprotocols=["a", "b", "pick-last"]) as client:
        conn = await parked.next()
        assert client.subprotocol == conn.subprotocol == "pick-last"
    assert calls[-1] == (conn, ["a", "b", "pick-last"])
    async with ripple.connect(url, subprotocols=["a", "b"]) as client:
        conn = await parked.next()
        assert client.subprotocol is None and conn.subprotocol is None
    # Not called when the client offers none.
    async with ripple.connect(url) as client:
        await parked.next()
    assert len(calls) == 2


async def test_select_subprotocol_returning_unoffered_value_fails_handshake(
    servers: Servers,
) -> None:
    _, url = await servers.start(echo, select_subprotocol=lambda conn, offered: "invented")
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(url, subprotocols=["real"]))
    assert info.value.response.status_code == 400


# -- response headers ---------------------------------------------------------


async def test_extra_headers_mapping(servers: Servers) -> None:
    _, url = await servers.start(echo, extra_headers={"X-Mapping": "yes", "X-Two": "2"})
    async with ripple.connect(url) as client:
        assert client.response_headers["X-Mapping"] == "yes"
        assert client.response_headers["X-Two"] == "2"


async def test_extra_headers_list_of_pairs(servers: Servers) -> None:
    _, url = await servers.start(echo, extra_headers=[("X-Pair", "a"), ("X-Pair", "b")])
    async with ripple.connect(url) as client:
        assert client.response_headers.get_all("X-Pair") == ["a", "b"]


async def test_extra_headers_callable(servers: Servers) -> None:
    calls: list[Any] = []

    def extra(conn: ripple.ServerConnection, request: ripple.Request) -> dict[str, str]:
        calls.append((conn, request))
        return {"X-Requested-Path": request.path}

    _, url = await servers.start(echo, extra_headers=extra)
    async with ripple.connect(url + "some/where?q=1") as client:
        assert client.response_headers["X-Requested-Path"] == "/some/where?q=1"
    (conn, request), *_ = calls
    assert isinstance(conn, ripple.ServerConnection)
    assert isinstance(request, ripple.Request)


def test_bad_extra_headers_raise_at_serve() -> None:
    # A value that would inject a header fails at the call, not at a client.
    with pytest.raises(ValueError, match="CR, LF and NUL"):
        ripple.serve(echo, "127.0.0.1", 0, extra_headers={"X-Bad": "a\r\nEvil: 1"})


async def test_raising_extra_headers_callable_gets_500(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    def extra(conn: ripple.ServerConnection, request: ripple.Request) -> dict[str, str]:
        raise RuntimeError("boom")

    _, url = await servers.start(echo, extra_headers=extra)
    with (
        caplog.at_level(logging.ERROR, logger="ripple.server"),
        pytest.raises(ripple.InvalidStatus) as info,
    ):
        await within(ripple.connect(url))
    assert info.value.response.status_code == 500
    assert info.value.response.headers["Server"] == "ripple"
    assert any(r.exc_info and "boom" in str(r.exc_info[1]) for r in caplog.records)


async def test_server_header_default_replaced_and_removed(servers: Servers) -> None:
    _, url = await servers.start(echo)
    async with ripple.connect(url) as client:
        assert client.response_headers.get_all("Server") == ["ripple"]
    _, url = await servers.start(echo, server_header="custom/1.0")
    async with ripple.connect(url) as client:
        assert client.response_headers.get_all("Server") == ["custom/1.0"]
    _, url = await servers.start(echo, extra_headers={"Server": "from-extra"})
    async with ripple.connect(url) as client:
        assert client.response_headers.get_all("Server") == ["from-extra"]
    _, url = await servers.start(echo, server_header=None)
    async with ripple.connect(url) as client:
        assert "Server" not in client.response_headers


# -- process_request ----------------------------------------------------------


async def test_process_request_sync_returning_none_continues(servers: Servers) -> None:
    calls: list[Any] = []

    def process_request(conn: ripple.ServerConnection, request: ripple.Request) -> None:
        calls.append((conn, request.path, request.headers.get("X-Token")))
        return None

    _, url = await servers.start(echo, process_request=process_request)
    async with ripple.connect(url + "path", additional_headers={"X-Token": "t"}) as client:
        await client.send("through")
        assert await within(client.recv()) == "through"
    ((conn, path, token),) = calls
    assert isinstance(conn, ripple.ServerConnection)
    assert (path, token) == ("/path", "t")


async def test_process_request_async_returning_none_continues(servers: Servers) -> None:
    calls: list[str] = []

    async def process_request(conn: ripple.ServerConnection, request: ripple.Request) -> None:
        await asyncio.sleep(0.01)
        calls.append(request.path)

    _, url = await servers.start(echo, process_request=process_request)
    async with ripple.connect(url) as client:
        await client.send("through")
        assert await within(client.recv()) == "through"
    assert calls == ["/"]


async def test_process_request_response_rejects_with_status_and_body(servers: Servers) -> None:
    handled: list[ripple.ServerConnection] = []

    async def handler(ws: ripple.ServerConnection) -> None:
        handled.append(ws)
        await echo(ws)

    async def process_request(
        conn: ripple.ServerConnection, request: ripple.Request
    ) -> ripple.Response | None:
        if request.headers.get("X-API-Key") != "valid-api-key":
            return ripple.Response(403, "Forbidden", b"Invalid API key")
        return None

    _, url = await servers.start(handler, process_request=process_request)
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(url))
    response = info.value.response
    assert response.status_code == 403
    assert response.reason_phrase == "Forbidden"
    assert response.body == b"Invalid API key"
    assert "403" in str(info.value)
    assert handled == []
    async with ripple.connect(url, additional_headers={"X-API-Key": "valid-api-key"}) as client:
        await client.send("authorized")
        assert await within(client.recv()) == "authorized"
    assert len(handled) == 1


async def test_process_request_with_respond(servers: Servers) -> None:
    def process_request(conn: ripple.ServerConnection, request: ripple.Request) -> Any:
        return conn.respond(404, "nope")

    _, url = await servers.start(process_request=process_request, handler=echo)
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(url))
    response = info.value.response
    assert response.status_code == 404
    assert response.body == b"nope"
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.headers["Server"] == "ripple"


async def test_process_request_failure_gives_500_and_is_logged(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ripple.server")

    def process_request(conn: ripple.ServerConnection, request: ripple.Request) -> Any:
        raise RuntimeError("process_request bug")

    _, url = await servers.start(echo, process_request=process_request)
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(url))
    assert info.value.response.status_code == 500
    assert "opening handshake failed" in caplog.text
    assert "process_request bug" in caplog.text


# -- HTTP errors answered by the server -----------------------------------------


async def raw_request(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    async with raw_connection(port) as peer:
        peer.writer.write(data)
        response = await within(read_http_response(peer.reader))
        # The server closes the connection after an error response.
        assert await peer.read_eof() == b""
        return response


async def test_plain_get_without_upgrade_gets_426(servers: Servers) -> None:
    server, _ = await servers.start(echo)
    status, headers, body = await raw_request(
        server_port(server), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    assert status == 426
    assert headers["upgrade"].lower() == "websocket"
    assert b"Upgrade" in body


async def test_wrong_websocket_version_gets_426_with_version_13(servers: Servers) -> None:
    server, _ = await servers.start(echo)
    status, headers, body = await raw_request(
        server_port(server),
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    assert status == 426
    assert headers["sec-websocket-version"] == "13"
    assert b"13" in body


async def test_missing_key_gets_400_naming_the_header(servers: Servers) -> None:
    server, _ = await servers.start(echo)
    status, _, body = await raw_request(
        server_port(server),
        b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
    )
    assert status == 400
    assert b"Sec-WebSocket-Key" in body


async def test_malformed_request_line_gets_400(servers: Servers) -> None:
    server, _ = await servers.start(echo)
    status, _, body = await raw_request(server_port(server), b"HELLO THERE\r\n\r\n")
    assert status == 400
    assert b"request line" in body


async def test_post_gets_405(servers: Servers) -> None:
    server, _ = await servers.start(echo)
    status, headers, _ = await raw_request(
        server_port(server), b"POST / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\r\n"
    )
    assert status == 405
    assert headers["allow"] == "GET"


async def test_huge_header_line_gets_431(servers: Servers) -> None:
    server, _ = await servers.start(echo)
    status, _, _ = await raw_request(
        server_port(server), b"GET / HTTP/1.1\r\nX-Huge: " + b"a" * 9000
    )
    assert status == 431


async def test_too_many_headers_get_431(servers: Servers) -> None:
    server, _ = await servers.start(echo)
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(200))
    status, _, _ = await raw_request(
        server_port(server), b"GET / HTTP/1.1\r\nHost: x\r\n" + many + b"\r\n"
    )
    assert status == 431


async def test_http_error_leaves_other_connections_alone(servers: Servers) -> None:
    server, url = await servers.start(echo)
    async with ripple.connect(url) as client:
        await raw_request(server_port(server), b"BROKEN\r\n\r\n")
        await client.send("fine")
        assert await within(client.recv()) == "fine"


# -- timeouts -----------------------------------------------------------------


async def test_open_timeout_drops_a_half_sent_request(servers: Servers) -> None:
    server, _ = await servers.start(echo, open_timeout=0.2)
    loop = asyncio.get_running_loop()
    async with raw_connection(server_port(server)) as peer:
        peer.writer.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs")
        start = loop.time()
        assert await peer.read_eof(seconds=3) == b""  # dropped, no response
        assert loop.time() - start < 3
    await eventually(lambda: not server._transports)


async def test_open_timeout_doesnt_affect_open_connections(servers: Servers) -> None:
    _, url = await servers.start(echo, open_timeout=0.1)
    async with ripple.connect(url) as client:
        await asyncio.sleep(0.3)
        await client.send("after open_timeout")
        assert await within(client.recv()) == "after open_timeout"


async def test_close_timeout_drops_peer_that_doesnt_answer_close(servers: Servers) -> None:
    peer, conn, _ = await raw_pair(servers, close_timeout=0.3)
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        await within(conn.close(1000, "bye"), 3)
        assert loop.time() - start < 3
        assert conn.closed
        # No close frame came back: 1006.
        assert conn.close_code == 1006
        assert await peer.recv_until(0x8) == b"\x03\xe8bye"
        assert await peer.read_eof() == b""
    finally:
        peer.writer.transport.abort()


async def test_closing_handshake_with_a_responsive_peer(servers: Servers) -> None:
    peer, conn, _ = await raw_pair(servers, close_timeout=5)
    try:
        closing = asyncio.create_task(conn.close(4000, "app"))
        assert await peer.recv_until(0x8) == b"\x0f\xa0app"
        peer.send_close(4000)
        await within(closing)
        assert conn.close_code == 4000
        assert await peer.read_eof() == b""  # the server closes TCP first
    finally:
        peer.writer.transport.abort()


# -- size limits and flow control ---------------------------------------------


async def test_max_size_closes_with_1009(servers: Servers) -> None:
    _, url = await servers.start(echo, max_size=1000)
    async with ripple.connect(url) as client:
        await client.send(b"x" * 1000)  # at the limit: fine
        assert await within(client.recv()) == b"x" * 1000
        await client.send("y" * 1001)
        with pytest.raises(ripple.ConnectionClosedError) as info:
            await within(client.recv())
        assert info.value.code == 1009


async def test_max_size_applies_to_fragmented_messages(servers: Servers) -> None:
    _, url = await servers.start(echo, max_size=1000)
    async with ripple.connect(url) as client:
        await client.send([b"a" * 600, b"b" * 600])
        with pytest.raises(ripple.ConnectionClosedError) as info:
            await within(client.recv())
        assert info.value.code == 1009


async def test_max_size_none_means_no_limit(servers: Servers) -> None:
    _, url = await servers.start(echo, max_size=None)
    big = b"z" * (2**20 + 10)  # over the default limit
    async with ripple.connect(url, max_size=None) as client:
        await client.send(big)
        assert await within(client.recv()) == big


async def test_max_queue_pauses_and_resumes_reading(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked, max_queue=4, read_limit=2**20)
    async with ripple.connect(url) as client:
        conn = await parked.next()
        assert conn.transport is not None
        for i in range(12):
            await client.send(f"m{i}")
            await asyncio.sleep(0.01)  # separate TCP segments
        await eventually(lambda: conn._reading_paused)
        assert not conn.transport.is_reading()
        # Reading stopped at the limit: the rest waits in the kernel.
        assert 4 <= len(conn._queue) < 12
        received = [await within(conn.recv()) for _ in range(12)]
        assert received == [f"m{i}" for i in range(12)]
        assert not conn._reading_paused
        assert conn.transport.is_reading()


async def test_read_limit_pauses_and_resumes_reading(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked, max_queue=None, read_limit=1000)
    async with ripple.connect(url) as client:
        conn = await parked.next()
        assert conn.transport is not None
        messages = [bytes([i]) * 400 for i in range(10)]
        for message in messages:
            await client.send(message)
            await asyncio.sleep(0.01)
        await eventually(lambda: conn._reading_paused)
        assert not conn.transport.is_reading()
        assert 1000 < conn._qbytes < 4000
        assert len(conn._queue) < 10
        received = [await within(conn.recv()) for _ in range(10)]
        assert received == messages
        assert not conn._reading_paused
        assert conn.transport.is_reading()


async def test_single_message_up_to_max_size_passes_read_limit(servers: Servers) -> None:
    _, url = await servers.start(echo, read_limit=100, max_size=10000)
    async with ripple.connect(url) as client:
        await client.send(b"q" * 5000)
        assert await within(client.recv()) == b"q" * 5000


@pytest.mark.parametrize("kind", [bytes, str])
async def test_write_limit_suspends_send_until_peer_reads(servers: Servers, kind: type) -> None:
    # bytes and str take different paths to the transport (str: send()'s inline fast path).
    parked = Parked()
    server, _ = await servers.start(parked, write_limit=16384)
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", server_port(server)))
    raw.setblocking(False)
    reader, writer = await within(asyncio.open_connection(sock=raw, limit=4096))
    peer = RawPeer(reader, writer, mask=True)
    try:
        await peer.handshake()
        conn = await parked.next()
        assert conn.transport is not None
        chunk = b"w" * 65536
        message = chunk if kind is bytes else chunk.decode()
        opcode_sent = 0x2 if kind is bytes else 0x1
        sent = 0
        pending: asyncio.Task[None] | None = None
        # The peer reads nothing: sooner or later, send() must suspend.
        for _ in range(500):
            task = asyncio.create_task(conn.send(message))
            done, _ = await asyncio.wait({task}, timeout=0.2)
            sent += 1
            if not done:
                pending = task
                break
            task.result()
        assert pending is not None, "send() never suspended"
        assert conn._writing_paused
        assert conn.transport.get_write_buffer_size() > 16384
        # The peer reads everything: the suspended send() completes.
        for _ in range(sent):
            _, opcode, payload = await peer.recv_frame()
            assert opcode == opcode_sent and payload == chunk
        await within(pending)
        assert not conn._writing_paused
        await within(conn.send("after drain"))
        assert await peer.recv_frame() == (True, 0x1, b"after drain")
    finally:
        writer.transport.abort()


async def test_many_connections_concurrently(servers: Servers) -> None:
    _, url = await servers.start(echo)

    async def one(i: int) -> str:
        async with ripple.connect(url) as client:
            await client.send(f"client {i}")
            return str(await within(client.recv()))

    results = await within(asyncio.gather(*(one(i) for i in range(30))), BOUND * 2)
    assert results == [f"client {i}" for i in range(30)]


async def test_server_on_unix_socket_handles_raw_handshake(sock_path: str) -> None:
    async with ripple.unix_serve(echo, sock_path):
        peer = await open_raw_unix(sock_path)
        try:
            status, headers, _ = await peer.handshake()
            assert status == 101 and headers["upgrade"] == "websocket"
            peer.send_frame(0x1, b"raw over unix")
            assert await peer.recv_frame() == (True, 0x1, b"raw over unix")
            peer.send_close(1000)
            assert await peer.recv_until(0x8) == b"\x03\xe8"
            assert await peer.read_eof() == b""
        finally:
            peer.writer.transport.abort()


async def test_max_queue_zero_doesnt_stall_on_pongs(servers: Servers) -> None:
    # max_queue=0: read one message at a time. A pong (no message) must not
    # pause reading, or nothing would ever resume it.
    parked = Parked()
    _, url = await servers.start(parked, max_queue=0)
    async with ripple.connect(url) as client:
        conn = await parked.next()
        await within(await conn.ping(b"keepalive"))
        assert not conn._reading_paused
        await client.send("after the pong")
        assert await within(conn.recv()) == "after the pong"
        for i in range(5):
            await client.send(str(i))
        assert [await within(conn.recv()) for _ in range(5)] == ["0", "1", "2", "3", "4"]


async def test_close_with_a_silent_peer_is_bounded_by_close_timeout(servers: Servers) -> None:
    peer, conn, server = await raw_pair(servers, close_timeout=0.3)
    try:
        server.close()
        await within(server.wait_closed(), 3)  # not the 10 s default
        assert conn.closed
        payload = await peer.recv_until(0x8)
        assert int.from_bytes(payload[:2], "big") == 1001
    finally:
        peer.writer.transport.abort()


async def test_suspended_send_raises_when_connection_is_lost(servers: Servers) -> None:
    peer, conn, _ = await raw_pair(servers, write_limit=4096)
    try:
        peer.writer.transport.pause_reading()
        pending = None
        for _ in range(500):
            task = asyncio.create_task(conn.send(b"p" * 65536))
            done, _ = await asyncio.wait({task}, timeout=0.2)
            if not done:
                pending = task
                break
        assert pending is not None, "send() never suspended"
        peer.writer.transport.abort()
        with pytest.raises(ripple.ConnectionClosedError):
            await within(pending)
    finally:
        peer.writer.transport.abort()


async def test_compression_deflate_offer_from_peer_doesnt_break_handshake(
    servers: Servers,
) -> None:
    parked = Parked()
    server, _ = await servers.start(parked, compression="deflate")
    async with raw_connection(server_port(server)) as peer:
        status, headers, _ = await peer.handshake(
            extra="Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        )
        assert status == 101
        conn = await parked.next()
        # Whatever was negotiated, plain frames flow both ways.
        if "sec-websocket-extensions" not in headers:
            peer.send_frame(0x1, b"uncompressed")
            assert await within(conn.recv()) == "uncompressed"
            await conn.send("back")
            assert await peer.recv_frame() == (True, 0x1, b"back")
        else:  # pragma: no cover - once permessage-deflate exists
            assert headers["sec-websocket-extensions"].startswith("permessage-deflate")


# -- extensions -----------------------------------------------------------------


class Reverse(Extension):
    """A toy extension: data frames travel reversed, flagged with RSV1."""

    name = "x-reverse"

    def encode(self, frame: Frame) -> Frame:
        if frame.opcode in (0x1, 0x2) and frame.fin:
            return Frame(frame.opcode, frame.data[::-1], frame.fin, frame.rsv | 0x40)
        return frame

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        if frame.rsv & 0x40:
            return Frame(frame.opcode, frame.data[::-1], frame.fin, frame.rsv & ~0x40)
        return frame


class ReverseServerFactory(ServerExtensionFactory):
    name = "x-reverse"

    def __init__(self) -> None:
        self.offers: list[Any] = []

    def process_request_params(self, params: Any, accepted: Any) -> Any:
        self.offers.append(list(params))
        if ("decline", None) in params:
            raise ripple.NegotiationError("declined")
        return [("ok", None)], Reverse()


class ReverseClientFactory(ClientExtensionFactory):
    name = "x-reverse"

    def __init__(self, decline: bool = False) -> None:
        self.decline = decline
        self.answers: list[Any] = []

    def get_request_params(self) -> Any:
        return [("decline", None)] if self.decline else [("please", None)]

    def process_response_params(self, params: Any, accepted: Any) -> Extension:
        self.answers.append(list(params))
        return Reverse()


async def test_extensions_negotiated_and_applied(servers: Servers) -> None:
    parked = Parked()
    factory = ReverseServerFactory()
    # compression=None: the test extension claims RSV1, as deflate would.
    server, url = await servers.start(parked, extensions=[factory], compression=None)
    client_factory = ReverseClientFactory()
    async with ripple.connect(url, extensions=[client_factory], compression=None) as client:
        conn = await parked.next()
        assert factory.offers == [[("please", None)]]
        assert client_factory.answers == [[("ok", None)]]
        assert client.response_headers["Sec-WebSocket-Extensions"] == "x-reverse; ok"
        assert conn.protocol is not None and isinstance(conn.protocol.extensions[0], Reverse)
        await client.send("abc")
        assert await within(conn.recv()) == "abc"
        await conn.send(b"xyz")
        assert await within(client.recv()) == b"xyz"
    # On the wire, frames are reversed and carry RSV1.
    async with raw_connection(server_port(server)) as peer:
        status, headers, _ = await peer.handshake(extra="Sec-WebSocket-Extensions: x-reverse\r\n")
        assert status == 101 and headers["sec-websocket-extensions"] == "x-reverse; ok"
        conn = await parked.next()
        peer.writer.write(build_frame(0x1, b"olleh", rsv=0x40))
        assert await within(conn.recv()) == "hello"
        await conn.send("wire")
        b0, _ = await within(peer.reader.readexactly(2))
        assert b0 & 0x40  # RSV1 set by the extension
        assert await within(peer.reader.readexactly(4)) == b"eriw"


async def test_declined_extension_leaves_plain_frames(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked, extensions=[ReverseServerFactory()], compression=None)
    async with ripple.connect(
        url, extensions=[ReverseClientFactory(decline=True)], compression=None
    ) as client:
        conn = await parked.next()
        assert "Sec-WebSocket-Extensions" not in client.response_headers
        assert conn.protocol is not None and conn.protocol.extensions == []
        await client.send("plain")
        assert await within(conn.recv()) == "plain"


async def test_rsv_bit_without_extension_closes_with_1002(servers: Servers) -> None:
    parked = Parked()
    server, _ = await servers.start(parked)
    async with raw_connection(server_port(server)) as peer:
        await peer.handshake()
        await parked.next()
        peer.writer.write(build_frame(0x1, b"x", rsv=0x40))
        payload = await peer.recv_until(0x8)
        assert int.from_bytes(payload[:2], "big") == 1002


async def test_frames_pipelined_after_the_request_are_kept(servers: Servers) -> None:
    parked = Parked()
    server, _ = await servers.start(parked)
    async with raw_connection(server_port(server)) as peer:
        # Request and first frames in one write, before the 101 came back.
        peer.writer.write(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            + build_frame(0x1, b"early")
            + build_frame(0x2, b"bird")
        )
        status, headers, _ = await within(read_http_response(peer.reader))
        assert status == 101
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        conn = await parked.next()
        assert await within(conn.recv()) == "early"
        assert await within(conn.recv()) == b"bird"


_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


@pytest.mark.parametrize("split", [1, 7, len(_REQUEST) - 1])
async def test_request_in_pieces_then_early_frames(servers: Servers, split: int) -> None:
    # The request buffered across chunks, the frames after it kept.
    parked = Parked()
    server, _ = await servers.start(parked)
    async with raw_connection(server_port(server)) as peer:
        data = _REQUEST + build_frame(0x1, b"early")
        for i in range(0, len(data), split):
            peer.writer.write(data[i : i + split])
            await peer.writer.drain()
            await asyncio.sleep(0.001)
        status, headers, _ = await within(read_http_response(peer.reader))
        assert status == 101
        assert headers["sec-websocket-accept"] == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        conn = await parked.next()
        assert await within(conn.recv()) == "early"


async def test_the_101_bytes(servers: Servers) -> None:
    # The common handshake's whole answer, field by field and in order.
    parked = Parked()
    server, _ = await servers.start(parked, compression=None)
    async with raw_connection(server_port(server)) as peer:
        peer.writer.write(_REQUEST)
        head = await within(peer.reader.readuntil(b"\r\n\r\n"))
        assert head == (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"
            b"Server: ripple\r\n\r\n"
        )
        conn = await parked.next()
        assert conn.request is not None and conn.request.path == "/"
        assert conn.request_headers["Sec-WebSocket-Version"] == "13"
        assert conn.response_headers["Server"] == "ripple"


@pytest.mark.parametrize("split", [None, 5])
async def test_malformed_request_in_one_chunk_or_pieces_gets_400(
    servers: Servers, split: int | None
) -> None:
    server, _ = await servers.start(echo)
    async with raw_connection(server_port(server)) as peer:
        data = b"GET / HTTP/1.1\r\nBad Header: x\r\n\r\n"
        for i in range(0, len(data), split or len(data)):
            peer.writer.write(data[i : i + (split or len(data))])
            await asyncio.sleep(0.001)
        status, _, body = await within(read_http_response(peer.reader))
        assert status == 400
        assert b"invalid HTTP header name" in body


@pytest.mark.parametrize("custom", [False, True])
async def test_connections_log_to_the_server_logger(servers: Servers, custom: bool) -> None:
    logger = logging.getLogger("test.custom") if custom else None
    parked = Parked()
    server, url = await servers.start(parked, logger=logger)
    async with ripple.connect(url):
        conn = await parked.next()
        assert conn.logger is server.logger
        assert conn.logger is (logger or logging.getLogger("ripple.server"))


async def test_close_during_an_opening_handshake() -> None:
    async def slow_process_request(conn: ripple.ServerConnection, request: Any) -> None:
        await asyncio.sleep(0.3)

    server = await within(ripple.serve(echo, "127.0.0.1", 0, process_request=slow_process_request))
    connecting = asyncio.ensure_future(ripple.connect(ws_url(server)))
    await eventually(lambda: bool(server._transports))
    server.close()
    server.close()  # idempotent
    await within(server.wait_closed())
    # The handshake finished, then the connection was closed with 1001.
    client = await within(connecting)
    with pytest.raises(ripple.ConnectionClosedOK) as info:
        await within(client.recv())
    assert info.value.code == 1001


# -- process_response -----------------------------------------------------------


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_process_response_alters_the_101(servers: Servers, asynchronous: bool) -> None:
    calls: list[tuple[Any, Any, int]] = []

    def sync_hook(
        conn: ripple.ServerConnection, request: ripple.Request, response: ripple.Response
    ) -> None:
        calls.append((conn, request, response.status_code))
        response.headers["X-Handshake"] = request.path
        del response.headers["Server"]

    async def async_hook(
        conn: ripple.ServerConnection, request: ripple.Request, response: ripple.Response
    ) -> None:
        await asyncio.sleep(0)
        sync_hook(conn, request, response)

    parked = Parked()
    _, url = await servers.start(
        parked,
        process_response=async_hook if asynchronous else sync_hook,
        subprotocols=["chat"],
    )
    async with ripple.connect(url + "feed", subprotocols=["chat"]) as client:
        conn = await parked.next()
        assert client.response_headers["X-Handshake"] == "/feed"
        assert "Server" not in client.response_headers
        assert client.subprotocol == conn.subprotocol == "chat"
        assert conn.response is not None and conn.response.headers["X-Handshake"] == "/feed"
        await client.send("works")
        assert await within(conn.recv()) == "works"
    ((hook_conn, hook_request, status),) = calls
    assert hook_conn is conn and hook_request is conn.request and status == 101


async def test_process_response_replacement_refuses_the_upgrade(servers: Servers) -> None:
    ran: list[ripple.ServerConnection] = []

    async def handler(ws: ripple.ServerConnection) -> None:
        ran.append(ws)

    async def process_response(
        conn: ripple.ServerConnection, request: ripple.Request, response: ripple.Response
    ) -> ripple.Response | None:
        if request.path == "/closed":
            return ripple.Response(410, "Gone", b"this feed is gone")
        return None

    server, url = await servers.start(
        handler, process_response=process_response, max_connections=1
    )
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(url + "closed"))
    response = info.value.response
    assert (response.status_code, response.body) == (410, b"this feed is gone")
    assert response.headers["Content-Length"] == "17"  # framed for the client
    assert ran == []
    # The refused handshake gave back its max_connections slot.
    assert server._reserved == 0
    async with ripple.connect(url):
        pass
    assert len(ran) == 1


async def test_process_response_sees_refusals_and_process_request_answers(
    servers: Servers,
) -> None:
    seen: list[int] = []

    def process_request(
        conn: ripple.ServerConnection, request: ripple.Request
    ) -> ripple.Response | None:
        return conn.respond(200, "healthy") if request.path == "/health" else None

    def process_response(
        conn: ripple.ServerConnection, request: ripple.Request, response: ripple.Response
    ) -> None:
        seen.append(response.status_code)
        response.headers["X-Seen"] = "1"

    server, url = await servers.start(
        echo, process_request=process_request, process_response=process_response
    )
    health = await within(_refusal(url + "health"))
    assert (health.status_code, health.body, health.headers["X-Seen"]) == (200, b"healthy", "1")
    status, headers, _ = await raw_request(
        server_port(server), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    assert status == 426 and headers["x-seen"] == "1"
    # Not called for a request that couldn't be parsed.
    status, headers, _ = await raw_request(server_port(server), b"NONSENSE\r\n\r\n")
    assert status == 400 and "x-seen" not in headers
    assert seen == [200, 426]


async def _refusal(url: str, **kwargs: Any) -> ripple.Response:
    with pytest.raises(ripple.InvalidStatus) as info:
        await ripple.connect(url, **kwargs)
    return info.value.response


@pytest.mark.parametrize(
    ("hook", "message"),
    [
        (lambda c, q, r: "not a response", "process_response must return a Response or None"),
        (
            lambda c, q, r: r.headers.__setitem__("Sec-WebSocket-Protocol", "x"),
            "process_response changed a handshake header",
        ),
        (
            lambda c, q, r: ripple.Response(101, "Switching Protocols"),
            "process_response changed a handshake header",
        ),
        (
            lambda c, q, r: (_ for _ in ()).throw(RuntimeError("hook bug")),
            "hook bug",
        ),
    ],
)
async def test_process_response_errors_give_500_and_are_logged(
    servers: Servers, caplog: pytest.LogCaptureFixture, hook: Any, message: str
) -> None:
    caplog.set_level(logging.ERROR, logger="ripple.server")
    server, url = await servers.start(echo, process_response=hook, max_connections=1)
    response = await within(_refusal(url))
    assert response.status_code == 500
    assert "opening handshake failed" in caplog.text
    assert message in caplog.text
    assert server._reserved == 0 and not server.connections


async def test_process_response_cant_accept_a_refused_request(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ripple.server")

    def hook(
        conn: ripple.ServerConnection, request: ripple.Request, response: ripple.Response
    ) -> ripple.Response:
        return ripple.Response(101, "Switching Protocols", response.headers)

    server, _ = await servers.start(echo, process_response=hook)
    status, _, _ = await raw_request(
        server_port(server), b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    assert status == 500
    assert "process_response returned a 101 for a request that isn't being upgraded" in (
        caplog.text
    )


async def test_process_request_returning_a_101_is_a_500(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ripple.server")
    _, url = await servers.start(
        echo, process_request=lambda c, r: ripple.Response(101, "Switching Protocols")
    )
    assert (await within(_refusal(url))).status_code == 500
    assert "return None to go on with the handshake" in caplog.text


@pytest.mark.parametrize("name", ["process_request", "process_response", "select_subprotocol"])
def test_hooks_that_arent_callable_raise_at_serve(name: str) -> None:
    with pytest.raises(TypeError, match=f"{name} must be a function or None"):
        ripple.serve(echo, "127.0.0.1", 0, **{name: "oops"})


async def test_async_select_subprotocol_is_a_clear_500(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ripple.server")

    async def select(conn: ripple.ServerConnection, offered: Any) -> str:
        return "chat"

    _, url = await servers.start(echo, select_subprotocol=select)
    assert (await within(_refusal(url, subprotocols=["chat"]))).status_code == 500
    assert "select_subprotocol must be a plain function, not async" in caplog.text


async def test_no_acceptable_subprotocol_proceeds_without_the_header(servers: Servers) -> None:
    # RFC 6455 §4.2.2: the server may go on without choosing a subprotocol;
    # then the 101 has no Sec-WebSocket-Protocol header.
    server, _ = await servers.start(echo, subprotocols=["chat.v2"])
    for offer in ("", "Sec-WebSocket-Protocol: chat.v1, other\r\n"):
        async with raw_connection(server_port(server)) as peer:
            status, headers, _ = await peer.handshake(extra=offer)
            assert status == 101
            assert "sec-websocket-protocol" not in headers


# -- origins ------------------------------------------------------------------------


async def test_origins_allowlist(servers: Servers) -> None:
    parked = Parked()
    _, url = await servers.start(parked, origins=["https://Example.com", "http://localhost:8000"])
    for origin in ("https://example.com", "HTTPS://EXAMPLE.COM", "http://localhost:8000"):
        async with ripple.connect(url, origin=origin):
            assert (await parked.next()).request_headers["Origin"] == origin
    for origin, body in [
        ("https://evil.example", b"Origin https://evil.example isn't allowed\n"),
        ("https://example.com:8443", b"Origin https://example.com:8443 isn't allowed\n"),
        ("http://example.com", b"Origin http://example.com isn't allowed\n"),
        ("null", b"Origin null isn't allowed\n"),
    ]:
        response = await within(_refusal(url, origin=origin))
        assert (response.status_code, response.body) == (403, body)
        assert response.headers["Server"] == "ripple"
    # No Origin header: refused unless None is in the list.
    response = await within(_refusal(url))
    assert response.status_code == 403
    assert response.body == b"missing Origin header; this endpoint requires one\n"


async def test_origins_with_none_admits_clients_without_origin(servers: Servers) -> None:
    parked = Parked()
    server, url = await servers.start(parked, origins=[None, "null"])
    async with ripple.connect(url):
        assert "Origin" not in (await parked.next()).request_headers
    async with ripple.connect(url, origin="null"):
        await parked.next()
    assert (await within(_refusal(url, origin="https://example.com"))).status_code == 403
    # Two Origin headers: 400 naming the header.
    async with raw_connection(server_port(server)) as peer:
        status, _, body = await peer.handshake(extra="Origin: null\r\nOrigin: null\r\n")
    assert status == 400 and b"Origin" in body


async def test_origins_leave_plain_http_and_process_request_alone(servers: Servers) -> None:
    def process_request(
        conn: ripple.ServerConnection, request: ripple.Request
    ) -> ripple.Response | None:
        return conn.respond(200, "page") if request.path == "/page" else None

    server, _ = await servers.start(
        echo, origins=["https://example.com"], process_request=process_request
    )
    # A probe without Upgrade still learns it must upgrade.
    status, _, _ = await raw_request(
        server_port(server), b"GET / HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n"
    )
    assert status == 426
    status, _, body = await raw_request(
        server_port(server),
        b"GET /page HTTP/1.1\r\nHost: x\r\nOrigin: https://evil.example\r\n\r\n",
    )
    assert (status, body) == (200, b"page")


@pytest.mark.parametrize(
    ("origins", "error", "match"),
    [
        ("https://example.com", TypeError, "not a str"),
        ([42], TypeError, "str or None"),
        (["https://example.com/"], ValueError, "without a path"),
        (["example.com"], ValueError, "scheme://host"),
        (["*"], ValueError, "isn't an origin"),
        (["https://example.com/app"], ValueError, "without a path"),
    ],
)
def test_bad_origins_raise_at_serve(origins: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        ripple.serve(echo, "127.0.0.1", 0, origins=origins)


# -- admission control --------------------------------------------------------------


async def test_max_connections_refuses_with_503_and_retry_after(servers: Servers) -> None:
    parked = Parked()
    server, url = await servers.start(
        parked, max_connections=2, extra_headers={"X-Extra": "on refusals too"}
    )
    first = await within(ripple.connect(url))
    second = await within(ripple.connect(url))
    first_conn, second_conn = await parked.next(), await parked.next()
    response = await within(_refusal(url))
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    assert response.headers["X-Extra"] == "on refusals too"
    assert b"too many connections" in response.body
    # The established connections didn't notice.
    for client, conn in ((first, first_conn), (second, second_conn)):
        await client.send("still here")
        assert await within(conn.recv()) == "still here"
        await conn.send("yes")
        assert await within(client.recv()) == "yes"
    # A slot frees when a connection closes.
    await within(first.close())
    await eventually(lambda: len(server.connections) == 1)
    third = await within(ripple.connect(url))
    await parked.next()
    assert len(server.connections) == 2
    for client in (second, third):
        await within(client.close())


async def test_max_connections_counts_handshakes_in_progress(servers: Servers) -> None:
    release = asyncio.Event()
    entered: list[int] = []

    async def process_response(
        conn: ripple.ServerConnection, request: ripple.Request, response: ripple.Response
    ) -> None:
        if response.status_code == 101:
            entered.append(1)
            await release.wait()

    parked = Parked()
    server, url = await servers.start(parked, max_connections=3, process_response=process_response)
    attempts = [asyncio.ensure_future(ripple.connect(url)) for _ in range(8)]
    # Three handshakes hold the slots; the five others are refused meanwhile.
    await eventually(lambda: len(entered) == 3 and sum(a.done() for a in attempts) == 5)
    release.set()
    results = await within(asyncio.gather(*attempts, return_exceptions=True))
    clients = [r for r in results if isinstance(r, ripple.ClientConnection)]
    refusals = [r for r in results if isinstance(r, ripple.InvalidStatus)]
    assert len(clients) == 3 and len(refusals) == 5
    assert {r.response.status_code for r in refusals} == {503}
    assert len(server.connections) == 3 and server._reserved == 0
    for client in clients:
        await within(client.close())


async def test_max_connections_leaves_plain_http_answers_alone(servers: Servers) -> None:
    parked = Parked()
    server, url = await servers.start(
        parked,
        max_connections=1,
        process_request=lambda c, r: c.respond(200, "ok") if r.path == "/health" else None,
    )
    async with ripple.connect(url):
        await parked.next()
        status, _, _ = await raw_request(
            server_port(server), b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert status == 200
        status, _, _ = await raw_request(server_port(server), b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 426


@pytest.mark.parametrize("value", [0, -1, True, 2.5, "3"])
def test_bad_max_connections_raise_at_serve(value: Any) -> None:
    with pytest.raises(ValueError, match="max_connections must be an int >= 1 or None"):
        ripple.serve(echo, "127.0.0.1", 0, max_connections=value)


# -- probes and hostile clients -------------------------------------------------------


async def test_plain_http_probe_is_logged_at_debug_only(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server, _ = await servers.start(echo)
    status, _, body = await raw_request(
        server_port(server), b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    )
    assert status == 426
    assert body == b"this is a WebSocket endpoint: send Upgrade: websocket\n"
    # A TCP-level probe that connects and leaves says nothing at all.
    async with raw_connection(server_port(server)):
        pass
    await eventually(lambda: not server._transports)
    ripple_records = [r for r in caplog.records if r.name.startswith("ripple")]
    assert any("no Upgrade header" in r.getMessage() for r in ripple_records)
    assert all(r.levelno == logging.DEBUG for r in ripple_records)


async def test_many_half_sent_requests_dont_delay_a_real_client(servers: Servers) -> None:
    hostile_count = 1000
    # Each hostile client takes two descriptors here (both ends are local).
    needed = 2 * hostile_count + 256
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.fail(f"RLIMIT_NOFILE hard limit {hard} < {needed}: raise it to run this test")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))
    loop = asyncio.get_running_loop()
    server, url = await servers.start(echo, open_timeout=60)
    port = server_port(server)
    lost: list[BaseException | None] = []

    class Hostile(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            assert isinstance(transport, asyncio.Transport)
            transport.write(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs")

        def connection_lost(self, exc: BaseException | None) -> None:
            lost.append(exc)

    hostiles: list[asyncio.BaseTransport] = []
    try:
        for _ in range(hostile_count // 100):  # batches stay under the listen backlog
            batch = await within(
                asyncio.gather(
                    *(loop.create_connection(Hostile, "127.0.0.1", port) for _ in range(100))
                ),
                20,
            )
            hostiles += [transport for transport, _ in batch]
        await eventually(lambda: len(server._transports) >= hostile_count, 20)
        async with bounded(BOUND), ripple.connect(url) as client:
            await client.send("through the crowd")
            assert await client.recv() == "through the crowd"
        assert lost == []  # every hostile client is still held open
        assert len(server._transports) >= hostile_count
    finally:
        for transport in hostiles:
            transport.abort()
    await eventually(lambda: not server._transports, 20)
    assert len(lost) == hostile_count
