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
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from . import cells
from .config import DEFAULT_ASPECT_RATIO, MODEL
from .errors import JobFileError
from .jobids import clashes, duplicates
from .jobindex import JobIndex
from .models import MODELS, canonical_ratio, samples_of
from .models import model as model_of
from .money import PRICE_MICRO
from .params import Defaults, Sending, fingerprint
from .readers import Problems, Rows, check_path, normalize_column, open_rows
from .records import job_key

__all__ = ["Job", "JobFile", "canonical_ratio", "content_id", "fingerprint", "load_jobs"]

# `variants`, not `count`: a column named Count is common in product sheets (stock
# counts) and must never multiply what a run spends.
RESERVED_COLUMNS = ("prompt", "aspect_ratio", "id", "model", "variants")

_NO_METADATA: dict[str, Any] = {}  # shared by every job without metadata: never mutated


@dataclass(frozen=True, slots=True)
class Job:
    """One image to generate. `id` is stable across runs (SPEC §2); `fp` is the
    fingerprint of what is sent for it (SPEC §8 S2), given by keyword."""

    id: str
    prompt: str
    aspect_ratio: str  # '' for a model that takes none
    fp: str = field(kw_only=True)  # params.fingerprint of what is sent
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # where it came from: "row 14", "item 3", "line 5"
    model: str = MODEL
    params: dict[str, Any] = field(default_factory=dict)  # sent besides the prompt
    price: int = PRICE_MICRO  # micro-dollars for one request

    def body(self) -> dict[str, Any]:
        """The JSON sent for it."""
        return {"prompt": self.prompt, **self.params}

    def images(self) -> int:
        """How many images one answer for it holds (the model's `samples`)."""
        return samples_of(model_of(self.model), self.params)


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
    defaults: Defaults = field(default_factory=Defaults)  # what rows left out, as given
    models: dict[str, int] = field(default_factory=dict)  # jobs per model
    param_columns: list[str] = field(default_factory=list)  # every parameter sent, sorted
    cost_micro: int = 0  # one request of every job
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


def content_id(prompt: str, aspect_ratio: str, occurrence: int) -> str:
    """The id of a Luma job without a user id: same content, same id; the n-th copy
    gets '-n'."""
    digest = fingerprint(MODEL, prompt, aspect_ratio)
    return digest if occurrence == 1 else f"{digest}-{occurrence}"


def load_jobs(
    path: str | Path, *, default_ratio: str = DEFAULT_ASPECT_RATIO, sheet: str | None = None,
    skip_invalid: bool = False, model: str = MODEL, params: dict[str, str] | None = None,
    variants: int = 1, price_micro: int | None = None,
) -> JobFile:
    """Read and validate a job file. Raises JobFileError naming every problem found.
    With `skip_invalid`, rows with problems are left out and listed in
    `JobFile.invalid` instead; a problem with the file itself still raises, and so does
    a file with no valid row. `model`, `params` (NAME → text), `variants` and
    `price_micro` apply to the rows that do not say (see `params.Defaults`)."""
    path = Path(path)
    suffix = path.suffix.lower()
    problems = Problems(f"{path} (sheet {sheet!r})" if sheet and suffix == ".xlsx"
                        else str(path))
    check_path(path, problems)
    fallback = canonical_ratio(default_ratio)
    if fallback is None:
        raise JobFileError([f"--aspect-ratio {default_ratio!r} is not one of {cells.ALLOWED}"])
    defaults = Defaults(model, fallback, dict(params or {}), variants, price_micro)

    source = open_rows(path, suffix, sheet, problems)
    header = _header(source, problems) if source.header is not None else None
    fallback = cells.ratio(source.default_ratio, fallback, problems, "defaults", "aspect_ratio")
    if problems.count:  # the file's own problems (defaults, header): nothing is skippable
        problems.raise_if_any()
    index = JobIndex(_job)
    facts = _validate(source, header, replace(defaults, aspect_ratio=fallback), problems,
                      index, skip_invalid)
    if not skip_invalid or not facts.count or facts.file_problems:
        problems.raise_if_any()
    if not facts.count:
        problems.fail(None, None, "has a header but no jobs" if header else "has no jobs")
    problems.sort()
    invalid = [(*place, line) for place, line in zip(problems.places, problems.lines,
                                                     strict=True)]
    return JobFile(path=path.resolve(), sha256=source.digest.hexdigest(),
                   default_ratio=fallback, sheet=source.sheet, job_count=facts.count,
                   ratios=facts.ratios, metadata_columns=list(facts.metadata), index=index,
                   defaults=defaults, models=facts.models, param_columns=sorted(facts.params),
                   cost_micro=facts.cost, invalid=invalid, invalid_unlisted=problems.unshown)


def _job(job_id: str, prompt: str, ratio: str, metadata: dict[str, Any], source: str,
         fp: str, model: str, params: dict[str, Any], price: int) -> Job:
    return Job(job_id, prompt, ratio, metadata, source, model, params, price, fp=fp)


def _header(source: Rows, problems: Problems) -> dict[str, str]:
    """A table's one header for every row: normalized name → name as written."""
    assert source.header is not None
    header = _columns(source.header, problems, "row 1")
    if not source.strict_utf8:
        for name, char in _Roles(header).bad_names.items():
            problems.add("row 1", name, cells.unencodable(char, "the column name "))
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
    models: dict[str, int] = field(default_factory=dict)
    params: set[str] = field(default_factory=set)
    cost: int = 0
    file_problems: bool = False  # a problem with the options or a model: nothing is skippable


def _validate(source: Rows, header: dict[str, str] | None, defaults: Defaults,
              problems: Problems, index: JobIndex, skip_invalid: bool = False) -> _Facts:
    """Check every row and write the valid ones to the index as jobs with stable ids.
    Tables share one header; YAML and JSONL items each bring their own keys. Written
    for a million rows: one pass; ratios looked up once per distinct spelling; one
    hash per row; what is kept per row is its user id's hash or its fingerprint (to
    find a duplicate, and to number identical rows), never the row."""
    facts = _Facts()
    user_keys = array("Q")  # a 64-bit hash of each user id: duplicates are found at the end
    refused: dict[str, str] = {}  # user id → location, of rows that were not valid
    seen: set[int] = set()  # fingerprints of rows without a user id
    copies: dict[int, int] = {}  # fingerprint → rows with it, once there are two
    sendings: dict[str, Sending] = {}  # model → its rules
    unpriced: set[str] = set()
    roles = _Roles(header) if header else None
    roles_of: dict[tuple[str, ...], _Roles] = {}  # YAML, JSONL: the roles of each key set
    with _collector_paused():
        for location, row in source.rows:
            if header is None:
                roles = roles_of.get(tuple(row)) or _row_roles(row, roles_of, problems,
                                                               location)
            assert roles is not None
            known = problems.count
            prompt = cells.prompt(row.get(roles.prompt), problems, location, roles.prompt)
            user_id = cells.user_id(row.get(roles.id), problems, location, roles.id)
            slug = cells.model(row.get(roles.model), defaults.model, problems, location,
                               roles.model) or defaults.model
            sending = sendings.get(slug)
            if sending is None:
                sending = sendings[slug] = Sending(slug, defaults, problems)
                facts.file_problems |= problems.count != known
                known = problems.count
            ratio = cells.row_ratio(row.get(roles.ratio), sending, defaults, problems,
                                    location, roles.ratio)
            names = tuple(row)
            params = sending.read(row, names, ratio, location, problems)
            count = cells.variants(row.get(roles.variants), defaults.variants, problems,
                                   location, roles.variants)
            if not source.strict_utf8:
                cells.encodable(row, roles.texts, roles.bad_names, problems, location)
            if prompt is None or user_id is None:
                continue
            if problems.count != known:
                if user_id:
                    refused.setdefault(user_id, location)
                continue  # a row with a problem is never a job
            price = sending.cost(params)
            if price is None:
                if slug not in unpriced:
                    unpriced.add(slug)
                    problems.add(None, "model", f"{slug!r} is not in batchgen's registry "
                                 f"({', '.join(MODELS)}), so its price is unknown: say what "
                                 "one request costs with --price", order=0)
                    facts.file_problems = True
                continue
            extra = {k: v for k, v in params.items() if k != "aspect_ratio"} \
                if len(params) > (ratio is not None) else _NO_METADATA
            fp = fingerprint(slug, prompt, ratio or "", extra)
            if user_id:
                job_id = user_id
            else:
                number = int(fp, 16)
                if number in seen:
                    copies[number] = copies.get(number, 1) + 1
                    job_id = f"{fp}-{copies[number]}"
                else:
                    seen.add(number)
                    job_id = fp
            used = sending.not_metadata(names, roles.reserved) \
                if len(row) > roles.named else roles.reserved
            metadata = {k: v for k, v in row.items() if k not in used} \
                if len(row) > roles.named else _NO_METADATA
            for name in metadata:
                if name not in facts.metadata:
                    facts.metadata[name] = None
            facts.params.update(extra)
            for variant in range(1, count + 1):
                variant_id = job_id if variant == 1 else f"{job_id}-v{variant}"
                if user_id:
                    user_keys.append(job_key(variant_id))
                index.add((variant_id, prompt, ratio or "", metadata, location, fp, slug,
                           params, price))
            facts.ratios[ratio or ""] = facts.ratios.get(ratio or "", 0) + count
            facts.models[slug] = facts.models.get(slug, 0) + count
            facts.count += count
            facts.cost += price * count
    index.seal()
    skip = duplicates(user_keys, refused, index, problems)
    if seen and (user_keys or refused):
        skip |= clashes(seen, index, problems)
    if skip and skip_invalid:
        _leave_out(skip, index, facts)
        index.skip |= skip
    return facts


def _leave_out(rows: set[str], index: JobIndex, facts: _Facts) -> None:
    """Take every job of the skipped rows (each one of their variants) out of the
    counts and the cost. A row is skipped only once the whole file is read (a duplicate
    id), so its jobs are found by one more pass over the index, run only then: no
    per-row figures are kept for the rows that are not skipped."""
    for job in index:
        if job.source in rows:
            facts.count -= 1
            facts.cost -= job.price
            facts.ratios[job.aspect_ratio] -= 1
            facts.models[job.model] -= 1
    facts.ratios = {ratio: n for ratio, n in facts.ratios.items() if n}
    facts.models = {slug: n for slug, n in facts.models.items() if n}


class _Roles:
    """Which original column plays which part: prompt, aspect ratio, id, model, variants,
    metadata. (Which columns are a model's parameters is `Sending`'s to say.)"""

    __slots__ = ("prompt", "ratio", "id", "model", "variants", "metadata", "texts",
                 "bad_names", "reserved", "named")

    def __init__(self, columns: dict[str, str]):
        self.prompt = columns.get("prompt", "prompt")
        self.ratio = columns.get("aspect_ratio", "aspect_ratio")
        self.id = columns.get("id", "id")
        self.model = columns.get("model", "model")
        self.variants = columns.get("variants", "variants")
        self.reserved = {self.prompt, self.ratio, self.id, self.model, self.variants}
        self.named = sum(key in RESERVED_COLUMNS for key in columns)  # rows this long: no more
        self.metadata = [name for key, name in columns.items() if key not in RESERVED_COLUMNS]
        self.texts = [self.prompt, self.id, *self.metadata]  # sent or recorded: must encode
        # column → its first unencodable character (only a metadata name can have one)
        self.bad_names = {name: char for name in self.metadata
                          if (char := cells.lone_surrogate(name)) is not None}


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
