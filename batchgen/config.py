"""Settings of a run, and the facts about the API that every module shares."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path

MODEL = "luma-photon-txt-2-img"
DEFAULT_BASE_URL = "https://api.segmind.com"
API_KEY_ENV = "SEGMIND_API_KEY"
BASE_URL_ENV = "SEGMIND_BASE_URL"

ASPECT_RATIOS = ("1:1", "16:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21", "21:9")
DEFAULT_ASPECT_RATIO = "1:1"

#: Money is counted in integer micro-dollars so that sums are exact.
MICRO = 1_000_000
PRICE_MICRO = 19_000  # $0.019 per successful generation

#: Longest prompt we accept. The API documents no limit; 4,000 characters is far
#: beyond any useful prompt and stops a pasted document from being sent 1,000 times.
MAX_PROMPT_CHARS = 4000


def usd_to_micro(value: str | float | Decimal) -> int:
    """Parse a dollar amount exactly: '0.38' is 380000, never 379999."""
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ValueError(f"not a dollar amount: {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise ValueError(f"not a dollar amount: {value!r}")
    return int((amount * MICRO).to_integral_value())


def micro_to_usd(micro: int) -> float:
    """Dollars as a JSON-friendly number (exact for micro-dollar amounts)."""
    return micro / MICRO


def format_usd(micro: int) -> str:
    """'$1.805': at least two decimals, no trailing noise."""
    text = f"{Decimal(micro) / MICRO:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything `run_batch` needs to know besides the jobs themselves."""

    out_dir: Path
    api_key: str
    base_url: str = DEFAULT_BASE_URL
    api: str = "v1"
    concurrency: int = 8
    rate: float = 50.0  # requests per minute
    retries: int = 5
    backoff: float = 1.0  # seconds before the first retry, doubling each time (full jitter)
    timeout: float = 600.0  # seconds per request attempt; cold starts take minutes
    max_cost_micro: int | None = None
    price_micro: int = PRICE_MICRO
    retry_failed: bool = False
    limit: int | None = None
    shard: tuple[int, int] | None = None  # (index, count), 1-based
    require_credits: bool = False
    max_outage: float = 600.0
    poll_interval: float = 1.0  # v2: first status poll after this many seconds, then longer
    grace_period: float = 60.0  # how long in-flight requests may finish after a signal
    status_interval: float = 30.0  # seconds between log lines when not on a terminal
    job_file: Path | None = None
    job_file_sha256: str | None = None
    default_ratio: str = DEFAULT_ASPECT_RATIO  # recorded so reports re-read the file the same way
    sheet: str | None = None

    def public_settings(self) -> dict:
        """The settings recorded in the manifest: never the key."""
        return {
            "concurrency": self.concurrency,
            "rate": self.rate,
            "api": self.api,
            "base_url": self.base_url,
            "max_cost": None if self.max_cost_micro is None else micro_to_usd(self.max_cost_micro),
            "price": micro_to_usd(self.price_micro),
            "retries": self.retries,
            "timeout": self.timeout,
            "aspect_ratio": self.default_ratio,
            "sheet": self.sheet,
            "shard": None if self.shard is None else f"{self.shard[0]}/{self.shard[1]}",
            "limit": self.limit,
        }
