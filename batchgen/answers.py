"""Reading the API's answers: status codes to error types, wait headers to seconds,
and bodies decoded under a size cap. Pure functions, no I/O: `client` uses them.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
import zlib
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from .errors import (
    FatalApiError,
    JobRejected,
    OutOfCredits,
    RateLimited,
    RetryableError,
)

MAX_DOWNLOAD_BYTES = 50 * 1024 * 1024
CHUNK = 1 << 16


class TooBig(Exception):
    """A body larger than the cap once decoded (a gzip bomb, or just too large)."""


class Decoder:
    """Undoes `Content-Encoding` (gzip, deflate) a chunk at a time, never producing
    more than `cap` bytes in all: 61 KB of gzip cannot become 60 MB in memory."""

    def __init__(self, encoding: str, cap: int):
        encoding = encoding.strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip", "deflate"):
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")
        # 31: gzip header; 47: zlib or gzip, detected (what servers send as deflate)
        wbits = 31 if "gzip" in encoding else 47
        self._zlib = zlib.decompressobj(wbits) if encoding not in ("", "identity") else None
        self._cap = cap
        self._parts: list[bytes] = []
        self.size = 0

    def feed(self, chunk: bytes) -> None:
        if self._zlib is None:
            self._keep(chunk)
            return
        while chunk:
            self._keep(self._zlib.decompress(chunk, self._cap - self.size + 1))
            chunk = self._zlib.unconsumed_tail

    def _keep(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self._cap:
            raise TooBig
        self._parts.append(data)

    def result(self) -> bytes:
        if self._zlib is not None:
            self._keep(self._zlib.flush())
        return b"".join(self._parts)


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


def float_header(headers: Mapping[str, str], name: str) -> float | None:
    try:
        value = float(headers[name])
    except (KeyError, ValueError):
        return None
    return value if math.isfinite(value) else None


def clean_text(value: object, limit: int = 500) -> str:
    """Text from the API as something safe to record and print: at most `limit`
    characters, and never a lone surrogate (JSON's "\ud800"), which UTF-8 cannot hold."""
    text = str(value)[:limit]
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def error_message(body: bytes) -> str:
    data = json_object(body)
    if data is not None and data.get("error"):
        return clean_text(data["error"])
    return clean_text(body.decode("utf-8", "replace").strip(), 200) or "no error message"


def decode(raw: bytes, encoding: str, cap: int) -> bytes:
    """A whole encoded body, decoded under the cap (run in a thread: undoing 50 MB of
    gzip takes long enough to hold up every other request's answer)."""
    decoder = Decoder(encoding, cap)
    for start in range(0, len(raw), CHUNK):
        decoder.feed(raw[start:start + CHUNK])
    return decoder.result()


def json_object(body: bytes) -> dict[str, Any] | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def raise_for_status(status: int, body: bytes, headers: Mapping[str, str], url: str) -> None:
    """Turn a non-200 answer into the error type that says what to do next."""
    if status == 200:
        return
    if 300 <= status < 400:
        where = headers.get("Location") or "nowhere"
        raise FatalApiError(f"the API answered with a redirect to {where}, which batchgen does "
                            f"not follow (the key must not travel elsewhere): check the base "
                            f"URL ({url})", status)
    message = error_message(body)
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
