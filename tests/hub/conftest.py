"""Fixtures for the hub tests: a real redis-server per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from .redis_server import RedisServer, redis_fixture


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    async for server in redis_fixture():
        yield server
