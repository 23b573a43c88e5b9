"""The asyncio server: `serve`, `unix_serve`, `Server`, `ServerConnection`."""

from __future__ import annotations

import asyncio
import http
import inspect
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
from .connection import Connection, check_options
from .exceptions import ConnectionClosed, InvalidHandshake, NegotiationError, SecurityError
from .opening import Opening
from .protocol.deflate import server_default, with_deflate
from .protocol.extensions import Extension, ServerExtensionFactory
from .protocol.handshake import HandshakeRejected, printable, reject, server_accept
from .protocol.headers import Headers, HeadersLike
from .protocol.http11 import Request, Response, parse_request
from .protocol.state import OPEN, SERVER, Protocol
from .typing import LoggerLike

__all__ = ["Server", "ServerConnection", "serve", "unix_serve"]

SERVER_HEADER = "ripple"

#: Seconds a client refused for ``max_connections`` is told to wait (Retry-After).
RETRY_AFTER = 5

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

# The 101's fields that carry the negotiation: process_response may not change them.
_HANDSHAKE_FIELDS = (
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
)
# An origin as browsers serialize it (RFC 6454 §6.2): scheme://host[:port].
_ORIGIN = re.compile(r"[a-z][a-z0-9+.-]*://[^/?#@\s]+")


async def _hook_result(value: Any, hook: str) -> Response | None:
    # process_request and process_response may be sync or async.
    if inspect.isawaitable(value):
        value = await value
    if value is not None and not isinstance(value, Response):
        raise TypeError(f"{hook} must return a Response or None, not {value!r}")
    return value


def _handshake_fields(response: Response) -> list[list[str]]:
    return [response.headers.get_all(name) for name in _HANDSHAKE_FIELDS]


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


class ServerConnection(Connection):
    """A connection accepted by a :class:`Server`; the handler receives it.

    Everything a handler uses is on :class:`Connection`: ``recv``, ``send``,
    ``ping``, ``close``, async iteration and the address and close properties.
    """

    # No per-instance __dict__: idle connections are most of a server's memory.
    __slots__ = (
        "_hs_buf",
        "_hs_timer",
        "_slot",
        "_task",
        "server",
        "username",
    )

    side_name = "server"

    def __init__(self, server: Server, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server
        #: The user name that :func:`basic_auth` authenticated; None otherwise.
        self.username: str | None = None
        self._hs_buf = bytearray()
        self._hs_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None
        self._slot = False  # holds one of the server's max_connections slots

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.server._connection_made(self)
        timeout = self.server.open_timeout
        if timeout is not None:
            self._hs_timer = self.loop.call_later(timeout, self._open_timeout)

    def _open_timeout(self) -> None:
        self._hs_timer = None
        if self.protocol is None and self.transport is not None:
            self.logger.debug("opening handshake timed out; dropping the connection")
            self.transport.abort()

    def handshake_data(self, data: bytes) -> None:
        if self._task is not None:
            # The request is being processed; a client mustn't send frames
            # before our response (§4.1), but keep what it sent.
            self._hs_buf += data
            return
        # The request usually comes in one chunk: parse it where it is,
        # without copying it into the buffer and out again.
        buf: bytes | bytearray = data
        if self._hs_buf:
            self._hs_buf += data
            buf = self._hs_buf
        try:
            parsed = parse_request(buf)
        except SecurityError as exc:
            self._hs_buf = bytearray(buf)
            self._refuse(reject(431, f"request headers too large: {exc}"), exc)
            return
        except InvalidHandshake as exc:
            self._hs_buf = bytearray(buf)
            self._refuse(reject(400, f"malformed HTTP request: {exc}"), exc)
            return
        if parsed is None:
            if buf is data:
                self._hs_buf += data
            return
        request, consumed = parsed
        if buf is data:
            if consumed < len(data):
                self._hs_buf += data[consumed:]  # frames sent too early; kept
        else:
            del self._hs_buf[:consumed]
        self.request = request
        self._task = self.loop.create_task(self._run(request))

    def _refuse(self, response: Response, exc: Exception) -> None:
        self.logger.debug("handshake refused: %s", printable(str(exc)))
        self._add_headers(response)
        self._send_refusal(response)

    def _send_refusal(self, response: Response) -> None:
        # A plain answer ends the connection: frame the body for the client.
        headers = response.headers
        if "Content-Length" not in headers:
            headers["Content-Length"] = str(len(response.body))
        if "Connection" not in headers:
            headers["Connection"] = "close"
        self._write_response(response)
        assert self.transport is not None
        self.transport.close()

    def _write_response(self, response: Response) -> None:
        self.response = response
        assert self.transport is not None
        if not self.transport.is_closing():
            self.transport.write(response.serialize())

    def respond(self, status: int | http.HTTPStatus, text: str) -> Response:
        """Build a plain-text response for ``process_request`` to return.

        Args:
            status: the HTTP status, e.g. 403 or ``http.HTTPStatus.FORBIDDEN``.
            text: the body, sent as UTF-8 text.
        """
        body = text.encode()
        headers = Headers()
        headers["Content-Type"] = "text/plain; charset=utf-8"
        headers["Content-Length"] = str(len(body))
        headers["Connection"] = "close"
        return Response(int(status), "", headers, body)

    async def _run(self, request: Request) -> None:
        server = self.server
        accepted = False
        try:
            accepted = await self._handshake(request)
        except Exception:
            self.logger.error("opening handshake failed", exc_info=True)
            if self.transport is not None:
                # No user hooks here: they may be what failed.
                response = reject(500, "internal server error")
                if self.server.server_header:
                    response.headers["Server"] = self.server.server_header
                self._write_response(response)
                self.transport.close()
            return
        finally:
            if self._hs_timer is not None:
                self._hs_timer.cancel()
                self._hs_timer = None
            if not accepted:
                server._release(self)
        if not accepted:
            return
        server._accepted(self)
        try:
            await server.handler(self)
        except ConnectionClosed:
            if self.protocol is not None and self.protocol.state is OPEN:
                # Not this connection's: another one the handler used.
                self.logger.error("connection handler failed", exc_info=True)
                self._close_after_handler(1011, "internal error")
            else:
                # The peer went away while the handler talked to it.
                self.logger.debug("connection closed during handler", exc_info=True)
        except Exception:
            self.logger.error("connection handler failed", exc_info=True)
            self._close_after_handler(1011, "internal error")
        except asyncio.CancelledError:
            self._close_after_handler(1001, "going away")
            raise
        else:
            self._close_after_handler(1000, "")
        finally:
            server._handler_done(self)
        await self.wait_closed()

    def _close_after_handler(self, code: int, reason: str) -> None:
        p = self.protocol
        if p is None or self._lost.done():
            return
        self._start_close(p, code, reason)

    async def _handshake(self, request: Request) -> bool:
        # The order: checks that may answer plain HTTP (a handler's
        # basic_auth, then process_request), the handshake's own checks
        # (400, 403, 405, 426), admission (503), then process_response.
        server = self.server
        response: Response | None = None
        for check in server.request_checks:
            response = await _hook_result(check(self, request), "process_request")
            if response is not None:
                if response.status_code < 200:
                    raise ValueError(
                        f"process_request returned a {response.status_code} response; "
                        "return None to go on with the handshake"
                    )
                break
        negotiated: tuple[str | None, list[Extension]] | None = None
        if response is None:
            response, negotiated = self._accept(request)
        self._add_headers(response)
        if server.process_response is not None:
            expected = _handshake_fields(response) if negotiated is not None else None
            replacement = await _hook_result(
                server.process_response(self, request, response), "process_response"
            )
            if replacement is not None:
                response = replacement
            if response.status_code == 101:
                if expected is None:
                    raise ValueError(
                        "process_response returned a 101 for a request that isn't being "
                        "upgraded; it may alter the 101 or refuse, not accept a refused request"
                    )
                if _handshake_fields(response) != expected:
                    raise ValueError(
                        "process_response changed a handshake header of the 101 "
                        f"({', '.join(_HANDSHAKE_FIELDS)}); change other headers only"
                    )
        if negotiated is None or response.status_code != 101:
            self._send_refusal(response)
            return False
        if self.transport is None or self._lost.done():
            return False
        self.subprotocol, extensions = negotiated
        self._write_response(response)
        protocol = Protocol(
            SERVER, max_size=self.max_size, extensions=extensions, defer_failure=True
        )
        leftover = bytes(self._hs_buf)
        self._hs_buf = bytearray()
        # The handshake is over: keep the headers, not their lookup indexes.
        request.headers.compact()
        response.headers.compact()
        self.start_protocol(protocol, leftover)
        return True

    def _accept(
        self, request: Request
    ) -> tuple[Response, tuple[str | None, list[Extension]] | None]:
        """The 101 and what it negotiated, or a refusal and None."""
        server = self.server

        def select(offered: list[str]) -> str | None:
            if server.select_subprotocol is not None:
                chosen = server.select_subprotocol(self, offered)
                if inspect.isawaitable(chosen):
                    if inspect.iscoroutine(chosen):
                        chosen.close()  # no "never awaited" warning on top of ours
                    raise TypeError("select_subprotocol must be a plain function, not async")
                if chosen is not None and not isinstance(chosen, str):
                    raise TypeError(
                        f"select_subprotocol must return one of the offered str or None, "
                        f"not {chosen!r}"
                    )
                return chosen
            # The server's preference order among what the client offers.
            for name in server.subprotocols or ():
                if name in offered:
                    return name
            return None

        try:
            response, subprotocol, extensions = server_accept(
                request,
                select_subprotocol=select,
                extension_factories=server.extension_factories,
                origins=server.origins,
            )
        except HandshakeRejected as exc:
            self.logger.debug("handshake refused: %s", exc)
            return exc.response, None
        except NegotiationError as exc:
            self.logger.debug("handshake refused: %s", printable(str(exc)))
            return reject(400, str(exc)), None
        if not server._reserve(self):
            self.logger.debug(
                "handshake refused: max_connections=%d reached", server.max_connections
            )
            return (
                reject(
                    503,
                    f"too many connections; retry in {RETRY_AFTER} s",
                    [("Retry-After", str(RETRY_AFTER))],
                ),
                None,
            )
        return response, (subprotocol, extensions)

    def _add_headers(self, response: Response) -> None:
        # Server header by default; extra_headers may change or remove it.
        headers = response.headers
        configured = self.server.extra_headers
        if configured is None:
            # The usual case, without building the set of extra names.
            server_header = self.server.server_header
            if server_header and "Server" not in headers:
                headers["Server"] = server_header
            return
        extra: HeadersLike | None
        if callable(configured):
            # No request parsed (a malformed one): the callable can't run.
            extra = None if self.request is None else configured(self, self.request)
        else:
            extra = configured
        if self.server.server_header and "Server" not in headers:
            extra_names = set()
            if extra is not None:
                extra_names = {k.lower() for k, _ in Headers(extra).raw_items()}
            if "server" not in extra_names:
                headers["Server"] = self.server.server_header
        if extra is not None:
            # An extra header replaces a default one of the same name, but
            # repeated extra headers (e.g. Set-Cookie) are all kept.
            replaced: set[str] = set()
            for name, value in Headers(extra).raw_items():
                if name.lower() not in replaced:
                    replaced.add(name.lower())
                    if name in headers:
                        del headers[name]
                headers[name] = value

    def handshake_lost(self, exc: Exception | None) -> None:
        if self._hs_timer is not None:
            self._hs_timer.cancel()
            self._hs_timer = None
        self.server._connection_lost(self)


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
