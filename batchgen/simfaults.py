"""How the simulator misbehaves: which fault the next request gets (`FaultSchedule`),
and the HTTP answers faults are served as — error bodies, a redirect elsewhere, a
hang, a body cut off mid-transfer, a gzip bomb."""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from http import HTTPStatus

from aiohttp import web

from .fakeimage import gzip_bomb
from .simconfig import PASS, RequestRecord, SimulatorConfig

ELSEWHERE = "http://elsewhere.invalid"  # where a "redirect" fault sends the client
_MESSAGES = {
    401: "Unauthorized", 403: "Forbidden", 404: "Not found", 429: "Rate limit exceeded",
    500: "Internal server error", 502: "Bad gateway", 503: "Service unavailable",
    504: "Gateway timeout",
}


class FaultSchedule:
    """The faults still to come: each script in order, then the permanent fault (for
    generation requests, a seeded random draw: the same sequence for the same seed)."""

    def __init__(self, config: SimulatorConfig):
        self._config = config
        self._random = random.Random(config.seed)
        self._generation = deque(config.fault_script)
        self._status = deque(config.status_faults)
        self._files = deque(config.file_faults)

    def generation(self) -> str | None:
        if self._generation:
            return _active(self._generation.popleft())
        config = self._config
        if config.fault_rate and self._random.random() < config.fault_rate:
            return _active(self._random.choice(config.fault_kinds))
        return None

    def status(self) -> str | None:
        """For a v2 status poll."""
        return _active(self._status.popleft() if self._status else self._config.status_fault)

    def result(self) -> str | None:
        """For a v2 result fetch: the permanent status fault, once the status script is
        played (a request stuck or a queue service down shows on both of its URLs; the
        script's one-off blips hit only the polls it is written for)."""
        return None if self._status else _active(self._config.status_fault)

    def file(self) -> str | None:
        return _active(self._files.popleft() if self._files else self._config.file_fault)


def _active(fault: str | None) -> str | None:
    return None if fault in PASS else fault


def json_response(data: dict, status: int = 200, headers: dict | None = None) -> web.Response:
    return web.Response(
        body=json.dumps(data).encode(), status=status, headers=headers,
        content_type="application/json",
    )


def error(status: int, message: str, headers: dict | None = None) -> web.Response:
    return json_response({"error": message}, status, headers)


def http_fault(status: int, request: web.Request, retry_after: float,
               not_found: str = "Not found") -> web.Response:
    """An HTTP status as a fault: a redirect elsewhere, a 429 asking to wait
    `retry_after` seconds, or a JSON error."""
    if status < 400:
        return redirect(request, status)
    headers = {"Retry-After": _seconds(retry_after)} if status == 429 else None
    message = not_found if status == 404 else _MESSAGES.get(status)
    return error(status, message or HTTPStatus(status).phrase, headers)


def _seconds(value: float) -> str:
    return str(int(value)) if value == int(value) else str(value)


def redirect(request: web.Request, status: int = 302) -> web.Response:
    """What a misconfigured proxy answers: the same path on another host, never billed."""
    return web.Response(status=status, text="Found",
                        headers={"Location": f"{ELSEWHERE}{request.path_qs}"})


def garbage(headers: dict | None = None) -> web.Response:
    return web.Response(body=b"<html>upstream hiccup</html>", headers=headers,
                        content_type="text/html")


def bomb(headers: dict | None = None) -> web.Response:
    """A 200 "PNG" of ~60 KB on the wire that inflates to 60 MiB."""
    return web.Response(body=gzip_bomb(), headers={
        **(headers or {}), "Content-Type": "image/png", "Content-Encoding": "gzip"})


async def hang(record: RequestRecord, seconds: float) -> web.Response:
    """Keep the client waiting, then give up as a gateway would."""
    record.status = "timeout"  # stays so if the client gives up first
    await asyncio.sleep(seconds)
    return error(504, "Gateway timeout")


async def cut_off(request: web.Request, body: bytes, content_type: str,
                  headers: dict | None = None, status: int = 200) -> web.StreamResponse:
    """Promise all of `body` (its Content-Length), send half, then drop the connection:
    the client sees the headers of a complete answer and a payload error."""
    response = web.StreamResponse(status=status, headers=headers)
    response.content_type = content_type
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[:len(body) // 2])
    if request.transport is not None:
        request.transport.close()  # flushes what was written, then closes
    return response


async def early_answer(fault: str | None, request: web.Request, record: RequestRecord,
                       config: SimulatorConfig) -> web.Response | None:
    """A generation request's fault that answers before its job is read: an HTTP error
    (but 400 and 406, which judge the job), a redirect, a hang. None for the others."""
    if fault is None or fault in ("400", "406"):
        return None
    if fault.isdigit():
        return http_fault(int(fault), request, config.retry_after)
    if fault == "redirect":
        return redirect(request)
    if fault == "timeout":
        return await hang(record, config.hang)
    return None


async def serve_poll(fault: str | None, request: web.Request, record: RequestRecord,
                     config: SimulatorConfig, answer: web.Response,
                     not_found: str = "Not found") -> web.StreamResponse:
    """A status poll, result fetch or download: `answer`, or what `fault` makes of it."""
    record.fault = fault
    if fault is None:
        return answer
    if fault == "truncate":
        return await cut_off(request, answer.body, answer.content_type, status=answer.status)
    if fault == "garbage":
        return garbage()
    if fault == "redirect":
        return redirect(request)
    if fault == "timeout":
        return await hang(record, config.hang)
    if fault.isdigit():
        return http_fault(int(fault), request, config.retry_after, not_found)
    return json_response({"request_id": request.match_info.get("id"), "status": fault})
