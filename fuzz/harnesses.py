"""Fuzz targets: one function per parser, bytes in, an exception out only on a bug.

Each target takes arbitrary bytes and drives ripple's sans-I/O code with
them. The protocol's own errors (the ones ripple turns into a close code or
an HTTP error response) are expected and swallowed; anything else escaping a
target -- an IndexError, a struct.error, a zlib.error, a failed assertion
about what came out -- is a bug.

The targets import nothing from atheris, so they run in-process in
``tests/protocol/test_fuzz_corpus.py`` on the checked-in seed corpus (they
can't rot) and under atheris in ``fuzz/run.py`` (``make fuzz``).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

from ripple.exceptions import (
    InvalidHandshake,
    InvalidHeaderFormat,
    NegotiationError,
    ProtocolError,
)
from ripple.protocol.deflate import (
    ClientPerMessageDeflateFactory,
    PerMessageDeflate,
    ServerPerMessageDeflateFactory,
    client_default,
    server_default,
)
from ripple.protocol.extensions import (
    Extension,
    ExtensionParameter,
    Frame,
    parse_extension_header,
    serialize_extension_header,
)
from ripple.protocol.handshake import check_response, server_accept
from ripple.protocol.http11 import Request, Response, parse_request, parse_response
from ripple.protocol.state import CLIENT, SERVER, Ping, Pong, Protocol, Side

__all__ = ["KEY", "MASK_KEY", "TARGETS", "frame_input"]

#: The Sec-WebSocket-Key the client-side HTTP target checks responses against.
KEY = "dGhlIHNhbXBsZSBub25jZQ=="
#: The masking key structured frame inputs are masked with (server side).
MASK_KEY = b"\x12\x34\x56\x78"
#: max_size choices, picked by bits 2-3 of the first input byte.
MAX_SIZES: tuple[int | None, ...] = (2**20, 125, 0, None)
#: Close codes a failed connection may send (protocol error, bad data, too big).
FAIL_CODES = frozenset((1002, 1007, 1009))

Target = Callable[[bytes], None]


class HarnessError(AssertionError):
    """An invariant the code under test broke: a bug, reported as a crash."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise HarnessError(message)


# -- frames ----------------------------------------------------------------------------


def _xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i & 3] for i, b in enumerate(data))


def _frame(b0: int, payload: bytes, masked: bool) -> bytes:
    n = len(payload)
    bit = 0x80 if masked else 0
    if n < 126:
        head = bytes((b0, bit | n))
    elif n < 65536:
        head = bytes((b0, bit | 126)) + struct.pack("!H", n)
    else:
        head = bytes((b0, bit | 127)) + struct.pack("!Q", n)
    return head + MASK_KEY + _xor(payload, MASK_KEY) if masked else head + payload


def frame_input(frames: Sequence[tuple[int, bytes]]) -> bytes:
    """Build the structured-mode body for `frames` ((first byte, payload) pairs):
    the inverse of what :func:`_structured` decodes. Used for seeds."""
    out = bytearray()
    for b0, payload in frames:
        assert len(payload) < 256
        out += bytes((b0, len(payload))) + payload
    return bytes(out)


def _structured(body: bytes, masked: bool) -> bytes:
    # (first byte, length byte, payload) triples: the fuzzer picks headers and
    # payloads, the harness gets masking and length encoding right, so the
    # mutations reach fragmentation, control frames and the deflate decoder.
    wire = bytearray()
    pos = 0
    while pos + 2 <= len(body):
        b0, n = body[pos], body[pos + 1]
        payload = body[pos + 2 : pos + 2 + n]
        pos += 2 + n
        wire += _frame(b0, payload, masked)
    return bytes(wire)


def _deflate(side: Side, variant: int) -> PerMessageDeflate:
    """A permessage-deflate extension as negotiation builds it for `side`."""
    params: list[ExtensionParameter] = []
    if variant & 1:
        params.append(("client_no_context_takeover", None))
    if variant & 2:
        params.append(("server_max_window_bits", "9"))
    if side is SERVER:
        params.append(("client_max_window_bits", None))
        return server_default().process_request_params(params, [])[1]
    factory = ClientPerMessageDeflateFactory(client_max_window_bits=None)
    return factory.process_response_params(params, [])


def _wire_frames(data: bytes) -> list[tuple[int, bool, bytes]]:
    """Decode complete frames written by the protocol: (opcode, masked, payload)."""
    frames = []
    pos = 0
    while pos < len(data):
        check(len(data) - pos >= 2, "truncated frame header in output")
        b0, b1 = data[pos], data[pos + 1]
        pos += 2
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack_from("!H", data, pos)
            pos += 2
        elif n == 127:
            (n,) = struct.unpack_from("!Q", data, pos)
            pos += 8
        masked = bool(b1 & 0x80)
        key = data[pos : pos + 4] if masked else b""
        pos += len(key)
        payload = data[pos : pos + n]
        check(len(payload) == n, "truncated frame payload in output")
        pos += n
        frames.append((b0 & 0x0F, masked, _xor(payload, key) if masked else payload))
    return frames


def _run_frames(
    side: Side,
    max_size: int | None,
    deflate: int | None,
    defer: bool,
    wire: bytes,
    chunk: int,
) -> tuple[list[object], Protocol]:
    extensions: list[Extension] = [] if deflate is None else [_deflate(side, deflate)]
    proto = Protocol(side, max_size=max_size, extensions=extensions, defer_failure=defer)
    events: list[object] = []
    step = chunk or len(wire) or 1
    for i in range(0, len(wire), step):
        events.extend(proto.receive_data(wire[i : i + step]))
    if defer and proto.pending_failure is not None:
        proto.fail(proto.pending_failure)
    return events, proto


def _check_frames_outcome(
    proto: Protocol, events: list[object], max_size: int | None, side: Side
) -> None:
    for event in events:
        check(type(event) in (str, bytes, Ping, Pong), f"unexpected event {event!r}")
        if isinstance(event, (Ping, Pong)):
            check(len(event.data) <= 125, "control frame payload over 125 bytes")
        elif max_size is not None:
            size = len(event.encode()) if isinstance(event, str) else len(event)
            check(size <= max_size, f"message of {size} bytes over max_size {max_size}")
    out = _wire_frames(b"".join(proto.data_to_send()))
    check(all(masked is (side is CLIENT) for _, masked, _ in out), "wrong masking in output")
    check(all(op in (0x8, 0xA) for op, _, _ in out), "protocol wrote a frame on its own")
    closes = [payload for op, _, payload in out if op == 0x8]
    check(len(closes) <= 1, "more than one close frame")
    if proto.failed is not None:
        check(isinstance(proto.failed, ProtocolError), "failed with a foreign exception")
        check(proto.failed.code in FAIL_CODES, f"failed with code {proto.failed.code}")
        check(proto.close_transport is (side is SERVER), "close_transport after failure")
        if closes:
            code = struct.unpack("!H", closes[0][:2])[0]
            check(code == proto.failed.code, "close code differs from the error's")


def _norm(events: list[object]) -> list[object]:
    return [(type(e).__name__, e.data) if isinstance(e, (Ping, Pong)) else e for e in events]


def frames(data: bytes) -> None:
    """Protocol.receive_data on either side, with or without permessage-deflate.

    Byte 0 picks the configuration: bit 0 side, bit 1 deflate, bits 2-3
    max_size, bit 4 structured input (see :func:`_structured`), bit 5
    defer_failure, bits 6-7 deflate parameters. Byte 1 is the chunk size
    (0: all at once). The rest is the input. The same input fed whole must
    give the same events and outcome (chunking changes nothing).
    """
    if len(data) < 2:
        return
    config, chunk = data[0], data[1]
    side = CLIENT if config & 1 else SERVER
    deflate = (config >> 6) if config & 2 else None
    max_size = MAX_SIZES[(config >> 2) & 3]
    defer = bool(config & 32)
    body = data[2:]
    wire = _structured(body, side is SERVER) if config & 16 else body
    events, proto = _run_frames(side, max_size, deflate, defer, wire, chunk)
    _check_frames_outcome(proto, events, max_size, side)
    if chunk:
        whole, other = _run_frames(side, max_size, deflate, defer, wire, 0)
        check(_norm(whole) == _norm(events), "chunked and whole input gave different events")
        check(type(other.failed) is type(proto.failed), "chunking changed the failure")
        check(other.close_rcvd == proto.close_rcvd, "chunking changed the close frame")


# -- HTTP ------------------------------------------------------------------------------


def _select(offered: list[str]) -> str | None:
    return offered[0] if offered else None


def _http_request(data: bytes) -> None:
    try:
        parsed = parse_request(data)
    except InvalidHandshake:
        return
    if parsed is None:
        return
    request, consumed = parsed
    check(0 < consumed <= len(data), f"consumed {consumed} of {len(data)} bytes")
    check(isinstance(request, Request), "parse_request returned a non-Request")
    try:
        check(parse_request(data[: consumed - 1]) is None, "a prefix of a request parsed")
    except InvalidHandshake:
        raise HarnessError("a prefix of a valid request failed") from None
    try:
        response, _, extensions = server_accept(
            request,
            select_subprotocol=_select,
            extension_factories=[server_default(), ServerPerMessageDeflateFactory()],
            origins=["https://app.example", None],
        )
    except InvalidHandshake:
        return
    check(response.status_code == 101, "server_accept returned a non-101 without raising")
    check(len(extensions) <= 1, "permessage-deflate negotiated twice")
    # What the server would write must parse back (as the client reads it).
    reparsed = parse_response(response.serialize())
    check(reparsed is not None and reparsed[0].status_code == 101, "the 101 doesn't parse")


def _http_response(data: bytes) -> None:
    try:
        parsed = parse_response(data)
    except InvalidHandshake:
        return
    if parsed is None:
        return
    response, consumed = parsed
    check(0 < consumed <= len(data), f"consumed {consumed} of {len(data)} bytes")
    check(isinstance(response, Response), "parse_response returned a non-Response")
    try:
        check_response(
            response,
            KEY,
            subprotocols=["chat", "superchat"],
            extension_factories=[client_default()],
        )
    except InvalidHandshake:
        return


def http(data: bytes) -> None:
    """parse_request + server_accept (byte 0 even), parse_response +
    check_response (byte 0 odd) on the rest of the input."""
    if not data:
        return
    if data[0] & 1:
        _http_response(data[1:])
    else:
        _http_request(data[1:])


# -- permessage-deflate negotiation ------------------------------------------------------

_SERVER_FACTORIES: tuple[ServerPerMessageDeflateFactory, ...] = (
    server_default(),
    ServerPerMessageDeflateFactory(),
    ServerPerMessageDeflateFactory(
        client_no_context_takeover=True,
        server_max_window_bits=10,
        require_client_max_window_bits=True,
    ),
)
_CLIENT_FACTORIES: tuple[ClientPerMessageDeflateFactory, ...] = (
    client_default(),
    ClientPerMessageDeflateFactory(
        server_no_context_takeover=True, server_max_window_bits=10, client_max_window_bits=11
    ),
    ClientPerMessageDeflateFactory(client_max_window_bits=None),
)


def _round_trip(sender: Extension, receiver: Extension) -> None:
    message = b"permessage-deflate " * 8
    for _ in range(2):  # twice: context takeover between messages
        out = receiver.decode(sender.encode(Frame(0x2, message)), max_size=2**16)
        check(out.data == message, "negotiated extensions don't agree")


def extensions(data: bytes) -> None:
    """parse_extension_header, then every deflate factory on what it parsed.

    Byte 0 even: the value is a client's offer, answered by each server
    factory; the answer must parse again and a client that offered exactly
    the accepted parameters must accept it and agree (a message round trip).
    Byte 0 odd: the value is a server's answer, checked by each client factory.
    """
    if not data:
        return
    header = data[1:].decode("latin-1")
    try:
        parsed = parse_extension_header(header)
    except InvalidHeaderFormat:
        return
    for name, params in parsed:
        if name != "permessage-deflate":
            continue
        if data[0] & 1:
            for client_factory in _CLIENT_FACTORIES:
                try:
                    client_factory.process_response_params(params, [])
                except NegotiationError:
                    pass
            continue
        for factory in _SERVER_FACTORIES:
            try:
                answer, server_ext = factory.process_request_params(params, [])
            except NegotiationError:
                continue
            answer_text = serialize_extension_header([(name, answer)])
            check(
                parse_extension_header(answer_text) == [(name, answer)],
                f"the server's answer {answer_text!r} doesn't parse back",
            )
            offered = dict(params)
            bits = offered.get("client_max_window_bits", "absent")
            try:
                client = ClientPerMessageDeflateFactory(
                    server_no_context_takeover="server_no_context_takeover" in offered,
                    client_no_context_takeover="client_no_context_takeover" in offered,
                    server_max_window_bits=_int(offered.get("server_max_window_bits")),
                    client_max_window_bits=(
                        None if bits == "absent" else True if bits is None else _int(bits)
                    ),
                )
            except ValueError:
                continue  # an offer ripple's client can't make (an 8-bit client window)
            try:
                client_ext = client.process_response_params(answer, [])
            except NegotiationError as exc:
                raise HarnessError(
                    f"a client refused the answer to its own offer: {exc}"
                ) from None
            _round_trip(server_ext, client_ext)
            _round_trip(client_ext, server_ext)


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


TARGETS: dict[str, Target] = {
    "frames": frames,
    "http": http,
    "extensions": extensions,
}
