"""The manifest: an append-only JSONL record of everything a batch did, and its
replay into per-job state. It is the single source of truth: resume, `status`
and the reports all read it back through `replay`.

Durability: each event is written and flushed to the kernel before the code
that depends on it goes on, so a killed process loses nothing it recorded.
fsync (which only matters if the whole machine dies) runs in a background
thread and covers every line written since the previous one (group commit):
one disk flush per batch of events instead of one per event. Images are not
fsync'd one by one (that cost more than everything else per image at full
speed); `ImageStore.existing` ignores the empty files a power cut can leave.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .config import MICRO
from .errors import OutputError

MANIFEST_NAME = "manifest.jsonl"
#: Least time between two fsyncs. Each fsync commits the file system's journal, which
#: stalls the creation of image files meanwhile; at full speed, syncing back to back
#: cost more than everything else batchgen does per image.
SYNC_INTERVAL = 0.1


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ManifestWriter:
    """Appends events. Use `async with` so the final fsync happens."""

    def __init__(self, path: Path):
        self.path = path
        self._fh = open(path, "ab")  # noqa: SIM115 - closed in close()
        self._dirty = asyncio.Event()
        self._syncer: asyncio.Task | None = None
        if self._fh.tell() and not self._ends_with_newline():
            self._fh.write(b"\n")  # a torn last line must not swallow the next event

    def _ends_with_newline(self) -> bool:
        with open(self.path, "rb") as fh:
            fh.seek(-1, os.SEEK_END)
            return fh.read(1) == b"\n"

    async def __aenter__(self) -> ManifestWriter:
        self._syncer = asyncio.create_task(self._sync_forever())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one event; return it as written."""
        line = {"event": event, "ts": utc_now(), **fields}
        try:
            self._fh.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
            self._fh.flush()
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        self._dirty.set()
        return line

    async def _sync_forever(self) -> None:
        fd = self._fh.fileno()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await asyncio.to_thread(os.fsync, fd)
            except OSError as exc:
                raise OutputError(f"cannot sync {self.path}: {exc.strerror}") from None
            await asyncio.sleep(SYNC_INTERVAL)

    async def close(self) -> None:
        if self._syncer is not None:
            self._syncer.cancel()
            await asyncio.gather(self._syncer, return_exceptions=True)
            self._syncer = None
        if not self._fh.closed:
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError:
                pass  # already reported by write(); what reached the file is consistent
            finally:
                self._fh.close()


@dataclass(slots=True)
class JobRecord:
    """What the manifest says about one job: its latest state and its money."""

    state: str  # done | failed | submitted | pending
    cost_micro: int = 0
    content: int | None = None  # hash of the prompt and ratio sent; see `describes`
    file: str | None = None
    error: str | None = None
    status: int | None = None
    retryable: bool = False
    attempts: int = 0
    request_id: str | None = None
    reason: str | None = None

    def describes(self, prompt: str, aspect_ratio: str) -> bool:
        """Whether this record is about that prompt and ratio: a row edited under the
        same user id is a new job. Records without a prompt (v2 `submitted`) match."""
        return self.content is None or self.content == hash((prompt, aspect_ratio))


@functools.lru_cache(maxsize=64)
def _micro(dollars: float | None) -> int:
    """A line's `cost` in micro-dollars (a handful of distinct values: cached)."""
    return round((dollars or 0) * MICRO)


def _content(prompt: str | None, aspect_ratio: str | None) -> int | None:
    """A fingerprint of what was sent, so a million records need not keep every prompt.
    Python's str hash differs between processes, but it is only ever compared within one."""
    return None if prompt is None else hash((prompt, aspect_ratio))


@dataclass
class Replay:
    """The state of a batch, rebuilt from its manifest one event at a time."""

    jobs: dict[str, JobRecord] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)  # run_started lines, updated by finish
    spent_micro: int = 0
    bad_lines: list[int] = field(default_factory=list)  # line numbers that were not JSON
    #: images recorded by the last run if it never finished (killed, or a power cut):
    #: the only ones that may be empty files, as images are not fsync'd one by one
    unfinished_files: list[str] = field(default_factory=list)
    _in_run: bool = False

    @property
    def last_run(self) -> dict[str, Any] | None:
        return self.runs[-1] if self.runs else None

    def apply(self, line: dict[str, Any]) -> None:
        """Fold one manifest event into the state."""
        jobs = self.jobs
        get = line.get
        event = get("event")
        job_id = get("job_id")
        prior = jobs.get(job_id)
        prior_cost = prior.cost_micro if prior else 0
        if event == "succeeded":  # the common line in a big manifest: kept lean
            cost = _micro(get("cost"))
            self.spent_micro += cost
            file = get("file")
            jobs[job_id] = JobRecord("done", cost + prior_cost,
                                     _content(get("prompt"), get("aspect_ratio")), file,
                                     None, None, False, get("attempts", 0), get("request_id"))
            if self._in_run:
                self.unfinished_files.append(file)
        elif event == "failed":
            cost = _micro(get("cost"))
            self.spent_micro += cost
            jobs[job_id] = JobRecord(
                "failed", cost + prior_cost, _content(get("prompt"), get("aspect_ratio")),
                error=get("error"), status=get("status"), retryable=bool(get("retryable")),
                attempts=get("attempts", 0),
            )
        elif event == "submitted":
            jobs[job_id] = JobRecord("submitted", prior_cost, request_id=line.get("request_id"))
        elif event == "pending":
            if prior is None or prior.state != "done":
                jobs[job_id] = JobRecord(
                    "pending", prior_cost, reason=line.get("reason"),
                    request_id=line.get("request_id") or (prior.request_id if prior else None),
                )
        elif event == "run_started":
            self.runs.append(dict(line))
            self.unfinished_files, self._in_run = [], True
        elif event == "run_finished" and self.runs:
            self.runs[-1]["finished"] = line
            self.unfinished_files, self._in_run = [], False


def read_lines(path: Path) -> Iterator[tuple[int, dict | None]]:
    """(line number, event) for each line; None for a line that is not a JSON object."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                event = json.loads(raw)
            except ValueError:
                event = None
            yield number, event if isinstance(event, dict) else None


def replay(path: Path) -> Replay:
    """Fold the manifest into per-job state. Unreadable lines (a torn last line after
    a crash) are skipped and listed in `bad_lines`."""
    result = Replay()
    if not path.exists():
        return result
    collecting = gc.isenabled()
    gc.disable()  # a million small objects that live on: collecting them is wasted time
    try:
        for number, line in read_lines(path):
            if line is None:
                result.bad_lines.append(number)
            else:
                result.apply(line)
    finally:
        if collecting:
            gc.enable()
    return result
