"""A real browser against ripple: headless Chromium, driven by Playwright.

A ripple server on 127.0.0.1 serves tests/e2e/browser/page.html at ``/``
(through ``process_request``) and echoes on ``/ws``. The page's script opens a
WebSocket, sends text and binary messages (1 MiB ones included), checks the
echoes, closes with code 4000, and leaves its results in ``window.results``.
The WebSocket goes through a relay (tests/interop/wire.py) that records the
frames, so the test sees the compression on the wire, not only the headers.

Browsers offer ``permessage-deflate; client_max_window_bits``; the test runs
once with ripple accepting it (the default) and once with compression=None.

Needs Playwright for Python and Debian's chromium (/usr/bin/chromium; Playwright
can't download its own browsers here). Locally a missing one skips the tests;
under CI=true it fails them. A screenshot of the page goes to test-artifacts/.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import ripple
from aio_helpers import bounded
from interop.wire import Relay, WireMessage
from ripple.protocol.deflate import PerMessageDeflate

ROOT = Path(__file__).resolve().parents[2]
PAGE = (Path(__file__).resolve().parent / "browser" / "page.html").read_bytes()
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

MIB = 2**20
CLOSE_CODE = 4000
CLOSE_REASON = "bye from the browser"
#: Bound, in seconds, on the page's whole run.
PAGE_TIMEOUT = 30.0


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_browser() -> Path:
    """Chromium's path, once Playwright imports; skip locally, fail under CI=true, if not."""
    missing = []
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        missing.append("playwright is not installed (pip install -e '.[test]')")
    chromium = CHROMIUM if CHROMIUM.is_file() else None
    if chromium is None and (found := shutil.which("chromium")) is not None:
        chromium = Path(found)
    if chromium is None:
        missing.append(f"{CHROMIUM} is missing (apt-get install chromium)")
    if missing:
        reason = "; ".join(missing)
        if in_ci():
            pytest.fail(f"{reason} (CI=true, so this is an error, not a skip)", pytrace=False)
        pytest.skip(reason)
    assert chromium is not None
    return chromium


# What the page sends; keep in step with page.html.


def compressible_text() -> str:
    parts: list[str] = []
    size = i = 0
    while size < MIB:
        parts.append(f"line {i % 64}: ripple says hello\n")
        size += len(parts[-1])
        i += 1
    return "".join(parts)[:MIB]


def random_bytes(n: int) -> bytes:
    # xorshift32, four bytes per step, little-endian, as in page.html.
    out = bytearray()
    x = 2463534242
    mask = 0xFFFFFFFF
    for _ in range(0, n, 4):
        x ^= (x << 13) & mask
        x ^= x >> 17
        x ^= (x << 5) & mask
        out += x.to_bytes(4, "little")
    return bytes(out[:n])


def page_messages() -> list[str | bytes]:
    single: list[str | bytes] = [
        "Hello from the browser! ¿ünïcödé? ☃ 🌊",
        bytes(range(256)),
        "",
        b"",
        compressible_text(),
        random_bytes(MIB),
    ]
    # JSON.stringify: no spaces.
    burst = [
        f"message {i}: "
        + json.dumps({"user": "page", "seq": i, "text": "ripple " * 20}, separators=(",", ":"))
        for i in range(100)
    ]
    return [*single, *burst]


def summary(message: str | bytes) -> tuple[str, int, str]:
    data = message.encode() if isinstance(message, str) else message
    return type(message).__name__, len(data), hashlib.sha256(data).hexdigest()[:16]


# The server.


@dataclass
class Seen:
    """What ripple's handler saw of one connection."""

    offered: str | None
    accepted: str | None
    deflate: PerMessageDeflate | None
    messages: list[tuple[str, int, str]] = field(default_factory=list)
    ping_rtt: float | None = None
    close_code: int | None = None
    close_reason: str | None = None


@dataclass
class EchoServer:
    server: Any
    port: int
    relay: Relay
    sessions: list[Seen]
    done: asyncio.Event

    def page_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/?ws=ws://127.0.0.1:{self.relay.port}/ws"


def process_request(connection: ripple.ServerConnection, request: Any) -> ripple.Response | None:
    path = request.path.partition("?")[0]
    if path == "/ws":
        return None  # the WebSocket handshake
    if path == "/" and request.method == "GET" and "Upgrade" not in request.headers:
        headers = {
            "Content-Type": "text/html; charset=utf-8",
            "Content-Length": str(len(PAGE)),
            "Cache-Control": "no-store",
            "Connection": "close",
        }
        return ripple.Response(200, "OK", headers, PAGE)
    return connection.respond(404, "not found")


@pytest.fixture
async def echo_server(compression: str | None) -> AsyncIterator[EchoServer]:
    sessions: list[Seen] = []
    done = asyncio.Event()

    async def echo(ws: ripple.ServerConnection) -> None:
        assert ws.protocol is not None
        deflates = [e for e in ws.protocol.extensions if isinstance(e, PerMessageDeflate)]
        seen = Seen(
            offered=ws.request_headers.get("Sec-WebSocket-Extensions"),
            accepted=ws.response_headers.get("Sec-WebSocket-Extensions"),
            deflate=deflates[0] if deflates else None,
        )
        sessions.append(seen)
        try:
            # Browsers answer pings by themselves.
            seen.ping_rtt = await asyncio.wait_for(await ws.ping(b"ripple"), 5)
            async for message in ws:
                seen.messages.append(summary(message))
                await ws.send(message)
        except ripple.ConnectionClosed:
            pass
        finally:
            await ws.wait_closed()
            seen.close_code = ws.close_code
            seen.close_reason = ws.close_reason
            done.set()

    server = await ripple.serve(
        echo,
        "127.0.0.1",
        0,
        process_request=process_request,
        compression=compression,
        max_size=2 * MIB,
    )
    port = next(iter(server.sockets)).getsockname()[1]
    relay = Relay(port)
    await relay.start()
    try:
        yield EchoServer(server, port, relay, sessions, done)
    finally:
        async with bounded(10):
            await relay.stop()
            server.close()
            await server.wait_closed()


async def run_page(browser: Any, url: str, screenshot: Path) -> dict[str, Any]:
    """Open the page, wait for window.results, save a screenshot; the results."""
    page = await browser.new_page()
    problems: list[str] = []

    def on_console(msg: Any) -> None:
        if msg.type in ("error", "warning"):
            problems.append(f"console {msg.type}: {msg.text}")

    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", on_console)
    try:
        await page.goto(url)
        try:
            await page.wait_for_function(
                "() => window.results !== undefined", timeout=PAGE_TIMEOUT * 1000
            )
        finally:
            screenshot.parent.mkdir(exist_ok=True)
            await page.screenshot(path=str(screenshot), full_page=True)
        results: dict[str, Any] = await page.evaluate("window.results")
    finally:
        await page.close()
    results["problems"] = problems
    return results


def parse_extensions(header: str | None) -> list[tuple[str, dict[str, str | None]]]:
    extensions: list[tuple[str, dict[str, str | None]]] = []
    for item in (header or "").split(","):
        if item.strip():
            name, *params = (part.strip() for part in item.split(";"))
            values = {}
            for param in params:
                key, eq, value = param.partition("=")
                values[key.strip()] = value.strip() if eq else None
            extensions.append((name, values))
    return extensions


@pytest.mark.parametrize("compression", ["deflate", None], ids=["deflate", "plain"])
async def test_browser_echo(
    browser: Any, echo_server: EchoServer, compression: str | None, request: pytest.FixtureRequest
) -> None:
    mode = compression or "plain"
    screenshot = ARTIFACTS / f"browser-{mode}.png"
    async with bounded(PAGE_TIMEOUT + 15):
        results = await run_page(browser, echo_server.page_url(), screenshot)
        await echo_server.done.wait()

    # The page: every echo matched, and the closing handshake completed.
    failed = [c for c in results["checks"] if not c["ok"]]
    assert results["ok"], (failed, results["error"], results["problems"])
    # ripple's reply echoes the code (RFC 6455 §5.5.1), not necessarily the reason.
    assert results["closeCode"] == CLOSE_CODE
    assert results["wasClean"]

    # The server: one connection, every message as sent, the close frame's code.
    (seen,) = echo_server.sessions
    assert seen.messages == [summary(m) for m in page_messages()]
    assert seen.close_code == CLOSE_CODE
    assert seen.close_reason == CLOSE_REASON
    assert seen.ping_rtt is not None

    # The browser offers permessage-deflate with client_max_window_bits
    # whatever the server does.
    offer = parse_extensions(seen.offered)
    assert [name for name, _ in offer] == ["permessage-deflate"], seen.offered
    assert "client_max_window_bits" in offer[0][1], seen.offered
    request.node.user_properties.append(("offered", seen.offered))
    request.node.user_properties.append(("accepted", seen.accepted))
    print(f"\n{results['userAgent']}\n  offered: {seen.offered}\n  accepted: {seen.accepted}")

    # What the page reads in WebSocket.extensions is the server's answer.
    assert results["extensions"] == (seen.accepted or "")

    sent = echo_server.relay.upstream.messages()  # browser -> ripple
    echoed = echo_server.relay.downstream.messages()  # ripple -> browser
    assert len(sent) == len(echoed) == len(page_messages())
    if compression is None:
        assert seen.accepted is None
        assert seen.deflate is None
        assert not any(m.compressed for m in [*sent, *echoed])
        return

    print(
        f"  browser -> ripple: {sum(m.compressed for m in sent)} of {len(sent)} messages "
        f"compressed; 1 MiB text in {sent[4].length} bytes, 1 MiB random in "
        f"{sent[5].length} ({'compressed' if sent[5].compressed else 'uncompressed'})"
    )
    ((name, params),) = parse_extensions(seen.accepted)
    assert name == "permessage-deflate"
    assert seen.deflate is not None
    # Windows as ripple answered (15 when left out): the browser's offer of
    # client_max_window_bits lets ripple pick the browser's window.
    assert seen.deflate.remote_max_window_bits == int(params.get("client_max_window_bits") or 15)
    assert seen.deflate.local_max_window_bits == int(params.get("server_max_window_bits") or 15)

    # ripple compresses every message; the 1 MiB text to a few KiB.
    assert all(m.compressed for m in echoed), echoed[:6]
    check_sizes(echoed, "ripple", reset=seen.deflate.local_no_context_takeover)
    # The browser compresses at least what compresses well.
    check_sizes(sent, "browser", reset=seen.deflate.remote_no_context_takeover)


def check_sizes(messages: list[WireMessage], sender: str, *, reset: bool) -> None:
    text_1mib, random_1mib = messages[4], messages[5]
    assert text_1mib.compressed, (sender, text_1mib)
    assert text_1mib.length < MIB // 20, (sender, text_1mib)
    assert MIB <= random_1mib.length < MIB + MIB // 100, (sender, random_1mib)
    burst = messages[6:]
    assert all(m.compressed for m in burst), (sender, burst[:3])
    sizes = [m.length for m in burst]
    if reset:
        # No context takeover: alike messages compress alike, each on its own.
        assert max(sizes) - min(sizes) < 8, (sender, sizes)
    else:
        # Context takeover: each compresses against the ones before.
        assert max(sizes[1:]) < sizes[0] // 2, (sender, sizes)


def test_missing_browser_fails_under_ci(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CI", "true")
    monkeypatch.setattr(__name__ + ".CHROMIUM", tmp_path / "chromium")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(pytest.fail.Exception, match="apt-get install chromium"):
        require_browser()


def test_missing_browser_skips_locally(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(__name__ + ".CHROMIUM", tmp_path / "chromium")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        require_browser()
