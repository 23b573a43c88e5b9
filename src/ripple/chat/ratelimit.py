"""A token bucket: at most ``burst`` messages at once, ``rate`` per second on average."""

from __future__ import annotations

import math
import time
from collections.abc import Callable

__all__ = ["TokenBucket"]


class TokenBucket:
    """Allow ``burst`` events at once, refilled at ``rate`` tokens per second.

    The bucket starts full. Each :meth:`take` spends one token if there is
    one. ``rate=0`` turns the limit off: every :meth:`take` succeeds.

    Args:
        rate: tokens added per second (> 0), or 0 for no limit.
        burst: the bucket's size (>= 1): how many events may come at once.
        clock: monotonic seconds; ``time.monotonic`` unless a test passes its own.
    """

    __slots__ = ("_clock", "_last", "_tokens", "burst", "rate")

    def __init__(
        self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if not (math.isfinite(rate) and rate >= 0):
            raise ValueError(f"rate must be a number of tokens per second >= 0, got {rate!r}")
        if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
            raise ValueError(f"burst must be an int >= 1, got {burst!r}")
        self.rate = float(rate)
        self.burst = burst
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock()

    def _refill(self) -> None:
        now = self._clock()
        elapsed = now - self._last
        self._last = now
        if elapsed > 0:
            self._tokens = min(float(self.burst), self._tokens + elapsed * self.rate)

    def take(self) -> bool:
        """Spend a token: True if there was one, False if the event is over the limit."""
        if self.rate == 0:
            return True
        self._refill()
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def retry_after(self) -> float:
        """Seconds until the next token (0 if there is one now)."""
        if self.rate == 0:
            return 0.0
        self._refill()
        return max(0.0, (1 - self._tokens) / self.rate)
