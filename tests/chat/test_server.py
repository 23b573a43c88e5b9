"""The chat server over real sockets: HTTP routes, joining, history, bad input, floods."""

from __future__ import annotations

import asyncio
import json

import pytest

import ripple
from aio_helpers import read_http_response, within
from ripple.chat import ChatConfig

from .conftest import MakeChat
from .helpers import Chat, Client

pytestmark = pytest.mark.timeout(60)


async def http_get(
    chat: Chat, path: str, method: str = "GET", headers: str = ""
) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await within(asyncio.open_connection("127.0.0.1", chat.port))
    try:
        writer.write(
            f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{chat.port}\r\n{headers}\r\n".encode()
        )
        if method == "HEAD":
            # No body follows, whatever Content-Length says.
            head = await within(reader.readuntil(b"\r\n\r\n"))
            lines = head.decode("latin-1").split("\r\n")
            fields = dict(line.split(": ", 1) for line in lines[1:] if line)
            return int(lines[0].split()[1]), {k.lower(): v for k, v in fields.items()}, b""
        return await within(read_http_response(reader))  # type: ignore[no-any-return]
    finally:
        writer.close()


# -- HTTP ----------------------------------------------------------------------


async def test_page_and_its_files_on_the_same_port(chat: Chat) -> None:
    status, headers, body = await http_get(chat, "/")
    assert status == 200
    assert headers["content-type"] == "text/html; charset=utf-8"
    assert b'<script src="chat.js"' in body
    csp = headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert headers["x-content-type-options"] == "nosniff"
    for path, kind, needle in [
        ("/chat.js", "text/javascript", b"textContent"),
        ("/chat.css", "text/css", b"#messages"),
        ("/favicon.svg", "image/svg+xml", b"<svg"),
        ("/?from=somewhere", "text/html", b"<!doctype html>"),
    ]:
        status, headers, body = await http_get(chat, path)
        assert status == 200, path
        assert headers["content-type"].startswith(kind), path
        assert needle in body, path


async def test_page_never_uses_html_sinks(chat: Chat) -> None:
    _, _, script = await http_get(chat, "/chat.js")
    for sink in (b"innerHTML", b"outerHTML", b"insertAdjacentHTML", b"document.write", b"eval("):
        assert sink not in script, sink
    assert b"alert(" not in script


async def test_health_check(chat: Chat) -> None:
    status, headers, body = await http_get(chat, "/healthz")
    assert (status, body) == (200, b"ok\n")
    assert headers["content-type"].startswith("text/plain")
    status, headers, body = await http_get(chat, "/healthz", method="HEAD")
    assert (status, body, headers["content-length"]) == (200, b"", "3")


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/static/../server.py", 404),
        ("POST", "/", 405),
        ("GET", "/ws", 426),  # plain HTTP to the WebSocket endpoint
    ],
)
async def test_other_requests(chat: Chat, method: str, path: str, status: int) -> None:
    got, headers, _ = await http_get(chat, path, method=method)
    assert got == status
    if status == 405:
        assert headers["allow"] == "GET, HEAD"


async def test_websocket_only_at_ws(chat: Chat) -> None:
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(f"ws://127.0.0.1:{chat.port}/"))
    assert info.value.response.status_code == 404
    assert b"/ws" in info.value.response.body


async def test_origin_check(make_chat: MakeChat) -> None:
    chat = await make_chat(ChatConfig(allow_origins=("https://chat.example.com",)))
    same = f"http://127.0.0.1:{chat.port}"
    for origin in (
        same,
        same.upper(),
        f"https://127.0.0.1:{chat.port}",
        "https://chat.example.com",
    ):
        client = await chat.client(origin=origin)
        await client.close()
    for origin in ("http://evil.example", f"http://127.0.0.1:{chat.port + 1}", "null"):
        with pytest.raises(ripple.InvalidStatus) as info:
            await within(ripple.connect(chat.url, origin=origin))
        assert info.value.response.status_code == 403, origin


# -- joining and chatting --------------------------------------------------------------


async def test_join_welcome_and_messages(chat: Chat) -> None:
    alice = await chat.client()
    await alice.send({"type": "join", "name": "alice"})
    welcome = await alice.expect("welcome")
    me = welcome["you"]
    assert me["name"] == "alice" and me["id"]
    assert welcome["users"] == [me]
    assert welcome["history"] == []
    assert welcome["limits"]["history"] == 50
    assert welcome["limits"]["max_bytes"] == 4096
    joined = await alice.expect("join")
    assert joined["user"] == me
    assert joined["ts"] == int(chat.clock.now * 1000)

    bob = await chat.client("bob")
    assert bob.welcome is not None
    assert bob.welcome["users"] == [me, bob.me]
    assert (await alice.expect("join"))["user"] == bob.me

    chat.clock.advance(1.5)
    await alice.say("hi bob")
    for client in (alice, bob):
        msg = await client.expect("message")
        assert msg["user"] == me
        assert msg["text"] == "hi bob"
        assert msg["ts"] == int(chat.clock.now * 1000)
        assert msg["id"] > joined["id"]

    await bob.close()
    left = await alice.expect("leave")
    assert left["user"] == bob.me
    assert left["id"] > msg["id"]
    await alice.close()


async def test_ids_increase_across_event_kinds(chat: Chat) -> None:
    alice = await chat.client("alice")
    ids: list[int] = []
    bob = await chat.client("bob")
    ids.append((await alice.expect("join"))["id"])
    await bob.say("one")
    ids.append((await alice.expect("message"))["id"])
    await alice.say("two")
    ids.append((await alice.expect("message"))["id"])
    await bob.close()
    ids.append((await alice.expect("leave"))["id"])
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    await alice.close()


async def test_history_on_join(make_chat: MakeChat) -> None:
    chat = await make_chat(ChatConfig(history=3, rate=0))
    alice = await chat.client("alice")
    for i in range(5):
        await alice.say(f"message {i}")
    for i in range(5):
        assert (await alice.expect("message"))["text"] == f"message {i}"
    bob = await chat.client("bob")
    assert bob.welcome is not None
    history = bob.welcome["history"]
    assert [m["text"] for m in history] == ["message 2", "message 3", "message 4"]
    assert all(m["type"] == "message" and m["user"] == alice.me for m in history)
    assert [m["id"] for m in history] == sorted(m["id"] for m in history)
    # Nothing in the history is sent twice: what comes next is new.
    await alice.say("after")
    assert (await bob.expect("message"))["text"] == "after"
    await alice.close()
    await bob.close()


async def test_no_history(make_chat: MakeChat) -> None:
    chat = await make_chat(ChatConfig(history=0))
    alice = await chat.client("alice")
    await alice.say("gone")
    await alice.expect("message")
    bob = await chat.client("bob")
    assert bob.welcome is not None and bob.welcome["history"] == []
    await alice.close()
    await bob.close()


async def test_newcomer_during_traffic_misses_nothing_and_gets_nothing_twice(
    make_chat: MakeChat,
) -> None:
    chat = await make_chat(ChatConfig(history=1000, rate=0))
    alice = await chat.client("alice")
    n = 200

    async def talk() -> None:
        for i in range(n):
            await alice.say(str(i))
            if i % 10 == 0:
                await asyncio.sleep(0)

    talking = asyncio.create_task(talk())
    await asyncio.sleep(0.001)
    bob = await chat.client()
    await bob.send({"type": "join", "name": "bob"})
    await within(talking)
    welcome = await bob.expect("welcome")
    seen = [m["text"] for m in welcome["history"]]
    while len(seen) < n:
        msg = await bob.recv()
        if msg["type"] == "message":
            seen.append(msg["text"])
    assert seen == [str(i) for i in range(n)]
    # Alice got her own messages too, in order, with bob's join among them.
    echoed = [m["text"] for m in [await alice.recv() for _ in range(n + 1)] if "text" in m]
    assert echoed == [str(i) for i in range(n)]
    await alice.close()
    await bob.close()


# -- bad input ------------------------------------------------------------------


async def assert_only_error(
    sender: Client, other: Client, data: str | bytes, code: str
) -> dict[str, object]:
    """``data`` from sender gets it an error with ``code``, and the other client
    gets nothing: the next thing it sees is the sender's next good message."""
    await sender.send(data)
    err = await sender.expect("error")
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"]
    await sender.say("still here")
    assert (await sender.expect("message"))["text"] == "still here"
    msg = await other.recv()
    assert msg["type"] == "message" and msg["text"] == "still here", msg
    return err


@pytest.mark.parametrize(
    ("data", "code"),
    [
        ("this isn't JSON", "invalid_json"),
        ("[1, 2, 3]", "invalid_json"),
        ("[" * 2000 + "]" * 2000, "invalid_json"),
        ('{"type": "shout", "text": "HI"}', "unknown_type"),
        ('{"text": "no type"}', "unknown_type"),
        ('{"type": "message", "text": 42}', "bad_text"),
        ('{"type": "message", "text": "   "}', "bad_text"),
        ('{"type": "message", "text": "\\u001b[2J clear screen"}', "bad_text"),
        ('{"type": "join", "name": "again"}', "already_joined"),
        (b"\x00\x01binary", "not_text"),
    ],
)
async def test_bad_input_gets_an_error_to_its_sender_only(
    make_chat: MakeChat, data: str | bytes, code: str
) -> None:
    chat = await make_chat(ChatConfig(rate=0))
    alice = await chat.client("alice")
    bob = await chat.client("bob")
    await alice.expect("join")
    await assert_only_error(bob, alice, data, code)
    await alice.close()
    await bob.close()


async def test_oversized_message_gets_an_error_and_the_room_goes_on(make_chat: MakeChat) -> None:
    chat = await make_chat(ChatConfig(max_bytes=200, rate=0))
    alice = await chat.client("alice")
    bob = await chat.client("bob")
    await alice.expect("join")
    big = json.dumps({"type": "message", "text": "x" * 300})
    err = await assert_only_error(bob, alice, big, "too_big")
    assert "200" in str(err["message"])
    # Far over the limit: the WebSocket layer closes that connection (1009),
    # and only that one.
    huge = "x" * (chat.chat.config.websocket_max_size + 1)
    await bob.send(huge)
    with pytest.raises(ripple.ConnectionClosedError) as info:
        await bob.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1009
    left = await alice.expect("leave")
    assert left["user"] == bob.me
    await alice.say("alone")
    assert (await alice.expect("message"))["text"] == "alone"
    await alice.close()


@pytest.mark.parametrize(
    "name",
    ["", "   ", "n" * 33, "line\nbreak", "\u202eright-to-left", "zero\u200bwidth", "two  spaces"],
)
async def test_bad_names_are_refused_and_the_client_may_try_again(chat: Chat, name: str) -> None:
    client = await chat.client()
    await client.send({"type": "join", "name": name})
    err = await client.expect("error")
    assert err["code"] == "bad_name"
    await client.say("before joining")
    assert (await client.expect("error"))["code"] == "not_joined"
    welcome = await client.join("fixed")
    assert welcome["you"]["name"] == "fixed"
    await client.close()


async def test_html_in_names_and_text_is_kept_as_is(chat: Chat) -> None:
    # The server doesn't escape: it sends JSON, and the page inserts text.
    name = "<img src=x onerror=alert(1)>"
    text = "<script>alert('hi')</script> & <b>bold</b>"
    client = await chat.client(name)
    assert client.me is not None and client.me["name"] == name
    await client.say(text)
    msg = await client.expect("message")
    assert (msg["user"]["name"], msg["text"]) == (name, text)
    await client.close()


async def test_messages_before_joining(chat: Chat) -> None:
    watcher = await chat.client("watcher")
    lurker = await chat.client()
    await lurker.say("let me in")
    assert (await lurker.expect("error"))["code"] == "not_joined"
    # A connection that never joined gets no room traffic and leaves no trace.
    await watcher.say("hello?")
    await watcher.expect("message")
    await lurker.close()
    await watcher.say("still alone")
    assert (await watcher.expect("message"))["text"] == "still alone"
    await watcher.close()


# -- rate limiting ----------------------------------------------------------------


async def test_a_flood_is_rate_limited_and_told_once(make_chat: MakeChat) -> None:
    chat = await make_chat(ChatConfig(rate=2, burst=3))
    alice = await chat.client("alice")  # the join spends a token
    bob = await chat.client("bob")
    await alice.expect("join")
    for i in range(10):
        await alice.say(f"flood {i}")
    # Two tokens were left: two messages go through, then one notice.
    got = [await alice.recv() for _ in range(3)]
    assert [m["type"] for m in got] == ["message", "message", "error"]
    assert [m["text"] for m in got[:2]] == ["flood 0", "flood 1"]
    assert got[2]["code"] == "rate_limited"
    assert got[2]["retry_after"] == pytest.approx(0.5)
    # The others see only what went through.
    assert [(await bob.expect("message"))["text"] for _ in range(2)] == ["flood 0", "flood 1"]

    # Time passes (the test's clock): a token per 0.5 s.
    chat.clock.advance(0.5)
    await alice.say("calm")
    assert (await alice.expect("message"))["text"] == "calm"
    assert (await bob.expect("message"))["text"] == "calm"
    # A new flood is told again.
    await alice.say("again")
    assert (await alice.expect("error"))["code"] == "rate_limited"
    await alice.close()
    await bob.close()


async def test_bad_input_counts_against_the_limit(make_chat: MakeChat) -> None:
    chat = await make_chat(ChatConfig(rate=1, burst=2))
    client = await chat.client()
    for _ in range(5):
        await client.send("garbage")
    codes = [(await client.expect("error"))["code"] for _ in range(3)]
    assert codes == ["invalid_json", "invalid_json", "rate_limited"]
    await client.close()
