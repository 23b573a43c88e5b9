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


@pytest.fixture
async def redis_server() -> AsyncIterator[Any]:
    """A real redis-server on a free loopback port (skipped, or failed under CI, if missing)."""
    from hub.redis_server import redis_fixture

    async for server in redis_fixture():
        yield server


@pytest.fixture(params=["memory", "redis"])
async def hub_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """``memory``, then the URL of a real redis-server started for the test."""
    if request.param == "memory":
        yield "memory"
        return
    from hub.redis_server import redis_fixture

    async for server in redis_fixture():
        yield str(server.url)
