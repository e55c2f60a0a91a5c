"""The ledger: every answer that may have been billed, counted once, the moment it
arrives (SPEC §8 M1), and the budget's reservations (M2).

Each job in flight has an `Account`. Before any request that may be billed, the
job reserves one price; a billed answer turns the reservation into money spent
(`charge`, idempotent per answer key: a v1 attempt, a v2 request id). A job that
ends without a charge gives its reservation back, and a job that does not fit
the cap waits while others in flight may still give money back: `--max-cost
0.057` buys 3 images whenever 3 jobs can succeed.

    ledger = Ledger(cap_micro=57_000, price_micro=19_000)
    if await ledger.reserve(account, stop):   # False: the cap is reached
        ...                                   # send the request
        ledger.charge(account, "v1:1")        # a 200 arrived
    ledger.release(account)                   # the job ended
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field


@dataclass(slots=True)
class Account:
    """One job's money in this run."""

    held: bool = False  # a price is reserved for its next billable request
    cost: int = 0  # billed and not yet written on one of its manifest lines
    keys: set[str] = field(default_factory=set)  # answers already counted

    def settle(self) -> int:
        """The cost to write on the job's next line; from then on it is recorded."""
        cost, self.cost = self.cost, 0
        return cost


class Ledger:
    """This run's money in integer micro-dollars."""

    def __init__(self, cap_micro: int | None, price_micro: int):
        self.cap = cap_micro
        self.price = price_micro
        self.spent = 0
        self.reserved = 0
        self.uncertain = 0  # requests that got no answer: maybe billed, kept aside
        self._waiters: list[asyncio.Future] = []

    def fits(self) -> bool:
        return (self.cap is None
                or self.spent + self.uncertain + self.reserved + self.price <= self.cap)

    async def reserve(self, account: Account, stop: asyncio.Event) -> bool:
        """Set one price aside for the account's next billable request. Waits while
        jobs in flight hold reservations that may come back; False when nothing can
        make it fit (the cap is reached) or when `stop` is set."""
        if account.held:
            return True
        while not stop.is_set():
            if self.fits():
                self.reserved += self.price
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

    def charge(self, account: Account, key: str) -> bool:
        """Count a billed answer once; False if `key` was counted before."""
        if key in account.keys:
            return False
        account.keys.add(key)
        self.spent += self.price
        account.cost += self.price
        if account.held:
            account.held = False
            self.reserved -= self.price
        self._changed()
        return True

    def hold(self, account: Account) -> None:
        """A request that may have been billed got no answer (a timeout): the API may
        have charged it, so its price stays set aside against the cap for the rest of
        the run. It is not counted as spent: no answer said so."""
        if account.held:
            account.held = False
            self.reserved -= self.price
            self.uncertain += self.price

    def release(self, account: Account) -> None:
        """The job ended or stopped: its unused reservation goes back."""
        if account.held:
            account.held = False
            self.reserved -= self.price
            self._changed()

    def _changed(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()
