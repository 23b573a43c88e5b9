"""basic_auth (RFC 7617): the handler decorator and the process_request, over real sockets."""

from __future__ import annotations

import asyncio
import base64
import logging
import urllib.parse
from typing import Any

import pytest

import ripple
import ripple.auth
from aio_helpers import (
    Parked,
    Servers,
    echo,
    raw_connection,
    server_port,
    within,
)

pytestmark = pytest.mark.timeout(30)

CHALLENGE = 'Basic realm="WebSocket", charset="UTF-8"'


def with_user(url: str, username: str, password: str) -> str:
    quote = urllib.parse.quote
    return url.replace("ws://", f"ws://{quote(username, safe='')}:{quote(password, safe='')}@")


def basic(user_pass: bytes) -> str:
    return "Basic " + base64.b64encode(user_pass).decode()


async def refused(url: str, **kwargs: Any) -> ripple.Response:
    with pytest.raises(ripple.InvalidStatus) as info:
        await within(ripple.connect(url, **kwargs))
    return info.value.response


async def raw_status(port: int, authorization_lines: str) -> tuple[int, dict[str, str], bytes]:
    async with raw_connection(port) as peer:
        status, headers, body = await peer.handshake(extra=authorization_lines)
        assert await peer.read_eof() == b""  # answered, then closed
        return status, headers, body


# -- the decorator ------------------------------------------------------------


async def test_decorated_handler_gets_401_before_upgrading(servers: Servers) -> None:
    ran: list[ripple.ServerConnection] = []

    @ripple.basic_auth("admin", "secret")
    async def handler(ws: ripple.ServerConnection) -> None:
        ran.append(ws)
        await ws.send(f"hello {ws.username}")

    _, url = await servers.start(handler)
    response = await refused(url)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    assert response.headers["Server"] == "ripple"
    assert response.body == b"missing credentials\n"
    assert ran == []
    async with ripple.connect(with_user(url, "admin", "secret")) as client:
        assert await within(client.recv()) == "hello admin"
    assert ran[0].username == "admin"


@pytest.mark.parametrize(("username", "password"), [("admin", "wrong"), ("root", "secret")])
async def test_wrong_user_or_password_gets_401(
    servers: Servers, username: str, password: str
) -> None:
    @ripple.basic_auth("admin", "secret")
    async def handler(ws: ripple.ServerConnection) -> None:
        raise AssertionError("must not run")

    _, url = await servers.start(handler)
    response = await refused(with_user(url, username, password))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == CHALLENGE
    # The same answer for a wrong user and a wrong password.
    assert response.body == b"invalid credentials\n"


async def test_decorator_keeps_the_handler_name_and_realm_is_quoted(servers: Servers) -> None:
    auth = ripple.basic_auth("u", "p", realm='the "inner" zone\\')

    @auth
    async def my_handler(ws: ripple.ServerConnection) -> None:
        """Docstring kept."""

    assert my_handler.__name__ == "my_handler"
    assert my_handler.__doc__ == "Docstring kept."
    assert auth.realm == 'the "inner" zone\\'
    _, url = await servers.start(my_handler)
    response = await refused(url)
    assert response.headers["WWW-Authenticate"] == (
        'Basic realm="the \\"inner\\" zone\\\\", charset="UTF-8"'
    )


async def test_decorator_runs_before_process_request_which_sees_the_user(
    servers: Servers,
) -> None:
    seen: list[str | None] = []

    def process_request(
        conn: ripple.ServerConnection, request: ripple.Request
    ) -> ripple.Response | None:
        seen.append(conn.username)
        if request.path == "/admin" and conn.username != "admin":
            return conn.respond(403, "admins only")
        return None

    @ripple.basic_auth(credentials=[("admin", "a"), ("guest", "g")])
    async def handler(ws: ripple.ServerConnection) -> None:
        await ws.send(ws.request.path if ws.request else "")

    _, url = await servers.start(handler, process_request=process_request)
    assert (await refused(url + "admin")).status_code == 401
    assert seen == []  # unauthenticated requests never reach process_request
    assert (await refused(with_user(url, "guest", "g") + "admin")).status_code == 403
    async with ripple.connect(with_user(url, "guest", "g") + "lobby") as client:
        assert await within(client.recv()) == "/lobby"
    async with ripple.connect(with_user(url, "admin", "a") + "admin") as client:
        assert await within(client.recv()) == "/admin"
    assert seen == ["guest", "guest", "admin"]


async def test_decorated_handler_refuses_to_run_without_the_check(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    ran: list[str] = []

    @ripple.basic_auth("admin", "secret")
    async def protected(ws: ripple.ServerConnection) -> None:
        ran.append("inner")

    async def wrapper(ws: ripple.ServerConnection) -> None:
        # A wrapper hides the mark from serve(): no check runs before the upgrade.
        await protected(ws)

    caplog.set_level(logging.ERROR, logger="ripple.server")
    _, url = await servers.start(wrapper)
    async with ripple.connect(url) as client:
        with pytest.raises(ripple.ConnectionClosedError) as info:
            await within(client.recv())
    assert info.value.code == 1011
    assert ran == []
    assert "pass the decorated handler itself" in caplog.text


# -- the process_request form ---------------------------------------------------


async def test_process_request_with_a_list_of_credentials(servers: Servers) -> None:
    parked = Parked()
    auth = ripple.basic_auth(realm="team", credentials=[("alice", "a-pw"), ("bob", "b-pw")])
    _, url = await servers.start(parked, process_request=auth)
    response = await refused(url)
    assert response.headers["WWW-Authenticate"] == 'Basic realm="team", charset="UTF-8"'
    for user, password in [("alice", "a-pw"), ("bob", "b-pw")]:
        async with ripple.connect(with_user(url, user, password)):
            assert (await parked.next()).username == user
    # One user's name with the other's password.
    assert (await refused(with_user(url, "alice", "b-pw"))).status_code == 401


async def test_process_request_with_one_pair_and_the_seed_signature(servers: Servers) -> None:
    parked = Parked()
    for auth in (
        ripple.basic_auth(credentials=("user", "pw")),
        ripple.basic_auth("user", "pw", "positional realm"),
    ):
        _, url = await servers.start(parked, process_request=auth)
        assert (await refused(url)).status_code == 401
        async with ripple.connect(with_user(url, "user", "pw")):
            assert (await parked.next()).username == "user"


@pytest.mark.parametrize("asynchronous", [False, True])
async def test_check_credentials_sync_or_async(servers: Servers, asynchronous: bool) -> None:
    calls: list[tuple[str, str]] = []

    def check(username: str, password: str) -> bool:
        calls.append((username, password))
        return password == f"{username}:pw"

    async def async_check(username: str, password: str) -> bool:
        await asyncio.sleep(0)
        return check(username, password)

    parked = Parked()
    auth = ripple.basic_auth(check_credentials=async_check if asynchronous else check)
    _, url = await servers.start(parked, process_request=auth)
    # A password may contain ':' (only the user name may not).
    async with ripple.connect(with_user(url, "carol", "carol:pw")):
        assert (await parked.next()).username == "carol"
    assert (await refused(with_user(url, "carol", "nope"))).status_code == 401
    assert calls == [("carol", "carol:pw"), ("carol", "nope")]


async def test_utf8_credentials(servers: Servers) -> None:
    parked = Parked()
    auth = ripple.basic_auth("jöhn", "pässwörd✓")
    _, url = await servers.start(parked, process_request=auth)
    async with ripple.connect(with_user(url, "jöhn", "pässwörd✓")):
        assert (await parked.next()).username == "jöhn"


async def test_check_credentials_returning_a_non_bool_is_a_500(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, logger="ripple.server")
    auth = ripple.basic_auth(check_credentials=lambda u, p: "yes")  # type: ignore[arg-type,return-value]
    _, url = await servers.start(echo, process_request=auth)
    assert (await refused(with_user(url, "u", "p"))).status_code == 500
    assert "check_credentials must return True or False, not str" in caplog.text


async def test_awaited_from_your_own_process_request(servers: Servers) -> None:
    auth = ripple.basic_auth("ops", "pw")

    async def process_request(
        conn: ripple.ServerConnection, request: ripple.Request
    ) -> ripple.Response | None:
        if request.path == "/health":
            return conn.respond(200, "OK")
        return await auth(conn, request)

    _, url = await servers.start(echo, process_request=process_request)
    health = await refused(url + "health")  # a 200 isn't an upgrade: InvalidStatus
    assert (health.status_code, health.body) == (200, b"OK")
    assert (await refused(url)).status_code == 401
    async with ripple.connect(with_user(url, "ops", "pw")) as client:
        await client.send("in")
        assert await within(client.recv()) == "in"


async def test_fixed_credentials_compare_every_pair_in_constant_time(
    servers: Servers, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = ripple.auth.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(ripple.auth.hmac, "compare_digest", spy)
    parked = Parked()
    auth = ripple.basic_auth(credentials=[("a", "1"), ("b", "2"), ("c", "3")])
    _, url = await servers.start(parked, process_request=auth)
    for user, password in [("a", "1"), ("c", "3"), ("a", "wrong"), ("zz", "1")]:
        compared.clear()
        try:
            async with ripple.connect(with_user(url, user, password)):
                await parked.next()
        except ripple.InvalidStatus:
            pass
        # User name and password for every pair, whether or not one matched
        # early, on equal-length digests.
        assert len(compared) == 6
        assert {len(x) for pair in compared for x in pair} == {32}


# -- malformed Authorization headers ----------------------------------------------


@pytest.mark.parametrize(
    ("lines", "reason"),
    [
        ("", b"missing credentials"),
        ("Authorization: Basic\r\n", b"malformed credentials"),
        ("Authorization: Basic !!!not-base64!!!\r\n", b"malformed credentials"),
        ("Authorization: Basic dXNlcg\r\n", b"malformed credentials"),  # bad padding
        (f"Authorization: {basic(b'no-colon-here')}\r\n", b"malformed credentials"),
        ("Authorization: " + basic(b"user:\xff\xfe") + "\r\n", b"malformed credentials"),
        ("Authorization: Bearer abc.def\r\n", b"unsupported authorization scheme"),
        ("Authorization: Basic \xe9\xe9\r\n", b"malformed credentials"),
        (
            f"Authorization: {basic(b'user:pw')}\r\nAuthorization: {basic(b'user:pw')}\r\n",
            b"more than one Authorization header",
        ),
        (f"Authorization: {basic(b'user:wrong')}\r\n", b"invalid credentials"),
    ],
)
async def test_malformed_authorization_gets_401_never_500(
    servers: Servers, lines: str, reason: bytes
) -> None:
    server, _ = await servers.start(echo, process_request=ripple.basic_auth("user", "pw"))
    status, headers, body = await raw_status(server_port(server), lines)
    assert status == 401
    assert headers["www-authenticate"] == CHALLENGE
    assert reason in body
    assert body.count(b"\n") == 1  # one line


@pytest.mark.parametrize(
    "value",
    [basic(b"user:pw"), "basic " + basic(b"user:pw")[6:], "BASIC   " + basic(b"user:pw")[6:]],
)
async def test_scheme_is_case_insensitive(servers: Servers, value: str) -> None:
    server, _ = await servers.start(echo, process_request=ripple.basic_auth("user", "pw"))
    async with raw_connection(server_port(server)) as peer:
        status, _, _ = await peer.handshake(extra=f"Authorization: {value}\r\n")
        assert status == 101


# -- nothing logs a password -------------------------------------------------------


async def test_no_log_record_contains_a_password(
    servers: Servers, caplog: pytest.LogCaptureFixture
) -> None:
    secret = "pw-3f9c1d"  # distinctive, to search for
    encoded = base64.b64encode(f"admin:{secret}".encode()).decode()
    caplog.set_level(logging.DEBUG)  # every logger, ripple's and asyncio's

    @ripple.basic_auth("admin", secret)
    async def handler(ws: ripple.ServerConnection) -> None:
        await ws.send("in")

    server, url = await servers.start(handler)
    port = server_port(server)
    async with ripple.connect(with_user(url, "admin", secret)) as client:
        assert await within(client.recv()) == "in"
    for password in (secret + "x", secret[:-1], ":" + secret):
        await refused(with_user(url, "admin", password))
    await refused(with_user(url, secret, secret))
    await raw_status(port, f"Authorization: Basic {encoded}*\r\n")
    await raw_status(port, f"Authorization: Bearer {secret}\r\n")
    assert any("basic auth" in r.getMessage() for r in caplog.records)  # it did log
    for record in caplog.records:
        text = record.getMessage() + (record.exc_text or "")
        assert secret not in text and encoded not in text, record
    assert secret not in caplog.text


# -- programmer errors ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((), {}, TypeError, "exactly one of"),
        (("user",), {}, TypeError, "exactly one of"),
        (("u", "p"), {"credentials": [("a", "b")]}, TypeError, "exactly one of"),
        ((), {"credentials": [("a", "b")], "check_credentials": bool}, TypeError, "exactly one"),
        ((), {"credentials": []}, ValueError, "empty"),
        ((), {"credentials": "ab"}, TypeError, "credentials must be"),
        ((), {"credentials": {"user": "pw"}}, TypeError, "credentials must be"),
        ((), {"credentials": [("a", 1)]}, TypeError, "credentials must be"),
        (("a:b", "p"), {}, ValueError, "can't contain ':'"),
        (("u", "p"), {"realm": "two\r\nlines"}, ValueError, "realm"),
        ((), {"check_credentials": "yes"}, TypeError, "check_credentials must be a function"),
    ],
)
def test_bad_arguments_raise_at_the_call(
    args: tuple[Any, ...], kwargs: dict[str, Any], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        ripple.basic_auth(*args, **kwargs)


def test_bad_uses_of_the_result_raise() -> None:
    auth = ripple.basic_auth("u", "p")
    with pytest.raises(TypeError, match="decorates a handler"):
        auth(42)  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="got 3 arguments"):
        auth(1, 2, 3)  # type: ignore[call-overload]
    assert repr(auth) == "BasicAuth(realm='WebSocket')"
