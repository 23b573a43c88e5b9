"""Peers for the interop tests: the other end of a ripple connection.

Each peer wraps a WebSocket implementation nobody here wrote (the
``websockets`` library, ``aiohttp``, node's ``ws``) behind one small async
interface, :class:`Peer`, so a test body runs unchanged against each of them,
with ripple as the server or as the client.

:func:`open_pair` starts one side, connects the other, and returns the ripple
connection with its peer.
"""

from __future__ import annotations

import abc
import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import sys
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
    ) -> None:
        self.ws = ws
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


class NodePeer(Peer):
    """node's ``ws`` in a subprocess running node/peer.js, driven over JSON lines."""

    name = "node"

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        loop = asyncio.get_running_loop()
        self.proc = proc
        self._ids = itertools.count(1)
        self._acks: dict[int, asyncio.Future[None]] = {}
        self._messages: asyncio.Queue[Data | BaseException] = asyncio.Queue()
        self._pings: asyncio.Queue[bytes] = asyncio.Queue()
        self._pongs: asyncio.Queue[bytes] = asyncio.Queue()
        self.listening: asyncio.Future[int] = loop.create_future()
        self.opened: asyncio.Future[None] = loop.create_future()
        self._closed: asyncio.Future[CloseSeen] = loop.create_future()
        self.errors: list[str] = []
        self._stderr = bytearray()
        self._stderr_task = loop.create_task(self._read_stderr())
        self._events_task = loop.create_task(self._read_events())

    @classmethod
    async def spawn(cls, *args: str) -> NodePeer:
        proc = await asyncio.create_subprocess_exec(
            require_node(),
            str(NODE_PEER),
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # A 1 MiB message is one line of JSON (base64 for binary).
            limit=4 * MAX_SIZE,
        )
        return cls(proc)

    async def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        while chunk := await self.proc.stderr.read(65536):
            self._stderr += chunk

    async def _read_events(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                self._dispatch(json.loads(line))
        finally:
            await self._stderr_task
            returncode = await self.proc.wait()
            self._gone(
                PeerClosed(
                    f"node exited with {returncode}; errors: {self.errors}; "
                    f"stderr: {self._stderr.decode(errors='replace')[-2000:]}"
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

    async def _command(self, op: str, **fields: Any) -> None:
        assert self.proc.stdin is not None
        command_id = next(self._ids)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._acks[command_id] = fut
        line = json.dumps({"id": command_id, "op": op, **fields}) + "\n"
        self.proc.stdin.write(line.encode())
        await self.proc.stdin.drain()
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
        assert self.proc.stdin is not None
        if not self.proc.stdin.is_closing():
            self.proc.stdin.close()  # peer.js exits when stdin closes
        try:
            async with within():
                await self._events_task
        finally:
            if self.proc.returncode is None:
                self.proc.kill()
                await self.proc.wait()


# -- pairs -------------------------------------------------------------------


@dataclass(frozen=True)
class Pairing:
    """Which side ripple plays, and which library plays the other."""

    ripple_role: str  # "server" or "client"
    peer: str  # "websockets", "aiohttp" or "node"

    def __str__(self) -> str:
        peer_role = "client" if self.ripple_role == "server" else "server"
        return f"ripple_{self.ripple_role}+{self.peer}_{peer_role}"


PEERS = ("websockets", "aiohttp", "node")
PAIRINGS = [Pairing(role, peer) for role in ("server", "client") for peer in PEERS]


@dataclass
class Pair:
    ripple: ripple.Connection
    peer: Peer
    pairing: Pairing


#: ``await connect_pair(observe_pongs=True)``: the ``connect_pair`` fixture.
OpenPair = Callable[..., Awaitable[Pair]]


async def _bounded(aclose: Callable[[], Awaitable[None]]) -> None:
    async with within():
        await aclose()


async def open_pair(
    stack: contextlib.AsyncExitStack, pairing: Pairing, *, observe_pongs: bool = False
) -> Pair:
    """Open a connection between ripple and a peer; ``stack`` closes both at exit.

    Args:
        observe_pongs: the peer must report pongs (aiohttp: autoping=False,
            so it doesn't answer pings itself).
    """
    if pairing.peer == "node":
        require_node()
    async with within():
        if pairing.ripple_role == "server":
            ws, peer = await _open_ripple_server(stack, pairing.peer, observe_pongs)
        else:
            ws, peer = await _open_ripple_client(stack, pairing.peer, observe_pongs)
    return Pair(ws, peer, pairing)


async def _open_ripple_server(
    stack: contextlib.AsyncExitStack, peer_name: str, observe_pongs: bool
) -> tuple[ripple.Connection, Peer]:
    accepted: asyncio.Queue[ripple.ServerConnection] = asyncio.Queue()

    async def handler(ws: ripple.ServerConnection) -> None:
        # The test drives the connection; the handler keeps it open meanwhile.
        accepted.put_nowait(ws)
        await ws.wait_closed()

    server = await ripple.serve(handler, "127.0.0.1", 0, **RIPPLE_OPTIONS)

    async def stop_server() -> None:
        server.close()
        await server.wait_closed()

    stack.push_async_callback(_bounded, stop_server)
    port = next(iter(server.sockets)).getsockname()[1]
    url = f"ws://127.0.0.1:{port}/"

    peer: Peer
    if peer_name == "websockets":
        client = await websockets.asyncio.client.connect(
            url, max_size=MAX_SIZE, ping_interval=None
        )
        peer = WebsocketsPeer(client)
    elif peer_name == "aiohttp":
        session = aiohttp.ClientSession()
        try:
            client_ws = await session.ws_connect(
                url, max_msg_size=MAX_SIZE, autoping=not observe_pongs
            )
        except BaseException:
            await session.close()
            raise
        peer = AiohttpPeer(client_ws, autoping=not observe_pongs, session=session)
    elif peer_name == "node":
        node = await NodePeer.spawn("client", url)
        stack.push_async_callback(_bounded, node.aclose)
        await node.opened
        peer = node
    else:
        raise ValueError(peer_name)
    if peer_name != "node":
        stack.push_async_callback(_bounded, peer.aclose)
    return await accepted.get(), peer


async def _open_ripple_client(
    stack: contextlib.AsyncExitStack, peer_name: str, observe_pongs: bool
) -> tuple[ripple.Connection, Peer]:
    accepted: asyncio.Queue[Peer] = asyncio.Queue()

    if peer_name == "websockets":

        async def ws_handler(ws: websockets.asyncio.server.ServerConnection) -> None:
            accepted.put_nowait(WebsocketsPeer(ws))
            await ws.wait_closed()

        server = await websockets.asyncio.server.serve(
            ws_handler, "127.0.0.1", 0, max_size=MAX_SIZE, ping_interval=None
        )

        async def stop_server() -> None:
            server.close()
            await server.wait_closed()

        stack.push_async_callback(_bounded, stop_server)
        port = next(iter(server.sockets)).getsockname()[1]
    elif peer_name == "aiohttp":

        async def aiohttp_handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(max_msg_size=MAX_SIZE, autoping=not observe_pongs)
            await ws.prepare(request)
            peer = AiohttpPeer(ws, autoping=not observe_pongs)
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
        node = await NodePeer.spawn("server")
        stack.push_async_callback(_bounded, node.aclose)
        port = await node.listening
        accepted.put_nowait(node)
    else:
        raise ValueError(peer_name)

    ws = await ripple.connect(f"ws://127.0.0.1:{port}/", **RIPPLE_OPTIONS)
    stack.push_async_callback(_bounded, ws.close)
    peer = await accepted.get()
    if isinstance(peer, NodePeer):
        await peer.opened
    elif isinstance(peer, AiohttpPeer):
        stack.push_async_callback(_bounded, peer.aclose)
    return ws, peer
