"""permessage-deflate (RFC 7692): the extension and its negotiation, sans I/O.

Memory is the design constraint: a compressed connection that is idle should
cost next to nothing. So zlib objects are created on first use, not at the
handshake, and dropped after every message when context takeover is off for
that direction; the default settings ask for 12-bit windows (4 KiB) and a
small memLevel rather than zlib's 32 KiB window.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from ..exceptions import (
    DuplicateParameter,
    InvalidParameterName,
    InvalidParameterValue,
    InvalidPayload,
    NegotiationError,
    PayloadTooBig,
    ProtocolError,
)
from .extensions import (
    ClientExtensionFactory,
    Extension,
    ExtensionParameter,
    Frame,
    ServerExtensionFactory,
)
from .frames import OP_CLOSE, OP_CONT, RSV1

__all__ = [
    "ClientPerMessageDeflateFactory",
    "PerMessageDeflate",
    "ServerPerMessageDeflateFactory",
    "client_default",
    "server_default",
    "with_deflate",
]

NAME = "permessage-deflate"

# §7.2.1: a sync flush ends with this empty stored block; senders strip it
# from the end of a message and receivers put it back.
_TAIL = b"\x00\x00\xff\xff"

# What compression="deflate" uses: 12-bit windows (4 KiB instead of 32 KiB)
# and memLevel 5. Measured (bench/idle_memory.py): our compressor is ~38 KiB
# and a decompressor ~11 KiB, so the server drops its compressor after each
# message (server_no_context_takeover) and keeps only the decompressor.
DEFAULT_WINDOW_BITS = 12
DEFAULT_COMPRESS_SETTINGS: Mapping[str, int] = {"level": 6, "memLevel": 5}
# What compression="deflate" compresses with. Any window up to the negotiated
# one is valid for the peer, so this needs no negotiation.
DEFAULT_SETTINGS: Mapping[str, int] = {**DEFAULT_COMPRESS_SETTINGS, "windowBits": 12}
SETTING_NAMES = frozenset(("level", "memLevel", "windowBits"))


def _check_settings(settings: Mapping[str, int] | None) -> None:
    if settings is None:
        return
    if set(settings) - SETTING_NAMES:
        raise ValueError("compress_settings takes only 'level', 'memLevel' and 'windowBits'")
    if "windowBits" in settings and not 9 <= settings["windowBits"] <= 15:
        raise ValueError("compress_settings['windowBits'] must be between 9 and 15")


class PerMessageDeflate(Extension):
    """permessage-deflate on one connection, once negotiated.

    Args:
        remote_no_context_takeover: the peer resets its compressor after
            every message, so ours can decompress each message afresh.
        local_no_context_takeover: reset our compressor after every message.
        remote_max_window_bits: the peer's LZ77 window (8-15).
        local_max_window_bits: our LZ77 window (9-15; zlib can't compress with 8).
        compress_settings: ``level``, ``memLevel`` and ``windowBits`` (a
            window smaller than the negotiated one) for our compressor.
    """

    name = NAME
    rsv_bits = RSV1

    def __init__(
        self,
        remote_no_context_takeover: bool,
        local_no_context_takeover: bool,
        remote_max_window_bits: int,
        local_max_window_bits: int,
        compress_settings: Mapping[str, int] | None = None,
    ) -> None:
        if not 8 <= remote_max_window_bits <= 15:
            raise ValueError("remote_max_window_bits must be between 8 and 15")
        if not 9 <= local_max_window_bits <= 15:
            raise ValueError("local_max_window_bits must be between 9 and 15 (zlib can't use 8)")
        self.remote_no_context_takeover = remote_no_context_takeover
        self.local_no_context_takeover = local_no_context_takeover
        self.remote_max_window_bits = remote_max_window_bits
        settings = dict(DEFAULT_COMPRESS_SETTINGS)
        settings.update(compress_settings or {})
        self.level = settings["level"]
        self.mem_level = settings["memLevel"]
        # Our window: at most the negotiated one, smaller if asked (memory).
        self.local_max_window_bits = min(local_max_window_bits, settings.get("windowBits", 15))
        # Created on first use; None again after each message without
        # context takeover: an idle connection holds no zlib state.
        self._decompressor: Any = None
        self._compressor: Any = None
        self._decoding = False  # the message being received is compressed
        self._decoded = 0  # its decompressed size so far
        self._encoding = False  # the message being sent is compressed

    def __repr__(self) -> str:
        return (
            f"PerMessageDeflate(remote_no_context_takeover={self.remote_no_context_takeover}, "
            f"local_no_context_takeover={self.local_no_context_takeover}, "
            f"remote_max_window_bits={self.remote_max_window_bits}, "
            f"local_max_window_bits={self.local_max_window_bits})"
        )

    @property
    def shared_key(self) -> tuple[int, int, int] | None:
        """Parameters under which our compressed frames are the same for every
        connection (no context takeover on our side), else None.

        broadcast() compresses a message once per distinct key.
        """
        if not self.local_no_context_takeover:
            return None
        return (self.local_max_window_bits, self.level, self.mem_level)

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        opcode = frame.opcode
        if opcode >= OP_CLOSE:
            if frame.rsv & RSV1:
                raise ProtocolError("RSV1 set on a control frame")
            return frame
        if opcode == OP_CONT:
            if frame.rsv & RSV1:
                # §6.1: only the first frame of a message carries RSV1.
                raise ProtocolError("RSV1 set on a continuation frame")
            if not self._decoding:
                return frame
        else:
            self._decoding = bool(frame.rsv & RSV1)
            self._decoded = 0
            if not self._decoding:
                return frame
        if self._decompressor is None:
            # At least 9: some zlib versions compress with 9 when asked for 8.
            self._decompressor = zlib.decompressobj(-max(self.remote_max_window_bits, 9))
        data = frame.data + _TAIL if frame.fin else frame.data
        # Bounded while decompressing: a small frame that inflates to a huge
        # message stops at max_size + 1 bytes instead of exhausting memory.
        limit = 0 if max_size is None else max_size - self._decoded + 1
        try:
            out = self._decompressor.decompress(data, limit)
        except zlib.error as exc:
            raise InvalidPayload(f"invalid compressed data: {exc}") from None
        self._decoded += len(out)
        if max_size is not None and (
            self._decoded > max_size or self._decompressor.unconsumed_tail
        ):
            raise PayloadTooBig(f"message exceeds max_size of {max_size} bytes once decompressed")
        if self._decompressor.eof:
            # §7.2.3.4: the peer ended the message with a BFINAL block. Only
            # our tail may follow it; the next message starts a new stream.
            if self._decompressor.unused_data != (_TAIL if frame.fin else b""):
                raise InvalidPayload("invalid compressed data: data after the final block")
            if frame.fin:
                self._decompressor = None
        if frame.fin:
            self._decoding = False
            if self.remote_no_context_takeover:
                self._decompressor = None
        return Frame(opcode, out, frame.fin, frame.rsv & ~RSV1)

    def encode(self, frame: Frame) -> Frame:
        opcode = frame.opcode
        if opcode >= OP_CLOSE:
            return frame  # §6.1: control frames are never compressed
        if opcode != OP_CONT:
            self._encoding = True
        elif not self._encoding:
            return frame
        data = self.compress(frame.data, frame.fin)
        if frame.fin:
            self._encoding = False
        return Frame(opcode, data, frame.fin, frame.rsv | (RSV1 if opcode != OP_CONT else 0))

    def compress(self, data: bytes, fin: bool) -> bytes:
        """Compress one frame's payload with this connection's compressor."""
        if self._compressor is None:
            self._compressor = self.new_compressor(
                self.local_max_window_bits, self.level, self.mem_level
            )
        out: bytes = self._compressor.compress(data) + self._compressor.flush(zlib.Z_SYNC_FLUSH)
        if fin:
            if out.endswith(_TAIL):
                out = out[:-4]
            if self.local_no_context_takeover:
                self._compressor = None
        return out

    @staticmethod
    def new_compressor(window_bits: int, level: int, mem_level: int) -> Any:
        return zlib.compressobj(level, zlib.DEFLATED, -window_bits, mem_level)


def compress_message(payload: bytes, key: tuple[int, int, int]) -> bytes:
    """Compress a whole message once for every connection sharing `key`
    (see :attr:`PerMessageDeflate.shared_key`)."""
    window_bits, level, mem_level = key
    compressor = PerMessageDeflate.new_compressor(window_bits, level, mem_level)
    out: bytes = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4] if out.endswith(_TAIL) else out


def _parse_params(
    params: Sequence[ExtensionParameter], is_server: bool
) -> tuple[bool, bool, int | None, int | bool | None]:
    """Validate permessage-deflate parameters (§7.1).

    Returns server_no_context_takeover, client_no_context_takeover,
    server_max_window_bits, client_max_window_bits (True: offered without
    a value).

    Raises:
        NegotiationError: duplicate, unknown or invalid parameters.
    """
    seen: set[str] = set()
    server_nct = client_nct = False
    server_bits: int | None = None
    client_bits: int | bool | None = None
    for name, value in params:
        if name in seen:
            raise DuplicateParameter(name)
        seen.add(name)
        if name == "server_no_context_takeover":
            if value is not None:
                raise InvalidParameterValue(name, value)
            server_nct = True
        elif name == "client_no_context_takeover":
            if value is not None:
                raise InvalidParameterValue(name, value)
            client_nct = True
        elif name == "server_max_window_bits":
            server_bits = _window_bits(name, value)
        elif name == "client_max_window_bits":
            # §7.1.2.2: without a value (client side only), any window will do.
            client_bits = True if value is None and is_server else _window_bits(name, value)
        else:
            raise InvalidParameterName(name)
    return server_nct, client_nct, server_bits, client_bits


def _window_bits(name: str, value: str | None) -> int:
    # §7.1.2: 1*DIGIT between 8 and 15, no leading zero. isascii(): isdigit()
    # alone takes "²" (a latin-1 header byte), which int() then rejects.
    if (
        value is None
        or not (value.isascii() and value.isdigit())
        or value.startswith("0")
        or not 8 <= int(value) <= 15
    ):
        raise InvalidParameterValue(name, value)
    return int(value)


class ServerPerMessageDeflateFactory(ServerExtensionFactory):
    """Accepts a client's permessage-deflate offer.

    Args:
        server_no_context_takeover: always reset our compressor between
            messages. Costs some ratio; lets broadcast() compress a message
            once for all such connections, and frees our compressor between
            messages.
        client_no_context_takeover: ask clients to reset theirs, so our
            decompressor is freed between messages.
        server_max_window_bits: our window (9-15); None for 15.
        client_max_window_bits: the window we ask clients to use (8-15) when
            they allow us to choose; None leaves it to them.
        compress_settings: ``level``, ``memLevel`` and ``windowBits`` (a
            window smaller than the negotiated one) for our compressor.
        require_client_max_window_bits: decline clients that don't let us
            choose their window.
    """

    name = NAME

    def __init__(
        self,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | None = None,
        compress_settings: Mapping[str, int] | None = None,
        require_client_max_window_bits: bool = False,
    ) -> None:
        if server_max_window_bits is not None and not 9 <= server_max_window_bits <= 15:
            raise ValueError("server_max_window_bits must be between 9 and 15, or None")
        if client_max_window_bits is not None and not 9 <= client_max_window_bits <= 15:
            # 8 is valid on the wire, but zlib can't compress with it, so a
            # ripple client (and others built on zlib) couldn't comply.
            raise ValueError("client_max_window_bits must be between 9 and 15, or None")
        _check_settings(compress_settings)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_settings = compress_settings
        self.require_client_max_window_bits = require_client_max_window_bits

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], PerMessageDeflate]:
        if any(ext.name == NAME for ext in accepted):
            raise NegotiationError("permessage-deflate was already accepted")
        server_nct, client_nct, server_bits, client_bits = _parse_params(params, True)
        response: list[ExtensionParameter] = []

        # §7.1.1.1: a client's server_no_context_takeover must be honoured.
        if server_nct or self.server_no_context_takeover:
            server_nct = True
            response.append(("server_no_context_takeover", None))
        # §7.1.1.2: the server may ask this of any client.
        if client_nct or self.client_no_context_takeover:
            client_nct = True
            response.append(("client_no_context_takeover", None))

        # §7.1.2.1: our window is at most what the client asked for.
        ours = self.server_max_window_bits or 15
        if server_bits is not None:
            ours = min(ours, server_bits)
        if ours < 9:
            # zlib can't compress with an 8-bit window: decline this offer.
            raise NegotiationError("server_max_window_bits=8 isn't supported")
        if server_bits is not None or ours != 15:
            response.append(("server_max_window_bits", str(ours)))

        # §7.1.2.2: we may pick the client's window only if it offered
        # client_max_window_bits; without it the client uses 15.
        theirs = 15
        if client_bits is None:
            if self.require_client_max_window_bits:
                raise NegotiationError("client_max_window_bits is required")
        else:
            theirs = 15 if client_bits is True else int(client_bits)
            if self.client_max_window_bits is not None:
                theirs = min(theirs, self.client_max_window_bits)
            if client_bits is not True or self.client_max_window_bits is not None:
                response.append(("client_max_window_bits", str(theirs)))

        return response, PerMessageDeflate(
            remote_no_context_takeover=client_nct,
            local_no_context_takeover=server_nct,
            remote_max_window_bits=theirs,
            local_max_window_bits=ours,
            compress_settings=self.compress_settings,
        )


class ClientPerMessageDeflateFactory(ClientExtensionFactory):
    """Offers permessage-deflate and accepts the server's answer.

    Args:
        server_no_context_takeover: ask the server to reset its compressor.
        client_no_context_takeover: tell the server we reset ours.
        server_max_window_bits: ask the server for a window of at most this.
        client_max_window_bits: True offers it without a value (the server
            may choose our window); an int caps our window; None leaves it out.
        compress_settings: ``level``, ``memLevel`` and ``windowBits`` (a
            window smaller than the negotiated one) for our compressor.
    """

    name = NAME

    def __init__(
        self,
        server_no_context_takeover: bool = False,
        client_no_context_takeover: bool = False,
        server_max_window_bits: int | None = None,
        client_max_window_bits: int | bool | None = True,
        compress_settings: Mapping[str, int] | None = None,
    ) -> None:
        if server_max_window_bits is not None and not 8 <= server_max_window_bits <= 15:
            raise ValueError("server_max_window_bits must be between 8 and 15, or None")
        if (
            isinstance(client_max_window_bits, int)
            and not isinstance(client_max_window_bits, bool)
            and not 9 <= client_max_window_bits <= 15
        ):
            raise ValueError("client_max_window_bits must be between 9 and 15, True or None")
        _check_settings(compress_settings)
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context_takeover
        self.server_max_window_bits = server_max_window_bits
        self.client_max_window_bits = client_max_window_bits
        self.compress_settings = compress_settings

    def get_request_params(self) -> list[ExtensionParameter]:
        params: list[ExtensionParameter] = []
        if self.server_no_context_takeover:
            params.append(("server_no_context_takeover", None))
        if self.client_no_context_takeover:
            params.append(("client_no_context_takeover", None))
        if self.server_max_window_bits is not None:
            params.append(("server_max_window_bits", str(self.server_max_window_bits)))
        if self.client_max_window_bits is True:
            params.append(("client_max_window_bits", None))
        elif self.client_max_window_bits:
            params.append(("client_max_window_bits", str(self.client_max_window_bits)))
        return params

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted: Sequence[Extension]
    ) -> PerMessageDeflate:
        if any(ext.name == NAME for ext in accepted):
            raise NegotiationError("server accepted permessage-deflate twice")
        server_nct, client_nct, server_bits, client_bits = _parse_params(params, False)
        # §7.1.1.1 / §7.1.2.1: the server honours what we asked of it.
        if self.server_no_context_takeover and not server_nct:
            raise NegotiationError("server ignored server_no_context_takeover")
        if self.server_max_window_bits is not None and (
            server_bits is None or server_bits > self.server_max_window_bits
        ):
            raise NegotiationError("server didn't honour server_max_window_bits")
        # §7.1.2.2: client_max_window_bits only if we offered it, and within it.
        ours = 15
        if client_bits is not None:
            if self.client_max_window_bits is None:
                raise NegotiationError("server sent client_max_window_bits we didn't offer")
            assert not isinstance(client_bits, bool)
            if self.client_max_window_bits is not True and client_bits > int(
                self.client_max_window_bits
            ):
                raise NegotiationError("server asked for a larger client window than offered")
            ours = client_bits
        elif not isinstance(self.client_max_window_bits, bool) and self.client_max_window_bits:
            ours = self.client_max_window_bits
        if ours < 9:
            raise NegotiationError("client_max_window_bits=8 isn't supported by zlib")
        return PerMessageDeflate(
            remote_no_context_takeover=server_nct,
            local_no_context_takeover=client_nct or self.client_no_context_takeover,
            remote_max_window_bits=server_bits or 15,
            local_max_window_bits=ours,
            compress_settings=self.compress_settings,
        )


def server_default() -> ServerPerMessageDeflateFactory:
    """The server side of ``compression="deflate"``.

    Small windows, memLevel 5, and no context takeover for what the server
    sends: an idle connection holds no compressor, and broadcast()
    compresses each message once for every connection. Pass
    ``ServerPerMessageDeflateFactory()`` in ``extensions`` for context
    takeover (better ratio on streams of similar messages, ~38 KiB more
    per connection).
    """
    return ServerPerMessageDeflateFactory(
        server_no_context_takeover=True,
        server_max_window_bits=DEFAULT_WINDOW_BITS,
        client_max_window_bits=DEFAULT_WINDOW_BITS,
        compress_settings=DEFAULT_SETTINGS,
    )


def client_default() -> ClientPerMessageDeflateFactory:
    """The client side of ``compression="deflate"``."""
    # client_max_window_bits without a value, as browsers send it: some
    # servers (Autobahn) answer 15 whatever we offer. We still compress with
    # a 12-bit window (DEFAULT_SETTINGS), which any negotiated window admits.
    return ClientPerMessageDeflateFactory(
        client_max_window_bits=True,
        compress_settings=DEFAULT_SETTINGS,
    )


F = TypeVar("F", ServerExtensionFactory, ClientExtensionFactory)


def with_deflate(factories: list[F], default: Callable[[], F] | None) -> list[F]:
    """Add the default permessage-deflate factory unless one was given."""
    if default is not None and not any(f.name == NAME for f in factories):
        factories.append(default())
    return factories
