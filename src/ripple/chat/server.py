"""The chat server: the page at ``/``, the WebSocket at ``/ws``, ``/healthz``.

One port serves everything: ``process_request`` answers the plain HTTP
requests (the page's files, the health check) and lets ``/ws`` go on to the
WebSocket handshake. The handler speaks the JSON schema of docs/chat.md.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from .._stop import stop_on_signals
from ..exceptions import ConnectionClosed
from ..hub import Hub, HubUnavailable, make_backend
from ..protocol.headers import Headers
from ..protocol.http11 import Request, Response
from ..server import Server, ServerConnection, serve
from . import schema
from .publish import PUBLISH_STRATEGIES, make_fanout
from .ratelimit import TokenBucket
from .room import HubRoom, LocalRoom, Room
from .schema import InvalidInput, Join, User

__all__ = ["ChatConfig", "ChatServer", "run_chat"]

logger = logging.getLogger("ripple.chat")

#: The page's files: URL path -> (file in ripple/chat/static, Content-Type).
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/chat.js": ("chat.js", "text/javascript; charset=utf-8"),
    "/chat.css": ("chat.css", "text/css; charset=utf-8"),
    "/favicon.svg": ("favicon.svg", "image/svg+xml"),
}

#: The page runs only its own script and style and talks only to its own
#: server: even if text from a message got into the DOM as HTML, it couldn't
#: run a script or load anything.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

WS_PATH = "/ws"
HEALTH_PATH = "/healthz"


@dataclass(frozen=True)
class ChatConfig:
    """The chat server's settings; the ``ripple chat`` flags set them.

    Attributes:
        publish: how events reach the connections: sequential, gather, tasks
            or broadcast (see ripple.chat.publish).
        history: chat messages a newcomer gets in its welcome.
        max_bytes: largest client message handled, in UTF-8 bytes; bigger
            ones get a ``too_big`` error. Messages over
            ``websocket_max_size`` close the connection (1009).
        rate: messages per second a client may send on average (0: no limit).
        burst: messages a client may send at once.
        send_timeout: seconds a send may wait for a slow client (sequential,
            gather) before the client is dropped.
        max_backlog: characters (tasks) or bytes (broadcast) a client may fall
            behind by before it is dropped.
        allow_origins: origins allowed to open /ws besides the page's own
            (browsers send Origin; clients without one are allowed).
        hub: where the room lives: ``memory`` (this process) or a
            ``redis://`` URL (shared by every process using it). The hub
            needs ``publish="broadcast"``; the other strategies use a
            LocalRoom in memory.
        retain: events each room keeps for clients that resume (the
            stream's ``MAXLEN ~``).
        presence_ttl: seconds a user stays listed after their process stops
            refreshing it (the process died); refreshed every third of it.
        topic: the room's name in the hub.
    """

    publish: str = "broadcast"
    history: int = 50
    max_bytes: int = 4096
    rate: float = 5.0
    burst: int = 10
    send_timeout: float = 10.0
    max_backlog: int = 2**20
    allow_origins: tuple[str, ...] = ()
    hub: str = "memory"
    retain: int = 1000
    presence_ttl: float = 15.0
    topic: str = "lobby"

    @property
    def uses_hub(self) -> bool:
        """True when the room is on a Hub (always with ``--publish broadcast``)."""
        return self.publish == "broadcast" or self.hub != "memory"

    def __post_init__(self) -> None:
        if self.publish not in PUBLISH_STRATEGIES:
            raise ValueError(
                f"publish must be one of {', '.join(PUBLISH_STRATEGIES)}; got {self.publish!r}"
            )
        _check_int("history", self.history, 0)
        _check_int("max_bytes", self.max_bytes, 64)
        _check_int("burst", self.burst, 1)
        _check_int("max_backlog", self.max_backlog, 1)
        _check_int("retain", self.retain, 1)
        if self.hub != "memory" and not self.hub.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError(f"hub must be 'memory' or a redis:// URL, got {self.hub!r}")
        if self.hub != "memory" and self.publish != "broadcast":
            raise ValueError(
                f"a redis hub delivers with broadcast(): --publish {self.publish} "
                "works with the memory hub only"
            )
        if not self.topic:
            raise ValueError("topic must not be empty")
        if not (math.isfinite(self.presence_ttl) and self.presence_ttl > 0):
            raise ValueError(f"presence_ttl must be > 0 seconds, got {self.presence_ttl!r}")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"rate must be >= 0 messages per second, got {self.rate!r}")
        if not (math.isfinite(self.send_timeout) and self.send_timeout > 0):
            raise ValueError(f"send_timeout must be > 0 seconds, got {self.send_timeout!r}")
        for origin in self.allow_origins:
            parts = urlsplit(origin)
            if not parts.scheme or not parts.netloc or parts.path or origin.endswith("/"):
                raise ValueError(
                    f"{origin!r} isn't an origin: pass scheme://host[:port], "
                    "e.g. https://chat.example.com"
                )

    @property
    def websocket_max_size(self) -> int:
        """The WebSocket max_size: well above max_bytes, so a message a bit too
        big gets an error message instead of closing the connection."""
        return max(4 * self.max_bytes, 2**16)

    def limits(self) -> dict[str, Any]:
        """What the welcome message tells clients."""
        return {
            "max_bytes": self.max_bytes,
            "max_name": schema.MAX_NAME_LENGTH,
            "rate": self.rate,
            "burst": self.burst,
            "history": self.history,
        }


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def _load_static() -> dict[str, tuple[bytes, str]]:
    folder = resources.files(__package__).joinpath("static")
    return {
        path: (folder.joinpath(name).read_bytes(), content_type)
        for path, (name, content_type) in STATIC_FILES.items()
    }


class ChatServer:
    """The chat service: ``process_request`` for HTTP, ``handler`` for /ws.

    ``chat.serve(host, port)`` starts it with :func:`ripple.serve`; close the
    server, then ``await chat.aclose()``.

    Args:
        config: the settings.
        room: where events go; a :class:`LocalRoom` with ``config.publish``
            by default.
        clock: seconds since the epoch, for timestamps (tests pass their own).
        monotonic: monotonic seconds, for rate limits (tests pass their own).
    """

    def __init__(
        self,
        config: ChatConfig | None = None,
        *,
        room: Room | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config = config or ChatConfig()
        if room is None and config.uses_hub:
            retain = max(config.retain, config.history)
            hub = Hub(make_backend(config.hub, maxlen=retain), presence_ttl=config.presence_ttl)
            room = HubRoom(
                hub,
                topic=config.topic,
                history=config.history,
                limits=config.limits(),
                clock=clock,
            )
        elif room is None:
            fanout = make_fanout(
                config.publish, send_timeout=config.send_timeout, max_backlog=config.max_backlog
            )
            room = LocalRoom(fanout, history=config.history, limits=config.limits(), clock=clock)
        self.room = room
        self._monotonic = monotonic
        self._static = _load_static()
        self._origins = {o.lower() for o in config.allow_origins}

    def serve(self, host: str | None, port: int | None, **kwargs: Any) -> serve:
        """:func:`ripple.serve` with this chat's hooks; kwargs go to it."""
        kwargs.setdefault("max_size", self.config.websocket_max_size)
        if self.config.publish == "broadcast":
            # broadcast() closes a connection over this many buffered bytes.
            kwargs.setdefault("broadcast_limit", self.config.max_backlog)
            kwargs.setdefault("broadcast_overflow", "close")
        return serve(self.handler, host, port, process_request=self.process_request, **kwargs)

    async def aclose(self) -> None:
        """Stop the room's delivery (after the server is closed)."""
        await self.room.aclose()

    # -- HTTP -----------------------------------------------------------------

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Answer the page's files and the health check; let /ws through."""
        path = request.path.partition("?")[0]
        upgrade = "Upgrade" in request.headers
        if path == WS_PATH:
            return self._check_origin(connection, request)
        if upgrade:
            return connection.respond(404, f"the WebSocket endpoint is {WS_PATH}")
        if request.method not in ("GET", "HEAD"):
            response = connection.respond(405, "only GET and HEAD are allowed here")
            response.headers["Allow"] = "GET, HEAD"
            return response
        if path == HEALTH_PATH:
            if not self.room.available:
                # Serving local clients, but nothing can be published.
                response = connection.respond(503, "hub unavailable: can't reach Redis")
                response.headers["Retry-After"] = "1"
                return response
            return self._answer(request, b"ok\n", "text/plain; charset=utf-8")
        found = self._static.get(path)
        if found is None:
            return connection.respond(
                404, f"not found; the chat is at / and its WebSocket at {WS_PATH}"
            )
        body, content_type = found
        return self._answer(request, body, content_type)

    @staticmethod
    def _answer(request: Request, body: bytes, content_type: str) -> Response:
        headers = Headers()
        headers["Content-Type"] = content_type
        headers["Content-Length"] = str(len(body))
        headers["Cache-Control"] = "no-cache"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        if content_type.startswith("text/html"):
            headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
        headers["Connection"] = "close"
        return Response(200, "OK", headers, b"" if request.method == "HEAD" else body)

    def _check_origin(self, connection: ServerConnection, request: Request) -> Response | None:
        # A browser on another site could open /ws in its visitor's name
        # (cross-site WebSocket hijacking): admit the page's own origin, the
        # ones configured, and clients that send no Origin (not browsers).
        origins = request.headers.get_all("Origin")
        if not origins:
            return None
        if len(origins) == 1:
            origin = origins[0].lower()
            hosts = request.headers.get_all("Host")
            if origin in self._origins:
                return None
            # The scheme isn't compared: TLS may end at a proxy in front.
            if len(hosts) == 1 and urlsplit(origin).netloc == hosts[0].lower():
                return None
        return connection.respond(403, "this origin may not open the chat's WebSocket")

    # -- WebSocket --------------------------------------------------------------

    async def handler(self, ws: ServerConnection) -> None:
        """One client: join, then chat messages, until it goes."""
        config = self.config
        bucket = TokenBucket(config.rate, config.burst, self._monotonic)
        user: User | None = None
        limited = False
        try:
            async for data in ws:
                if not bucket.take():
                    if not limited:
                        # Say it once per flood, not once per dropped message.
                        limited = True
                        await ws.send(self._rate_limited(bucket))
                    continue
                limited = False
                try:
                    message = schema.parse(data, config.max_bytes)
                    if isinstance(message, Join):
                        if user is not None:
                            raise InvalidInput("already_joined", "you have joined already")
                        joining = User(ws.id.hex[:12], message.name)
                        try:
                            await self.room.join(
                                ws, joining, since=message.since, epoch=message.epoch
                            )
                        except HubUnavailable as exc:
                            raise InvalidInput(
                                "unavailable", f"couldn't join: {exc}; try again later"
                            ) from None
                        user = joining
                        logger.info("%s joined as %r from %s", user.id, user.name, _peer(ws))
                    elif user is None:
                        raise InvalidInput(
                            "not_joined", 'send {"type": "join", "name": ...} first'
                        )
                    else:
                        try:
                            await self.room.post(ws, message.text)
                        except HubUnavailable as exc:
                            # Never a silent drop: the sender hears it wasn't sent.
                            raise InvalidInput(
                                "unavailable", f"your message wasn't sent: {exc}"
                            ) from None
                except InvalidInput as exc:
                    logger.debug("%s: %s: %s", ws.id, exc.code, exc.message)
                    await ws.send(schema.error(exc.code, exc.message))
        except ConnectionClosed:
            pass  # the client went away while we answered it
        finally:
            if user is not None:
                logger.info("%s left", user.id)
                await self.room.leave(ws)

    def _rate_limited(self, bucket: TokenBucket) -> str:
        wait = bucket.retry_after()
        return schema.error(
            "rate_limited",
            f"too many messages: at most {bucket.burst} at once and {bucket.rate:g} per "
            f"second; yours are dropped for the next {wait:.2f} s",
            retry_after=round(wait, 3),
        )


def _redacted(url: str) -> str:
    """``url`` without its password, for logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = f"{parts.username}:***@" if parts.username else ":***@"
    return parts._replace(netloc=user + netloc).geturl()


def _peer(ws: ServerConnection) -> str:
    address = ws.remote_address
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}:{address[1]}"
    return str(address)


def _shown_url(server: Server, host: str | None) -> tuple[str, str]:
    port = next(iter(server.sockets)).getsockname()[1]
    if host in (None, "", "0.0.0.0", "::"):
        shown = "localhost"  # every interface: this one works from here
    else:
        assert host is not None
        shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/", f"ws://{shown}:{port}{WS_PATH}"


async def run_chat(
    host: str,
    port: int,
    config: ChatConfig,
    *,
    announce: Callable[[str], None] | None = None,
    reuse_port: bool = False,
) -> None:
    """Run the chat until SIGINT or SIGTERM, then close every client with 1001.

    Args:
        host: address to listen on.
        port: TCP port; 0 picks one.
        config: the settings.
        announce: called with the line saying where the chat is; prints it
            by default.
        reuse_port: bind with SO_REUSEPORT, so that several processes
            (``ripple chat --workers N``) share the port.
    """
    loop = asyncio.get_running_loop()
    stop, restore_signals = stop_on_signals(loop)
    chat = ChatServer(config)
    if isinstance(chat.room, HubRoom):
        # Connect to Redis now (or say it's down) rather than at the first join.
        await chat.room.hub.start()
    kwargs: dict[str, Any] = {"reuse_port": True} if reuse_port else {}
    server = await chat.serve(host, port, **kwargs)
    try:
        page, ws_url = _shown_url(server, host)
        line = f"ripple chat on {page} (WebSocket {ws_url}, publish: {config.publish}"
        if config.hub != "memory":
            line += f", hub: {_redacted(config.hub)}"
        line += ")"
        if announce is None:
            print(line, flush=True)
        else:
            announce(line)
        await stop
    finally:
        restore_signals()
        # Every connection gets 1001 "server shutting down"; handlers leave the room.
        server.close()
        await server.wait_closed()
        await chat.aclose()
