"""The commands' stop signal: a future that SIGINT or SIGTERM completes."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals(
    loop: asyncio.AbstractEventLoop,
) -> tuple[asyncio.Future[None], Callable[[], None]]:
    """A future that SIGINT or SIGTERM completes, and the call that removes
    the handlers again. Where the loop can't handle signals (not the main
    thread, not POSIX), the future completes only when someone else does it.
    """
    stop: asyncio.Future[None] = loop.create_future()

    def stop_once() -> None:
        if not stop.done():
            stop.set_result(None)

    for sig in _SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop_once)

    def restore() -> None:
        for sig in _SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)

    return stop, restore
