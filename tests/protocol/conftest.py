"""Fixtures for the sans-I/O protocol tests (bytes in, events out).

Frame builders and the independent frame decoder live in protocol_helpers.py.
"""

from __future__ import annotations

import pytest

from ripple.protocol.state import CLIENT, SERVER, Protocol


@pytest.fixture
def server() -> Protocol:
    """The server side: receives masked frames, sends unmasked ones."""
    return Protocol(SERVER)


@pytest.fixture
def client() -> Protocol:
    """The client side: receives unmasked frames, sends masked ones."""
    return Protocol(CLIENT)
