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
    released. `price_micro` is the default price, of one image of a model outside the
    registry."""

    def __init__(self, config: SimulatorConfig):
        self.balance_micro: int | None = (
            None if config.credits is None else round(config.credits * MICRO)
        )
        self.price_micro = round(config.price * MICRO)
        self.charged = 0  # generations (answers) paid for
        self.images = 0  # images in those answers
        self.spent_micro = 0
        self.by_model: dict[str, dict[str, int]] = {}  # slug → charged, images, spent_micro
        self._reserved_micro = 0
        self._rpm, self._window = config.rpm, config.rate_window
        self._accepted: deque[float] = deque()

    @property
    def balance(self) -> float | None:
        return None if self.balance_micro is None else self.balance_micro / MICRO

    @property
    def spent(self) -> float:
        return self.spent_micro / MICRO

    def top_up(self, dollars: float) -> None:
        self.balance_micro = (self.balance_micro or 0) + round(dollars * MICRO)

    def headers(self) -> dict:
        """`x-remaining-credits`, when the balance is not unlimited."""
        if self.balance_micro is None:
            return {}
        return {"x-remaining-credits": f"{self.balance_micro / MICRO:.6f}"}

    def reserve(self, price_micro: int | None = None) -> bool:
        """Hold one generation's price; False when the balance can't pay for it."""
        price = self.price_micro if price_micro is None else price_micro
        if self.balance_micro is None:
            return True
        if self.balance_micro - self._reserved_micro < price:
            return False
        self._reserved_micro += price
        return True

    def settle(self, charge: bool, price_micro: int | None = None, model: str | None = None,
               images: int = 1) -> None:
        """Release a reservation, charging it if the generation succeeded."""
        price = self.price_micro if price_micro is None else price_micro
        if self.balance_micro is not None:
            self._reserved_micro -= price
            if charge:
                self.balance_micro -= price
        if charge:
            self.charged += 1
            self.images += images
            self.spent_micro += price
            tally = self.by_model.setdefault(model or "?", {"charged": 0, "images": 0,
                                                            "spent_micro": 0})
            tally["charged"] += 1
            tally["images"] += images
            tally["spent_micro"] += price

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
