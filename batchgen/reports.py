"""The reports a run leaves behind, replayed from the manifest: results.csv (one
row per job, file order) and index.html (a self-contained gallery). Both are a
pure function of the manifest, the job file and the images on disk, so
`batchgen report DIR` rebuilds exactly what the end of a run wrote.

A job's state here is `state.job_state`: the state the next run would act on.
"""

from __future__ import annotations

import contextlib
import csv
import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TextIO

from .jobs import Job, JobFile
from .manifest import Replay
from .state import DONE, FAILED, PENDING, job_state
from .store import ImageStore

RESULTS_NAME = "results.csv"
INDEX_NAME = "index.html"
INVALID_NAME = "invalid.csv"


def job_rows(jobs: Iterable[Job], history: Replay, store: ImageStore) -> Iterator[dict[str, Any]]:
    """One dict per job in file order: id, prompt, aspect_ratio, state, file,
    cost_micro, attempts, error, metadata, reason and retryable. A generator: the
    reports walk it several times rather than hold a million dicts."""
    for job, record in _with_records(jobs, history):
        state = job_state(job, record, store)
        error = ""
        if state.state == FAILED:
            error = record.error if record else ""
        elif state.state == PENDING and state.reason != "never_tried":
            error = state.words()
        yield {
            "id": job.id, "prompt": job.prompt, "aspect_ratio": job.aspect_ratio,
            "state": state.state,
            "file": record.file if state.state == DONE and record else "",
            "cost_micro": record.cost_micro if record else 0,
            "attempts": record.attempts if record else 0,
            "error": error, "metadata": job.metadata, "reason": state.reason,
            "retryable": state.retryable, "model": job.model, "params": job.params,
            "price_micro": job.price,
            "files": (record.files or [record.file]) if state.state == DONE and record else [],
        }


def is_left(row: dict[str, Any]) -> bool:
    """Whether the next run pays for this job: pending (unless its image was found)
    or failed in a way that is tried again."""
    return (row["state"] == PENDING and row["reason"] != "found") or row["retryable"]


def _with_records(jobs: Iterable[Job], history: Replay) -> Iterator[tuple[Job, Any]]:
    """Each job with its manifest record, looked up a chunk of jobs at a time."""
    chunks = jobs.chunks() if isinstance(jobs, JobFile) else _chunked(jobs)
    for chunk in chunks:
        yield from zip(chunk, history.jobs.get_many([job.id for job in chunk]), strict=True)


def _chunked(jobs: Iterable[Job], size: int = 10_000) -> Iterator[list[Job]]:
    iterator = iter(jobs)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def cell(value: Any) -> str:
    """A metadata value as text: YAML and JSONL may carry numbers, lists or null."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def csv_text(value: str) -> str:
    """Text for a CSV cell: Python 3.10's csv module cannot write a NUL character
    (ids and prompts may hold one), so it is shown as U+FFFD."""
    return value.replace("\x00", "\ufffd") if "\x00" in value else value


def write_atomically(path: Path, write: Callable[[TextIO], None]) -> None:
    """Readers (a browser, a script) never see half a report, and a failed write
    leaves no temporary file behind."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "w", encoding="utf-8", newline="") as fh:
            write(fh)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise


def write_reports(out_dir: Path, jobs: Iterable[Job], history: Replay) -> None:
    """Write results.csv and index.html, each streamed a chunk of rows at a time."""
    from .gallery import write_gallery
    from .results import columns_of, write_results
    from .thumbs import Thumbnails

    store = ImageStore(out_dir)
    thumbs = Thumbnails(out_dir)  # makes the thumbnails missing or older than their image

    def rows() -> Iterator[dict[str, Any]]:
        return job_rows(jobs, history, store)

    params, meta = ((jobs.param_columns, jobs.metadata_columns) if isinstance(jobs, JobFile)
                    else columns_of(jobs))
    write_atomically(out_dir / RESULTS_NAME,
                     lambda fh: write_results(fh, rows(), params, meta))
    write_atomically(out_dir / INDEX_NAME,
                     lambda fh: write_gallery(fh, rows, history, thumbs.ensure))


def write_invalid(out_dir: Path, jobs: JobFile) -> None:
    """invalid.csv: the rows `--skip-invalid` left out, with their place and problem;
    removed once the job file has none."""
    path = out_dir / INVALID_NAME
    if not jobs.invalid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return

    def write(fh: TextIO) -> None:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["row", "column", "error"])
        writer.writerows([csv_text(text) for text in row] for row in jobs.invalid)
        if jobs.invalid_unlisted:
            writer.writerow(["", "", f"... and {jobs.invalid_unlisted} more problems"])

    write_atomically(path, write)
