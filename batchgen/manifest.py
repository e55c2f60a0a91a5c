"""The manifest: an append-only JSONL record of everything a batch did, and its
replay into per-job records. It is the single source of truth: resume, `status`
and the reports all read it back through `replay`; a run folds in what it wrote when
it ends, and leaves a checkpoint of its replay so the next one reads only what came
after it (see `checkpoint`).

Durability: each event is written and flushed to the kernel before the code
that depends on it goes on, so a killed process loses nothing it recorded.
fsync (which only matters if the whole machine dies) runs in a background
thread and covers every line written since the previous one (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import OutputError
from .events import Event, JobEvent, RunFinished, RunStarted, by_name
from .records import Events, Records, fp_number

MANIFEST_NAME = "manifest.jsonl"
#: Least time between two fsyncs: each one commits the file system's journal, which
#: stalls the creation of image files meanwhile.
SYNC_INTERVAL = 0.1


class ManifestWriter:
    """Appends events. Use `async with` so the final fsync happens."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self._fh = open(path, "ab")  # noqa: SIM115 - closed in close()
            # a last line without its newline (torn, or a whole event an editor left
            # so) must not swallow the next event
            if self._fh.tell() and not _ends_with_newline(path):
                self._fh.write(b"\n")
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
        """Append one event."""
        line = json.dumps(event.to_line(), ensure_ascii=False).encode() + b"\n"
        try:
            self._fh.write(line)
            self._fh.flush()
        except OSError as exc:
            raise OutputError(f"cannot write {self.path}: {exc.strerror}") from None
        self._dirty.set()

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


@dataclass
class Replay:
    """The state of a batch, rebuilt from its manifest: each job's record, the runs,
    the money, and how far into the file it has read (`offset` bytes, `lines` lines,
    `digest` the sha256 of those bytes) so that it can be extended by what came since."""

    jobs: Records = field(default_factory=Records.empty)
    runs: list[dict[str, Any]] = field(default_factory=list)  # one per run_started
    spent_micro: int = 0
    bad_lines: list[int] = field(default_factory=list)  # line numbers that were not events
    torn_tail: bool = False  # the last line is torn: a crash mid-write, just now
    unterminated: bool = False  # the last line read was a whole event without its newline
    offset: int = 0
    lines: int = 0
    digest: Any = field(default_factory=hashlib.sha256)

    @property
    def last_run(self) -> dict[str, Any] | None:
        return self.runs[-1] if self.runs else None

    @property
    def settled_bad_lines(self) -> list[int]:
        """`bad_lines` without a torn last line, which is read again by `extend`."""
        return self.bad_lines[:-1] if self.torn_tail else self.bad_lines

    def extend(self, path: Path) -> Replay:
        """Fold in the lines written since `offset` (by this run, or since a checkpoint).
        A torn last line is left for later: it may still be written, or end up alone
        on its line once a writer appends after it."""
        if not path.exists():
            return self
        self.bad_lines = self.settled_bad_lines  # the torn tail is read again, counted once
        self.torn_tail = False
        events = Events(self.jobs.reasons, self.jobs.side)
        collecting = gc.isenabled()
        gc.disable()  # many small objects that live on: collecting them is wasted time
        try:
            with open(path, "rb") as fh:
                fh.seek(self.offset)
                for raw in fh:
                    if self.unterminated:
                        if raw != b"\n":  # text glued onto the line read whole: a full
                            return replay(path)  # replay reads them as one line
                        self._ends_line(raw)
                        continue
                    if not raw.endswith(b"\n"):
                        self._read_tail(raw, events)
                        break
                    self._consume(raw)
                    self._apply(raw, events)
        except OSError as exc:  # a folder named manifest.jsonl, an unreadable disk
            raise OutputError(f"cannot read {path}: {exc.strerror}") from None
        finally:
            if collecting:
                gc.enable()
        self.jobs = self.jobs.fold(events)
        return self

    def _consume(self, raw: bytes, *, new_line: bool = True) -> None:
        self.offset += len(raw)
        self.lines += new_line
        self.digest.update(raw)

    def _ends_line(self, raw: bytes) -> None:
        """The newline a writer added after an unterminated last line: part of that line,
        so that offset, lines and digest match a full replay of the file as it is now."""
        self.unterminated = False
        self._consume(raw, new_line=False)

    def _read_tail(self, raw: bytes, events: Events) -> None:
        """A last line without its newline. A whole event is used (a script or an editor
        dropped the final newline: buying its job again would pay twice); anything else is
        torn, and not consumed."""
        if not raw.strip():
            return
        event = _event(raw)
        if event is None:
            self.torn_tail = True
            self.bad_lines.append(self.lines + 1)
            return
        self._consume(raw)
        self.unterminated = True
        self._record(event, events)

    def _apply(self, raw: bytes, events: Events) -> None:
        if not raw.strip():
            return
        event = _event(raw)
        if event is None:
            self.bad_lines.append(self.lines)
        else:
            self._record(event, events)

    def _record(self, event: Event, events: Events) -> None:
        if isinstance(event, JobEvent):
            events.add(event, fp_number(event.fp or _legacy_fp(event)))
            cost = getattr(event, "cost", 0)
            self.spent_micro += cost
            if self.runs:
                self.runs[-1]["spent_micro"] += cost
        elif isinstance(event, RunStarted):
            self.runs.append({"started": event, "finished": None, "spent_micro": 0})
        elif isinstance(event, RunFinished) and self.runs:
            self.runs[-1]["finished"] = event


def _event(raw: bytes) -> Event | None:
    try:
        line = json.loads(raw)
        return by_name[line["event"]].from_line(line)
    except (ValueError, KeyError, TypeError):
        return None


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
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            if raw.strip():
                yield number, _event(raw)


def replay(path: Path, checkpoint: Path | None = None) -> Replay:
    """Fold the manifest into per-job state, starting from `checkpoint` when it is a
    valid one for this manifest. Unreadable lines (a torn last line after a crash)
    are skipped and listed in `bad_lines`."""
    from .checkpoint import load

    start = load(checkpoint, path) if checkpoint is not None else None
    return (start or Replay()).extend(path)
