"""What a run will do, and what `validate` and `--dry-run` estimate: both ask
`state.job_state` about every job, so they agree with the run and the reports.

    estimate(load_jobs("prompts.csv"), Path("output/prompts"))  # counts and money
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .jobs import Job, JobFile
from .manifest import MANIFEST_NAME, Replay, replay
from .money import PRICE_MICRO, micro_to_usd
from .state import DONE, FAILED, JobState, job_state
from .store import ImageStore


def in_shard(job_id: str, shard: tuple[int, int] | None) -> bool:
    """Whether a job belongs to shard I of N (1-based), by a hash of its id."""
    if shard is None:
        return True
    index, count = shard
    return int(hashlib.sha256(job_id.encode()).hexdigest()[:12], 16) % count == index - 1


@dataclass
class Plan:
    """Which jobs this run attempts, and why the others are left alone."""

    universe: list[Job]  # the jobs of this shard
    to_run: list[tuple[Job, JobState]] = field(default_factory=list)
    found: list[tuple[Job, JobState]] = field(default_factory=list)  # images to adopt
    done_before: int = 0
    permanent_failures: int = 0


def make_plan(jobs: Iterable[Job], history: Replay, store: ImageStore, *,
              shard: tuple[int, int] | None = None, limit: int | None = None,
              retry_failed: bool = False) -> Plan:
    plan = Plan([job for job in jobs if in_shard(job.id, shard)])
    for job in plan.universe:
        state = job_state(job.id, job.fp, history.jobs.get(job.id), store)
        if state.state == DONE:
            plan.done_before += 1
        elif state.found:
            plan.found.append((job, state))
        elif state.state == FAILED and not state.retryable and not retry_failed:
            plan.permanent_failures += 1
        else:
            plan.to_run.append((job, state))
    if limit is not None:
        del plan.to_run[limit:]
    return plan


@dataclass(frozen=True)
class Estimate:
    """A job file's size and price, and what an output folder already holds of it."""

    job_file: str
    jobs: int
    by_ratio: dict[str, int]
    price: float
    cost: float
    out_dir: str
    started: bool  # the folder has a manifest
    done: int
    failed_permanent: int
    left: int
    left_cost: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def estimate(jobs: JobFile, out_dir: Path, price_micro: int = PRICE_MICRO) -> Estimate:
    """Count and price a job file; with an existing output folder, what is left."""
    path = out_dir / MANIFEST_NAME
    plan = make_plan(jobs, replay(path), ImageStore(out_dir))
    left = len(plan.to_run)
    return Estimate(
        job_file=str(jobs.path), jobs=len(jobs),
        by_ratio=dict(sorted(Counter(job.aspect_ratio for job in jobs).items())),
        price=micro_to_usd(price_micro), cost=micro_to_usd(len(jobs) * price_micro),
        out_dir=str(out_dir), started=path.exists(), done=plan.done_before + len(plan.found),
        failed_permanent=plan.permanent_failures, left=left,
        left_cost=micro_to_usd(left * price_micro),
    )
