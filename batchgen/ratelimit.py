"""Pacing of requests: a rate limit that backs off on 429, and a circuit breaker.

`AdaptiveRate` turns SPEC §3's "`--rate R`: at most R requests in any 60-second
window, evenly spaced" into an aiolimiter leaky bucket. `AsyncLimiter(R, 60)`
would let R requests out at once and R more during the first minute. A bucket
of capacity b (one second's worth, at least 1) that drains at (R - b)/60 per
second lets at most b + (R - b) = R requests out in any 60 seconds, evenly
spaced after the first b. A 429 halves the drain rate (never below one a
minute) and pauses everyone until the server's reset time; every quiet stretch
of `RECOVERY_SECONDS` gives back a few percent of R, never more than R.

    rate = AdaptiveRate(50)          # per minute
    await rate.acquire()             # before each request
    rate.rate_limited(retry_after)   # on a 429

`CircuitBreaker` pauses the pool after a run of server or connection failures
and lets one probe request through at growing intervals (1, 2, 4 … 60 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiolimiter import AsyncLimiter

RECOVERY_SECONDS = 5.0
RECOVERY_SHARE = 0.05
MIN_RATE = 1.0  # requests per minute


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until `event` is set or `timeout` seconds pass, whichever comes first."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


class _Limiter(AsyncLimiter):
    """aiolimiter's bucket with a drain rate that can change while tasks wait."""

    __slots__ = ()

    def set_rate(self, per_second: float) -> None:
        self._leak()  # settle the level at the old rate first
        self._rate_per_sec = per_second
        self._wake_next()


class AdaptiveRate:
    """At most `per_minute` requests in any minute; slower after 429s, recovering gradually."""

    def __init__(self, per_minute: float):
        self.ceiling = float(per_minute)
        self.burst = max(1, int(per_minute // 60))
        self.current = self.ceiling
        self._limiter = _Limiter(self.burst, 60.0)
        self._limiter.set_rate(self._drain(self.ceiling))
        self._paused_until = 0.0
        self._last_change = time.monotonic()

    def _drain(self, per_minute: float) -> float:
        """Per-second drain that keeps burst + 60 s of draining within `per_minute`."""
        return max(per_minute - self.burst, per_minute / 2) / 60.0

    async def acquire(self) -> None:
        while (wait := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        await self._limiter.acquire()

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429: cut the rate in half and hold everyone until the reset time."""
        now = time.monotonic()
        if retry_after:
            self._paused_until = max(self._paused_until, now + retry_after)
        if now - self._last_change >= 1.0 or self.current == self.ceiling:
            self._set(max(MIN_RATE, self.current / 2))

    def succeeded(self) -> None:
        """A request got through: after a quiet stretch, give back some of the rate."""
        if self.current < self.ceiling and time.monotonic() - self._last_change >= RECOVERY_SECONDS:
            self._set(min(self.ceiling, self.current + self.ceiling * RECOVERY_SHARE))

    def _set(self, per_minute: float) -> None:
        self.current = per_minute
        self._last_change = time.monotonic()
        self._limiter.set_rate(self._drain(per_minute))


class CircuitBreaker:
    """Opens after `threshold` consecutive failures across the pool; while open,
    only one probe request at a time goes out, at growing intervals."""

    def __init__(self, threshold: int = 5, max_delay: float = 60.0):
        self.threshold = threshold
        self.max_delay = max_delay
        self.failures = 0
        self.opened_at: float | None = None
        self._delay = 1.0
        self._next_probe = 0.0
        self._probing = False
        self._closed = asyncio.Event()
        self._closed.set()

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def outage_seconds(self) -> float:
        return 0.0 if self.opened_at is None else time.monotonic() - self.opened_at

    async def admit(self, max_outage: float) -> bool:
        """Wait until a request may go out; False when the outage lasted too long."""
        while self.is_open:
            if self.outage_seconds() > max_outage:
                return False
            if self._probing:
                await wait_event(self._closed, timeout=1.0)
                continue
            wait = self._next_probe - time.monotonic()
            if wait > 0:
                await wait_event(self._closed, timeout=min(wait, 1.0))
                continue
            self._probing = True
            return True
        return True

    def succeeded(self) -> None:
        self.failures = 0
        self._probing = False
        if self.opened_at is not None:
            self.opened_at = None
            self._delay = 1.0
            self._closed.set()

    def failed(self) -> None:
        self.failures += 1
        if self._probing:  # the probe failed: wait longer before the next one
            self._probing = False
            self._delay = min(self.max_delay, self._delay * 2)
            self._next_probe = time.monotonic() + self._delay
        elif self.opened_at is None and self.failures >= self.threshold:
            self.opened_at = time.monotonic()
            self._delay = 1.0
            self._next_probe = self.opened_at + self._delay
            self._closed.clear()
