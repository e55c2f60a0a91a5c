"""The manifest: an append-only JSONL record of everything a batch did, and its
replay into per-job records. It is the single source of truth: resume, `status`
and the reports all read it back through `replay`, and a running batch keeps its
replay current by folding in each event as it is written.

Durability: each event is written and flushed to the kernel before the code
that depends on it goes on, so a killed process loses nothing it recorded.
fsync (which only matters if the whole machine dies) runs in a background
thread and covers every line written since the previous one (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OutputError
from .events import (
    Event,
    Failed,
    JobEvent,
    RunFinished,
    RunStarted,
    Submitted,
    Succeeded,
    by_name,
)

MANIFEST_NAME = "manifest.jsonl"
#: Least time between two fsyncs: each one commits the file system's journal, which
#: stalls the creation of image files meanwhile.
SYNC_INTERVAL = 0.1


class ManifestWriter:
    """Appends events; `on_write` sees each one (the run's live replay). Use
    `async with` so the final fsync happens."""

    def __init__(self, path: Path, on_write: Callable[[Event], None] | None = None):
        self.path = path
        self._on_write = on_write
        try:
            self._fh = open(path, "ab")  # noqa: SIM115 - closed in close()
            if self._fh.tell() and not _ends_with_newline(path):
                self._fh.write(b"\n")  # a torn last line must not swallow the next event
        except OSError as exc:
            raise OutputError(f"cannot write {path}: {exc.strerror}") from None
        self._dirty = asyncio.Event()
        self._syncer: asyncio.Task | None = None

    async def __aenter__(self) -> ManifestWriter:
        self._syncer = asyncio.create_task(self._sync_forever())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def write(self, event: Event) -> None:
        """Append one event, then tell the listener."""
        line = json.dumps(event.to_line(), ensure_ascii=False).encode() + b"\n"
        try:
            self._fh.write(line)
            self._fh.flush()
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        self._dirty.set()
        if self._on_write is not None:
            self._on_write(event)

    async def _sync_forever(self) -> None:
        fd = self._fh.fileno()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            with contextlib.suppress(OSError):  # write() reports problems; the file is consistent
                await asyncio.to_thread(os.fsync, fd)
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
                pass
            finally:
                self._fh.close()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


@dataclass(slots=True)
class JobRecord:
    """What the manifest says about one job: its latest line, its money, the image
    of its last success and any v2 request that can still be collected."""

    kind: str  # the latest job event: succeeded | failed | submitted | pending
    fp: str | None  # fingerprint of what that line was about (None: an old manifest)
    cost_micro: int = 0  # over every line
    attempts: int = 0
    file: str | None = None  # the last success's image, its size and hash
    bytes: int | None = None
    sha256: str | None = None
    error: str = ""
    status: int | None = None
    retryable: bool = False
    reason: str = ""  # pending: why
    request_id: str | None = None  # v2: a request to collect rather than submit again
    request_status: str | None = None  # COMPLETED: already billed and counted
    ts: str = ""  # when the latest line was written


@dataclass
class Replay:
    """The state of a batch, rebuilt from its manifest one event at a time."""

    jobs: dict[str, JobRecord] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)  # one per run_started
    spent_micro: int = 0
    bad_lines: list[int] = field(default_factory=list)  # line numbers that were not events
    torn_tail: bool = False  # the last line is torn: a crash mid-write, just now

    @property
    def last_run(self) -> dict[str, Any] | None:
        return self.runs[-1] if self.runs else None

    def apply(self, event: Event) -> None:
        """Fold one event into the state."""
        if isinstance(event, JobEvent):
            self._apply_job(event)
        elif isinstance(event, RunStarted):
            self.runs.append({"started": event, "finished": None, "spent_micro": 0})
        elif isinstance(event, RunFinished) and self.runs:
            self.runs[-1]["finished"] = event

    def _apply_job(self, event: JobEvent) -> None:
        record = self.jobs.get(event.job_id)
        if record is None:
            record = self.jobs[event.job_id] = JobRecord(event.name, event.fp)
        record.kind, record.fp, record.ts = event.name, event.fp or _legacy_fp(event), event.ts
        if isinstance(event, Submitted):
            record.request_id, record.request_status = event.request_id, None
            return
        record.cost_micro += event.cost
        self.spent_micro += event.cost
        if self.runs:
            self.runs[-1]["spent_micro"] += event.cost
        record.attempts = event.attempts
        if isinstance(event, Succeeded):
            record.file, record.bytes, record.sha256 = event.file, event.bytes, event.sha256
            record.request_id = record.request_status = None
            return
        record.request_id, record.request_status = event.request_id, event.request_status
        if isinstance(event, Failed):
            record.error, record.status, record.retryable = event.error, event.status, \
                event.retryable
        else:
            record.reason = event.reason


def _legacy_fp(event: Event) -> str | None:
    """Lines written before fingerprints existed: derive it from the prompt they name."""
    prompt = getattr(event, "prompt", None)
    if prompt is None:
        return None
    from .config import MODEL
    from .jobs import fingerprint

    return fingerprint(MODEL, prompt, event.aspect_ratio or "")


def read_events(path: Path) -> Iterator[tuple[int, Event | None]]:
    """(line number, event) for each line; None for a line that is not an event."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = json.loads(raw)
                event = by_name[line["event"]].from_line(line)
            except (ValueError, KeyError, TypeError):
                event = None
            yield number, event


def replay(path: Path) -> Replay:
    """Fold the manifest into per-job state. Unreadable lines (a torn last line after
    a crash) are skipped and listed in `bad_lines`."""
    result = Replay()
    if not path.exists():
        return result
    collecting = gc.isenabled()
    gc.disable()  # a million small objects that live on: collecting them is wasted time
    last = 0
    try:
        for number, event in read_events(path):
            last = number
            if event is None:
                result.bad_lines.append(number)
            else:
                result.apply(event)
    except OSError as exc:  # a folder named manifest.jsonl, an unreadable disk
        raise OutputError(f"cannot read {path}: {exc.strerror}") from None
    finally:
        if collecting:
            gc.enable()
    result.torn_tail = bool(result.bad_lines) and result.bad_lines[-1] == last
    return result
