"""What a person or a log file sees while a batch runs: one reporter object.

On a terminal: a tqdm bar on stderr (done, failed, money spent and still to go,
credits left, rate, ETA). Without one (cron, CI, a pipe): a plain status line every
`status_interval` seconds and no control characters. Messages go through the
`batchgen` logger, so `--log-file` and `-q`/`-v` apply to everything. tqdm is
imported only when a bar is drawn.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import TYPE_CHECKING

from .money import PRICE_MICRO, format_usd

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger("batchgen")


class Reporter:
    """Counts what happens in a run and shows it."""

    def __init__(self, *, bar: bool | None = None, status_interval: float = 30.0):
        self.bar_enabled = sys.stderr.isatty() if bar is None else bar
        self.status_interval = status_interval
        self._bar: tqdm | None = None
        self.total = self.done = self.failed = 0
        self.spent_micro = 0
        self.price_micro = PRICE_MICRO
        self.remaining_credits: float | None = None
        self._started = time.monotonic()

    def start(self, total: int, price_micro: int = PRICE_MICRO) -> None:
        """A run begins: `total` jobs to do, each expected to cost `price_micro`."""
        self.total = total
        self.price_micro = price_micro
        self._started = time.monotonic()
        if self.bar_enabled and total:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit="img", dynamic_ncols=True, file=sys.stderr)
            self._bar.set_postfix_str(self._postfix(), refresh=False)

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

    def _left(self) -> int:
        return max(0, self.total - self.done - self.failed)

    def money(self) -> str:
        """'$1.20 spent, about $3.80 to go': this run's spending, and the jobs it has
        still to do at the price of one image each."""
        return (f"{format_usd(self.spent_micro)} spent, "
                f"about {format_usd(self._left() * self.price_micro)} to go")

    def _postfix(self) -> str:
        text = f"{self.failed} failed, {self.money()}"
        if self.remaining_credits is not None:
            text += f", credits ${self.remaining_credits:.2f}"
        return text

    def status_line(self) -> str:
        elapsed = time.monotonic() - self._started
        finished = self.done + self.failed
        rate = finished / elapsed * 60 if elapsed > 0 else 0.0
        eta = "?" if rate <= 0 else _duration(self._left() / rate * 60)
        return (f"{finished}/{self.total} ({self.done} done, {self._postfix()}), "
                f"{rate:.1f}/min, eta {eta}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _duration(seconds: float) -> str:
    return f"{seconds:.0f}s" if seconds < 90 else f"{seconds / 60:.0f} min"


class TqdmHandler(logging.StreamHandler):
    """Log lines that don't tear a progress bar apart."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # pragma: no cover - logging must never crash the run
            self.handleError(record)
