"""handshake.py: the opening handshake, both sides (RFC 6455 §4)."""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ripple.exceptions import (
    InvalidHandshake,
    InvalidHeader,
    InvalidHeaderFormat,
    InvalidHeaderValue,
    InvalidStatus,
    InvalidUpgrade,
    NegotiationError,
)
from ripple.protocol import handshake
from ripple.protocol.extensions import (
    ClientExtensionFactory,
    Extension,
    ExtensionParameter,
    ServerExtensionFactory,
)
from ripple.protocol.handshake import (
    GUID,
    HandshakeRejected,
    accept_key,
    build_request,
    check_response,
    generate_key,
    parse_token_list,
    server_accept,
)
from ripple.protocol.headers import Headers
from ripple.protocol.http11 import Request, Response, parse_request, parse_response
from ripple.protocol.uri import parse_uri

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def no_subprotocol(offered: list[str]) -> str | None:
    return None


def make_request(*, drop: Sequence[str] = (), method: str = "GET", **extra: str) -> Request:
    """A valid handshake request; `drop` removes headers, `extra` replaces them
    (underscores in names become dashes)."""
    fields = {
        "Host": "example.com",
        "Upgrade": "websocket",
        "Connection": "Upgrade",
        "Sec-WebSocket-Key": KEY,
        "Sec-WebSocket-Version": "13",
    }
    for name, value in extra.items():
        fields[name.replace("_", "-")] = value
    headers = Headers([(k, v) for k, v in fields.items() if k not in drop])
    return Request("/chat", headers, method)


def reject_of(request: Request, **kwargs: object) -> HandshakeRejected:
    with pytest.raises(HandshakeRejected) as exc_info:
        server_accept(request, select_subprotocol=no_subprotocol, **kwargs)  # type: ignore[arg-type]
    response = exc_info.value.response
    # Every rejection is a plain-text answer whose body says what was wrong.
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert response.headers["Content-Length"] == str(len(response.body))
    connection = [t.lower() for t in parse_token_list(response.headers.get_all("Connection"))]
    # The 426 invites an upgrade (Connection: Upgrade); the others close.
    assert (
        "upgrade"
        if response.status_code == 426 and response.headers.get_all("Upgrade")
        else "close"
    ) in connection
    assert response.body.endswith(b"\n") and len(response.body) > 1
    return exc_info.value


def ok_response(**extra: str) -> Response:
    headers = Headers(
        {"Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": ACCEPT}
    )
    for name, value in extra.items():
        headers[name.replace("_", "-")] = value
    return Response(101, "Switching Protocols", headers)


# -- keys ----------------------------------------------------------------------------


def test_accept_key_rfc_vector() -> None:
    # RFC 6455 §1.3.
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert GUID == "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def test_generate_key() -> None:
    keys = {generate_key() for _ in range(10)}
    assert len(keys) == 10
    for key in keys:
        assert len(base64.b64decode(key, validate=True)) == 16


# -- parse_token_list ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "tokens"),
    [
        ([], []),
        (["Upgrade"], ["Upgrade"]),
        (["keep-alive, Upgrade"], ["keep-alive", "Upgrade"]),
        (["keep-alive,Upgrade"], ["keep-alive", "Upgrade"]),
        ([" a ,, b ,", "c"], ["a", "b", "c"]),
        ([",", ""], []),
        (["a\t,\tb"], ["a", "b"]),
    ],
)
def test_parse_token_list(values: list[str], tokens: list[str]) -> None:
    assert parse_token_list(values) == tokens


# -- server side -------------------------------------------------------------------------


def test_server_accept() -> None:
    response, subprotocol, extensions = server_accept(
        make_request(), select_subprotocol=no_subprotocol
    )
    assert response.status_code == 101
    assert response.reason_phrase == "Switching Protocols"
    assert response.headers["Upgrade"] == "websocket"
    assert response.headers["Connection"] == "Upgrade"
    assert response.headers["Sec-WebSocket-Accept"] == ACCEPT
    assert "Sec-WebSocket-Protocol" not in response.headers
    assert "Sec-WebSocket-Extensions" not in response.headers
    assert subprotocol is None
    assert extensions == []
    assert response.body == b""


@pytest.mark.parametrize(
    ("upgrade", "connection"),
    [
        ("websocket", "Upgrade"),
        ("WebSocket", "upgrade"),
        ("WEBSOCKET", "UPGRADE"),
        ("websocket", "keep-alive, Upgrade"),
        ("websocket", "Upgrade, keep-alive"),
        ("websocket", "keep-alive,upgrade"),
        ("h2c, websocket", "Upgrade"),
        ("websocket, foo/2", "close , Upgrade ,"),
    ],
)
def test_upgrade_and_connection_are_case_insensitive_lists(upgrade: str, connection: str) -> None:
    request = make_request(Upgrade=upgrade, Connection=connection)
    response, _, _ = server_accept(request, select_subprotocol=no_subprotocol)
    assert response.status_code == 101


def test_connection_split_over_several_fields() -> None:
    request = make_request(drop=["Connection"])
    request.headers["Connection"] = "keep-alive"
    request.headers["Connection"] = "Upgrade"
    response, _, _ = server_accept(request, select_subprotocol=no_subprotocol)
    assert response.status_code == 101


def test_missing_upgrade_gets_426() -> None:
    rejected = reject_of(make_request(drop=["Upgrade"]))
    response = rejected.response
    assert response.status_code == 426
    assert response.reason_phrase == "Upgrade Required"
    assert response.headers["Upgrade"] == "websocket"
    assert "Upgrade" in parse_token_list(response.headers.get_all("Connection"))
    assert b"Upgrade: websocket" in response.body
    # The error response is a well-formed HTTP message.
    parsed = parse_response(response.serialize())
    assert parsed is not None and parsed[0] == response


@pytest.mark.parametrize(
    ("upgrade", "connection", "header"),
    [
        ("websocket", None, "Connection"),
        ("websocket", "keep-alive", "Connection"),
        ("websocket", "Upgrade-Insecure", "Connection"),
        ("h2c", "Upgrade", "Upgrade"),
        ("websockets", "Upgrade", "Upgrade"),
        ("", "Upgrade", "Upgrade"),
    ],
)
def test_wrong_upgrade_or_connection_gets_400(
    upgrade: str, connection: str | None, header: str
) -> None:
    if connection is None:
        request = make_request(Upgrade=upgrade, drop=["Connection"])
    else:
        request = make_request(Upgrade=upgrade, Connection=connection)
    rejected = reject_of(request)
    assert rejected.response.status_code == 400
    assert header.encode() in rejected.response.body


@pytest.mark.parametrize(
    ("versions", "message"),
    [
        (["8"], "unsupported Sec-WebSocket-Version 8; use 13"),
        (["12"], "unsupported Sec-WebSocket-Version 12; use 13"),
        (["13, 8"], "unsupported Sec-WebSocket-Version 13, 8; use 13"),
        (["13", "13"], "unsupported Sec-WebSocket-Version 13, 13; use 13"),
        ([], "missing Sec-WebSocket-Version header; use 13"),
    ],
)
def test_wrong_version_gets_426(versions: list[str], message: str) -> None:
    request = make_request(drop=["Sec-WebSocket-Version"])
    for v in versions:
        request.headers["Sec-WebSocket-Version"] = v
    rejected = reject_of(request)
    assert rejected.response.status_code == 426
    assert rejected.response.headers["Sec-WebSocket-Version"] == "13"  # §4.4
    assert rejected.response.body == (message + "\n").encode()
    assert str(rejected) == message


@pytest.mark.parametrize(
    "key",
    [
        "",
        "not base64!",
        "dGhlIHNhbXBsZSBub25jZQ",  # no padding
        "dGhlIHNhbXBsZSBub25j",  # 15 bytes
        base64.b64encode(b"x" * 17).decode(),
        " dGhlIHNhbXBsZSBub25jZQ==x",
        "dGhlIHNhbXBsZSBub25jZQ==\u00e9",
    ],
)
def test_bad_key_gets_400(key: str) -> None:
    rejected = reject_of(make_request(Sec_WebSocket_Key=key))
    assert rejected.response.status_code == 400
    assert b"Sec-WebSocket-Key" in rejected.response.body


def test_missing_key_gets_400() -> None:
    rejected = reject_of(make_request(drop=["Sec-WebSocket-Key"]))
    assert rejected.response.status_code == 400
    assert rejected.response.body == b"missing Sec-WebSocket-Key header\n"


def test_two_keys_get_400() -> None:
    request = make_request()
    request.headers["Sec-WebSocket-Key"] = KEY
    rejected = reject_of(request)
    assert rejected.response.status_code == 400
    assert b"Sec-WebSocket-Key" in rejected.response.body


def test_missing_host_gets_400() -> None:
    rejected = reject_of(make_request(drop=["Host"]))
    assert rejected.response.status_code == 400
    assert rejected.response.body == b"missing Host header\n"


def test_two_hosts_get_400() -> None:
    request = make_request()
    request.headers["Host"] = "evil.example"
    rejected = reject_of(request)
    assert rejected.response.status_code == 400
    assert b"Host" in rejected.response.body


@pytest.mark.parametrize("method", ["POST", "PUT", "HEAD", "CONNECT", "get"])
def test_non_get_gets_405(method: str) -> None:
    rejected = reject_of(make_request(method=method))
    assert rejected.response.status_code == 405
    assert rejected.response.headers["Allow"] == "GET"
    assert f"not {method}".encode() in rejected.response.body


@pytest.mark.parametrize(
    ("offered", "choice", "expected"),
    [
        ("chat, superchat", "superchat", "superchat"),
        ("chat", "chat", "chat"),
        ("chat,superchat", "chat", "chat"),
        ("chat, superchat", None, None),
    ],
)
def test_subprotocol_selection(offered: str, choice: str | None, expected: str | None) -> None:
    seen: list[list[str]] = []

    def select(protocols: list[str]) -> str | None:
        seen.append(protocols)
        return choice

    response, subprotocol, _ = server_accept(
        make_request(Sec_WebSocket_Protocol=offered), select_subprotocol=select
    )
    assert seen == [parse_token_list([offered])]
    assert subprotocol == expected
    if expected is None:
        assert "Sec-WebSocket-Protocol" not in response.headers
    else:
        assert response.headers["Sec-WebSocket-Protocol"] == expected


def test_subprotocols_over_several_fields() -> None:
    request = make_request(Sec_WebSocket_Protocol="a")
    request.headers["Sec-WebSocket-Protocol"] = "b, c"
    seen: list[list[str]] = []

    def select(protocols: list[str]) -> str | None:
        seen.append(protocols)
        return protocols[-1]

    _, subprotocol, _ = server_accept(request, select_subprotocol=select)
    assert seen == [["a", "b", "c"]]
    assert subprotocol == "c"


def test_no_subprotocol_offered_skips_selector() -> None:
    def select(protocols: list[str]) -> str | None:
        raise AssertionError("called without an offer")

    _, subprotocol, _ = server_accept(make_request(), select_subprotocol=select)
    assert subprotocol is None


def test_selector_returning_unoffered_subprotocol() -> None:
    with pytest.raises(NegotiationError, match="'other' wasn't offered"):
        server_accept(
            make_request(Sec_WebSocket_Protocol="chat"), select_subprotocol=lambda _: "other"
        )


# -- extensions negotiation (server) ---------------------------------------------------


class Ext(Extension):
    def __init__(self, name: str, params: Sequence[ExtensionParameter]) -> None:
        self.name = name
        self.params = list(params)


class ServerFactory(ServerExtensionFactory):
    def __init__(self, name: str, accept_if: str | None = None) -> None:
        self.name = name
        self.accept_if = accept_if
        self.calls: list[list[ExtensionParameter]] = []

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        self.calls.append(list(params))
        if self.accept_if is not None and (self.accept_if, None) not in params:
            raise NegotiationError("declined")
        return list(params), Ext(self.name, params)


def test_server_extension_negotiation() -> None:
    factory = ServerFactory("x-foo", accept_if="b")
    request = make_request(Sec_WebSocket_Extensions="x-foo; a, x-other, x-foo; b; c=1")
    response, _, extensions = server_accept(
        request, select_subprotocol=no_subprotocol, extension_factories=[factory]
    )
    # The first offer is declined, the second accepted; x-other isn't supported.
    assert factory.calls == [[("a", None)], [("b", None), ("c", "1")]]
    assert [(e.name, e.params) for e in extensions] == [("x-foo", [("b", None), ("c", "1")])]  # type: ignore[attr-defined]
    assert response.headers["Sec-WebSocket-Extensions"] == "x-foo; b; c=1"


def test_server_extension_offers_over_several_fields() -> None:
    foo, bar = ServerFactory("x-foo"), ServerFactory("x-bar")
    request = make_request(Sec_WebSocket_Extensions="x-bar")
    request.headers["Sec-WebSocket-Extensions"] = 'x-foo; p="q"'
    response, _, extensions = server_accept(
        request, select_subprotocol=no_subprotocol, extension_factories=[foo, bar]
    )
    # Accepted in the client's order.
    assert [e.name for e in extensions] == ["x-bar", "x-foo"]
    assert response.headers["Sec-WebSocket-Extensions"] == "x-bar, x-foo; p=q"


def test_server_extensions_all_declined() -> None:
    factory = ServerFactory("x-foo", accept_if="never")
    response, _, extensions = server_accept(
        make_request(Sec_WebSocket_Extensions="x-foo"),
        select_subprotocol=no_subprotocol,
        extension_factories=[factory],
    )
    assert extensions == []
    assert "Sec-WebSocket-Extensions" not in response.headers


def test_server_ignores_extensions_without_factories() -> None:
    response, _, extensions = server_accept(
        make_request(Sec_WebSocket_Extensions="x-foo; ;;bad"), select_subprotocol=no_subprotocol
    )
    assert extensions == []
    assert response.status_code == 101


def test_server_malformed_extension_header_gets_400() -> None:
    rejected = reject_of(
        make_request(Sec_WebSocket_Extensions="x-foo; =1"),
        extension_factories=[ServerFactory("x-foo")],
    )
    assert rejected.response.status_code == 400
    assert b"Sec-WebSocket-Extensions" in rejected.response.body


# -- client side ---------------------------------------------------------------------------


def test_build_request() -> None:
    request = build_request(parse_uri("ws://example.com/chat?x=1"), KEY)
    assert request.method == "GET"
    assert request.path == "/chat?x=1"
    assert list(request.headers.raw_items()) == [
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
    ]
    # What the client builds, the server accepts.
    parsed = parse_request(request.serialize())
    assert parsed is not None
    response, _, _ = server_accept(parsed[0], select_subprotocol=no_subprotocol)
    assert check_response(response, KEY) == (None, [])


def test_build_request_options() -> None:
    class Factory(ClientExtensionFactory):
        name = "x-foo"

        def get_request_params(self) -> list[ExtensionParameter]:
            return [("a", None), ("b", "2")]

    request = build_request(
        parse_uri("wss://user:p%40ss@example.com:8443/"),
        KEY,
        origin="https://example.com",
        subprotocols=["chat", "superchat"],
        extension_factories=[Factory()],
        additional_headers=Headers({"X-Extra": "1"}),
        user_agent="ripple-test",
    )
    headers = request.headers
    assert headers["Host"] == "example.com:8443"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"user:p@ss").decode()
    assert headers["Origin"] == "https://example.com"
    assert headers["Sec-WebSocket-Protocol"] == "chat, superchat"
    assert headers["Sec-WebSocket-Extensions"] == "x-foo; a; b=2"
    assert headers["User-Agent"] == "ripple-test"
    assert headers["X-Extra"] == "1"


def test_check_response_ok() -> None:
    assert check_response(ok_response(), KEY) == (None, [])


@pytest.mark.parametrize("status", [200, 301, 400, 403, 426, 500])
def test_check_response_non_101(status: int) -> None:
    response = Response(status, "", Headers(), b"nope")
    with pytest.raises(InvalidStatus) as exc_info:
        check_response(response, KEY)
    assert exc_info.value.response is response
    assert str(exc_info.value) == f"server rejected WebSocket connection: HTTP {status}: nope"


def test_check_response_wrong_accept() -> None:
    response = ok_response()
    del response.headers["Sec-WebSocket-Accept"]
    response.headers["Sec-WebSocket-Accept"] = accept_key("another key")
    with pytest.raises(InvalidHeaderValue, match="invalid Sec-WebSocket-Accept header"):
        check_response(response, KEY)


def test_check_response_missing_accept() -> None:
    response = ok_response()
    del response.headers["Sec-WebSocket-Accept"]
    with pytest.raises(InvalidHeader, match="missing Sec-WebSocket-Accept header"):
        check_response(response, KEY)


def test_check_response_two_accepts() -> None:
    response = ok_response(Sec_WebSocket_Accept=ACCEPT)
    with pytest.raises(InvalidHeader, match="Sec-WebSocket-Accept"):
        check_response(response, KEY)


@pytest.mark.parametrize("name", ["Upgrade", "Connection"])
def test_check_response_missing_upgrade(name: str) -> None:
    response = ok_response()
    del response.headers[name]
    with pytest.raises(InvalidUpgrade, match=f"missing {name} header"):
        check_response(response, KEY)


def test_check_response_wrong_upgrade() -> None:
    response = ok_response()
    del response.headers["Upgrade"]
    response.headers["Upgrade"] = "h2c"
    with pytest.raises(InvalidUpgrade, match="invalid Upgrade header: h2c"):
        check_response(response, KEY)


def test_check_response_upgrade_case_insensitive_list() -> None:
    response = ok_response()
    del response.headers["Connection"]
    response.headers["Connection"] = "keep-alive, UPGRADE"
    assert check_response(response, KEY) == (None, [])


@pytest.mark.parametrize(
    ("offered", "chosen", "expected"),
    [
        (["chat", "superchat"], "superchat", "superchat"),
        (["chat"], "chat", "chat"),
        (["chat"], None, None),
        (None, None, None),
    ],
)
def test_check_response_subprotocol(
    offered: list[str] | None, chosen: str | None, expected: str | None
) -> None:
    response = ok_response() if chosen is None else ok_response(Sec_WebSocket_Protocol=chosen)
    assert check_response(response, KEY, subprotocols=offered) == (expected, [])


@pytest.mark.parametrize(
    ("offered", "chosen"), [(["chat"], "other"), (None, "chat"), ([], "chat")]
)
def test_check_response_unoffered_subprotocol(offered: list[str] | None, chosen: str) -> None:
    with pytest.raises(NegotiationError, match=f"'{chosen}' that wasn't offered"):
        check_response(ok_response(Sec_WebSocket_Protocol=chosen), KEY, subprotocols=offered)


def test_check_response_several_subprotocols() -> None:
    response = ok_response(Sec_WebSocket_Protocol="chat, superchat")
    with pytest.raises(InvalidHeader, match="Sec-WebSocket-Protocol"):
        check_response(response, KEY, subprotocols=["chat", "superchat"])


class ClientFactory(ClientExtensionFactory):
    def __init__(self, name: str, reject: bool = False) -> None:
        self.name = name
        self.reject = reject
        self.calls: list[list[ExtensionParameter]] = []

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> Extension:
        self.calls.append(list(params))
        if self.reject:
            raise NegotiationError(f"unexpected parameters for {self.name}")
        return Ext(self.name, params)


def test_check_response_extensions() -> None:
    foo, bar = ClientFactory("x-foo"), ClientFactory("x-bar")
    response = ok_response(Sec_WebSocket_Extensions="x-bar; q=1, x-foo")
    subprotocol, extensions = check_response(response, KEY, extension_factories=[foo, bar])
    assert subprotocol is None
    assert [e.name for e in extensions] == ["x-bar", "x-foo"]
    assert bar.calls == [[("q", "1")]] and foo.calls == [[]]


def test_check_response_unoffered_extension() -> None:
    response = ok_response(Sec_WebSocket_Extensions="x-other")
    with pytest.raises(NegotiationError, match="'x-other' that wasn't offered"):
        check_response(response, KEY, extension_factories=[ClientFactory("x-foo")])
    with pytest.raises(NegotiationError, match="'x-other' that wasn't offered"):
        check_response(response, KEY)


def test_check_response_extension_rejected_by_factory() -> None:
    response = ok_response(Sec_WebSocket_Extensions="x-foo; bad")
    with pytest.raises(NegotiationError, match="unexpected parameters for x-foo"):
        check_response(response, KEY, extension_factories=[ClientFactory("x-foo", reject=True)])


def test_check_response_malformed_extension_header() -> None:
    response = ok_response(Sec_WebSocket_Extensions="x-foo;")
    with pytest.raises(InvalidHeaderFormat, match="Sec-WebSocket-Extensions"):
        check_response(response, KEY, extension_factories=[ClientFactory("x-foo")])


def test_handshake_errors_are_invalid_handshake() -> None:
    for exc_type in (
        HandshakeRejected,
        InvalidStatus,
        InvalidHeader,
        InvalidUpgrade,
        NegotiationError,
        InvalidHeaderFormat,
    ):
        assert issubclass(exc_type, InvalidHandshake)


@settings(max_examples=200, deadline=None)
@given(
    headers=st.lists(
        st.tuples(
            st.sampled_from(
                [
                    "Host",
                    "Upgrade",
                    "Connection",
                    "Sec-WebSocket-Key",
                    "Sec-WebSocket-Version",
                    "Sec-WebSocket-Extensions",
                ]
            ),
            st.sampled_from(["websocket", "Upgrade", KEY, "13", "x", "", "x-foo; a=1"])
            # Header values never hold CR, LF or NUL: Headers refuses them.
            | st.text(st.characters(blacklist_characters="\r\n\x00"), max_size=10),
        ),
        max_size=8,
    ),
    method=st.sampled_from(["GET", "POST"]),
)
def test_server_accept_answers_or_rejects(headers: list[tuple[str, str]], method: str) -> None:
    request = Request("/", Headers(headers), method)
    try:
        response, _, accepted = server_accept(
            request,
            select_subprotocol=no_subprotocol,
            extension_factories=[ServerFactory("x-foo")],
        )
    except HandshakeRejected as exc:
        assert exc.response.status_code in (400, 405, 426)
        assert parse_response(exc.response.serialize()) is not None
    else:
        # Whatever the server accepts, a client that offered the same accepts.
        assert response.status_code == 101
        subprotocol, extensions = check_response(
            response,
            request.headers["Sec-WebSocket-Key"],
            extension_factories=[ClientFactory("x-foo")],
        )
        assert subprotocol is None
        assert [e.name for e in extensions] == [e.name for e in accepted]


# -- the shortcuts agree with the general checks ---------------------------------------


@settings(max_examples=500, deadline=None)
@given(
    st.text(alphabet="AQgwBa+/=0z9 \u00e9", min_size=20, max_size=28)
    | st.binary(min_size=14, max_size=18).map(lambda b: base64.b64encode(b).decode())
)
def test_key_shortcut_agrees_with_decoding(key: str) -> None:
    # _KEY accepts a key only if the decoding check would; anything it
    # doesn't accept goes through that check.
    try:
        valid = len(base64.b64decode(key.encode(), validate=True)) == 16
    except binascii.Error:
        valid = False
    if handshake._KEY.fullmatch(key):
        assert valid
    status = None
    try:
        server_accept(make_request(Sec_WebSocket_Key=key), select_subprotocol=no_subprotocol)
    except HandshakeRejected as exc:
        status = exc.response.status_code
    assert status == (None if valid else 400)


def test_key_with_non_canonical_last_character_is_accepted() -> None:
    # b64decode ignores the unused low bits: "R" instead of "Q" still decodes.
    key = KEY[:21] + "R=="
    assert len(base64.b64decode(key, validate=True)) == 16
    response, _, _ = server_accept(
        make_request(Sec_WebSocket_Key=key), select_subprotocol=no_subprotocol
    )
    assert response.headers["Sec-WebSocket-Accept"] == accept_key(key)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["Upgrade", "upgrade", "UPGRADE", " Upgrade ", "keep-alive", "", ","])
        | st.text(alphabet="upgrade ,", max_size=12),
        max_size=3,
    )
)
def test_has_token_agrees_with_the_token_list(values: list[str]) -> None:
    expected = "upgrade" in [t.lower() for t in parse_token_list(values)]
    assert handshake._has_token(values, "upgrade") is expected


def test_accept_key_matches_b64encode() -> None:
    for key in (KEY, generate_key(), generate_key()):
        digest = hashlib.sha1((key + handshake.GUID).encode()).digest()
        assert accept_key(key) == base64.b64encode(digest).decode()


def test_server_accept_parsed_and_built_requests_agree() -> None:
    # A parsed request (index built by the parser) and one built with
    # Headers() (index built on first use) give the same 101.
    built = make_request(Sec_WebSocket_Protocol="chat")
    parsed = parse_request(built.serialize())
    assert parsed is not None
    select = lambda offered: offered[0]  # noqa: E731
    a = server_accept(built, select_subprotocol=select)
    b = server_accept(parsed[0], select_subprotocol=select)
    assert a[0].serialize() == b[0].serialize()
    assert a[1:] == b[1:] == ("chat", [])
    assert list(a[0].headers.raw_items()) == [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Accept", ACCEPT),
        ("Sec-WebSocket-Protocol", "chat"),
    ]
