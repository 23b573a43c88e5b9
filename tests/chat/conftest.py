"""Fixtures for the chat tests: chats started in-process, closed at teardown."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from ripple.chat import ChatConfig

from .helpers import Chat, start_chat

MakeChat = Callable[..., Awaitable[Chat]]


@pytest.fixture
async def make_chat() -> AsyncIterator[MakeChat]:
    """Start chats: ``await make_chat(ChatConfig(...), **serve_kwargs)``."""
    chats: list[Chat] = []

    async def make(config: ChatConfig | None = None, **kwargs: Any) -> Chat:
        chat = await start_chat(config, **kwargs)
        chats.append(chat)
        return chat

    try:
        yield make
    finally:
        for chat in chats:
            await chat.aclose()


@pytest.fixture
async def chat(make_chat: MakeChat) -> Chat:
    """A chat with the default settings."""
    return await make_chat()
