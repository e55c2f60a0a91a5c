"""v2 status polling for every submitted request, from one loop.

Workers call `await poller.wait(request_id)`; it returns when the request has
COMPLETED and raises when it cannot (see `wait`). One loop polls all in-flight
ids in order of due time, through the shared rate limit, each id's interval
growing from `interval` to `max_interval` seconds, so polling load stays bounded
however many jobs are in flight.

Polls run side by side (up to POLLS_AT_ONCE), each with a short timeout, so one
that hangs holds up no other. Every wait is bounded (SPEC §8 S4): a request still
QUEUED or PROCESSING after `timeout` seconds, and one whose status the API has not
told for longer than `max_outage` seconds (5xx, an unknown state such as CANCELLED, a Retry-After
beyond it), end with `StillRunning`: the job keeps its request id for the next
run, which collects it. Trouble while polling never leads to a second submit.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from .client import Client
from .errors import ApiError, JobRejected, RateLimited, RetryableError, StillRunning
from .pacing import AdaptiveRate, wait_event

RUNNING = ("QUEUED", "PROCESSING")
POLLS_AT_ONCE = 8  # status polls in flight at once
#: FAILED messages worth a new submission rather than a permanent failure
_TRANSIENT = re.compile(r"timeout|timed out|temporar|overload|unavailable|try again|capacity",
                        re.IGNORECASE)


@dataclass(eq=False)
class _Watch:
    request_id: str
    future: asyncio.Future
    started: float
    interval: float
    failing_since: float | None = field(default=None)


class Poller:
    def __init__(self, client: Client, rate: AdaptiveRate | None, *, interval: float = 1.0,
                 max_interval: float = 5.0, timeout: float = 600.0, max_outage: float = 600.0,
                 clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.rate = rate
        self.interval = interval
        self.max_interval = max_interval
        self.timeout = timeout
        self.max_outage = max_outage
        self.clock = clock
        self.polls = 0
        self._due: list[tuple[float, int, _Watch]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()
        self._never = asyncio.Event()  # polls go on after a stop: in-flight jobs finish
        self._slots = asyncio.Semaphore(POLLS_AT_ONCE)
        self._polling: set[asyncio.Task] = set()

    async def wait(self, request_id: str) -> None:
        """Return once the request COMPLETED. Raises JobRejected (FAILED),
        RetryableError (FAILED for a passing reason), RequestLost (404),
        StillRunning (see the module's docstring) or FatalApiError."""
        watch = _Watch(request_id, asyncio.get_running_loop().create_future(), self.clock(),
                       self.interval)
        self._schedule(watch, self.interval)
        await watch.future

    def _schedule(self, watch: _Watch, delay: float) -> None:
        heapq.heappush(self._due, (self.clock() + delay, next(self._order), watch))
        self._wake.set()

    async def run(self) -> None:
        """Poll until cancelled."""
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, _, watch = self._due[0]
            if due > self.clock():
                self._wake.clear()
                await wait_event(self._wake, due - self.clock())
                continue
            heapq.heappop(self._due)
            if not watch.future.done():  # a cancelled worker no longer waits
                await self._slots.acquire()  # a hung poll must not hold up the others
                task = asyncio.create_task(self._poll(watch))
                self._polling.add(task)
                task.add_done_callback(self._polling.discard)

    async def _poll(self, watch: _Watch) -> None:
        try:
            if self.rate is not None:
                await self.rate.acquire(self._never)
            self.polls += 1
            sent_at = self.clock()
            try:
                state, error = await self.client.status(watch.request_id)
            except RateLimited as exc:
                if self.rate is not None:
                    self.rate.rate_limited(exc.retry_after)
                self._trouble(watch, "was rate limited", exc.retry_after, sent_at)
            except RetryableError as exc:
                self._trouble(watch, f"failed ({exc})", exc.retry_after, sent_at)
            except ApiError as exc:
                _settle(watch, exc)
            else:
                self._answer(watch, state, error, sent_at)
        finally:
            self._slots.release()

    def _answer(self, watch: _Watch, state: str, error: str | None, sent_at: float) -> None:
        if state == "COMPLETED":
            _settle(watch, None)
        elif state == "FAILED":
            message = error or "generation failed"
            _settle(watch, RetryableError(message, 422) if _TRANSIENT.search(message)
                    else JobRejected(message, 422))
        elif state in RUNNING:
            watch.failing_since = None
            if self.clock() - watch.started > self.timeout:
                _settle(watch, StillRunning(
                    f"request {watch.request_id} is still {state} after {self.timeout:g}s "
                    "(--timeout); the next run collects it"))
                return
            watch.interval = min(self.max_interval, watch.interval * 1.5)
            self._schedule(watch, watch.interval)
        else:
            self._trouble(watch, f"is {state or 'missing'}, which is no known state", None,
                          sent_at)

    def _trouble(self, watch: _Watch, what: str, retry_after: float | None,
                 sent_at: float) -> None:
        """The status could not be told: try again later, unless that would make the
        request's status unknown for longer than max_outage, counted from when the
        first poll that could not tell was sent."""
        now = self.clock()
        if watch.failing_since is None:
            watch.failing_since = sent_at
        delay = retry_after if retry_after else min(self.max_interval * 4, watch.interval * 2)
        watch.interval = min(self.max_interval * 4, watch.interval * 2)
        if now + delay - watch.failing_since > self.max_outage:
            _settle(watch, StillRunning(
                f"the status of request {watch.request_id} {what}; unknown for longer than "
                f"{self.max_outage:g}s (--max-outage), the next run collects it", outage=True))
        else:
            self._schedule(watch, delay)


def _settle(watch: _Watch, error: ApiError | None) -> None:
    if watch.future.done():
        return
    if error is None:
        watch.future.set_result(None)
    else:
        watch.future.set_exception(error)
