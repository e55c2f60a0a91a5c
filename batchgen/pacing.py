"""Pacing of requests: a rate limit that backs off on 429, and a circuit breaker.

`AdaptiveRate` turns SPEC §3's "`--rate R`: at most R requests in any 60-second
window, evenly spaced" into a leaky bucket. A bucket of capacity R draining R
per minute would let R requests out at once and nearly R more during the first
minute. A bucket of capacity b (one second's worth, at least 1) that drains at
(R - b)/60 per second lets at most b + (R - b) = R requests out in any 60
seconds, evenly spaced after the first b. The bucket is our own `LeakyBucket`,
pure and synchronous under an injectable clock, so tests need no sleeping; changing
its rate mid-run had meant reaching into aiolimiter's private internals, which broke.

A 429 pauses everyone until the server's reset time; when the pause ends the
bucket starts full, so there is no burst into a window the server just
declared full. The rate drops to what the server accepted over the last minute
(its limit, as far as we can see), at least to half and at most to 90 % of the
rate it had, never below one a minute, and only once per episode (more 429s
before anything gets through again say nothing new). It then climbs back fast
(10 % of R per quiet second) to 90 % of the rate that met the 429, and from
there by 2 % of R per quiet `RECOVERY_SECONDS`, never above R. A `--rate` above
the account's plan so settles near the plan's limit with few 429s.

`CircuitBreaker` pauses the pool after a run of server or connection failures
and lets one probe request through at growing intervals (1, 2, 4 … 60 s).

Every wait here ends as soon as the run's `stop` event is set (SPEC §8 S4):

    rate, breaker = AdaptiveRate(50), CircuitBreaker()   # inside the running loop
    if await breaker.admit(stop, max_outage) and await rate.acquire(stop):
        ...                                              # send the request
    rate.rate_limited(retry_after)                       # on a 429
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable, Sequence

Clock = Callable[[], float]

RECOVERY_SECONDS = 5.0
RECOVERY_SHARE = 0.02  # of the ceiling, given back per quiet RECOVERY_SECONDS
FAST_RECOVERY_TARGET = 0.9  # climb back fast to this share of the rate that met a 429
FAST_RECOVERY_SHARE = 0.1  # of the ceiling, per quiet second while below that
MIN_RATE = 1.0  # requests per minute
EPSILON = 1e-9  # of a request: float noise must not turn "fits now" into a sleep


async def wait_any(events: Sequence[asyncio.Event], timeout: float | None) -> bool:
    """Wait until one of `events` is set or `timeout` seconds pass; True if one is set."""
    if any(event.is_set() for event in events):
        return True
    if timeout is not None and timeout <= 0:
        return False
    waits = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()
    return any(event.is_set() for event in events)


async def wait_event(event: asyncio.Event, timeout: float | None) -> bool:
    """Wait until `event` is set or `timeout` seconds pass; True if it is set."""  # poller
    return await wait_any((event,), timeout)


async def sleep_unless(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep `seconds`; True if that ran its course, False as soon as `stop` is set."""
    return not await wait_any((stop,), seconds)


class LeakyBucket:
    """Each request adds 1 to `level`, which drains at `drain` per second; a request
    fits while the level stays within `capacity`. Pure and synchronous: every method
    takes the time, so tests drive it with a fake clock."""

    def __init__(self, capacity: float, drain_per_second: float,
                 clock: Clock = time.monotonic) -> None:
        self.capacity = capacity
        self.drain = drain_per_second
        self.level = 0.0
        self._at = clock()

    def _leak(self, now: float) -> None:
        if now > self._at:
            self.level = max(0.0, self.level - (now - self._at) * self.drain)
            self._at = now

    def delay(self, now: float) -> float:
        """Seconds until one more request fits; 0 if it fits now."""
        self._leak(now)
        over = self.level + 1 - self.capacity
        return 0.0 if over <= EPSILON else over / self.drain

    def take(self, now: float) -> None:
        """Count a request (call when `delay(now)` is 0)."""
        self._leak(now)
        self.level += 1

    def fill(self, now: float) -> None:
        """Full: the next request waits one interval, so no burst after a pause."""
        self._leak(now)
        self.level = self.capacity

    def set_rate(self, drain_per_second: float, capacity: float, now: float) -> None:
        self._leak(now)  # settle the level at the old rate first
        self.drain, self.capacity = drain_per_second, capacity


def _shape(per_minute: float) -> tuple[float, float]:
    """(capacity, drain per second): burst b = one second's worth (at least 1),
    drain (R - b)/60, so b + (R - b) = R in any 60 seconds. Below 2 a minute, R/2:
    R - 1 would drain next to nothing, and 1 + R/2 still rounds down to R."""
    burst = max(1, int(per_minute // 60))
    return burst, max(per_minute - burst, per_minute / 2) / 60.0


class AdaptiveRate:
    """At most `per_minute` requests in any minute; slower after 429s, recovering gradually.
    Waiters are served first come, first served; only the first in line sleeps on the
    bucket, so a slot wakes one waiter, not all of them."""

    def __init__(self, per_minute: float, *, clock: Clock = time.monotonic) -> None:
        self.clock = clock
        self.ceiling = self.current = float(per_minute)
        self.bucket = LeakyBucket(*_shape(self.ceiling), clock)
        self._last_change = clock()
        self._paused_until = self._filled_for = -math.inf
        self._accepted: deque[float] = deque()  # times of requests that got through, last 60 s
        self._through_since_cut = 1  # requests through since the last cut (1: cut at will)
        self._limited_at = self.ceiling  # the rate at which the last 429 came
        self._line: deque[asyncio.Event] = deque()  # waiters; the first one's event is set

    def delay(self) -> float:
        """Seconds until one more request may go out (0: now), pause included."""
        now = self.clock()
        if now < self._paused_until:
            return self._paused_until - now
        if self._filled_for != self._paused_until:  # a pause has ended: resume evenly
            self._filled_for = self._paused_until
            self.bucket.fill(self._paused_until)
        return self.bucket.delay(now)

    def take(self) -> None:
        """Count a request going out (call when `delay()` is 0)."""
        self.bucket.take(self.clock())

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait for a slot and take it; False, taking none, as soon as `stop` is set.
        A pause that begins while waiting in the bucket still holds."""
        if not self._line and not stop.is_set() and self.delay() <= 0:
            self.take()
            return True
        turn = asyncio.Event()
        self._line.append(turn)
        if self._line[0] is turn:
            turn.set()
        try:
            while True:
                await wait_any((stop, turn), None)  # our turn at the head of the line
                if stop.is_set():
                    return False
                wait = self.delay()
                if wait <= 0:
                    self.take()
                    return True
                await sleep_unless(stop, wait)
        finally:
            self._line.remove(turn)
            if self._line:
                self._line[0].set()

    def rate_limited(self, retry_after: float | None) -> None:
        """A 429: hold everyone until the reset time, and slow down to what the server
        accepted over the last minute - its limit, as far as we can see - but at least
        to half the rate and at most 90 % of it. Only once per episode: until a request
        gets through again, more 429s (from requests in flight, or a server still
        digesting the burst) say nothing about the new rate."""
        now = self.clock()
        if retry_after:
            self._paused_until = max(self._paused_until, now + retry_after)
        if not self._through_since_cut:
            return
        self._through_since_cut = 0
        self._limited_at = self.current
        self._forget(now)
        seen = len(self._accepted)  # what got through in the last minute: the plan's limit
        self._set(max(MIN_RATE, min(0.9 * self.current, max(seen, self.current / 2))), now)

    def succeeded(self) -> None:
        """A request got through; after a quiet stretch, give back a little of the rate."""
        now = self.clock()
        self._through_since_cut += 1
        self._accepted.append(now)
        self._forget(now)
        if self.current >= self.ceiling:
            return
        quiet = now - self._last_change
        near = FAST_RECOVERY_TARGET * self._limited_at
        if self.current < near and quiet >= 1.0:
            self._set(min(near, self.current + self.ceiling * FAST_RECOVERY_SHARE), now)
        elif quiet >= RECOVERY_SECONDS:
            self._set(min(self.ceiling, self.current + self.ceiling * RECOVERY_SHARE), now)

    def _forget(self, now: float) -> None:
        while self._accepted and self._accepted[0] <= now - 60.0:
            self._accepted.popleft()

    def _set(self, per_minute: float, now: float) -> None:
        capacity, drain = _shape(per_minute)
        self.current, self._last_change = per_minute, now
        self.bucket.set_rate(drain, capacity, now)


def _this_task() -> asyncio.Task | None:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: a synchronous caller (tests)
        return None


class CircuitBreaker:
    """Opens after `threshold` consecutive failures across the pool; while open, only
    one probe request at a time goes out, at growing intervals up to `max_delay`.

    The probe is the task that `admit` let through while open, so it reports from that
    task: its `failed()` doubles the interval, its `cancel_probe()` hands the turn on as
    is. Other tasks' failures (requests already in flight when the breaker opened) only
    count: they neither grow the interval nor free the probe's turn, which would let a
    second probe out. Any success closes the breaker."""

    def __init__(self, threshold: int = 5, max_delay: float = 60.0, *,
                 clock: Clock = time.monotonic) -> None:
        self.threshold = threshold
        self.max_delay = max_delay
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.failing_since: float | None = None  # when the first of this streak was sent
        self._delay = min(1.0, max_delay)
        self._next_probe = 0.0
        self._probing = False
        self._prober: asyncio.Task | None = None
        self._changed = asyncio.Event()  # set (and replaced) whenever waiters should look again

    @property
    def is_open(self) -> bool:
        return self.opened_at is not None

    def outage_seconds(self) -> float:
        """How long the API has been failing: since the first request of the current
        streak of failures was sent (a request that hangs until --timeout counts from
        when it went out, not from when it gave up)."""
        return 0.0 if self.failing_since is None else self.clock() - self.failing_since

    def next_probe_in(self) -> float:
        """Seconds until a request may go out: 0 when closed or a probe is due,
        infinite while a probe is out."""
        if self.opened_at is None:
            return 0.0
        return math.inf if self._probing else max(0.0, self._next_probe - self.clock())

    def try_admit(self) -> bool:
        """True if a request may go out now: the breaker is closed, or this caller
        becomes the probe."""
        if self.opened_at is None:
            return True
        if self.next_probe_in() > 0:
            return False
        self._probing, self._prober = True, _this_task()
        return True

    async def admit(self, stop: asyncio.Event, max_outage: float) -> bool:
        """Wait until a request may go out (True); False when `stop` is set or the API
        has been failing for `max_outage` seconds - `stop.is_set()` tells which."""
        while not stop.is_set():
            left = max_outage - self.outage_seconds()
            if self.failing_since is not None and left <= 0:
                return False
            if self.try_admit():
                return True
            # wake when the breaker closes, a probe ends, the next one is due, or time is up
            await wait_any((stop, self._changed), min(left, self.next_probe_in()))
        return False

    def succeeded(self) -> None:
        self.failures = 0
        self.failing_since = None
        self._probing, self._prober = False, None
        if self.opened_at is not None:
            self.opened_at = None
            self._delay = min(1.0, self.max_delay)
            self._notify()

    def failed(self, sent_at: float | None = None) -> None:
        """A request failed for want of a server; `sent_at` (by this clock) is when it
        went out."""
        self.failures += 1
        now = self.clock()
        if self.failing_since is None:
            self.failing_since = now if sent_at is None else min(sent_at, now)
        if self._is_probe():  # the probe failed: wait longer before the next one
            self._probing, self._prober = False, None
            self._delay = min(self.max_delay, self._delay * 2)
            self._next_probe = now + self._delay
            self._notify()
        elif self.opened_at is None and self.failures >= self.threshold:
            self.opened_at = now
            self._delay = min(1.0, self.max_delay)
            self._next_probe = now + self._delay
            self._notify()

    def cancel_probe(self) -> None:
        """The probe ended without telling anything about the server (e.g. the run is
        stopping): the next waiter may probe, at the same interval."""
        if self._is_probe():
            self._probing, self._prober = False, None
            self._notify()

    def _is_probe(self) -> bool:
        return self._probing and self._prober is _this_task()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
