"""The simulator's fake Segmind account: its balance, what it has been charged, and
its plan's rate limit."""

from __future__ import annotations

import math
import time
from collections import deque
from datetime import datetime, timezone

from .money import MICRO
from .simconfig import SimulatorConfig


class Account:
    """Money in integer micro-dollars. A generation first reserves its price (so
    concurrent requests cannot overdraw the balance), then settles: charged, or
    released."""

    def __init__(self, config: SimulatorConfig):
        self.balance_micro: int | None = (
            None if config.credits is None else round(config.credits * MICRO)
        )
        self.price_micro = round(config.price * MICRO)
        self.charged = 0  # generations paid for
        self._reserved_micro = 0
        self._rpm, self._window = config.rpm, config.rate_window
        self._accepted: deque[float] = deque()

    @property
    def balance(self) -> float | None:
        return None if self.balance_micro is None else self.balance_micro / MICRO

    @property
    def spent(self) -> float:
        return self.charged * self.price_micro / MICRO

    def top_up(self, dollars: float) -> None:
        self.balance_micro = (self.balance_micro or 0) + round(dollars * MICRO)

    def headers(self) -> dict:
        """`x-remaining-credits`, when the balance is not unlimited."""
        if self.balance_micro is None:
            return {}
        return {"x-remaining-credits": f"{self.balance_micro / MICRO:.6f}"}

    def reserve(self) -> bool:
        """Hold one generation's price; False when the balance can't pay for it."""
        if self.balance_micro is None:
            return True
        if self.balance_micro - self._reserved_micro < self.price_micro:
            return False
        self._reserved_micro += self.price_micro
        return True

    def settle(self, charge: bool) -> None:
        """Release a reservation, charging it if the generation succeeded."""
        if self.balance_micro is not None:
            self._reserved_micro -= self.price_micro
            if charge:
                self.balance_micro -= self.price_micro
        if charge:
            self.charged += 1

    def rate_limited(self) -> dict | None:
        """Sliding window: at most `rpm` generation requests in any `rate_window`
        seconds (polls and balance checks are not counted: the SDK polls every second).
        The 429's headers when this request is over the limit, else None."""
        if not self._rpm:
            return None
        now, window = time.monotonic(), self._window
        while self._accepted and self._accepted[0] <= now - window:
            self._accepted.popleft()
        if len(self._accepted) >= self._rpm:
            wait = self._accepted[0] + window - now
            reset = datetime.fromtimestamp(time.time() + wait, timezone.utc)
            return {
                "Retry-After": str(max(1, math.ceil(wait))),
                "x-rate-limit-reset-at-utc": reset.isoformat(timespec="milliseconds"),
            }
        self._accepted.append(now)
        return None
