"""The one place that says what a job's state is: done, failed or pending (and, for
pending, why and whether a v2 request can be collected instead of submitting
again). Planning, resume, recovery, `status`, `validate` and both reports ask here,
so no two of them can disagree (SPEC §8 S1, S2).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import StopReason
from .records import JobRecord
from .store import ImageStore, is_complete_image

if TYPE_CHECKING:
    from .jobs import Job

DONE, FAILED, PENDING = "done", "failed", "pending"
STATES = (DONE, FAILED, PENDING)

#: Why a job is pending, as the words a user reads.
PENDING_REASONS = {
    "never_tried": "not run yet",
    "edited": "the row changed since it ran: the next run generates it again",
    "image_missing": "its image is missing or incomplete: the next run generates it again",
    "submitted": "submitted (v2): the next run collects the result",
    "found": "its image was found on disk after a crash: the next run keeps it",
    **{reason.word: reason.advice for reason in StopReason},
}


@dataclass(frozen=True, slots=True)
class JobState:
    state: str  # done | failed | pending
    reason: str = ""  # pending: a PENDING_REASONS key; failed: retryable | permanent
    request_id: str | None = None  # v2: collect this request instead of submitting again
    request_billed: bool = False  # its completion was already counted
    found: tuple[str, ...] = ()  # the images on disk a crash left without their line

    @property
    def retryable(self) -> bool:
        return self.reason == "retryable"

    def words(self) -> str:
        """Why the job is pending, for people ('' for other states)."""
        return PENDING_REASONS.get(self.reason, self.reason) if self.state == PENDING else ""


DONE_STATE = JobState(DONE)
_NEVER_TRIED = JobState(PENDING, "never_tried")
_EDITED = JobState(PENDING, "edited")
_MISSING = JobState(PENDING, "image_missing")


def job_state(job: Job, record: JobRecord | None, store: ImageStore) -> JobState:
    """The state of a job, whose current content has the fingerprint `job.fp`.

    Done means a complete image of the current content is on disk: the latest line
    is a success for this fingerprint and the file has the size that line recorded.
    A line about other content (an edited row) counts for nothing: no image, no v2
    request, no pending reason is inherited. An image with no success line is
    `found` only if a line for the current content shows the job was being
    generated, it is a complete image, and it is not the image of an earlier success.
    """
    if record is None:
        return _NEVER_TRIED
    if record.fp is not None and record.fp != job.fp:
        # a row changed, or changed back: the last success may be of this very content
        if record.image_fp == job.fp and _complete(record, store) and _unchanged(record, store):
            return DONE_STATE
        return _EDITED
    if record.kind == "succeeded":
        return DONE_STATE if _complete(record, store) else _MISSING
    found = _found(job, record, store)
    if found:
        return JobState(PENDING, "found", found=found)
    billed = record.request_status == "COMPLETED"
    if record.kind == "failed":
        kind = "retryable" if record.retryable else "permanent"
        return JobState(FAILED, kind, record.request_id, billed)
    reason = "submitted" if record.kind == "submitted" else record.reason or "interrupted"
    return JobState(PENDING, reason, record.request_id, billed)


def _complete(record: JobRecord, store: ImageStore) -> bool:
    """Whether every image of the last success is on disk at the size it recorded."""
    if record.files and record.sizes and len(record.files) == len(record.sizes):
        return all(store.size(file) == size
                   for file, size in zip(record.files, record.sizes, strict=True))
    size = store.size(record.file) if record.file else None
    return size == record.bytes if record.bytes is not None else bool(size)


def _unchanged(record: JobRecord, store: ImageStore) -> bool:
    """Whether the last success's first image still has the bytes it recorded: a
    generation of other content since may have replaced it before a crash kept it off
    the record. Read only for a row changed back, so rarely."""
    try:
        data = store.read(record.file) if record.file else b""
    except OSError:
        return False
    return record.sha16 is not None and hashlib.sha256(data).hexdigest()[:16] == record.sha16


def _found(job: Job, record: JobRecord, store: ImageStore) -> tuple[str, ...]:
    """The images on disk that the latest line's generation wrote: every image of its
    answer (one, or the model's `samples`) written after that line (an older image, or
    one a different row's content left, is older), complete, the first not the image
    of an earlier success. A partial set is not found: its answer is fetched again
    (v2) or generated again, never kept short of images that were paid for."""
    files = tuple(store.find(job.id, n) for n in range(1, job.images() + 1))
    for n, file in enumerate(files, start=1):
        if file is None or not _after(store.mtime(file), record.ts):
            return ()
        try:
            data = store.read(file)
        except OSError:
            return ()
        if not is_complete_image(data) or (
                n == 1 and hashlib.sha256(data).hexdigest()[:16] == record.sha16):
            return ()
    return files  # type: ignore[return-value]


def _after(mtime: float | None, ts: str) -> bool:
    """Whether a file's mtime is after a manifest timestamp ('2026-12-01T02:04:13.915Z')."""
    if mtime is None or not ts:
        return False
    try:
        when = datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return False
    return mtime > when
