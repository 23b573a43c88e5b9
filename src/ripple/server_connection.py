"""The server side of one connection: `ServerConnection`.

It answers the opening handshake (request checks, ``process_request``,
negotiation, admission under ``max_connections``, ``process_response``),
sends refusals, and runs the handler. :mod:`ripple.server` holds the
:class:`Server` it belongs to and re-exports :class:`ServerConnection`.
"""

from __future__ import annotations

import asyncio
import http
import inspect
from typing import TYPE_CHECKING, Any

from .connection import Connection
from .exceptions import ConnectionClosed, InvalidHandshake, NegotiationError, SecurityError
from .protocol.extensions import Extension
from .protocol.handshake import HandshakeRejected, printable, reject, server_accept
from .protocol.headers import Headers, HeadersLike
from .protocol.http11 import Request, Response, parse_request
from .protocol.state import OPEN, SERVER, Protocol

if TYPE_CHECKING:
    from .server import Server

__all__ = ["ServerConnection"]

#: Seconds a client refused for ``max_connections`` is told to wait (Retry-After).
RETRY_AFTER = 5

# The 101's fields that carry the negotiation: process_response may not change them.
_HANDSHAKE_FIELDS = (
    "Upgrade",
    "Connection",
    "Sec-WebSocket-Accept",
    "Sec-WebSocket-Protocol",
    "Sec-WebSocket-Extensions",
)


async def _hook_result(value: Any, hook: str) -> Response | None:
    # process_request and process_response may be sync or async.
    if inspect.isawaitable(value):
        value = await value
    if value is not None and not isinstance(value, Response):
        raise TypeError(f"{hook} must return a Response or None, not {value!r}")
    return value


def _handshake_fields(response: Response) -> list[list[str]]:
    return [response.headers.get_all(name) for name in _HANDSHAKE_FIELDS]


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
