"""Workers: a fixed pool pulls jobs from a small queue and takes each to an end.

A job ends with exactly one manifest line per run once it has started: succeeded,
failed or pending, carrying what the API billed for it (the ledger's account), so
the lines of a run add up to what it spent (SPEC §8 M1). What happens after a
failed request is decided by the error's type (see `errors`):

    RateLimited      wait as told, slow the whole pool; no retry used up
    InvalidImage     billed: counted, then retried like a server error
    RetryableError   back off and retry; retries used up → a retryable failure
    RequestLost      billed once; submitted once more in this run, through the budget
    StillRunning     pending with its v2 request id (if the status was unknown: stop)
    JobRejected      a permanent failure of this job; the run goes on
    OutOfCredits     stop dispatching; this job and the rest stay pending (exit 3)
    FatalApiError    stop dispatching; nothing is marked failed (exit 5)

Every wait - for money, for the breaker, for the rate limit, between retries -
ends as soon as the run stops, and a wait the server asks for that is longer than
--max-outage stops the run instead (S4).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable

from .client import Client, GeneratedImage
from .config import RunConfig
from .errors import (
    ApiError,
    FatalApiError,
    InvalidImage,
    JobRejected,
    NoAnswer,
    OutOfCredits,
    OutputError,
    RateLimited,
    RequestLost,
    RetryableError,
    StillRunning,
    StopReason,
)
from .events import Submitted
from .jobs import Job
from .ledger import Ledger
from .manifest import ManifestWriter
from .models import v1_path
from .money import reported_micro
from .outcomes import Outcomes, Ticket
from .pacing import AdaptiveRate, CircuitBreaker, sleep_unless
from .poller import Poller
from .progress import Reporter
from .state import JobState
from .store import ImageStore

log = logging.getLogger("batchgen")

MAX_RATE_LIMITED = 100  # 429s one job may meet before it is recorded as a retryable failure
BACKOFF_CAP = 60.0


class Pool:
    """Workers, their shared limits, the ledger and the stop flag."""

    def __init__(self, config: RunConfig, client: Client, manifest: ManifestWriter,
                 store: ImageStore, reporter: Reporter,
                 on_image: Callable[[str], None] | None = None,
                 on_end: Callable[[int, str], None] | None = None):
        self.config = config
        self.client = client
        self.manifest = manifest
        self.store = store
        self.ledger = Ledger(config.max_cost_micro)
        # on_image: called with each saved image's path; must not raise
        self.outcomes = Outcomes(manifest, store, reporter, self.ledger, on_image, on_end)
        self.rate = AdaptiveRate(config.rate) if config.rate else None
        self.breaker = CircuitBreaker()
        self.poller = Poller(client, self.rate, interval=config.poll_interval,
                             timeout=config.timeout, max_outage=config.max_outage)
        self.stopping = asyncio.Event()
        self._unstoppable = asyncio.Event()  # for the requests in flight, which finish
        self.stop_reason: StopReason | None = None
        self.stop_message: str | None = None
        self.fatal: ApiError | None = None
        self._workers: list[asyncio.Task] = []
        self._request_ids: set[str] = set()  # v2 ids submitted in this run

    # -- the lifecycle -------------------------------------------------------------

    def stop(self, reason: StopReason, message: str | None = None) -> None:
        """Stop dispatching; requests in flight finish. The first reason wins."""
        if self.stop_reason is None:
            self.stop_reason, self.stop_message = reason, message
            log.debug("stopping dispatch: %s", reason.word)
        self.stopping.set()

    def cancel_in_flight(self) -> None:
        for worker in self._workers:
            worker.cancel()

    async def run(self, items: Iterable[tuple[int, Job, JobState]]) -> None:
        queue: asyncio.Queue = asyncio.Queue(maxsize=self.config.concurrency)
        feeder = asyncio.create_task(self._feed(items, queue))
        poller = asyncio.create_task(self.poller.run())
        self._workers = [asyncio.create_task(self._work(queue))
                         for _ in range(self.config.concurrency)]
        try:
            results = await asyncio.gather(*self._workers, return_exceptions=True)
        finally:
            feeder.cancel()
            poller.cancel()
        for result in results:
            if isinstance(result, Exception):
                raise result

    async def _feed(self, items: Iterable[tuple[int, Job, JobState]],
                    queue: asyncio.Queue) -> None:
        for item in items:
            if self.stopping.is_set():
                break
            await queue.put(item)
        for _ in self._workers:
            await queue.put(None)

    async def _work(self, queue: asyncio.Queue) -> None:
        while not self.stopping.is_set():
            item = await queue.get()
            if item is None:
                return
            position, job, state = item
            ticket = Ticket(job, position, state.request_id)
            if state.request_billed:
                ticket.account.keys[state.request_id] = job.price
            try:
                await self._process(ticket)
            except OutputError as exc:  # the manifest cannot be written: nothing can go on
                log.error("%s; stopping", exc)
                self.stop(StopReason.OUTPUT_ERROR, str(exc))
                return
            except Exception as exc:  # a bug: stop cleanly, keep what the job cost
                log.exception("unexpected error on %s; stopping", job.id)
                self.stop(StopReason.INTERNAL_ERROR, f"unexpected error: {exc!r}")
                self.outcomes.pending(ticket, StopReason.INTERNAL_ERROR.word)
                return
            finally:
                self.ledger.release(ticket.account)

    async def _process(self, ticket: Ticket) -> None:
        """Try a job until it succeeds, fails for good or the run stops."""
        try:
            while True:
                if not await self._ready(ticket):
                    self.outcomes.pending(ticket, self.stop_reason.word if self.stop_reason
                                  else StopReason.INTERRUPTED.word)
                    return
                if ticket.attempts == 0 and (blocked := self.store.blocked(ticket.job.id)):
                    self.outcomes.failure(ticket, RetryableError(blocked), retryable=True)
                    return  # nothing paid for an image that could not be saved
                ticket.attempts += 1
                sent_at = time.monotonic()
                try:
                    image = await self._attempt(ticket)
                except ApiError as exc:
                    if exc.billed:
                        self._charge(ticket)
                    elif isinstance(exc, NoAnswer):
                        self.ledger.hold(ticket.account)
                    if not await self._handle(ticket, exc, sent_at):
                        return
                    if ticket.account.cost:  # billed, and tried again: on record now (M1)
                        self.outcomes.billed(ticket, exc)
                else:
                    self._charge(ticket, image.credits_consumed)
                    self.breaker.succeeded()
                    if self.rate is not None:
                        self.rate.succeeded()
                    self._save(ticket, image)
                    return
        except asyncio.CancelledError:  # a second signal: record, then let it through
            self.outcomes.pending(ticket, StopReason.INTERRUPTED.word)
            raise

    # -- one attempt -----------------------------------------------------------------

    async def _ready(self, ticket: Ticket) -> bool:
        """Money, then the breaker and the rate limit for a request that is sent; False
        when the run is stopping."""
        if self.stopping.is_set():
            return False
        if not ticket.billed_request and not await self.ledger.reserve(ticket.account,
                                                                        self.stopping):
            self.stop(StopReason.BUDGET)
            return False
        if ticket.request_id is not None:  # collecting: the poller paces its own requests
            return True
        if not await self.breaker.admit(self.stopping, self.config.max_outage):
            self.stop(StopReason.OUTAGE, f"the API has been failing for over "
                      f"{self.config.max_outage:g}s (--max-outage)")
            return False
        if self.rate is not None and not await self.rate.acquire(self.stopping):
            self.breaker.cancel_probe()
            return False
        return True

    async def _attempt(self, ticket: Ticket) -> GeneratedImage:
        """One try at the image. A job with a v2 request id is always collected,
        whatever --api says: re-posting it could pay twice."""
        job = ticket.job
        if ticket.request_id is None and self.config.api == "v1":
            return await self.client.generate(job.body(), v1_path(job.model))
        if ticket.request_id is None:
            request_id = await self.client.submit(job.body(), job.model)
            if request_id in self._request_ids:
                raise InvalidImage(f"the API gave request id {request_id} to two jobs", 200)
            self._request_ids.add(request_id)
            ticket.request_id = request_id
            self.manifest.write(Submitted(job_id=job.id, fp=job.fp, request_id=request_id,
                                          replaces=ticket.replaces))
            self.breaker.succeeded()  # the API took it: it is up, whatever the wait
        if not ticket.billed_request:
            try:
                await self.poller.wait(ticket.request_id)
            except (JobRejected, RetryableError):
                ticket.request_id = None  # it ended FAILED: a retry is a new submission
                raise
            self._charge(ticket)  # COMPLETED is billed, whether or not the image arrives
        if self.rate is not None:
            await self.rate.acquire(self._unstoppable)
        return await self.client.result(ticket.request_id)

    def _charge(self, ticket: Ticket, reported: float | None = None) -> None:
        """The one place a billed answer is counted: once per v2 request id, once per
        v1 attempt; at the dollars the API `reported`, when it did."""
        amount = reported_micro(reported)
        if amount is None and reported is not None:
            log.warning("%s: the API reported %r dollars for one answer; not believed, "
                        "counted at the price", ticket.job.id, reported)
        self.ledger.charge(ticket.account, ticket.request_id or f"attempt-{ticket.attempts}",
                           amount)

    async def _handle(self, ticket: Ticket, exc: ApiError, sent_at: float) -> bool:
        """What a failed attempt means for the job: True to try again."""
        if isinstance(exc, RateLimited):
            self.breaker.succeeded()
            if self.rate is not None:
                self.rate.rate_limited(exc.retry_after)
            ticket.rate_limited += 1
            if ticket.rate_limited > MAX_RATE_LIMITED:
                self.outcomes.failure(ticket, exc, retryable=True)
                return False
            await self._wait(exc.retry_after or self._backoff(ticket.rate_limited), exc)
            return True
        if isinstance(exc, RetryableError):
            if exc.billed:  # the server answered: it is up
                self.breaker.succeeded()
            else:
                self.breaker.failed(sent_at)
            if not self.breaker.is_open:  # waiting out an outage costs no retries
                ticket.retries += 1
            if ticket.retries > self.config.retries:
                self.outcomes.failure(ticket, exc, retryable=True)
                return False
            log.debug("retrying %s after %s", ticket.job.id, exc)
            await self._wait(max(self._backoff(max(ticket.retries, 1)), exc.retry_after or 0),
                             exc)
            return True
        self.breaker.succeeded()
        if isinstance(exc, RequestLost):
            lost, ticket.request_id = ticket.request_id, None
            if ticket.replaces is not None:
                self.outcomes.failure(ticket, exc, retryable=True)
                return False
            log.warning("%s: the API lost request %s; submitting it once more",
                        ticket.job.id, lost)
            ticket.replaces = lost
            return True
        if isinstance(exc, StillRunning):
            if exc.outage:
                self.stop(StopReason.OUTAGE, exc.message)
            log.warning("%s: %s", ticket.job.id, exc.message)
            self.outcomes.pending(ticket, StopReason.OUTAGE.word if exc.outage else "submitted")
        elif isinstance(exc, JobRejected):
            ticket.request_id = None
            self.outcomes.failure(ticket, exc, retryable=False)
        elif isinstance(exc, OutOfCredits):
            self.stop(StopReason.OUT_OF_CREDITS)
            self.outcomes.pending(ticket, StopReason.OUT_OF_CREDITS.word)
        elif isinstance(exc, FatalApiError):
            self.fatal = self.fatal or exc
            self.stop(StopReason.API_REFUSED, str(exc))
            self.outcomes.pending(ticket, StopReason.API_REFUSED.word)
        else:  # pragma: no cover - every ApiError subclass is handled above
            raise exc
        return False

    async def _wait(self, seconds: float, exc: ApiError) -> None:
        """Sleep between attempts unless the run stops; a wait longer than --max-outage
        stops the run instead of sleeping (the job stays pending)."""
        if seconds > self.config.max_outage:
            self.stop(StopReason.OUTAGE, f"the API asked to wait {seconds:g}s ({exc}), "
                      f"longer than --max-outage {self.config.max_outage:g}s")
            return
        await sleep_unless(self.stopping, seconds)

    def _backoff(self, retry: int) -> float:
        """Exponential backoff with full jitter."""
        return random.uniform(0, min(BACKOFF_CAP, self.config.backoff * 2 ** (retry - 1)))

    def _save(self, ticket: Ticket, image: GeneratedImage) -> None:
        try:
            self.outcomes.success(ticket, image)
        except OSError as exc:  # disk full, folder removed: the image is paid for but lost
            message = f"cannot save {exc.filename or self.store.path}: {exc.strerror}"
            log.error("%s; stopping", message)
            self.stop(StopReason.OUTPUT_ERROR, message)
            self.outcomes.pending(ticket, StopReason.OUTPUT_ERROR.word)
