"""What a person or a log file sees while a batch runs: one reporter object.

On a terminal: a tqdm bar on stderr (done, failed, $ spent, credits left, rate,
ETA). Without one (cron, CI, a pipe): a plain status line every
`status_interval` seconds and no control characters. Messages go through the
`batchgen` logger, so `--log-file` and `-q`/`-v` apply to everything.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

from tqdm import tqdm

from .money import format_usd

log = logging.getLogger("batchgen")


class Reporter:
    """Counts what happens in a run and shows it."""

    def __init__(self, *, bar: bool | None = None, status_interval: float = 30.0):
        self.bar_enabled = sys.stderr.isatty() if bar is None else bar
        self.status_interval = status_interval
        self._bar: tqdm | None = None
        self.total = self.done = self.failed = 0
        self.spent_micro = 0
        self.remaining_credits: float | None = None
        self._started = time.monotonic()

    def start(self, total: int) -> None:
        self.total = total
        self._started = time.monotonic()
        if self.bar_enabled and total:
            self._bar = tqdm(total=total, unit="img", dynamic_ncols=True, file=sys.stderr)

    def job_done(self, job_id: str, spent_micro: int, remaining: float | None) -> None:
        self.done += 1
        self._advance(spent_micro, remaining)
        log.debug("done %s", job_id)

    def job_failed(self, job_id: str, error: str, spent_micro: int) -> None:
        self.failed += 1
        self._advance(spent_micro, self.remaining_credits)
        log.warning("failed %s: %s", job_id, error)

    def _advance(self, spent_micro: int, remaining: float | None) -> None:
        self.spent_micro = spent_micro
        if remaining is not None:
            self.remaining_credits = remaining
        if self._bar is not None:
            self._bar.set_postfix_str(self._postfix(), refresh=False)
            self._bar.update(1)

    async def tick(self) -> None:
        """Without a bar, log a status line at a steady interval (run as a task)."""
        if self._bar is not None:
            return
        while True:
            await asyncio.sleep(self.status_interval)
            log.info("progress: %s", self.status_line())

    def _postfix(self) -> str:
        text = f"failed={self.failed} spent={format_usd(self.spent_micro)}"
        if self.remaining_credits is not None:
            text += f" credits=${self.remaining_credits:.2f}"
        return text

    def status_line(self) -> str:
        elapsed = time.monotonic() - self._started
        finished = self.done + self.failed
        rate = finished / elapsed * 60 if elapsed > 0 else 0.0
        left = self.total - finished
        eta = f"{left / rate:.0f}min" if rate > 0 else "?"
        return (f"{finished}/{self.total} done={self.done} {self._postfix()} "
                f"rate={rate:.1f}/min eta={eta}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class TqdmHandler(logging.StreamHandler):
    """Log lines that don't tear a progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never crash the run
            self.handleError(record)
