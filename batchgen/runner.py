"""The run: plan what is left to do, then a pool of workers generates it.

A fixed number of workers pull jobs from a small queue that a feeder fills
lazily, so a million jobs cost a million list entries and nothing more. Every
outcome goes into the manifest as it happens. What the runner does with a
failed request is decided by the error's type (see `errors`):

    RateLimited      wait as told, slow the whole pool; no retry used up
    InvalidImage     billed: count the money, then retry like a server error
    RetryableError   back off and retry; retries exhausted → retryable failure
    JobRejected      permanent failure of this job; the run goes on
    OutOfCredits     stop dispatching; this job and the rest stay pending (exit 3)
    FatalApiError    stop dispatching; nothing is marked failed (exit 5)

A budget (`max_cost`) is enforced with reservations: a job starts only if the
money spent plus every in-flight job's price plus its own fits under the cap.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import re
import signal
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from . import report
from .client import Client, GeneratedImage, key_exposed
from .config import RunConfig, format_usd, micro_to_usd
from .errors import (
    ApiError,
    FatalApiError,
    InvalidImage,
    JobRejected,
    OutOfCredits,
    OutputError,
    RateLimited,
    RetryableError,
    UsageError,
)
from .jobs import Job
from .lock import FolderLock
from .manifest import MANIFEST_NAME, ManifestWriter, Replay, replay
from .pacing import AdaptiveRate, CircuitBreaker
from .poller import Poller
from .progress import Reporter
from .store import ImageStore, safe_stem

log = logging.getLogger("batchgen")

#: exit code of each reason a run can stop early (SPEC §3)
STOP_EXIT_CODES = {"out_of_credits": 3, "budget": 4, "auth": 5, "outage": 1,
                   "insufficient_credits": 3, "output_error": 1}
SIGNAL_EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
MAX_RATE_LIMITED = 100  # 429s one job may meet before it is recorded as a retryable failure
BACKOFF_CAP = 60.0
#: v2 FAILED messages worth a new submission rather than a permanent failure
_TRANSIENT = re.compile(r"timeout|timed out|temporar|overload|unavailable|try again|capacity",
                        re.IGNORECASE)


@dataclass(frozen=True)
class RunSummary:
    """How a run ended. Counts are over the whole batch (within `--shard`)."""

    exit_code: int
    reason: str  # completed | failed | out_of_credits | budget | auth | outage | interrupted | ...
    done: int
    failed: int
    pending: int
    spent_run_micro: int
    spent_total_micro: int
    done_run: int = 0
    remaining_credits: float | None = None
    message: str | None = None

    def line(self) -> str:
        """The last line of every run, for people and log scrapers alike."""
        credits = ("" if self.remaining_credits is None
                   else f"credits=${self.remaining_credits:.3f} ")
        return (f"done={self.done} failed={self.failed} pending={self.pending} "
                f"spent={format_usd(self.spent_run_micro)} "
                f"total={format_usd(self.spent_total_micro)} {credits}exit={self.exit_code}")


def in_shard(job_id: str, shard: tuple[int, int] | None) -> bool:
    if shard is None:
        return True
    index, count = shard
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:12], 16) % count == index - 1


@dataclass
class Plan:
    """Which jobs this run will attempt, and why the others are left alone."""

    universe: list[Job]  # the jobs of this shard
    to_run: list[tuple[Job, str | None]]  # (job, v2 request id to poll instead of re-posting)
    recovered: list[tuple[Job, str]]  # images on disk whose success line was lost in a crash
    permanent_failures: int
    done_before: int


def make_plan(jobs: Sequence[Job], state: Replay, on_disk: set[str], config: RunConfig) -> Plan:
    universe = [job for job in jobs if in_shard(job.id, config.shard)]
    by_stem: dict[str, str] | None = None  # built only if a job may have lost its line
    to_run: list[tuple[Job, str | None]] = []
    recovered: list[tuple[Job, str]] = []
    permanent = done = 0
    for job in universe:
        record = state.jobs.get(job.id)
        unchanged = record is not None and record.describes(job.prompt, job.aspect_ratio)
        if unchanged and record.state == "done" and record.file in on_disk:
            done += 1
            continue
        if unchanged and record.state == "failed" and not record.retryable \
                and not config.retry_failed:
            permanent += 1
            continue
        started = record is not None and record.state in ("submitted", "pending")
        if record is None or started:
            if by_stem is None:
                by_stem = {path.rsplit("/", 1)[-1].rsplit(".", 1)[0]: path for path in on_disk}
            if orphan := by_stem.get(safe_stem(job.id)):
                recovered.append((job, orphan))
                continue
        to_run.append((job, record.request_id if started else None))
    if config.limit is not None:
        to_run = to_run[: config.limit]
    return Plan(universe, to_run, recovered, permanent, done)


class Budget:
    """This run's money, with reservations for requests in flight."""

    def __init__(self, cap_micro: int | None, price_micro: int):
        self.cap = cap_micro
        self.price = price_micro
        self.spent = 0
        self.reserved = 0

    def reserve(self) -> Reservation | None:
        """The price of one image set aside, or None when it would break the cap."""
        if self.cap is not None and self.spent + self.reserved + self.price > self.cap:
            return None
        self.reserved += self.price
        return Reservation(self)

    def fits(self) -> bool:
        """Whether the held reservations are still covered (after money went on a bad answer)."""
        return self.cap is None or self.spent + self.reserved <= self.cap

    def charge(self, micro: int) -> None:
        self.spent += micro


class Reservation:
    """One job's share of the budget: committed when its image arrives, else released."""

    def __init__(self, budget: Budget):
        self._budget = budget
        self._held = True

    def commit(self) -> None:
        self.release()
        self._budget.spent += self._budget.price

    def release(self) -> None:
        if self._held:
            self._held = False
            self._budget.reserved -= self._budget.price

    def charge(self, micro: int) -> None:
        self.spent += micro


@dataclass(slots=True)
class Ticket:
    """One job on its way through a worker."""

    job: Job
    reservation: Reservation
    request_id: str | None = None  # v2: the submitted request to poll, never to re-post
    replaces: str | None = None  # v2: the expired request this one was submitted instead of
    attempts: int = 0
    billed: int = 0  # money spent on answers that were not images
    billed_request: str | None = None  # v2: the request id already counted in `billed`


class Pool:
    """Workers, their shared limits, and the stop flag."""

    def __init__(self, config: RunConfig, client: Client, manifest: ManifestWriter,
                 store: ImageStore, reporter: Reporter):
        self.config = config
        self.client = client
        self.manifest = manifest
        self.store = store
        self.reporter = reporter
        self.budget = Budget(config.max_cost_micro, config.price_micro)
        self.rate = AdaptiveRate(config.rate) if config.rate else None
        self.breaker = CircuitBreaker()
        self.poller = Poller(client, self.rate, interval=config.poll_interval)
        self.stop_reason: str | None = None
        self.fatal: ApiError | None = None
        self.remaining_credits: float | None = None
        self.done = 0
        self.failed_jobs: set[str] = set()
        self._workers: list[asyncio.Task] = []

    def stop(self, reason: str) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
            log.debug("stopping dispatch: %s", reason)

    def cancel_in_flight(self) -> None:
        for worker in self._workers:
            worker.cancel()

    async def run(self, items: Sequence[tuple[Job, str | None]]) -> None:
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

    async def _feed(self, items: Sequence[tuple[Job, str | None]], queue: asyncio.Queue) -> None:
        for item in items:
            if self.stop_reason:
                break
            await queue.put(item)
        for _ in self._workers:
            await queue.put(None)

    async def _work(self, queue: asyncio.Queue) -> None:
        while self.stop_reason is None:
            item = await queue.get()
            if item is None:
                return
            reservation = self.budget.reserve()
            if reservation is None:
                self.stop("budget")
                return
            job, request_id = item
            try:
                await self._process(Ticket(job, reservation, request_id))
            except OutputError as exc:  # the manifest cannot be written: nothing more can run
                log.error("%s; stopping", exc)
                self.stop("output_error")
                return
            finally:
                reservation.release()

    async def _admit(self) -> bool:
        """Wait for the breaker and the rate limit; False when the run is stopping."""
        if self.stop_reason:
            return False
        if not await self.breaker.admit(self.config.max_outage):
            log.error("the API has been failing for over %ss; stopping (rerun to resume)",
                      f"{self.config.max_outage:g}")
            self.stop("outage")
            return False
        if self.rate is not None:
            await self.rate.acquire()
        return self.stop_reason is None

    def _backoff(self, retry: int, retry_after: float | None) -> float:
        """Exponential backoff with full jitter, never shorter than the server asked."""
        delay = random.uniform(0, min(BACKOFF_CAP, self.config.backoff * 2 ** (retry - 1)))
        return max(delay, retry_after or 0.0)

    async def _process(self, ticket: Ticket) -> None:
        """Try a job until it succeeds, fails for good or the run stops."""
        retries = rate_limited = 0
        try:
            while True:
                if not await self._admit():
                    if ticket.attempts:
                        self._pending(ticket, self.stop_reason or "interrupted")
                    return
                ticket.attempts += 1
                try:
                    image = await self._attempt(ticket)
                except RateLimited as exc:
                    self.breaker.succeeded()
                    if self.rate is not None:
                        self.rate.rate_limited(exc.retry_after)
                    rate_limited += 1
                    if rate_limited > MAX_RATE_LIMITED:
                        self._failed(ticket, exc, retryable=True)
                        return
                    await asyncio.sleep(exc.retry_after or self._backoff(rate_limited, None))
                    continue
                except RetryableError as exc:
                    if isinstance(exc, InvalidImage):
                        self._bill_bad_answer(ticket)
                        self.breaker.succeeded()
                    else:
                        self.breaker.failed()
                    if not self.breaker.is_open:  # waiting out an outage costs no retries
                        retries += 1
                    if retries > self.config.retries:
                        self._failed(ticket, exc, retryable=True)
                        return
                    if not self.budget.fits():
                        self.stop("budget")
                        self._pending(ticket, "budget")
                        return
                    log.debug("retrying %s after %s", ticket.job.id, exc)
                    await asyncio.sleep(self._backoff(max(retries, 1), exc.retry_after))
                    continue
                except JobRejected as exc:
                    self.breaker.succeeded()
                    self._failed(ticket, exc, retryable=False)
                    return
                except OutOfCredits:
                    self.breaker.succeeded()
                    self.stop("out_of_credits")
                    self._pending(ticket, "out_of_credits")
                    return
                except FatalApiError as exc:
                    self.fatal = self.fatal or exc
                    self.stop("auth")
                    return
                self.breaker.succeeded()
                if self.rate is not None:
                    self.rate.succeeded()
                self._save(ticket, image)
                return
        except asyncio.CancelledError:
            self._pending(ticket, "interrupted")
            raise

    async def _attempt(self, ticket: Ticket) -> GeneratedImage:
        """One try at the image. A job with a v2 request id is always polled, whatever
        --api says: re-posting it could pay twice."""
        if self.config.api == "v1" and ticket.request_id is None:
            return await self.client.generate(ticket.job.prompt, ticket.job.aspect_ratio)
        if ticket.request_id is None:
            submission = await self.client.submit(ticket.job.prompt, ticket.job.aspect_ratio)
            ticket.request_id = submission.request_id
            replaces = {"replaces": ticket.replaces} if ticket.replaces else {}
            self.manifest.write("submitted", job_id=ticket.job.id,
                                request_id=submission.request_id, **replaces)
        state, error = await self.poller.wait(ticket.request_id)
        if state == "COMPLETED":
            if self.rate is not None:
                await self.rate.acquire()
            return await self.client.result(ticket.request_id)
        if state == "EXPIRED":
            log.warning("%s: request %s is unknown or its result expired; submitting again",
                        ticket.job.id, ticket.request_id)
            ticket.replaces, ticket.request_id = ticket.request_id, None
            return await self._attempt(ticket)
        ticket.request_id = None  # FAILED: a retry is a new submission
        message = error or "generation failed"
        if _TRANSIENT.search(message):
            raise RetryableError(message, 422)
        raise JobRejected(message, 422)

    def _save(self, ticket: Ticket, image: GeneratedImage) -> None:
        """Write the image, then its line. Synchronous on purpose: no cancellation (a
        second Ctrl-C) can fall between the two and drop a paid-for image."""
        job = ticket.job
        try:
            file = self.store.write(safe_stem(job.id), image.extension, image.data)
        except OSError as exc:  # disk full, folder removed: the image is paid for but lost
            log.error("cannot save images in %s: %s; stopping", self.store.path, exc.strerror)
            self.stop("output_error")
            self.budget.charge(self.config.price_micro)
            ticket.billed += self.config.price_micro
            error = RetryableError(f"could not save the image: {exc.strerror}")
            self._failed(ticket, error, retryable=True)
            return
        ticket.reservation.commit()
        self.done += 1
        if image.remaining_credits is not None:  # answers arrive out of order: keep the lowest
            known = [c for c in (self.remaining_credits, image.remaining_credits) if c is not None]
            self.remaining_credits = min(known)
        self.manifest.write(
            "succeeded", job_id=job.id, prompt=job.prompt, aspect_ratio=job.aspect_ratio,
            metadata=job.metadata, file=file, bytes=len(image.data),
            sha256=hashlib.sha256(image.data).hexdigest(),
            cost=micro_to_usd(self.config.price_micro + ticket.billed),
            attempts=ticket.attempts, latency_s=round(image.latency_s, 3),
            request_id=image.request_id, remaining_credits=image.remaining_credits,
        )
        self.reporter.job_done(job.id, self.budget.spent, image.remaining_credits)

    def _bill_bad_answer(self, ticket: Ticket) -> None:
        """Count the money for a billed answer that held no image: once per v1 request,
        once per v2 request id (v2 bills at completion, not per fetch of the result)."""
        if ticket.request_id is not None:
            if ticket.request_id == ticket.billed_request:
                return
            ticket.billed_request = ticket.request_id
        ticket.billed += self.config.price_micro
        self.budget.charge(self.config.price_micro)

    def _failed(self, ticket: Ticket, exc: ApiError, *, retryable: bool) -> None:
        job = ticket.job
        self.failed_jobs.add(job.id)
        self.manifest.write(
            "failed", job_id=job.id, prompt=job.prompt, aspect_ratio=job.aspect_ratio,
            metadata=job.metadata, status=exc.status, error=exc.message, retryable=retryable,
            attempts=ticket.attempts, cost=micro_to_usd(ticket.billed),
        )
        self.reporter.job_failed(job.id, str(exc))

    def _pending(self, ticket: Ticket, reason: str) -> None:
        fields = {"request_id": ticket.request_id} if ticket.request_id else {}
        self.manifest.write("pending", job_id=ticket.job.id, reason=reason, **fields)


async def _preflight(client: Client, config: RunConfig, jobs_left: int) -> str | None:
    """Check the balance before spending; the stop reason if the run must not start."""
    try:
        balance = await client.credits()
    except FatalApiError as exc:
        if exc.status in (401, 403):
            raise
        log.warning("could not check the account balance (%s); going on", exc)
        return None
    except ApiError as exc:
        log.warning("could not check the account balance (%s); going on", exc)
        return None
    needed = jobs_left * config.price_micro
    balance_micro = round(balance * 1_000_000)
    if balance_micro >= needed:
        log.info("balance $%.3f covers the %d jobs to do (%s)", balance, jobs_left,
                 format_usd(needed))
        return None
    covers = balance_micro // config.price_micro
    log.warning("the balance ($%.3f) covers only %d of the %d jobs (%s needed)",
                balance, covers, jobs_left, format_usd(needed))
    if config.require_credits:
        log.error("--require-credits: not starting; top up and rerun the same command")
        return "insufficient_credits"
    return None


def _recover(manifest: ManifestWriter, plan: Plan, config: RunConfig) -> None:
    """Record images that reached disk in a crashed run but missed their success line."""
    for job, file in plan.recovered:
        log.warning("%s: found its image %s from an interrupted run; keeping it", job.id, file)
        manifest.write(
            "succeeded", job_id=job.id, prompt=job.prompt, aspect_ratio=job.aspect_ratio,
            metadata=job.metadata, file=file, bytes=None, sha256=None,
            cost=micro_to_usd(config.price_micro), attempts=0, latency_s=None,
            request_id=None, remaining_credits=None, recovered=True,
        )


async def arun_batch(
    jobs: Sequence[Job], config: RunConfig, *, reporter: Reporter | None = None,
    handle_signals: bool = False,
) -> RunSummary:
    """Run (or resume) a batch; see `run_batch`."""
    reporter = reporter or Reporter(bar=False)
    out_dir = config.out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the output folder {out_dir}: {exc.strerror}") from None
    with FolderLock(out_dir):
        return await _run_locked(jobs, config, reporter, handle_signals)


async def _run_locked(jobs: Sequence[Job], config: RunConfig, reporter: Reporter,
                      handle_signals: bool) -> RunSummary:
    out_dir = config.out_dir
    store = ImageStore(out_dir)
    store.prepare()
    manifest_path = out_dir / MANIFEST_NAME
    before = replay(manifest_path)
    if before.bad_lines:
        log.warning("%s: skipped %d unreadable line(s) (%s), probably torn by a crash",
                    manifest_path, len(before.bad_lines),
                    ", ".join(map(str, before.bad_lines[:5])))
    plan = make_plan(jobs, before, store.existing(suspect=before.unfinished_files), config)
    del before  # a million-job replay is large: keep only one alive at a time
    if key_exposed(config.base_url):
        log.warning("the API key will be sent unencrypted to %s (plain http)", config.base_url)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{random.getrandbits(24):06x}"
    exit_code, reason, message = 0, "completed", None
    signals: list[int] = []
    async with ManifestWriter(manifest_path) as manifest, Client.open(
        config.base_url, config.api_key, concurrency=config.concurrency, timeout=config.timeout
    ) as client:
        manifest.write(
            "run_started", run_id=run_id,
            job_file=str(config.job_file.resolve()) if config.job_file else None,
            job_file_sha256=config.job_file_sha256, jobs=len(jobs),
            settings=config.public_settings(), version=_version(),
        )
        _recover(manifest, plan, config)
        pool = Pool(config, client, manifest, store, reporter)
        log.info("%d jobs: %d to run, %d done before, %d failed permanently",
                 len(plan.universe), len(plan.to_run), plan.done_before,
                 plan.permanent_failures)
        stop_reason = None
        try:
            if plan.to_run:
                stop_reason = await _preflight(client, config, len(plan.to_run))
        except FatalApiError as exc:
            pool.fatal, stop_reason = exc, "auth"
        if stop_reason is None and plan.to_run:
            reporter.start(len(plan.to_run))
            ticker = asyncio.create_task(reporter.tick())
            remove_handlers = _install_signals(pool, config, signals) if handle_signals else None
            try:
                await pool.run(plan.to_run)
            finally:
                ticker.cancel()
                reporter.close()
                if remove_handlers:
                    remove_handlers()
            stop_reason = pool.stop_reason
        if stop_reason == "interrupted":
            exit_code = SIGNAL_EXIT_CODES.get(signals[0] if signals else signal.SIGINT, 130)
            reason = "interrupted"
        elif stop_reason:
            exit_code, reason = STOP_EXIT_CODES[stop_reason], stop_reason
        if pool.fatal is not None:
            message = f"{pool.fatal} (URL {config.base_url})"
            log.error("the API refused the request: %s", message)
        after = replay(manifest_path)
        on_disk = store.existing()
        # the same states results.csv shows
        counts = Counter(row["state"] for row in report.job_rows(plan.universe, after, on_disk))
        own_failures = len(pool.failed_jobs) + (plan.permanent_failures if config.limit is None
                                                else 0)
        if exit_code == 0 and own_failures:
            exit_code, reason = 1, "failed"
        summary = RunSummary(
            exit_code=exit_code, reason=reason, done=counts["done"], failed=counts["failed"],
            pending=counts["pending"], spent_run_micro=pool.budget.spent,
            spent_total_micro=after.spent_micro, done_run=pool.done,
            remaining_credits=pool.remaining_credits, message=message,
        )
        after.apply(manifest.write(
            "run_finished", run_id=run_id, exit_code=exit_code, reason=reason,
            done=summary.done, failed=summary.failed, pending=summary.pending,
            spent_run=micro_to_usd(summary.spent_run_micro),
            spent_total=micro_to_usd(summary.spent_total_micro),
        ))
    try:
        report.write_reports(out_dir, jobs, after)
    except OSError as exc:
        log.error("could not write the reports in %s: %s", out_dir, exc.strerror)
    return summary


def _install_signals(pool: Pool, config: RunConfig, received: list[int]):
    """First SIGINT/SIGTERM: stop dispatching, give in-flight requests a grace period.
    Second: cancel them now."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            log.warning("%s: finishing the requests in flight (up to %ss; again to cancel "
                        "them)", signal.Signals(signum).name, f"{config.grace_period:g}")
            pool.stop("interrupted")
            loop.call_later(config.grace_period, pool.cancel_in_flight)
        else:
            log.warning("cancelling the requests in flight")
            pool.cancel_in_flight()

    for signum in SIGNAL_EXIT_CODES:
        loop.add_signal_handler(signum, on_signal, signum)

    def remove() -> None:
        for signum in SIGNAL_EXIT_CODES:
            loop.remove_signal_handler(signum)
    return remove


def _version() -> str:
    from . import __version__
    return __version__


def run_batch(jobs: Sequence[Job], config: RunConfig, *, reporter: Reporter | None = None,
              handle_signals: bool = False) -> RunSummary:
    """Generate every job not yet done into `config.out_dir`, recording all in its manifest.

    Safe to call again with the same jobs: it resumes. Raises LockedError when
    another run holds the folder, OutputError when it cannot be written.
    """
    return asyncio.run(arun_batch(jobs, config, reporter=reporter, handle_signals=handle_signals))


__all__ = ["Plan", "RunSummary", "arun_batch", "make_plan", "run_batch"]
