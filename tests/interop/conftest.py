"""Fixtures for the interop tests: every test runs once per :data:`PAIRINGS` entry."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest

from .peers import PAIRINGS, OpenPair, Pair, Pairing, open_pair


@pytest.fixture(params=PAIRINGS, ids=str)
def pairing(request: pytest.FixtureRequest) -> Pairing:
    """ripple as server or client, with websockets, aiohttp or node's ws on the other end.

    A test narrows the list with ``@pytest.mark.parametrize("pairing", [...], indirect=True)``.
    """
    param: Pairing = request.param
    return param


@pytest.fixture
async def connect_pair(pairing: Pairing) -> AsyncIterator[OpenPair]:
    """``await connect_pair(observe_pongs=True)``: a pair opened with options."""
    async with contextlib.AsyncExitStack() as stack:

        async def connect(*, observe_pongs: bool = False) -> Pair:
            return await open_pair(stack, pairing, observe_pongs=observe_pongs)

        yield connect


@pytest.fixture
async def pair(connect_pair: OpenPair) -> Pair:
    """An open ripple connection and its peer, closed after the test."""
    return await connect_pair()
