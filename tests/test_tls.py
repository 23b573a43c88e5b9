"""TLS: wss:// with serve, unix_serve and connect, on a throwaway CA made at test time."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator

import pytest
import trustme

import ripple
from aio_helpers import Parked, Servers, echo, raw_connection, server_port, within

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_cert(ca: trustme.CA) -> trustme.LeafCert:
    return ca.issue_cert("localhost", "127.0.0.1")


@pytest.fixture
def sni_names() -> list[str | None]:
    return []


@pytest.fixture
def server_ctx(server_cert: trustme.LeafCert, sni_names: list[str | None]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_cert.configure_cert(ctx)

    def record_sni(sslobj: ssl.SSLObject, name: str | None, context: ssl.SSLContext) -> None:
        sni_names.append(name)

    ctx.sni_callback = record_sni  # type: ignore[assignment]
    return ctx


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def localhost_only_ctx(ca: trustme.CA) -> Iterator[ssl.SSLContext]:
    """A server context whose certificate names only "localhost"."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    yield ctx


def wss_url(server: ripple.Server, host: str = "127.0.0.1") -> str:
    return f"wss://{host}:{server_port(server)}/"


async def test_wss_echo(
    servers: Servers, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    parked = Parked()
    server, _ = await servers.start(parked, ssl=server_ctx)
    async with ripple.connect(wss_url(server), ssl=client_ctx) as client:
        conn = await parked.next()
        assert client.transport is not None and conn.transport is not None
        assert client.transport.get_extra_info("ssl_object") is not None
        assert conn.transport.get_extra_info("ssl_object") is not None
        peercert = client.transport.get_extra_info("peercert")
        assert ("IP Address", "127.0.0.1") in peercert["subjectAltName"]
        await client.send("over TLS")
        assert await within(conn.recv()) == "over TLS"
        await conn.send(b"\x00binary")
        assert await within(client.recv()) == b"\x00binary"


async def test_sni_is_the_uri_host_by_default(
    servers: Servers,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    sni_names: list[str | None],
) -> None:
    server, _ = await servers.start(echo, ssl=server_ctx)
    # "localhost" may resolve to ::1 first: the connection falls back to 127.0.0.1.
    async with ripple.connect(wss_url(server, "localhost"), ssl=client_ctx) as client:
        await client.send("sni")
        assert await within(client.recv()) == "sni"
    assert sni_names == ["localhost"]
    # An IP address isn't sent as SNI (RFC 6066 §3); it is still verified.
    async with ripple.connect(wss_url(server), ssl=client_ctx):
        pass
    assert sni_names == ["localhost", None]


async def test_wrong_hostname_fails_with_a_clear_ssl_error(
    servers: Servers, localhost_only_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    server, _ = await servers.start(echo, ssl=localhost_only_ctx)
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await within(ripple.connect(wss_url(server), ssl=client_ctx))
    assert "mismatch, certificate is not valid for '127.0.0.1'" in info.value.verify_message
    assert isinstance(info.value, OSError)


async def test_server_hostname_overrides_the_uri_host(
    servers: Servers,
    localhost_only_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
) -> None:
    server, _ = await servers.start(echo, ssl=localhost_only_ctx)
    async with ripple.connect(
        wss_url(server), ssl=client_ctx, server_hostname="localhost"
    ) as client:
        assert client.request_headers["Host"] == f"127.0.0.1:{server_port(server)}"
        await client.send("renamed")
        assert await within(client.recv()) == "renamed"
    with pytest.raises(ssl.SSLCertVerificationError) as info:
        await within(
            ripple.connect(wss_url(server), ssl=client_ctx, server_hostname="other.example")
        )
    assert "other.example" in info.value.verify_message


async def test_default_context_verifies_the_certificate(
    servers: Servers, server_ctx: ssl.SSLContext
) -> None:
    opening = ripple.connect("wss://example.test/")
    default = opening.kwargs["ssl"]
    assert isinstance(default, ssl.SSLContext)
    assert default.check_hostname and default.verify_mode is ssl.CERT_REQUIRED
    # Our throwaway CA isn't in the system's store.
    server, _ = await servers.start(echo, ssl=server_ctx)
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await within(ripple.connect(wss_url(server)))


async def test_unix_serve_with_tls(
    servers: Servers,
    sock_path: str,
    localhost_only_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    sni_names: list[str | None],
) -> None:
    await servers.start_unix(echo, sock_path, ssl=localhost_only_ctx)
    # unix_connect with ssl= means wss://localhost/: SNI and the check use "localhost".
    async with ripple.unix_connect(sock_path, ssl=client_ctx) as client:
        assert client.transport is not None
        assert client.transport.get_extra_info("ssl_object") is not None
        await client.send("unix + TLS")
        assert await within(client.recv()) == "unix + TLS"
    with pytest.raises(ssl.SSLCertVerificationError):
        await within(ripple.unix_connect(sock_path, uri="wss://elsewhere.test/", ssl=client_ctx))


async def test_connect_over_a_socket_checks_the_uri_host(
    servers: Servers, localhost_only_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    server, _ = await servers.start(echo, ssl=localhost_only_ctx)
    sock = socket.create_connection(("127.0.0.1", server_port(server)))
    async with ripple.connect("wss://localhost/", sock=sock, ssl=client_ctx) as client:
        await client.send("via sock")
        assert await within(client.recv()) == "via sock"


async def test_basic_auth_over_wss(
    servers: Servers, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    @ripple.basic_auth("admin", "secret")
    async def handler(ws: ripple.ServerConnection) -> None:
        await ws.send(f"hi {ws.username}")

    server, _ = await servers.start(handler, ssl=server_ctx)
    url = f"wss://admin:secret@127.0.0.1:{server_port(server)}/"
    async with ripple.connect(url, ssl=client_ctx) as client:
        assert await within(client.recv()) == "hi admin"
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(wss_url(server), ssl=client_ctx))
    assert info.value.response.status_code == 401


async def test_a_stalled_tls_handshake_is_bounded_by_open_timeout(
    servers: Servers, server_ctx: ssl.SSLContext
) -> None:
    server, _ = await servers.start(echo, ssl=server_ctx, open_timeout=0.3)
    async with raw_connection(server_port(server)) as peer:
        # No ClientHello: asyncio's default would wait 60 s.
        assert await peer.read_eof(seconds=5) == b""


async def test_plain_client_against_a_tls_server_fails_cleanly(
    servers: Servers, server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext
) -> None:
    server, _ = await servers.start(echo, ssl=server_ctx)
    with pytest.raises(ripple.InvalidMessage):
        await within(ripple.connect(f"ws://127.0.0.1:{server_port(server)}/"))
    # The server carries on.
    async with ripple.connect(wss_url(server), ssl=client_ctx) as client:
        await client.send("still fine")
        assert await within(client.recv()) == "still fine"


def test_ssl_argument_errors(client_ctx: ssl.SSLContext) -> None:
    with pytest.raises(TypeError, match=r"ssl must be an ssl\.SSLContext"):
        ripple.serve(echo, "127.0.0.1", 0, ssl=True)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="a wss:// URI needs TLS"):
        ripple.connect("wss://localhost/", ssl=None)
    with pytest.raises(ValueError, match="ssl= requires a wss:// URI"):
        ripple.connect("ws://localhost/", ssl=client_ctx)


async def test_tls_handshake_timeout_can_still_be_set(
    servers: Servers, server_ctx: ssl.SSLContext
) -> None:
    server, _ = await servers.start(
        echo, ssl=server_ctx, open_timeout=None, ssl_handshake_timeout=0.3
    )
    async with raw_connection(server_port(server)) as peer:
        assert await peer.read_eof(seconds=5) == b""
