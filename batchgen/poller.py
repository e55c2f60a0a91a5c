"""v2 status polling for every submitted request, from one loop.

Workers call `await poller.wait(request_id)` and get back the final state. One
loop polls all in-flight ids in order of due time, one request at a time and
through the shared rate limit, with each id's interval growing from
`interval` to `max_interval` seconds, so polling load stays bounded however
many jobs are in flight. Network trouble while polling is retried here: it
must never lead to a second submit (and a second charge) of the same job.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time

from .client import Client
from .errors import ApiError, RateLimited, RetryableError
from .pacing import AdaptiveRate, wait_event

TERMINAL = ("COMPLETED", "FAILED", "EXPIRED")


class Poller:
    def __init__(self, client: Client, rate: AdaptiveRate | None, *, interval: float = 1.0,
                 max_interval: float = 5.0):
        self.client = client
        self.rate = rate
        self.interval = interval
        self.max_interval = max_interval
        self.polls = 0
        # (due time, tie-breaker, request id, current interval, future)
        self._due: list[tuple[float, int, str, float, asyncio.Future]] = []
        self._order = itertools.count()
        self._wake = asyncio.Event()

    async def wait(self, request_id: str) -> tuple[str, str | None]:
        """The terminal (state, error) of a request: COMPLETED, FAILED, or EXPIRED when
        the API no longer knows it. Raises ApiError for a fatal answer (401/403)."""
        future = asyncio.get_running_loop().create_future()
        self._schedule(request_id, self.interval, future, delay=self.interval)
        return await future

    def _schedule(self, request_id: str, interval: float, future: asyncio.Future,
                  delay: float) -> None:
        entry = (time.monotonic() + delay, next(self._order), request_id, interval, future)
        heapq.heappush(self._due, entry)
        self._wake.set()

    async def run(self) -> None:
        """Poll forever (until cancelled)."""
        while True:
            if not self._due:
                self._wake.clear()
                await self._wake.wait()
                continue
            due, _, request_id, interval, future = self._due[0]
            wait = due - time.monotonic()
            if wait > 0:
                self._wake.clear()
                await wait_event(self._wake, wait)
                continue
            heapq.heappop(self._due)
            if not future.done():  # a cancelled worker no longer waits
                await self._poll(request_id, interval, future)

    async def _poll(self, request_id: str, interval: float, future: asyncio.Future) -> None:
        if self.rate is not None:
            await self.rate.acquire()
        self.polls += 1
        try:
            state, error = await self.client.status(request_id)
        except RateLimited as exc:
            if self.rate is not None:
                self.rate.rate_limited(exc.retry_after)
            self._schedule(request_id, interval, future, exc.retry_after or interval)
        except RetryableError:
            backoff = min(self.max_interval * 4, interval * 2)
            self._schedule(request_id, backoff, future, backoff)
        except ApiError as exc:
            future.done() or future.set_exception(exc)
        else:
            if state in TERMINAL:
                future.done() or future.set_result((state, error))
            else:
                longer = min(self.max_interval, interval * 1.5)
                self._schedule(request_id, longer, future, longer)
