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
import sys
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import ASPECT_RATIOS, DEFAULT_ASPECT_RATIO, MAX_PROMPT_CHARS, MODEL
from .errors import JobFileError
from .jobindex import JobIndex
from .readers import Problems, Rows, check_path, normalize_column, open_rows

__all__ = ["Job", "JobFile", "canonical_ratio", "content_id", "fingerprint", "load_jobs"]

RESERVED_COLUMNS = ("prompt", "aspect_ratio", "id")
_ALLOWED = ", ".join(ASPECT_RATIOS)
# "16:9", "16 : 9", "16x9", "16/9" - and Excel's reading of 16:9 as the time 16:09:00
_RATIO_SPELLING = re.compile(r"^\s*(\d{1,2})\s*[:xX×/]\s*(\d{1,2})(?::00)?\s*$")
# A content id: 16 hex digits of fingerprint, and the occurrence from the 2nd copy on.
_CONTENT_ID = re.compile(r"([0-9a-f]{16})(?:-(\d+))?")
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


@dataclass(frozen=True, eq=False)
class JobFile:
    """A validated job file: the facts a run records, and its jobs in file order, read
    back from an on-disk index as they are needed, so a million jobs are never held.
    Reading it again as `load_jobs(path, default_ratio=default_ratio, sheet=sheet)`
    gives the same jobs as long as the file's sha256 is unchanged."""

    path: Path  # absolute
    sha256: str  # of the bytes that were read and validated
    default_ratio: str  # canonical: the ratio of rows without one (YAML defaults, else option)
    sheet: str | None  # .xlsx: the sheet read (the first one unless named); else None
    job_count: int
    ratios: dict[str, int]  # jobs per aspect ratio
    metadata_columns: list[str]  # every metadata column of every job, first seen first
    index: JobIndex = field(repr=False)
    #: with skip_invalid: the rows left out, as (location, column, problem), and how many
    #: more problems there were than are listed
    invalid: list[tuple[str, str, str]] = field(default_factory=list)
    invalid_unlisted: int = 0

    def __len__(self) -> int:
        return self.job_count

    def __iter__(self) -> Iterator[Job]:
        return iter(self.index)

    def chunks(self) -> Iterator[list[Job]]:
        return self.index.chunks()

    @property
    def jobs(self) -> list[Job]:
        """Every job in a list: for small files (and tests), not a million rows."""
        return list(self.index)

    def __getitem__(self, index: int) -> Job:
        return self.jobs[index]

    def changed(self) -> bool:
        """Whether the file now holds other bytes than the ones validated (an edit
        between validation and dispatch): read once more and hashed."""
        digest = hashlib.sha256()
        try:
            with open(self.path, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(block)
        except OSError:
            return True
        return digest.hexdigest() != self.sha256


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
    """Read and validate a job file. Raises JobFileError naming every problem found.
    With `skip_invalid`, rows with problems are left out and listed in
    `JobFile.invalid` instead; a problem with the file itself still raises, and so does
    a file with no valid row."""
    path = Path(path)
    suffix = path.suffix.lower()
    problems = Problems(f"{path} (sheet {sheet!r})" if sheet and suffix == ".xlsx"
                        else str(path))
    check_path(path, problems)
    fallback = canonical_ratio(default_ratio)
    if fallback is None:
        raise JobFileError([f"--aspect-ratio {default_ratio!r} is not one of {_ALLOWED}"])

    source = open_rows(path, suffix, sheet, problems)
    header = _header(source, problems) if source.header is not None else None
    fallback = _ratio(source.default_ratio, fallback, problems, "defaults", "aspect_ratio")
    if problems.count:  # the file's own problems (defaults, header): nothing is skippable
        problems.raise_if_any()
    index = JobIndex(_job)
    facts = _validate(source, header, fallback, problems, index, skip_invalid)
    if not skip_invalid or not facts.count:
        problems.raise_if_any()
    if not facts.count:
        problems.fail(None, None, "has a header but no jobs" if header else "has no jobs")
    problems.sort()
    invalid = [(*place, line) for place, line in zip(problems.places, problems.lines,
                                                     strict=True)]
    return JobFile(path.resolve(), source.digest.hexdigest(), fallback, source.sheet,
                   facts.count, facts.ratios, list(facts.metadata), index, invalid,
                   problems.unshown)


def _job(job_id: str, prompt: str, ratio: str, metadata: dict[str, Any], source: str,
         fp: str) -> Job:
    return Job(job_id, prompt, ratio, metadata, source, fp=fp)


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


@dataclass
class _Facts:
    """What validation keeps of a file besides its jobs: counts, not copies."""

    count: int = 0
    ratios: dict[str, int] = field(default_factory=dict)
    metadata: dict[str, None] = field(default_factory=dict)  # column names, first seen first


def _validate(source: Rows, header: dict[str, str] | None, fallback: str, problems: Problems,
              index: JobIndex, skip_invalid: bool = False) -> _Facts:
    """Check every row and write the valid ones to the index as jobs with stable ids.
    Tables share one header; YAML and JSONL items each bring their own keys. Written
    for a million rows: one pass; ratios looked up once per distinct spelling; one
    hash per row; what is kept per row is its user id or its fingerprint (to find a
    duplicate, and to number identical rows), never the row."""
    facts = _Facts()
    user_keys = array("Q")  # a 64-bit hash of each user id: duplicates are found at the end
    refused: dict[str, str] = {}  # user id → location, of rows that were not valid
    seen: set[int] = set()  # fingerprints of rows without a user id
    copies: dict[int, int] = {}  # fingerprint → rows with it, once there are two
    ratios = {"": fallback}  # cell text → canonical ratio, for cells seen before
    roles = _Roles(header) if header else None
    roles_of: dict[tuple[str, ...], _Roles] = {}  # YAML, JSONL: the roles of each key set
    with _collector_paused():
        for location, row in source.rows:
            if header is None:
                roles = roles_of.get(tuple(row)) or _row_roles(row, roles_of, problems,
                                                               location)
            assert roles is not None
            known = problems.count
            prompt = _prompt(row.get(roles.prompt), problems, location, roles.prompt)
            raw_ratio = row.get(roles.ratio)
            ratio = ratios.get(raw_ratio) if isinstance(raw_ratio, str) else None
            if ratio is None:
                ratio = _ratio(raw_ratio, fallback, problems, location, roles.ratio, ratios)
            user_id = _user_id(row.get(roles.id), problems, location, roles.id)
            if not source.strict_utf8:
                _encodable(row, roles, problems, location)
            if prompt is None or user_id is None:
                continue
            if problems.count != known:
                if user_id:
                    refused.setdefault(user_id, location)
                continue  # a row with a problem is never a job
            fp = fingerprint(MODEL, prompt, ratio)
            if user_id:
                job_id = user_id
                user_keys.append(_key(user_id))
            else:
                number = int(fp, 16)
                if number in seen:
                    copies[number] = copies.get(number, 1) + 1
                    job_id = f"{fp}-{copies[number]}"
                else:
                    seen.add(number)
                    job_id = fp
            metadata = {k: v for k, v in row.items() if k not in roles.reserved} \
                if len(row) > roles.named else _NO_METADATA
            for name in metadata:
                if name not in facts.metadata:
                    facts.metadata[name] = None
            facts.ratios[ratio] = facts.ratios.get(ratio, 0) + 1
            facts.count += 1
            index.add((job_id, prompt, ratio, metadata, location, fp))
    index.seal()
    skip = _duplicates(user_keys, refused, index, problems)
    if seen and (user_keys or refused):
        skip |= _clashes(seen, copies, index, problems)
    if skip and skip_invalid:
        index.skip |= skip
        facts.count -= len(skip)
    return facts


def _key(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"),
                                          digest_size=8).digest(), "little")


def _duplicates(user_keys: array, refused: dict[str, str], index: JobIndex,
                problems: Problems) -> set[str]:
    """Every row whose user id an earlier row already has, named with both rows. Found
    once the file is read, from 8 bytes a row: the index is read again only when two
    hashes meet. Returns the later rows' places (left out with skip_invalid)."""
    import numpy as np

    keys = np.frombuffer(user_keys, np.uint64)
    ordered = np.sort(keys)
    twice = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    if refused:
        theirs = np.fromiter(map(_key, refused), np.uint64, len(refused))
        twice |= set(theirs[np.isin(theirs, keys)].tolist())
    if not twice:
        return set()
    places: dict[str, list[tuple[int, str, bool]]] = {}  # id → (row, place, valid)
    for user_id, location in refused.items():
        if _key(user_id) in twice:
            places.setdefault(user_id, []).append((_number(location), location, False))
    for job in index:
        if not _is_content_id(job) and _key(job.id) in twice:
            places.setdefault(job.id, []).append((_number(job.source), job.source, True))
    later: set[str] = set()
    for user_id, found in places.items():
        (_, first, _), *rest = sorted(found)
        for _, location, valid in rest:
            problems.add(location, "id", f"{user_id!r} is used twice: {first} and {location}")
            if valid:
                later.add(location)
    return later


def _number(location: str) -> int:
    """'row 14' → 14: where a row is, to put rows found apart back in order."""
    number = location.rpartition(" ")[2]
    return int(number) if number.isdigit() else 0


def _is_content_id(job: Job) -> bool:
    return job.id == job.fp or job.id.startswith(job.fp + "-")


def _clashes(seen: set[int], copies: dict[int, int], index: JobIndex,
             problems: Problems) -> set[str]:
    """A user id that equals another row's content id (e.g. copied from an old
    results.csv) would make two jobs share one image; name both rows. Returns the
    content-id rows."""
    suspects = set()
    for job in index:  # only user ids shaped like a content id of this file can clash
        match = None if _is_content_id(job) else _CONTENT_ID.fullmatch(job.id)
        if match and int(match[1], 16) in seen and int(match[2] or 1) <= copies.get(
                int(match[1], 16), 1):
            suspects.add(job.id)
    if not suspects:
        return set()
    rows: dict[str, list[Job]] = {}
    for job in index:
        if job.id in suspects:
            rows.setdefault(job.id, []).append(job)
    clashes = set()
    for job_id, jobs in rows.items():
        users = [j for j in jobs if not _is_content_id(j)]
        for job in jobs:
            if job is not users[0]:
                problems.add(job.source, "id", f"{job_id!r} is used twice: {users[0].source} "
                             f"(its id column) and {job.source} (its content id)",
                             order=sys.maxsize)
                clashes.add(job.source)
    return clashes


class _Roles:
    """Which original column plays which part: prompt, aspect ratio, id, metadata."""

    __slots__ = ("prompt", "ratio", "id", "metadata", "texts", "bad_names", "reserved",
                 "named")

    def __init__(self, columns: dict[str, str]):
        self.prompt = columns.get("prompt", "prompt")
        self.ratio = columns.get("aspect_ratio", "aspect_ratio")
        self.id = columns.get("id", "id")
        self.reserved = {self.prompt, self.ratio, self.id}
        self.named = sum(key in RESERVED_COLUMNS for key in columns)  # rows this long: no metadata
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


def _encodable(row: dict[str, Any], roles: _Roles, problems: Problems, location: str) -> None:
    """A problem per column whose prompt, id or metadata (its name included) holds
    text UTF-8 cannot encode. The ratio needs no check: such a ratio is already 'not
    one of' the allowed ones."""
    for column in roles.texts:
        if column in roles.bad_names:
            problems.add(location, column, _unencodable(roles.bad_names[column],
                                                        "the column name "))
            continue
        value = row.get(column)
        if value is None or (value.__class__ is str and value.isascii()):  # nearly always
            continue
        if (char := _lone_surrogate(value)) is not None:
            problems.add(location, column, _unencodable(char))


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
