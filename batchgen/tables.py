"""Tables read a chunk at a time: CSV and TSV through pandas' C parser, .xlsx through
openpyxl's read-only mode, so a million-row file never sits in memory whole.

Every cell is text: pandas reads with `dtype=str` and no NA conversion, so "NULL",
"None", "nan", "0" and "TRUE" are prompts like any other, and an Excel cell is the
text Excel shows. Row 1 is read as data, not as pandas' header, so pandas can
neither rename duplicate columns ('prompt.1') nor turn a surplus first column into
an index; rows are numbered as a spreadsheet shows them (header = row 1).
"""

from __future__ import annotations

import csv
import datetime
import io
import math
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import JobFileError
from .readers import Problems, Reading, Row, Rows, normalize_column

CHUNK_ROWS = 50_000


def delimited_rows(path: Path, suffix: str, problems: Problems) -> Rows:
    """A CSV or TSV: the header now, the rows as they are parsed."""
    import pandas as pd

    if suffix in (".tsv", ".tab"):
        sep, quoting = "\t", csv.QUOTE_NONE  # a '"' in a TSV is part of the prompt
    else:
        sep, quoting = _sniff_delimiter(_first_line(path)), csv.QUOTE_MINIMAL
    reading = Reading(path, problems)
    try:
        frames = pd.read_csv(reading, encoding="utf-8-sig", sep=sep, quoting=quoting,
                             header=None, dtype=str, keep_default_na=False, na_filter=False,
                             skip_blank_lines=False, engine="c", chunksize=CHUNK_ROWS)
        first = next(frames)
    except (StopIteration, pd.errors.EmptyDataError):
        reading.close()
        problems.fail(None, None, "the file is empty")
    except pd.errors.ParserError as exc:
        reading.close()
        _refuse_table(path, sep, quoting, exc, problems)
    names = _names(first.iloc[0].tolist())

    def rows() -> Iterator[Row]:
        try:
            chunks = _chain(first.iloc[1:], frames)
            # a short row's missing cells are NaN: empty
            yield from _numbered((frame.fillna("").to_numpy(dtype=object).tolist()
                                  for frame in chunks), names)
        except pd.errors.ParserError as exc:
            _refuse_table(path, sep, quoting, exc, problems)
        finally:
            reading.close()
        if reading.blank:
            problems.fail(None, None, "the file is empty")

    return Rows(rows(), header=[n for n in names if n], digest=reading.digest,
                strict_utf8=True)


def excel_rows(path: Path, sheet: str | None, problems: Problems) -> Rows:
    """The first sheet (or the named one), each cell as the text Excel shows."""
    import openpyxl

    reading = Reading(path, problems, text=False)
    data = reading.read()
    reading.close()
    try:
        book = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    except Exception as exc:  # zip, XML and openpyxl errors have no common base
        problems.fail(None, None, f"cannot be read as an Excel workbook (.xlsx): {exc}")
    if sheet is not None and sheet not in book.sheetnames:
        names = ", ".join(repr(s) for s in book.sheetnames)
        problems.fail(None, "--sheet", f"no sheet named {sheet!r}; sheets: {names}")
    sheet = sheet if sheet is not None else str(book.sheetnames[0])
    cells = book[sheet].iter_rows(values_only=True)
    header = next(cells, None)
    if header is None or not any(_cell_text(v).strip() for v in header):
        problems.fail(None, None, "the sheet is empty")
    names = _names([_cell_text(v) for v in header])

    def rows() -> Iterator[Row]:
        try:
            yield from _numbered(_excel_batches(cells), names)
        except Exception as exc:
            if isinstance(exc, JobFileError):
                raise
            problems.fail(None, None, f"cannot be read as an Excel workbook (.xlsx): {exc}")
        finally:
            book.close()

    return Rows(rows(), header=[n for n in names if n], sheet=sheet, digest=reading.digest)


def _excel_batches(cells: Iterator[tuple]) -> Iterator[list[list[str]]]:
    batch: list[list[str]] = []
    for row in cells:
        batch.append([_cell_text(v) for v in row])
        if len(batch) >= CHUNK_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _chain(first: Any, frames: Iterable[Any]) -> Iterator[Any]:
    yield first
    yield from frames


def _numbered(batches: Iterable[list[list[str]]], names: list[str | None]) -> Iterator[Row]:
    """Rows as {column: text}, numbered from 2. Wholly blank rows (trailing ';;;' lines
    from Excel, spacer rows) are skipped, not errors. A column without a name is
    called 'column C' and a row holds it only when its cell is not empty; cells past
    the last named column likewise."""
    number = 1
    width = len(names)
    plain = None not in names  # every column named: a row is the names zipped with its cells
    for batch in batches:
        for cells in batch:
            number += 1
            if not "".join(cells).strip():
                continue
            if plain and len(cells) == width:
                yield f"row {number}", dict(zip(names, cells, strict=True))
                continue
            row = {}
            for index, value in enumerate(cells):
                name = names[index] if index < width else None
                if name is not None:
                    row[name] = value
                elif value.strip():
                    row[f"column {_column_letter(index)}"] = value
            yield f"row {number}", row


def _names(header: list[str]) -> list[str | None]:
    """Names from row 1; None for a column without one (see `_numbered`)."""
    return [str(name).strip() or None for name in header]


def _column_letter(index: int) -> str:
    """0 → 'A', 25 → 'Z', 26 → 'AA': the name a spreadsheet shows."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(ord("A") + rest) + letters
    return letters


def _first_line(path: Path) -> str:
    with open(path, "rb") as fh:
        return fh.readline().decode("utf-8-sig", "replace")


def _sniff_delimiter(header_line: str) -> str:
    """The delimiter (comma, semicolon, tab) that yields a 'prompt' column, else the
    most frequent one in the header, else comma. Excel in many locales writes ';'."""
    candidates = sorted((",", ";", "\t"), key=header_line.count, reverse=True)
    for sep in candidates:
        cells = next(csv.reader([header_line], delimiter=sep), [])
        if "prompt" in map(normalize_column, cells):
            return sep
    return candidates[0]


def _refuse_table(path: Path, sep: str, quoting: int, exc: Exception,
                  problems: Problems) -> None:
    """pandas refused the table: name every row with more cells than the header
    (almost always a prompt with an unquoted delimiter in it), else say why."""
    hint = ("a prompt containing a tab cannot be in a TSV file" if sep == "\t"
            else f"put a prompt containing {sep!r} in double quotes")
    width = None
    with open(path, encoding="utf-8-sig", errors="replace", newline="") as fh:
        for number, record in enumerate(csv.reader(fh, delimiter=sep, quoting=quoting),
                                        start=1):
            if width is None:
                width = len(record)
            elif len(record) > width:
                problems.add(f"row {number}", None,
                             f"has {len(record)} cells but the header has {width}; {hint}")
    problems.raise_if_any()
    reason = " ".join(str(exc).split())
    problems.fail(None, None, f"cannot be read as a table ({reason}); "
                  "is a closing double quote missing?")


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
