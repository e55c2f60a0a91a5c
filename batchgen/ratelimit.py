"""Pacing of requests: a rate limit that backs off on 429, and a circuit breaker.

`AdaptiveRate` turns SPEC §3's "`--rate R`: at most R requests in any 60-second
window, evenly spaced" into an aiolimiter leaky bucket. `AsyncLimiter(R, 60)`
would let R requests out at once and R more during the first minute. A bucket
of capacity b (one second's worth, at least 1) that drains at (R - b)/60 per
second lets at most b + (R - b) = R requests out in any 60 seconds, evenly
spaced after the first b.

A 429 pauses everyone until the server's reset time; when the pause ends the
bucket starts full, so there is no burst into a window the server just
declared full. The rate drops to what the server accepted over the last minute
(its limit, as far as we can see), at least to half and at most to 90 % of the
rate it had, never below one a minute, and only once per episode (more 429s
before anything gets through again say nothing new). It then climbs back fast
(10 % of R per quiet second) to 90 % of the rate that met the 429, and from
there by 2 % of R per quiet `RECOVERY_SECONDS`, never above R. A `--rate` above
the account's plan so settles near the plan's limit with few 429s.

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
from collections import deque

from aiolimiter import AsyncLimiter

RECOVERY_SECONDS = 5.0
RECOVERY_SHARE = 0.02  # of the ceiling, given back per quiet RECOVERY_SECONDS
FAST_RECOVERY_TARGET = 0.9  # climb back fast to this share of the rate that met a 429
FAST_RECOVERY_SHARE = 0.1  # of the ceiling, per quiet second while below that
MIN_RATE = 1.0  # requests per minute


async def wait_event(event: asyncio.Event, timeout: float) -> None:
    """Wait until `event` is set or `timeout` seconds pass, whichever comes first."""
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(event.wait(), timeout)


class _Limiter(AsyncLimiter):
    """aiolimiter's bucket with a drain rate that can change while tasks wait, and
    that can be filled up (no burst allowed) when a pause ends. Both reach into
    aiolimiter's internals, pinned to 1.x in pyproject.toml."""

    __slots__ = ()

    def fill(self) -> None:
        self._leak()
        self._level = self.max_rate

    def set_rate(self, per_second: float, capacity: float) -> None:
        self._leak()  # settle the level at the old rate first
        self._rate_per_sec = per_second
        self.max_rate = capacity
        self._wake_next()


class AdaptiveRate:
    """At most `per_minute` requests in any minute; slower after 429s, recovering gradually."""

    def __init__(self, per_minute: float):
        self.ceiling = float(per_minute)
        self.current = self.ceiling
        self._limiter = _Limiter(1, 60.0)
        self._set(self.ceiling)
        self._paused_until = 0.0
        self._filled_for = 0.0  # the pause after which the bucket was last filled
        self._accepted: deque[float] = deque()  # times of requests that got through, last 60 s
        self._through_since_cut = 1  # requests through since the last cut (1: cut at will)
        self._limited_at = self.ceiling  # the rate at which the last 429 came

    async def acquire(self) -> None:
        """Wait for a slot. A pause that began while waiting in the bucket still holds."""
        while True:
            paused = False
            while (wait := self._paused_until - time.monotonic()) > 0:
                paused = True
                await asyncio.sleep(wait)
            if paused and self._filled_for != self._paused_until:
                self._filled_for = self._paused_until
                self._limiter.fill()  # the server's window is full: resume evenly, no burst
            await self._limiter.acquire()
            if self._paused_until <= time.monotonic():
                return

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429: hold everyone until the reset time, and slow down to what the server
        accepted over the last minute - its limit, as far as we can see - but at least
        to half the rate and at most 90 % of it. Only once per episode: until a request
        gets through again, more 429s (from requests in flight, or a server still
        digesting the burst) say nothing about the new rate."""
        now = time.monotonic()
        if retry_after:
            self._paused_until = max(self._paused_until, now + retry_after)
        if not self._through_since_cut:
            return
        self._through_since_cut = 0
        self._limited_at = self.current
        self._forget(now)
        seen = len(self._accepted)  # what got through in the last minute: the plan's limit
        self._set(max(MIN_RATE, min(0.9 * self.current, max(seen, self.current / 2))))

    def succeeded(self) -> None:
        """A request got through; after a quiet stretch, give back a little of the rate."""
        now = time.monotonic()
        self._through_since_cut += 1
        self._accepted.append(now)
        self._forget(now)
        if self.current >= self.ceiling:
            return
        quiet = now - self._last_change
        near = FAST_RECOVERY_TARGET * self._limited_at
        if self.current < near and quiet >= 1.0:
            self._set(min(near, self.current + self.ceiling * FAST_RECOVERY_SHARE))
        elif quiet >= RECOVERY_SECONDS:
            self._set(min(self.ceiling, self.current + self.ceiling * RECOVERY_SHARE))

    def _forget(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - 60.0:
            self._accepted.popleft()

    def _set(self, per_minute: float) -> None:
        """Burst b = one second's worth (at least 1), drain (R - b)/60 per second:
        b + (R - b) = R in any 60 seconds."""
        burst = max(1, int(per_minute // 60))
        drain = max(per_minute - burst, per_minute / 2) / 60.0
        self.current = per_minute
        self._last_change = time.monotonic()
        self._limiter.set_rate(drain, burst)


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
