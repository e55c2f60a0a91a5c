"""A job file → rows, each with its place in the file, in every supported format, read
as a stream: the bytes are hashed and checked to be UTF-8 as the parser reads them,
so what is validated is exactly what was hashed, and only YAML is held whole.

    .csv           delimiter sniffed among comma, semicolon and tab; RFC 4180 quoting
    .tsv / .tab    tab-separated, no quote processing: a '"' is part of the prompt
    .txt           one prompt per non-empty line
    .xlsx          the first sheet or the named one, each cell as the text Excel shows
    .yaml / .yml   a list of jobs, or {defaults: {...}, jobs: [...]}
    .jsonl         one JSON object (or string = prompt) per line

Tables (`tables.py`) are read as text, so "NULL", "None", "nan", "0" and "TRUE" are
prompts like any other. YAML is read without implicit typing, so `16:9` stays "16:9"
(YAML 1.1 would make it the base-60 integer 969) and `007` stays "007".

This module only reads: it says where each row is and what it holds. Which column is
the prompt, and whether a row is a valid job, is for `jobs.py` to decide. A file that
cannot be read at all ends in a `JobFileError`, never in a parser's traceback.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from .errors import JobFileError

SUFFIXES = (".csv", ".tsv", ".tab", ".txt", ".xlsx", ".yaml", ".yml", ".jsonl")
MAX_REPORTED_PROBLEMS = 200
_ALIASES = {"ratio": "aspect_ratio", "aspectratio": "aspect_ratio"}
# None: libyaml's CBaseLoader, a fast parser with the same "every scalar is a string"
# rules, when PyYAML has it; else yaml.BaseLoader. (Tests set BaseLoader here.)
_YAML_LOADER: Any = None

Row = tuple[str, dict[str, Any]]  # (location such as "row 14", {original column: value})


def normalize_column(name: str) -> str:
    """'Aspect Ratio', 'aspect-ratio' and 'ratio' all name the column 'aspect_ratio'."""
    key = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    return _ALIASES.get(key, key)


class Problems:
    """Collects problems as 'file location, column: message' lines. Every line is
    encodable as UTF-8 (a lone surrogate from the file is shown as \\ud800), so the
    list can be printed or logged anywhere."""

    def __init__(self, name: str):
        self.name = name
        self.lines: list[str] = []
        self.places: list[tuple[str, str]] = []  # (location, column) of each line
        self.unshown = 0  # problems past MAX_REPORTED_PROBLEMS: counted, not kept
        self.count = 0  # all problems, shown or not
        self._orders: list[int] = []  # where each problem goes: its row's number

    def add(self, location: str | None, column: str | None, message: str, *,
            order: int | None = None) -> None:
        """A problem at `location` ('row 14'); listed in file order whenever it is found
        (`order` places one that names no row)."""
        self.count += 1
        if len(self.lines) >= MAX_REPORTED_PROBLEMS:
            self.unshown += 1
            return
        where = self.name + (f" {location}" if location else "")
        line = f"{where}, {column}: {message}" if column else f"{where}: {message}"
        if not line.isascii():
            line = line.encode("utf-8", "backslashreplace").decode("utf-8")
        self.lines.append(line)
        self.places.append((location or "", column or ""))
        number = (location or "").rpartition(" ")[2]
        self._orders.append(order if order is not None else int(number) if number.isdigit()
                            else 0)

    def sort(self) -> None:
        """In file order: a problem found once the whole file was read (a duplicate id)
        goes where its row is."""
        order = sorted(range(len(self.lines)), key=self._orders.__getitem__)
        self.lines = [self.lines[i] for i in order]
        self.places = [self.places[i] for i in order]
        self._orders = [self._orders[i] for i in order]

    def fail(self, location: str | None, column: str | None, message: str) -> NoReturn:
        """Add a problem that makes reading further pointless, and raise them all."""
        self.add(location, column, message)
        self.raise_if_any()
        raise AssertionError("unreachable")

    def raise_if_any(self) -> None:
        if not self.lines:
            return
        self.sort()
        more = [f"... and {self.unshown} more problems"] if self.unshown else []
        raise JobFileError(self.lines + more)


@dataclass(frozen=True, slots=True)
class Rows:
    """What a job file holds, before anyone judges it."""

    rows: Iterable[Row]  # lazy: problems are added as rows are read
    header: list[str] | None = None  # tables: the names in row 1, shared by every row
    default_ratio: str = ""  # YAML `defaults: {aspect_ratio: ...}`, '' when there is none
    sheet: str | None = None  # .xlsx: the name of the sheet that was read
    strict_utf8: bool = False  # every string was decoded from UTF-8 here: no lone surrogates
    digest: Any = field(default_factory=hashlib.sha256)  # of the bytes read: whole at the end


def check_path(path: Path, problems: Problems) -> None:
    """A supported extension, and a file that exists."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        problems.fail(None, None, f"unsupported file type {suffix or '(none)'!r}; "
                      f"use one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        problems.fail(None, None, "no such file" if not path.exists() else "not a file")


class Reading:
    """A job file's bytes as a parser reads them (`read`, or line by line): hashed on
    the way, and with `text`, checked to be UTF-8 - a problem names the line and the
    byte - so an encoding problem is a clear message, never a parser's traceback."""

    def __init__(self, path: Path, problems: Problems, *, text: bool = True):
        try:
            self._fh = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as exc:
            problems.fail(None, None, f"cannot be read: {exc.strerror or exc}")
        self.problems = problems
        self.digest = hashlib.sha256()
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")("strict") if text else None
        self._offset = 0
        self._line = 1
        self.blank = True  # nothing but white space so far

    def read(self, size: int = -1) -> bytes:
        try:
            data = self._fh.read(size)
        except OSError as exc:
            self.problems.fail(None, None, f"cannot be read: {exc.strerror or exc}")
        self._check(data)
        return data

    def lines(self) -> Iterator[tuple[int, str]]:
        """(line number, text) split on newlines only: str.splitlines() would also
        split on U+2028 and friends, which JSON strings and prompts may contain."""
        for number, raw in enumerate(self._fh, start=1):
            self._check(raw)
            yield number, raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
        self._check(b"")

    def _check(self, data: bytes) -> None:
        self.digest.update(data)
        if self.blank and data.strip():
            self.blank = False
        if self._offset == 0 and data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            self.problems.fail(None, None, "is UTF-16 text (Excel's 'Unicode Text'); save it "
                               "as UTF-8 (in Excel: 'CSV UTF-8')")
        if self._decoder is not None:
            try:
                self._decoder.decode(data, final=not data)
            except UnicodeDecodeError as exc:
                offset = self._offset + exc.start
                byte = data[exc.start] if exc.start < len(data) else 0
                line = self._line + data.count(b"\n", 0, exc.start)
                self.problems.fail(f"line {line}", None, f"not UTF-8 text (byte 0x{byte:02x} "
                                   f"at offset {offset}); save the file as UTF-8 (in Excel: "
                                   "'CSV UTF-8')")
            self._line += data.count(b"\n")
        self._offset += len(data)

    def close(self) -> None:
        self._fh.close()


def open_rows(path: Path, suffix: str, sheet: str | None, problems: Problems) -> Rows:
    """The rows of a file with this extension (lower case), read as they are needed."""
    from . import tables

    if suffix == ".xlsx":
        return tables.excel_rows(path, sheet, problems)
    if suffix in (".csv", ".tsv", ".tab"):
        return tables.delimited_rows(path, suffix, problems)
    reading = Reading(path, problems)
    if suffix == ".txt":
        return Rows(_txt_rows(reading), strict_utf8=True, digest=reading.digest)
    if suffix == ".jsonl":
        return Rows(_jsonl_rows(reading, problems), digest=reading.digest)
    data = reading.read()
    reading.close()
    if reading.blank:
        problems.fail(None, None, "the file is empty")
    rows, ratio = _yaml_rows(data.decode("utf-8-sig"), problems)
    return Rows(rows, default_ratio=ratio, digest=reading.digest)


# -- line formats: TXT, JSONL --------------------------------------------------------


def _txt_rows(reading: Reading) -> Iterator[Row]:
    try:
        for number, line in reading.lines():
            if line.strip():
                yield f"line {number}", {"prompt": line}
    finally:
        reading.close()
    if reading.blank:
        reading.problems.fail(None, None, "the file is empty")


def _jsonl_rows(reading: Reading, problems: Problems) -> Iterator[Row]:
    try:
        for number, line in reading.lines():
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                problems.add(f"line {number}", None,
                             f"not valid JSON at column {exc.colno}: {exc.msg}")
                continue
            except RecursionError:
                problems.add(f"line {number}", None, "not valid JSON: nested too deeply")
                continue
            if isinstance(item, str):
                item = {"prompt": item}
            if not isinstance(item, dict):
                problems.add(f"line {number}", None, "must be a JSON object or a string")
                continue
            yield f"line {number}", item
    finally:
        reading.close()
    if reading.blank:
        problems.fail(None, None, "the file is empty")


# -- YAML ----------------------------------------------------------------------------


def _yaml_rows(text: str, problems: Problems) -> tuple[list[Row], str]:
    """Items as rows with the `defaults` filled in, and the defaults' aspect ratio
    ('' if none). BaseLoader: every scalar stays a string, so 16:9 is never 969."""
    import yaml

    loader = _YAML_LOADER or getattr(yaml, "CBaseLoader", yaml.BaseLoader)
    try:
        document = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else None
        problems.fail(where, None, f"not valid YAML: {getattr(exc, 'problem', None) or exc}")
    except RecursionError:
        problems.fail(None, None, "not valid YAML: nested too deeply")
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
    document: dict[str, Any], problems: Problems
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
