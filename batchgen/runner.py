"""A run's lifecycle: lock the folder, plan from the manifest, check the balance,
let the pool work, then record how it ended and write the reports.

    summary = run_batch(load_jobs("prompts.csv"), RunConfig(out_dir=..., api_key=key))
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import random
import signal
import time
from dataclasses import dataclass, field

from . import __version__
from .checkpoint import CHECKPOINT_NAME
from .checkpoint import save as save_checkpoint
from .client import Client, key_exposed
from .config import RunConfig
from .errors import ApiError, FatalApiError, JobFileError, OutputError, StopReason
from .events import RunFinished, RunStarted, Succeeded
from .folder import claim
from .jobs import JobFile
from .lock import FolderLock
from .manifest import MANIFEST_NAME, ManifestWriter, Replay, replay
from .money import format_usd, micro_to_usd
from .plan import Plan
from .pool import Pool
from .progress import Reporter
from .reports import INVALID_NAME, write_invalid, write_reports
from .state import DONE
from .store import ImageStore
from .thumbs import Thumbnailer

log = logging.getLogger("batchgen")

SIGNAL_EXIT_CODES = {signal.SIGINT: 130, getattr(signal, "SIGTERM", signal.SIGINT): 143}


@dataclass(frozen=True)
class RunSummary:
    """How a run ended. Counts are over the whole batch (within `--shard`)."""

    exit_code: int
    reason: str  # completed | failed | incomplete | a StopReason word
    done: int
    failed: int
    pending: int
    spent_run_micro: int
    spent_total_micro: int
    done_run: int = 0
    remaining_credits: float | None = None
    message: str | None = None
    failures: dict[str, int] = field(default_factory=dict)  # cause → jobs, this run
    invalid: int = 0  # rows --skip-invalid left out
    unanswered_micro: int = 0  # requests that got no answer: maybe billed (NoAnswer)

    def line(self) -> str:
        """The last line of every run, for people and log scrapers alike."""
        credits = ("" if self.remaining_credits is None
                   else f"credits=${self.remaining_credits:.3f} ")
        invalid = f"invalid={self.invalid} " if self.invalid else ""
        return (f"done={self.done} failed={self.failed} pending={self.pending} {invalid}"
                f"spent={format_usd(self.spent_run_micro)} "
                f"total={format_usd(self.spent_total_micro)} {credits}exit={self.exit_code}")


def run_batch(jobs: JobFile, config: RunConfig, *, reporter: Reporter | None = None,
              handle_signals: bool = False) -> RunSummary:
    """Generate every job not yet done into `config.out_dir`, recording all in its
    manifest. Safe to call again with the same jobs: it resumes. Raises LockedError
    when another run holds the folder, OutputError when it cannot be written."""
    return asyncio.run(arun_batch(jobs, config, reporter=reporter,
                                  handle_signals=handle_signals))


async def arun_batch(jobs: JobFile, config: RunConfig, *, reporter: Reporter | None = None,
                     handle_signals: bool = False) -> RunSummary:
    """Run (or resume) a batch; see `run_batch`."""
    out_dir = config.out_dir
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create the output folder {out_dir}: {exc.strerror}") from None
    with FolderLock(out_dir):
        path = out_dir / MANIFEST_NAME
        history = claim(out_dir, replay(path, out_dir / CHECKPOINT_NAME), jobs, config)
        store = ImageStore(out_dir)
        try:
            store.prepare()
            write_invalid(out_dir, jobs)
        except OSError as exc:
            raise OutputError(f"cannot write in {out_dir}: {exc.strerror}") from None
        if history.torn_tail:
            log.warning("%s: skipped its last line, torn by a crash", path)
        with Thumbnailer(out_dir) as thumbnailer:
            return await _run_locked(jobs, config, store, history, thumbnailer,
                                     reporter or Reporter(bar=False), handle_signals)


async def _run_locked(jobs: JobFile, config: RunConfig, store: ImageStore, history: Replay,
                      thumbnailer: Thumbnailer, reporter: Reporter,
                      handle_signals: bool) -> RunSummary:
    path = config.out_dir / MANIFEST_NAME
    if jobs.invalid:
        log.warning("%d invalid row(s) left out (--skip-invalid): see %s", len(jobs.invalid)
                    + jobs.invalid_unlisted, config.out_dir / INVALID_NAME)
    plan = Plan(jobs, history, store, shard=config.shard, limit=config.limit,
                retry_failed=config.retry_failed)
    if jobs.changed():  # the plan reads the validated jobs; the file must still hold them
        raise JobFileError([f"{jobs.path}: changed while batchgen was reading it; nothing "
                            "was sent: run the same command again"])
    if key_exposed(config.base_url):
        log.warning("the API key will be sent unencrypted to %s (plain http)", config.base_url)
    run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{random.getrandbits(24):06x}"
    signals: list[int] = []
    async with ManifestWriter(path) as manifest, Client.open(
        config.base_url, config.api_key, concurrency=config.concurrency, timeout=config.timeout
    ) as client:
        pool = Pool(config, client, manifest, store, reporter, on_image=thumbnailer.submit,
                    on_end=plan.settle)
        remove = _install_signals(pool, config, signals) if handle_signals else None
        try:
            manifest.write(RunStarted(
                run_id=run_id, job_file=str(jobs.path), job_file_sha256=jobs.sha256,
                jobs=len(jobs), version=__version__, simulated=config.simulated,
                settings={**config.public_settings(), **_reading(jobs)},
            ))
            _adopt(manifest, store, plan)
            log.info("%d jobs: %d to run, %d done before, %d failed permanently",
                     plan.universe, plan.to_run, plan.done_before + len(plan.found),
                     plan.permanent_failures)
            if plan.to_run:
                await _unless_stopped(pool, _preflight(pool, client, config, plan.to_run,
                                                       plan.to_run_cost))
            if plan.to_run and not pool.stopping.is_set():
                await _work(pool, plan, reporter, config)
            summary = _summarize(pool, plan, history.extend(path), config, signals, jobs)
            manifest.write(RunFinished(
                run_id=run_id, exit_code=summary.exit_code, reason=summary.reason,
                done=summary.done, failed=summary.failed, pending=summary.pending,
                spent_run=summary.spent_run_micro, spent_total=summary.spent_total_micro,
            ))
        except OutputError as exc:  # the manifest itself cannot be written any more
            log.error("%s", exc)
            pool.stop(StopReason.OUTPUT_ERROR, str(exc))
            summary = _summarize(pool, plan, history.extend(path), config, signals, jobs)
        finally:
            if remove:
                remove()
    save_checkpoint(history.extend(path), config.out_dir / CHECKPOINT_NAME)
    await asyncio.to_thread(thumbnailer.drain)
    try:
        write_reports(config.out_dir, jobs, history)
    except OSError as exc:
        log.error("could not write the reports in %s: %s", config.out_dir, exc.strerror)
    return summary


async def _unless_stopped(pool: Pool, work) -> None:
    """Await `work`, unless the run is stopped (Ctrl-C) first: then cancel it."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(pool.stopping.wait())
    try:
        await asyncio.wait((task, stopped), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.done() and not task.cancelled() and task.exception():
        raise task.exception()


def _reading(jobs: JobFile) -> dict:
    """How the job file was read: recorded, so `status` and `report` read it alike."""
    defaults = jobs.defaults
    return {"aspect_ratio": jobs.default_ratio, "sheet": jobs.sheet, "model": defaults.model,
            "params": defaults.params, "variants": defaults.variants,
            "skip_invalid": bool(jobs.invalid or jobs.invalid_unlisted),
            "price": None if defaults.price_micro is None
            else micro_to_usd(defaults.price_micro)}


def _adopt(manifest: ManifestWriter, store: ImageStore, plan: Plan) -> None:
    """Record images that reached disk in a crashed run but missed their success line.
    Their cost stays with the crashed run, which never recorded it: nothing is
    counted that this run did not see billed."""
    for position, job, state in plan.found:
        first, *extra = state.found
        data = store.read(first)
        log.warning("%s: found its image%s %s from an interrupted run; keeping %s", job.id,
                    "s" if extra else "", ", ".join(state.found), "them" if extra else "it")
        sizes = [len(data), *(store.size(file) for file in extra)]
        manifest.write(Succeeded(
            job_id=job.id, fp=job.fp, prompt=job.prompt, aspect_ratio=job.aspect_ratio,
            model=job.model, params=job.params, metadata=job.metadata, file=first,
            bytes=len(data), sha256=hashlib.sha256(data).hexdigest(),
            files=list(state.found) if extra else None, sizes=sizes if extra else None,
            recovered=True,
        ))
        plan.settle(position, DONE)


async def _preflight(pool: Pool, client: Client, config: RunConfig, jobs_left: int,
                     plan_cost: int) -> None:
    """Check the balance before spending; stop the pool if the run must not start."""
    try:
        balance = await client.credits()
    except FatalApiError as exc:
        if exc.status in (401, 403) or (exc.status or 0) < 400:
            pool.fatal = exc
            pool.stop(StopReason.API_REFUSED, str(exc))
            return
        log.warning("could not check the account balance (%s); going on", exc)
        return
    except ApiError as exc:
        log.warning("could not check the account balance (%s); going on", exc)
        return
    needed = plan_cost
    balance_micro = round(balance * 1_000_000)
    if balance_micro >= needed:
        log.info("balance $%.3f covers the %d jobs to do (%s)", balance, jobs_left,
                 format_usd(needed))
        return
    log.warning("the balance ($%.3f) covers only %d of the %d jobs (%s needed)",
                balance, balance_micro * jobs_left // needed, jobs_left, format_usd(needed))
    if config.require_credits:
        log.error("--require-credits: not starting; top up and rerun the same command")
        pool.stop(StopReason.INSUFFICIENT_CREDITS)


async def _work(pool: Pool, plan: Plan, reporter: Reporter, config: RunConfig) -> None:
    reporter.start(plan.to_run, plan.to_run_cost // max(1, plan.to_run))
    ticker = asyncio.create_task(reporter.tick())
    try:
        await pool.run(plan.items())
    finally:
        ticker.cancel()
        reporter.close()


def _summarize(pool: Pool, plan: Plan, history: Replay, config: RunConfig,
               signals: list[int], jobs: JobFile) -> RunSummary:
    counts = plan.counts()
    reason = pool.stop_reason
    if reason is StopReason.INTERRUPTED:
        exit_code, word = SIGNAL_EXIT_CODES.get(signals[0] if signals else signal.SIGINT,
                                                130), reason.word
    elif reason is not None:
        exit_code, word = reason.exit_code, reason.word
    else:  # --limit: only this run's own jobs count
        failed, left = ((counts["failed"], counts["pending"]) if config.limit is None
                        else (pool.outcomes.failed, pool.outcomes.unfinished))
        invalid = bool(jobs.invalid)
        exit_code = 1 if failed or left or invalid else 0
        word = ("failed" if failed else "incomplete" if left else
                "invalid_rows" if invalid else "completed")
    if pool.stop_message:
        log.error("%s", pool.stop_message)
    return RunSummary(
        exit_code=exit_code, reason=word, done=counts["done"], failed=counts["failed"],
        pending=counts["pending"], spent_run_micro=pool.ledger.spent,
        spent_total_micro=history.spent_micro, done_run=pool.outcomes.done,
        remaining_credits=pool.outcomes.remaining_credits, message=pool.stop_message,
        failures=dict(pool.outcomes.failures.most_common()),
        invalid=len(jobs.invalid) + jobs.invalid_unlisted,
        unanswered_micro=pool.ledger.uncertain,
    )


def _install_signals(pool: Pool, config: RunConfig, received: list[int]):
    """First SIGINT/SIGTERM: stop dispatching, give in-flight requests a grace period.
    Second: cancel them now. Where the loop cannot take signal handlers (Windows), a
    plain `signal.signal` handler hands the signal to the loop instead, so Ctrl-C
    behaves the same (SIGTERM cannot be caught there)."""
    loop = asyncio.get_running_loop()

    def on_signal(signum: int) -> None:
        received.append(signum)
        if len(received) == 1:
            log.warning("%s: finishing the requests in flight (up to %ss; again to cancel "
                        "them)", signal.Signals(signum).name, f"{config.grace_period:g}")
            pool.stop(StopReason.INTERRUPTED)
            loop.call_later(config.grace_period, pool.cancel_in_flight)
        else:
            log.warning("cancelling the requests in flight")
            pool.cancel_in_flight()

    restore: list[tuple[int, object]] = []
    for signum in SIGNAL_EXIT_CODES:
        try:
            loop.add_signal_handler(signum, on_signal, signum)
        except NotImplementedError:
            restore.append((signum, signal.signal(
                signum, lambda number, _: loop.call_soon_threadsafe(on_signal, number))))
        else:
            restore.append((signum, None))

    def remove() -> None:
        for signum, previous in restore:
            if previous is None:
                loop.remove_signal_handler(signum)
            else:
                signal.signal(signum, previous)
    return remove


__all__ = ["RunSummary", "arun_batch", "run_batch"]
