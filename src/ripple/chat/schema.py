"""The chat's JSON messages: parsing what clients send, building what the server sends.

Pure functions, no I/O. docs/chat.md is the reference for every message;
keep the two in step.

Client to server::

    {"type": "join", "name": "alice"}
    {"type": "join", "name": "alice", "since": 41, "epoch": "..."}   (resuming)
    {"type": "message", "text": "hello"}

Server to client::

    {"type": "welcome", "you": USER, "epoch": "...", "users": [USER...],
     "history": [EVENT...], "limits": {...}, "last_id": 41, "resumed": false}
    {"type": "resync", "epoch": "...", "last_id": 0}
    {"type": "message", "id": 7, "ts": 1700000000000, "user": USER, "text": "hello"}
    {"type": "join", "id": 8, "ts": ..., "user": USER}
    {"type": "leave", "id": 9, "ts": ..., "user": USER}
    {"type": "error", "code": "invalid_json", "message": "...", ...}

where USER is ``{"id": "...", "name": "..."}``.
"""

from __future__ import annotations

import json
import unicodedata
from dataclasses import dataclass
from typing import Any, Union

__all__ = [
    "ERROR_CODES",
    "MAX_NAME_LENGTH",
    "Event",
    "InvalidInput",
    "Join",
    "Post",
    "User",
    "check_name",
    "check_text",
    "dumps",
    "error",
    "parse",
    "resync",
    "welcome",
]

#: Most characters (code points, after normalization) in a name.
MAX_NAME_LENGTH = 32

#: Every ``code`` an error message may carry, with what it means.
ERROR_CODES = {
    "invalid_json": "the message isn't a JSON object",
    "not_text": "binary messages aren't accepted; send JSON as text",
    "too_big": "the message is over the size limit",
    "unknown_type": "the type is missing or isn't one the server knows",
    "bad_name": "the name is empty, too long, or has characters names can't have",
    "bad_text": "the text is empty, not a string, or has control characters",
    "not_joined": "send a join message first",
    "already_joined": "this connection has joined already",
    "rate_limited": "too many messages; this one was dropped",
    "bad_resume": "since must be an integer >= 0 and epoch a string",
    "unavailable": "the hub (Redis) is unavailable: nothing was sent; try again later",
}

# Names: letters, marks, numbers, punctuation, symbols, and the plain space.
# Control, format (bidi overrides, zero-width), private-use, unassigned and
# other space characters are refused: they hide or disguise what a name shows.
_NAME_CATEGORIES = frozenset("LMNPS")
# The space, and the zero-width joiner that emoji sequences are made with.
_NAME_EXTRA = frozenset(" \u200d")
# Text may also hold line breaks and tabs; other control characters are refused.
_TEXT_CONTROLS = frozenset("\n\t")


class InvalidInput(Exception):
    """A client message the server refuses; ``code`` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str) -> None:
        assert code in ERROR_CODES, code
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class User:
    """Someone in the room: a server-assigned id and the name they chose."""

    id: str
    name: str

    def as_json(self) -> dict[str, str]:
        return {"id": self.id, "name": self.name}


@dataclass(frozen=True)
class Join:
    """A client's ``join``: the (checked) name it wants, and when resuming,
    the last event id it saw (``since``) and that id's ``epoch``."""

    name: str
    since: int | None = None
    epoch: str | None = None


@dataclass(frozen=True)
class Post:
    """A client's ``message``: the (checked) text."""

    text: str


ClientMessage = Union[Join, Post]


@dataclass(frozen=True)
class Event:
    """Something that happened in the room, as every client sees it.

    ``kind`` is ``message``, ``join`` or ``leave``; ``id`` increases with every
    event of the room; ``ts`` is the server's clock in milliseconds since the
    Unix epoch; ``text`` is set for messages only.
    """

    kind: str
    id: int
    ts: int
    user: User
    text: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": self.kind,
            "id": self.id,
            "ts": self.ts,
            "user": self.user.as_json(),
        }
        if self.text is not None:
            out["text"] = self.text
        return out


def dumps(obj: Any) -> str:
    """Compact JSON; non-ASCII characters stay as they are (UTF-8 on the wire)."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def check_name(name: object) -> str:
    """Return the name as the room will show it, or raise InvalidInput(bad_name).

    The name is NFC-normalized and stripped of spaces at both ends; it must
    then be 1 to MAX_NAME_LENGTH characters of letters, marks, numbers,
    punctuation, symbols, single spaces and zero-width joiners (emoji).
    Nothing here is about HTML: the page shows names as text, so ``<b>`` is
    a name like any other.
    """
    if not isinstance(name, str):
        raise InvalidInput("bad_name", "name must be a string")
    name = unicodedata.normalize("NFC", name).strip(" ")
    if not name:
        raise InvalidInput("bad_name", "name is empty")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput("bad_name", f"name is longer than {MAX_NAME_LENGTH} characters")
    if "  " in name:
        raise InvalidInput("bad_name", "name has several spaces in a row")
    for ch in name:
        if ch not in _NAME_EXTRA and unicodedata.category(ch)[0] not in _NAME_CATEGORIES:
            raise InvalidInput(
                "bad_name", f"name has a character names can't have: U+{ord(ch):04X}"
            )
    return name


def check_text(text: object) -> str:
    """Return the text as the room will show it, or raise InvalidInput(bad_text).

    Line breaks are normalized to ``\\n``; other control characters than
    line feed and tab are refused, and so is text with nothing but spaces.
    """
    if not isinstance(text, str):
        raise InvalidInput("bad_text", "text must be a string")
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if not text.strip():
        raise InvalidInput("bad_text", "text is empty")
    for ch in text:
        if ch not in _TEXT_CONTROLS and unicodedata.category(ch) in ("Cc", "Cs"):
            raise InvalidInput("bad_text", f"text has a control character: U+{ord(ch):04X}")
    return text


def parse(data: str | bytes, max_bytes: int) -> ClientMessage:
    """Parse one WebSocket message from a client, or raise InvalidInput.

    Args:
        data: the message as received: str for text, bytes for binary.
        max_bytes: the largest message accepted, in UTF-8 bytes.
    """
    if not isinstance(data, str):
        raise InvalidInput("not_text", "binary messages aren't accepted; send JSON as text")
    # A str of n characters is n to 4n bytes of UTF-8: count only when it matters.
    if len(data) > max_bytes or (4 * len(data) > max_bytes and len(data.encode()) > max_bytes):
        raise InvalidInput("too_big", f"message is over {max_bytes} bytes")
    try:
        obj = json.loads(data)
    except ValueError:
        raise InvalidInput("invalid_json", "message isn't valid JSON") from None
    except RecursionError:  # [[[[...]]]]: deeper than the parser goes
        raise InvalidInput("invalid_json", "message is nested too deeply") from None
    if not isinstance(obj, dict):
        raise InvalidInput("invalid_json", "message must be a JSON object")
    kind = obj.get("type")
    if kind == "message":
        return Post(check_text(obj.get("text")))
    if kind == "join":
        since = obj.get("since", obj.get("last_id"))
        epoch = obj.get("epoch")
        if since is not None and (
            isinstance(since, bool) or not isinstance(since, int) or not 0 <= since < 2**53
        ):
            raise InvalidInput("bad_resume", "since must be an integer >= 0")
        if epoch is not None and (not isinstance(epoch, str) or len(epoch) > 64):
            raise InvalidInput("bad_resume", "epoch must be a string of at most 64 characters")
        return Join(check_name(obj.get("name")), since, epoch)
    shown = kind if isinstance(kind, str) and len(kind) <= 32 else None
    raise InvalidInput(
        "unknown_type",
        "message needs a type: join or message"
        if shown is None
        else f"unknown type {shown!r}: use join or message",
    )


def error(code: str, message: str, **extra: Any) -> str:
    """An error message for one client, serialized."""
    assert code in ERROR_CODES, code
    return dumps({"type": "error", "code": code, "message": message, **extra})


def welcome(
    you: User,
    users: list[User],
    history: list[Event] | list[dict[str, Any]],
    *,
    epoch: str,
    limits: dict[str, Any],
    **extra: Any,
) -> str:
    """The first message a client gets after joining, serialized; ``extra``
    fields (``last_id``, ``resumed``, ``gap``) are added as they are."""
    return dumps(
        {
            "type": "welcome",
            "you": you.as_json(),
            "epoch": epoch,
            "users": [u.as_json() for u in users],
            "history": [e if isinstance(e, dict) else e.as_json() for e in history],
            "limits": limits,
            **extra,
        }
    )


def resync(epoch: str, last_id: int) -> str:
    """Tells clients the room's ids start over (``epoch``) after ``last_id``."""
    return dumps({"type": "resync", "epoch": epoch, "last_id": last_id})
