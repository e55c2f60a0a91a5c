"""The manifest's events, each defined once: the writer serialises these classes and
the replay reads lines back through them, so a field cannot be written under one
name and read under another.

Job lines (`submitted`, `succeeded`, `failed`, `pending`) all carry `fp`, the
fingerprint of what was sent for the job (SPEC §8 S2), and the money lines carry
`cost`: what the API billed for the job since its previous line, so the costs of
a run's lines add up to what the run spent (M1).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import datetime, timezone
from typing import Any, ClassVar

from .cells import lone_surrogate
from .money import cost_micro, micro_to_usd


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(slots=True, kw_only=True)
class Event:
    """Base: `name` is the line's `event`; money fields are micro-dollars in memory
    and dollars on disk."""

    name: ClassVar[str] = ""
    money: ClassVar[tuple[str, ...]] = ()
    names: ClassVar[tuple[str, ...]] = ()
    checks: ClassVar[dict[str, Callable[[Any], bool]]] = {}
    ts: str = ""  # when it happened (UTC); set when it is written

    def to_line(self) -> dict[str, Any]:
        self.ts = self.ts or utc_now()
        line: dict[str, Any] = {"event": self.name, "ts": self.ts}
        for name in type(self).names:
            value = getattr(self, name)
            line[name] = micro_to_usd(value) if name in self.money else value
        return line

    @classmethod
    def from_line(cls, line: dict[str, Any]) -> Event | None:
        """The event a line holds, or None when a field has the wrong type (a hand-edited
        or corrupt line). Fields a line lacks (older manifests) take their defaults,
        unknown fields are ignored."""
        values = {}
        for name, check in cls.checks.items():
            if name in line:
                value = line[name]
                if not check(value):
                    return None
                values[name] = cost_micro(value) if name in cls.money else value
        ts = line.get("ts")
        return cls(ts=ts if isinstance(ts, str) else "", **values)


by_name: dict[str, type[Event]] = {}


def _text(value: Any) -> bool:
    """A string UTF-8 can hold (no lone surrogate from a "\ud800" escape)."""
    if not isinstance(value, str):
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _json(value: Any) -> bool:
    """A value read from a JSON line that the manifest can write back: all it can lack
    is text UTF-8 can hold (walked, not dumped: a replay checks two per line)."""
    return lone_surrogate(value) is None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) \
        and math.isfinite(value)


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda value: value is None or check(value)


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "str": _text,
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "float": _number,
    "dict[str, Any]": lambda v: isinstance(v, dict) and _json(v),
    "list[str]": lambda v: isinstance(v, list) and all(map(_text, v)),
    "list[int]": lambda v: isinstance(v, list) and all(
        isinstance(x, int) and not isinstance(x, bool) for x in v),
}
_MONEY = 1_000_000.0  # dollars: no single line is worth more; beyond it, a corrupt one


def _check(kind: str, money: bool) -> Callable[[Any], bool]:
    if money:
        return lambda v: _number(v) and 0 <= v < _MONEY
    base, _, none = kind.partition(" | ")
    check = _CHECKS[base]
    return _optional(check) if none == "None" else check


def _seal(cls: type[Event]) -> type[Event]:
    """Register an event class under its name and list its fields, and the type
    check of each, once."""
    cls.names = tuple(f.name for f in fields(cls) if f.name != "ts")
    cls.checks = {f.name: _check(str(f.type), f.name in cls.money)
                  for f in fields(cls) if f.name != "ts"}
    by_name[cls.name] = cls
    return cls


@_seal
@dataclass(slots=True, kw_only=True)
class RunStarted(Event):
    name: ClassVar[str] = "run_started"
    run_id: str = ""
    job_file: str | None = None
    job_file_sha256: str | None = None
    jobs: int = 0
    settings: dict[str, Any] | None = None
    version: str = ""
    simulated: bool = False


@dataclass(slots=True, kw_only=True)
class JobEvent(Event):
    """A line about one job, and the fingerprint of what was sent for it (S2)."""

    job_id: str = ""
    fp: str | None = None


@_seal
@dataclass(slots=True, kw_only=True)
class Submitted(JobEvent):
    """v2: written before the first poll, so a resumed run polls instead of re-posting."""

    name: ClassVar[str] = "submitted"
    request_id: str = ""
    replaces: str | None = None  # the lost request this one was submitted instead of


@dataclass(slots=True, kw_only=True)
class Outcome(JobEvent):
    """How a job's turn in a run ended: its attempts, what the API billed for it since
    its previous line, and its v2 request."""

    money: ClassVar[tuple[str, ...]] = ("cost",)
    attempts: int = 0
    cost: int = 0
    request_id: str | None = None


@_seal
@dataclass(slots=True, kw_only=True)
class Succeeded(Outcome):
    """`file` and `bytes` are the first image's; an answer with several images (a
    model's `samples`) lists them all in `files` and `sizes`."""

    name: ClassVar[str] = "succeeded"
    prompt: str | None = None
    aspect_ratio: str | None = None
    model: str | None = None
    params: dict[str, Any] | None = None  # what was sent besides the prompt
    metadata: dict[str, Any] | None = None
    file: str = ""
    bytes: int | None = None
    sha256: str | None = None
    files: list[str] | None = None
    sizes: list[int] | None = None
    cost_basis: str | None = None  # "reported": the API said what it cost; "price": it did not
    latency_s: float | None = None
    remaining_credits: float | None = None
    recovered: bool = False  # found on disk after a crash between the image and its line


@dataclass(slots=True, kw_only=True)
class Unfinished(Outcome):
    """`request_id` is kept only while the request can still be collected, and
    `request_status` is COMPLETED when it was billed and counted already."""

    request_status: str | None = None


@_seal
@dataclass(slots=True, kw_only=True)
class Failed(Unfinished):
    name: ClassVar[str] = "failed"
    prompt: str | None = None
    aspect_ratio: str | None = None
    model: str | None = None
    params: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    status: int | None = None
    error: str = ""
    retryable: bool = False


@_seal
@dataclass(slots=True, kw_only=True)
class Pending(Unfinished):
    """A job that started and was stopped; `reason` is a StopReason word or
    `submitted` (a v2 request still running: the next run collects it)."""

    name: ClassVar[str] = "pending"
    reason: str = ""


@_seal
@dataclass(slots=True, kw_only=True)
class RunFinished(Event):
    name: ClassVar[str] = "run_finished"
    money: ClassVar[tuple[str, ...]] = ("spent_run", "spent_total")
    run_id: str = ""
    exit_code: int = 0
    reason: str = ""
    done: int = 0
    failed: int = 0
    pending: int = 0
    spent_run: int = 0
    spent_total: int = 0

