"""batchgen's exceptions. The type of an API error tells the runner what to do::

    BatchgenError
    ├── JobFileError            the job file is invalid (all problems listed)   exit 2
    ├── UsageError              bad options or environment                      exit 2
    ├── OutputError             output folder unusable (not writable, disk full)
    ├── LockedError             another run holds the output folder             exit 6
    └── ApiError                a request went wrong; .status is the HTTP status or None
        ├── RetryableError      retry this request later (5xx, connection, timeout)
        │   ├── RateLimited     429: wait .retry_after, costs no retry
        │   └── InvalidImage    a 200 that was no image: billed, then retried
        ├── JobRejected         400: this job will never work as it is
        ├── OutOfCredits        406: stop dispatching, the rest stays pending   exit 3
        └── FatalApiError       401/403/404: wrong key or endpoint, abort       exit 5

No message or repr ever contains the API key: errors are built from the
status, the response body and the URL only.
"""

from __future__ import annotations


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
    """A request to the API failed."""

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


class InvalidImage(RetryableError):
    """A 200 whose body was not an image. The API billed it; the user still wants the image."""


class JobRejected(ApiError):
    """400: the API refuses this job (e.g. prompt rejected); retrying cannot help."""


class OutOfCredits(ApiError):
    """406: the account cannot pay for more images."""


class FatalApiError(ApiError):
    """401/403/404: every request will fail the same way until the user fixes something."""
