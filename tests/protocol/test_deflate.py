"""deflate.py: permessage-deflate (RFC 7692): negotiation, compression, limits.

Wire bytes are checked with protocol_helpers' own frame decoder and a plain
zlib inflater, not only by feeding them back to ripple.
"""

from __future__ import annotations

import random
import tracemalloc
import zlib
from collections.abc import Callable, Sequence
from typing import Any, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from protocol_helpers import RSV1, RSV2, cframe, close_codes, feed, parse_frames, sframe, split

from ripple.exceptions import (
    DuplicateParameter,
    InvalidParameterName,
    InvalidParameterValue,
    InvalidPayload,
    InvalidUTF8,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
)
from ripple.protocol import deflate
from ripple.protocol.deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
    client_default,
    compress_message,
    server_default,
    with_deflate,
)
from ripple.protocol.extensions import (
    ClientExtensionFactory,
    Extension,
    ServerExtensionFactory,
    parse_extension_header,
)
from ripple.protocol.frames import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    encode_frame,
)
from ripple.protocol.handshake import accept_key, build_request, check_response, server_accept
from ripple.protocol.headers import Headers
from ripple.protocol.http11 import Request, Response
from ripple.protocol.state import CLIENT, SERVER, Ping, Protocol
from ripple.protocol.uri import parse_uri

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
PMD = "permessage-deflate"
TAIL = b"\x00\x00\xff\xff"  # §7.2.1: what senders strip and receivers append
#: server_default()'s answer to ripple's own client and to browsers.
DEFAULT_ANSWER = (
    "permessage-deflate; server_no_context_takeover; "
    "server_max_window_bits=12; client_max_window_bits=12"
)

Message = Union[str, bytes]


# -- helpers --------------------------------------------------------------------------------


def no_subprotocol(offered: list[str]) -> str | None:
    return None


def request_with(*offers: str) -> Request:
    """A valid handshake request with one Sec-WebSocket-Extensions field per offer."""
    headers = Headers(
        [
            ("Host", "example.com"),
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Key", KEY),
            ("Sec-WebSocket-Version", "13"),
        ]
    )
    for offer in offers:
        headers["Sec-WebSocket-Extensions"] = offer
    return Request("/", headers)


def accept(
    *offers: str, factory: ServerExtensionFactory | None = None
) -> tuple[str | None, list[Extension]]:
    """Run server_accept; return the Sec-WebSocket-Extensions answer and the extensions."""
    response, _, extensions = server_accept(
        request_with(*offers),
        select_subprotocol=no_subprotocol,
        extension_factories=[factory or ServerPerMessageDeflateFactory()],
    )
    assert response.status_code == 101
    answers = response.headers.get_all("Sec-WebSocket-Extensions")
    assert len(answers) <= 1
    return (answers[0] if answers else None), extensions


def response_with(*answers: str) -> Response:
    headers = Headers(
        [
            ("Upgrade", "websocket"),
            ("Connection", "Upgrade"),
            ("Sec-WebSocket-Accept", accept_key(KEY)),
        ]
    )
    for answer in answers:
        headers["Sec-WebSocket-Extensions"] = answer
    return Response(101, "Switching Protocols", headers)


def settings_of(ext: Extension) -> tuple[bool, bool, int, int]:
    """(remote_no_context_takeover, local_no_context_takeover, remote bits, local bits)."""
    assert isinstance(ext, PerMessageDeflate)
    return (
        ext.remote_no_context_takeover,
        ext.local_no_context_takeover,
        ext.remote_max_window_bits,
        ext.local_max_window_bits,
    )


def offer_header(factory: ClientExtensionFactory) -> str:
    request = build_request(parse_uri("ws://example.com/"), KEY, extension_factories=[factory])
    return request.headers["Sec-WebSocket-Extensions"]


def negotiate(
    server_factory: ServerExtensionFactory, client_factory: ClientExtensionFactory
) -> tuple[PerMessageDeflate, PerMessageDeflate, str]:
    """A whole handshake: (client's extension, server's extension, the answer header)."""
    request = build_request(
        parse_uri("ws://example.com/"), KEY, extension_factories=[client_factory]
    )
    response, _, server_exts = server_accept(
        request, select_subprotocol=no_subprotocol, extension_factories=[server_factory]
    )
    _, client_exts = check_response(response, KEY, extension_factories=[client_factory])
    assert len(server_exts) == len(client_exts) == 1
    client_ext, server_ext = client_exts[0], server_exts[0]
    assert isinstance(client_ext, PerMessageDeflate)
    assert isinstance(server_ext, PerMessageDeflate)
    # What one side sends, the other can read.
    assert client_ext.local_no_context_takeover == server_ext.remote_no_context_takeover
    assert server_ext.local_no_context_takeover == client_ext.remote_no_context_takeover
    assert client_ext.local_max_window_bits <= server_ext.remote_max_window_bits
    assert server_ext.local_max_window_bits <= client_ext.remote_max_window_bits
    return client_ext, server_ext, response.headers["Sec-WebSocket-Extensions"]


def connect(
    server_factory: ServerExtensionFactory | None = None,
    client_factory: ClientExtensionFactory | None = None,
    *,
    max_size: int | None = None,
) -> tuple[Protocol, Protocol]:
    """A (client, server) pair of protocols with permessage-deflate negotiated."""
    client_ext, server_ext, _ = negotiate(
        server_factory or server_default(), client_factory or client_default()
    )
    return (
        Protocol(CLIENT, max_size=max_size, extensions=[client_ext]),
        Protocol(SERVER, max_size=max_size, extensions=[server_ext]),
    )


def send(proto: Protocol, message: Message, fragments: int = 1) -> bytes:
    """Encode a message, in `fragments` frames (text is cut on character boundaries)."""
    if fragments <= 1:
        return proto.send_text(message) if isinstance(message, str) else proto.send_binary(message)
    size = -(-len(message) // fragments) or 1
    parts = [message[i : i + size] for i in range(0, len(message), size)] or [message]
    if isinstance(message, str):
        out = [proto.send_text(parts[0], fin=len(parts) == 1)]  # type: ignore[arg-type]
    else:
        out = [proto.send_binary(parts[0], fin=len(parts) == 1)]  # type: ignore[arg-type]
    for i, part in enumerate(parts[1:], 2):
        data = part.encode() if isinstance(part, str) else part
        out.append(proto.send_continuation(data, fin=i == len(parts)))
    return b"".join(out)


class Inflater:
    """An independent reader of compressed messages: plain zlib, a 15-bit window
    (enough for any sender), context kept unless told otherwise."""

    def __init__(self, context_takeover: bool = True) -> None:
        self.context_takeover = context_takeover
        self.d = zlib.decompressobj(-15)

    def messages(self, wire: bytes) -> list[Message]:
        """Decode the data messages in `wire`; check RSV1 sits on first frames only."""
        out: list[Message] = []
        opcode, rsv1, parts = 0, False, []
        for f in parse_frames(wire):
            if f.opcode >= OP_CLOSE:
                assert f.rsv == 0
                continue
            if f.opcode != OP_CONT:
                opcode, rsv1, parts = f.opcode, f.rsv == RSV1, []
            else:
                assert f.rsv == 0, "RSV1 on a continuation frame"
            parts.append(f.payload)
            if f.fin:
                data = b"".join(parts)
                if rsv1:
                    data = self.d.decompress(data + TAIL)
                    assert not self.d.unconsumed_tail
                    if not self.context_takeover:
                        self.d = zlib.decompressobj(-15)
                out.append(data.decode() if opcode == OP_TEXT else data)
        return out


def deflate_raw(chunks: Sequence[bytes], wbits: int = 15, finish: bool = False) -> list[bytes]:
    """Compress chunks as frames of one message: each ends with a sync flush;
    the last has its tail stripped (or ends with a BFINAL block if `finish`)."""
    c = zlib.compressobj(9, zlib.DEFLATED, -wbits)
    out = [c.compress(chunk) + c.flush(zlib.Z_SYNC_FLUSH) for chunk in chunks[:-1]]
    last = c.compress(chunks[-1]) + c.flush(zlib.Z_FINISH if finish else zlib.Z_SYNC_FLUSH)
    if not finish:
        assert last.endswith(TAIL)
        last = last[:-4]
    return [*out, last]


def compressed_message(
    opcode: int, chunks: Sequence[bytes], *, mask: bool = True, finish: bool = False
) -> bytes:
    """A compressed message in len(chunks) frames, as a client (mask) or server sends it."""
    payloads = deflate_raw(chunks, finish=finish)
    frames = []
    for i, payload in enumerate(payloads):
        frames.append(
            encode_frame(
                opcode if i == 0 else OP_CONT,
                payload,
                fin=i == len(payloads) - 1,
                rsv=RSV1 if i == 0 else 0,
                mask=mask,
            )
        )
    return b"".join(frames)


def assert_failed(proto: Protocol, code: int, exc_type: type[ProtocolError]) -> None:
    assert close_codes(proto.data_to_send()) == [code]
    assert isinstance(proto.failed, exc_type)


# -- constructors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "build",
    [
        lambda: PerMessageDeflate(False, False, 7, 15),
        lambda: PerMessageDeflate(False, False, 16, 15),
        lambda: PerMessageDeflate(False, False, 15, 8),
        lambda: PerMessageDeflate(False, False, 15, 16),
        lambda: ServerPerMessageDeflateFactory(server_max_window_bits=8),
        lambda: ServerPerMessageDeflateFactory(server_max_window_bits=16),
        lambda: ServerPerMessageDeflateFactory(client_max_window_bits=7),
        lambda: ServerPerMessageDeflateFactory(client_max_window_bits=16),
        lambda: ServerPerMessageDeflateFactory(compress_settings={"wbits": 9}),
        lambda: ServerPerMessageDeflateFactory(compress_settings={"windowBits": 8}),
        lambda: ClientPerMessageDeflateFactory(compress_settings={"windowBits": 16}),
        lambda: ClientPerMessageDeflateFactory(server_max_window_bits=7),
        lambda: ClientPerMessageDeflateFactory(server_max_window_bits=16),
        lambda: ClientPerMessageDeflateFactory(client_max_window_bits=8),
        lambda: ClientPerMessageDeflateFactory(client_max_window_bits=16),
        lambda: ClientPerMessageDeflateFactory(compress_settings={"strategy": 1}),
    ],
)
def test_constructors_reject_out_of_range(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()


def test_compress_settings_default_and_override() -> None:
    ext = PerMessageDeflate(False, False, 15, 15)
    assert (ext.level, ext.mem_level) == (6, 5)
    ext = PerMessageDeflate(False, False, 15, 15, {"level": 1})
    assert (ext.level, ext.mem_level) == (1, 5)
    # windowBits: a smaller window than negotiated (any is valid for the peer).
    assert PerMessageDeflate(False, False, 15, 15, {"windowBits": 10}).local_max_window_bits == 10
    assert PerMessageDeflate(False, False, 15, 11, {"windowBits": 13}).local_max_window_bits == 11
    assert "PerMessageDeflate(" in repr(ext)


# -- defaults -----------------------------------------------------------------------------


def test_server_default() -> None:
    f = server_default()
    assert isinstance(f, ServerPerMessageDeflateFactory)
    assert f.name == PMD
    # No context takeover for what the server sends: no compressor held
    # between messages, and broadcast() can compress once for everyone.
    assert (f.server_no_context_takeover, f.client_no_context_takeover) == (True, False)
    assert (f.server_max_window_bits, f.client_max_window_bits) == (12, 12)
    assert dict(f.compress_settings or {}) == {"level": 6, "memLevel": 5, "windowBits": 12}
    assert f.require_client_max_window_bits is False


def test_client_default() -> None:
    f = client_default()
    assert isinstance(f, ClientPerMessageDeflateFactory)
    assert f.name == PMD
    assert (f.server_no_context_takeover, f.client_no_context_takeover) == (False, False)
    # Offered without a value (as browsers do); we compress with 12 bits
    # whatever the server answers.
    assert (f.server_max_window_bits, f.client_max_window_bits) == (None, True)
    assert dict(f.compress_settings or {}) == {"level": 6, "memLevel": 5, "windowBits": 12}
    assert f.get_request_params() == [("client_max_window_bits", None)]


@pytest.mark.parametrize(
    ("offer", "answer", "expected"),
    [
        # ripple's own client: both windows 12 bits.
        (
            "permessage-deflate; client_max_window_bits=12",
            DEFAULT_ANSWER,
            (False, True, 12, 12),
        ),
        # A browser-style offer: the server picks the client's window.
        (
            "permessage-deflate; client_max_window_bits",
            DEFAULT_ANSWER,
            (False, True, 12, 12),
        ),
        # A bare offer: the client keeps its 15-bit window.
        (
            "permessage-deflate",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=12",
            (False, True, 15, 12),
        ),
        # A client wanting an even smaller window for us gets it.
        (
            "permessage-deflate; server_max_window_bits=10; client_max_window_bits=9",
            "permessage-deflate; server_no_context_takeover; "
            "server_max_window_bits=10; client_max_window_bits=9",
            (False, True, 9, 10),
        ),
    ],
)
def test_server_default_answers(
    offer: str, answer: str, expected: tuple[bool, bool, int, int]
) -> None:
    header, extensions = accept(offer, factory=server_default())
    assert header == answer
    assert [settings_of(e) for e in extensions] == [expected]
    ext = extensions[0]
    assert isinstance(ext, PerMessageDeflate)
    assert (ext.level, ext.mem_level) == (6, 5)


def test_defaults_end_to_end() -> None:
    assert offer_header(client_default()) == "permessage-deflate; client_max_window_bits"
    client_ext, server_ext, answer = negotiate(server_default(), client_default())
    assert answer == DEFAULT_ANSWER
    assert settings_of(client_ext) == (True, False, 12, 12)
    assert settings_of(server_ext) == (False, True, 12, 12)
    assert client_ext.shared_key is None
    assert server_ext.shared_key == (12, 6, 5)


@pytest.mark.parametrize(
    ("server_factory", "answer", "client_settings"),
    [
        # A server that doesn't choose our window: we still compress with 12 bits.
        (ServerPerMessageDeflateFactory, PMD, (False, False, 15, 12)),
        # One that answers 15 whatever we offer (Autobahn does).
        (
            lambda: ServerPerMessageDeflateFactory(client_max_window_bits=15),
            "permessage-deflate; client_max_window_bits=15",
            (False, False, 15, 12),
        ),
        (
            lambda: ServerPerMessageDeflateFactory(client_max_window_bits=10),
            "permessage-deflate; client_max_window_bits=10",
            (False, False, 15, 10),
        ),
    ],
)
def test_client_default_against_other_servers(
    server_factory: Callable[[], ServerExtensionFactory],
    answer: str,
    client_settings: tuple[bool, bool, int, int],
) -> None:
    client_ext, _, header = negotiate(server_factory(), client_default())
    assert header == answer
    assert settings_of(client_ext) == client_settings


def test_with_deflate() -> None:
    assert [f.name for f in with_deflate([], server_default)] == [PMD]
    assert [f.name for f in with_deflate([], client_default)] == [PMD]
    assert with_deflate([], None) == []
    # A factory the caller configured wins over the default.
    mine = ServerPerMessageDeflateFactory(server_no_context_takeover=True)
    assert with_deflate([mine], server_default) == [mine]
    other = ServerExtensionFactory()
    other.name = "x-other"
    result = with_deflate([other], server_default)
    assert result[0] is other and [f.name for f in result] == ["x-other", PMD]


# -- negotiation: the server ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "offer", "answer", "expected"),
    [
        ({}, PMD, PMD, (False, False, 15, 15)),
        # §7.1.1.1: server_no_context_takeover is honoured.
        (
            {},
            "permessage-deflate; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover",
            (False, True, 15, 15),
        ),
        # §7.1.1.2: the client announces it resets its compressor.
        (
            {},
            "permessage-deflate; client_no_context_takeover",
            "permessage-deflate; client_no_context_takeover",
            (True, False, 15, 15),
        ),
        # §7.1.2.1: our window is at most what the client asks.
        (
            {},
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
            (False, False, 15, 10),
        ),
        (
            {},
            'permessage-deflate; server_max_window_bits="10"',
            "permessage-deflate; server_max_window_bits=10",
            (False, False, 15, 10),
        ),
        (
            {},
            "permessage-deflate; server_max_window_bits=15",
            "permessage-deflate; server_max_window_bits=15",
            (False, False, 15, 15),
        ),
        # §7.1.2.2: without a value, we may choose the client's window; we don't.
        ({}, "permessage-deflate; client_max_window_bits", PMD, (False, False, 15, 15)),
        # With a value, the client uses at most that: we decompress with it.
        (
            {},
            "permessage-deflate; client_max_window_bits=10",
            "permessage-deflate; client_max_window_bits=10",
            (False, False, 10, 15),
        ),
        # 8 bits is fine for decompressing.
        (
            {},
            "permessage-deflate; client_max_window_bits=8",
            "permessage-deflate; client_max_window_bits=8",
            (False, False, 8, 15),
        ),
        (
            {"server_no_context_takeover": True},
            PMD,
            "permessage-deflate; server_no_context_takeover",
            (False, True, 15, 15),
        ),
        (
            {"client_no_context_takeover": True},
            PMD,
            "permessage-deflate; client_no_context_takeover",
            (True, False, 15, 15),
        ),
        (
            {"server_max_window_bits": 11},
            PMD,
            "permessage-deflate; server_max_window_bits=11",
            (False, False, 15, 11),
        ),
        (
            {"server_max_window_bits": 11},
            "permessage-deflate; server_max_window_bits=13",
            "permessage-deflate; server_max_window_bits=11",
            (False, False, 15, 11),
        ),
        (
            {"server_max_window_bits": 13},
            "permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; server_max_window_bits=10",
            (False, False, 15, 10),
        ),
        # We can't choose the client's window unless it offered the parameter.
        ({"client_max_window_bits": 11}, PMD, PMD, (False, False, 15, 15)),
        (
            {"client_max_window_bits": 11},
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; client_max_window_bits=11",
            (False, False, 11, 15),
        ),
        (
            {"client_max_window_bits": 11},
            "permessage-deflate; client_max_window_bits=9",
            "permessage-deflate; client_max_window_bits=9",
            (False, False, 9, 15),
        ),
        (
            {"client_max_window_bits": 11},
            "permessage-deflate; client_max_window_bits=13",
            "permessage-deflate; client_max_window_bits=11",
            (False, False, 11, 15),
        ),
        (
            {"require_client_max_window_bits": True},
            "permessage-deflate; client_max_window_bits",
            PMD,
            (False, False, 15, 15),
        ),
        # Everything at once, in the client's order or not.
        (
            {},
            "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9; "
            "client_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=9; client_max_window_bits=9",
            (True, True, 9, 9),
        ),
    ],
)
def test_server_accepts(
    kwargs: dict[str, Any], offer: str, answer: str, expected: tuple[bool, bool, int, int]
) -> None:
    header, extensions = accept(offer, factory=ServerPerMessageDeflateFactory(**kwargs))
    assert header == answer
    assert [settings_of(e) for e in extensions] == [expected]


@pytest.mark.parametrize(
    ("kwargs", "offer", "error"),
    [
        (
            {},
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            DuplicateParameter,
        ),
        (
            {},
            "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
            DuplicateParameter,
        ),
        (
            {},
            "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
            DuplicateParameter,
        ),
        (
            {},
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            DuplicateParameter,
        ),
        ({}, "permessage-deflate; foo", InvalidParameterName),
        ({}, "permessage-deflate; x-server_max_window_bits=10", InvalidParameterName),
        ({}, "permessage-deflate; server_no_context_takeover=1", InvalidParameterValue),
        ({}, "permessage-deflate; client_no_context_takeover=x", InvalidParameterValue),
        ({}, "permessage-deflate; server_max_window_bits", InvalidParameterValue),
        *[
            ({}, f"permessage-deflate; {name}={value}", InvalidParameterValue)
            for name in ("server_max_window_bits", "client_max_window_bits")
            for value in (
                "7",
                "16",
                "010",
                "09",
                "0",
                "abc",
                "-9",
                "+9",
                "9.0",
                "1e1",
                '""',
                '" 9"',
            )
        ],
        # Not ASCII digits ("²" is a latin-1 header byte; the others come from
        # a Request built in code).
        ({}, "permessage-deflate; server_max_window_bits=²", InvalidParameterValue),
        ({}, "permessage-deflate; client_max_window_bits=¹", InvalidParameterValue),
        ({}, "permessage-deflate; server_max_window_bits=٩", InvalidParameterValue),
        ({}, "permessage-deflate; client_max_window_bits=\uff11\uff10", InvalidParameterValue),
        # zlib can't compress with an 8-bit window.
        ({}, "permessage-deflate; server_max_window_bits=8", NegotiationError),
        (
            {"server_max_window_bits": 9},
            "permessage-deflate; server_max_window_bits=8",
            NegotiationError,
        ),
        ({"require_client_max_window_bits": True}, PMD, NegotiationError),
    ],
)
def test_server_declines(kwargs: dict[str, Any], offer: str, error: type[Exception]) -> None:
    factory = ServerPerMessageDeflateFactory(**kwargs)
    [(_, params)] = parse_extension_header(offer)
    with pytest.raises(error):
        factory.process_request_params(params, [])
    # Through the handshake: the offer is declined, the connection still opens.
    header, extensions = accept(offer, factory=factory)
    assert header is None and extensions == []


@pytest.mark.parametrize(
    ("offers", "factory", "answer"),
    [
        # The first offer we can honour wins; later ones aren't accepted too.
        (
            [
                "permessage-deflate; server_max_window_bits=8, "
                "permessage-deflate; client_max_window_bits, permessage-deflate"
            ],
            server_default,
            DEFAULT_ANSWER,
        ),
        (
            [
                "permessage-deflate; server_max_window_bits=8, "
                "permessage-deflate; client_max_window_bits, permessage-deflate"
            ],
            ServerPerMessageDeflateFactory,
            PMD,
        ),
        # The same offers over several header fields.
        (
            [
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate",
            ],
            server_default,
            DEFAULT_ANSWER,
        ),
        # Unknown extensions and broken offers are skipped.
        (
            [
                "x-unknown; a=1, permessage-deflate; foo, permessage-deflate; "
                "server_max_window_bits=abc, permessage-deflate; client_no_context_takeover, "
                "permessage-deflate; server_no_context_takeover"
            ],
            server_default,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=12",
        ),
        # A server that insists on choosing the client's window skips bare offers.
        (
            ["permessage-deflate, permessage-deflate; client_max_window_bits=10"],
            lambda: ServerPerMessageDeflateFactory(require_client_max_window_bits=True),
            "permessage-deflate; client_max_window_bits=10",
        ),
    ],
)
def test_server_takes_first_acceptable_offer(
    offers: list[str], factory: Callable[[], ServerExtensionFactory], answer: str
) -> None:
    header, extensions = accept(*offers, factory=factory())
    assert header == answer
    assert len(extensions) == 1


def test_server_declines_every_offer() -> None:
    header, extensions = accept(
        "permessage-deflate; server_max_window_bits=8, permessage-deflate; bogus",
        factory=server_default(),
    )
    assert header is None and extensions == []


def test_server_refuses_second_deflate_directly() -> None:
    factory = ServerPerMessageDeflateFactory()
    _, first = factory.process_request_params([], [])
    with pytest.raises(NegotiationError):
        factory.process_request_params([], [first])


# -- negotiation: the client ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "offer"),
    [
        ({}, "permessage-deflate; client_max_window_bits"),
        ({"client_max_window_bits": None}, PMD),
        ({"client_max_window_bits": 11}, "permessage-deflate; client_max_window_bits=11"),
        (
            {
                "server_no_context_takeover": True,
                "client_no_context_takeover": True,
                "server_max_window_bits": 10,
                "client_max_window_bits": 11,
            },
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "server_max_window_bits=10; client_max_window_bits=11",
        ),
        (
            {"server_max_window_bits": 8},
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits",
        ),
    ],
)
def test_client_offers(kwargs: dict[str, Any], offer: str) -> None:
    assert offer_header(ClientPerMessageDeflateFactory(**kwargs)) == offer


@pytest.mark.parametrize(
    ("kwargs", "answer", "expected"),
    [
        ({}, PMD, (False, False, 15, 15)),
        ({}, "permessage-deflate; client_max_window_bits=10", (False, False, 15, 10)),
        ({}, "permessage-deflate; server_max_window_bits=10", (False, False, 10, 15)),
        # The server may choose these on its own.
        ({}, "permessage-deflate; server_no_context_takeover", (True, False, 15, 15)),
        ({}, "permessage-deflate; client_no_context_takeover", (False, True, 15, 15)),
        ({"client_no_context_takeover": True}, PMD, (False, True, 15, 15)),
        (
            {"server_no_context_takeover": True},
            "permessage-deflate; server_no_context_takeover",
            (True, False, 15, 15),
        ),
        (
            {"server_max_window_bits": 10},
            "permessage-deflate; server_max_window_bits=10",
            (False, False, 10, 15),
        ),
        (
            {"server_max_window_bits": 10},
            "permessage-deflate; server_max_window_bits=8",
            (False, False, 8, 15),
        ),
        # An offered value holds even when the server doesn't repeat it.
        ({"client_max_window_bits": 11}, PMD, (False, False, 15, 11)),
        (
            {"client_max_window_bits": 11},
            "permessage-deflate; client_max_window_bits=9",
            (False, False, 15, 9),
        ),
        (
            {"client_max_window_bits": 11},
            "permessage-deflate; client_max_window_bits=11",
            (False, False, 15, 11),
        ),
        (
            {},
            'permessage-deflate; server_max_window_bits="9"; client_max_window_bits=9; '
            "server_no_context_takeover; client_no_context_takeover",
            (True, True, 9, 9),
        ),
    ],
)
def test_client_accepts(
    kwargs: dict[str, Any], answer: str, expected: tuple[bool, bool, int, int]
) -> None:
    factory = ClientPerMessageDeflateFactory(**kwargs)
    _, extensions = check_response(response_with(answer), KEY, extension_factories=[factory])
    assert [settings_of(e) for e in extensions] == [expected]


@pytest.mark.parametrize(
    ("kwargs", "answer", "error"),
    [
        # client_max_window_bits we didn't offer.
        (
            {"client_max_window_bits": None},
            "permessage-deflate; client_max_window_bits=10",
            NegotiationError,
        ),
        # A larger client window than we offered.
        (
            {"client_max_window_bits": 11},
            "permessage-deflate; client_max_window_bits=12",
            NegotiationError,
        ),
        # zlib can't compress with 8 bits.
        ({}, "permessage-deflate; client_max_window_bits=8", NegotiationError),
        # Ignored server_no_context_takeover / server_max_window_bits.
        ({"server_no_context_takeover": True}, PMD, NegotiationError),
        ({"server_max_window_bits": 10}, PMD, NegotiationError),
        (
            {"server_max_window_bits": 10},
            "permessage-deflate; server_max_window_bits=11",
            NegotiationError,
        ),
        # Malformed answers.
        (
            {},
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            DuplicateParameter,
        ),
        (
            {},
            "permessage-deflate; client_max_window_bits=9; client_max_window_bits=9",
            DuplicateParameter,
        ),
        ({}, "permessage-deflate; foo=1", InvalidParameterName),
        ({}, "permessage-deflate; server_max_window_bits", InvalidParameterValue),
        ({}, "permessage-deflate; client_max_window_bits", InvalidParameterValue),
        ({}, "permessage-deflate; client_no_context_takeover=1", InvalidParameterValue),
        *[
            ({}, f"permessage-deflate; {name}={value}", InvalidParameterValue)
            for name in ("server_max_window_bits", "client_max_window_bits")
            for value in ("7", "16", "010", "abc", "²")
        ],
        # Accepted twice.
        ({}, "permessage-deflate, permessage-deflate", NegotiationError),
    ],
)
def test_client_rejects(kwargs: dict[str, Any], answer: str, error: type[Exception]) -> None:
    factory = ClientPerMessageDeflateFactory(**kwargs)
    with pytest.raises(error):
        check_response(response_with(answer), KEY, extension_factories=[factory])


def test_client_rejects_deflate_twice_over_two_fields() -> None:
    with pytest.raises(NegotiationError):
        check_response(
            response_with(PMD, PMD), KEY, extension_factories=[ClientPerMessageDeflateFactory()]
        )


@settings(max_examples=200, deadline=None)
@given(
    snct=st.booleans(),
    cnct=st.booleans(),
    sbits=st.one_of(st.none(), st.integers(9, 15)),
    cbits=st.one_of(st.none(), st.integers(9, 15)),
    ask_snct=st.booleans(),
    ask_cnct=st.booleans(),
    ask_sbits=st.one_of(st.none(), st.integers(9, 15)),
    offer_cbits=st.one_of(st.none(), st.just(True), st.integers(9, 15)),
)
def test_any_ripple_pair_agrees(
    snct: bool,
    cnct: bool,
    sbits: int | None,
    cbits: int | None,
    ask_snct: bool,
    ask_cnct: bool,
    ask_sbits: int | None,
    offer_cbits: int | bool | None,
) -> None:
    """Whatever both sides are configured with, the server's answer is one the
    client accepts (or the handshake ends without the extension), and the two
    extensions mirror each other (checked in negotiate)."""
    server_factory = ServerPerMessageDeflateFactory(snct, cnct, sbits, cbits)
    client_factory = ClientPerMessageDeflateFactory(ask_snct, ask_cnct, ask_sbits, offer_cbits)
    request = build_request(
        parse_uri("ws://example.com/"), KEY, extension_factories=[client_factory]
    )
    _, _, server_exts = server_accept(
        request, select_subprotocol=no_subprotocol, extension_factories=[server_factory]
    )
    _, server_ext, _ = negotiate(server_factory, client_factory)
    assert server_ext.local_no_context_takeover == (snct or ask_snct)
    assert server_ext.remote_no_context_takeover == (cnct or ask_cnct)
    assert server_ext.local_max_window_bits == min(sbits or 15, ask_sbits or 15)
    assert len(server_exts) == 1


# -- round trips ------------------------------------------------------------------------------

CONFIGS: list[
    tuple[str, Callable[[], ServerExtensionFactory], Callable[[], ClientExtensionFactory]]
] = [
    ("defaults", server_default, client_default),
    ("plain", ServerPerMessageDeflateFactory, ClientPerMessageDeflateFactory),
    (
        "no-context-takeover",
        lambda: ServerPerMessageDeflateFactory(True, True),
        ClientPerMessageDeflateFactory,
    ),
    (
        "small-windows",
        lambda: ServerPerMessageDeflateFactory(server_max_window_bits=9, client_max_window_bits=9),
        ClientPerMessageDeflateFactory,
    ),
    (
        "windowBits-settings",
        lambda: ServerPerMessageDeflateFactory(compress_settings={"windowBits": 9}),
        lambda: ClientPerMessageDeflateFactory(compress_settings={"windowBits": 10}),
    ),
    (
        "mixed",
        lambda: ServerPerMessageDeflateFactory(server_no_context_takeover=True),
        lambda: ClientPerMessageDeflateFactory(
            server_max_window_bits=10, client_max_window_bits=11
        ),
    ),
]
CONFIG_IDS = [c[0] for c in CONFIGS]

_rng = random.Random(7692)
MESSAGES: list[Message] = [
    "",
    b"",
    "Hello",
    b"\x00\xff\x00",
    "é€𝄞" * 500,
    bytes(range(256)) * 64,
    _rng.randbytes(3000),  # incompressible
    "the quick brown fox " * 5000,  # 100 kB, repetitive
]


def _transfer(sender: Protocol, receiver: Protocol, messages: Sequence[Message]) -> bytes:
    wire = b"".join(send(sender, m) for m in messages)
    assert feed(receiver, [wire]) == list(messages)
    assert receiver.failed is None
    return wire


@pytest.mark.parametrize(("name", "server_factory", "client_factory"), CONFIGS, ids=CONFIG_IDS)
def test_round_trip_both_directions(
    name: str,
    server_factory: Callable[[], ServerExtensionFactory],
    client_factory: Callable[[], ClientExtensionFactory],
) -> None:
    client, server = connect(server_factory(), client_factory())
    client_ext, server_ext = client.extensions[0], server.extensions[0]
    assert isinstance(client_ext, PerMessageDeflate) and isinstance(server_ext, PerMessageDeflate)
    for sender, receiver, ext in ((client, server, client_ext), (server, client, server_ext)):
        # Twice over: with context takeover the second round refers back.
        wire = _transfer(sender, receiver, MESSAGES + MESSAGES)
        frames = parse_frames(wire)
        assert len(frames) == 2 * len(MESSAGES)
        assert all(f.rsv == RSV1 and f.fin for f in frames)
        assert all(f.masked is (sender is client) for f in frames)
        # An independent reader agrees.
        inflater = Inflater(context_takeover=not ext.local_no_context_takeover)
        assert inflater.messages(wire) == MESSAGES + MESSAGES
        # Repetitive data is actually compressed.
        assert len(frames[-1].payload) < len(MESSAGES[-1]) // 20
        # RFC 7692 §7.2.3.6: an empty message compresses to a single 0x00 byte.
        assert frames[0].payload == b"\x00"


def test_context_takeover_shrinks_repeated_messages() -> None:
    message = _rng.randbytes(2000)
    sizes = {}
    for nct in (False, True):
        client, server = connect(ServerPerMessageDeflateFactory(server_no_context_takeover=nct))
        wire = _transfer(server, client, [message, message])
        sizes[nct] = [len(f.payload) for f in parse_frames(wire)]
    # With context takeover the repeat is a back-reference; without, it isn't.
    assert sizes[False][1] < 50 < sizes[False][0]
    assert sizes[True][0] == sizes[True][1] > 1900


@pytest.mark.parametrize("size", [2**20, 3 * 2**20])
def test_large_messages(size: int) -> None:
    client, server = connect()
    text = ("".join(chr(0x41 + i % 26) for i in range(1000)) + "🙂") * (size // 1004)
    blob = _rng.randbytes(size)
    _transfer(client, server, [text, blob, text])
    _transfer(server, client, [blob, text, blob])


@pytest.mark.parametrize(("name", "server_factory", "client_factory"), CONFIGS, ids=CONFIG_IDS)
def test_fragmented_send_received_whole(
    name: str,
    server_factory: Callable[[], ServerExtensionFactory],
    client_factory: Callable[[], ClientExtensionFactory],
) -> None:
    client, server = connect(server_factory(), client_factory())
    for sender, receiver in ((client, server), (server, client)):
        wire = [
            sender.send_text("Hello, ", fin=False),
            sender.send_ping(b"in between"),
            sender.send_continuation("wörld ".encode() * 300, fin=False),
            sender.send_continuation(b"", fin=False),
            sender.send_continuation(b"!", fin=True),
            sender.send_binary(b"\x01" * 10, fin=False),
            sender.send_continuation(b"\x02" * 10, fin=True),
            send(sender, "after"),
        ]
        frames = parse_frames(b"".join(wire))
        assert [(f.opcode, f.fin, f.rsv) for f in frames] == [
            (OP_TEXT, False, RSV1),
            (OP_PING, True, 0),
            (OP_CONT, False, 0),
            (OP_CONT, False, 0),
            (OP_CONT, True, 0),
            (OP_BINARY, False, RSV1),
            (OP_CONT, True, 0),
            (OP_TEXT, True, RSV1),
        ]
        assert frames[1].payload == b"in between"
        events = feed(receiver, wire)
        assert len(events) == 4
        assert isinstance(events[0], Ping) and events[0].data == b"in between"
        assert events[1:] == [
            "Hello, " + "wörld " * 300 + "!",
            b"\x01" * 10 + b"\x02" * 10,
            "after",
        ]
        receiver.data_to_send()  # the pong


def test_utf8_split_across_compressed_fragments() -> None:
    client, server = connect()
    data = "𝄞".encode()
    wire = [
        client.send_text("", fin=False),
        client.send_continuation(data[:1], fin=False),
        client.send_continuation(data[1:3], fin=False),
        client.send_continuation(data[3:], fin=True),
    ]
    assert feed(server, wire) == ["𝄞"]


message_st = st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    # Repetitive data makes back-references, across messages too.
    st.builds(lambda s, n: s * n, st.text(min_size=1, max_size=8), st.integers(0, 800)),
    st.builds(lambda b, n: b * n, st.binary(min_size=1, max_size=8), st.integers(0, 800)),
)


@settings(max_examples=150, deadline=None)
@given(
    messages=st.lists(st.tuples(message_st, st.integers(1, 4)), max_size=12),
    server_nct=st.booleans(),
    client_nct=st.booleans(),
    server_bits=st.integers(9, 15),
    client_bits=st.integers(9, 15),
    chunks=st.lists(st.integers(1, 300), min_size=1, max_size=6),
)
def test_round_trip_property(
    messages: list[tuple[Message, int]],
    server_nct: bool,
    client_nct: bool,
    server_bits: int,
    client_bits: int,
    chunks: list[int],
) -> None:
    client, server = connect(
        ServerPerMessageDeflateFactory(server_nct, client_nct, server_bits, client_bits),
        ClientPerMessageDeflateFactory(),
    )
    expected = [m for m, _ in messages]
    for sender, receiver, nct in ((client, server, client_nct), (server, client, server_nct)):
        wire = b"".join(send(sender, m, fragments) for m, fragments in messages)
        assert feed(receiver, split(wire, chunks)) == expected
        assert receiver.failed is None
        assert Inflater(context_takeover=not nct).messages(wire) == expected


# -- control frames and plain messages --------------------------------------------------------


@pytest.mark.parametrize("side", ["client", "server"])
def test_control_frames_never_compressed(side: str) -> None:
    client, server = connect(ServerPerMessageDeflateFactory(), ClientPerMessageDeflateFactory())
    proto, peer = (client, server) if side == "client" else (server, client)
    send(proto, "warm up the compressor " * 10)  # mid-stream, not fresh
    out = proto.send_ping(b"ping!") + proto.send_pong(b"pong!") + proto.send_close(1000, "bye")
    frames = parse_frames(out)
    assert [(f.opcode, f.rsv, f.payload) for f in frames] == [
        (OP_PING, 0, b"ping!"),
        (OP_PONG, 0, b"pong!"),
        (OP_CLOSE, 0, b"\x03\xe8bye"),
    ]
    # Replies the protocol sends on its own: pong and the close echo.
    fresh_client, fresh_server = connect()
    if side == "client":
        fresh_client.receive_data(sframe(OP_PING, b"hi") + sframe(OP_CLOSE, b"\x03\xe8"))
        replies = parse_frames(b"".join(fresh_client.data_to_send()))
    else:
        fresh_server.receive_data(cframe(OP_PING, b"hi") + cframe(OP_CLOSE, b"\x03\xe8"))
        replies = parse_frames(b"".join(fresh_server.data_to_send()))
    assert [(f.opcode, f.rsv, f.payload) for f in replies] == [
        (OP_PONG, 0, b"hi"),
        (OP_CLOSE, 0, b"\x03\xe8"),
    ]
    assert peer.failed is None


@pytest.mark.parametrize("nct", [False, True])
def test_plain_message_on_deflate_connection(nct: bool) -> None:
    client, server = connect(ServerPerMessageDeflateFactory(client_no_context_takeover=nct))
    text = "compress me " * 50
    wire = [
        send(client, text),
        cframe(OP_TEXT, b"plain"),  # RSV1 clear: not compressed
        cframe(OP_BINARY, b"pl", fin=False),
        cframe(OP_PING, b"p"),
        cframe(OP_CONT, b"ain"),
        send(client, text),  # refers back to the first, across the plain ones
        cframe(OP_TEXT, b""),
    ]
    events = feed(server, wire)
    assert events[:2] == [text, "plain"]
    assert isinstance(events[2], Ping)
    assert events[3:] == [b"plain", text, ""]
    assert server.failed is None


# Frames a client sends that break permessage-deflate: (frames, close code, exception).
BAD_INPUT: list[tuple[str, Callable[[], list[bytes]], int, type[ProtocolError]]] = [
    (
        "rsv1-on-continuation-of-compressed",
        lambda: [
            cframe(OP_TEXT, deflate_raw([b"a", b"b"])[0], fin=False, rsv=RSV1),
            cframe(OP_CONT, deflate_raw([b"a", b"b"])[1], rsv=RSV1),
        ],
        1002,
        ProtocolError,
    ),
    (
        "rsv1-on-continuation-of-plain",
        lambda: [cframe(OP_TEXT, b"a", fin=False), cframe(OP_CONT, b"b", rsv=RSV1)],
        1002,
        ProtocolError,
    ),
    ("rsv1-on-ping", lambda: [cframe(OP_PING, b"", rsv=RSV1)], 1002, ProtocolError),
    ("rsv1-on-pong", lambda: [cframe(OP_PONG, b"x", rsv=RSV1)], 1002, ProtocolError),
    ("rsv1-on-close", lambda: [cframe(OP_CLOSE, b"\x03\xe8", rsv=RSV1)], 1002, ProtocolError),
    ("rsv2", lambda: [cframe(OP_TEXT, b"x", rsv=RSV2)], 1002, ProtocolError),
    ("rsv1-rsv2", lambda: [cframe(OP_TEXT, b"x", rsv=RSV1 | RSV2)], 1002, ProtocolError),
    # 0xff: a block with the reserved type 11.
    ("garbage", lambda: [cframe(OP_BINARY, b"\xff" * 8, rsv=RSV1)], 1007, InvalidPayload),
    ("garbage-text", lambda: [cframe(OP_TEXT, b"\xff\xff", rsv=RSV1)], 1007, InvalidPayload),
    (
        "garbage-in-continuation",
        lambda: [
            cframe(OP_BINARY, deflate_raw([b"ok", b""])[0], fin=False, rsv=RSV1),
            cframe(OP_CONT, b"\xff\xff\xff"),
        ],
        1007,
        InvalidPayload,
    ),
    (
        "invalid-utf8",
        lambda: [cframe(OP_TEXT, deflate_raw([b"caf\xe9"])[0], rsv=RSV1)],
        1007,
        InvalidUTF8,
    ),
    (
        "truncated-utf8",
        lambda: [cframe(OP_TEXT, deflate_raw(["é".encode()[:1]])[0], rsv=RSV1)],
        1007,
        InvalidUTF8,
    ),
    (
        "invalid-utf8-across-fragments",
        lambda: [
            cframe(OP_CONT if i else OP_TEXT, p, fin=i == 1, rsv=0 if i else RSV1)
            for i, p in enumerate(deflate_raw([b"ok \xe2\x82", b"("]))
        ],
        1007,
        InvalidUTF8,
    ),
    (
        "surrogate",
        lambda: [cframe(OP_TEXT, deflate_raw([b"\xed\xa0\x80"])[0], rsv=RSV1)],
        1007,
        InvalidUTF8,
    ),
    (
        "data-after-final-block",
        lambda: [cframe(OP_TEXT, deflate_raw([b"Hello"], finish=True)[0] + b"junk", rsv=RSV1)],
        1007,
        InvalidPayload,
    ),
    (
        "data-after-final-block-in-continuation",
        lambda: [
            cframe(OP_TEXT, deflate_raw([b"Hello"], finish=True)[0], fin=False, rsv=RSV1),
            cframe(OP_CONT, b"\x00"),
        ],
        1007,
        InvalidPayload,
    ),
]


@pytest.mark.parametrize(
    ("name", "frames", "code", "exc_type"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT]
)
def test_bad_input_fails_connection(
    name: str, frames: Callable[[], list[bytes]], code: int, exc_type: type[ProtocolError]
) -> None:
    _, server = connect(ServerPerMessageDeflateFactory(), ClientPerMessageDeflateFactory())
    feed(server, [cframe(OP_TEXT, b"plain first")])
    assert server.failed is None
    events = feed(server, frames())
    assert not [e for e in events if isinstance(e, (str, bytes))]
    assert_failed(server, code, exc_type)
    assert server.close_transport


def test_bad_input_fails_client_too() -> None:
    client, _ = connect()
    client.receive_data(sframe(OP_TEXT, b"a", fin=False) + sframe(OP_CONT, b"b", rsv=RSV1))
    assert_failed(client, 1002, ProtocolError)
    client, _ = connect()
    client.receive_data(sframe(OP_BINARY, b"\xff\xff", rsv=RSV1))
    assert_failed(client, 1007, InvalidPayload)
    client, _ = connect()
    client.receive_data(sframe(OP_PING, b"", rsv=RSV1))
    assert_failed(client, 1002, ProtocolError)


@pytest.mark.parametrize("remote_nct", [False, True])
def test_messages_ending_with_bfinal_block(remote_nct: bool) -> None:
    """RFC 7692 §7.2.3.4: a sender may end a message with a BFINAL block
    instead of a sync flush; the next message then starts a new stream."""
    _, server = connect(ServerPerMessageDeflateFactory(client_no_context_takeover=remote_nct))
    # §7.2.3.4's own example: "Hello" with BFINAL set.
    assert deflate_raw([b"Hello"], finish=True)[0] == bytes.fromhex("f348cdc9c90700")
    wire = [
        compressed_message(OP_TEXT, [b"Hello"], finish=True),
        compressed_message(OP_TEXT, [b"World"], finish=True),
        compressed_message(OP_BINARY, [b"frag", b"mented"], finish=True),
        # BFINAL in a first frame, then an empty continuation.
        cframe(OP_TEXT, deflate_raw([b"early end"], finish=True)[0], fin=False, rsv=RSV1),
        cframe(OP_CONT, b""),
        # Then ordinary sync-flushed messages from a fresh compressor.
        compressed_message(OP_TEXT, [b"again and again"]),
    ]
    events = feed(server, wire)
    assert events == ["Hello", "World", b"fragmented", "early end", "again and again"]
    assert server.failed is None


# -- max_size on the decompressed size -------------------------------------------------------


class RecordingZlib:
    """Stands in for the zlib module inside deflate.py; records every
    decompress() call's max_length and output size."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []  # (max_length, len(output))

    def __getattr__(self, name: str) -> Any:
        return getattr(zlib, name)

    def decompressobj(self, wbits: int) -> Any:
        recorder = self

        class Recording:
            def __init__(self) -> None:
                self._d = zlib.decompressobj(wbits)

            def decompress(self, data: bytes, max_length: int = 0) -> bytes:
                out = self._d.decompress(data, max_length)
                recorder.calls.append((max_length, len(out)))
                return out

            def __getattr__(self, name: str) -> Any:
                return getattr(self._d, name)

        return Recording()

    @property
    def produced(self) -> int:
        return sum(n for _, n in self.calls)


@pytest.fixture
def recording(monkeypatch: pytest.MonkeyPatch) -> RecordingZlib:
    rec = RecordingZlib()
    monkeypatch.setattr(deflate, "zlib", rec)
    return rec


MAX = 2**16


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([bytes(2**24)], id="16MiB-zeros-one-frame"),
        pytest.param([bytes(MAX + 1)], id="one-byte-over"),
        pytest.param([bytes(MAX // 2), bytes(MAX // 2), b"x"], id="fragments-one-byte-over"),
        pytest.param([bytes(3 * MAX // 4), bytes(2**22)], id="fragments-bomb-in-second"),
        pytest.param([b"a" * (MAX // 16)] * 40, id="many-small-fragments"),
        pytest.param([b"", bytes(2**23)], id="bomb-after-empty-fragment"),
    ],
)
@pytest.mark.parametrize("opcode", [OP_BINARY, OP_TEXT])
def test_max_size_enforced_while_decompressing(
    recording: RecordingZlib, chunks: list[bytes], opcode: int
) -> None:
    _, server = connect(max_size=MAX)
    wire = compressed_message(opcode, chunks)
    assert len(wire) < MAX  # small on the wire: only decompression can tell
    events = feed(server, [wire])
    assert events == []
    assert_failed(server, 1009, PayloadTooBig)
    # The decompressor was bounded by max_size + 1 and never went past it.
    assert recording.calls
    assert all(0 < limit <= MAX + 1 and n <= limit for limit, n in recording.calls)
    assert recording.produced <= MAX + 1


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([bytes(MAX)], id="one-frame"),
        pytest.param([bytes(MAX // 2), b"", bytes(MAX // 2)], id="fragments"),
        pytest.param([b"a" * (MAX // 16)] * 16, id="many-fragments"),
    ],
)
def test_max_size_exactly_is_accepted(recording: RecordingZlib, chunks: list[bytes]) -> None:
    _, server = connect(max_size=MAX)
    assert feed(server, [compressed_message(OP_BINARY, chunks)]) == [b"".join(chunks)]
    assert server.failed is None
    assert recording.produced == MAX


def test_max_size_counts_each_message_afresh(recording: RecordingZlib) -> None:
    _, server = connect(max_size=MAX)
    wire = [compressed_message(OP_BINARY, [bytes(MAX)]) for _ in range(5)]
    assert feed(server, wire) == [bytes(MAX)] * 5
    assert server.failed is None


def test_oversized_compressed_frame_rejected_before_decompressing(
    recording: RecordingZlib,
) -> None:
    _, server = connect(max_size=1000)
    # Incompressible: the compressed frame itself is well over max_size + slack.
    wire = compressed_message(OP_BINARY, [_rng.randbytes(4000)])
    server.receive_data(wire[:20])  # the header alone decides
    assert_failed(server, 1009, PayloadTooBig)
    assert recording.calls == []


def test_no_max_size_means_no_limit(recording: RecordingZlib) -> None:
    _, server = connect(max_size=None)
    assert feed(server, [compressed_message(OP_BINARY, [bytes(2**22)])]) == [bytes(2**22)]
    assert all(limit == 0 for limit, _ in recording.calls)


def test_bomb_memory_stays_bounded() -> None:
    """A 256 MiB bomb against max_size=1 MiB: traced allocations stay near max_size."""
    max_size = 2**20
    _, server = connect(max_size=max_size)
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    piece = c.compress(bytes(2**20)) + c.flush(zlib.Z_FULL_FLUSH)
    bomb = piece * 256  # independent blocks: 256 MiB of zeros
    wire = encode_frame(OP_BINARY, bomb, rsv=RSV1, mask=True)
    assert len(wire) < max_size // 2
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        server.receive_data(wire)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert_failed(server, 1009, PayloadTooBig)
    # Copies of the ~260 kB frame plus at most max_size + 1 bytes of output.
    assert peak - base < 4 * max_size


# -- memory-light state -------------------------------------------------------------------------


def zlib_state(proto: Protocol) -> tuple[bool, bool]:
    """(has a compressor, has a decompressor)."""
    ext = proto.extensions[0]
    assert isinstance(ext, PerMessageDeflate)
    return ext._compressor is not None, ext._decompressor is not None


def test_idle_connection_holds_no_zlib_state() -> None:
    client, server = connect()
    assert zlib_state(client) == zlib_state(server) == (False, False)
    # Control frames and plain messages don't create any either.
    server.receive_data(cframe(OP_PING, b"x") + cframe(OP_TEXT, b"plain"))
    server.send_ping(b"y")
    client.send_pong(b"z")
    assert zlib_state(client) == zlib_state(server) == (False, False)


@pytest.mark.parametrize("server_nct", [False, True])
@pytest.mark.parametrize("client_nct", [False, True])
def test_zlib_state_dropped_without_context_takeover(server_nct: bool, client_nct: bool) -> None:
    client, server = connect(ServerPerMessageDeflateFactory(server_nct, client_nct))
    for _ in range(2):
        _transfer(client, server, ["to the server " * 20])
        _transfer(server, client, ["to the client " * 20])
        assert zlib_state(client) == (not client_nct, not server_nct)
        assert zlib_state(server) == (not server_nct, not client_nct)


def test_zlib_state_kept_until_end_of_fragmented_message() -> None:
    client, server = connect(ServerPerMessageDeflateFactory(True, True))
    first = client.send_text("part one ", fin=False)
    assert zlib_state(client) == (True, False)
    middle = client.send_continuation(b"part two ", fin=False)
    assert zlib_state(client) == (True, False)
    assert feed(server, [first, middle]) == []
    assert zlib_state(server) == (False, True)
    last = client.send_continuation(b"end", fin=True)
    assert zlib_state(client) == (False, False)
    assert feed(server, [last]) == ["part one part two end"]
    assert zlib_state(server) == (False, False)


def test_idle_connections_cost_little_memory() -> None:
    """Per connection pair, tracemalloc sees a few hundred bytes when idle or
    without context takeover, and tens of kB of zlib state with it."""
    n = 50

    def cost(factory: Callable[[], ServerExtensionFactory], exchange: bool) -> float:
        keep: list[tuple[Protocol, Protocol]] = []
        tracemalloc.start()
        try:
            before, _ = tracemalloc.get_traced_memory()
            for _ in range(n):
                client, server = connect(factory())
                if exchange:
                    feed(server, [send(client, "some message " * 20)])
                    feed(client, [send(server, "some reply " * 20)])
                keep.append((client, server))
            after, _ = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        return (after - before) / n

    idle = cost(server_default, exchange=False)
    used_nct = cost(lambda: ServerPerMessageDeflateFactory(True, True, 12, 12), exchange=True)
    used_ctx = cost(lambda: ServerPerMessageDeflateFactory(False, False, 12, 12), exchange=True)
    assert idle < 8 * 1024
    assert used_nct < 8 * 1024
    assert used_ctx > 4 * max(idle, used_nct)


# -- shared_key and compress_message (broadcast) ----------------------------------------------


def test_shared_key() -> None:
    ext = PerMessageDeflate(False, True, 15, 11, {"level": 3, "memLevel": 7})
    assert ext.shared_key == (11, 3, 7)
    assert PerMessageDeflate(True, False, 15, 11).shared_key is None
    _, server_ext, _ = negotiate(ServerPerMessageDeflateFactory(), client_default())
    assert server_ext.shared_key is None
    _, server_ext, _ = negotiate(server_default(), client_default())
    assert server_ext.shared_key == (12, 6, 5)
    _, server_ext, _ = negotiate(
        ServerPerMessageDeflateFactory(server_no_context_takeover=True), client_default()
    )
    assert server_ext.shared_key == (15, 6, 5)


BROADCAST_SERVERS: list[ServerExtensionFactory] = [
    ServerPerMessageDeflateFactory(server_no_context_takeover=True),
    ServerPerMessageDeflateFactory(server_no_context_takeover=True, server_max_window_bits=12),
    ServerPerMessageDeflateFactory(
        server_no_context_takeover=True, client_no_context_takeover=True, client_max_window_bits=9
    ),
    ServerPerMessageDeflateFactory(
        server_no_context_takeover=True, compress_settings={"level": 1, "memLevel": 9}
    ),
]
BROADCAST_CLIENTS: list[ClientExtensionFactory] = [
    client_default(),
    ClientPerMessageDeflateFactory(),
    ClientPerMessageDeflateFactory(client_no_context_takeover=True, client_max_window_bits=10),
    ClientPerMessageDeflateFactory(server_max_window_bits=12),
]


@settings(max_examples=60, deadline=None)
@given(messages=st.lists(st.tuples(message_st, st.booleans()), min_size=1, max_size=8))
def test_broadcast_bytes_match_own_encoder(messages: list[tuple[Message, bool]]) -> None:
    """With no context takeover on the server's side, what broadcast() would
    send is byte for byte what each connection would encode, and every peer
    decodes it, interleaved with the connection's own sends."""
    pairs = [
        connect(server_factory, client_factory)
        for server_factory in BROADCAST_SERVERS
        for client_factory in BROADCAST_CLIENTS
    ]
    for message, shared in messages:
        opcode = OP_TEXT if isinstance(message, str) else OP_BINARY
        payload = message.encode() if isinstance(message, str) else message
        cache: dict[tuple[int, int, int], bytes] = {}
        for client, server in pairs:
            ext = server.extensions[0]
            assert isinstance(ext, PerMessageDeflate)
            key = ext.shared_key
            assert key is not None
            if key not in cache:
                cache[key] = encode_frame(opcode, compress_message(payload, key), rsv=RSV1)
            broadcast = cache[key]
            if shared:
                data = broadcast
            else:
                data = send(server, message)
                assert data == broadcast
            assert client.receive_data(data) == [message]
            assert client.failed is None
    # Same parameters, same bytes: one compression per distinct key.
    keys = {pair[1].extensions[0].shared_key for pair in pairs}  # type: ignore[attr-defined]
    assert len(keys) == 4


def test_compress_message_strips_tail_and_empty_is_one_byte() -> None:
    key = (15, 6, 5)
    assert compress_message(b"", key) == b"\x00"
    out = compress_message(b"Hello", key)
    assert not out.endswith(TAIL)
    assert zlib.decompressobj(-15).decompress(out + TAIL) == b"Hello"


def test_server_factory_refuses_8_bit_client_window() -> None:
    # Valid on the wire, but no zlib-based client (ripple's included) can comply.
    with pytest.raises(ValueError, match="between 9 and 15"):
        ServerPerMessageDeflateFactory(client_max_window_bits=8)
