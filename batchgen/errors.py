"""batchgen's exceptions, and the reasons a run stops early.

The type of an API error tells the pool what to do::

    BatchgenError
    ├── JobFileError            the job file is invalid (all problems listed)   exit 2
    ├── UsageError              bad options or environment                      exit 2
    ├── OutputError             the output folder cannot be written             exit 2 at start
    ├── LockedError             another run holds the output folder             exit 6
    └── ApiError                a request went wrong; .status, .billed
        ├── RetryableError      retry this request later (5xx, connection, timeout)
        │   ├── RateLimited     429: wait .retry_after, costs no retry
        │   ├── NoAnswer        sent, but no answer in time: it may have been billed
        │   └── InvalidImage    a 200 that held no image: billed, then retried
        ├── RequestLost         v2: a submitted id is unknown: billed once, resubmitted once
        ├── StillRunning        v2: not finished within --timeout: the next run collects it
        ├── JobRejected         400 or FAILED: this job will never work as it is
        ├── OutOfCredits        406: stop dispatching, the rest stays pending   exit 3
        └── FatalApiError       401/403/404/3xx: wrong key or endpoint, abort   exit 5

No message or repr ever contains the API key: errors are built from the
status, the response body and the URL only.
"""

from __future__ import annotations

from enum import Enum


class StopReason(Enum):
    """Why a run stopped dispatching: the word in the manifest (`pending.reason`,
    `run_finished.reason`), the exit code, and what the user is told to do."""

    OUT_OF_CREDITS = ("out_of_credits", 3, "out of credits (406): top up and rerun")
    INSUFFICIENT_CREDITS = ("insufficient_credits", 3,
                            "the balance could not pay for it: top up and rerun")
    BUDGET = ("budget", 4, "--max-cost reached: rerun to continue")
    API_REFUSED = ("auth", 5, "the API refused the key or endpoint: fix it and rerun")
    OUTAGE = ("outage", 1, "the API was unavailable longer than --max-outage: rerun to continue")
    OUTPUT_ERROR = ("output_error", 1, "the output folder could not be written: fix it and rerun")
    INTERNAL_ERROR = ("internal_error", 1,
                      "batchgen met an unexpected error (see the log): rerun to continue")
    INTERRUPTED = ("interrupted", 130, "interrupted: rerun to continue")

    def __init__(self, word: str, exit_code: int, advice: str):
        self.word = word
        self.exit_code = exit_code
        self.advice = advice

    @classmethod
    def from_word(cls, word: str | None) -> StopReason | None:
        return _BY_WORD.get(word or "")


_BY_WORD = {reason.word: reason for reason in StopReason}


def failure_cause(status: int | None, error: str) -> str:
    """A failure's cause, as a run and `status` group them: '400 prompt flagged'."""
    return f"{status or ''} {error}".strip()[:120]


class BatchgenError(Exception):
    """Base of every error batchgen raises on purpose."""


class JobFileError(BatchgenError):
    """The job file cannot be used; `problems` lists every reason, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("\n".join(problems))


class UsageError(BatchgenError):
    """An option or the environment makes the run impossible."""


class OutputError(BatchgenError):
    """The output folder cannot be written."""


class LockedError(BatchgenError):
    """Another batchgen run is using the output folder."""

    def __init__(self, path: str, pid: int | None):
        self.pid = pid
        holder = f"pid {pid}" if pid else "another process"
        super().__init__(f"{path} is in use by another batchgen run ({holder})")


class ApiError(BatchgenError):
    """A request to the API failed. `billed`: the API may have charged for it."""

    billed = False

    def __init__(self, message: str, status: int | None = None):
        self.status = status
        self.message = message
        super().__init__(message if status is None else f"HTTP {status}: {message}")


class RetryableError(ApiError):
    """Worth trying again: the server or network had a bad moment."""

    def __init__(self, message: str, status: int | None = None, retry_after: float | None = None):
        super().__init__(message, status)
        self.retry_after = retry_after


class RateLimited(RetryableError):
    """429: the account's rate limit was hit. Costs nothing, so no retry is used up."""


class NoAnswer(RetryableError):
    """A request that may be billed went out, and no answer came back in time. The API
    may have generated (and billed) it all the same, so its price stays set aside
    against --max-cost for the rest of the run; it is retried."""


class InvalidImage(RetryableError):
    """A 200 that held no image (garbage, cut off, too big). The API billed it; the
    user still wants the image."""

    billed = True


class RequestLost(ApiError):
    """v2: the API answers 404 for a request id it accepted. It may have completed
    (billed) before it was forgotten, so it is counted once and submitted once more."""

    billed = True


class StillRunning(ApiError):
    """v2: a request still queued or processing after --timeout, or whose status the
    API has not told for longer than --max-outage (`outage`). It may yet complete, so
    it is never replaced: the job stays pending with its id for the next run."""

    def __init__(self, message: str, *, outage: bool = False):
        super().__init__(message)
        self.outage = outage


class JobRejected(ApiError):
    """400, or a v2 request that ended FAILED: retrying cannot help."""


class OutOfCredits(ApiError):
    """406: the account cannot pay for more images."""


class FatalApiError(ApiError):
    """401/403/404, or a redirect: every request will fail the same way until the
    user fixes the key or the URL."""
