"""`batchgen status` and `batchgen report`: what an output folder holds, replayed
from its manifest and the job file its last run named."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from .checkpoint import CHECKPOINT_NAME
from .config import MODEL
from .errors import JobFileError, UsageError, failure_cause
from .gallery import when
from .jobs import Job, JobFile, load_jobs
from .lock import running_pid
from .manifest import MANIFEST_NAME, Replay, read_events, replay
from .money import format_usd, micro_to_usd, usd_to_micro
from .reports import INDEX_NAME, RESULTS_NAME, is_left, job_rows, write_reports
from .store import ImageStore

MAX_CAUSES = 10  # failure causes listed one by one; the rest are counted


def load_history(out_dir: Path) -> Replay:
    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        raise UsageError(f"{out_dir} has no {MANIFEST_NAME}: not a batchgen output folder")
    return replay(path, out_dir / CHECKPOINT_NAME)


def jobs_of(out_dir: Path, history: Replay) -> tuple[JobFile | list[Job], list[str]]:
    """The jobs of the batch: the job file named by the last run, read the same way;
    if it is gone, the jobs the manifest mentions. Second value: warnings."""
    run = history.last_run
    started = run["started"] if run else None
    if started and started.job_file:
        settings = started.settings or {}
        try:
            price = settings.get("price") if settings.get("model") else None
            jobs = load_jobs(started.job_file, default_ratio=settings.get("aspect_ratio") or "1:1",
                             sheet=settings.get("sheet"), model=settings.get("model") or MODEL,
                             params=settings.get("params") or {},
                             variants=settings.get("variants") or 1,
                             skip_invalid=bool(settings.get("skip_invalid")),
                             price_micro=None if price is None else usd_to_micro(price))
        except JobFileError as exc:
            warning = f"cannot re-read the job file: {exc.problems[0]}"
        else:
            if started.job_file_sha256 and started.job_file_sha256 != jobs.sha256:
                return jobs, [f"{started.job_file} changed since the last run: "
                              "counting the jobs it holds now"]
            return jobs, []
    else:
        warning = "the manifest names no job file"
    return _manifest_jobs(out_dir / MANIFEST_NAME, history), [
        warning + "; listing only the jobs the manifest mentions"]


def _manifest_jobs(path: Path, history: Replay) -> list[Job]:
    """Every job the manifest mentions, in order of first mention, with the prompt,
    ratio, metadata, model and parameters of its latest line that has them."""
    known: dict[str, dict[str, Any]] = {}
    for _, event in read_events(path):
        job_id = getattr(event, "job_id", None)
        if job_id is None:
            continue
        entry = known.setdefault(job_id, {})
        for key in ("prompt", "aspect_ratio", "metadata", "model", "params"):
            if getattr(event, key, None) is not None:
                entry[key] = getattr(event, key)
    return [Job(id=job_id, prompt=entry.get("prompt", ""),
                aspect_ratio=entry.get("aspect_ratio", ""), metadata=entry.get("metadata") or {},
                model=entry.get("model") or MODEL, params=entry.get("params") or {},
                fp=history.jobs[job_id].fp or "")
            for job_id, entry in known.items() if job_id in history.jobs]


def regenerate(out_dir: Path) -> tuple[list[Path], list[str]]:
    """`batchgen report`: rewrite both reports; the files, and warnings."""
    history = load_history(out_dir)
    jobs, warnings = jobs_of(out_dir, history)
    write_reports(out_dir, jobs, history)
    return [out_dir / RESULTS_NAME, out_dir / INDEX_NAME], warnings


def status(out_dir: Path) -> dict[str, Any]:
    """`batchgen status`: counts by state, money, the last run, what is left."""
    history = load_history(out_dir)
    jobs, warnings = jobs_of(out_dir, history)
    counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    causes: Counter[str] = Counter()
    retryable = left = left_cost = 0
    for row in job_rows(jobs, history, ImageStore(out_dir)):
        counts[row["state"]] += 1
        if is_left(row):
            left += 1
            left_cost += row["price_micro"]
        if row["state"] == "pending":
            reasons[row["reason"]] += 1
        elif row["state"] == "failed":
            retryable += row["retryable"]
            record = history.jobs.get(row["id"])
            causes[failure_cause(record.status if record else None, row["error"])] += 1
    run = history.last_run
    started = run["started"] if run else None
    finished = run["finished"] if run else None
    running = running_pid(out_dir) if run and not finished else None
    if len(history.bad_lines) > int(history.torn_tail):
        warnings.append(f"{len(history.bad_lines)} unreadable manifest line(s) skipped "
                        f"(line {history.bad_lines[0]}…)")
    return {
        "out_dir": str(out_dir),
        "job_file": started.job_file if started else None,
        "simulated": bool(started and started.simulated),
        "jobs": sum(counts.values()),
        "done": counts["done"],
        "failed": counts["failed"],
        "pending": counts["pending"],
        "failed_retryable": retryable,
        "failed_permanent": counts["failed"] - retryable,
        "pending_reasons": dict(reasons),
        "failure_causes": dict(causes.most_common()),
        "spent_total": micro_to_usd(history.spent_micro),
        "spent_last_run": micro_to_usd(run["spent_micro"]) if run else 0.0,
        "runs": len(history.runs),
        "last_run": {
            "run_id": started.run_id if started else None,
            "started": started.ts if started else None,
            "finished": finished.ts if finished else None,
            "exit_code": finished.exit_code if finished else None,
            "reason": finished.reason if finished else (
                None if not run else "running" if running else "unfinished (killed?)"),
            "running_pid": running,
        },
        "left": left,
        "left_cost": micro_to_usd(left_cost),
        "warnings": warnings,
    }


def cause_lines(causes: dict[str, int], limit: int = MAX_CAUSES) -> list[str]:
    """Failures grouped by cause, most common first, one line each ('  10 × 400 prompt
    flagged'); past `limit` causes, one line says how many more."""
    ranked = sorted(causes.items(), key=lambda item: -item[1])
    width = len(str(ranked[0][1])) if ranked else 1
    lines = [f"  {count:>{width}} × {cause}" for cause, count in ranked[:limit]]
    rest = ranked[limit:]
    if rest:
        jobs = sum(count for _, count in rest)
        lines.append(f"  … and {len(rest)} more cause{'s' * (len(rest) != 1)} "
                     f"({jobs} job{'s' * (jobs != 1)})")
    return lines


def format_status(info: dict[str, Any]) -> str:
    """`batchgen status` for people."""
    last = info["last_run"]

    def money(usd: float) -> str:
        return format_usd(usd_to_micro(usd))

    failed = f"failed {info['failed']}"
    if info["failed"]:
        failed += (f" ({info['failed_retryable']} retried next run, "
                   f"{info['failed_permanent']} need --retry-failed)")
    pending = f"pending {info['pending']}"
    if info["pending_reasons"]:
        pending += " (" + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n
                                    in sorted(info["pending_reasons"].items())) + ")"
    simulated = " (simulated: placeholder images, no money)" if info["simulated"] else ""
    lines = [
        f"{info['out_dir']}: {info['jobs']} jobs from {info['job_file'] or '?'}{simulated}",
        f"  done {info['done']}  {failed}  {pending}",
        f"  spent {money(info['spent_total'])} in total over {info['runs']} "
        f"run{'s' if info['runs'] != 1 else ''}, {money(info['spent_last_run'])} in the last",
    ]
    if info["failure_causes"]:
        lines.append("  failures by cause:")
        lines += ["  " + line for line in cause_lines(info["failure_causes"])]
    if last["run_id"]:
        end = when(last["finished"], seconds=True)
        exit_code = "" if last["exit_code"] is None else f", exit {last['exit_code']}"
        pid = f", pid {last['running_pid']}" if last["running_pid"] else ""
        lines.append(f"  last run {last['run_id']}: {when(last['started'], seconds=True)} → "
                     f"{end} ({last['reason']}{exit_code}{pid})")
    lines.append(f"  left: {info['left']} jobs ≈ {money(info['left_cost'])}")
    lines += [f"  warning: {w}" for w in info["warnings"]]
    return "\n".join(lines)
