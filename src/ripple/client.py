"""The asyncio client: `connect`, `unix_connect`, `ClientConnection`."""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import sys
from collections.abc import Sequence
from typing import Any

from .connection import Connection, check_options
from .exceptions import InvalidHandshake, InvalidMessage
from .opening import Opening
from .protocol.deflate import client_default, with_deflate
from .protocol.extensions import ClientExtensionFactory
from .protocol.handshake import build_request, check_response, generate_key
from .protocol.headers import Headers, HeadersLike
from .protocol.http11 import parse_response
from .protocol.state import CLIENT, Protocol
from .protocol.uri import WebSocketURI, parse_uri
from .typing import LoggerLike

__all__ = ["ClientConnection", "connect", "unix_connect"]

USER_AGENT = f"Python/{sys.version_info.major}.{sys.version_info.minor} ripple"


class ClientConnection(Connection):
    """A connection opened by :func:`connect`; the same API as the server's."""

    # No per-instance __dict__: idle connections are most of a server's memory.
    __slots__ = (
        "_factories",
        "_hs_buf",
        "_hs_done",
        "_key",
        "_offered_subprotocols",
    )

    side_name = "client"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._hs_buf = bytearray()
        self._hs_done: asyncio.Future[None] = self.loop.create_future()
        self._key = ""
        self._offered_subprotocols: Sequence[str] | None = None
        self._factories: Sequence[ClientExtensionFactory] = ()

    def send_request(
        self,
        wsuri: WebSocketURI,
        *,
        origin: str | None,
        subprotocols: Sequence[str] | None,
        extension_factories: Sequence[ClientExtensionFactory],
        additional_headers: HeadersLike | None,
        user_agent: str | None,
    ) -> None:
        self._key = generate_key()
        self._offered_subprotocols = subprotocols
        self._factories = extension_factories
        extra = Headers(additional_headers) if additional_headers is not None else None
        self.request = build_request(
            wsuri,
            self._key,
            origin=origin,
            subprotocols=subprotocols,
            extension_factories=extension_factories,
            additional_headers=extra,
            user_agent=user_agent,
        )
        assert self.transport is not None
        self.transport.write(self.request.serialize())

    def handshake_data(self, data: bytes) -> None:
        if self._hs_done.done():
            return
        self._hs_buf += data
        try:
            parsed = parse_response(self._hs_buf)
            if parsed is None:
                return
            response, consumed = parsed
            self.response = response
            subprotocol, extensions = check_response(
                response,
                self._key,
                subprotocols=self._offered_subprotocols,
                extension_factories=self._factories,
            )
        except InvalidHandshake as exc:
            self._hs_done.set_exception(exc)
            assert self.transport is not None
            self.transport.close()
            return
        self.subprotocol = subprotocol
        leftover = bytes(self._hs_buf[consumed:])
        self._hs_buf = bytearray()
        self._hs_done.set_result(None)
        self.start_protocol(
            Protocol(CLIENT, max_size=self.max_size, extensions=extensions, defer_failure=True),
            leftover,
        )

    def handshake_lost(self, exc: Exception | None) -> None:
        if not self._hs_done.done():
            error = InvalidMessage("connection closed during the opening handshake")
            error.__cause__ = exc
            self._hs_done.set_exception(error)
            self._hs_done.exception()  # retrieved by whoever awaits it, if anyone


class connect(Opening[ClientConnection]):
    """Open a WebSocket connection.

    Usable as ``ws = await connect(uri)`` and ``async with connect(uri) as ws:``.

    Args:
        uri: a ws:// or wss:// URI.
        origin: the Origin header to send, if any.
        extensions: client extension factories, in order of preference.
        subprotocols: subprotocols to offer, in order of preference.
        additional_headers: headers added to the handshake request.
        user_agent_header: the User-Agent value; None to send none.
        compression: "deflate" (default) offers permessage-deflate (RFC 7692);
            None doesn't. To tune it, pass a ``ClientPerMessageDeflateFactory``
            in ``extensions``.
        open_timeout: seconds the TCP connect and handshake may take.
        ping_interval, ping_timeout, close_timeout, max_size, max_queue,
        read_limit, write_limit, logger: as for :func:`serve`.
        ssl: for a wss:// URI, the :class:`ssl.SSLContext` to use; by default
            ``ssl.create_default_context()``, which verifies the certificate
            and the host name against the system's CAs.
        server_hostname: the name to send in SNI and to check the
            certificate against; the URI's host by default (unix sockets
            and ``sock=`` included).
        **kwargs: passed to ``loop.create_connection`` (``sock``,
            ``local_addr``...).

    Raises:
        InvalidURI: the URI isn't a valid ws:// or wss:// URI.
        ValueError: ``ssl=`` with a ws:// URI, or ``ssl=None`` with a wss:// one.
        InvalidHandshake: the server refused or answered something invalid
            (``InvalidStatus`` carries the response).
        OSError: the TCP connection failed; ``ssl.SSLCertVerificationError``
            when the server's certificate isn't trusted or doesn't match
            the host name.
        TimeoutError: the handshake took longer than ``open_timeout``.
    """

    def __init__(
        self,
        uri: str,
        *,
        origin: str | None = None,
        extensions: Sequence[ClientExtensionFactory] | None = None,
        subprotocols: Sequence[str] | None = None,
        additional_headers: HeadersLike | None = None,
        user_agent_header: str | None = USER_AGENT,
        compression: str | None = "deflate",
        open_timeout: float | None = 10,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_size: int | None = 2**20,
        max_queue: int | None = 2**5,
        read_limit: int = 2**16,
        write_limit: int = 2**16,
        logger: LoggerLike = None,
        **kwargs: Any,
    ) -> None:
        self.wsuri = parse_uri(uri)
        if compression not in ("deflate", None):
            raise ValueError(f'compression must be "deflate" or None, got {compression!r}')
        if subprotocols is not None and isinstance(subprotocols, str):
            raise TypeError("subprotocols must be a list of str, not a str")
        self.connection_kwargs: dict[str, Any] = dict(
            logger=logger,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_size=max_size,
            max_queue=max_queue,
            read_limit=read_limit,
            write_limit=write_limit,
        )
        check_options(**self.connection_kwargs)
        self.request_kwargs: dict[str, Any] = dict(
            origin=origin,
            subprotocols=subprotocols,
            extension_factories=with_deflate(
                list(extensions or ()), client_default if compression else None
            ),
            additional_headers=additional_headers,
            user_agent=user_agent_header,
        )
        self.open_timeout = open_timeout
        self._unix = kwargs.pop("unix", False)
        self._path = kwargs.pop("path", None)
        if self.wsuri.secure:
            if kwargs.setdefault("ssl", True) in (None, False):
                raise ValueError(
                    "a wss:// URI needs TLS: pass an ssl.SSLContext as ssl=, or leave ssl= "
                    "out for the default one; use ws:// for a plain connection"
                )
            if kwargs["ssl"] is True:
                # Verifies the chain and the host name (SNI is sent too).
                kwargs["ssl"] = ssl_module.create_default_context()
            if self._unix or "sock" in kwargs:
                # asyncio has no host to take the name from: use the URI's.
                kwargs.setdefault("server_hostname", self.wsuri.host)
        elif kwargs.get("ssl") not in (None, False):
            raise ValueError("ssl= requires a wss:// URI")
        self.kwargs = kwargs
        self.connection: ClientConnection | None = None

    async def open(self) -> ClientConnection:
        loop = asyncio.get_running_loop()

        def factory() -> ClientConnection:
            return ClientConnection(**self.connection_kwargs)

        async def attempt() -> ClientConnection:
            kwargs = dict(self.kwargs)
            if self._unix:
                _, conn = await loop.create_unix_connection(factory, self._path, **kwargs)
            else:
                if "sock" not in kwargs:
                    kwargs.update(host=self.wsuri.host, port=self.wsuri.port)
                _, conn = await loop.create_connection(factory, **kwargs)
            try:
                conn.send_request(self.wsuri, **self.request_kwargs)
                await asyncio.shield(conn._hs_done)
            except BaseException:
                if conn.transport is not None:
                    conn.transport.abort()
                raise
            return conn

        if self.open_timeout is None:
            self.connection = await attempt()
        else:
            try:
                self.connection = await asyncio.wait_for(attempt(), self.open_timeout)
            except asyncio.TimeoutError as exc:
                # The builtin TimeoutError on every version (3.10's differs).
                raise TimeoutError(
                    f"opening handshake with {self.wsuri.host_header} didn't complete "
                    f"within open_timeout={self.open_timeout} s"
                ) from exc
        return self.connection

    async def close_opened(self, connection: ClientConnection) -> None:
        await connection.close()


def unix_connect(path: str | None = None, uri: str | None = None, **kwargs: Any) -> connect:
    """Open a WebSocket connection over a unix socket.

    Args:
        path: the socket's path (or pass ``sock=``).
        uri: the URI for the request line and Host header; ws://localhost/ by
            default, wss://localhost/ with ``ssl=`` (so the certificate is
            checked against "localhost" unless ``server_hostname=`` says otherwise).
        **kwargs: as for :func:`connect`.
    """
    if uri is None:
        tls = kwargs.get("ssl") not in (None, False)
        uri = "wss://localhost/" if tls else "ws://localhost/"
    return connect(uri, unix=True, path=path, **kwargs)
