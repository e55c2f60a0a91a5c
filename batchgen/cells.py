"""One cell of a job file's row: what it holds, or a problem at its row and column.

Each function reads one kind of cell (prompt, id, aspect ratio, variants) the same way
for every format, and adds to `problems` rather than raising, so a file's problems are
all listed together.
"""

from __future__ import annotations

from typing import Any

from .config import ASPECT_RATIOS, MAX_PROMPT_CHARS
from .models import canonical_ratio, canonical_slug
from .params import Defaults, Sending, lone_surrogate, unencodable
from .readers import Problems

MAX_VARIANTS = 100  # jobs one row may make
ALLOWED = ", ".join(ASPECT_RATIOS)


def model(value: Any, default: str, problems: Problems, location: str,
          column: str) -> str | None:
    """The row's model slug (a registry slug in its own case), the default for an empty
    cell, or None (and a problem) for what cannot be a slug."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return default
    slug = canonical_slug(value) if isinstance(value, str) else None
    if slug is None:
        problems.add(location, column, f"{value!r} is not a model slug (letters, digits, "
                     "'.', '-' and '_', as in flux-schnell; `batchgen models` lists some)")
    return slug


def row_ratio(value: Any, sending: Sending, defaults: Defaults, problems: Problems,
              location: str, column: str) -> str | None:
    """The row's canonical aspect ratio, or None for a model that takes none (where a
    ratio in the row is a problem if the model is a known one)."""
    text = "" if value is None else str(value).strip()
    if sending.ratio is None:
        if text and sending.model is not None:
            sizes = [p.name for p in sending.model.params
                     if p.name in ("width", "height", "img_width", "img_height", "resolution")]
            problems.add(location, column, f"{sending.slug} takes no aspect ratio"
                         + (f" (it takes {' and '.join(sizes)})" if sizes else "")
                         + ": leave the column empty for it")
        elif text:
            problems.add(location, column, f"{sending.slug} is not in batchgen's registry, "
                         "which cannot tell whether it takes an aspect ratio: send one as "
                         "written with a param.aspect_ratio column, or leave this one empty")
        return None
    if not text:
        return defaults.aspect_ratio
    ratio = sending.ratio_of(text)
    if ratio is None:
        problems.add(location, column, f"{text!r} is not one of "
                     + ", ".join(str(c) for c in sending.ratio.choices))
        return defaults.aspect_ratio
    return ratio


def variants(value: Any, default: int, problems: Problems, location: str,
             column: str) -> int:
    """How many jobs a row makes: its `variants` cell, else --variants."""
    text = "" if value is None else str(value).strip()
    if not text:
        return default
    if text.isascii() and text.isdigit() and 1 <= int(text) <= MAX_VARIANTS:
        return int(text)
    problems.add(location, column, f"must be a whole number from 1 to {MAX_VARIANTS}, "
                 f"not {text!r}")
    return 1


def prompt(value: Any, problems: Problems, location: str, column: str) -> str | None:
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


def ratio(value: Any, fallback: str, problems: Problems, location: str, column: str) -> str:
    """The canonical ratio of a YAML `defaults` entry; empty or missing → the fallback."""
    text = "" if value is None else str(value).strip()
    canonical = canonical_ratio(text) if text else fallback
    if canonical is None:
        problems.add(location, column, f"{text!r} is not one of {ALLOWED}")
        return fallback
    return canonical


def user_id(value: Any, problems: Problems, location: str, column: str) -> str | None:
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


def encodable(row: dict[str, Any], texts: list[str], bad_names: dict[str, str],
              problems: Problems, location: str) -> None:
    """A problem per column whose prompt, id or metadata (its name included) holds
    text UTF-8 cannot encode. The ratio needs no check: such a ratio is already 'not
    one of' the allowed ones."""
    for column in texts:
        if column in bad_names:
            problems.add(location, column, unencodable(bad_names[column],
                                                        "the column name "))
            continue
        value = row.get(column)
        if value is None or (value.__class__ is str and value.isascii()):  # nearly always
            continue
        if (char := lone_surrogate(value)) is not None:
            problems.add(location, column, unencodable(char))
