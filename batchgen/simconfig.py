"""What the simulator can be told to do (`SimulatorConfig` and its fault vocabulary)
and what it remembers of every request (`RequestRecord`).

Three scripts of faults, each played in order and then followed by a permanent
fault (or, for generation requests, a seeded random draw):

- generation requests (v1 generate, v2 submit): `fault_script`, then `fault_rate`
  draws from `fault_kinds`; any of `FAULTS`;
- v2 status polls: `status_faults`, then `status_fault`; an HTTP status, a state
  word (any upper-case word: `CANCELLED` is served as 200 `{"status": "CANCELLED"}`)
  or one of `POLL_FAULTS`;
- downloads from /files/: `file_faults`, then `file_fault`; an HTTP status or one of
  `POLL_FAULTS`.

In every script "200" or "ok" lets that request through untouched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from .money import MICRO, PRICE_MICRO

FAULTS = ("500", "502", "503", "504", "429", "timeout", "garbage", "400", "406",
          "401", "403", "404", "truncate", "redirect", "gzipbomb", "lost", "late")
POLL_FAULTS = ("timeout", "redirect", "garbage", "truncate")
FORMATS = ("raw", "base64", "url", "mixed")
PASS = ("200", "ok")


def is_http_status(word: str) -> bool:
    """A status a fault may answer with: a redirect (301 302 303 307 308) or 4xx/5xx."""
    return re.fullmatch(r"30[12378]|[45][0-9][0-9]", word) is not None


def is_state_word(word: str) -> bool:
    """A v2 state a status poll may report, known (COMPLETED) or not (CANCELLED, WEIRD)."""
    return re.fullmatch(r"[A-Z][A-Z_]*", word) is not None


def is_fault(word: str) -> bool:
    """A word of a generation requests' fault script."""
    return word in FAULTS or word in PASS


def is_file_answer(word: str) -> bool:
    """A word of the /files/ downloads' script."""
    return word in PASS or word in POLL_FAULTS or is_http_status(word)


def is_status_answer(word: str) -> bool:
    """A word of the v2 status polls' script."""
    return is_file_answer(word) or is_state_word(word)


FAULT_WORDS = f"one of {', '.join(FAULTS)}, 200"
FILE_ANSWERS = f"an HTTP status (3xx redirect, 4xx, 5xx), {', '.join(POLL_FAULTS)} or 200"
STATUS_ANSWERS = ("an HTTP status (3xx redirect, 4xx, 5xx), an upper-case state word such "
                  f"as CANCELLED, {', '.join(POLL_FAULTS)} or 200")


def _check(what: str, words: Iterable[str | None], valid: Callable[[str], bool],
           allowed: str) -> None:
    for word in words:
        if word is not None and not valid(word):
            raise ValueError(f"unknown {what} {word!r}: use {allowed}")


@dataclass(kw_only=True)
class SimulatorConfig:
    """How the fake API behaves. Most fields have a command-line twin in `batchgen simulator`."""

    latency: float = 0.0  # seconds per generation
    jitter: float = 0.0  # ± seconds added at random to the latency
    credits: float | None = None  # account balance in dollars; None = unlimited
    price: float = PRICE_MICRO / MICRO  # per image of a model outside the registry
    prices: dict[str, float] = field(default_factory=dict)  # per image, by slug: beats the registry
    rpm: int | None = None  # requests per `rate_window` seconds before 429
    rate_window: float = 60.0
    response_format: str = "raw"  # raw | base64 | url | mixed
    fault_rate: float = 0.0  # probability that a generation request gets a fault
    fault_kinds: tuple[str, ...] = ("500", "502", "503", "504", "429", "timeout", "garbage")
    fault_script: list[str] = field(default_factory=list)  # faults for the next requests, in order
    retry_after: float = 1.0  # the Retry-After seconds of a "429" fault
    status_faults: list[str] = field(default_factory=list)  # answers to the next v2 status polls
    status_fault: str | None = None  # every status poll (and result fetch) after that script
    file_faults: list[str] = field(default_factory=list)  # answers to the next /files/ requests
    file_fault: str | None = None  # every /files/ request after that script
    seed: int = 0
    reject_marker: str | None = "[reject]"  # prompts containing it get 400
    reject_message: str = "Prompt rejected by content filter"  # that 400's error text
    fail_marker: str | None = "[fail]"  # v2 prompts containing it end FAILED
    key: str | None = None  # only this key is accepted; None = any non-empty key
    hang: float = 3600.0  # how long a "timeout" fault keeps the client waiting
    credits_endpoint: bool = True  # False: GET /v1/get-user-credits answers 404
    credits_delay: float = 0.0  # seconds GET /v1/get-user-credits takes to answer
    credits_consumed: str | None = None  # what x-credits-consumed and v2's cost say, if not
    # the charge (any text: "nan", "1e30" and "-1" are lies an API could tell)
    queue_delay: float = 0.0  # v2: seconds QUEUED before PROCESSING
    result_ttl: float = 3600.0  # v2: seconds a finished result stays available (0: none)
    image_size: int = 96  # pixels on the long side

    def __post_init__(self) -> None:
        if self.response_format not in FORMATS:
            raise ValueError(f"response_format must be one of {', '.join(FORMATS)}")
        if self.price < 0 or any(p < 0 for p in self.prices.values()):
            raise ValueError("prices must be at least 0 dollars")
        if self.retry_after < 0:
            raise ValueError("retry_after must be at least 0 seconds")
        _check("fault", [*self.fault_kinds, *self.fault_script], is_fault, FAULT_WORDS)
        _check("status fault", [*self.status_faults, self.status_fault], is_status_answer,
               STATUS_ANSWERS)
        _check("file fault", [*self.file_faults, self.file_fault], is_file_answer,
               FILE_ANSWERS)


@dataclass(slots=True)
class RequestRecord:
    """One request as the server saw it."""

    t: float  # time.monotonic() at arrival
    method: str
    path: str
    status: int | str = 0  # HTTP status, or "timeout" / "disconnected"
    prompt: str | None = None
    aspect_ratio: str | None = None
    model: str | None = None  # the slug the request was for
    params: dict | None = None  # the whole JSON body received
    samples: int = 1  # images it asked for
    price_micro: int = 0  # what it costs when it succeeds
    in_flight: int = 0  # generation requests being served, this one included
    request_id: str | None = None
    charged: bool = False
    latency: float = 0.0  # seconds the simulator spent "generating" the image
    has_key: bool = False  # whether the request carried an x-api-key header
    fault: str | None = None  # the fault drawn for it, if any
