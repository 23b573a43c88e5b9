"""The asyncio server: `serve`, `unix_serve` and `Server`.

`Server` holds the options, the listening sockets and the bookkeeping of its
connections (admission under ``max_connections``, shutdown).
:class:`ServerConnection`, the server side of one connection, is in
:mod:`ripple.server_connection` and re-exported here.
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl as ssl_module
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Union

from .broadcast import (
    DEFAULT_LIMIT,
    BroadcastStats,
    DefaultLimit,
    Overflow,
    check_broadcast_options,
)
from .connection import check_options
from .opening import Opening
from .protocol.deflate import server_default, with_deflate
from .protocol.extensions import ServerExtensionFactory
from .protocol.headers import Headers, HeadersLike
from .protocol.http11 import Request, Response
from .server_connection import RETRY_AFTER as RETRY_AFTER
from .server_connection import ServerConnection
from .typing import LoggerLike

__all__ = ["Server", "ServerConnection", "serve", "unix_serve"]

SERVER_HEADER = "ripple"

#: The attribute a handler decorator (``basic_auth``) sets on the handler it
#: returns: a tuple of checks that run like ``process_request``, before it.
HANDLER_CHECKS = "__ripple_request_checks__"

Handler = Callable[["ServerConnection"], Awaitable[None]]
ProcessRequest = Callable[
    ["ServerConnection", Request], Union[Awaitable[Union[Response, None]], Response, None]
]
ProcessResponse = Callable[
    ["ServerConnection", Request, Response],
    Union[Awaitable[Union[Response, None]], Response, None],
]
SelectSubprotocol = Callable[["ServerConnection", Sequence[str]], Union[str, None]]
ExtraHeaders = Union[HeadersLike, Callable[["ServerConnection", Request], HeadersLike], None]

# An origin as browsers serialize it (RFC 6454 §6.2): scheme://host[:port].
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#@\s]+")


def _check_origins(origins: Sequence[str | None] | None) -> list[str | None] | None:
    """Validate ``origins=`` at the call; return it lower-cased."""
    if origins is None:
        return None
    if isinstance(origins, str):
        raise TypeError(f"origins must be a list of origins, not a str: pass [{origins!r}]")
    checked: list[str | None] = []
    for origin in origins:
        if origin is None:
            checked.append(None)
            continue
        if not isinstance(origin, str):
            raise TypeError(f"origins must contain str or None, not {origin!r}")
        lowered = origin.lower()
        # "null" is what sandboxed or file:// pages send; allow it only explicitly.
        if lowered != "null" and not _ORIGIN.fullmatch(lowered):
            raise ValueError(
                f"{origin!r} isn't an origin: pass scheme://host[:port] without a path "
                "or trailing slash, e.g. 'https://example.com', or None to allow "
                "requests without an Origin header"
            )
        checked.append(lowered)
    return checked


def _check_max_connections(value: int | None) -> int | None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"max_connections must be an int >= 1 or None, got {value!r}")
    return value


def _check_hook(name: str, value: object) -> None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a function or None, got {value!r}")


class Server:
    """A running WebSocket server, as returned by :func:`serve`.

    Use it as an async context manager, or call :meth:`close` then
    :meth:`wait_closed`.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        subprotocols: Sequence[str] | None = None,
        extra_headers: ExtraHeaders = None,
        server_header: str | None = SERVER_HEADER,
        extension_factories: Sequence[ServerExtensionFactory] = (),
        origins: Sequence[str | None] | None = None,
        max_connections: int | None = None,
        open_timeout: float | None = 10,
        logger: LoggerLike = None,
        broadcast_limit: int | None = 2**20,
        broadcast_overflow: Overflow = "close",
    ) -> None:
        self.handler = handler
        self.process_request = process_request
        self.process_response = process_response
        # A decorated handler's checks (basic_auth) run first: authenticate,
        # then let process_request decide with connection.username set.
        checks: list[ProcessRequest] = list(getattr(handler, HANDLER_CHECKS, ()))
        if process_request is not None:
            checks.append(process_request)
        self.request_checks = checks
        self.select_subprotocol = select_subprotocol
        self.subprotocols = list(subprotocols) if subprotocols is not None else None
        if extra_headers is not None and not callable(extra_headers):
            # Check at the call: a bad value mustn't surface at the first client.
            extra_headers = Headers(extra_headers)
        self.extra_headers = extra_headers
        self.server_header = server_header
        self.extension_factories = list(extension_factories)
        self.origins = _check_origins(origins)
        self.max_connections = _check_max_connections(max_connections)
        self.open_timeout = open_timeout
        #: broadcast(): the most bytes a connection's write buffer may hold
        #: for a message to be written to it (None: no limit), and what
        #: happens to a connection over it: "close" (1013) or "skip".
        self.broadcast_limit = broadcast_limit
        self.broadcast_overflow: Overflow = broadcast_overflow
        #: What broadcast() skipped and closed for being over broadcast_limit.
        self.broadcast_stats = BroadcastStats()
        self.logger = logger or logging.getLogger("ripple.server")
        self.server: asyncio.Server | None = None
        self._transports: set[ServerConnection] = set()
        self._open: set[ServerConnection] = set()
        self._reserved = 0  # max_connections slots held by handshakes in progress
        self._handlers: set[ServerConnection] = set()
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    # Bookkeeping from connections.
    def _connection_made(self, connection: ServerConnection) -> None:
        self._transports.add(connection)

    def _accepted(self, connection: ServerConnection) -> None:
        self._release(connection)  # the open connection now counts instead
        self._open.add(connection)
        self._handlers.add(connection)
        if self._closing:
            connection._close_after_handler(1001, "server shutting down")

    def _handler_done(self, connection: ServerConnection) -> None:
        self._handlers.discard(connection)

    def _connection_lost(self, connection: ServerConnection) -> None:
        self._transports.discard(connection)
        self._open.discard(connection)
        self._release(connection)

    def _reserve(self, connection: ServerConnection) -> bool:
        # Handshakes in progress hold a slot, so concurrent handshakes that
        # are all still in process_response can't overshoot the cap.
        limit = self.max_connections
        if limit is not None and len(self._open) + self._reserved >= limit:
            return False
        self._reserved += 1
        connection._slot = True
        return True

    def _release(self, connection: ServerConnection) -> None:
        if connection._slot:
            connection._slot = False
            self._reserved -= 1

    @property
    def sockets(self) -> set[socket.socket]:
        """The listening sockets."""
        if self.server is None:
            return set()
        return set(self.server.sockets)

    @property
    def connections(self) -> set[ServerConnection]:
        """The open WebSocket connections (handshake done, not yet closed)."""
        return set(self._open)

    @property
    def websockets(self) -> set[ServerConnection]:
        """Same as :attr:`connections`."""
        return set(self._open)

    def is_serving(self) -> bool:
        """Whether the server accepts new connections."""
        return self.server is not None and self.server.is_serving()

    async def start_serving(self) -> None:
        """Start accepting connections (done already by ``serve``)."""
        assert self.server is not None
        await self.server.start_serving()

    async def serve_forever(self) -> None:
        """Accept connections until :meth:`close` is called or the task is cancelled."""
        assert self.server is not None
        try:
            await self.server.serve_forever()
        except asyncio.CancelledError:
            closed_by_us = self._closing
            if not closed_by_us:
                self.close()
            await self.wait_closed()
            if closed_by_us:
                return  # close() ended it: a normal shutdown, not a cancellation
            raise

    def close(self, close_connections: bool = True) -> None:
        """Stop accepting connections and close every connection with 1001.

        Returns at once; :meth:`wait_closed` waits for handlers to finish.

        Args:
            close_connections: False leaves open connections alone.
        """
        if self._close_task is None:
            self._closing = True
            self._close_task = asyncio.get_running_loop().create_task(
                self._close(close_connections)
            )
            if self._closed is not None and not self._closed.done():
                self._closed.set_result(None)

    async def _close(self, close_connections: bool) -> None:
        if self.server is not None:
            self.server.close()
        await asyncio.sleep(0)  # let in-flight handshakes register
        if close_connections:
            for connection in list(self._transports):
                if connection.protocol is not None:
                    connection._close_after_handler(1001, "server shutting down")
                elif connection.transport is not None and connection._task is None:
                    connection.transport.close()
        waiters = [c.wait_closed() for c in list(self._transports)]
        if waiters:
            await asyncio.gather(*waiters, return_exceptions=True)
        tasks = [c._task for c in list(self._handlers) if c._task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_closed(self) -> None:
        """Wait until the server stopped listening and every handler finished."""
        if self._close_task is None:
            # Closing hasn't started: wait for someone to call close().
            if self._closed is None:
                self._closed = asyncio.get_running_loop().create_future()
            await asyncio.shield(self._closed)
        assert self._close_task is not None
        await asyncio.shield(self._close_task)

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
        await self.wait_closed()


class serve(Opening[Server]):
    """Start a WebSocket server on a TCP port.

    Usable as ``async with serve(...) as server:`` and ``server = await serve(...)``.

    Args:
        handler: coroutine run for each connection, with the connection.
        host: address to listen on ("localhost", "127.0.0.1", "::1", None for all).
        port: TCP port; 0 picks a free one (see ``server.sockets``).
        logger: logger for the server and its connections (``ripple.server``).
        compression: "deflate" (default) accepts permessage-deflate offers
            (RFC 7692) with memory-light settings; None disables it. To tune
            it, pass a ``ServerPerMessageDeflateFactory`` in ``extensions``
            (e.g. ``server_no_context_takeover=True`` so broadcast()
            compresses each message once for all connections).
        subprotocols: subprotocols the server accepts, in preference order.
        extra_headers: headers added to the handshake response: a mapping,
            a list of pairs, or a callable ``(connection, request)`` returning one.
        process_request: ``(connection, request)``, sync or async; return a
            :class:`Response` to answer plain HTTP, None to continue the handshake.
            :func:`basic_auth` builds one.
        process_response: ``(connection, request, response)``, sync or async,
            called with the response about to be sent (the 101 or a refusal);
            alter it in place or return a replacement; None keeps it.
        select_subprotocol: ``(connection, offered)`` returning one of the
            offered subprotocols or None; overrides ``subprotocols``.
        origins: allowed values of the Origin header, e.g.
            ``["https://example.com", None]``; None in the list admits
            requests without one (non-browser clients). Anything else gets a
            403. Default: no check.
        max_connections: most WebSocket connections open at once; handshakes
            over it get a 503 with Retry-After. None for no limit.
        ping_interval: seconds between keepalive pings; None disables them.
        ping_timeout: seconds to wait for a pong before closing with 1011.
        close_timeout: seconds the closing handshake may take.
        max_size: largest incoming message, in bytes (close 1009 above it).
        max_queue: incoming messages queued before reading pauses.
        read_limit: incoming bytes queued before reading pauses.
        write_limit: write buffer high-water mark; ``send()`` waits above it.
        extensions: extension factories, tried in order.
        open_timeout: seconds the opening handshake may take; None for no limit.
        broadcast_limit: bytes a connection's write buffer may hold for
            :func:`broadcast` to write to it; None for no limit. Default:
            ``max(16 * write_limit, 2**20)``.
        broadcast_overflow: what broadcast() does to a connection over
            ``broadcast_limit``: "close" it with 1013 (default) or "skip" it.
        server_header: the Server header value; None to send none.
        ssl: an :class:`ssl.SSLContext` with the server's certificate to serve
            wss://; its TLS handshake is bounded by ``open_timeout`` too.
        **kwargs: passed to ``loop.create_server`` (``sock``, ``reuse_port``,
            ``backlog``...).

    Raises:
        ValueError: a parameter is out of range (the message says which).
        TypeError: a parameter has the wrong type (the message says which).
    """

    def __init__(
        self,
        handler: Handler,
        host: str | Sequence[str] | None = None,
        port: int | None = None,
        *,
        logger: LoggerLike = None,
        compression: str | None = "deflate",
        subprotocols: Sequence[str] | None = None,
        extra_headers: ExtraHeaders = None,
        process_request: ProcessRequest | None = None,
        process_response: ProcessResponse | None = None,
        select_subprotocol: SelectSubprotocol | None = None,
        origins: Sequence[str | None] | None = None,
        max_connections: int | None = None,
        ping_interval: float | None = 20,
        ping_timeout: float | None = 20,
        close_timeout: float | None = 10,
        max_size: int | None = 2**20,
        max_queue: int | None = 2**5,
        read_limit: int = 2**16,
        write_limit: int = 2**16,
        extensions: Sequence[ServerExtensionFactory] | None = None,
        open_timeout: float | None = 10,
        server_header: str | None = SERVER_HEADER,
        ssl: ssl_module.SSLContext | None = None,
        broadcast_limit: int | DefaultLimit | None = DEFAULT_LIMIT,
        broadcast_overflow: Overflow = "close",
        **kwargs: Any,
    ) -> None:
        if not callable(handler):
            raise TypeError("handler must be a coroutine function taking the connection")
        if compression not in ("deflate", None):
            raise ValueError(f'compression must be "deflate" or None, got {compression!r}')
        _check_hook("process_request", process_request)
        _check_hook("process_response", process_response)
        _check_hook("select_subprotocol", select_subprotocol)
        if ssl is not None:
            if not isinstance(ssl, ssl_module.SSLContext):
                raise TypeError(
                    "ssl must be an ssl.SSLContext holding the server's certificate, e.g. "
                    "ssl.create_default_context(ssl.Purpose.CLIENT_AUTH) followed by "
                    f"load_cert_chain(...), or None; got {ssl!r}"
                )
            kwargs["ssl"] = ssl
            if open_timeout is not None:
                # asyncio's default is 60 s: a client stalling its TLS
                # handshake shouldn't hold a socket longer than open_timeout.
                kwargs.setdefault("ssl_handshake_timeout", open_timeout)
        self._unix = kwargs.pop("unix", False)
        self._path = kwargs.pop("path", None)
        self.server = Server(
            handler,
            process_request=process_request,
            process_response=process_response,
            select_subprotocol=select_subprotocol,
            subprotocols=subprotocols,
            extra_headers=extra_headers,
            server_header=server_header,
            extension_factories=with_deflate(
                list(extensions or ()), server_default if compression else None
            ),
            origins=origins,
            max_connections=max_connections,
            open_timeout=open_timeout,
            logger=logger,
            broadcast_limit=check_broadcast_options(
                broadcast_limit, broadcast_overflow, write_limit
            ),
            broadcast_overflow=broadcast_overflow,
        )
        connection_kwargs: dict[str, Any] = dict(
            # The logger connections would look up by name, looked up once.
            logger=self.server.logger,
            ping_interval=ping_interval,
            ping_timeout=ping_timeout,
            close_timeout=close_timeout,
            max_size=max_size,
            max_queue=max_queue,
            read_limit=read_limit,
            write_limit=write_limit,
        )
        # Fail at the call, not at the first connection.
        check_options(**connection_kwargs)
        self._connection_kwargs = connection_kwargs
        self._factory: Callable[[], ServerConnection] = lambda: ServerConnection(
            self.server, **connection_kwargs
        )
        self._host = host
        self._port = port
        self._kwargs = kwargs

    async def open(self) -> Server:
        loop = asyncio.get_running_loop()
        self._connection_kwargs["loop"] = loop  # each connection needn't look it up
        if self._unix:
            server = await loop.create_unix_server(self._factory, self._path, **self._kwargs)
        else:
            server = await loop.create_server(
                self._factory, self._host, self._port, **self._kwargs
            )
        self.server.server = server
        return self.server

    async def close_opened(self, server: Server) -> None:
        server.close()
        await server.wait_closed()


def unix_serve(handler: Handler, path: str | None = None, **kwargs: Any) -> serve:
    """Start a WebSocket server on a unix socket.

    Takes the same keyword arguments as :func:`serve`; ``path`` is the socket
    path (or pass ``sock=`` with a bound unix socket). Usable with ``await``
    and ``async with``.
    """
    return serve(handler, unix=True, path=path, **kwargs)
