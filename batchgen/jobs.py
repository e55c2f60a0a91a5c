"""Job files → a `JobFile` of validated `Job`s, or a `JobFileError` listing every problem.

    jobfile = load_jobs("prompts.csv", default_ratio="16:9")
    jobfile.path, jobfile.sha256      # the file, and a hash of the very bytes validated
    for job in jobfile: ...           # a JobFile is a sequence of Jobs

`readers.py` turns each format into located rows; this module decides what the rows
mean: which column is the prompt, the ratio and the id, which rows are valid, and
each job's id and fingerprint. Every problem is collected with its place (file,
row/item/line, column) and all of them are raised together, so the user fixes the
file in one go and no request is ever sent for a file that is partly wrong.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, overload

from .config import ASPECT_RATIOS, DEFAULT_ASPECT_RATIO, MAX_PROMPT_CHARS, MODEL
from .errors import JobFileError
from .readers import Problems, Rows, check_path, normalize_column, read_bytes, read_rows

__all__ = ["Job", "JobFile", "canonical_ratio", "content_id", "fingerprint", "load_jobs"]

RESERVED_COLUMNS = ("prompt", "aspect_ratio", "id")
_ALLOWED = ", ".join(ASPECT_RATIOS)
# "16:9", "16 : 9", "16x9", "16/9" - and Excel's reading of 16:9 as the time 16:09:00
_RATIO_SPELLING = re.compile(r"^\s*(\d{1,2})\s*[:xX×/]\s*(\d{1,2})(?::00)?\s*$")
# What UTF-8 cannot encode: a lone half of a surrogate pair, as JSON's "\ud800" makes.
_SURROGATE = re.compile("[\ud800-\udfff]")

_NO_METADATA: dict[str, Any] = {}  # shared by every job without metadata: never mutated


@dataclass(frozen=True, slots=True)
class Job:
    """One image to generate. `id` is stable across runs (SPEC §2); `fp` is the
    fingerprint of what is sent for it (SPEC §8 S2), given by keyword."""

    id: str
    prompt: str
    aspect_ratio: str
    fp: str = field(kw_only=True)  # fingerprint(MODEL, prompt, aspect_ratio)
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where it came from: "row 14", "item 3", "line 5"


@dataclass(frozen=True)
class JobFile(Sequence[Job]):
    """A validated job file: its jobs in file order, and the facts a run records.
    Reading it again as `load_jobs(path, default_ratio=default_ratio, sheet=sheet)`
    gives the same jobs as long as the file's sha256 is unchanged."""

    path: Path  # absolute
    sha256: str  # of the bytes that were read and validated
    default_ratio: str  # canonical: the ratio of rows without one (YAML defaults, else option)
    sheet: str | None  # .xlsx: the sheet read (the first one unless named); else None
    jobs: list[Job]

    def __len__(self) -> int:
        return len(self.jobs)

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    @overload
    def __getitem__(self, index: int) -> Job: ...
    @overload
    def __getitem__(self, index: slice) -> list[Job]: ...

    def __getitem__(self, index: int | slice) -> Job | list[Job]:
        return self.jobs[index]


def fingerprint(model: str, prompt: str, aspect_ratio: str) -> str:
    """16 hex characters of sha256 over what is sent for a job."""
    return hashlib.sha256(f"{model}\n{aspect_ratio}\n{prompt}".encode()).hexdigest()[:16]


def content_id(prompt: str, aspect_ratio: str, occurrence: int) -> str:
    """The id of a job without a user id: same content, same id; the n-th copy gets '-n'."""
    digest = fingerprint(MODEL, prompt, aspect_ratio)
    return digest if occurrence == 1 else f"{digest}-{occurrence}"


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


def load_jobs(
    path: str | Path, *, default_ratio: str = DEFAULT_ASPECT_RATIO, sheet: str | None = None,
    skip_invalid: bool = False,
) -> JobFile:
    """Read and validate a job file. Raises JobFileError naming every problem found;
    with `skip_invalid`, keeps the valid rows instead (see JobFile.invalid)."""
    path = Path(path)
    suffix = path.suffix.lower()
    problems = Problems(f"{path} (sheet {sheet!r})" if sheet and suffix == ".xlsx"
                        else str(path))
    check_path(path, problems)
    fallback = canonical_ratio(default_ratio)
    if fallback is None:
        raise JobFileError([f"--aspect-ratio {default_ratio!r} is not one of {_ALLOWED}"])

    data = read_bytes(path, problems)
    sha256 = hashlib.sha256(data).hexdigest()
    source = read_rows(suffix, data, sheet, problems)
    del data  # the rows no longer need it: a million-row file is not held twice
    header = _header(source, problems) if source.header is not None else None
    fallback = _ratio(source.default_ratio, fallback, problems, "defaults", "aspect_ratio")

    jobs = _validate(source, header, fallback, problems)
    problems.raise_if_any()
    if not jobs:
        problems.fail(None, None, "has a header but no jobs" if header else "has no jobs")
    return JobFile(path.resolve(), sha256, fallback, source.sheet, jobs)


# -- validation ----------------------------------------------------------------------


def _header(source: Rows, problems: Problems) -> dict[str, str]:
    """A table's one header for every row: normalized name → name as written."""
    assert source.header is not None
    header = _columns(source.header, problems, "row 1")
    if not source.strict_utf8:
        for name, char in _Roles(header).bad_names.items():
            problems.add("row 1", name, _unencodable(char, "the column name "))
    if "prompt" not in header:
        found = ", ".join(repr(n) for n in source.header) or "none"
        problems.add("row 1", None, f"no 'prompt' column; columns found: {found}")
    problems.raise_if_any()
    return header


def _columns(names: Iterable[str], problems: Problems, location: str | None) -> dict[str, str]:
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
    source: Rows, header: dict[str, str] | None, fallback: str, problems: Problems
) -> list[Job]:
    """Check every row and build Jobs with stable ids. Tables share one header;
    YAML and JSONL items each bring their own keys. Written for a million rows:
    one pass, ratios looked up once per distinct spelling, one hash per row,
    no per-row copies, and text decoded here as UTF-8 is not checked again."""
    jobs: list[Job] = []
    copies: Counter[str] = Counter()  # fingerprint → rows without a user id seen with it
    user_ids: dict[str, str] = {}  # user id → the row that has it
    ratios = {"": fallback}  # cell text → canonical ratio, for cells seen before
    roles = _Roles(header) if header else None
    roles_of: dict[tuple[str, ...], _Roles] = {}  # YAML, JSONL: the roles of each key set
    with _collector_paused():
        for location, row in source.rows:
            if header is None:
                roles = roles_of.get(tuple(row)) or _row_roles(row, roles_of, problems,
                                                               location)
            assert roles is not None
            prompt = _prompt(row.get(roles.prompt), problems, location, roles.prompt)
            raw_ratio = row.get(roles.ratio)
            ratio = ratios.get(raw_ratio) if isinstance(raw_ratio, str) else None
            if ratio is None:
                ratio = _ratio(raw_ratio, fallback, problems, location, roles.ratio, ratios)
            user_id = _user_id(row.get(roles.id), problems, location, roles.id)
            encodable = source.strict_utf8 or _encodable(row, roles, problems, location)
            if prompt is None or user_id is None or not encodable:
                continue
            if user_id:
                if user_id in user_ids:
                    problems.add(location, roles.id, f"{user_id!r} is used twice: "
                                 f"{user_ids[user_id]} and {location}")
                    continue
                user_ids[user_id] = location
            fp = fingerprint(MODEL, prompt, ratio)
            if user_id:
                job_id = user_id
            else:
                copies[fp] += 1
                job_id = fp if copies[fp] == 1 else f"{fp}-{copies[fp]}"
            metadata = {c: row[c] for c in roles.metadata if c in row} if roles.metadata \
                else _NO_METADATA
            jobs.append(Job(job_id, prompt, ratio, metadata, location, fp=fp))
    _check_id_clashes(jobs, user_ids, copies, problems)
    return jobs


class _Roles:
    """Which original column plays which part: prompt, aspect ratio, id, metadata."""

    __slots__ = ("prompt", "ratio", "id", "metadata", "texts", "bad_names")

    def __init__(self, columns: dict[str, str]):
        self.prompt = columns.get("prompt", "prompt")
        self.ratio = columns.get("aspect_ratio", "aspect_ratio")
        self.id = columns.get("id", "id")
        self.metadata = [name for key, name in columns.items() if key not in RESERVED_COLUMNS]
        self.texts = [self.prompt, self.id, *self.metadata]  # sent or recorded: must encode
        # column → its first unencodable character (only a metadata name can have one)
        self.bad_names = {name: char for name in self.metadata
                          if (char := _lone_surrogate(name)) is not None}


def _row_roles(row: dict[str, Any], roles_of: dict[tuple[str, ...], _Roles],
               problems: Problems, location: str) -> _Roles:
    """The roles of a YAML or JSONL item's keys; remembered for the next item with the
    same keys unless two of them name one column (reported for every such item)."""
    columns = _columns(row, problems, location)
    roles = _Roles(columns)
    if len(columns) == len(row) and len(roles_of) < 1000:
        roles_of[tuple(row)] = roles
    return roles


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


def _check_id_clashes(
    jobs: list[Job], user_ids: dict[str, str], copies: Counter[str], problems: Problems
) -> None:
    """A user id that equals a content id (e.g. copied from an old results.csv) would
    make two jobs share one image; name both rows."""
    if not user_ids or not copies:
        return
    for job in jobs:
        if job.id in user_ids and job.source != user_ids[job.id]:
            problems.add(job.source, "id", f"{job.id!r} is used twice: {user_ids[job.id]} "
                         f"(its id column) and {job.source} (its content id)")


def _prompt(value: Any, problems: Problems, location: str, column: str) -> str | None:
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
    value: Any, fallback: str, problems: Problems, location: str, column: str,
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


def _user_id(value: Any, problems: Problems, location: str, column: str) -> str | None:
    """The user's id ('' when none), or None (and a problem) when it is not text."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # JSONL {"id": 7}
    problems.add(location, column, f"must be text or a whole number, not {type(value).__name__}")
    return None


# -- text that cannot be sent or recorded (SPEC §8 S5) -------------------------------


def _encodable(row: dict[str, Any], roles: _Roles, problems: Problems, location: str) -> bool:
    """False, with a problem per column, when the prompt, the id or any metadata (its
    name included) holds text UTF-8 cannot encode. The ratio needs no check: such a
    ratio is already 'not one of' the allowed ones."""
    encodable = True
    for column in roles.texts:
        if column in roles.bad_names:
            problems.add(location, column, _unencodable(roles.bad_names[column],
                                                        "the column name "))
            encodable = False
            continue
        value = row.get(column)
        if value is None or (value.__class__ is str and value.isascii()):  # nearly always
            continue
        if (char := _lone_surrogate(value)) is not None:
            problems.add(location, column, _unencodable(char))
            encodable = False
    return encodable


def _lone_surrogate(value: Any) -> str | None:
    """The first character UTF-8 cannot encode in `value` (text, or text nested in lists
    and mappings, their keys included), or None. Such a character is half of a
    surrogate pair, as JSON's "\\ud800" escape makes."""
    pending = [value]
    while pending:  # a loop, not recursion: JSON may nest as deep as its parser allows
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii() and (match := _SURROGATE.search(item)):
                return match[0]
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def _unencodable(char: str, what: str = "") -> str:
    return f"{what}contains text that is not valid Unicode (a lone surrogate \\u{ord(char):04x})"
