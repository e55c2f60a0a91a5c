"""The simulator's v2 queue: each submitted request waits QUEUED, turns PROCESSING,
ends COMPLETED (billed, its images published) or FAILED (not billed), and is forgotten
`result_ttl` seconds later — or at once, for a request hit by the "lost" fault.

A COMPLETED result carries `output` (the first image's URL, as Segmind's results always
have an `output`) and `images` (every image: url, content_type, file_name, file_size),
with `metrics` {inference_time, cost}."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from .money import MICRO
from .simaccount import Account
from .simconfig import RequestRecord, SimulatorConfig
from .simfaults import error, json_response
from .simjobs import media

EXPIRED = "Request not found or expired"


@dataclass(slots=True)
class _V2Request:
    record: RequestRecord
    state: str = "QUEUED"
    error: str | None = None
    finished_at: float | None = None
    latency: float = 0.0
    files: list[tuple[str, bytes]] = field(default_factory=list)  # (path, image) served
    lost: bool = False  # unknown to the status and result URLs from the start


class Queue:
    """Requests by id. `latency()` draws a generation time; `render(record)` makes a
    request's images; `publish(image)` serves an image and returns its path."""

    def __init__(self, config: SimulatorConfig, account: Account,
                 latency: Callable[[], float], publish: Callable[[bytes], str],
                 render: Callable[[RequestRecord], list[bytes]]):
        self._config, self._account = config, account
        self._latency, self._publish, self._render = latency, publish, render
        self._requests: dict[str, _V2Request] = {}
        self._tasks: set[asyncio.Task] = set()

    def submit(self, record: RequestRecord, lost: bool = False) -> str:
        """Queue the job the record describes (its price already reserved); its id."""
        request_id = record.request_id = str(uuid.uuid4())
        job = _V2Request(record, lost=lost)
        self._requests[request_id] = job
        task = asyncio.create_task(self._process(job, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return request_id

    def cancel(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    async def _process(self, job: _V2Request, record: RequestRecord) -> None:
        await asyncio.sleep(self._config.queue_delay)
        job.state = "PROCESSING"
        record.latency = job.latency = self._latency()
        await asyncio.sleep(job.latency)
        marker = self._config.fail_marker
        if marker and marker in (record.prompt or ""):
            job.state, job.error = "FAILED", "Generation failed: model error"
            self._account.settle(charge=False, price_micro=record.price_micro)
        else:
            job.files = [(self._publish(image), image) for image in self._render(record)]
            job.state = "COMPLETED"
            self._account.settle(charge=True, price_micro=record.price_micro,
                                 model=record.model, images=len(job.files))
            record.charged = True
        job.finished_at = time.monotonic()

    def _cost(self, price_micro: int) -> float | str:
        """`metrics.cost`: the charge, or what the simulator was told to say instead (as
        a JSON number when it is one, NaN and 1e400 included)."""
        said = self._config.credits_consumed
        if said is None:
            return price_micro / MICRO
        try:
            return float(said)
        except ValueError:
            return said

    def _lookup(self, request_id: str) -> _V2Request | None:
        """The request, unless it is unknown, lost or expired."""
        job = self._requests.get(request_id)
        if job is None or job.lost:
            return None
        if (job.finished_at is not None
                and time.monotonic() - job.finished_at >= self._config.result_ttl):
            return None
        return job

    def answer(self, request_id: str, origin: str, result: bool) -> web.Response:
        """What the status URL (or, with `result`, the result URL) says of a request:
        its state; FAILED as 422 with the error; a COMPLETED result with its image URL."""
        job = self._lookup(request_id)
        if job is None:
            return error(404, EXPIRED)
        body: dict = {"request_id": request_id, "status": job.state}
        if job.state == "FAILED":
            body["error"] = job.error
        if result and job.state == "COMPLETED":
            urls = [(f"{origin}{path}", image) for path, image in job.files]
            body["output"] = urls[0][0]
            body["images"] = [media(url, image) for url, image in urls]
            body["metrics"] = {"inference_time": round(job.latency, 3),
                               "cost": self._cost(job.record.price_micro)}
        return json_response(body, 422 if job.state == "FAILED" else 200)
