"""Fixtures shared by the browser tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from e2e.test_browser import CHROMIUM_ARGS, require_browser


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    chromium = require_browser()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield browser
        finally:
            await browser.close()
