"""One request to Segmind's API → a `GeneratedImage`, or a typed error from `errors`.

Nothing aiohttp-shaped leaves this module: callers see bytes, metadata and
`batchgen.errors` exceptions only. Usage::

    async with Client.open(base_url, api_key, concurrency=8, timeout=600) as client:
        image = await client.generate({"prompt": "a red fox", "aspect_ratio": "16:9"})

Bodies are decoded here, not by aiohttp, so the 50 MB cap counts decoded bytes
(SPEC §6). An answer to a request that may be billed (v1 generate, v2 submit) is
`billed` as soon as its status line says 200, whatever happens to its body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import re
import time
import zlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urljoin, urlsplit

import aiohttp

from .answers import (
    CHUNK,
    MAX_DOWNLOAD_BYTES,
    Decoder,
    TooBig,
    clean_text,
    decode,
    error_message,
    float_header,
    json_object,
    raise_for_status,
)
from .config import MODEL
from .errors import (
    ApiError,
    FatalApiError,
    InvalidImage,
    JobRejected,
    NoAnswer,
    RequestLost,
    RetryableError,
)
from .store import image_extension

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}
REDIRECTS = (301, 302, 303, 307, 308)
QUICK_TIMEOUT = 30.0  # seconds for a status poll or a balance check: quick questions
# A v2 request id goes into URLs and the manifest: letters, digits and a few marks.
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,200}")


@dataclass(frozen=True, slots=True)
class GeneratedImage:
    """The verified images of one answer (several when a model was asked for
    `samples`), and what the API said about them."""

    images: tuple[tuple[bytes, str], ...]  # (bytes, file extension), in the API's order
    content_type: str
    latency_s: float
    request_id: str | None = None
    remaining_credits: float | None = None
    credits_consumed: float | None = None  # dollars, when the API says (x-credits-consumed)

    @property
    def data(self) -> bytes:
        return self.images[0][0]

    @property
    def extension(self) -> str:
        return self.images[0][1]


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    body: bytes
    headers: Mapping[str, str]
    latency: float


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


class Client:
    """Sends requests to one API base URL with one key over a shared session."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, api_key: str, *,
                 timeout: float = 600.0, max_download: int = MAX_DOWNLOAD_BYTES):
        self._session = session
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._max_download = max_download
        self._api_origin = _origin(self.base_url)

    def __repr__(self) -> str:
        return f"<Client {self.base_url}>"

    @classmethod
    @asynccontextmanager
    async def open(cls, base_url: str, api_key: str, *, concurrency: int = 8,
                   timeout: float = 600.0) -> AsyncIterator[Client]:
        """A client with its own session, sized for `concurrency` parallel requests."""
        connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
        async with aiohttp.ClientSession(connector=connector, auto_decompress=False,
                                         headers={"Accept-Encoding": "gzip, deflate"}) as s:
            yield cls(s, base_url, api_key, timeout=timeout)

    # -- requests ------------------------------------------------------------------

    async def _request(self, method: str, url: str, payload: dict | None = None, *,
                       billable: bool = False, timeout: float | None = None) -> Answer:
        """One request. Network trouble becomes RetryableError, NoAnswer if `billable`
        (it may have been billed); if `billable` and the status said 200, any trouble
        with the body is a billed InvalidImage. The key goes only to the API's own
        scheme, host and port. `timeout` shortens the client's for quick questions."""
        headers = {"x-api-key": self._api_key} if _origin(url) == self._api_origin else {}
        limit = self._timeout if timeout is None else aiohttp.ClientTimeout(
            total=min(timeout, self._timeout.total or timeout))
        started = time.monotonic()
        status = 0
        try:
            async with self._session.request(method, url, json=payload, headers=headers,
                                             timeout=limit, allow_redirects=False) as resp:
                status = resp.status
                body = await self._read_capped(resp)
                return Answer(status, body, resp.headers, time.monotonic() - started)
        except TooBig:
            raise InvalidImage(f"invalid image data: larger than {self._max_download} bytes",
                               status) from None
        except ValueError as exc:  # an encoding we cannot undo, or a corrupt stream
            problem = str(exc) or "undecodable body"
        except (asyncio.TimeoutError, aiohttp.ClientError, zlib.error) as exc:
            if not status:
                raise _network_error(exc, limit.total, billable) from None
            problem = f"the answer was cut off ({type(exc).__name__})"
        if billable and status == 200:
            raise InvalidImage(f"invalid image data: {problem}", 200)
        raise RetryableError(f"unreadable answer: {problem}", status or None)

    async def _read_capped(self, resp: aiohttp.ClientResponse) -> bytes:
        encoding = resp.headers.get("Content-Encoding", "")
        if not encoding and resp.content_length is not None:  # the usual case: one read
            if resp.content_length > self._max_download:
                raise TooBig
            return await resp.read()
        raw = Decoder("", self._max_download)  # the body as it came, capped
        async for chunk in resp.content.iter_chunked(CHUNK):
            raw.feed(chunk)
        if not encoding:
            return raw.result()
        return await asyncio.to_thread(decode, raw.result(), encoding, self._max_download)

    def _check(self, answer: Answer, url: str) -> None:
        if answer.status != 200:
            raise_for_status(answer.status, self._redact(answer.body), answer.headers, url)

    def _redact(self, body: bytes) -> bytes:
        """An error body with the key blotted out, should a server ever echo it."""
        return body.replace(self._api_key.encode(), b"***") if self._api_key else body

    # -- v1 --------------------------------------------------------------------------

    async def generate(self, body: dict[str, Any], path: str = f"/v1/models/{MODEL}"
                       ) -> GeneratedImage:
        """v1: one blocking generation request to the model at `path` (default: Luma
        Photon); the images in whichever format the API chose. Any trouble after a 200
        is a billed InvalidImage."""
        url = self.base_url + path
        answer = await self._request("POST", url, body, billable=True)
        self._check(answer, url)
        try:
            images, content_type = await self._images_from_body(answer)
        except InvalidImage:
            raise
        except ApiError as exc:
            raise InvalidImage(f"invalid image data: {exc.message}", 200) from None
        headers = answer.headers
        return GeneratedImage(
            images=_verified(images), content_type=content_type, latency_s=answer.latency,
            request_id=headers.get("x-request-id"),
            remaining_credits=float_header(headers, "x-remaining-credits"),
            credits_consumed=float_header(headers, "x-credits-consumed"),
        )

    async def credits(self) -> float:
        """The account balance in dollars (`GET /v1/get-user-credits`)."""
        url = f"{self.base_url}/v1/get-user-credits"
        answer = await self._request("GET", url, timeout=QUICK_TIMEOUT)
        self._check(answer, url)
        try:
            return float((json_object(answer.body) or {})["credits"])
        except (ValueError, KeyError, TypeError):
            raise RetryableError("unreadable credits answer", answer.status) from None

    # -- v2 --------------------------------------------------------------------------

    async def submit(self, body: dict[str, Any], model: str = MODEL) -> str:
        """v2: queue a generation; the id to poll. A 200 without a readable id is a
        billed InvalidImage: the API may have queued it all the same."""
        url = f"{self.base_url}/v2/{model}"
        answer = await self._request("POST", url, body, billable=True)
        self._check(answer, url)
        request_id = (json_object(answer.body) or {}).get("request_id")
        if not isinstance(request_id, str) or not _REQUEST_ID.fullmatch(request_id):
            raise InvalidImage("v2 submit answered without a usable request_id: "
                               f"{clean_text(request_id, 80)!r}", 200)
        return request_id

    async def status(self, request_id: str) -> tuple[str, str | None]:
        """v2: (state, error message). The state is whatever the API says, upper-cased
        (QUEUED, PROCESSING, COMPLETED, FAILED, or anything else); 404 is RequestLost."""
        data = await self._v2_get(f"{self.base_url}/v2/requests/{request_id}/status",
                                  timeout=QUICK_TIMEOUT)
        error = data.get("error")
        return clean_text(data.get("status", ""), 40).upper(), clean_text(error) if error else None

    async def result(self, request_id: str) -> GeneratedImage:
        """v2: the finished image of a COMPLETED request. 404: RequestLost."""
        started = time.monotonic()
        data = await self._v2_get(f"{self.base_url}/v2/requests/{request_id}")
        state = str(data.get("status", "")).upper()
        if state == "FAILED":
            raise JobRejected(clean_text(data.get("error") or "generation failed"), 422)
        if state != "COMPLETED":
            raise RetryableError(f"request {request_id} is not finished: {state or '?'}")
        images, content_type = await self._images_from_json(data)
        cost = (data.get("metrics") or {}).get("cost") if isinstance(
            data.get("metrics"), dict) else None
        return GeneratedImage(images=_verified(images), content_type=content_type,
                              latency_s=time.monotonic() - started, request_id=request_id,
                              credits_consumed=cost if isinstance(cost, (int, float))
                              and not isinstance(cost, bool) else None)

    async def _v2_get(self, url: str, timeout: float | None = None) -> dict[str, Any]:
        answer = await self._request("GET", url, timeout=timeout)
        data = json_object(answer.body)
        if answer.status == 422 and data and str(data.get("status", "")).upper() == "FAILED":
            return data  # the API serves FAILED requests with 422, the state in the body
        try:
            self._check(answer, url)
        except FatalApiError as exc:
            if exc.status == 404:
                raise RequestLost(f"the API no longer knows this request ({exc.message})",
                                  404) from None
            raise
        if data is None:
            raise RetryableError("v2 answer is not a JSON object", answer.status)
        return data

    # -- images ----------------------------------------------------------------------

    async def _images_from_body(self, answer: Answer) -> tuple[list[bytes], str]:
        content_type = answer.headers.get("Content-Type", "")
        body = answer.body
        looks_json = "json" in content_type or (
            image_extension(body) is None and body.lstrip()[:1] == b"{")
        if not looks_json:
            return [body], content_type.split(";")[0]
        data = json_object(body)
        if data is None:
            raise InvalidImage("invalid image data: the answer is not a JSON object", 200)
        return await self._images_from_json(data)

    async def _images_from_json(self, data: dict[str, Any]) -> tuple[list[bytes], str]:
        """Every image a JSON answer holds: {"images": [base64 | url | {"url": ...}]},
        {"image": base64 | [base64]}, {"output": url | [url]} or {"image_url": url}."""
        for key, url in (("images", None), ("image", False), ("output", True),
                         ("image_url", True)):
            value = data.get(key)
            if value:
                items = value if isinstance(value, list) else [value]
                return [await self._one_image(item, url) for item in items], "application/json"
        raise InvalidImage("invalid image data: no image in the JSON answer", 200)

    async def _one_image(self, item: Any, url: bool | None) -> bytes:
        """An image given as a URL (`url`), as base64 (not `url`), or either (None:
        an object, or text that names a scheme or a path, is a URL)."""
        if isinstance(item, dict):
            item, url = item.get("url") or item.get("image_url") or item.get("image"), (
                None if "url" in item or "image_url" in item else False)
        if not isinstance(item, str) or not item:
            raise InvalidImage("invalid image data: an image the answer does not hold", 200)
        if url or (url is None and ("://" in item or item.startswith("/"))):
            return await self.download(item)
        encoded = "".join(item.split(",", 1)[-1].split())  # data: URIs, newlines
        try:
            return base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise InvalidImage("invalid image data: bad base64", 200) from None

    async def download(self, url: str) -> bytes:
        """Fetch an image URL: http(s) only, size-capped, the key only for the API's
        host; one redirect is followed (CDNs use them), never to another scheme."""
        url = urljoin(self.base_url + "/", url)
        for _ in range(2):
            if urlsplit(url).scheme not in ("http", "https"):
                raise InvalidImage(f"invalid image data: refusing to fetch {url[:60]!r}")
            answer = await self._request("GET", url)
            if answer.status not in REDIRECTS:
                break
            url = urljoin(url, answer.headers.get("Location", ""))
        if answer.status != 200:
            message = error_message(self._redact(answer.body))
            raise RetryableError(f"image download failed: {message}", answer.status)
        return answer.body


def _network_error(exc: BaseException, timeout: float | None,
                   billable: bool) -> RetryableError:
    """A request without an answer. If it may have been billed and may have reached
    the API - a timeout, or a connection lost after connecting - say so: NoAnswer."""
    if isinstance(exc, asyncio.TimeoutError):
        message = f"no answer within {timeout:g}s"
    else:
        message = f"connection failed: {type(exc).__name__}"
    reached = not isinstance(exc, aiohttp.ClientConnectorError)
    return NoAnswer(message) if billable and reached else RetryableError(message)


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


def _verified(images: list[bytes]) -> tuple[tuple[bytes, str], ...]:
    """Each image with its extension; InvalidImage unless every one is an image."""
    verified = []
    for data in images:
        ext = image_extension(data)
        if ext is None:
            raise InvalidImage("invalid image data: the answer is not a JPEG, PNG, WEBP or "
                               "GIF", 200)
        verified.append((data, ext))
    return tuple(verified)


__all__ = ["Client", "GeneratedImage", "is_loopback", "key_exposed"]
