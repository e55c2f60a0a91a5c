"""Every job's state in a manifest, folded into columns.

A dict of a million small record objects costs hundreds of megabytes; the same facts
as numpy columns (a 64-bit key per job id, its latest event, fingerprint, money,
attempts and the size and hash of its last image) cost about 50 bytes a job. The
few facts that are text and rare - an error message, a v2 request id, an image file
whose name is not the usual one - live in a small side table.

Events are folded in two steps: `Events` appends each manifest line to columns in
file order, and `fold` groups them by job (the latest line wins; money adds up; the
image is that of the latest success), on top of an earlier fold when there is one.
`Records.get(job_id)` gives back a `JobRecord` built on demand.

Job ids are keyed by 64 bits of their BLAKE2b hash: two ids of a million share a key
with a probability of about 3e-8.
"""

from __future__ import annotations

import hashlib
from array import array
from dataclasses import dataclass
from typing import Any

import numpy as np

from .events import Failed, JobEvent, Pending, Submitted, Succeeded
from .store import EXTENSIONS, IMAGES_DIR, safe_stem

KINDS = ("", "succeeded", "failed", "submitted", "pending")
_KIND = {kind: code for code, kind in enumerate(KINDS)}
COLUMNS = ("kind", "fp", "cost", "attempts", "size", "ext", "sha", "status", "retryable",
           "reason", "image", "image_fp")
_TYPES = {"kind": "B", "fp": "Q", "cost": "q", "attempts": "L", "size": "q", "ext": "B",
          "sha": "Q", "status": "h", "retryable": "B", "reason": "H", "image": "B",
          "image_fp": "Q"}
LATEST = ("kind", "fp", "attempts", "status", "retryable", "reason")  # of the latest line
IMAGE = ("size", "ext", "sha", "image_fp")  # of the latest success
OTHER_FILE = 255  # `ext` of an image whose name is not the usual one: see the side table
_NOTHING: dict[str, Any] = {}


def job_key(job_id: str) -> int:
    digest = hashlib.blake2b(job_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def fp_number(fp: str | None) -> int:
    """A fingerprint (16 hex digits) as a number; 0 for none."""
    if not fp:
        return 0
    try:
        return int(fp[:16], 16) or 1
    except ValueError:  # a hand-edited manifest: any stable number will do
        return job_key(fp)


def fp_text(number: int) -> str | None:
    return f"{number:016x}" if number else None


@dataclass(slots=True)
class JobRecord:
    """What the manifest says about one job: its latest line, its money, the image of
    its last success and any v2 request that can still be collected."""

    kind: str  # the latest job event: succeeded | failed | submitted | pending
    fp: str | None  # fingerprint of what that line was about (None: an old manifest)
    cost_micro: int = 0  # over every line
    attempts: int = 0
    file: str | None = None  # the last success's image, its size and hash (16 hex digits)
    bytes: int | None = None
    sha16: str | None = None
    error: str = ""
    status: int | None = None
    retryable: bool = False
    reason: str = ""  # pending: why
    request_id: str | None = None  # v2: a request to collect rather than submit again
    request_status: str | None = None  # COMPLETED: already billed and counted
    ts: str = ""  # when the latest line was written (kept for jobs not done)
    files: list[str] | None = None  # every image of its last success, when it had several
    sizes: list[int] | None = None
    image_fp: str | None = None  # the fingerprint of the content of its last success


class Events:
    """Job lines appended in file order, before they are folded."""

    def __init__(self, reasons: list[str] | None = None, side: dict[int, dict] | None = None):
        self.columns = {name: array(_TYPES[name]) for name in COLUMNS}
        self.keys = array("Q")
        self.reasons = reasons if reasons is not None else [""]
        self.side: dict[int, dict[str, Any]] = side if side is not None else {}

    def __len__(self) -> int:
        return len(self.keys)

    def add(self, event: JobEvent, fp: int) -> None:
        key = job_key(event.job_id)
        self.keys.append(key)
        c = self.columns
        c["kind"].append(_KIND[event.name])
        c["fp"].append(fp)
        side = self.side.get(key)
        if isinstance(event, Submitted):
            for name in ("cost", "attempts", "status", "retryable", "reason"):
                c[name].append(0)
            self._image(None, 0)
            self._set(key, side, request_id=event.request_id, request_status=None, ts=event.ts)
            return
        c["cost"].append(event.cost)
        c["attempts"].append(event.attempts)
        if isinstance(event, Succeeded):
            c["status"].append(0)
            c["retryable"].append(0)
            c["reason"].append(0)
            other = event.file != _usual_file(event.job_id, event.file)
            self._image(event, fp, other)
            self._set(key, side, request_id=None, request_status=None, ts=None,
                      file=event.file if other else None, files=event.files,
                      sizes=event.sizes if event.files else None)
            return
        self._image(None, 0)
        assert isinstance(event, (Failed, Pending))
        c["status"].append((event.status or 0) if isinstance(event, Failed) else 0)
        c["retryable"].append(isinstance(event, Failed) and bool(event.retryable))
        c["reason"].append(self._reason(event.reason) if isinstance(event, Pending) else 0)
        self._set(key, side, request_id=event.request_id,
                  request_status=event.request_status if event.request_id else None,
                  ts=event.ts, **({"error": event.error} if isinstance(event, Failed) else {}))

    def _image(self, event: Succeeded | None, fp: int, other: bool = False) -> None:
        c = self.columns
        if event is None:
            for name in ("size", "ext", "sha", "image", "image_fp"):
                c[name].append(-1 if name == "size" else 0)
            return
        c["image_fp"].append(fp)
        c["size"].append(-1 if event.bytes is None else event.bytes)
        ext = event.file.rpartition(".")[2]
        c["ext"].append(OTHER_FILE if other or ext not in EXTENSIONS else EXTENSIONS.index(ext))
        c["sha"].append(int(event.sha256[:16], 16) if event.sha256 else 0)
        c["image"].append(1)

    def _reason(self, reason: str) -> int:
        try:
            return self.reasons.index(reason)
        except ValueError:
            self.reasons.append(reason)
            return len(self.reasons) - 1

    def _set(self, key: int, side: dict | None, **facts: Any) -> None:
        """Keep the facts that are not None, forget those that are."""
        if side is None:
            facts = {k: v for k, v in facts.items() if v is not None}
            if facts:
                self.side[key] = facts
            return
        for name, value in facts.items():
            if value is None:
                side.pop(name, None)
            else:
                side[name] = value
        if not side:
            del self.side[key]


def _usual_file(job_id: str, file: str) -> str:
    return f"{IMAGES_DIR}/{safe_stem(job_id)}.{file.rpartition('.')[2]}"


class Records:
    """The folded state of every job: `get(job_id)` → JobRecord or None."""

    def __init__(self, keys: np.ndarray, columns: dict[str, np.ndarray], reasons: list[str],
                 side: dict[int, dict[str, Any]]):
        self.keys = keys
        self.columns = columns
        self.reasons = reasons
        self.side = side

    @classmethod
    def empty(cls) -> Records:
        return cls(np.zeros(0, np.uint64), {name: np.zeros(0, _TYPES[name]) for name in COLUMNS},
                   [""], {})

    def __len__(self) -> int:
        return len(self.keys)

    def _index(self, job_id: str) -> int | None:
        key = np.uint64(job_key(job_id))
        i = int(self.keys.searchsorted(key))
        return i if i < len(self.keys) and self.keys[i] == key else None

    def __contains__(self, job_id: object) -> bool:
        return isinstance(job_id, str) and self._index(job_id) is not None

    def get(self, job_id: str) -> JobRecord | None:
        i = self._index(job_id)
        return None if i is None else self._record(job_id, i)

    def get_many(self, job_ids: list[str]) -> list[JobRecord | None]:
        """`get` for many jobs at once (a chunk of a job file): one vectorized search,
        and the columns of the jobs found taken out together."""
        if not len(self.keys) or not job_ids:
            return [None] * len(job_ids)
        keys = np.fromiter(map(job_key, job_ids), np.uint64, len(job_ids))
        where = self.keys.searchsorted(keys)
        where[where >= len(self.keys)] = 0
        hits = np.flatnonzero(self.keys[where] == keys)
        found = where[hits]
        records: list[JobRecord | None] = [None] * len(job_ids)
        rows = zip(hits.tolist(), self.keys[found].tolist(),
                   *(self.columns[name][found].tolist() for name in COLUMNS), strict=True)
        for at, key, *values in rows:
            records[at] = self._build(job_ids[at], key, *values)
        return records

    def done_sizes(self, job_ids: list[str], fps: list[str]) -> list[tuple[str, int] | None]:
        """For each job, the image and size that would make it done when its latest
        line is a success of its current content (`fps`) with one image by its usual
        name; None for every other job, which `get` and `state.job_state` judge in full.
        Vectorized: most jobs of a resumed batch are such successes, and building a
        record for each costs more than the `stat` that checks it."""
        answer: list[tuple[str, int] | None] = [None] * len(job_ids)
        if not len(self.keys) or not job_ids:
            return answer
        keys = np.fromiter(map(job_key, job_ids), np.uint64, len(job_ids))
        where = self.keys.searchsorted(keys)
        where[where >= len(self.keys)] = 0
        c = self.columns
        wanted = np.fromiter(map(fp_number, fps), np.uint64, len(fps))
        quick = ((self.keys[where] == keys) & (c["kind"][where] == _KIND["succeeded"])
                 & (c["fp"][where] == wanted) & (c["image"][where] == 1)
                 & (c["size"][where] >= 0) & (c["ext"][where] < len(EXTENSIONS)))
        hits = np.flatnonzero(quick)
        side = self.side
        for i, key, size, ext in zip(hits.tolist(), keys[hits].tolist(),
                                     c["size"][where[hits]].tolist(),
                                     c["ext"][where[hits]].tolist(), strict=True):
            if key not in side:  # a file by another name, several images: in full
                answer[i] = (f"{IMAGES_DIR}/{safe_stem(job_ids[i])}.{EXTENSIONS[ext]}", size)
        return answer

    def __getitem__(self, job_id: str) -> JobRecord:
        record = self.get(job_id)
        if record is None:
            raise KeyError(job_id)
        return record

    def _record(self, job_id: str, i: int) -> JobRecord:
        return self._build(job_id, int(self.keys[i]),
                           *(self.columns[name][i].item() for name in COLUMNS))

    def _build(self, job_id: str, key: int, kind: int, fp: int, cost: int, attempts: int,
               size: int, ext: int, sha: int, status: int, retryable: int, reason: int,
               image: int, image_fp: int) -> JobRecord:
        side = self.side.get(key, _NOTHING)
        file = None
        if image:
            file = side.get("file") or (
                f"{IMAGES_DIR}/{safe_stem(job_id)}.{EXTENSIONS[ext]}" if ext < len(EXTENSIONS)
                else None)
        return JobRecord(
            KINDS[kind], fp_text(fp), cost, attempts, file, None if size < 0 else size,
            f"{sha:016x}" if sha else None, side.get("error", ""), status or None,
            bool(retryable), self.reasons[reason], side.get("request_id"),
            side.get("request_status"), side.get("ts", ""), side.get("files"),
            side.get("sizes"), fp_text(image_fp) if image else None,
        )

    def fold(self, events: Events) -> Records:
        """These records with `events` (later lines) applied."""
        if not len(events):
            return self
        keys = np.concatenate([self.keys, np.frombuffer(events.keys, np.uint64)])
        order = np.argsort(keys, kind="stable")  # by job, in file order within a job
        sorted_keys = keys[order]
        starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]])
        ends = np.r_[starts[1:], len(keys)] - 1
        del keys

        def merged(name: str) -> np.ndarray:  # one column at a time: a smaller peak
            return np.concatenate([self.columns[name],
                                   np.frombuffer(events.columns[name], _TYPES[name])])

        latest = order[ends]
        out = {name: merged(name)[latest] for name in LATEST}
        del latest, ends
        out["cost"] = np.add.reduceat(merged("cost")[order], starts)
        last_image = np.where(merged("image")[order].astype(bool),
                              np.arange(len(order)), -1)
        last_image = np.maximum.reduceat(last_image, starts)
        found = last_image >= 0
        source = order[np.where(found, last_image, 0)]
        del order, last_image
        for name in IMAGE:
            column = merged(name)[source]
            column[~found] = -1 if name == "size" else 0
            out[name] = column
        out["image"] = found.astype(np.uint8)
        return Records(sorted_keys[starts], out, events.reasons, events.side)
