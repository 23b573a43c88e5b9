"""The course's bot (`ripple bot`): asks every interval, answers "No." to questions
from others, reconnects, and stops cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from typing import Any

import pytest

import ripple
from aio_helpers import Servers, within
from ripple.chat import ChatConfig
from ripple.chat.bot import ASK, BotError, chat_url, run_bot
from ripple.exceptions import InvalidURI

from .conftest import MakeChat
from .helpers import Chat, Client, start_chat, start_ripple

pytestmark = pytest.mark.timeout(60)


@contextlib.asynccontextmanager
async def bot(url: str, **kwargs: Any) -> AsyncIterator[asyncio.Task[None]]:
    kwargs.setdefault("interval", 0.2)
    kwargs.setdefault("min_delay", 0.05)
    kwargs.setdefault("max_delay", 0.2)
    task = asyncio.create_task(run_bot(url, **kwargs))
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await within(task, 15)


async def bot_user(client: Client, name: str = "bot") -> dict[str, str]:
    """The bot's user: in the client's welcome, or when it joins."""
    assert client.welcome is not None
    for user in client.welcome["users"]:
        if user["name"] == name:
            return user  # type: ignore[no-any-return]

    async def joined() -> dict[str, str]:
        while True:
            msg = await client.until("join", 10)
            if msg["user"]["name"] == name:
                return msg["user"]  # type: ignore[no-any-return]

    return await within(joined(), 10)  # type: ignore[no-any-return]


async def test_bot_asks_and_answers_questions_only(make_chat: MakeChat) -> None:
    chat = await make_chat(ChatConfig(rate=0))
    alice = await chat.client("alice")
    async with bot(chat.url):
        me = await bot_user(alice)
        # It asks right away, then every interval.
        for _ in range(2):
            ask = await alice.until("message", 10, text="Ask me a question.")
            assert ask["user"] == me
        # A statement gets nothing, a question gets "No.": the bot reads in
        # order, so an answer to the statement would come first.
        await alice.say("The sky is blue.")
        await alice.say("Is the sky blue?")
        answers = []
        while True:
            msg = await alice.until("message", 10)
            if msg["user"] == me and msg["text"] == "No.":
                answers.append(msg)
                break
            if msg["user"] == alice.me:
                answers.append(msg)
        assert [m["text"] for m in answers] == ["The sky is blue.", "Is the sky blue?", "No."]
    await alice.close()


async def test_bot_ignores_its_own_questions_and_the_history(make_chat: MakeChat) -> None:
    chat = await make_chat(ChatConfig(rate=0))
    alice = await chat.client("alice")
    await alice.say("Anyone here?")  # in the history the bot gets: not answered
    await alice.expect("message")
    async with bot(chat.url, ask="Any questions?", answer="Nope."):
        me = await bot_user(alice)
        for _ in range(3):
            msg = await alice.until("message", 10)
            assert msg["user"] == me
            assert msg["text"] == "Any questions?"  # never "Nope." to itself
        await alice.say("really?")
        while (msg := await alice.until("message", 10))["text"] != "Nope.":
            assert msg["text"] in ("Any questions?", "really?")
    await alice.close()


async def test_bot_reconnects_after_the_server_restarts() -> None:
    chat = await start_chat(ChatConfig(rate=0))
    port = chat.port
    try:
        async with bot(chat.url) as task:
            alice = await chat.client("alice")
            await bot_user(alice)
            await chat.aclose()  # the bot's connection closes with 1001
            chat = await start_chat(ChatConfig(rate=0), reuse_address=True, port=port)
            assert chat.port == port
            bob = await chat.client("bob")
            await bot_user(bob)  # it came back
            await bob.until("message", 10, text="Ask me a question.")
            await bob.say("Did you come back?")
            await bob.until("message", 10, text="No.")
            assert not task.done()
            await bob.close()
    finally:
        await chat.aclose()


async def test_bot_resumes_with_its_last_id(
    make_chat: MakeChat, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ripple.chat.bot")
    chat = await make_chat(ChatConfig(rate=0))
    alice = await chat.client("alice")
    # A reconnect delay far above what alice needs to say her two lines.
    async with bot(chat.url, interval=60, min_delay=1.0, max_delay=1.0) as task:
        me = await bot_user(alice)
        asked = await alice.until("message", 10, text=ASK)
        alice_port = alice.ws.local_address[1]
        (dropped,) = [c for c in chat.server.connections if c.remote_address[1] != alice_port]
        await dropped.close(1012, "restarting")
        await alice.until("leave", 10, user=me)
        await alice.say("Is it raining?")  # missed by the bot: not answered late
        await alice.say("just saying")
        await alice.until("message", 10, text="just saying")
        back = await alice.until("join", 10)
        assert back["user"]["name"] == "bot"
        # Missed: its own leave and alice's two lines; nothing more, nothing twice.
        resumed = [r.getMessage() for r in caplog.records if "resumed after" in r.getMessage()]
        assert resumed == [f"resumed after id {asked['id']}: 3 missed events"], resumed
        await alice.say("Still there?")
        texts = []
        while True:
            msg = await alice.until("message", 10)
            texts.append(msg["text"])
            if msg["text"] == "No.":
                break
        assert texts == ["Still there?", "No."] or texts == [ASK, "Still there?", "No."]
        assert not task.done()
    await alice.close()


async def test_bot_gives_up_on_a_refused_name(chat: Chat) -> None:
    with pytest.raises(BotError, match="refused the name"):
        await within(run_bot(chat.url, name="\u202eevil", interval=0.2), 10)


async def test_bot_refuses_a_bad_url() -> None:
    with pytest.raises(InvalidURI):
        await within(run_bot("ftp://example.com/", interval=0.2))


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8765/", "ws://127.0.0.1:8765/ws"),
        ("http://127.0.0.1:8765", "ws://127.0.0.1:8765/ws"),
        ("https://chat.example.com/", "wss://chat.example.com/ws"),
        ("https://chat.example.com/room/ws", "wss://chat.example.com/room/ws"),
        ("ws://127.0.0.1:8765/ws", "ws://127.0.0.1:8765/ws"),
        ("wss://h/ws?x=1", "wss://h/ws?x=1"),
    ],
)
def test_chat_url(url: str, expected: str) -> None:
    assert chat_url(url) == expected


async def test_ripple_bot_command_stops_on_sigterm(chat: Chat) -> None:
    proc = await start_ripple(
        "bot", chat.http, "--interval", "0.2", "--name", "cli-bot", first_line=False
    )
    try:
        alice = await chat.client("alice")
        me = await bot_user(alice, "cli-bot")
        await alice.until("message", 10, text="Ask me a question.")
        assert await proc.stop(signal.SIGTERM) == 0
        left = await alice.until("leave", 10)
        assert left["user"] == me
        err = await proc.stderr()
        assert "Traceback" not in err, err
        await alice.close()
    finally:
        await proc.kill()


@pytest.mark.parametrize(
    ("args", "status", "complaint"),
    [
        (["ftp://example.com/"], 2, "ws://"),
        (["ws://127.0.0.1:1/ws", "--interval", "0"], 2, "must be > 0"),
    ],
)
async def test_ripple_bot_command_errors(args: list[str], status: int, complaint: str) -> None:
    proc = await start_ripple("bot", *args, first_line=False)
    try:
        assert await within(proc.proc.wait(), 20) == status
        assert complaint in await proc.stderr()
    finally:
        await proc.kill()


async def test_bot_gives_up_on_a_403_and_says_why(servers: Servers) -> None:
    def refuse(connection: Any, request: Any) -> ripple.Response:
        return ripple.Response(403, "Forbidden", b"no bots")

    _, url = await servers.start(lambda ws: ws.wait_closed(), process_request=refuse)
    with pytest.raises(BotError, match=r"giving up.*HTTP 403: no bots") as info:
        await within(run_bot(url, interval=0.2, min_delay=0.01, max_delay=0.05), 10)
    assert isinstance(info.value.__cause__, ripple.InvalidStatus)
