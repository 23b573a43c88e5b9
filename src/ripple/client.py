"""The asyncio client: `connect`, `unix_connect`, `ClientConnection`."""

from __future__ import annotations

import asyncio
import logging
import random
import ssl as ssl_module
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterator, Sequence
from typing import Any

from .connection import Connection, check_options
from .exceptions import InvalidHandshake, InvalidMessage, InvalidStatus, SecurityError
from .opening import Opening
from .protocol.deflate import client_default, with_deflate
from .protocol.extensions import ClientExtensionFactory
from .protocol.handshake import build_request, check_response, generate_key
from .protocol.headers import Headers, HeadersLike
from .protocol.http11 import parse_response
from .protocol.state import CLIENT, Protocol
from .protocol.uri import WebSocketURI, parse_uri
from .proxy import Proxy, ProxyError, open_tunnel, parse_proxy, proxy_from_env
from .typing import LoggerLike

__all__ = ["Backoff", "ClientConnection", "connect", "unix_connect"]

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


class Backoff:
    """When ``async for ws in connect(...)`` tries again, and after how long.

    The n-th retry in a row waits ``min(max_delay, initial_delay * factor**(n-1))``
    seconds, scaled by a random factor drawn from ``[1 - jitter, 1]`` so that
    many clients cut off at once don't come back at once. The sequence starts
    over once a connection opens.

    Args:
        initial_delay: seconds before the first retry (default 1).
        factor: how much each delay grows over the previous one (default 2).
        max_delay: the longest delay, in seconds (default 60).
        jitter: the fraction of each delay that is random, 0 to 1 (default 0.5).

    Subclass it and override :meth:`transient` to change which errors are
    retried.
    """

    __slots__ = ("factor", "initial_delay", "jitter", "max_delay")

    def __init__(
        self,
        initial_delay: float = 1.0,
        factor: float = 2.0,
        max_delay: float = 60.0,
        jitter: float = 0.5,
    ) -> None:
        for name, value in (("initial_delay", initial_delay), ("max_delay", max_delay)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a number > 0, got {value!r}")
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or factor < 1:
            raise ValueError(f"factor must be a number >= 1, got {factor!r}")
        if (
            isinstance(jitter, bool)
            or not isinstance(jitter, (int, float))
            or not 0 <= jitter <= 1
        ):
            raise ValueError(f"jitter must be a number from 0 to 1, got {jitter!r}")
        if max_delay < initial_delay:
            raise ValueError(
                f"max_delay ({max_delay!r}) must be >= initial_delay ({initial_delay!r})"
            )
        self.initial_delay = initial_delay
        self.factor = factor
        self.max_delay = max_delay
        self.jitter = jitter

    def __repr__(self) -> str:
        return (
            f"Backoff(initial_delay={self.initial_delay!r}, factor={self.factor!r}, "
            f"max_delay={self.max_delay!r}, jitter={self.jitter!r})"
        )

    def delays(self) -> Iterator[float]:
        """The delays before each retry in a row, jitter applied; endless."""
        delay = self.initial_delay
        while True:
            # random, not secrets: spreading retries isn't security-relevant.
            yield delay * (1 - self.jitter * random.random())
            delay = min(self.max_delay, delay * self.factor)

    def transient(self, exc: BaseException) -> bool:
        """Whether retrying may fix the error that opening the connection raised.

        Retried: ``OSError`` (refused, reset, unreachable, DNS...) and
        ``TimeoutError``, except a certificate that fails verification and
        other TLS errors than an unexpected EOF; ``InvalidMessage`` (the
        server went away during the handshake, or a proxy in front of it
        answered garbage); an HTTP 429 or 5xx from the server or the proxy.
        Not retried: any other ``InvalidHandshake`` (a 4xx, a redirect,
        a 101 with wrong headers, a failed negotiation, a limit exceeded),
        and anything else.
        """
        if isinstance(exc, ssl_module.SSLCertVerificationError):
            return False
        if isinstance(exc, ssl_module.SSLError):
            return isinstance(exc, (ssl_module.SSLEOFError, ssl_module.SSLZeroReturnError))
        if isinstance(exc, (OSError, TimeoutError)):
            return True
        if isinstance(exc, (InvalidStatus, ProxyError)):
            response = exc.response
            if response is None:  # a proxy that didn't answer properly
                return True
            return response.status_code == 429 or 500 <= response.status_code < 600
        if isinstance(exc, SecurityError):
            return False
        return isinstance(exc, InvalidMessage)


class connect(Opening[ClientConnection]):
    """Open a WebSocket connection.

    Usable three ways:

    - ``ws = await connect(uri)``: one connection; you close it.
    - ``async with connect(uri) as ws:``: closed when the block ends.
    - ``async for ws in connect(uri):``: a new connection each time round the
      loop. When opening fails with an error that retrying may fix (see
      :meth:`Backoff.transient`), it tries again after a delay that grows
      (``backoff``); other errors are raised out of the loop. When the body
      goes round again (``continue``, or reaching its end), the previous
      connection is closed if it is still open and the next one opened.
      Exceptions in the body propagate as usual: catch ``ConnectionClosed``
      and ``continue`` to reconnect after losing the connection.

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
        proxy: True (default) uses the proxy that the environment gives
            (``https_proxy`` for wss://, ``http_proxy`` for ws://, minus
            ``no_proxy``); an ``http://[user:pass@]host:port`` URL uses that
            HTTP proxy (CONNECT); None connects directly.
        backoff: the retry delays of ``async for``; ``Backoff()`` by default.
        open_timeout: seconds the TCP connect, the proxy's CONNECT, TLS and
            the handshake may take together.
        ping_interval, ping_timeout, close_timeout, max_size, max_queue,
        read_limit, write_limit, logger: as for :func:`serve`.
        ssl: for a wss:// URI, the :class:`ssl.SSLContext` to use; by default
            ``ssl.create_default_context()``, which verifies the certificate
            and the host name against the system's CAs.
        server_hostname: the name to send in SNI and to check the
            certificate against; the URI's host by default (unix sockets,
            proxies and ``sock=`` included).
        **kwargs: passed to ``loop.create_connection`` (``sock``,
            ``local_addr``...).

    Raises:
        InvalidURI: the URI isn't a valid ws:// or wss:// URI.
        ValueError: ``ssl=`` with a ws:// URI, or ``ssl=None`` with a wss://
            one; a proxy URL that isn't http://; ``proxy=`` with ``sock=``.
        InvalidHandshake: the server refused or answered something invalid
            (``InvalidStatus`` carries the response); ``ProxyError`` when
            the proxy refused the tunnel.
        OSError: the TCP connection failed; ``ssl.SSLCertVerificationError``
            when the server's certificate isn't trusted or doesn't match
            the host name.
        TimeoutError: the handshake took longer than ``open_timeout``.
    """

    #: How the reconnecting loop waits; tests replace it on an instance.
    _sleep: Callable[[float], Awaitable[None]] = staticmethod(asyncio.sleep)

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
        proxy: str | bool | None = True,
        backoff: Backoff | None = None,
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
        if backoff is not None and not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a ripple.Backoff, got {backoff!r}")
        self.backoff = backoff if backoff is not None else Backoff()
        self.logger = logger or logging.getLogger("ripple.client")
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
        self.user_agent = user_agent_header
        self.open_timeout = open_timeout
        self._unix = kwargs.pop("unix", False)
        self._path = kwargs.pop("path", None)
        # An explicit proxy is parsed now, so that a bad URL raises at the call;
        # proxy=True reads the environment at each attempt.
        self.proxy: Proxy | bool | None
        if proxy is True or proxy is None or proxy is False:
            self.proxy = None if proxy is False else proxy
        elif isinstance(proxy, str):
            if self._unix or "sock" in kwargs:
                raise ValueError("proxy= can't be used with sock= or a unix socket")
            self.proxy = parse_proxy(proxy)
        else:
            raise TypeError(f"proxy must be a URL str, True or None, got {proxy!r}")
        if self.proxy is True and (self._unix or "sock" in kwargs):
            self.proxy = None  # the caller chose the socket
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

    def _proxy(self) -> Proxy | None:
        if self.proxy is True:
            url = proxy_from_env(self.wsuri.host, self.wsuri.port, self.wsuri.secure)
            return None if url is None else parse_proxy(url)
        return self.proxy or None

    async def open(self) -> ClientConnection:
        loop = asyncio.get_running_loop()

        def factory() -> ClientConnection:
            return ClientConnection(**self.connection_kwargs)

        async def attempt() -> ClientConnection:
            kwargs = dict(self.kwargs)
            if self._unix:
                _, conn = await loop.create_unix_connection(factory, self._path, **kwargs)
            else:
                proxy = self._proxy()
                if proxy is not None:
                    kwargs["sock"] = await open_tunnel(
                        proxy, self.wsuri.host, self.wsuri.port, user_agent=self.user_agent
                    )
                    if self.wsuri.secure:
                        kwargs.setdefault("server_hostname", self.wsuri.host)
                    try:
                        _, conn = await loop.create_connection(factory, **kwargs)
                    except BaseException:
                        kwargs["sock"].close()
                        raise
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

    def __aiter__(self) -> AsyncGenerator[ClientConnection, None]:
        return self._reconnecting()

    async def _reconnecting(self) -> AsyncGenerator[ClientConnection, None]:
        delays: Iterator[float] | None = None
        target = self.wsuri.host_header
        while True:
            try:
                connection = await self.open()
            except Exception as exc:
                if not self.backoff.transient(exc):
                    self.logger.info("not retrying %s: %s", target, exc or type(exc).__name__)
                    raise
                if delays is None:
                    delays = self.backoff.delays()
                delay = next(delays)
                self.logger.info(
                    "connecting to %s failed: %s; retrying in %.1f s",
                    target,
                    exc or type(exc).__name__,
                    delay,
                )
                await self._sleep(delay)
                continue
            try:
                yield connection
            finally:
                # Going round again, or the loop ended (break, an exception):
                # asyncio finalizes this generator, which closes the connection.
                if not connection.closed:
                    await connection.close()
            # The connection opened: a lost connection starts the delays over,
            # but still waits the first one (a server that accepts and drops
            # at once isn't hammered).
            delays = self.backoff.delays()
            delay = next(delays)
            self.logger.info("reconnecting to %s in %.1f s", target, delay)
            await self._sleep(delay)


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
