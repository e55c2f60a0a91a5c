"""results.csv: one row per job of the job file, in file order, written through
pandas a chunk of rows at a time so a million jobs take flat memory."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from .jobs import Job
from .money import usd_text
from .reports import cell, csv_text

if TYPE_CHECKING:
    import pandas as pd

BASE_COLUMNS = ["id", "prompt", "aspect_ratio", "state", "file", "cost", "attempts", "error"]
CHUNK_ROWS = 10_000


def metadata_columns(jobs: Iterable[Job]) -> list[str]:
    """Every metadata column of every job (YAML items may differ), first seen first."""
    seen: dict[str, None] = {}
    for job in jobs:
        for name in job.metadata:
            seen.setdefault(name, None)
    return list(seen)


def results_frame(rows: Sequence[dict[str, Any]], meta: Sequence[str]) -> pd.DataFrame:
    """results.csv as a DataFrame. A metadata column named like one of ours (say
    `state`) is written as `metadata.state` so neither hides the other."""
    import pandas as pd  # here, not at the top: `batchgen --help` need not load it

    headers = [f"metadata.{name}" if name in BASE_COLUMNS else name for name in meta]
    records = [
        [csv_text(r["id"]), csv_text(r["prompt"]), r["aspect_ratio"], r["state"], r["file"],
         usd_text(r["cost_micro"]), r["attempts"], csv_text(r["error"]),
         *(csv_text(cell(r["metadata"].get(name))) for name in meta)]
        for r in rows
    ]
    return pd.DataFrame(records, columns=BASE_COLUMNS + headers, dtype=object)


def write_results(fh: TextIO, rows: Iterable[dict[str, Any]], meta: Sequence[str]) -> None:
    """results.csv through pandas, CHUNK_ROWS rows at a time."""
    header = True
    for chunk in _chunks(rows, CHUNK_ROWS):
        results_frame(chunk, meta).to_csv(fh, index=False, header=header, lineterminator="\n")
        header = False
    if header:  # no jobs at all: still a file with its columns
        results_frame([], meta).to_csv(fh, index=False, lineterminator="\n")


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
