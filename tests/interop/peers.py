"""Peers for the interop tests: the other end of a ripple connection.

Each peer wraps a WebSocket implementation nobody here wrote (the
``websockets`` library, ``aiohttp``, node's ``ws``) behind one small async
interface, :class:`Peer`, so a test body runs unchanged against each of them,
with ripple as the server or as the client.

:func:`open_pair` starts one side, connects the other, and returns the ripple
connection with its peer. Each pairing runs with permessage-deflate (RFC 7692)
enabled on both sides, and with it disabled on both sides.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import itertools
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Union

import aiohttp
import pytest
import websockets.asyncio.client
import websockets.asyncio.connection
import websockets.asyncio.server
from aiohttp import web

import ripple
from ripple.protocol.deflate import PerMessageDeflate

from .wire import Relay, WireLog

if sys.version_info >= (3, 11):
    from asyncio import timeout as _timeout
else:  # aiohttp depends on async-timeout before 3.11
    from async_timeout import timeout as _timeout  # type: ignore[import-not-found,unused-ignore]

Data = Union[str, bytes]

#: Bound, in seconds, on every wait in these tests.
TIMEOUT = 5.0
#: max_size for both sides: room for the 1 MiB messages.
MAX_SIZE = 8 * 2**20

NODE_DIR = Path(__file__).resolve().parent / "node"
NODE_PEER = NODE_DIR / "peer.js"
NODE_WS = NODE_DIR / "node_modules" / "ws" / "package.json"

# No keepalive pings: the only pings on the wire are the tests' own.
RIPPLE_OPTIONS: dict[str, Any] = {"max_size": MAX_SIZE, "ping_interval": None}


def within(seconds: float = TIMEOUT) -> Any:
    """``async with within():`` bounds a wait (asyncio.timeout)."""
    return _timeout(seconds)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1", "yes"}


def require_node() -> str:
    """The node executable; skip locally, fail under CI=true, when node or ws is missing."""
    node = shutil.which("node")
    missing = []
    if node is None:
        missing.append("node is not on PATH")
    if not NODE_WS.is_file():
        missing.append(f"{NODE_WS.parent} is missing")
    if missing:
        reason = f"{'; '.join(missing)}: run npm ci in tests/interop/node"
        if in_ci():
            pytest.fail(f"{reason} (CI=true, so this is an error, not a skip)", pytrace=False)
        pytest.skip(reason)
    assert node is not None
    return node


class CloseSeen(NamedTuple):
    """The close frame a peer received; reason is None where the library doesn't expose it."""

    code: int | None
    reason: str | None


class PeerClosed(Exception):
    """The peer's connection closed while a test waited for a message."""


class Peer(abc.ABC):
    """One open connection of a peer library, as the tests drive it."""

    name: str
    #: Whether the peer's library reports permessage-deflate as in use.
    deflate = False
    #: The handshake's Sec-WebSocket-Extensions headers as the peer saw them:
    #: the client's offer and the server's answer (None: absent or not exposed).
    extensions_offered: str | None = None
    extensions_accepted: str | None = None
    #: Whether the library can send one message as several frames.
    can_send_fragmented = True
    #: Whether the library's reply to a close frame echoes its status code
    #: (RFC 6455 §5.5.1 says an endpoint "typically" does).
    echoes_close_code = True

    @abc.abstractmethod
    async def send(self, message: Data) -> None:
        """Send one message, as one frame."""

    @abc.abstractmethod
    async def send_fragments(self, chunks: Sequence[Data]) -> None:
        """Send one message as one frame per chunk."""

    @abc.abstractmethod
    async def recv(self) -> Data:
        """The next message received."""

    @abc.abstractmethod
    async def ping(self, payload: bytes) -> None:
        """Send a ping and return when the pong with the same payload arrives."""

    async def ping_seen(self) -> bytes | None:
        """The payload of the next ping received, or None if the library doesn't report pings."""
        return None

    @abc.abstractmethod
    async def close(self, code: int, reason: str) -> CloseSeen:
        """Start the closing handshake; return when it's done, with the reply received."""

    @abc.abstractmethod
    async def wait_closed(self) -> CloseSeen:
        """Wait for the connection to close; return the close frame received."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Release everything (teardown); no-op for what's already closed."""


# -- websockets --------------------------------------------------------------


class WebsocketsPeer(Peer):
    """A connection of the ``websockets`` library (its asyncio API), either side."""

    name = "websockets"

    def __init__(self, ws: websockets.asyncio.connection.Connection) -> None:
        self.ws = ws
        self.deflate = any(ext.name == "permessage-deflate" for ext in ws.protocol.extensions)
        assert ws.request is not None and ws.response is not None
        self.extensions_offered = ws.request.headers.get("Sec-WebSocket-Extensions")
        self.extensions_accepted = ws.response.headers.get("Sec-WebSocket-Extensions")

    async def send(self, message: Data) -> None:
        await self.ws.send(message)

    async def send_fragments(self, chunks: Sequence[Data]) -> None:
        # An iterable is sent as a fragmented message, one frame per item.
        await self.ws.send(list(chunks))

    async def recv(self) -> Data:
        return await self.ws.recv()

    async def ping(self, payload: bytes) -> None:
        pong = await self.ws.ping(payload)
        await pong

    async def close(self, code: int, reason: str) -> CloseSeen:
        await self.ws.close(code, reason)
        return CloseSeen(self.ws.close_code, self.ws.close_reason)

    async def wait_closed(self) -> CloseSeen:
        await self.ws.wait_closed()
        return CloseSeen(self.ws.close_code, self.ws.close_reason)

    async def aclose(self) -> None:
        await self.ws.close()


# -- aiohttp -----------------------------------------------------------------


class AiohttpPeer(Peer):
    """An aiohttp WebSocket, client or server side.

    aiohttp handles control frames only inside ``receive()``, so a task reads
    all the time and sorts what arrives.  With ``autoping=True`` (aiohttp's
    default) it answers pings itself and hides pongs from the application;
    :meth:`ping` needs a peer opened with ``observe_pongs=True``.
    """

    name = "aiohttp"
    # aiohttp has no API to send a message in several frames.
    can_send_fragmented = False
    # With autoclose, aiohttp answers a close frame with close(): code 1000.
    echoes_close_code = False

    def __init__(
        self,
        ws: web.WebSocketResponse[bool] | aiohttp.ClientWebSocketResponse[bool],
        *,
        autoping: bool,
        session: aiohttp.ClientSession | None = None,
        offered: str | None = None,
        accepted: str | None = None,
    ) -> None:
        self.ws = ws
        # compress: the negotiated window bits, 0 without permessage-deflate.
        self.deflate = bool(ws.compress)
        self.extensions_offered = offered
        self.extensions_accepted = accepted
        self.autoping = autoping
        self.session = session
        self._messages: asyncio.Queue[Data | BaseException] = asyncio.Queue()
        self._pongs: asyncio.Queue[bytes] = asyncio.Queue()
        self._close_rcvd: asyncio.Future[CloseSeen] = asyncio.get_running_loop().create_future()
        #: Set once the connection is closed: a server handler waits for it.
        self.done = asyncio.Event()
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        ws = self.ws
        try:
            while True:
                msg = await ws.receive()
                if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    self._messages.put_nowait(msg.data)
                elif msg.type is aiohttp.WSMsgType.PONG:
                    self._pongs.put_nowait(msg.data)
                elif msg.type is aiohttp.WSMsgType.PING:
                    continue  # autoping=False: nothing here expects the peer's pong
                else:
                    if msg.type is aiohttp.WSMsgType.CLOSE:
                        # autoclose already replied; data is the code, extra the reason.
                        self._close_rcvd.set_result(CloseSeen(msg.data, msg.extra))
                    elif msg.type is aiohttp.WSMsgType.ERROR:
                        self._messages.put_nowait(PeerClosed(f"aiohttp error: {msg.data!r}"))
                    self.done.set()
                    break
        finally:
            self._messages.put_nowait(PeerClosed(f"aiohttp connection closed ({ws.close_code})"))

    async def send(self, message: Data) -> None:
        if isinstance(message, str):
            await self.ws.send_str(message)
        else:
            await self.ws.send_bytes(message)

    async def send_fragments(self, chunks: Sequence[Data]) -> None:
        raise NotImplementedError("aiohttp can't send a fragmented message")

    async def recv(self) -> Data:
        item = await self._messages.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def ping(self, payload: bytes) -> None:
        if self.autoping:
            raise RuntimeError("aiohttp hides pongs with autoping=True: open with observe_pongs")
        await self.ws.ping(payload)
        while await self._pongs.get() != payload:
            pass

    async def close(self, code: int, reason: str) -> CloseSeen:
        if isinstance(self.ws, web.WebSocketResponse):
            # Server side: with receive() pending, close() drops TCP without
            # reading the reply; stop reading first so that close() reads it.
            # (Client side, close() interrupts receive() and reads the reply;
            # cancelling receive() there would record 1006.)
            self.reader.cancel()
            await asyncio.wait([self.reader])
        try:
            await self.ws.close(code=code, message=reason.encode())
            await asyncio.wait([self.reader])
        finally:
            self.done.set()
        # aiohttp keeps the code of the close frame it received, not its reason.
        return CloseSeen(self.ws.close_code, None)

    async def wait_closed(self) -> CloseSeen:
        await self.reader
        if not self._close_rcvd.done():
            raise PeerClosed(f"aiohttp closed without a close frame ({self.ws.close_code})")
        return self._close_rcvd.result()

    async def aclose(self) -> None:
        try:
            await self.ws.close()
            self.reader.cancel()
            await asyncio.wait([self.reader])
        finally:
            self.done.set()
            if self.session is not None:
                await self.session.close()


# -- node's ws -------------------------------------------------------------


class NodeHub:
    """node/peer.js in hub mode: one node process for the whole test run.

    Starting node (and loading ws) for each test would cost more than most
    tests take; the hub runs one session per TCP connection instead. It isn't
    tied to an event loop (each test has its own): a plain subprocess, started
    on first use, restarted if it died, stopped by :func:`stop_node_hub`.
    """

    def __init__(self, node: str) -> None:
        # Open as long as the hub runs: stop() closes it.
        self.stderr = tempfile.TemporaryFile()  # noqa: SIM115
        self.proc = subprocess.Popen(
            [node, str(NODE_PEER), "hub"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], TIMEOUT)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            self.stop()
            raise RuntimeError(f"node peer.js hub didn't start: {self.stderr_tail()}")
        self.port: int = json.loads(line)["port"]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stderr_tail(self) -> str:
        if self.stderr.closed:
            return "(hub stopped)"
        self.stderr.seek(0)
        return self.stderr.read()[-2000:].decode(errors="replace")

    def stop(self) -> None:
        assert self.proc.stdin is not None
        with contextlib.suppress(OSError):
            self.proc.stdin.close()  # the hub exits when its stdin closes
        try:
            self.proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        finally:
            assert self.proc.stdout is not None
            self.proc.stdout.close()
            self.stderr.close()


_node_hub: NodeHub | None = None


def node_hub() -> NodeHub:
    """The running hub, started (or restarted) as needed."""
    global _node_hub
    node = require_node()
    if _node_hub is None or not _node_hub.alive():
        if _node_hub is not None:
            _node_hub.stop()
        _node_hub = NodeHub(node)
    return _node_hub


def stop_node_hub() -> None:
    global _node_hub
    if _node_hub is not None:
        _node_hub.stop()
        _node_hub = None


class NodePeer(Peer):
    """node's ``ws`` in a session of the node/peer.js hub, driven over JSON lines."""

    name = "node"

    def __init__(
        self, hub: NodeHub, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        loop = asyncio.get_running_loop()
        self.hub = hub
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._messages: asyncio.Queue[Data | BaseException] = asyncio.Queue()
        self._pings: asyncio.Queue[bytes] = asyncio.Queue()
        self._pongs: asyncio.Queue[bytes] = asyncio.Queue()
        self.listening: asyncio.Future[int] = loop.create_future()
        self.opened: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[CloseSeen] = loop.create_future()
        self.errors: list[str] = []
        self._events_task = loop.create_task(self._read_events())

    @classmethod
    async def spawn(cls, *args: str) -> NodePeer:
        """Start a session; ``args`` as on peer.js's command line (client or server mode)."""
        hub = node_hub()
        # A 1 MiB message is one line of JSON (base64 for binary).
        reader, writer = await asyncio.open_connection("127.0.0.1", hub.port, limit=4 * MAX_SIZE)
        peer = cls(hub, reader, writer)
        peer._write({"op": "start", "args": list(args)})
        return peer

    async def _read_events(self) -> None:
        try:
            while line := await self._reader.readline():
                self._dispatch(json.loads(line))
        except ConnectionError:
            pass
        finally:
            hub = self.hub
            state = "running" if hub.alive() else f"exited with {hub.proc.returncode}"
            self._gone(
                PeerClosed(
                    f"node session ended (hub {state}); errors: {self.errors}; "
                    f"hub stderr: {hub.stderr_tail()}"
                )
            )

    def _dispatch(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "message":
            data: Data = base64.b64decode(event["b64"]) if event["binary"] else event["text"]
            self._messages.put_nowait(data)
        elif kind == "ack":
            fut = self._acks.pop(event["id"])
            if event["error"] is None:
                fut.set_result(None)
            else:
                fut.set_exception(RuntimeError(f"node ws: {event['error']}"))
        elif kind == "ping":
            self._pings.put_nowait(base64.b64decode(event["b64"]))
        elif kind == "pong":
            self._pongs.put_nowait(base64.b64decode(event["b64"]))
        elif kind == "close":
            self._closed.set_result(CloseSeen(event["code"], event["reason"]))
            self._messages.put_nowait(PeerClosed(f"node ws closed with {event['code']}"))
        elif kind == "listening":
            self.listening.set_result(event["port"])
        elif kind == "open":
            self.deflate = "permessage-deflate" in event["extensions"].split(",")
            self.extensions_offered = event["offered"]
            self.extensions_accepted = event["accepted"]
            self.opened.set_result(None)
        elif kind == "error":
            self.errors.append(event["message"])
            if not self.opened.done():
                self.opened.set_exception(RuntimeError(f"node ws: {event['message']}"))
        else:
            raise AssertionError(f"unexpected event from node: {event}")

    def _gone(self, exc: BaseException) -> None:
        # The process ended: whoever waits on it gets the reason.
        futures: list[asyncio.Future[Any]] = [self.listening, self.opened, self._closed]
        futures.extend(self._acks.values())
        self._acks.clear()
        for fut in futures:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # not every one of them has a waiter
        self._messages.put_nowait(exc)

    def _write(self, command: dict[str, Any]) -> None:
        self._writer.write(json.dumps(command).encode() + b"\n")

    async def _command(self, op: str, **fields: Any) -> None:
        command_id = next(self._ids)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[command_id] = fut
        self._write({"id": command_id, "op": op, **fields})
        await self._writer.drain()
        await fut

    async def _send_frame(self, data: Data, *, fin: bool, binary: bool | None = None) -> None:
        if isinstance(data, str):
            await self._command("send", text=data, fin=fin)
        else:
            b64 = base64.b64encode(data).decode()
            await self._command("send", b64=b64, fin=fin, binary=binary is not False)

    async def send(self, message: Data) -> None:
        await self._send_frame(message, fin=True)

    async def send_fragments(self, chunks: Sequence[Data]) -> None:
        # ws: send(data, {fin: false}) starts or continues a fragmented message.
        for i, chunk in enumerate(chunks):
            await self._send_frame(chunk, fin=i == len(chunks) - 1)

    async def send_text_fragments_raw(self, chunks: Sequence[bytes]) -> None:
        """Send a text message whose frames carry these bytes (may split a UTF-8 sequence)."""
        for i, chunk in enumerate(chunks):
            await self._send_frame(chunk, fin=i == len(chunks) - 1, binary=False)

    async def recv(self) -> Data:
        item = await self._messages.get()
        if isinstance(item, BaseException):
            raise item
        return item

    async def ping(self, payload: bytes) -> None:
        await self._command("ping", b64=base64.b64encode(payload).decode())
        while await self._pongs.get() != payload:
            pass

    async def ping_seen(self) -> bytes | None:
        return await self._pings.get()

    async def close(self, code: int, reason: str) -> CloseSeen:
        await self._command("close", code=code, reason=reason)
        return await asyncio.shield(self._closed)

    async def wait_closed(self) -> CloseSeen:
        return await asyncio.shield(self._closed)

    async def aclose(self) -> None:
        # Half-close: the hub ends the session (dropping its WebSocket
        # connection, as a node process exiting would) and closes its side.
        try:
            if not self._writer.is_closing() and self._writer.can_write_eof():
                with contextlib.suppress(OSError):
                    self._writer.write_eof()
            async with within():
                await self._events_task
        finally:
            self._events_task.cancel()
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()


# -- pairs -------------------------------------------------------------------


@dataclass(frozen=True)
class Pairing:
    """Which side ripple plays, which library plays the other, and whether
    both enable permessage-deflate."""

    ripple_role: str  # "server" or "client"
    peer: str  # "websockets", "aiohttp" or "node"
    compression: bool = True

    def __str__(self) -> str:
        peer_role = "client" if self.ripple_role == "server" else "server"
        mode = "deflate" if self.compression else "plain"
        return f"ripple_{self.ripple_role}+{self.peer}_{peer_role}+{mode}"


PEERS = ("websockets", "aiohttp", "node")
PAIRINGS = [
    Pairing(role, peer, compression)
    for compression in (True, False)
    for role in ("server", "client")
    for peer in PEERS
]


@dataclass
class Pair:
    ripple: ripple.Connection
    peer: Peer
    pairing: Pairing
    #: The relay between the two when opened with ``wire=True``.
    relay: Relay | None = None

    @property
    def deflate(self) -> PerMessageDeflate | None:
        """ripple's permessage-deflate extension, if negotiated."""
        assert self.ripple.protocol is not None
        found = [e for e in self.ripple.protocol.extensions if isinstance(e, PerMessageDeflate)]
        assert len(found) <= 1, found
        return found[0] if found else None

    @property
    def from_ripple(self) -> WireLog:
        """Frames ripple sent (needs ``wire=True``)."""
        assert self.relay is not None, "open the pair with wire=True"
        server = self.pairing.ripple_role == "server"
        return self.relay.downstream if server else self.relay.upstream

    @property
    def to_ripple(self) -> WireLog:
        """Frames the peer sent (needs ``wire=True``)."""
        assert self.relay is not None, "open the pair with wire=True"
        server = self.pairing.ripple_role == "server"
        return self.relay.upstream if server else self.relay.downstream


#: ``await connect_pair(observe_pongs=True)``: the ``connect_pair`` fixture.
OpenPair = Callable[..., Awaitable[Pair]]


async def _bounded(aclose: Callable[[], Awaitable[None]]) -> None:
    async with within():
        await aclose()


@dataclass(frozen=True)
class Options:
    """How :func:`open_pair` configures both sides."""

    observe_pongs: bool
    #: compression="deflate" on ripple's side, else None.
    ripple_deflate: bool
    #: permessage-deflate offered (client) or accepted (server) by the peer.
    peer_deflate: bool
    #: Connect through a :class:`Relay` that records the frames.
    wire: bool
    #: More keyword arguments for ripple.serve() or ripple.connect().
    extra: dict[str, Any]

    @property
    def ripple_options(self) -> dict[str, Any]:
        compression = "deflate" if self.ripple_deflate else None
        return {**RIPPLE_OPTIONS, "compression": compression, **self.extra}

    @property
    def node_args(self) -> list[str]:
        return ["--deflate"] if self.peer_deflate else []


async def open_pair(
    stack: contextlib.AsyncExitStack,
    pairing: Pairing,
    *,
    observe_pongs: bool = False,
    ripple_deflate: bool | None = None,
    peer_deflate: bool | None = None,
    wire: bool = False,
    ripple_options: dict[str, Any] | None = None,
) -> Pair:
    """Open a connection between ripple and a peer; ``stack`` closes both at exit.

    Args:
        observe_pongs: the peer must report pongs (aiohttp: autoping=False,
            so it doesn't answer pings itself).
        ripple_deflate, peer_deflate: enable permessage-deflate on that side;
            by default both follow ``pairing.compression``.
        wire: connect through a :class:`Relay`, so ``pair.from_ripple`` and
            ``pair.to_ripple`` show the frames exchanged.
        ripple_options: more keyword arguments for ripple's serve() or connect(),
            e.g. ``extensions``.
    """
    if pairing.peer == "node":
        require_node()
    options = Options(
        observe_pongs=observe_pongs,
        ripple_deflate=pairing.compression if ripple_deflate is None else ripple_deflate,
        peer_deflate=pairing.compression if peer_deflate is None else peer_deflate,
        wire=wire,
        extra=dict(ripple_options or {}),
    )
    async with within():
        if pairing.ripple_role == "server":
            ws, peer, relay = await _open_ripple_server(stack, pairing.peer, options)
        else:
            ws, peer, relay = await _open_ripple_client(stack, pairing.peer, options)
    return Pair(ws, peer, pairing, relay)


async def _relay_to(
    stack: contextlib.AsyncExitStack, port: int, options: Options
) -> tuple[int, Relay | None]:
    """The port to connect to: ``port``, or with ``options.wire``, a relay's to it."""
    if not options.wire:
        return port, None
    relay = Relay(port)
    await relay.start()
    stack.push_async_callback(_bounded, relay.stop)
    return relay.port, relay


async def _open_ripple_server(
    stack: contextlib.AsyncExitStack, peer_name: str, options: Options
) -> tuple[ripple.Connection, Peer, Relay | None]:
    accepted: asyncio.Queue[ripple.ServerConnection] = asyncio.Queue()

    async def handler(ws: ripple.ServerConnection) -> None:
        # The test drives the connection; the handler keeps it open meanwhile.
        accepted.put_nowait(ws)
        await ws.wait_closed()

    server = await ripple.serve(handler, "127.0.0.1", 0, **options.ripple_options)

    async def stop_server() -> None:
        server.close()
        await server.wait_closed()

    stack.push_async_callback(_bounded, stop_server)
    port, relay = await _relay_to(stack, next(iter(server.sockets)).getsockname()[1], options)
    url = f"ws://127.0.0.1:{port}/"
    peer = await connect_peer_client(stack, peer_name, url, options)
    return await accepted.get(), peer, relay


async def connect_peer_client(
    stack: contextlib.AsyncExitStack, peer_name: str, url: str, options: Options
) -> Peer:
    """Connect a peer's client to ``url``; ``stack`` closes it at exit."""
    observe_pongs = options.observe_pongs
    peer: Peer
    if peer_name == "websockets":
        client = await websockets.asyncio.client.connect(
            url,
            max_size=MAX_SIZE,
            ping_interval=None,
            compression="deflate" if options.peer_deflate else None,
        )
        peer = WebsocketsPeer(client)
    elif peer_name == "aiohttp":
        # The handshake's headers, which ClientWebSocketResponse doesn't expose.
        handshakes: list[aiohttp.TraceRequestEndParams] = []

        async def on_request_end(
            session: aiohttp.ClientSession, context: Any, params: aiohttp.TraceRequestEndParams
        ) -> None:
            handshakes.append(params)

        trace = aiohttp.TraceConfig()
        trace.on_request_end.append(on_request_end)
        session = aiohttp.ClientSession(trace_configs=[trace])
        try:
            client_ws = await session.ws_connect(
                url,
                max_msg_size=MAX_SIZE,
                autoping=not observe_pongs,
                # compress: the window bits to offer; 0 offers no permessage-deflate.
                compress=15 if options.peer_deflate else 0,
            )
        except BaseException:
            await session.close()
            raise
        (handshake,) = handshakes
        peer = AiohttpPeer(
            client_ws,
            autoping=not observe_pongs,
            session=session,
            offered=handshake.headers.get("Sec-WebSocket-Extensions"),
            accepted=handshake.response.headers.get("Sec-WebSocket-Extensions"),
        )
    elif peer_name == "node":
        node = await NodePeer.spawn("client", url, *options.node_args)
        stack.push_async_callback(_bounded, node.aclose)
        await node.opened
        peer = node
    else:
        raise ValueError(peer_name)
    if peer_name != "node":
        stack.push_async_callback(_bounded, peer.aclose)
    return peer


async def _open_ripple_client(
    stack: contextlib.AsyncExitStack, peer_name: str, options: Options
) -> tuple[ripple.Connection, Peer, Relay | None]:
    observe_pongs = options.observe_pongs
    accepted: asyncio.Queue[Peer] = asyncio.Queue()

    if peer_name == "websockets":

        async def ws_handler(ws: websockets.asyncio.server.ServerConnection) -> None:
            accepted.put_nowait(WebsocketsPeer(ws))
            await ws.wait_closed()

        server = await websockets.asyncio.server.serve(
            ws_handler,
            "127.0.0.1",
            0,
            max_size=MAX_SIZE,
            ping_interval=None,
            compression="deflate" if options.peer_deflate else None,
        )

        async def stop_server() -> None:
            server.close()
            await server.wait_closed()

        stack.push_async_callback(_bounded, stop_server)
        port = next(iter(server.sockets)).getsockname()[1]
    elif peer_name == "aiohttp":

        async def aiohttp_handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(
                max_msg_size=MAX_SIZE,
                autoping=not observe_pongs,
                compress=options.peer_deflate,
            )
            await ws.prepare(request)
            peer = AiohttpPeer(
                ws,
                autoping=not observe_pongs,
                offered=request.headers.get("Sec-WebSocket-Extensions"),
                accepted=ws.headers.get("Sec-WebSocket-Extensions"),
            )
            accepted.put_nowait(peer)
            # Returning ends the connection: stay until it's closed.
            await peer.done.wait()
            return ws

        app = web.Application()
        app.router.add_get("/", aiohttp_handler)
        runner = web.AppRunner(app)
        await runner.setup()
        stack.push_async_callback(_bounded, runner.cleanup)
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
    elif peer_name == "node":
        node = await NodePeer.spawn("server", *options.node_args)
        stack.push_async_callback(_bounded, node.aclose)
        port = await node.listening
        accepted.put_nowait(node)
    else:
        raise ValueError(peer_name)

    port, relay = await _relay_to(stack, port, options)
    ws = await ripple.connect(f"ws://127.0.0.1:{port}/", **options.ripple_options)
    stack.push_async_callback(_bounded, ws.close)
    peer = await accepted.get()
    if isinstance(peer, NodePeer):
        await peer.opened
    elif isinstance(peer, AiohttpPeer):
        stack.push_async_callback(_bounded, peer.aclose)
    return ws, peer, relay
