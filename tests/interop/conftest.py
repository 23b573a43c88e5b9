"""Fixtures for the interop tests: every test runs once per :data:`PAIRINGS` entry."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from .peers import PAIRINGS, OpenPair, Pair, Pairing, open_pair, stop_node_hub


@pytest.fixture(scope="session", autouse=True)
def _node_hub() -> Iterator[None]:
    """Stop node/peer.js's hub (started on first use) after the last test."""
    try:
        yield
    finally:
        stop_node_hub()


@pytest.fixture(params=PAIRINGS, ids=str)
def pairing(request: pytest.FixtureRequest) -> Pairing:
    """ripple as server or client, with websockets, aiohttp or node's ws on the other end,
    permessage-deflate on both sides ("deflate") or on neither ("plain").

    A test narrows the list with ``@pytest.mark.parametrize("pairing", [...], indirect=True)``.
    """
    param: Pairing = request.param
    return param


@pytest.fixture
async def connect_pair(pairing: Pairing) -> AsyncIterator[OpenPair]:
    """``await connect_pair(observe_pongs=True)``: a pair opened with options
    (keyword arguments of :func:`peers.open_pair`)."""
    async with contextlib.AsyncExitStack() as stack:

        async def connect(**options: Any) -> Pair:
            return await open_pair(stack, pairing, **options)

        yield connect


@pytest.fixture
async def pair(connect_pair: OpenPair) -> Pair:
    """An open ripple connection and its peer, closed after the test.

    Opened with permessage-deflate as the pairing says; that it was (or
    wasn't) negotiated is checked here, so no test runs on a pair that
    silently fell back to uncompressed frames.
    """
    pair = await connect_pair()
    assert (pair.deflate is not None) is pair.pairing.compression, pair.ripple.response_headers
    assert pair.peer.deflate is pair.pairing.compression
    return pair
