"""connect(proxy=...): HTTP CONNECT tunnels, through Debian's tinyproxy and by hand.

tinyproxy is started by the test on a free loopback port with a config
written in tmp_path. Without it the tinyproxy tests are skipped locally and
fail under CI=true (.ci/run installs it).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest
import trustme

import ripple
from aio_helpers import Parked, Servers, bounded, echo, free_port, server_port, within
from ripple.client import Backoff
from ripple.proxy import ProxyError, bypass_proxy, parse_proxy, proxy_from_env

pytestmark = pytest.mark.timeout(30)

TINYPROXY = shutil.which("tinyproxy") or (
    "/usr/bin/tinyproxy" if os.path.exists("/usr/bin/tinyproxy") else None
)


def under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


class Tinyproxy:
    """One tinyproxy child process on 127.0.0.1; its log is in ``log``."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, log: Path) -> None:
        self.proc = proc
        self.port = port
        self.log = log

    def url(self, credentials: str = "") -> str:
        return f"http://{credentials + '@' if credentials else ''}127.0.0.1:{self.port}"

    def connects(self) -> int:
        """CONNECT requests the proxy has logged so far."""
        return self.log.read_text(errors="replace").count("Request (file descriptor")


StartProxy = Callable[..., Awaitable[Tinyproxy]]


@pytest.fixture
async def tinyproxy(tmp_path: Path) -> AsyncIterator[StartProxy]:
    if TINYPROXY is None:
        reason = "tinyproxy isn't installed (apt-get install tinyproxy)"
        if under_ci():
            pytest.fail(f"{reason} (CI=true, so this is an error, not a skip)", pytrace=False)
        pytest.skip(reason)
    started: list[Tinyproxy] = []

    async def start(basic_auth: tuple[str, str] | None = None) -> Tinyproxy:
        port = free_port()
        conf = tmp_path / f"tinyproxy-{port}.conf"
        log = tmp_path / f"tinyproxy-{port}.log"
        lines = [
            f"Port {port}",
            "Listen 127.0.0.1",
            "Allow 127.0.0.1",
            "Timeout 30",
            "MaxClients 20",
            "LogLevel Connect",
            # No ConnectPort line: CONNECT to any port (the targets are loopback servers).
        ]
        if basic_auth is not None:
            lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
        conf.write_text("\n".join(lines) + "\n")
        with log.open("wb") as out:
            proc = await asyncio.create_subprocess_exec(
                str(TINYPROXY), "-d", "-c", str(conf), stdout=out, stderr=out
            )
        proxy = Tinyproxy(proc, port, log)
        started.append(proxy)

        async def listening() -> None:
            while True:
                assert proc.returncode is None, log.read_text()
                try:
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                except OSError:
                    await asyncio.sleep(0.02)
                    continue
                writer.close()
                return

        await within(listening(), 10)
        return proxy

    try:
        yield start
    finally:
        for proxy in started:
            if proxy.proc.returncode is None:
                proxy.proc.terminate()
            try:
                await within(proxy.proc.wait())
            except TimeoutError:
                proxy.proc.kill()
                await proxy.proc.wait()


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(ctx)
    return ctx


@pytest.fixture
def client_ctx(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


# -- through tinyproxy --------------------------------------------------------


async def test_ws_through_the_proxy(
    servers: Servers, tinyproxy: StartProxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    proxy = await tinyproxy()
    _, url = await servers.start(echo)
    async with ripple.connect(url, proxy=proxy.url()) as ws:
        await ws.send("tunnelled")
        assert await within(ws.recv()) == "tunnelled"
    assert proxy.connects() == 1


async def test_ws_through_the_proxy_with_credentials(
    servers: Servers, tinyproxy: StartProxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    proxy = await tinyproxy(basic_auth=("user", "s3cret"))
    parked = Parked()
    _, url = await servers.start(parked)
    async with ripple.connect(url, proxy=proxy.url("user:s3cret")) as ws:
        conn = await parked.next()
        # The credentials go to the proxy in CONNECT, never to the server.
        assert "Proxy-Authorization" not in conn.request_headers
        assert "Authorization" not in conn.request_headers
        await ws.send("hi")
        assert await within(conn.recv()) == "hi"
    assert proxy.connects() == 1


async def test_wss_through_the_tunnel(
    servers: Servers,
    tinyproxy: StartProxy,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy = await tinyproxy(basic_auth=("user", "pass"))
    server, _ = await servers.start(echo, ssl=server_ctx)
    url = f"wss://127.0.0.1:{server_port(server)}/"
    async with ripple.connect(url, proxy=proxy.url("user:pass"), ssl=client_ctx) as ws:
        assert ws.transport is not None
        assert ws.transport.get_extra_info("ssl_object") is not None
        await ws.send("secret")
        assert await within(ws.recv()) == "secret"
    assert proxy.connects() == 1


async def test_wss_through_the_tunnel_still_checks_the_certificate(
    servers: Servers,
    tinyproxy: StartProxy,
    server_ctx: ssl.SSLContext,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy = await tinyproxy()
    server, _ = await servers.start(echo, ssl=server_ctx)
    url = f"wss://127.0.0.1:{server_port(server)}/"
    with pytest.raises(ssl.SSLCertVerificationError):
        await within(ripple.connect(url, proxy=proxy.url()))  # system CAs only


async def test_proxy_without_credentials_refuses_with_407(
    servers: Servers, tinyproxy: StartProxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    proxy = await tinyproxy(basic_auth=("user", "pass"))
    _, url = await servers.start(echo)
    with pytest.raises(ProxyError, match="HTTP 407") as info:
        await within(ripple.connect(url, proxy=proxy.url()))
    assert info.value.status == 407
    assert info.value.response is not None
    assert "Proxy-Authenticate" in info.value.response.headers
    assert proxy.url() in str(info.value)
    assert isinstance(info.value, ripple.InvalidHandshake)


async def test_proxy_refuses_wrong_credentials_and_async_for_gives_up(
    servers: Servers, tinyproxy: StartProxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    proxy = await tinyproxy(basic_auth=("user", "pass"))
    _, url = await servers.start(echo)
    with pytest.raises(ProxyError) as info:
        async with bounded(10):
            async for _ in ripple.connect(
                url, proxy=proxy.url("user:wrong"), backoff=Backoff(0.01)
            ):
                pytest.fail("the proxy refuses")
    # tinyproxy 1.11 answers wrong credentials with 401 (missing ones with 407).
    assert info.value.status in (401, 407)
    assert f"HTTP {info.value.status}" in str(info.value)
    assert "user:wrong" not in str(info.value)  # credentials aren't shown
    assert proxy.connects() == 1


async def test_proxy_that_cant_reach_the_target_is_retried(
    tinyproxy: StartProxy, no_proxy_env: pytest.MonkeyPatch
) -> None:
    proxy = await tinyproxy()
    with pytest.raises(ProxyError) as info:
        await within(ripple.connect(f"ws://127.0.0.1:{free_port()}/", proxy=proxy.url()), 10)
    assert info.value.status is not None and info.value.status >= 500
    assert Backoff().transient(info.value)


async def test_proxy_true_reads_the_environment(
    servers: Servers,
    tinyproxy: StartProxy,
    server_ctx: ssl.SSLContext,
    client_ctx: ssl.SSLContext,
    no_proxy_env: pytest.MonkeyPatch,
) -> None:
    proxy = await tinyproxy()
    _, url = await servers.start(echo)
    tls_server, _ = await servers.start(echo, ssl=server_ctx)
    wss_url = f"wss://127.0.0.1:{server_port(tls_server)}/"

    no_proxy_env.setenv("HTTP_PROXY", proxy.url())
    async with ripple.connect(url) as ws:  # proxy=True is the default
        await ws.send("via env")
        assert await within(ws.recv()) == "via env"
    assert proxy.connects() == 1
    # HTTP_PROXY is for ws:// only.
    async with ripple.connect(wss_url, ssl=client_ctx):
        pass
    assert proxy.connects() == 1

    no_proxy_env.setenv("https_proxy", proxy.url())
    async with ripple.connect(wss_url, ssl=client_ctx):
        pass
    assert proxy.connects() == 2

    no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
    async with ripple.connect(url), ripple.connect(wss_url, ssl=client_ctx):
        pass
    async with ripple.connect(url, proxy=None):
        pass
    assert proxy.connects() == 2


# -- by hand: what a misbehaving proxy gets -------------------------------------


async def fake_proxy(answer: bytes | None) -> tuple[asyncio.Server, str]:
    """A proxy that reads the CONNECT head, then sends `answer` (None: nothing)."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            if answer is not None:
                writer.write(answer)
                await writer.drain()
                writer.close()
            else:
                await reader.read()
        except (OSError, asyncio.IncompleteReadError):
            pass

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


@pytest.mark.parametrize(
    ("answer", "error", "match"),
    [
        (b"", ProxyError, "closed the connection"),
        (
            b"HTTP/1.1 200 OK\r\n" + b"X: " + b"y" * 20000 + b"\r\n\r\n",
            ripple.SecurityError,
            "exceeds",
        ),
        (b"SSH-2.0-OpenSSH\r\n\r\n", ProxyError, "invalid status line"),
        (b"HTTP/1.1 200 OK\r\n\r\nearly bytes", ripple.InvalidMessage, "after its 2xx"),
        (b"HTTP/1.0 403 Forbidden\r\nContent-Length: 4\r\n\r\nnope", ProxyError, "HTTP 403"),
    ],
)
async def test_bad_proxy_answers(
    answer: bytes, error: type[Exception], match: str, echo_url: str
) -> None:
    server, proxy = await fake_proxy(answer)
    try:
        with pytest.raises(error, match=match):
            await within(ripple.connect(echo_url, proxy=proxy))
    finally:
        server.close()
        await within(server.wait_closed())


async def test_a_silent_proxy_is_bounded_by_open_timeout(echo_url: str) -> None:
    server, proxy = await fake_proxy(None)
    try:
        with pytest.raises(TimeoutError, match="open_timeout"):
            await within(ripple.connect(echo_url, proxy=proxy, open_timeout=0.2))
    finally:
        server.close()
        await within(server.wait_closed())


async def test_an_unreachable_proxy_raises_os_error(echo_url: str) -> None:
    with pytest.raises(OSError):
        await within(ripple.connect(echo_url, proxy=f"http://127.0.0.1:{free_port()}"))


def test_proxy_argument_errors() -> None:
    with pytest.raises(ValueError, match="only http://"):
        ripple.connect("ws://127.0.0.1/", proxy="socks5://127.0.0.1:1080")
    with pytest.raises(ValueError, match="sock="):
        ripple.connect("ws://127.0.0.1/", proxy="http://127.0.0.1:3128", sock=object())
    with pytest.raises(TypeError, match="proxy"):
        ripple.connect("ws://127.0.0.1/", proxy=3128)  # type: ignore[arg-type]


def test_parse_proxy() -> None:
    p = parse_proxy("http://us%40er:p%3Ass@proxy.example:3128")
    assert (p.host, p.port, p.credentials) == ("proxy.example", 3128, ("us@er", "p:ss"))
    assert p.url == "http://proxy.example:3128"
    assert parse_proxy("127.0.0.1:8080").port == 8080
    assert parse_proxy("http://[::1]").url == "http://[::1]:80"


@pytest.mark.parametrize(
    ("env", "secure", "expected"),
    [
        ({}, False, None),
        ({"HTTP_PROXY": "http://p:1"}, False, "http://p:1"),
        ({"HTTP_PROXY": "http://p:1"}, True, None),
        ({"HTTPS_PROXY": "http://p:2"}, True, "http://p:2"),
        (
            {"https_proxy": "http://lower:2", "HTTPS_PROXY": "http://upper:2"},
            True,
            "http://lower:2",
        ),
        ({"http_proxy": "", "HTTP_PROXY": "http://upper:1"}, False, "http://upper:1"),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "*"}, False, None),
        ({"HTTP_PROXY": "http://p:1", "no_proxy": "other.test, api.example.com"}, False, None),
    ],
)
def test_proxy_from_env(env: dict[str, str], secure: bool, expected: str | None) -> None:
    assert proxy_from_env("api.example.com", 80, secure, env) == expected


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "bypass"),
    [
        ("example.com", 80, "example.com", True),
        ("api.example.com", 80, "example.com", True),
        ("api.example.com", 80, ".example.com", True),
        ("badexample.com", 80, "example.com", False),
        ("example.com", 80, "example.com:8080", False),
        ("example.com", 8080, "example.com:8080", True),
        ("example.com", 80, "*", True),
        ("example.com", 80, "", False),
        ("EXAMPLE.com", 80, "example.COM", True),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("10.1.2.3", 80, "10.1.2.3", True),
        ("11.1.2.3", 80, "10.0.0.0/8", False),
        ("::1", 80, "::1", True),
        ("::1", 443, "[::1]:443", True),
        ("::1", 80, "[::1]:443", False),
        ("127.0.0.1", 80, "localhost", False),
        ("example.com", 80, "foo.test example.com", True),
    ],
)
def test_no_proxy_matching(host: str, port: int, no_proxy: str, bypass: bool) -> None:
    assert bypass_proxy(host, port, no_proxy) is bypass


async def test_proxy_none_connects_directly_despite_the_environment(
    echo_url: str, no_proxy_env: pytest.MonkeyPatch
) -> None:
    no_proxy_env.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens
    async with ripple.connect(echo_url, proxy=None) as ws:
        await ws.send("direct")
        assert await within(ws.recv()) == "direct"
    with pytest.raises(OSError):
        await within(ripple.connect(echo_url))  # proxy=True: the dead proxy
