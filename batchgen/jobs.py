"""Job files → a list of validated `Job`s, or a `JobFileError` listing every problem.

Formats by extension: .csv (delimiter sniffed), .tsv/.tab (no quote processing),
.txt (a prompt a line), .xlsx, .yaml/.yml, .jsonl. Tables are read by pandas as
strings, so "NULL", "None", "nan", "0" and "TRUE" are prompts like any other.
YAML is read without implicit typing, so `16:9` stays "16:9" (YAML 1.1 would
make it the base-60 integer 969) and `007` stays "007".
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from .config import ASPECT_RATIOS, DEFAULT_ASPECT_RATIO, MAX_PROMPT_CHARS, MODEL
from .errors import JobFileError

SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".xlsx", ".yaml", ".yml", ".jsonl")
MAX_REPORTED_PROBLEMS = 200
_ALIASES = {"ratio": "aspect_ratio", "aspectratio": "aspect_ratio"}
_ALLOWED = ", ".join(ASPECT_RATIOS)
# "16:9", "16 : 9", "16x9", "16/9" - and Excel's reading of 16:9 as the time 16:09:00
_RATIO_SPELLING = re.compile(r"^\s*(\d{1,2})\s*[:xX×/]\s*(\d{1,2})(?::00)?\s*$")


@dataclass(frozen=True, slots=True)
class Job:
    """One image to generate. `id` is stable across runs (SPEC §2)."""

    id: str
    prompt: str
    aspect_ratio: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where it came from: "row 14", "item 3", "line 5"


def canonical_ratio(value: str) -> str | None:
    """'16 : 9', '16x9' and '16:09:00' → '16:9'; None when it is no allowed ratio."""
    if value in ASPECT_RATIOS:
        return value
    match = _RATIO_SPELLING.match(value)
    if match:
        ratio = f"{int(match[1])}:{int(match[2])}"
        if ratio in ASPECT_RATIOS:
            return ratio
    return None


def content_id(prompt: str, aspect_ratio: str, occurrence: int) -> str:
    """The id of a job without a user id: same content, same id; the n-th copy gets '-n'."""
    digest = hashlib.sha256(f"{MODEL}\n{aspect_ratio}\n{prompt}".encode()).hexdigest()[:16]
    return digest if occurrence == 1 else f"{digest}-{occurrence}"


def normalize_column(name: str) -> str:
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    return _ALIASES.get(key, key)


# -- readers: each yields (location, {original column name: value}) -----------------


class _Problems:
    """Collects problems as 'file location, column: message' lines."""

    def __init__(self, name: str):
        self.name = name
        self.lines: list[str] = []

    def add(self, location: str | None, column: str | None, message: str) -> None:
        where = self.name + (f" {location}" if location else "")
        self.lines.append(f"{where}, {column}: {message}" if column else f"{where}: {message}")

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        shown = self.lines[:MAX_REPORTED_PROBLEMS]
        if len(self.lines) > len(shown):
            shown.append(f"... and {len(self.lines) - len(shown)} more problems")
        raise JobFileError(shown)


def _read_text(path: Path, problems: _Problems) -> str:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problems.add(f"line {line}", None,
                     f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start});"
                     " save the file as UTF-8 (in Excel: 'CSV UTF-8')")
        problems.raise_if_any()
    if not text.strip():
        problems.add(None, None, "the file is empty")
        problems.raise_if_any()
    return text


def _sniff_delimiter(text: str) -> str:
    header = text.split("\n", 1)[0]
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _table_rows(frame: pd.DataFrame) -> Iterator[tuple[str, dict[str, Any]]]:
    columns = [str(c) for c in frame.columns]
    for number, values in enumerate(frame.itertuples(index=False, name=None), start=2):
        yield f"row {number}", dict(zip(columns, values, strict=False))


def _read_table(path: Path, suffix: str, sheet: str | None, problems: _Problems) -> pd.DataFrame:
    options: dict[str, Any] = {"dtype": str, "keep_default_na": False, "na_filter": False}
    try:
        if suffix == ".xlsx":
            try:
                return pd.read_excel(path, sheet_name=sheet or 0, engine="openpyxl", **options)
            except ValueError as exc:  # unknown sheet name
                problems.add(None, None, str(exc))
                problems.raise_if_any()
        text = _read_text(path, problems)
        if suffix in (".tsv", ".tab"):
            options.update(sep="\t", quoting=csv.QUOTE_NONE)
        else:
            options.update(sep=_sniff_delimiter(text))
        return pd.read_csv(io.StringIO(text), **options)
    except pd.errors.ParserError as exc:
        problems.add(None, None, f"cannot be read as a table: {exc}".rstrip())
    except (OSError, pd.errors.EmptyDataError, KeyError) as exc:
        problems.add(None, None, f"cannot be read: {exc}")
    except Exception as exc:  # openpyxl's zip and XML errors have no common base
        problems.add(None, None, f"cannot be read as an Excel workbook: {exc}")
    problems.raise_if_any()
    raise AssertionError("unreachable")


def _lines_rows(text: str) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield f"line {number}", {"prompt": line}


def _jsonl_rows(text: str, problems: _Problems) -> Iterator[tuple[str, dict[str, Any]]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            problems.add(f"line {number}", None, f"not valid JSON ({exc.msg})")
            continue
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict):
            problems.add(f"line {number}", None, "must be a JSON object or a string")
            continue
        yield f"line {number}", item


def _yaml_rows(
    text: str, problems: _Problems
) -> tuple[Iterable[tuple[str, dict[str, Any]]], dict[str, Any]]:
    """Rows and the `defaults` mapping. BaseLoader: every scalar stays a string."""
    try:
        document = yaml.load(text, Loader=yaml.BaseLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problems.add(where, None, f"not valid YAML: {getattr(exc, 'problem', exc)}")
        return [], {}
    defaults: Any = {}
    if isinstance(document, dict):
        unknown = set(document) - {"defaults", "jobs"}
        if unknown or "jobs" not in document:
            problems.add(None, None, "a YAML mapping must have a 'jobs' list (and optional "
                         f"'defaults'); found keys: {', '.join(map(str, document))}")
            return [], {}
        defaults, document = document.get("defaults") or {}, document["jobs"]
        if not isinstance(defaults, dict):
            problems.add("defaults", None, "must be a mapping such as {aspect_ratio: '16:9'}")
            defaults = {}
    if not isinstance(document, list):
        problems.add(None, None, "must be a list of jobs, or a mapping with 'jobs' and 'defaults'")
        return [], {}
    rows = []
    for number, item in enumerate(document, start=1):
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict):
            problems.add(f"item {number}", None, "must be a prompt string or a mapping")
            continue
        rows.append((f"item {number}", item))
    return rows, {normalize_column(k): v for k, v in defaults.items()}


# -- validation ----------------------------------------------------------------------


def _columns(names: Iterable[str], problems: _Problems, location: str | None) -> dict[str, str]:
    """Map normalized names to the original ones, flagging clashes."""
    mapping: dict[str, str] = {}
    for original in names:
        key = normalize_column(original)
        if key in mapping:
            problems.add(location, original, f"same column as {mapping[key]!r}")
        else:
            mapping[key] = original
    return mapping


def load_jobs(
    path: str | Path, *, default_ratio: str = DEFAULT_ASPECT_RATIO, sheet: str | None = None
) -> list[Job]:
    """Read and validate a job file. Raises JobFileError naming every problem found."""
    path = Path(path)
    problems = _Problems(str(path))
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        problems.add(None, None, f"unsupported file type {suffix or '(none)'!r}; "
                     f"use one of {', '.join(SUFFIXES)}")
    elif not path.is_file():
        problems.add(None, None, "no such file" if not path.exists() else "not a file")
    problems.raise_if_any()
    if canonical_ratio(default_ratio) is None:
        raise JobFileError([f"--aspect-ratio {default_ratio!r} is not one of {_ALLOWED}"])

    defaults: dict[str, Any] = {}
    table = suffix in (".csv", ".tsv", ".tab", ".xlsx")
    if table:
        frame = _read_table(path, suffix, sheet, problems)
        header = _columns(frame.columns, problems, "row 1")
        if "prompt" not in header:
            found = ", ".join(repr(str(c)) for c in frame.columns) or "none"
            problems.add("row 1", None, f"no 'prompt' column; columns found: {found}")
        elif frame.empty:
            problems.add(None, None, "has a header but no jobs")
        problems.raise_if_any()
        rows: Iterable[tuple[str, dict[str, Any]]] = _table_rows(frame)
    elif suffix == ".txt":
        rows = _lines_rows(_read_text(path, problems))
    elif suffix == ".jsonl":
        rows = _jsonl_rows(_read_text(path, problems), problems)
    else:
        rows, defaults = _yaml_rows(_read_text(path, problems), problems)

    fallback = canonical_ratio(default_ratio)
    if "aspect_ratio" in defaults:
        fallback = _ratio(str(defaults["aspect_ratio"]), fallback, problems, "defaults")
    jobs = _validate(rows, fallback, problems, same_header=table)
    problems.raise_if_any()
    if not jobs:
        problems.add(None, None, "has no jobs")
        problems.raise_if_any()
    return jobs


def _ratio(value: str, fallback: str, problems: _Problems, location: str) -> str:
    value = value.strip()
    if not value:
        return fallback
    ratio = canonical_ratio(value)
    if ratio is None:
        problems.add(location, "aspect_ratio", f"{value!r} is not one of {_ALLOWED}")
        return fallback
    return ratio


def _validate(
    rows: Iterable[tuple[str, dict[str, Any]]],
    fallback: str,
    problems: _Problems,
    *,
    same_header: bool,
) -> list[Job]:
    """Check every row; build Jobs with stable ids. Tables share one header;
    YAML and JSONL items each bring their own keys."""
    jobs: list[Job] = []
    occurrences: Counter[tuple[str, str]] = Counter()
    first_seen: dict[str, str] = {}
    header: dict[str, str] | None = None
    for location, row in rows:
        if header is None or not same_header:
            header = _columns(row.keys(), problems, location)
            meta_columns = [c for k, c in header.items()
                            if k not in ("prompt", "aspect_ratio", "id")]
        prompt_value = row.get(header["prompt"]) if "prompt" in header else None
        if not isinstance(prompt_value, str):
            problems.add(location, "prompt", "missing" if prompt_value is None
                         else f"must be text, not {type(prompt_value).__name__}")
            continue
        prompt = prompt_value.strip()
        if not prompt:
            problems.add(location, "prompt", "is empty")
            continue
        if len(prompt) > MAX_PROMPT_CHARS:
            problems.add(location, "prompt",
                         f"is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed")
            continue
        raw_ratio = row.get(header["aspect_ratio"], "") if "aspect_ratio" in header else ""
        ratio = _ratio(str(raw_ratio), fallback, problems, location)
        user_id = str(row.get(header["id"], "")).strip() if "id" in header else ""
        if user_id:
            if user_id in first_seen:
                problems.add(location, "id",
                             f"{user_id!r} is used twice: {first_seen[user_id]} and {location}")
                continue
            job_id = user_id
        else:
            occurrences[(prompt, ratio)] += 1
            job_id = content_id(prompt, ratio, occurrences[(prompt, ratio)])
        first_seen[job_id] = location
        metadata = {c: row[c] for c in meta_columns} if meta_columns else {}
        jobs.append(Job(job_id, prompt, ratio, metadata, location))
    return jobs
