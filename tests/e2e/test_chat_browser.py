"""The chat in a real browser: two headless Chromium pages and the course's bot
against `ripple chat`, started as a subprocess on a free port.

Each page sees the other's messages and the bot's answer, in order, with names;
HTML in names and messages stays text; when the server goes away the page says
so (no alert()) and reconnects once it's back. Screenshots go to test-artifacts/.

Needs Playwright and Debian's chromium, like test_browser.py: a missing one skips
locally and fails under CI=true.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from aio_helpers import bounded
from chat.helpers import Process, start_chat_process, start_ripple

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
#: Milliseconds Playwright waits for anything on a page.
WAIT_MS = 15_000

ASK = "Ask me a question."


@pytest.fixture
async def chat() -> AsyncIterator[tuple[Process, str]]:
    proc, url = await start_chat_process()
    try:
        yield proc, url
    finally:
        await proc.kill()


class ChatPage:
    """One browser page on the chat, with what went wrong on it."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.problems: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()
        page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        page.on("console", self._console)
        page.on("dialog", self._dialog)

    def _console(self, msg: Any) -> None:
        if msg.type in ("error", "warning"):
            self.problems.append(f"console {msg.type}: {msg.text}")

    def _dialog(self, dialog: Any) -> None:
        self.problems.append(f"dialog: {dialog.type} {dialog.message}")
        task = asyncio.ensure_future(dialog.dismiss())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def join(self, url: str) -> None:
        await self.page.goto(url)
        await self.page.fill("#name", self.name)
        await self.page.press("#name", "Enter")
        await self.wait_state("connected")

    async def wait_state(self, state: str) -> None:
        await self.page.wait_for_selector(f'#state[data-state="{state}"]', timeout=WAIT_MS)

    async def say(self, text: str) -> None:
        await self.page.fill("#text", text)
        await self.page.press("#text", "Enter")

    async def wait_message(self, name: str, text: str) -> None:
        await self.page.wait_for_function(
            """([name, text]) => [...document.querySelectorAll('#messages li.message')]
                .some(li => li.querySelector('.name').textContent === name
                         && li.querySelector('.text').textContent === text)""",
            arg=[name, text],
            timeout=WAIT_MS,
        )

    async def messages(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = await self.page.evaluate(
            """() => [...document.querySelectorAll('#messages li.message')].map(li => ({
                id: Number(li.dataset.id),
                name: li.querySelector('.name').textContent,
                text: li.querySelector('.text').textContent,
                time: li.querySelector('time').textContent,
                datetime: li.querySelector('time').dateTime,
            }))"""
        )
        return rows

    async def screenshot(self, label: str) -> None:
        ARTIFACTS.mkdir(exist_ok=True)
        await self.page.screenshot(path=str(ARTIFACTS / f"chat-{label}.png"), full_page=True)


async def open_page(browser: Any, name: str) -> ChatPage:
    return ChatPage(await browser.new_page(), name)


async def test_two_pages_and_the_bot(browser: Any, chat: tuple[Process, str]) -> None:
    proc, url = chat
    bot = await start_ripple("bot", url, "--interval", "1", first_line=False)
    try:
        async with bounded(120):
            alice = await open_page(browser, "alice")
            bob = await open_page(browser, "bob")
            await alice.join(url)
            await bob.join(url)
            for page in (alice, bob):
                await page.wait_message("bot", ASK)  # the bot's there and asking

            await alice.say("hello from alice")
            await bob.wait_message("alice", "hello from alice")
            await bob.say("hi alice, is the bot listening?")
            for page in (alice, bob):
                await page.wait_message("bob", "hi alice, is the bot listening?")
                await page.wait_message("bot", "No.")
            await alice.say("bye")
            for page in (alice, bob):
                await page.wait_message("alice", "bye")

            for page in (alice, bob):
                rows = await page.messages()
                talk = [(r["name"], r["text"]) for r in rows if r["text"] != ASK]
                assert talk == [
                    ("alice", "hello from alice"),
                    ("bob", "hi alice, is the bot listening?"),
                    ("bot", "No."),
                    ("alice", "bye"),
                ], page.name
                assert ("bot", ASK) in [(r["name"], r["text"]) for r in rows]
                ids = [r["id"] for r in rows]
                assert ids == sorted(ids) and len(set(ids)) == len(ids)
                assert all(r["time"] and r["datetime"] for r in rows)
                # Who's here, as the page lists them.
                users = await page.page.eval_on_selector_all(
                    "#users li", "items => items.map(li => li.textContent)"
                )
                assert sorted(users) == ["alice", "bob", "bot"]
                await page.screenshot(page.name)
            assert alice.problems == [] and bob.problems == []
        assert await bot.stop() == 0
        assert await proc.stop() == 0
    finally:
        await bot.kill()


async def test_html_in_names_and_messages_stays_text(
    browser: Any, chat: tuple[Process, str]
) -> None:
    _, url = chat
    name = "<img src=x onerror=alert(1)>"  # an alert() would show up as a dialog
    text = "<script>window.pwned=2</script><b>bold</b> & <i>not italic</i>"
    async with bounded(60):
        mallory = await open_page(browser, name)
        reader = await open_page(browser, "reader")
        await reader.join(url)
        await mallory.join(url)
        await mallory.say(text)
        for page in (reader, mallory):
            await page.wait_message(name, text)
            injected = await page.page.evaluate(
                """() => ({
                    elements: document.querySelectorAll(
                        '#messages img, #messages script, #messages b, #messages i, #users img'
                    ).length,
                    pwned: window.pwned === undefined ? null : window.pwned,
                    users: [...document.querySelectorAll('#users li')].map(li => li.textContent),
                })"""
            )
            assert injected == {"elements": 0, "pwned": None, "users": ["reader", name]}
        await reader.screenshot("html-stays-text")
        assert reader.problems == [] and mallory.problems == []


async def test_page_shows_the_state_and_reconnects(
    browser: Any, chat: tuple[Process, str]
) -> None:
    proc, url = chat
    port = url.rstrip("/").rsplit(":", 1)[1]
    restarted: Process | None = None
    try:
        async with bounded(90):
            page = await open_page(browser, "carol")
            await page.join(url)
            await page.say("before the restart")
            await page.wait_message("carol", "before the restart")

            # Every state the badge shows from now on (the retries change it fast).
            await page.page.evaluate(
                """() => {
                    window.states = [];
                    const badge = document.getElementById('state');
                    new MutationObserver(() => window.states.push(badge.textContent))
                        .observe(badge, {childList: true, characterData: true, subtree: true});
                }"""
            )
            assert await proc.stop(signal.SIGTERM) == 0
            await page.wait_state("reconnecting")
            await page.screenshot("reconnecting")
            states = await page.page.evaluate("window.states")
            assert "closed 1001: server shutting down" in states[0], states

            restarted, _ = await start_chat_process("--port", port)
            await page.wait_state("connected")
            await page.page.wait_for_function(
                """() => [...document.querySelectorAll('#messages li.system')]
                    .some(li => li.textContent.includes('restarted'))""",
                timeout=WAIT_MS,
            )
            await page.say("after the restart")
            await page.wait_message("carol", "after the restart")
            texts = [r["text"] for r in await page.messages()]
            assert texts == ["before the restart", "after the restart"]
            # The browser logs failed connection attempts while the server is
            # down; nothing else may go wrong, and no alert() appears.
            unexpected = [
                p
                for p in page.problems
                if "WebSocket connection to" not in p and "ERR_CONNECTION_REFUSED" not in p
            ]
            assert unexpected == []
            assert not any(p.startswith("dialog") for p in page.problems)
    finally:
        if restarted is not None:
            await restarted.kill()


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    from hub.redis_server import redis_fixture

    async for server in redis_fixture():
        yield str(server.url)


async def test_page_resumes_with_its_last_id(browser: Any, redis_url: str) -> None:
    """Two chat processes share Redis. The page's process stops; what's said on
    the other meanwhile shows on the page once it's back, once each, in order."""
    import ripple
    from chat.helpers import Client

    a, url_a = await start_chat_process("--redis", redis_url, "--rate", "0")
    b, url_b = await start_chat_process("--redis", redis_url, "--rate", "0")
    port_a = url_a.rstrip("/").rsplit(":", 1)[1]
    restarted: Process | None = None
    try:
        async with bounded(90):
            dave = Client(await ripple.connect(url_b.replace("http://", "ws://") + "ws"))
            await dave.join("dave")
            page = await open_page(browser, "erin")
            await page.join(url_a)
            await dave.say("m0")
            await page.wait_message("dave", "m0")

            assert await a.stop(signal.SIGTERM) == 0
            await page.wait_state("reconnecting")
            for i in range(1, 6):
                await dave.say(f"m{i}")
            await dave.until("message", 10, text="m5")

            restarted, _ = await start_chat_process(
                "--redis", redis_url, "--rate", "0", "--port", port_a
            )
            await page.wait_state("connected")
            await page.wait_message("dave", "m5")
            await dave.say("live")
            await page.wait_message("dave", "live")
            await page.screenshot("resumed")
            rows = await page.messages()
            assert [r["text"] for r in rows] == [f"m{i}" for i in range(6)] + ["live"]
            ids = [r["id"] for r in rows]
            assert ids == sorted(set(ids)), ids  # in order, none twice
            systems = await page.page.evaluate(
                "() => [...document.querySelectorAll('#messages li.system')]"
                ".map(li => li.textContent)"
            )
            assert not any("restarted" in t or "missing" in t for t in systems), systems
            unexpected = [
                p
                for p in page.problems
                if "WebSocket connection to" not in p and "ERR_CONNECTION_REFUSED" not in p
            ]
            assert unexpected == []
            await dave.close()
    finally:
        for proc in (a, b, restarted):
            if proc is not None:
                await proc.kill()
