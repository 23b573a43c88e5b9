"""The asyncio server: `serve`, `unix_serve`, `Server`, `ServerConnection`."""

from __future__ import annotations

import asyncio
import http
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Union

from .connection import Connection, check_options
from .exceptions import ConnectionClosed, InvalidHandshake, NegotiationError, SecurityError
from .opening import Opening
from .protocol.extensions import ServerExtensionFactory
from .protocol.handshake import HandshakeRejected, reject, server_accept
from .protocol.headers import Headers, HeadersLike
from .protocol.http11 import Request, Response, parse_request
from .protocol.state import OPEN, SERVER, Protocol
from .typing import LoggerLike

__all__ = ["Server", "ServerConnection", "serve", "unix_serve"]

SERVER_HEADER = "ripple"

Handler = Callable[["ServerConnection"], Awaitable[None]]
ProcessRequest = Callable[
    ["ServerConnection", Request], Union[Awaitable[Union[Response, None]], Response, None]
]
SelectSubprotocol = Callable[["ServerConnection", Sequence[str]], Union[str, None]]
ExtraHeaders = Union[HeadersLike, Callable[["ServerConnection", Request], HeadersLike], None]


class ServerConnection(Connection):
    """A connection accepted by a :class:`Server`; the handler receives it.

    Everything a handler uses is on :class:`Connection`: ``recv``, ``send``,
    ``ping``, ``close``, async iteration and the address and close properties.
    """

    side_name = "server"

    def __init__(self, server: Server, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server
        self._hs_buf = bytearray()
        self._hs_timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

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
        self._hs_buf += data
        try:
            parsed = parse_request(self._hs_buf)
        except SecurityError as exc:
            self._refuse(reject(431, f"request headers too large: {exc}"), exc)
            return
        except InvalidHandshake as exc:
            self._refuse(reject(400, f"malformed HTTP request: {exc}"), exc)
            return
        if parsed is None:
            return
        request, consumed = parsed
        del self._hs_buf[:consumed]
        self.request = request
        self._task = self.loop.create_task(self._run(request))

    def _refuse(self, response: Response, exc: Exception) -> None:
        self.logger.debug("handshake refused: %s", exc)
        self._finish_response(response)
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
        data = p.send_close(code, reason)
        if data and self.transport is not None:
            self.transport.write(data)
        if p.close_transport:
            self._close_transport()
        else:
            self._arm_close_timer()

    async def _handshake(self, request: Request) -> bool:
        server = self.server
        if server.process_request is not None:
            result = server.process_request(self, request)
            if inspect.isawaitable(result):
                result = await result
            if result is not None:
                if not isinstance(result, Response):
                    raise TypeError(
                        f"process_request must return a Response or None, not {result!r}"
                    )
                self._finish_response(result)
                self._write_response(result)
                assert self.transport is not None
                self.transport.close()
                return False

        def select(offered: list[str]) -> str | None:
            if server.select_subprotocol is not None:
                return server.select_subprotocol(self, offered)
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
            )
        except HandshakeRejected as exc:
            self.logger.debug("handshake refused: %s", exc)
            response = exc.response
            self._finish_response(response)
            self._write_response(response)
            assert self.transport is not None
            self.transport.close()
            return False
        except NegotiationError as exc:
            response = reject(400, str(exc))
            self._finish_response(response)
            self._write_response(response)
            assert self.transport is not None
            self.transport.close()
            return False
        self._finish_response(response, request)
        if self.transport is None or self._lost.done():
            return False
        self.subprotocol = subprotocol
        self._write_response(response)
        protocol = Protocol(
            SERVER, max_size=self.max_size, extensions=extensions, defer_failure=True
        )
        leftover = bytes(self._hs_buf)
        self._hs_buf = bytearray()
        self.start_protocol(protocol, leftover)
        return True

    def _finish_response(self, response: Response, request: Request | None = None) -> None:
        # Server header by default; extra_headers may change or remove it.
        headers = response.headers
        configured = self.server.extra_headers
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
        if response.status_code != 101:
            # A plain answer ends the connection: frame the body for the client.
            if "Content-Length" not in headers:
                headers["Content-Length"] = str(len(response.body))
            if "Connection" not in headers:
                headers["Connection"] = "close"

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
        select_subprotocol: SelectSubprotocol | None = None,
        subprotocols: Sequence[str] | None = None,
        extra_headers: ExtraHeaders = None,
        server_header: str | None = SERVER_HEADER,
        extension_factories: Sequence[ServerExtensionFactory] = (),
        open_timeout: float | None = 10,
        logger: LoggerLike = None,
    ) -> None:
        self.handler = handler
        self.process_request = process_request
        self.select_subprotocol = select_subprotocol
        self.subprotocols = list(subprotocols) if subprotocols is not None else None
        if extra_headers is not None and not callable(extra_headers):
            # Check at the call: a bad value mustn't surface at the first client.
            extra_headers = Headers(extra_headers)
        self.extra_headers = extra_headers
        self.server_header = server_header
        self.extension_factories = list(extension_factories)
        self.open_timeout = open_timeout
        self.logger = logger or logging.getLogger("ripple.server")
        self.server: asyncio.Server | None = None
        self._transports: set[ServerConnection] = set()
        self._open: set[ServerConnection] = set()
        self._handlers: set[ServerConnection] = set()
        self._closing = False
        self._close_task: asyncio.Task[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    # Bookkeeping from connections.
    def _connection_made(self, connection: ServerConnection) -> None:
        self._transports.add(connection)

    def _accepted(self, connection: ServerConnection) -> None:
        self._open.add(connection)
        self._handlers.add(connection)
        if self._closing:
            connection._close_after_handler(1001, "server shutting down")

    def _handler_done(self, connection: ServerConnection) -> None:
        self._handlers.discard(connection)

    def _connection_lost(self, connection: ServerConnection) -> None:
        self._transports.discard(connection)
        self._open.discard(connection)

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
        compression: "deflate" or None. permessage-deflate isn't implemented
            yet, so "deflate" currently negotiates nothing (a compliant peer
            falls back to uncompressed frames).
        subprotocols: subprotocols the server accepts, in preference order.
        extra_headers: headers added to the handshake response: a mapping,
            a list of pairs, or a callable ``(connection, request)`` returning one.
        process_request: ``(connection, request)``, sync or async; return a
            :class:`Response` to answer plain HTTP, None to continue the handshake.
        select_subprotocol: ``(connection, offered)`` returning one of the
            offered subprotocols or None; overrides ``subprotocols``.
        ping_interval: seconds between keepalive pings; None disables them.
        ping_timeout: seconds to wait for a pong before closing with 1011.
        close_timeout: seconds the closing handshake may take.
        max_size: largest incoming message, in bytes (close 1009 above it).
        max_queue: incoming messages queued before reading pauses.
        read_limit: incoming bytes queued before reading pauses.
        write_limit: write buffer high-water mark; ``send()`` waits above it.
        extensions: extension factories, tried in order.
        open_timeout: seconds the opening handshake may take; None for no limit.
        server_header: the Server header value; None to send none.
        **kwargs: passed to ``loop.create_server`` (``sock``, ``reuse_port``,
            ``backlog``, ``ssl``...).

    Raises:
        ValueError: a parameter is out of range (the message says which).
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
        select_subprotocol: SelectSubprotocol | None = None,
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
        **kwargs: Any,
    ) -> None:
        if not callable(handler):
            raise TypeError("handler must be a coroutine function taking the connection")
        if compression not in ("deflate", None):
            raise ValueError(f'compression must be "deflate" or None, got {compression!r}')
        self._unix = kwargs.pop("unix", False)
        self._path = kwargs.pop("path", None)
        self.server = Server(
            handler,
            process_request=process_request,
            select_subprotocol=select_subprotocol,
            subprotocols=subprotocols,
            extra_headers=extra_headers,
            server_header=server_header,
            extension_factories=list(extensions or ()),
            open_timeout=open_timeout,
            logger=logger,
        )
        connection_kwargs: dict[str, Any] = dict(
            logger=logger,
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
        self._factory: Callable[[], ServerConnection] = lambda: ServerConnection(
            self.server, **connection_kwargs
        )
        self._host = host
        self._port = port
        self._kwargs = kwargs

    async def open(self) -> Server:
        loop = asyncio.get_running_loop()
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
