"""Which rows of a job file claim one id: a user id that an earlier row already has,
and a user id that equals another row's content id (copied from an old results.csv,
say), either of which would make two jobs share one image. Found once the whole file
is read, from an 8-byte hash a row; the job index is read again only when two hashes
meet. Each returns the places of the rows that must be left out (`--skip-invalid`)."""

from __future__ import annotations

import re
import sys
from array import array
from typing import TYPE_CHECKING

from .jobindex import JobIndex
from .readers import Problems
from .records import job_key

if TYPE_CHECKING:
    from .jobs import Job

__all__ = ["clashes", "duplicates"]

# A content id: 16 hex digits of fingerprint, the occurrence from the 2nd copy on, and
# the variant from the 2nd on.
_CONTENT_ID = re.compile(r"([0-9a-f]{16})(?:-\d+)?(?:-v\d+)?")


def duplicates(user_keys: array, refused: dict[str, str], index: JobIndex,
               problems: Problems) -> set[str]:
    """Every row whose user id an earlier row already has, named with both rows. Found
    once the file is read, from 8 bytes a row: the index is read again only when two
    hashes meet. Returns the later rows' places (left out with skip_invalid)."""
    import numpy as np

    keys = np.frombuffer(user_keys, np.uint64)
    ordered = np.sort(keys)
    twice = set(ordered[1:][ordered[1:] == ordered[:-1]].tolist())
    if refused:
        theirs = np.fromiter(map(job_key, refused), np.uint64, len(refused))
        twice |= set(theirs[np.isin(theirs, keys)].tolist())
    if not twice:
        return set()
    # id → (row number, place, valid, how the message names it)
    places: dict[str, list[tuple[int, str, bool, str]]] = {}
    for user_id, location in refused.items():
        if job_key(user_id) in twice:
            places.setdefault(user_id, []).append((_number(location), location, False,
                                                   location))
    variant, previous = 0, ""
    for job in index:  # a row's variants follow one another: the n-th is variant n
        variant = variant + 1 if job.source == previous else 1
        previous = job.source
        if not _is_content_id(job) and job_key(job.id) in twice:
            named = job.source if variant == 1 else (
                f"{job.source} (variant {variant} of {job.id.removesuffix(f'-v{variant}')!r})")
            places.setdefault(job.id, []).append((_number(job.source), job.source, True,
                                                  named))
    later: set[str] = set()
    for user_id, found in places.items():
        (*_, first), *rest = sorted(found)
        for _, location, valid, named in rest:
            problems.add(location, "id", f"{user_id!r} is used twice: {first} and {named}")
            if valid:
                later.add(location)
    return later


def _number(location: str) -> int:
    """'row 14' → 14: where a row is, to put rows found apart back in order."""
    number = location.rpartition(" ")[2]
    return int(number) if number.isdigit() else 0


def _is_content_id(job: Job) -> bool:
    return job.id == job.fp or job.id.startswith(job.fp + "-")


def clashes(seen: set[int], index: JobIndex, problems: Problems) -> set[str]:
    """A user id that equals another row's content id (e.g. copied from an old
    results.csv) would make two jobs share one image; name both rows. Returns the
    content-id rows."""
    suspects = set()
    for job in index:  # only user ids shaped like a content id of this file can clash
        match = None if _is_content_id(job) else _CONTENT_ID.fullmatch(job.id)
        if match and int(match[1], 16) in seen:
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
            if _is_content_id(job):  # two user ids alike are `duplicates`' to name
                problems.add(job.source, "id", f"{job_id!r} is used twice: {users[0].source} "
                             f"(its id column) and {job.source} (its content id)",
                             order=sys.maxsize)
                clashes.add(job.source)
    return clashes
