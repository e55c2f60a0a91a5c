"""The manifest: an append-only JSONL record of everything a batch did, and its
replay into per-job state. It is the single source of truth: resume, `status`
and the reports all read it back through `replay`.

Durability: each event is written and flushed to the kernel before the code
that depends on it goes on, so a killed process loses nothing it recorded.
fsync (which only matters if the whole machine dies) runs in a background
thread and covers every line written since the last one (group commit): it
costs one disk flush per batch of events instead of one per event.
"""

from __future__ import annotations

import asyncio
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

    def write(self, event: str, **fields: Any) -> None:
        line = {"event": event, "ts": utc_now(), **fields}
        try:
            self._fh.write(json.dumps(line, ensure_ascii=False).encode() + b"\n")
            self._fh.flush()
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        self._dirty.set()

    async def _sync_forever(self) -> None:
        fd = self._fh.fileno()
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            try:
                await asyncio.to_thread(os.fsync, fd)
            except OSError as exc:
                raise OutputError(f"cannot sync {self.path}: {exc.strerror}") from None

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
    prompt: str | None = None  # as sent, to notice a row edited under the same user id
    aspect_ratio: str | None = None
    file: str | None = None
    error: str | None = None
    status: int | None = None
    retryable: bool = False
    attempts: int = 0
    request_id: str | None = None
    reason: str | None = None


@dataclass
class Replay:
    """The state of a batch, rebuilt from its manifest."""

    jobs: dict[str, JobRecord] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)  # run_started lines, updated by finish
    spent_micro: int = 0
    bad_lines: list[int] = field(default_factory=list)  # line numbers that were not JSON

    @property
    def last_run(self) -> dict[str, Any] | None:
        return self.runs[-1] if self.runs else None

    def count(self, state: str) -> int:
        return sum(1 for r in self.jobs.values() if r.state == state)


def _cost(line: dict) -> int:
    return round((line.get("cost") or 0) * MICRO)


def read_lines(path: Path) -> Iterator[tuple[int, dict | None]]:
    """(line number, event) for each line; None for a line that is not a JSON object."""
    with open(path, "rb") as fh:
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
    jobs = result.jobs
    for number, line in read_lines(path):
        if line is None:
            result.bad_lines.append(number)
            continue
        event = line.get("event")
        job_id = line.get("job_id")
        if event in ("succeeded", "failed"):  # fields a line lacks stay None
            cost = _cost(line)
            result.spent_micro += cost
            jobs[job_id] = JobRecord(
                "done" if event == "succeeded" else "failed", cost + _prior_cost(jobs, job_id),
                line.get("prompt"), line.get("aspect_ratio"), file=line.get("file"),
                error=line.get("error"), status=line.get("status"),
                retryable=bool(line.get("retryable")), attempts=line.get("attempts", 0),
                request_id=line.get("request_id"),
            )
        elif event == "submitted":
            jobs[job_id] = JobRecord("submitted", _prior_cost(jobs, job_id),
                                     request_id=line.get("request_id"))
        elif event == "pending":
            prior = jobs.get(job_id)
            if prior is None or prior.state != "done":
                jobs[job_id] = JobRecord(
                    "pending", _prior_cost(jobs, job_id), reason=line.get("reason"),
                    request_id=line.get("request_id") or (prior.request_id if prior else None),
                )
        elif event == "run_started":
            result.runs.append(dict(line))
        elif event == "run_finished" and result.runs:
            result.runs[-1]["finished"] = line
    return result


def _prior_cost(jobs: dict[str, JobRecord], job_id: str) -> int:
    prior = jobs.get(job_id)
    return prior.cost_micro if prior else 0
