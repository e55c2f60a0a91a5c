"""A fake Segmind API on a local port: same endpoints, statuses, headers and
bodies as the real one (SPEC §1), with knobs for latency, credits, rate limits,
faults and response formats, and a record of every request it saw.

It is a product feature: `batchgen simulator` serves it from a shell, `batchgen
run --simulate` runs against it in-process, and the tests and benchmarks drive
batchgen against it. Usage::

    sim = Simulator(SimulatorConfig(latency=0.1, credits=1.0))
    base_url = await sim.start()        # http://127.0.0.1:<free port>
    ...
    sim.stats()["charged"]              # answers the "account" paid for ("images": images)
    await sim.close()

It serves any model slug (`/v1/<slug>`, `/v1/models/<slug>`, `/v2/<slug>`): a model
of batchgen's registry (`models.py`) has its parameters checked as its Segmind page
documents them, answers with `samples` images and bills the registry's price; any other
slug takes a JSON body with a prompt and bills `SimulatorConfig.price`. Every image but
a plain Luma one (prompt and ratio only) is stamped with the body received
(`fakeimage.read_stamp`).

This module is the server (routes, v1, the /files/ CDN, records); what it can be
told to do is in `simconfig`, the fake account in `simaccount`, the faults and how
they are served in `simfaults`, the v2 queue in `simqueue`, what a request body asks
for and costs in `simjobs`, the images in `fakeimage`.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import random
import threading
import time
import uuid
from collections import Counter

from aiohttp import web

from .fakeimage import make_png, read_stamp
from .simaccount import Account
from .simconfig import FAULTS, FORMATS, RequestRecord, SimulatorConfig
from .simfaults import (
    FaultSchedule,
    bomb,
    cut_off,
    early_answer,
    error,
    garbage,
    json_response,
    serve_poll,
)
from .simjobs import dollars, media, read_job, render
from .simqueue import EXPIRED, Queue

__all__ = ["FAULTS", "FORMATS", "RequestRecord", "Simulator", "SimulatorConfig",
           "SimulatorThread", "make_png", "read_stamp"]


class Simulator:
    """The fake API. Create the app inside a running loop, or use `SimulatorThread`.

    (Answers are compared with None, never tested for truth: before aiohttp 3.10 an
    empty `web.Response` is falsy.)"""

    def __init__(self, config: SimulatorConfig | None = None):
        self.config = config or SimulatorConfig()
        self.records: list[RequestRecord] = []
        self.account = Account(self.config)
        self.max_in_flight = 0
        self._in_flight = 0
        # Faults and latency jitter draw from separate generators, so the fault
        # sequence of a seed is the same whatever the latency settings.
        self._faults = FaultSchedule(self.config)
        self._latency_random = random.Random(self.config.seed + 1)
        self._formats = itertools.cycle(("raw", "base64", "url"))
        self._files: dict[str, tuple[bytes, str]] = {}
        self._queue = Queue(self.config, self.account, self._latency, self._put_file,
                            self._render)
        self._runner: web.AppRunner | None = None
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=1 << 20)
        app.add_routes([
            web.post("/v1/models/{slug}", self._v1_generate),
            web.get("/v1/get-user-credits", self._credits),
            web.post("/v1/{slug}", self._v1_generate),
            web.post("/v2/{slug}", self._v2_submit),
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
        self._queue.cancel()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- what tests and benchmarks read ---------------------------------------

    @property
    def charged(self) -> int:
        """Generations the account paid for."""
        return self.account.charged

    def generation_records(self) -> list[RequestRecord]:
        """Requests that asked for an image (v1 generate and v2 submit)."""
        return [r for r in self.records if r.method == "POST"]

    def stats(self) -> dict:
        """What was asked and answered; money and images in total and by model slug."""
        statuses = Counter(str(r.status) for r in self.records)
        gen = Counter(str(r.status) for r in self.generation_records())
        by_model = {slug: {"charged": t["charged"], "images": t["images"],
                           "spent": t["spent_micro"] / 1_000_000}
                    for slug, t in sorted(self.account.by_model.items())}
        return {
            "requests": len(self.records),
            "generation_requests": sum(gen.values()),
            "by_status": dict(statuses),
            "generation_by_status": dict(gen),
            "faults": dict(Counter(r.fault for r in self.records if r.fault)),
            "charged": self.charged,
            "spent": self.account.spent,
            "images": self.account.images,
            "by_model": by_model,
            "balance": self.account.balance,
            "max_in_flight": self.max_in_flight,
        }

    def top_up(self, dollars: float) -> None:
        self.account.top_up(dollars)

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
            return error(401, "Unauthorized: missing x-api-key header")
        if self.config.key is not None and key != self.config.key:
            return error(401, "Unauthorized: invalid API key")
        return None

    async def _gate(self, request: web.Request,
                    record: RequestRecord) -> tuple[web.Response | None, str | None]:
        """What every generation request meets first: the key, the rate limit, and the
        faults that answer before the job is read. (answer or None, the fault drawn)"""
        denied = self._check_key(request)
        if denied is not None:
            return denied, None
        limited = self.account.rate_limited()
        if limited:
            return error(429, "Rate limit exceeded", limited), None
        fault = record.fault = self._faults.generation()
        return await early_answer(fault, request, record, self.config), fault

    async def _read_job(self, request: web.Request, record: RequestRecord) -> web.Response | None:
        """Parse and check the body for the model the path names, filling the record."""
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return error(400, "Request body must be JSON")
        problem = read_job(record, request.match_info["slug"], body, self.config)
        return None if problem is None else error(400, problem)

    async def _admit(self, request: web.Request,
                     record: RequestRecord, fault: str | None) -> web.Response | None:
        """The job's own checks: a valid body (400), and a balance that can pay (406)."""
        invalid = await self._read_job(request, record)
        if invalid is not None:
            return invalid
        if fault == "400":
            return error(400, "Prompt rejected")
        if fault == "406" or not self.account.reserve(record.price_micro):
            return error(406, "Not enough credits", self.account.headers())
        return None

    def _render(self, record: RequestRecord) -> list[bytes]:
        return render(record, self.config.image_size)

    def _latency(self) -> float:
        jitter = self._latency_random.uniform(-self.config.jitter, self.config.jitter)
        return max(0.0, self.config.latency + jitter)

    async def _tracked(self, request: web.Request, answer) -> web.StreamResponse:
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

    async def _v1_generate(self, request: web.Request) -> web.StreamResponse:
        return await self._tracked(request, self._v1_answer)

    async def _v1_answer(self, request: web.Request,
                         record: RequestRecord) -> web.StreamResponse:
        early, fault = await self._gate(request, record)
        if early is not None:
            return early
        refused = await self._admit(request, record, fault)
        if refused is not None:
            return refused
        charged = False
        images = self._render(record)
        try:
            record.latency = self._latency()
            await asyncio.sleep(record.latency)
            self.account.settle(charge=True, price_micro=record.price_micro,
                                model=record.model, images=len(images))
            charged = record.charged = True
        finally:
            if not charged:
                self.account.settle(charge=False, price_micro=record.price_micro)
        request_id = uuid.uuid4().hex
        record.request_id = request_id
        headers = {
            **self.account.headers(),
            "x-request-id": request_id,
            "x-credits-consumed": self.config.credits_consumed or dollars(record.price_micro),
            "x-generation-time": f"{record.latency:.3f}",
        }
        # Every answer from here on is a billed 200, whatever its body.
        if fault == "late":  # billed, then slow to say so: a client may give up first
            await asyncio.sleep(self.config.hang)
        if fault == "garbage":
            return garbage(headers)
        if fault == "gzipbomb":
            return bomb(headers)
        if fault == "truncate" and len(images) == 1:
            return await cut_off(request, images[0], "image/png", headers)
        answer = self._success(request, record, images, headers)
        if fault == "truncate":
            return await cut_off(request, answer.body, answer.content_type, headers)
        return answer

    def _success(self, request: web.Request, record: RequestRecord, images: list[bytes],
                 headers: dict) -> web.Response:
        """One image as today's formats; several as JSON: `{"output": <first url>,
        "images": [{url, content_type, file_name, file_size}, …]}` (url format, the shape
        of a v2 result) or `{"images": [<base64>, …]}` (raw and base64 formats). A body
        with `"base64": true` asks for base64."""
        fmt = self.config.response_format
        if fmt == "mixed":
            fmt = next(self._formats)
        if (record.params or {}).get("base64") is True:
            fmt = "base64"
        if fmt == "url":  # under the host name the client used to reach us
            urls = [f"{request.url.origin()}{self._put_file(image)}" for image in images]
            body: dict = {"output": urls[0]}
            if len(images) > 1:
                body["images"] = [media(u, image) for u, image in zip(urls, images, strict=True)]
            return json_response(body, headers=headers)
        encoded = [base64.b64encode(image).decode() for image in images]
        if len(images) > 1:
            return json_response({"images": encoded}, headers=headers)
        if fmt == "base64":
            return json_response({"image": encoded[0]}, headers=headers)
        return web.Response(body=images[0], headers=headers, content_type="image/png")

    async def _file(self, request: web.Request) -> web.StreamResponse:
        record = self._record(request)
        data, content_type = self._files.get(request.match_info["name"], (None, ""))
        answer = (error(404, "Not found") if data is None
                  else web.Response(body=data, content_type=content_type))
        response = await serve_poll(self._faults.file(), request, record, self.config, answer)
        record.status = response.status
        return response

    async def _credits(self, request: web.Request) -> web.Response:
        record = self._record(request)
        await asyncio.sleep(self.config.credits_delay)
        response = self._check_key(request)
        if response is None:
            if not self.config.credits_endpoint:
                response = error(404, "Not found")
            else:
                balance = self.account.balance
                response = json_response({"credits": 1000.0 if balance is None else balance,
                                          "free-credits": 0.0})
        record.status = response.status
        return response

    async def _stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats())

    # -- v2 ----------------------------------------------------------------------

    async def _v2_submit(self, request: web.Request) -> web.StreamResponse:
        return await self._tracked(request, self._v2_accept)

    async def _v2_accept(self, request: web.Request,
                         record: RequestRecord) -> web.StreamResponse:
        early, fault = await self._gate(request, record)
        if early is not None:
            return early
        refused = await self._admit(request, record, fault)
        if refused is not None:
            return refused
        # Every 200 is billed (SPEC §8 M1): a garbled answer still queued the request.
        request_id = self._queue.submit(record, lost=fault == "lost")
        if fault == "garbage":
            return garbage()
        if fault == "gzipbomb":
            return bomb()
        base = f"{request.url.origin()}/v2/requests/{request_id}"
        answer = json_response(
            {"request_id": request_id, "status": "QUEUED",
             "status_url": f"{base}/status", "response_url": base},
            headers=self.account.headers(),
        )
        if fault == "truncate":  # queued, billed when done; the id never arrives
            return await cut_off(request, answer.body, answer.content_type,
                                 self.account.headers())
        return answer

    async def _v2_poll(self, request: web.Request, result: bool) -> web.StreamResponse:
        """A status poll, or (`result`) a result fetch, for the request the URL names."""
        record = self._record(request, request_id=request.match_info["id"])
        response = self._check_key(request)
        if response is None:
            fault = self._faults.result() if result else self._faults.status()
            answer = self._queue.answer(record.request_id, str(request.url.origin()), result)
            response = await serve_poll(fault, request, record, self.config, answer, EXPIRED)
        record.status = response.status
        return response

    async def _v2_status(self, request: web.Request) -> web.StreamResponse:
        return await self._v2_poll(request, result=False)

    async def _v2_result(self, request: web.Request) -> web.StreamResponse:
        return await self._v2_poll(request, result=True)


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
