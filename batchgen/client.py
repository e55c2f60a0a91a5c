"""One request to Segmind's API → a `GeneratedImage`, or a typed error from `errors`.

Nothing aiohttp-shaped leaves this module: callers see bytes, metadata and
`batchgen.errors` exceptions only. Usage::

    async with Client.open(base_url, api_key, concurrency=8, timeout=600) as client:
        image = await client.generate("a red fox", "16:9")
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import email.utils
import ipaddress
import json
import math
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from .config import MODEL
from .errors import (
    ApiError,
    FatalApiError,
    InvalidImage,
    JobRejected,
    OutOfCredits,
    RateLimited,
    RetryableError,
)

MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}

_SIGNATURES = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)


def image_extension(data: bytes) -> str | None:
    """The file extension for image bytes, judged by their magic bytes, or None."""
    for magic, ext in _SIGNATURES:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """A verified image and what the API said about it."""

    data: bytes
    extension: str
    content_type: str
    latency_s: float
    request_id: str | None = None
    remaining_credits: float | None = None
    credits_consumed: float | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    """A v2 request the API accepted: poll `request_id` until it is done."""

    request_id: str
    remaining_credits: float | None = None


def is_loopback(url: str) -> bool:
    """True for localhost and any loopback address (127.0.0.0/8, ::1)."""
    host = urlsplit(url).hostname or ""
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def key_exposed(base_url: str) -> bool:
    """True when the key would travel unencrypted to another machine."""
    return urlsplit(base_url).scheme == "http" and not is_loopback(base_url)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait, from `Retry-After` (seconds or HTTP date) or
    `x-rate-limit-reset-at-utc` (ISO 8601, or epoch seconds or milliseconds); None when
    neither parses."""
    now = time.time() if now is None else now
    value = headers.get("Retry-After", "").strip()
    if value:
        seconds = _number(value)
        if seconds is not None:
            return max(0.0, seconds)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            pass
        else:
            return _until(when, now)
    value = headers.get("x-rate-limit-reset-at-utc", "").strip()
    if value:
        epoch = _number(value)
        if epoch is not None:
            if epoch > 1e11:  # milliseconds since the epoch
                epoch /= 1000
            elif epoch < 1e9:  # too small for a date this century: a delay in seconds
                return max(0.0, epoch)
            return max(0.0, epoch - now)
        try:
            return _until(datetime.fromisoformat(value.replace("Z", "+00:00")), now)
        except ValueError:
            return None
    return None


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _until(when: datetime, now: float) -> float:
    """Seconds from `now` to `when`; a time without a zone is UTC."""
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - now)


def _float_header(headers: Mapping[str, str], name: str) -> float | None:
    try:
        return float(headers[name])
    except (KeyError, ValueError):
        return None


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("error"):
        return str(data["error"])[:500]
    text = body.decode("utf-8", "replace").strip()
    return text[:200] or "no error message"


def raise_for_status(status: int, body: bytes, headers: Mapping[str, str], url: str) -> None:
    """Turn a non-200 response into the error type that says what to do next."""
    if status == 200:
        return
    message = _error_message(body)
    if status == 429:
        raise RateLimited(message, status, retry_after=parse_retry_after(headers))
    if status == 406:
        raise OutOfCredits(message, status)
    if status in (401, 403):
        raise FatalApiError(f"{message} (check the key in SEGMIND_API_KEY)", status)
    if status == 404:
        raise FatalApiError(f"{message} (no such endpoint: {url})", status)
    if status >= 500 or status == 408:
        raise RetryableError(message, status, retry_after=parse_retry_after(headers))
    raise JobRejected(message, status)


class Client:
    """Sends requests to one API base URL with one key over a shared session."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base_url: str,
        api_key: str,
        *,
        timeout: float = 600.0,
        max_download: int = MAX_DOWNLOAD_BYTES,
    ):
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_download = max_download
        self._api_origin = _origin(self.base_url)

    def __repr__(self) -> str:
        return f"<Client {self.base_url}>"

    def _redact(self, body: bytes) -> bytes:
        """An error body with the key blotted out, should a server ever echo it."""
        return body.replace(self._api_key.encode(), b"***") if self._api_key else body

    def _check(self, status: int, body: bytes, headers: Mapping[str, str], url: str) -> None:
        if status != 200:
            raise_for_status(status, self._redact(body), headers, url)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, base_url: str, api_key: str, *, concurrency: int = 8, timeout: float = 600.0
    ) -> AsyncIterator[Client]:
        """A client with its own session, sized for `concurrency` parallel requests."""
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:
            yield cls(session, base_url, api_key, timeout=timeout)

    @property
    def generate_url(self) -> str:
        return f"{self.base_url}/v1/models/{MODEL}"

    async def _request(
        self, method: str, url: str, payload: dict | None = None
    ) -> tuple[int, bytes, Mapping[str, str], float]:
        """Status, body, headers and latency; network trouble becomes RetryableError.
        The key goes only to the API's own scheme, host and port."""
        headers = {"x-api-key": self._api_key} if _origin(url) == self._api_origin else {}
        started = time.monotonic()
        try:
            async with self._session.request(
                method, url, json=payload, headers=headers,
                timeout=self._timeout, allow_redirects=False,
            ) as resp:
                body = await self._read_capped(resp)
                return resp.status, body, resp.headers, time.monotonic() - started
        except asyncio.TimeoutError:
            raise RetryableError(f"no answer within {self._timeout.total:g}s") from None
        except aiohttp.ClientError as exc:
            raise RetryableError(f"connection failed: {type(exc).__name__}") from None

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        too_big = InvalidImage(f"invalid image data: larger than {self._max_download} bytes", 200)
        if (resp.content_length or 0) > self._max_download:
            raise too_big
        if resp.content_length is not None:  # the usual case: one read of a known size
            return await resp.read()
        chunks, size = [], 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self._max_download:
                raise too_big
            chunks.append(chunk)
        return b"".join(chunks)

    async def generate(self, prompt: str, aspect_ratio: str) -> GeneratedImage:
        """v1: one blocking generation request; the image in whichever format the API chose."""
        url = self.generate_url
        status, body, headers, latency = await self._request(
            "POST", url, {"prompt": prompt, "aspect_ratio": aspect_ratio}
        )
        self._check(status, body, headers, url)
        try:
            data, content_type = await self._image_from_body(body, headers.get("Content-Type", ""))
        except InvalidImage:
            raise
        except ApiError as exc:  # the 200 was billed, so a failed download is billed too
            raise InvalidImage(f"invalid image data: {exc.message}", 200) from None
        return GeneratedImage(
            data=data,
            extension=_verified_extension(data),
            content_type=content_type,
            latency_s=latency,
            request_id=headers.get("x-request-id"),
            remaining_credits=_float_header(headers, "x-remaining-credits"),
            credits_consumed=_float_header(headers, "x-credits-consumed"),
        )

    async def credits(self) -> float:
        """The account balance in dollars (`GET /v1/get-user-credits`)."""
        url = f"{self.base_url}/v1/get-user-credits"
        status, body, headers, _ = await self._request("GET", url)
        self._check(status, body, headers, url)
        try:
            return float(json.loads(body)["credits"])
        except (ValueError, KeyError, TypeError):
            raise RetryableError("unreadable credits answer", status) from None

    async def submit(self, prompt: str, aspect_ratio: str) -> Submission:
        """v2: queue a generation; the answer carries the id to poll."""
        url = f"{self.base_url}/v2/{MODEL}"
        status, body, headers, _ = await self._request(
            "POST", url, {"prompt": prompt, "aspect_ratio": aspect_ratio}
        )
        self._check(status, body, headers, url)
        request_id = (_json_or_none(body) or {}).get("request_id")
        if not request_id:
            raise RetryableError("v2 submit answered without a request_id", status)
        return Submission(str(request_id), _float_header(headers, "x-remaining-credits"))

    async def status(self, request_id: str) -> tuple[str, str | None]:
        """v2: (QUEUED | PROCESSING | COMPLETED | FAILED | EXPIRED, error message).
        EXPIRED: the API no longer knows the request (404; results are kept about an
        hour), so it can never complete and may be submitted again."""
        url = f"{self.base_url}/v2/requests/{request_id}/status"
        try:
            data = await self._v2_get(url)
        except FatalApiError as exc:
            if exc.status == 404:
                return "EXPIRED", exc.message
            raise
        return str(data.get("status", "")).upper(), data.get("error")

    async def result(self, request_id: str) -> GeneratedImage:
        """v2: download the finished image of a COMPLETED request. Not finished yet,
        or gone (404): RetryableError, so the caller polls `status` again."""
        url = f"{self.base_url}/v2/requests/{request_id}"
        started = time.monotonic()
        try:
            data = await self._v2_get(url)
        except FatalApiError as exc:
            if exc.status != 404:
                raise
            raise RetryableError(exc.message, 404) from None
        state = str(data.get("status", "")).upper()
        if state == "FAILED":
            raise JobRejected(str(data.get("error") or "generation failed"), 422)
        if state != "COMPLETED":
            raise RetryableError(f"request {request_id} is not finished: {state or '?'}")
        image, content_type = await self._image_from_json(data)
        return GeneratedImage(
            data=image,
            extension=_verified_extension(image),
            content_type=content_type,
            latency_s=time.monotonic() - started,
            request_id=request_id,
        )

    async def _v2_get(self, url: str) -> dict[str, Any]:
        status, body, headers, _ = await self._request("GET", url)
        data = _json_or_none(body)
        if status == 422 and data and str(data.get("status", "")).upper() == "FAILED":
            return data  # the API serves FAILED requests with 422, the state in the body
        self._check(status, body, headers, url)
        if data is None:
            raise RetryableError("v2 answer is not a JSON object", status)
        return data

    async def _image_from_body(self, body: bytes, content_type: str) -> tuple[bytes, str]:
        looks_json = "json" in content_type or (
            image_extension(body) is None and body.lstrip()[:1] == b"{"
        )
        if not looks_json:
            return body, content_type.split(";")[0]
        return await self._image_from_json(_json_object(body))

    async def _image_from_json(self, data: dict[str, Any]) -> tuple[bytes, str]:
        """Accept {"image": base64}, {"output": url | [url]} and {"image_url": url}."""
        if isinstance(data.get("image"), str):
            encoded = "".join(data["image"].split(",", 1)[-1].split())  # data: URIs, newlines
            try:
                return base64.b64decode(encoded, validate=True), "application/json+base64"
            except (binascii.Error, ValueError):
                raise InvalidImage("invalid image data: bad base64", 200) from None
        url = data.get("output") or data.get("image_url")
        if isinstance(url, list) and len(url) == 1:
            url = url[0]
        if not isinstance(url, str):
            raise InvalidImage("invalid image data: no image in the JSON answer", 200)
        return await self.download(url), "application/json+url"

    async def download(self, url: str) -> bytes:
        """Fetch an image URL: http(s) only, size-capped, the key only for the API's host."""
        url = urljoin(self.base_url + "/", url)
        if urlsplit(url).scheme not in ("http", "https"):
            raise InvalidImage(f"invalid image data: refusing to fetch {urlsplit(url).scheme}: URL")
        status, body, headers, _ = await self._request("GET", url)
        if status in (301, 302, 303, 307, 308):
            target = urljoin(url, headers.get("Location", ""))
            if urlsplit(target).scheme not in ("http", "https"):
                raise InvalidImage("invalid image data: redirect to a non-http URL")
            status, body, headers, _ = await self._request("GET", target)
        if status != 200:
            message = _error_message(self._redact(body))
            raise RetryableError(f"image download failed: {message}", status)
        return body


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _json_or_none(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _json_object(body: bytes) -> dict[str, Any]:
    data = _json_or_none(body)
    if data is None:
        raise InvalidImage("invalid image data: the answer is not a JSON object", 200)
    return data


def _verified_extension(data: bytes) -> str:
    ext = image_extension(data)
    if ext is None:
        raise InvalidImage("invalid image data: the answer is not a JPEG, PNG, WEBP or GIF", 200)
    return ext


__all__ = [
    "Client",
    "GeneratedImage",
    "Submission",
    "image_extension",
    "key_exposed",
    "parse_retry_after",
]
