"""A fake Segmind API on a local port: same endpoints, statuses, headers and
bodies as the real one (SPEC §1), with knobs for latency, credits, rate limits,
faults and response formats, and a record of every request it saw.

It is a product feature: `batchgen simulator` serves it from a shell, `batchgen
run --simulate` runs against it in-process, and the tests and benchmarks drive
batchgen against it. Usage::

    sim = Simulator(SimulatorConfig(latency=0.1, credits=1.0))
    base_url = await sim.start()        # http://127.0.0.1:<free port>
    ...
    sim.stats()["charged"]              # images the "account" paid for
    await sim.close()
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
import json
import math
import random
import struct
import threading
import time
import uuid
import zlib
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import datetime, timezone

from aiohttp import web

from .config import ASPECT_RATIOS, MICRO, MODEL, PRICE_MICRO

FAULTS = ("500", "502", "503", "504", "429", "timeout", "garbage", "400", "406",
          "401", "403", "404")
_FAULT_ERRORS = {
    401: "Unauthorized", 403: "Forbidden", 404: "Not found", 500: "Internal server error",
    502: "Bad gateway", 503: "Service unavailable", 504: "Gateway timeout",
}
FORMATS = ("raw", "base64", "url", "mixed")


@dataclass(kw_only=True)
class SimulatorConfig:
    """How the fake API behaves. Most fields have a command-line twin in `batchgen simulator`."""

    latency: float = 0.0  # seconds per generation
    jitter: float = 0.0  # ± seconds added at random to the latency
    credits: float | None = None  # account balance in dollars; None = unlimited
    price: float = PRICE_MICRO / MICRO
    rpm: int | None = None  # requests per `rate_window` seconds before 429
    rate_window: float = 60.0
    response_format: str = "raw"  # raw | base64 | url | mixed
    fault_rate: float = 0.0  # probability that a generation request gets a fault
    fault_kinds: tuple[str, ...] = ("500", "502", "503", "504", "429", "timeout", "garbage")
    fault_script: list[str] = field(default_factory=list)  # faults for the next requests, in order
    seed: int = 0
    reject_marker: str | None = "[reject]"  # prompts containing it get 400
    fail_marker: str | None = "[fail]"  # v2 prompts containing it end FAILED
    key: str | None = None  # only this key is accepted; None = any non-empty key
    hang: float = 3600.0  # how long a "timeout" fault keeps the client waiting
    credits_endpoint: bool = True  # False: GET /v1/get-user-credits answers 404
    queue_delay: float = 0.0  # v2: seconds QUEUED before PROCESSING
    result_ttl: float = 3600.0  # v2: seconds a finished result stays available
    image_size: int = 96  # pixels on the long side

    def __post_init__(self) -> None:
        if self.response_format not in FORMATS:
            raise ValueError(f"response_format must be one of {', '.join(FORMATS)}")
        unknown = [f for f in (*self.fault_kinds, *self.fault_script)
                   if f not in FAULTS and f not in ("200", "ok")]
        if unknown:
            raise ValueError(f"unknown fault {unknown[0]!r}: use {', '.join(FAULTS)} or 200")


@dataclass(slots=True)
class RequestRecord:
    """One request as the server saw it."""

    t: float  # time.monotonic() at arrival
    method: str
    path: str
    status: int | str = 0  # HTTP status, or "timeout" / "disconnected"
    prompt: str | None = None
    aspect_ratio: str | None = None
    in_flight: int = 0  # generation requests being served, this one included
    request_id: str | None = None
    charged: bool = False
    latency: float = 0.0  # seconds the simulator spent "generating" the image
    has_key: bool = False  # whether the request carried an x-api-key header


@dataclass(slots=True)
class _V2Request:
    prompt: str
    aspect_ratio: str
    state: str = "QUEUED"
    error: str | None = None
    finished_at: float | None = None
    latency: float = 0.0
    file_path: str | None = None  # where the finished image is served


def make_png(prompt: str, aspect_ratio: str, long_side: int = 96) -> bytes:
    """A small real PNG of exactly the ratio's shape (long side at most `long_side`,
    at least the ratio itself), with a gradient coloured by the prompt."""
    w_ratio, h_ratio = (int(x) for x in aspect_ratio.split(":"))
    scale = max(1, long_side // max(w_ratio, h_ratio))
    width, height = w_ratio * scale, h_ratio * scale
    r, g, b = hashlib.sha256(prompt.encode()).digest()[:3]
    row = bytearray(b"\x00")
    for x in range(width):
        shade = x * 160 // max(1, width - 1)
        row += bytes(((r + shade) % 256, (g + shade // 2) % 256, b))
    raw = bytes(row) * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def _json(data: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers=headers,
        content_type="application/json",
    )


def _error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return _json({"error": message}, status, headers)


class Simulator:
    """The fake API. Create the app inside a running loop, or use `SimulatorThread`."""

    def __init__(self, config: SimulatorConfig | None = None):
        self.config = config or SimulatorConfig()
        self.records: list[RequestRecord] = []
        self.credits_micro: int | None = (
            None if self.config.credits is None else round(self.config.credits * MICRO)
        )
        self._price_micro = round(self.config.price * MICRO)
        self._reserved_micro = 0
        self.charged = 0
        self.max_in_flight = 0
        self._in_flight = 0
        # Faults and latency jitter draw from separate generators, so the fault
        # sequence of a seed is the same whatever the latency settings.
        self._fault_random = random.Random(self.config.seed)
        self._latency_random = random.Random(self.config.seed + 1)
        self._script = deque(self.config.fault_script)
        self._accepted: deque[float] = deque()
        self._formats = itertools.cycle(("raw", "base64", "url"))
        self._files: dict[str, tuple[bytes, str]] = {}
        self._v2: dict[str, _V2Request] = {}
        self._tasks: set[asyncio.Task] = set()
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.add_routes([
            web.post(f"/v1/{MODEL}", self._v1_generate),
            web.post(f"/v1/models/{MODEL}", self._v1_generate),
            web.get("/v1/get-user-credits", self._credits),
            web.post(f"/v2/{MODEL}", self._v2_submit),
            web.get("/v2/requests/{id}/status", self._v2_status),
            web.get("/v2/requests/{id}", self._v2_result),
            web.get("/files/{name}", self._file),
            web.get("/_sim/stats", self._stats),
        ])
        return app

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Serve on host:port (0 = a free port) and return the base URL."""
        self._runner = web.AppRunner(self.app(), handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        bound = self._runner.addresses[0][1]
        self.base_url = f"http://{host}:{bound}"
        return self.base_url

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- what tests and benchmarks read ---------------------------------------

    def generation_records(self) -> list[RequestRecord]:
        """Requests that asked for an image (v1 generate and v2 submit)."""
        return [r for r in self.records if r.method == "POST"]

    def stats(self) -> dict:
        statuses = Counter(str(r.status) for r in self.records)
        gen = Counter(str(r.status) for r in self.generation_records())
        return {
            "requests": len(self.records),
            "generation_requests": sum(gen.values()),
            "by_status": dict(statuses),
            "generation_by_status": dict(gen),
            "charged": self.charged,
            "spent": self.charged * self._price_micro / MICRO,
            "balance": None if self.credits_micro is None else self.credits_micro / MICRO,
            "max_in_flight": self.max_in_flight,
        }

    def top_up(self, dollars: float) -> None:
        self.credits_micro = (self.credits_micro or 0) + round(dollars * MICRO)

    def publish(self, data: bytes, content_type: str = "image/png") -> str:
        """Serve `data` at a new URL under /files/, as Segmind's CDN serves outputs
        (no key needed). Tests use it to serve images, or anything else, from here."""
        return self.base_url + self._put_file(data, content_type)

    def _put_file(self, data: bytes, content_type: str = "image/png") -> str:
        name = f"{uuid.uuid4().hex}.{content_type.rpartition('/')[2] or 'bin'}"
        self._files[name] = (data, content_type)
        return f"/files/{name}"

    # -- shared checks ---------------------------------------------------------

    def _record(self, request: web.Request, **fields) -> RequestRecord:
        record = RequestRecord(time.monotonic(), request.method, request.path,
                               has_key="x-api-key" in request.headers, **fields)
        self.records.append(record)
        return record

    def _check_key(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-api-key", "")
        if not key:
            return _error(401, "Unauthorized: missing x-api-key header")
        if self.config.key is not None and key != self.config.key:
            return _error(401, "Unauthorized: invalid API key")
        return None

    def _check_rate(self) -> web.Response | None:
        """Sliding window: at most `rpm` generation requests in any `rate_window` seconds.
        Polls and balance checks are not counted (the SDK polls every second)."""
        if not self.config.rpm:
            return None
        now, window = time.monotonic(), self.config.rate_window
        while self._accepted and self._accepted[0] <= now - window:
            self._accepted.popleft()
        if len(self._accepted) >= self.config.rpm:
            wait = self._accepted[0] + window - now
            reset = datetime.fromtimestamp(time.time() + wait, timezone.utc)
            return _error(429, "Rate limit exceeded", {
                "Retry-After": str(max(1, math.ceil(wait))),
                "x-rate-limit-reset-at-utc": reset.isoformat(timespec="milliseconds"),
            })
        self._accepted.append(now)
        return None

    def _credit_headers(self) -> dict:
        if self.credits_micro is None:
            return {}
        return {"x-remaining-credits": f"{self.credits_micro / MICRO:.6f}"}

    def _reserve(self) -> bool:
        if self.credits_micro is None:
            return True
        if self.credits_micro - self._reserved_micro < self._price_micro:
            return False
        self._reserved_micro += self._price_micro
        return True

    def _settle(self, charge: bool) -> None:
        """Release a reservation, charging it if the generation succeeded."""
        if self.credits_micro is not None:
            self._reserved_micro -= self._price_micro
            if charge:
                self.credits_micro -= self._price_micro
        if charge:
            self.charged += 1

    def _next_fault(self) -> str | None:
        if self._script:
            fault = self._script.popleft()
            return None if fault in ("200", "ok") else fault
        if self.config.fault_rate and self._fault_random.random() < self.config.fault_rate:
            return self._fault_random.choice(self.config.fault_kinds)
        return None

    async def _early_fault(self, fault: str | None, record: RequestRecord) -> web.Response | None:
        """The faults that answer before the job is even read: 429, 5xx, 401/403/404, a hang."""
        if fault == "429":
            return _error(429, "Rate limit exceeded", {"Retry-After": "1"})
        if fault and fault.isdigit() and int(fault) in _FAULT_ERRORS:
            return _error(int(fault), _FAULT_ERRORS[int(fault)])
        if fault == "timeout":
            record.status = "timeout"  # stays so if the client gives up first
            await asyncio.sleep(self.config.hang)
            return _error(504, "Gateway timeout")
        return None

    async def _read_job(self, request: web.Request, record: RequestRecord) -> web.Response | None:
        """Parse and validate {prompt, aspect_ratio}, filling the record."""
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return _error(400, "Request body must be JSON")
        if not isinstance(body, dict):
            return _error(400, "Request body must be a JSON object")
        prompt, ratio = body.get("prompt"), body.get("aspect_ratio", "1:1")
        record.prompt = prompt if isinstance(prompt, str) else None
        record.aspect_ratio = ratio if isinstance(ratio, str) else repr(ratio)
        if not isinstance(prompt, str) or not prompt.strip():
            return _error(400, "prompt is required")
        if ratio not in ASPECT_RATIOS:
            return _error(400, f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}")
        marker = self.config.reject_marker
        if marker and marker in prompt:
            return _error(400, "Prompt rejected by content filter")
        return None

    def _image(self, prompt: str, ratio: str) -> bytes:
        return make_png(prompt, ratio, self.config.image_size)

    def _latency(self) -> float:
        jitter = self._latency_random.uniform(-self.config.jitter, self.config.jitter)
        return max(0.0, self.config.latency + jitter)

    async def _tracked(self, request: web.Request, answer) -> web.Response:
        """Serve a generation request, counting it in flight and recording its status."""
        self._in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self._in_flight)
        record = self._record(request, in_flight=self._in_flight)
        try:
            response = await answer(request, record)
            record.status = response.status
            return response
        except asyncio.CancelledError:  # the client hung up
            if record.status != "timeout":
                record.status = "disconnected"
            raise
        finally:
            self._in_flight -= 1

    # -- v1 ----------------------------------------------------------------------

    async def _v1_generate(self, request: web.Request) -> web.Response:
        return await self._tracked(request, self._v1_answer)

    async def _gate(self, request: web.Request,
                    record: RequestRecord) -> tuple[web.Response | None, str | None]:
        """What every generation request meets first: the key, the rate limit, and the
        faults that answer before the job is read. (answer or None, the fault drawn)"""
        denied = self._check_key(request) or self._check_rate()
        if denied:
            return denied, None
        fault = self._next_fault()
        return await self._early_fault(fault, record), fault

    async def _v1_answer(self, request: web.Request, record: RequestRecord) -> web.Response:
        early, fault = await self._gate(request, record)
        if early:
            return early
        invalid = await self._read_job(request, record)
        if invalid or fault == "400":
            return invalid or _error(400, "Prompt rejected")
        if fault == "406" or not self._reserve():
            return _error(406, "Not enough credits", self._credit_headers())
        charged = False
        try:
            record.latency = self._latency()
            await asyncio.sleep(record.latency)
            self._settle(charge=True)
            charged = record.charged = True
        finally:
            if not charged:
                self._settle(charge=False)
        request_id = uuid.uuid4().hex
        record.request_id = request_id
        headers = {
            **self._credit_headers(),
            "x-request-id": request_id,
            "x-credits-consumed": f"{self._price_micro / MICRO:.3f}",
            "x-generation-time": f"{record.latency:.3f}",
        }
        if fault == "garbage":
            return web.Response(body=b"<html>upstream hiccup</html>", headers=headers,
                                content_type="text/html")
        return self._success(request, self._image(record.prompt, record.aspect_ratio), headers)

    def _success(self, request: web.Request, image: bytes, headers: dict) -> web.Response:
        fmt = self.config.response_format
        if fmt == "mixed":
            fmt = next(self._formats)
        if fmt == "base64":
            return _json({"image": base64.b64encode(image).decode()}, headers=headers)
        if fmt == "url":  # under the host name the client used to reach us
            url = f"{request.url.origin()}{self._put_file(image)}"
            return _json({"output": url}, headers=headers)
        return web.Response(body=image, headers=headers, content_type="image/png")

    async def _file(self, request: web.Request) -> web.Response:
        record = self._record(request)
        data, content_type = self._files.get(request.match_info["name"], (None, ""))
        response = (_error(404, "Not found") if data is None
                    else web.Response(body=data, content_type=content_type))
        record.status = response.status
        return response

    async def _credits(self, request: web.Request) -> web.Response:
        record = self._record(request)
        response = self._check_key(request)
        if response is None:
            if not self.config.credits_endpoint:
                response = _error(404, "Not found")
            else:
                balance = 1000.0 if self.credits_micro is None else self.credits_micro / MICRO
                response = _json({"credits": balance, "free-credits": 0.0})
        record.status = response.status
        return response

    async def _stats(self, request: web.Request) -> web.Response:
        return _json(self.stats())

    # -- v2 ----------------------------------------------------------------------

    async def _v2_submit(self, request: web.Request) -> web.Response:
        return await self._tracked(request, self._v2_accept)

    async def _v2_accept(self, request: web.Request, record: RequestRecord) -> web.Response:
        early, fault = await self._gate(request, record)
        if early:
            return early
        if fault == "garbage":
            return web.Response(body=b"<html>upstream hiccup</html>", content_type="text/html")
        invalid = await self._read_job(request, record)
        if invalid or fault == "400":
            return invalid or _error(400, "Prompt rejected")
        if fault == "406" or not self._reserve():
            return _error(406, "Not enough credits", self._credit_headers())
        request_id = str(uuid.uuid4())
        record.request_id = request_id
        job = _V2Request(record.prompt, record.aspect_ratio)
        self._v2[request_id] = job
        task = asyncio.create_task(self._v2_process(job, record))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        base = f"{request.url.origin()}/v2/requests/{request_id}"
        return _json(
            {"request_id": request_id, "status": "QUEUED",
             "status_url": f"{base}/status", "response_url": base},
            headers=self._credit_headers(),
        )

    async def _v2_process(self, job: _V2Request, record: RequestRecord) -> None:
        await asyncio.sleep(self.config.queue_delay)
        job.state = "PROCESSING"
        record.latency = job.latency = self._latency()
        await asyncio.sleep(job.latency)
        marker = self.config.fail_marker
        if marker and marker in job.prompt:
            job.state, job.error = "FAILED", "Generation failed: model error"
            self._settle(charge=False)
        else:
            job.file_path = self._put_file(self._image(job.prompt, job.aspect_ratio))
            job.state = "COMPLETED"
            self._settle(charge=True)
            record.charged = True
        job.finished_at = time.monotonic()

    def _v2_lookup(self, request: web.Request) -> tuple[_V2Request | None, web.Response | None]:
        denied = self._check_key(request)
        if denied:
            return None, denied
        job = self._v2.get(request.match_info["id"])
        expired = (
            job is not None and job.finished_at is not None
            and time.monotonic() - job.finished_at > self.config.result_ttl
        )
        if job is None or expired:
            return None, _error(404, "Request not found or expired")
        return job, None

    async def _v2_status(self, request: web.Request) -> web.Response:
        record = self._record(request, request_id=request.match_info["id"])
        job, response = self._v2_lookup(request)
        if job is not None:
            body = {"request_id": record.request_id, "status": job.state}
            if job.state == "FAILED":
                body["error"] = job.error
            response = _json(body, 422 if job.state == "FAILED" else 200)
        record.status = response.status
        return response

    async def _v2_result(self, request: web.Request) -> web.Response:
        record = self._record(request, request_id=request.match_info["id"])
        job, response = self._v2_lookup(request)
        if job is not None:
            body: dict = {"request_id": record.request_id, "status": job.state}
            if job.state == "FAILED":
                body["error"] = job.error
                response = _json(body, 422)
            else:
                if job.state == "COMPLETED":
                    body["output"] = f"{request.url.origin()}{job.file_path}"
                    body["metrics"] = {"inference_time": round(job.latency, 3)}
                response = _json(body)
        record.status = response.status
        return response


class SimulatorThread:
    """A Simulator serving from its own thread and event loop, for synchronous
    callers (tests that run the CLI, `batchgen run --simulate` is in-loop instead)."""

    def __init__(self, config: SimulatorConfig | None = None):
        self.simulator = Simulator(config)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def __enter__(self) -> Simulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.simulator.start(), self._loop).result(10)
        return self.simulator

    def __exit__(self, *exc_info) -> None:
        asyncio.run_coroutine_threadsafe(self.simulator.close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

