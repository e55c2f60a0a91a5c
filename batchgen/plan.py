"""What a run will do with each job, and what `validate` and `--dry-run` estimate:
both ask `state.job_state` about every job, so they agree with the run and the
reports.

A plan reads the job file twice, a chunk at a time, and keeps a byte per job: a
survey notes each job's state and whether to run it, then `items` reads the jobs
again and hands the ones to run to the pool as it asks for them. The pool notes
how each ended (`settle`), so the run's counts are those bytes tallied.

    estimate(load_jobs("prompts.csv"), Path("output/prompts"))  # counts and money
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .jobs import Job, JobFile
from .manifest import MANIFEST_NAME, Replay, replay
from .money import micro_to_usd
from .state import DONE, DONE_STATE, FAILED, PENDING, JobState, job_state
from .store import ImageStore

CODES = {DONE: 0, FAILED: 1, PENDING: 2}
OUTSIDE = 3  # not in this run's shard
RUN = 4  # a flag on the code: this run tries the job


def in_shard(job_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether a job belongs to shard I of N (1-based), by a hash of its id."""
    if shard is None:
        return True
    index, count = shard
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:12], 16) % count == index - 1


class Plan:
    """Which jobs of the shard this run attempts, and why it leaves the others alone."""

    def __init__(self, jobs: JobFile, history: Replay, store: ImageStore, *,
                 shard: tuple[int, int] | None = None, limit: int | None = None,
                 retry_failed: bool = False):
        self.jobs, self.history, self.store = jobs, history, store
        self.codes = bytearray()  # per job in file order: a CODES value, or OUTSIDE; | RUN
        self.found: list[tuple[int, Job, JobState]] = []  # images a crash left unrecorded
        self.universe = self.done_before = self.permanent_failures = self.to_run = 0
        self.to_run_cost = 0  # micro-dollars: one request of each job to run
        self._survey(shard, limit, retry_failed)

    def _states(self) -> Iterator[tuple[Job, JobState]]:
        """Each job's state, in file order. A success of the job's current content
        whose image is on disk at its recorded size is done (as `job_state` says) after
        one `stat`; only the other jobs' records are built."""
        records, store = self.history.jobs, self.store
        for chunk in self.jobs.chunks():
            ids = [job.id for job in chunk]
            quick = records.done_sizes(ids, [job.fp for job in chunk])
            full = None
            for i, (job, done) in enumerate(zip(chunk, quick, strict=True)):
                if done is not None and store.size(done[0]) == done[1]:
                    yield job, DONE_STATE
                    continue
                if full is None:
                    full = records.get_many(ids)
                yield job, job_state(job, full[i], store)

    def _survey(self, shard: tuple[int, int] | None, limit: int | None,
                retry_failed: bool) -> None:
        codes = self.codes
        for position, (job, state) in enumerate(self._states()):
            if shard is not None and not in_shard(job.id, shard):
                codes.append(OUTSIDE)
                continue
            self.universe += 1
            code = CODES[state.state]
            if state.state == DONE:
                self.done_before += 1
            elif state.found:
                self.found.append((position, job, state))
            elif state.state == FAILED and not state.retryable and not retry_failed:
                self.permanent_failures += 1
            elif limit is None or self.to_run < limit:
                self.to_run += 1
                self.to_run_cost += job.price
                code |= RUN
            codes.append(code)

    def items(self) -> Iterator[tuple[int, Job, JobState]]:
        """(position, job, state) of each job to run, in file order, read as needed."""
        position = 0
        for chunk in self.jobs.chunks():
            end = position + len(chunk)
            if any(code & RUN for code in self.codes[position:end]):
                records = self.history.jobs.get_many([job.id for job in chunk])
                for offset, (job, record) in enumerate(zip(chunk, records, strict=True)):
                    if self.codes[position + offset] & RUN:
                        yield position + offset, job, job_state(job, record, self.store)
            position = end

    def settle(self, position: int, state: str) -> None:
        """How a job ended in this run: done, failed or pending."""
        self.codes[position] = CODES[state] | (self.codes[position] & RUN)

    def counts(self) -> dict[str, int]:
        """Jobs of the shard by state, as they stand now."""
        tally = [0] * 4
        for code in self.codes:
            tally[code & 3] += 1
        return {DONE: tally[0], FAILED: tally[1], PENDING: tally[2]}


@dataclass(frozen=True)
class Estimate:
    """A job file's size and price, and what an output folder already holds of it."""

    job_file: str
    jobs: int
    by_ratio: dict[str, int]
    by_model: dict[str, int]
    cost: float  # one request of every job
    out_dir: str
    started: bool  # the folder has a manifest
    done: int
    failed_permanent: int
    left: int
    left_cost: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(jobs: JobFile, out_dir: Path) -> Estimate:
    """Count and price a job file (each job at its model's price); with an existing
    output folder, what is left."""
    from .checkpoint import CHECKPOINT_NAME

    path = out_dir / MANIFEST_NAME
    started = path.exists()
    if started:
        plan = Plan(jobs, replay(path, out_dir / CHECKPOINT_NAME), ImageStore(out_dir))
        done, permanent, left, left_cost = (plan.done_before + len(plan.found),
                                            plan.permanent_failures, plan.to_run,
                                            plan.to_run_cost)
    else:  # nothing done yet: no need to read the jobs again
        done, permanent, left, left_cost = 0, 0, len(jobs), jobs.cost_micro
    return Estimate(
        job_file=str(jobs.path), jobs=len(jobs), by_ratio=dict(sorted(jobs.ratios.items())),
        by_model=dict(jobs.models), cost=micro_to_usd(jobs.cost_micro), out_dir=str(out_dir),
        started=started, done=done, failed_permanent=permanent, left=left,
        left_cost=micro_to_usd(left_cost),
    )


__all__ = ["Estimate", "Plan", "estimate", "in_shard"]
