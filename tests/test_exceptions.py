"""The exception classes (src/ripple/exceptions.py)."""

from __future__ import annotations

import copy
import pickle

import pytest

from ripple.exceptions import ConnectionClosed, ConnectionClosedError, ConnectionClosedOK
from ripple.protocol.frames import Close

BYE = Close(1000, "bye")
AWAY = Close(1001, "")


@pytest.mark.parametrize(
    ("rcvd", "sent", "then", "text"),
    [
        (None, None, None, "no close frame received or sent"),
        (None, BYE, None, f"sent {BYE}; no close frame received"),
        (BYE, None, None, f"received {BYE}; no close frame sent"),
        (BYE, AWAY, True, f"received {BYE}; then sent {AWAY}"),
        (BYE, AWAY, False, f"sent {AWAY}; then received {BYE}"),
    ],
)
def test_message_says_what_was_sent_and_received(
    rcvd: Close | None, sent: Close | None, then: bool | None, text: str
) -> None:
    exc = ConnectionClosedError(rcvd, sent, then)
    assert str(exc) == text
    assert exc.code == (1006 if rcvd is None else rcvd.code)
    assert exc.reason == ("" if rcvd is None else rcvd.reason)


@pytest.mark.parametrize("cls", [ConnectionClosedOK, ConnectionClosedError])
def test_survives_pickle_and_copy(cls: type[ConnectionClosed]) -> None:
    exc = cls(BYE, AWAY, True)
    for clone in (pickle.loads(pickle.dumps(exc)), copy.copy(exc)):
        assert type(clone) is cls
        assert (clone.rcvd, clone.sent, clone.rcvd_then_sent) == (BYE, AWAY, True)
        assert str(clone) == str(exc)
