"""Reports replayed from the manifest: results.csv (one row per job, file order)
and index.html (a self-contained gallery)."""

from __future__ import annotations

import html
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .config import PRICE_MICRO, micro_to_usd
from .jobs import Job
from .manifest import Replay
from .store import ImageStore

RESULTS_NAME = "results.csv"
INDEX_NAME = "index.html"
BASE_COLUMNS = ["id", "prompt", "aspect_ratio", "state", "file", "cost", "attempts", "error"]


def job_rows(jobs: Sequence[Job], state: Replay, on_disk: set[str]) -> list[dict]:
    rows = []
    for job in jobs:
        record = state.jobs.get(job.id)
        row = {"id": job.id, "prompt": job.prompt, "aspect_ratio": job.aspect_ratio,
               "state": "pending", "file": "", "cost": 0.0, "attempts": 0, "error": ""}
        if record is not None:
            row["cost"] = micro_to_usd(record.cost_micro)
            row["attempts"] = record.attempts
            if record.state == "done" and record.file in on_disk:
                row.update(state="done", file=record.file)
            elif record.state == "failed":
                row.update(state="failed", error=record.error or "")
        rows.append({**row, **job.metadata})
    return rows


def write_reports(out_dir: Path, jobs: Sequence[Job], state: Replay) -> None:
    rows = job_rows(jobs, state, ImageStore(out_dir).existing())
    meta = [c for job in jobs[:1] for c in job.metadata if c not in BASE_COLUMNS]
    frame = pd.DataFrame(rows, columns=BASE_COLUMNS + meta)
    frame.to_csv(out_dir / RESULTS_NAME, index=False)
    (out_dir / INDEX_NAME).write_text(_gallery(rows, state), encoding="utf-8")


def _gallery(rows: list[dict], state: Replay) -> str:
    esc = html.escape
    cards = "\n".join(
        f'<figure><a href="{esc(r["file"])}"><img loading="lazy" src="{esc(r["file"])}" '
        f'alt="{esc(r["prompt"])}"></a><figcaption>{esc(r["prompt"])}<br>'
        f'<small>{esc(r["aspect_ratio"])} · {esc(r["id"])}</small></figcaption></figure>'
        for r in rows if r["state"] == "done"
    )
    problems = "\n".join(
        f"<tr><td>{esc(r['id'])}</td><td>{esc(r['state'])}</td><td>{esc(r['prompt'])}</td>"
        f"<td>{esc(r['error'])}</td></tr>"
        for r in rows if r["state"] != "done"
    )
    done = sum(r["state"] == "done" for r in rows)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>batchgen results</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>body{{font-family:sans-serif;margin:1em}}main{{display:grid;
grid-template-columns:repeat(auto-fill,minmax(180px,1fr));gap:1em}}
img{{width:100%;height:auto}}figure{{margin:0}}</style></head><body>
<h1>batchgen results</h1>
<p>{len(rows)} jobs · {done} done · spent ${micro_to_usd(state.spent_micro):.3f}</p>
<main>{cards}</main>
<table><tr><th>id</th><th>state</th><th>prompt</th><th>error</th></tr>{problems}</table>
</body></html>
"""


def _jobs_of(out_dir: Path, state: Replay) -> tuple[list[Job], str | None]:
    """The jobs of the batch: the job file named by the last run, re-read the same way;
    if it is gone, the jobs the manifest mentions. Second value: a warning, or None."""
    from .errors import JobFileError
    from .jobs import load_jobs

    run = state.last_run or {}
    job_file = run.get("job_file")
    settings = run.get("settings") or {}
    if job_file:
        try:
            return load_jobs(job_file, default_ratio=settings.get("aspect_ratio") or "1:1",
                             sheet=settings.get("sheet")), None
        except JobFileError as exc:
            warning = f"cannot re-read the job file: {exc.problems[0]}"
    else:
        warning = "the manifest names no job file"
    jobs = [Job(job_id, record.prompt or "", record.aspect_ratio or "")
            for job_id, record in state.jobs.items()]
    return jobs, warning + "; listing only the jobs the manifest mentions"


def _load_state(out_dir: Path) -> Replay:
    from .errors import UsageError
    from .manifest import MANIFEST_NAME, replay

    path = out_dir / MANIFEST_NAME
    if not path.exists():
        raise UsageError(f"{out_dir} has no {MANIFEST_NAME}: not a batchgen output folder")
    return replay(path)


def regenerate(out_dir: Path) -> list[Path]:
    """`batchgen report`: rewrite both reports from the manifest."""
    state = _load_state(out_dir)
    jobs, warning = _jobs_of(out_dir, state)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    write_reports(out_dir, jobs, state)
    return [out_dir / RESULTS_NAME, out_dir / INDEX_NAME]


def status(out_dir: Path) -> dict:
    """`batchgen status`: counts by state, money, the last run, what is left."""
    state = _load_state(out_dir)
    jobs, warning = _jobs_of(out_dir, state)
    rows = job_rows(jobs, state, ImageStore(out_dir).existing())
    counts = {s: sum(r["state"] == s for r in rows) for s in ("done", "failed", "pending")}
    run = state.last_run or {}
    finished = run.get("finished") or {}
    price = (run.get("settings") or {}).get("price") or micro_to_usd(PRICE_MICRO)
    left = counts["pending"] + sum(1 for r in rows if r["state"] == "failed")
    return {
        "out_dir": str(out_dir),
        "job_file": run.get("job_file"),
        "jobs": len(rows),
        **counts,
        "spent_total": micro_to_usd(state.spent_micro),
        "last_run": {
            "run_id": run.get("run_id"),
            "started": run.get("ts"),
            "finished": finished.get("ts"),
            "exit_code": finished.get("exit_code"),
            "reason": finished.get("reason") or ("unfinished (killed?)" if run else None),
            "spent": finished.get("spent_run"),
        },
        "left": left,
        "left_cost": round(left * price, 6),
        "warning": warning,
    }


def format_status(info: dict) -> str:
    last = info["last_run"]
    lines = [
        f"{info['out_dir']}: {info['jobs']} jobs from {info['job_file']}",
        f"  done {info['done']}  failed {info['failed']}  pending {info['pending']}",
        f"  spent ${info['spent_total']:.3f} in total"
        + (f", ${last['spent']:.3f} in the last run" if last["spent"] is not None else ""),
        f"  last run {last['run_id']}: {last['started']} → {last['finished'] or '-'}"
        f" ({last['reason']}, exit {last['exit_code']})",
        f"  left: {info['left']} jobs ≈ ${info['left_cost']:.3f}",
    ]
    if info["warning"]:
        lines.append(f"  warning: {info['warning']}")
    return "\n".join(lines)
