"""The course's bot, on ripple's client: ``ripple bot URL``.

It joins the chat, says "Ask me a question." every ``interval`` seconds, and
answers "No." to every chat message with a "?" in it, except its own and
those in the history it gets on joining. It runs on the reconnecting form
of :func:`~ripple.connect` (``async for ws in connect(...)``): when the
connection fails or drops, it connects again after a delay that doubles
from ``min_delay`` up to ``max_delay``, with jitter; errors that retrying
can't fix (a 403, a bad certificate, a refused name) end it with BotError.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from ..client import Backoff, ClientConnection, connect
from ..exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from .schema import dumps

__all__ = ["BotError", "chat_url", "run_bot"]

logger = logging.getLogger("ripple.chat.bot")

ASK = "Ask me a question."
ANSWER = "No."


class BotError(Exception):
    """Something retrying won't fix, such as a name the server refuses."""


def chat_url(url: str) -> str:
    """The WebSocket URL for ``url``: a chat page's http(s) URL works too.

    ``http://host:8765/`` becomes ``ws://host:8765/ws``; ``https`` becomes
    ``wss``; ws:// and wss:// URLs are left as they are.
    """
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        return url
    path = parts.path
    if path in ("", "/"):
        path = "/ws"
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


async def run_bot(
    url: str,
    *,
    name: str = "bot",
    interval: float = 10.0,
    ask: str = ASK,
    answer: str = ANSWER,
    min_delay: float = 0.5,
    max_delay: float = 30.0,
    **connect_kwargs: Any,
) -> None:
    """Run the bot until cancelled; it closes its connection on the way out.

    Raises:
        InvalidURI: ``url`` isn't a ws://, wss://, http:// or https:// URL.
        BotError: the server refused the name, or connecting failed with
            an error that retrying can't fix (a 4xx other than 429, a
            certificate that fails verification...); its cause is that error.
    """
    url = chat_url(url)
    backoff = Backoff(initial_delay=min_delay, max_delay=max(min_delay, max_delay))
    try:
        # aclosing: leaving (cancelled, BotError) closes the connection at once.
        async with contextlib.aclosing(
            aiter(connect(url, backoff=backoff, **connect_kwargs))
        ) as connections:
            resume = _Resume()
            async for ws in connections:
                logger.info("connected to %s", url)
                await _session(ws, name, interval, ask, answer, resume)
                # Going round again closes this connection and reconnects.
    except InvalidURI:
        raise
    except (OSError, InvalidHandshake, TimeoutError) as exc:
        raise BotError(f"giving up on {url}: {exc or type(exc).__name__}") from exc
    raise AssertionError("unreachable: connect() reconnects forever")  # pragma: no cover


class _Resume:
    """The last event id seen and its epoch: sent when joining again, so the
    bot gets exactly what it missed (and answers nothing twice)."""

    def __init__(self) -> None:
        self.epoch: str | None = None
        self.last_id = 0

    def join(self, name: str) -> dict[str, Any]:
        msg: dict[str, Any] = {"type": "join", "name": name}
        if self.epoch is not None and self.last_id > 0:
            msg.update(since=self.last_id, epoch=self.epoch)
        return msg

    def seen(self, msg: dict[str, Any]) -> bool:
        """Record an event's id; False if it was seen already."""
        event_id = msg.get("id")
        if not isinstance(event_id, int) or isinstance(event_id, bool):
            return True
        if event_id <= self.last_id:
            return False
        self.last_id = event_id
        return True


async def _session(
    ws: ClientConnection,
    name: str,
    interval: float,
    ask: str,
    answer: str,
    resume: _Resume | None = None,
) -> bool:
    """Chat on one connection until it closes; True if the server welcomed us."""
    me: str | None = None
    asker: asyncio.Task[None] | None = None
    resume = resume if resume is not None else _Resume()
    try:
        await ws.send(dumps(resume.join(name)))
        async for data in ws:
            try:
                msg = json.loads(data)
            except (ValueError, TypeError):
                continue
            if not isinstance(msg, dict):
                continue
            kind = msg.get("type")
            if kind == "welcome" and me is None:
                you = msg.get("you")
                me = str(you.get("id")) if isinstance(you, dict) else ""
                logger.info("joined as %r (%s)", name, me)
                epoch = msg.get("epoch")
                history = msg.get("history")
                _log_rejoin(msg, resume, len(history) if isinstance(history, list) else 0)
                if epoch != resume.epoch:
                    resume.epoch = epoch if isinstance(epoch, str) else None
                    resume.last_id = 0
                for event in history if isinstance(history, list) else []:
                    if isinstance(event, dict):
                        resume.seen(event)  # missed while away: not answered late
                last_id = msg.get("last_id")
                if isinstance(last_id, int) and last_id > resume.last_id:
                    resume.last_id = last_id
                asker = asyncio.get_running_loop().create_task(_ask(ws, ask, interval))
            elif kind == "resync":
                epoch = msg.get("epoch")
                resume.epoch = epoch if isinstance(epoch, str) else None
                last_id = msg.get("last_id")
                resume.last_id = last_id if isinstance(last_id, int) else 0
            elif kind in ("join", "leave") and me is not None:
                resume.seen(msg)
            elif kind == "message" and me is not None and resume.seen(msg):
                text = msg.get("text")
                user = msg.get("user")
                sender = user.get("id") if isinstance(user, dict) else None
                if isinstance(text, str) and "?" in text and sender != me:
                    await ws.send(dumps({"type": "message", "text": answer}))
            elif kind == "error":
                if msg.get("code") == "bad_name":
                    raise BotError(f"the server refused the name {name!r}: {msg.get('message')}")
                logger.warning("server: %s", msg.get("message"))
    except ConnectionClosed:
        pass
    finally:
        if asker is not None:
            asker.cancel()
    logger.info("connection closed: %s %s", ws.close_code, ws.close_reason or "")
    return me is not None


def _log_rejoin(welcome: dict[str, Any], resume: _Resume, missed: int) -> None:
    """Say how a rejoin went: resumed with what was missed, or with a gap."""
    if resume.epoch is None:
        return  # the first join
    if welcome.get("resumed") is True:
        logger.info("resumed after id %d: %d missed events", resume.last_id, missed)
    elif welcome.get("gap") is True:
        logger.warning("away too long: events after id %d are missing", resume.last_id)
    else:
        logger.info("the room started over; following its new ids")


async def _ask(ws: ClientConnection, ask: str, interval: float) -> None:
    message = dumps({"type": "message", "text": ask})
    try:
        while True:
            await ws.send(message)
            await asyncio.sleep(interval)
    except ConnectionClosed:
        pass  # the reading side sees the close and reconnects
