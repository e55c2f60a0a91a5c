"""The ledger: every answer that may have been billed, counted once, the moment it
arrives (SPEC §8 M1), and the budget's reservations (M2).

Each job in flight has an `Account` that knows the job's price (models differ).
Before any request that may be billed, the job reserves that price; a billed answer
turns the reservation into money spent (`charge`, once per answer key: a v1
attempt, a v2 request id), at the figure the API reported when it said one
(`x-credits-consumed`), else at the price. The cap counts each answer at no less
than its price, so an API that reports less (or nothing, or zero) cannot let a run
past `--max-cost`; one that reports more raises the price reserved for that model's
next requests, per image (a request for 4 samples reserves 4 times what one image
was reported to cost). A job that ends without a charge gives its reservation back, and a
job that does not fit the cap waits while others in flight may still give money
back: `--max-cost 0.057` buys 3 Luma images whenever 3 jobs can succeed.

    ledger = Ledger(cap_micro=57_000)
    if await ledger.reserve(account, stop):   # False: the cap is reached
        ...                                   # send the request
        ledger.charge(account, "attempt-1")   # a 200 arrived
    ledger.release(account)                   # the job ended
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(slots=True)
class Account:
    """One job's money in this run."""

    price: int  # micro-dollars one of its requests costs, as far as anyone can tell
    model: str = ""  # whose answers teach the ledger what its images really cost
    images: int = 1  # images one request asks for (`samples`): the price is for them all
    held: bool = False  # a price is reserved for its next billable request
    cost: int = 0  # billed and not yet written on one of its manifest lines
    keys: dict[str, int] = field(default_factory=dict)  # answers counted, and their amounts
    reported: bool = False  # the API said what its last charge cost

    def settle(self) -> int:
        """The cost to write on the job's next line; from then on it is recorded."""
        cost, self.cost = self.cost, 0
        return cost


class Ledger:
    """This run's money in integer micro-dollars."""

    def __init__(self, cap_micro: int | None):
        self.cap = cap_micro
        self.spent = 0  # what the answers cost: the manifest's money
        self.counted = 0  # what the cap counts: each answer at no less than its price
        self.reserved = 0
        self.learned: dict[str, int] = {}  # model → the most one image was reported to cost
        self.uncertain = 0  # requests that got no answer: maybe billed, kept aside
        self._waiters: list[asyncio.Future] = []

    def fits(self, price: int) -> bool:
        return self.cap is None or (
            self.counted + self.uncertain + self.reserved + price <= self.cap)

    async def reserve(self, account: Account, stop: asyncio.Event) -> bool:
        """Set the account's price aside for its next billable request. Waits while
        jobs in flight hold reservations that may come back; False when nothing can
        make it fit (the cap is reached) or when `stop` is set."""
        if account.held:
            return True
        account.price = max(account.price,
                            self.learned.get(account.model, 0) * account.images)
        while not stop.is_set():
            if self.fits(account.price):
                self.reserved += account.price
                account.held = True
                return True
            if not self.reserved:
                return False
            changed = asyncio.get_running_loop().create_future()
            self._waiters.append(changed)
            stopped = asyncio.ensure_future(stop.wait())
            try:
                await asyncio.wait((changed, stopped), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopped.cancel()
        return False

    def charge(self, account: Account, key: str, reported: int | None = None) -> bool:
        """Count a billed answer once, at `reported` micro-dollars when the API said
        what it cost (a later report for the same answer corrects the figure); False
        if `key` was counted before and nothing changed. Which reports are believed is
        `money.reported_micro`'s to say: an impossible one arrives here as None."""
        amount = account.price if reported is None else reported
        before = account.keys.get(key)
        if before is not None:
            # money already written on a job's line stays: a lower report corrects only
            # what is not on record yet (no line ever says a negative cost)
            amount = max(amount, before - account.cost)
            if reported is None or amount == before:
                return False
        else:
            self._release_held(account)
        if amount > account.price:
            per_image = -(-amount // account.images)
            self.learned[account.model] = max(self.learned.get(account.model, 0), per_image)
        account.keys[key] = amount
        account.reported = reported is not None
        self.spent += amount - (before or 0)
        self.counted += max(amount, account.price) - (
            0 if before is None else max(before, account.price))
        account.cost += amount - (before or 0)
        self._changed()
        return True

    def hold(self, account: Account) -> None:
        """A request that may have been billed got no answer (a timeout): the API may
        have charged it, so its price stays set aside against the cap for the rest of
        the run. It is not counted as spent: no answer said so."""
        if account.held:
            account.held = False
            self.reserved -= account.price
            self.uncertain += account.price

    def release(self, account: Account) -> None:
        """The job ended or stopped: its unused reservation goes back."""
        if account.held:
            self._release_held(account)
            self._changed()

    def _release_held(self, account: Account) -> None:
        if account.held:
            account.held = False
            self.reserved -= account.price

    def _changed(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
