"""A job file's bytes → rows, each with its place in the file, in every supported format.

    .csv           delimiter sniffed among comma, semicolon and tab; RFC 4180 quoting
    .tsv / .tab    tab-separated, no quote processing: a '"' is part of the prompt
    .txt           one prompt per non-empty line
    .xlsx          the first sheet or the named one, each cell as the text Excel shows
    .yaml / .yml   a list of jobs, or {defaults: {...}, jobs: [...]}
    .jsonl         one JSON object (or string = prompt) per line

Tables are read by pandas as strings, so "NULL", "None", "nan", "0" and "TRUE" are
prompts like any other. YAML is read without implicit typing, so `16:9` stays "16:9"
(YAML 1.1 would make it the base-60 integer 969) and `007` stays "007".

This module only reads: it says where each row is and what it holds. Which column is
the prompt, and whether a row is a valid job, is for `jobs.py` to decide. A file that
cannot be read at all ends in a `JobFileError`, never in a parser's traceback.
"""

from __future__ import annotations

import codecs
import csv
import datetime
import io
import json
import math
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from .errors import JobFileError

if TYPE_CHECKING:  # pandas and yaml are imported by the readers that need them
    import pandas as pd

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

    @property
    def count(self) -> int:
        return len(self.lines) + self.unshown

    def add(self, location: str | None, column: str | None, message: str) -> None:
        if len(self.lines) >= MAX_REPORTED_PROBLEMS:
            self.unshown += 1
            return
        where = self.name + (f" {location}" if location else "")
        line = f"{where}, {column}: {message}" if column else f"{where}: {message}"
        if not line.isascii():
            line = line.encode("utf-8", "backslashreplace").decode("utf-8")
        self.lines.append(line)
        self.places.append((location or "", column or ""))

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


@dataclass(frozen=True, slots=True)
class Rows:
    """What a job file holds, before anyone judges it."""

    rows: Iterable[Row]  # lazy for tables and JSONL: problems are added as they are read
    header: list[str] | None = None  # tables: the names in row 1, shared by every row
    default_ratio: str = ""  # YAML `defaults: {aspect_ratio: ...}`, '' when there is none
    sheet: str | None = None  # .xlsx: the name of the sheet that was read
    strict_utf8: bool = False  # every string was decoded from UTF-8 here: no lone surrogates


def check_path(path: Path, problems: Problems) -> None:
    """A supported extension, and a file that exists."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        problems.fail(None, None, f"unsupported file type {suffix or '(none)'!r}; "
                      f"use one of {', '.join(SUFFIXES)}")
    if not path.is_file():
        problems.fail(None, None, "no such file" if not path.exists() else "not a file")


def read_bytes(path: Path, problems: Problems) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        problems.fail(None, None, f"cannot be read: {exc.strerror or exc}")


def read_rows(suffix: str, data: bytes, sheet: str | None, problems: Problems) -> Rows:
    """The rows of a file with this extension (lower case) and these bytes."""
    if suffix == ".xlsx":
        frame, sheet = _read_excel(data, sheet, problems)
        return _table(frame, problems, "the sheet is empty", sheet=sheet, strict_utf8=False)
    if suffix in (".csv", ".tsv", ".tab"):
        return _table(_read_delimited(data, suffix, problems), problems, "the file is empty")
    text = _decode(data, problems)
    if suffix == ".txt":
        return Rows(_txt_rows(text), strict_utf8=True)
    if suffix == ".jsonl":
        return Rows(_jsonl_rows(text, problems))
    rows, ratio = _yaml_rows(text, problems)
    return Rows(rows, default_ratio=ratio)


def _decode(data: bytes, problems: Problems) -> str:
    """The file as text, checked to be non-empty UTF-8 (BOM allowed) before any parser
    sees it, so an encoding problem is a clear message, never a traceback."""
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
    return text


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) split on newlines only: str.splitlines() would also split
    on U+2028 and friends, which JSON strings and prompts may contain."""
    for number, line in enumerate(text.split("\n"), start=1):
        yield number, line.removesuffix("\r")


# -- tables: CSV, TSV, Excel ---------------------------------------------------------


def _table(frame: pd.DataFrame, problems: Problems, empty: str, *, sheet: str | None = None,
           strict_utf8: bool = True) -> Rows:
    """Row 1 is read as data, not as pandas' header, so that pandas can neither rename
    duplicate columns ('prompt.1') nor turn a surplus first column into an index."""
    if frame.empty:
        problems.fail(None, None, empty)
    names = _header_names(frame)
    return Rows(_table_rows(frame, names), header=[n for n in names if n is not None],
                sheet=sheet, strict_utf8=strict_utf8)


def _read_delimited(data: bytes, suffix: str, problems: Problems) -> pd.DataFrame:
    """A CSV or TSV as strings. The bytes go to pandas once checked to be UTF-8 (the
    text is not kept: a second copy of a large file while pandas parses it)."""
    import pandas as pd

    _decode(data, problems)
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


def _report_long_rows(text: str, sep: str, quoting: int, problems: Problems) -> None:
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


def _read_excel(data: bytes, sheet: str | None, problems: Problems) -> tuple[pd.DataFrame, str]:
    """The first sheet (or the named one), each cell as the text Excel shows, and the
    sheet's name."""
    import pandas as pd

    try:
        with pd.ExcelFile(io.BytesIO(data), engine="openpyxl") as book:
            if sheet is not None and sheet not in book.sheet_names:
                names = ", ".join(repr(s) for s in book.sheet_names)
                problems.fail(None, "--sheet", f"no sheet named {sheet!r}; sheets: {names}")
            sheet = sheet if sheet is not None else str(book.sheet_names[0])
            frame = pd.read_excel(book, sheet_name=sheet, header=None, dtype=object,
                                  keep_default_na=False, na_filter=False)
    except JobFileError:
        raise
    except Exception as exc:  # zip, XML and openpyxl errors have no common base
        problems.fail(None, None, f"cannot be read as an Excel workbook (.xlsx): {exc}")
    return frame.map(_cell_text), sheet


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


def _jsonl_rows(text: str, problems: Problems) -> Iterator[Row]:
    for number, line in _lines(text):
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
