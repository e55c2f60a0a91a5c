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

BASE_COLUMNS = ["id", "prompt", "aspect_ratio", "state", "file", "cost", "attempts", "error",
                "model"]
CHUNK_ROWS = 10_000


def columns_of(jobs: Iterable[Job]) -> tuple[list[str], list[str]]:
    """Every parameter sent (sorted) and every metadata column (first seen first) of
    every job: YAML items, and rows of different models, may differ."""
    params: set[str] = set()
    meta: dict[str, None] = {}
    for job in jobs:
        params.update(name for name in job.params if name != "aspect_ratio")
        for name in job.metadata:
            meta.setdefault(name, None)
    return sorted(params), list(meta)


def results_frame(rows: Sequence[dict[str, Any]], params: Sequence[str],
                  meta: Sequence[str]) -> pd.DataFrame:
    """results.csv as a DataFrame: ours, then the parameters sent, then the metadata. A
    parameter or metadata column named like one before it (say `state`) is written as
    `param.state` or `metadata.state`, so none hides another."""
    import pandas as pd  # here, not at the top: `batchgen --help` need not load it

    sent = [f"param.{name}" if name in BASE_COLUMNS else name for name in params]
    taken = set(BASE_COLUMNS) | set(sent)
    headers = [f"metadata.{name}" if name in taken else name for name in meta]
    records = [
        [csv_text(r["id"]), csv_text(r["prompt"]), r["aspect_ratio"], r["state"], r["file"],
         usd_text(r["cost_micro"]), r["attempts"], csv_text(r["error"]), r["model"],
         *(csv_text(cell(r["params"].get(name))) for name in params),
         *(csv_text(cell(r["metadata"].get(name))) for name in meta)]
        for r in rows
    ]
    return pd.DataFrame(records, columns=BASE_COLUMNS + sent + headers, dtype=object)


def write_results(fh: TextIO, rows: Iterable[dict[str, Any]], params: Sequence[str],
                  meta: Sequence[str]) -> None:
    """results.csv through pandas, CHUNK_ROWS rows at a time."""
    header = True
    for chunk in _chunks(rows, CHUNK_ROWS):
        results_frame(chunk, params, meta).to_csv(fh, index=False, header=header,
                                                  lineterminator="\n")
        header = False
    if header:  # no jobs at all: still a file with its columns
        results_frame([], params, meta).to_csv(fh, index=False, lineterminator="\n")


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk
