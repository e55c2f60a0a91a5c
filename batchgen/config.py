"""Settings of a run, and the facts about the API that every module shares."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import UsageError
from .money import micro_to_usd

MODEL = "luma-photon-txt-2-img"
DEFAULT_BASE_URL = "https://api.segmind.com"
API_KEY_ENV = "SEGMIND_API_KEY"
BASE_URL_ENV = "SEGMIND_BASE_URL"

ASPECT_RATIOS = ("1:1", "16:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21", "21:9")
DEFAULT_ASPECT_RATIO = "1:1"

#: Longest prompt we accept. The API documents no limit; 4,000 characters is far
#: beyond any useful prompt and stops a pasted document from being sent 1,000 times.
MAX_PROMPT_CHARS = 4000


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything `run_batch` needs besides the job file. The key never shows in repr."""

    out_dir: Path
    api_key: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    api: str = "v1"
    # limits
    concurrency: int = 8
    rate: float = 50.0  # requests per minute; 0 = no limit
    timeout: float = 600.0  # seconds per request attempt (v2: per request until it ends)
    max_outage: float = 600.0  # longest the API may be unavailable before the run ends
    grace_period: float = 60.0  # how long in-flight requests may finish after a signal
    poll_interval: float = 1.0  # v2: first status poll after this many seconds, then longer
    # retries
    retries: int = 5
    backoff: float = 1.0  # seconds before the first retry, doubling each time (full jitter)
    retry_failed: bool = False
    # money
    max_cost_micro: int | None = None
    require_credits: bool = False
    # selection and output
    limit: int | None = None
    shard: tuple[int, int] | None = None  # (index, count), 1-based
    status_interval: float = 30.0  # seconds between log lines when not on a terminal
    simulated: bool = False  # against the built-in simulator: placeholder images (M5)
    take_over: bool = False  # hand the folder to this job file, though another ran in it (M4)
    discard_simulated: bool = False  # remove simulated results first, so a real run can start

    def __post_init__(self) -> None:
        if self.api not in ("v1", "v2"):
            raise UsageError(f"api must be v1 or v2, not {self.api!r}")
        if self.concurrency < 1 or self.retries < 0:
            raise UsageError("concurrency must be at least 1 and retries at least 0")
        if self.shard is not None and not 1 <= self.shard[0] <= self.shard[1]:
            raise UsageError("shard I/N needs 1 <= I <= N")

    def public_settings(self) -> dict[str, Any]:
        """The settings recorded in the manifest: never the key."""
        return {
            "concurrency": self.concurrency,
            "rate": self.rate,
            "api": self.api,
            "base_url": self.base_url,
            "max_cost": None if self.max_cost_micro is None else micro_to_usd(self.max_cost_micro),
            "retries": self.retries,
            "timeout": self.timeout,
            "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
            "limit": self.limit,
        }
