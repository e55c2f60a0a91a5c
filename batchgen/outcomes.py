"""How each job's turn in a run ends, written down: the image saved before its line,
exactly one closing line per started job (succeeded, failed or pending) carrying what
the API billed for it, and the counts the run reports (SPEC §8 M1, S1)."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from .client import GeneratedImage
from .errors import ApiError, failure_cause
from .events import Failed, Pending, Succeeded
from .jobs import Job
from .ledger import Account, Ledger
from .manifest import ManifestWriter
from .progress import Reporter
from .state import DONE, FAILED, PENDING
from .store import ImageStore


@dataclass(slots=True, eq=False)
class Ticket:
    """One job on its way through a worker."""

    job: Job
    position: int = 0  # in the job file: where the plan notes how it ended
    request_id: str | None = None  # v2: the request to collect, never to re-post
    replaces: str | None = None  # v2: the lost request this run submitted again for
    attempts: int = 0
    retries: int = 0
    rate_limited: int = 0
    account: Account = field(init=False)

    def __post_init__(self) -> None:
        self.account = Account(self.job.price, self.job.model, images=self.job.images())

    @property
    def started(self) -> bool:
        return bool(self.attempts or self.account.cost)

    @property
    def billed_request(self) -> bool:
        """Its v2 request completed and was counted: collecting it costs nothing."""
        return self.request_id is not None and self.request_id in self.account.keys


class Outcomes:
    """Writes how jobs end, and counts them."""

    def __init__(self, manifest: ManifestWriter, store: ImageStore, reporter: Reporter,
                 ledger: Ledger, on_image: Callable[[str], None] | None = None,
                 on_end: Callable[[int, str], None] | None = None):
        self.manifest = manifest
        self.store = store
        self.reporter = reporter
        self.ledger = ledger
        self.on_image = on_image  # each saved image's path
        self.on_end = on_end or (lambda position, state: None)  # how each job ended
        self.done = self.failed = self.unfinished = 0
        self.failures: Counter[str] = Counter()  # "400 prompt flagged" → jobs
        self.remaining_credits: float | None = None

    def success(self, ticket: Ticket, image: GeneratedImage) -> None:
        """Write the image, then its line (raises OSError when the image cannot be
        written). Synchronous on purpose: no cancellation (a second Ctrl-C) can fall
        between the two and drop a paid-for image."""
        job = ticket.job
        files = self.store.write_all(job.id, image.images)
        file = files[0]
        self.done += 1
        if image.remaining_credits is not None:  # answers arrive out of order: keep the lowest
            known = [c for c in (self.remaining_credits, image.remaining_credits) if c is not None]
            self.remaining_credits = min(known)
        several = len(files) > 1
        self.manifest.write(Succeeded(
            job_id=job.id, fp=job.fp, prompt=job.prompt, aspect_ratio=job.aspect_ratio,
            model=job.model, params=job.params, metadata=job.metadata, file=file,
            bytes=len(image.data), sha256=hashlib.sha256(image.data).hexdigest(),
            files=files if several else None,
            sizes=[len(data) for data, _ in image.images] if several else None,
            cost=ticket.account.settle(),
            cost_basis="reported" if ticket.account.reported else "price",
            attempts=ticket.attempts, latency_s=round(image.latency_s, 3),
            request_id=image.request_id, remaining_credits=image.remaining_credits,
        ))
        self.on_end(ticket.position, DONE)
        if self.on_image is not None:
            for each in files:
                self.on_image(each)
        self.reporter.job_done(job.id, self.ledger.spent, image.remaining_credits)

    def failure(self, ticket: Ticket, exc: ApiError, *, retryable: bool) -> None:
        self.failed += 1
        self.failures[failure_cause(exc.status, exc.message)] += 1
        self._failed_line(ticket, exc, retryable)
        self.on_end(ticket.position, FAILED)
        self.reporter.job_failed(ticket.job.id, str(exc), self.ledger.spent)

    def billed(self, ticket: Ticket, exc: ApiError) -> None:
        """Money billed on an attempt that is retried goes on record at once, as a
        retryable failure of that attempt, so a kill -9 can only lose the requests in
        flight (M1). It is not a failure of the job: the job goes on."""
        self._failed_line(ticket, exc, True)

    def pending(self, ticket: Ticket, reason: str) -> None:
        """A started job that stops here; one never tried in this run keeps its state."""
        if not ticket.started:
            return
        self.unfinished += 1
        self.manifest.write(Pending(
            job_id=ticket.job.id, fp=ticket.job.fp, reason=reason, attempts=ticket.attempts,
            cost=ticket.account.settle(), request_id=ticket.request_id,
            request_status=_request_status(ticket),
        ))
        self.on_end(ticket.position, PENDING)

    def _failed_line(self, ticket: Ticket, exc: ApiError, retryable: bool) -> None:
        job = ticket.job
        self.manifest.write(Failed(
            job_id=job.id, fp=job.fp, prompt=job.prompt, aspect_ratio=job.aspect_ratio,
            model=job.model, params=job.params, metadata=job.metadata, status=exc.status,
            error=exc.message, retryable=retryable,
            attempts=ticket.attempts, cost=ticket.account.settle(),
            request_id=ticket.request_id, request_status=_request_status(ticket),
        ))


def _request_status(ticket: Ticket) -> str | None:
    return "COMPLETED" if ticket.billed_request else None
