"""Job files → a list of validated `Job`s, or a `JobFileError` listing every problem.

Formats by extension: .csv (delimiter sniffed), .tsv/.tab (no quote processing),
.txt (a prompt a line), .xlsx, .yaml/.yml, .jsonl. Tables are read by pandas as
strings, so "NULL", "None", "nan", "0" and "TRUE" are prompts like any other.
YAML is read without implicit typing, so `16:9` stays "16:9" (YAML 1.1 would
make it the base-60 integer 969) and `007` stays "007".

Every problem is collected with its place (file, row/item/line, column) and all
of them are raised together, so the user fixes the file in one go and no
request is ever sent for a file that is partly wrong.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime
import gc
import hashlib
import io
import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import pandas as pd
import yaml

from .config import ASPECT_RATIOS, DEFAULT_ASPECT_RATIO, MAX_PROMPT_CHARS, MODEL
from .errors import JobFileError

SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".xlsx", ".yaml", ".yml", ".jsonl")
TABLE_SUFFIXES = (".csv", ".tsv", ".tab", ".xlsx")
MAX_REPORTED_PROBLEMS = 200
RESERVED_COLUMNS = ("prompt", "aspect_ratio", "id")
_ALIASES = {"ratio": "aspect_ratio", "aspectratio": "aspect_ratio"}
_ALLOWED = ", ".join(ASPECT_RATIOS)
# "16:9", "16 : 9", "16x9", "16/9" - and Excel's reading of 16:9 as the time 16:09:00
_RATIO_SPELLING = re.compile(r"^\s*(\d{1,2})\s*[:xX×/]\s*(\d{1,2})(?::00)?\s*$")
# CBaseLoader is libyaml's fast parser with the same "every scalar is a string" rules.
_YAML_LOADER = getattr(yaml, "CBaseLoader", yaml.BaseLoader)

Row = tuple[str, dict[str, Any]]  # (location such as "row 14", {original column: value})


_NO_METADATA: dict[str, Any] = {}  # shared by every job without metadata: never mutated


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
    digest = _digest(prompt, aspect_ratio)
    return digest if occurrence == 1 else f"{digest}-{occurrence}"


def normalize_column(name: str) -> str:
    """'Aspect Ratio', 'aspect-ratio' and 'ratio' all name the column 'aspect_ratio'."""
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    return _ALIASES.get(key, key)


class _Problems:
    """Collects problems as 'file location, column: message' lines."""

    def __init__(self, name: str):
        self.name = name
        self.lines: list[str] = []
        self.unshown = 0  # problems past MAX_REPORTED_PROBLEMS: counted, not kept

    def add(self, location: str | None, column: str | None, message: str) -> None:
        if len(self.lines) >= MAX_REPORTED_PROBLEMS:
            self.unshown += 1
            return
        where = self.name + (f" {location}" if location else "")
        self.lines.append(f"{where}, {column}: {message}" if column else f"{where}: {message}")

    def fail(self, location: str | None, column: str | None, message: str) -> NoReturn:
        """Add a problem that makes reading further pointless, and raise them all."""
        self.add(location, column, message)
        self.raise_if_any()
        raise AssertionError("unreachable")

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        more = [f"... and {self.unshown} more problems"] if self.unshown else []
        raise JobFileError(self.lines + more)


# -- the entry point -----------------------------------------------------------------


def load_jobs(
    path: str | Path, *, default_ratio: str = DEFAULT_ASPECT_RATIO, sheet: str | None = None
) -> list[Job]:
    """Read and validate a job file. Raises JobFileError naming every problem found."""
    path = Path(path)
    suffix = path.suffix.lower()
    problems = _Problems(f"{path} (sheet {sheet!r})" if sheet and suffix == ".xlsx"
                         else str(path))
    _check_path(path, suffix, problems)
    fallback = canonical_ratio(default_ratio)
    if fallback is None:
        raise JobFileError([f"--aspect-ratio {default_ratio!r} is not one of {_ALLOWED}"])

    header: dict[str, str] | None = None  # tables: one header for every row
    rows: Iterable[Row]
    if suffix in TABLE_SUFFIXES:
        header, rows = _read_table(path, suffix, sheet, problems)
    elif suffix == ".txt":
        rows = _txt_rows(_read_text(path, problems))
    elif suffix == ".jsonl":
        rows = _jsonl_rows(_read_text(path, problems), problems)
    else:
        rows, yaml_ratio = _yaml_rows(_read_text(path, problems), problems)
        fallback = _ratio(yaml_ratio, fallback, problems, "defaults", "aspect_ratio")

    jobs = _validate(rows, fallback, problems, header)
    problems.raise_if_any()
    if not jobs:
        problems.fail(None, None, "has a header but no jobs" if header else "has no jobs")
    return jobs


def _check_path(path: Path, suffix: str, problems: _Problems) -> None:
    if suffix not in SUFFIXES:
        problems.fail(None, None, f"unsupported file type {suffix or '(none)'!r}; "
                      f"use one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        problems.fail(None, None, "no such file" if not path.exists() else "not a file")


# -- reading bytes and text ----------------------------------------------------------


def _read_bytes(path: Path, problems: _Problems) -> bytes:
    """The file's bytes, checked to be non-empty UTF-8 (BOM allowed) before any parser
    sees them, so an encoding problem is a clear message, never a traceback."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.fail(None, None, f"cannot be read: {exc.strerror or exc}")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        problems.fail(None, None, "is UTF-16 text (Excel's 'Unicode Text'); save it as "
                      "UTF-8 (in Excel: 'CSV UTF-8')")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        problems.fail(f"line {line}", None,
                      f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start});"
                      " save the file as UTF-8 (in Excel: 'CSV UTF-8')")
    if not text.strip():
        problems.fail(None, None, "the file is empty")
    return data


def _read_text(path: Path, problems: _Problems) -> str:
    return _read_bytes(path, problems).decode("utf-8-sig")


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) split on newlines only: str.splitlines() would also split
    on U+2028 and friends, which JSON strings and prompts may contain."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


# -- tables: CSV, TSV, Excel ---------------------------------------------------------


def _read_table(
    path: Path, suffix: str, sheet: str | None, problems: _Problems
) -> tuple[dict[str, str], Iterator[Row]]:
    """The header (normalized name → name as written) and the rows under it.
    Row 1 is read as data, not as pandas' header, so that pandas can neither rename
    duplicate columns ('prompt.1') nor turn a surplus first column into an index."""
    frame = _read_excel(path, sheet, problems) if suffix == ".xlsx" else _read_delimited(
        path, suffix, problems)
    if frame.empty:
        problems.fail(None, None, "the sheet is empty" if suffix == ".xlsx"
                      else "the file is empty")
    names = _header_names(frame)
    header = _columns([n for n in names if n is not None], problems, "row 1")
    if "prompt" not in header:
        found = ", ".join(repr(n) for n in names if n is not None) or "none"
        problems.add("row 1", None, f"no 'prompt' column; columns found: {found}")
    problems.raise_if_any()
    return header, _table_rows(frame, names)


def _read_delimited(path: Path, suffix: str, problems: _Problems) -> pd.DataFrame:
    """A CSV or TSV as strings. Bytes go to pandas (no copy as a str), already checked
    to be UTF-8 by _read_bytes."""
    data = _read_bytes(path, problems)
    if suffix in (".tsv", ".tab"):
        sep, quoting = "\t", csv.QUOTE_NONE  # a '"' in a TSV is part of the prompt
    else:
        header_line = data.split(b"\n", 1)[0].decode("utf-8-sig")
        sep, quoting = _sniff_delimiter(header_line), csv.QUOTE_MINIMAL
    try:
        return pd.read_csv(io.BytesIO(data), encoding="utf-8-sig", sep=sep, quoting=quoting,
                           header=None, dtype=str, keep_default_na=False, na_filter=False,
                           skip_blank_lines=False, engine="c")
    except pd.errors.ParserError as exc:
        _report_long_rows(data.decode("utf-8-sig"), sep, quoting, problems)
        reason = " ".join(str(exc).split())
        problems.fail(None, None, f"cannot be read as a table ({reason}); "
                      "is a closing double quote missing?")


def _sniff_delimiter(header_line: str) -> str:
    """The delimiter (comma, semicolon, tab) that yields a 'prompt' column, else the
    most frequent one in the header, else comma. Excel in many locales writes ';'."""
    candidates = sorted((",", ";", "\t"), key=header_line.count, reverse=True)
    for sep in candidates:
        cells = next(csv.reader([header_line], delimiter=sep), [])
        if "prompt" in map(normalize_column, cells):
            return sep
    return candidates[0]


def _report_long_rows(text: str, sep: str, quoting: int, problems: _Problems) -> None:
    """Name every row with more cells than the header: almost always a prompt with an
    unquoted delimiter in it. (Only called when pandas refused the file.)"""
    hint = ("a prompt containing a tab cannot be in a TSV file" if sep == "\t"
            else f"put a prompt containing {sep!r} in double quotes")
    width = None
    for number, record in enumerate(csv.reader(io.StringIO(text, newline=""), delimiter=sep,
                                               quoting=quoting), start=1):
        if width is None:
            width = len(record)
        elif len(record) > width:
            problems.add(f"row {number}", None,
                         f"has {len(record)} cells but the header has {width}; {hint}")
    problems.raise_if_any()


def _read_excel(path: Path, sheet: str | None, problems: _Problems) -> pd.DataFrame:
    """The first sheet (or the named one), each cell as the text Excel shows."""
    try:
        with pd.ExcelFile(path, engine="openpyxl") as book:
            if sheet is not None and sheet not in book.sheet_names:
                names = ", ".join(repr(s) for s in book.sheet_names)
                problems.fail(None, "--sheet", f"no sheet named {sheet!r}; sheets: {names}")
            frame = pd.read_excel(book, sheet_name=sheet if sheet is not None else 0,
                                  header=None, dtype=object, keep_default_na=False,
                                  na_filter=False)
    except JobFileError:
        raise
    except Exception as exc:  # zip, XML and openpyxl errors have no common base
        problems.fail(None, None, f"cannot be read as an Excel workbook (.xlsx): {exc}")
    return frame.map(_cell_text)


def _cell_text(value: Any) -> str:
    """An Excel cell as text the way Excel shows it: TRUE (not True), 3 (not 3.0), ''
    for an empty cell. A ratio typed as 16:9 is a time to Excel: '16:09:00', which
    canonical_ratio turns back into '16:9'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime.time):
        return value.strftime("%H:%M:%S")
    return str(value)


def _header_names(frame: pd.DataFrame) -> list[str | None]:
    """Names from row 1. A column without a name is called 'column C' if it holds
    anything, and ignored (None) if it is empty, as stray formatted columns are."""
    names: list[str | None] = []
    for index in range(frame.shape[1]):
        name = frame.iat[0, index].strip()
        if not name and any(value.strip() for value in frame.iloc[1:, index]):
            name = f"column {_column_letter(index)}"
        names.append(name or None)
    return names


def _column_letter(index: int) -> str:
    """0 → 'A', 25 → 'Z', 26 → 'AA': the name a spreadsheet shows."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _table_rows(frame: pd.DataFrame, names: list[str | None]) -> Iterator[Row]:
    """Rows numbered as a spreadsheet shows them (header = row 1). Wholly blank rows
    (trailing ';;;' lines from Excel, spacer rows) are skipped, not errors."""
    kept = [i for i, name in enumerate(names) if name is not None]
    columns = [names[i] for i in kept]
    values = [frame.iloc[1:, i].tolist() for i in kept]
    for number, cells in enumerate(zip(*values, strict=True), start=2):
        if "".join(cells).strip():
            yield f"row {number}", dict(zip(columns, cells, strict=True))


# -- line formats: TXT, JSONL --------------------------------------------------------


def _txt_rows(text: str) -> Iterator[Row]:
    for number, line in _lines(text):
        if line.strip():
            yield f"line {number}", {"prompt": line}


def _jsonl_rows(text: str, problems: _Problems) -> Iterator[Row]:
    for number, line in _lines(text):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            problems.add(f"line {number}", None,
                         f"not valid JSON at column {exc.colno}: {exc.msg}")
            continue
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict):
            problems.add(f"line {number}", None, "must be a JSON object or a string")
            continue
        yield f"line {number}", item


# -- YAML ----------------------------------------------------------------------------


def _yaml_rows(text: str, problems: _Problems) -> tuple[list[Row], str]:
    """Items as rows with the `defaults` filled in, and the defaults' aspect ratio
    ('' if none). BaseLoader: every scalar stays a string, so 16:9 is never 969."""
    try:
        document = yaml.load(text, Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problems.fail(where, None, f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
    defaults: dict[str, Any] = {}
    if isinstance(document, dict):
        defaults, document = _yaml_defaults(document, problems)
    if not isinstance(document, list):
        problems.fail(None, None,
                      "must be a list of jobs, or a mapping with 'jobs' and 'defaults'")
    ratio = defaults.pop("aspect_ratio", "")
    rows = []
    for number, item in enumerate(document, start=1):
        location = f"item {number}"
        if isinstance(item, str):
            item = {"prompt": item}
        if not isinstance(item, dict):
            problems.add(location, None, "must be a prompt string or a mapping")
            continue
        if len(item) == 1 and "prompt" not in map(normalize_column, item):
            (key, value), = item.items()
            problems.add(location, "prompt", f"missing; if {key}: {value} is the prompt, put "
                         "it in quotes (YAML reads 'a: b' as a mapping)")
            continue
        present = {normalize_column(k) for k in item}
        extra = {k: v for k, v in defaults.items() if normalize_column(k) not in present}
        rows.append((location, {**item, **extra}))
    return rows, ratio if isinstance(ratio, str) else str(ratio)


def _yaml_defaults(
    document: dict[str, Any], problems: _Problems
) -> tuple[dict[str, Any], Any]:
    """Split {defaults: {...}, jobs: [...]}; defaults keyed by normalized name."""
    unknown = set(document) - {"defaults", "jobs"}
    if unknown or "jobs" not in document:
        problems.fail(None, None, "a YAML mapping must have a 'jobs' list (and optional "
                      f"'defaults'); found keys: {', '.join(map(str, document))}")
    defaults = document.get("defaults") or {}
    if not isinstance(defaults, dict):
        problems.add("defaults", None, "must be a mapping such as {aspect_ratio: '16:9'}")
        defaults = {}
    defaults = {normalize_column(k): v for k, v in defaults.items()}
    for key in ("id", "prompt"):
        if key in defaults:
            problems.add("defaults", key, "cannot have a default: each job has its own")
            del defaults[key]
    return defaults, document["jobs"]


# -- validation ----------------------------------------------------------------------


def _columns(names: Iterable[str], problems: _Problems, location: str | None) -> dict[str, str]:
    """Map normalized names to the original ones, flagging two names for one column."""
    mapping: dict[str, str] = {}
    for original in names:
        key = normalize_column(original)
        if key in mapping:
            problems.add(location, str(original), f"same column as {mapping[key]!r}")
        else:
            mapping[key] = original
    return mapping


def _validate(
    rows: Iterable[Row], fallback: str, problems: _Problems, header: dict[str, str] | None
) -> list[Job]:
    """Check every row and build Jobs with stable ids. Tables share one header;
    YAML and JSONL items each bring their own keys. Written for a million rows:
    one pass, ratios looked up once per distinct spelling, no per-row copies."""
    jobs: list[Job] = []
    copies: Counter[str] = Counter()  # content digest → rows seen with it
    user_ids: dict[str, str] = {}  # user id → the row that has it
    ratios = {"": fallback}  # cell text → canonical ratio, for cells seen before
    roles = _Roles(header) if header else None
    with _collector_paused():
        for location, row in rows:
            if header is None:
                roles = _Roles(_columns(row, problems, location))
            assert roles is not None
            prompt = _prompt(row.get(roles.prompt), problems, location, roles.prompt)
            raw_ratio = row.get(roles.ratio)
            ratio = ratios.get(raw_ratio) if isinstance(raw_ratio, str) else None
            if ratio is None:
                ratio = _ratio(raw_ratio, fallback, problems, location, roles.ratio, ratios)
            user_id = _user_id(row.get(roles.id), problems, location, roles.id)
            if prompt is None or user_id is None:
                continue
            if user_id:
                if user_id in user_ids:
                    problems.add(location, roles.id, f"{user_id!r} is used twice: "
                                 f"{user_ids[user_id]} and {location}")
                    continue
                user_ids[user_id] = location
                job_id = user_id
            else:
                digest = _digest(prompt, ratio)
                copies[digest] += 1
                job_id = digest if copies[digest] == 1 else f"{digest}-{copies[digest]}"
            metadata = {c: row[c] for c in roles.metadata if c in row} if roles.metadata \
                else _NO_METADATA
            jobs.append(Job(job_id, prompt, ratio, metadata, location))
    _check_id_clashes(jobs, user_ids, copies, problems)
    return jobs


class _Roles:
    """Which original column plays which part: prompt, aspect ratio, id, metadata."""

    __slots__ = ("prompt", "ratio", "id", "metadata")

    def __init__(self, columns: dict[str, str]):
        self.prompt = columns.get("prompt", "prompt")
        self.ratio = columns.get("aspect_ratio", "aspect_ratio")
        self.id = columns.get("id", "id")
        self.metadata = [name for key, name in columns.items() if key not in RESERVED_COLUMNS]


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: a million new Jobs would trigger repeated
    full collections that find nothing to free and double the load time."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _digest(prompt: str, aspect_ratio: str) -> str:
    return hashlib.sha256(f"{MODEL}\n{aspect_ratio}\n{prompt}".encode()).hexdigest()[:16]


def _check_id_clashes(
    jobs: list[Job], user_ids: dict[str, str], copies: Counter[str], problems: _Problems
) -> None:
    """A user id that equals a content id (e.g. copied from an old results.csv) would
    make two jobs share one image; name both rows."""
    if not user_ids or not copies:
        return
    for job in jobs:
        if job.id in user_ids and job.source != user_ids[job.id]:
            problems.add(job.source, "id", f"{job.id!r} is used twice: {user_ids[job.id]} "
                         f"(its id column) and {job.source} (its content id)")


def _prompt(value: Any, problems: _Problems, location: str, column: str) -> str | None:
    """The stripped prompt, or None (and a problem) when it is missing, empty or too long."""
    if not isinstance(value, str):
        problems.add(location, column, "missing" if value is None
                     else f"must be text, not {type(value).__name__}")
        return None
    prompt = value.strip()
    if "\r" in prompt:  # a multi-line cell from Windows: same prompt, same id as on a Mac
        prompt = prompt.replace("\r\n", "\n").replace("\r", "\n")
    if not prompt:
        problems.add(location, column, "is empty")
        return None
    if len(prompt) > MAX_PROMPT_CHARS:
        problems.add(location, column,
                     f"is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed")
        return None
    return prompt


def _ratio(
    value: Any, fallback: str, problems: _Problems, location: str, column: str,
    known: dict[str, str] | None = None,
) -> str:
    """The canonical ratio; empty or missing (JSON null) → the fallback. Valid
    spellings are remembered in `known`."""
    text = "" if value is None else str(value).strip()
    if not text:
        return fallback
    ratio = canonical_ratio(text)
    if ratio is None:
        problems.add(location, column, f"{text!r} is not one of {_ALLOWED}")
        return fallback
    if known is not None and isinstance(value, str):
        known[value] = ratio
    return ratio


def _user_id(value: Any, problems: _Problems, location: str, column: str) -> str | None:
    """The user's id ('' when none), or None (and a problem) when it is not text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # JSONL {"id": 7}
    problems.add(location, column, f"must be text or a whole number, not {type(value).__name__}")
    return None
