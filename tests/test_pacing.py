"""Pacing: the rate limit, its 429 back-off and recovery, and the circuit breaker.

The decisions are driven synchronously by a fake clock (no sleeping). The async
tests use a real loop with tiny delays and assert only on outcomes; their
`asyncio.wait_for(..., HANG)` is a guard against hanging, not a timing check.
"""

from __future__ import annotations

import asyncio
from bisect import bisect_right
from itertools import pairwise

import pytest

from batchgen.pacing import AdaptiveRate, CircuitBreaker, LeakyBucket, sleep_unless

HANG = 5.0  # seconds: only a guard against a wait that never ends


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def greedy(rate: AdaptiveRate, clock: FakeClock, seconds: float) -> list[float]:
    """Take every slot the rate allows for `seconds`; the times they were taken."""
    end, times = clock.now + seconds, []
    while clock.now <= end:
        wait = rate.delay()
        if wait > 0:
            clock.now += wait
        else:
            rate.take()
            times.append(clock.now)
    return times


def most_in_a_minute(times: list[float]) -> int:
    """The most requests in any closed 60-second window (float noise counted against us)."""
    return max(bisect_right(times, t + 60.0 + 1e-6) - i for i, t in enumerate(times))


def open_breaker(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.threshold):
        breaker.failed()
    assert breaker.is_open


def until_probe(clock: FakeClock, breaker: CircuitBreaker) -> None:
    clock.now += breaker.next_probe_in() + 1e-9


# --- the rate limit ------------------------------------------------------------------


@pytest.mark.parametrize(("per_minute", "burst"), [(50, 1), (120, 2), (1200, 20), (5, 1)])
def test_a_run_starts_with_one_seconds_worth_then_goes_evenly_spaced(per_minute, burst):
    clock = FakeClock()
    rate = AdaptiveRate(per_minute, clock=clock)
    times = greedy(rate, clock, 30)
    assert times[:burst] == [times[0]] * burst
    assert times[burst] > times[0]
    gaps = [b - a for a, b in pairwise(times[burst - 1:])]
    assert gaps == pytest.approx([60 / (per_minute - burst)] * len(gaps))


@pytest.mark.parametrize("per_minute", [50, 120, 1200, 5])
def test_no_minute_ever_holds_more_than_the_rate(per_minute):
    clock = FakeClock()
    rate = AdaptiveRate(per_minute, clock=clock)
    times = greedy(rate, clock, 5 * 60)
    assert most_in_a_minute(times) <= per_minute
    assert len(times) >= 5 * (per_minute - max(1, per_minute // 60))  # and not much less


def test_a_bucket_changing_rate_settles_its_level_at_the_old_rate_first():
    bucket = LeakyBucket(1, 1.0, clock=lambda: 0.0)
    bucket.take(0.0)
    assert bucket.delay(0.0) == pytest.approx(1.0)
    bucket.set_rate(0.5, 1, now=0.5)  # half drained at 1/s, the other half takes 1 s at 0.5/s
    assert bucket.delay(0.5) == pytest.approx(1.0)
    bucket.fill(10.0)
    assert bucket.delay(10.0) == pytest.approx(2.0)


def test_a_429_pauses_everyone_until_the_reset_and_resumes_without_a_burst():
    clock = FakeClock()
    rate = AdaptiveRate(1200, clock=clock)  # one second's worth: 20 at once
    rate.rate_limited(30)
    assert rate.current == 600  # nothing went through in the last minute: cut to half
    assert rate.delay() == pytest.approx(30)
    clock.now += 30
    assert rate.delay() > 0  # the bucket starts full: the window was just declared full
    times = greedy(rate, clock, 10)
    gaps = [b - a for a, b in pairwise(times)]
    assert gaps == pytest.approx([60 / (600 - 10)] * len(gaps))  # no two at once


def test_a_pause_that_begins_while_waiting_in_the_bucket_still_holds():
    clock = FakeClock()
    rate = AdaptiveRate(5, clock=clock)
    rate.take()
    assert rate.delay() == pytest.approx(15)
    rate.rate_limited(100)
    assert rate.delay() == pytest.approx(100)


@pytest.mark.parametrize(("per_minute", "accepted", "cut_to"), [
    (120, 100, 100),  # what the server let through in the last minute: its limit
    (120, 10, 60),    # at least half
    (120, 119, 108),  # at most 90 %
    (1.5, 0, 1),      # never below one a minute
    (1, 1, 1),
])
def test_a_429_cuts_the_rate_to_what_the_server_accepted_within_half_and_90_percent(
        per_minute, accepted, cut_to):
    clock = FakeClock()
    rate = AdaptiveRate(per_minute, clock=clock)
    for _ in range(accepted):
        rate.succeeded()
        clock.now += 0.5
    rate.rate_limited(None)
    assert rate.current == pytest.approx(cut_to)


def test_the_rate_is_cut_once_per_429_episode():
    clock = FakeClock()
    rate = AdaptiveRate(120, clock=clock)
    rate.rate_limited(1)
    rate.rate_limited(1)  # from requests already in flight: nothing new
    rate.rate_limited(None)
    assert rate.current == 60
    clock.now += 0.5
    rate.succeeded()  # one got through: the next 429 is a new episode
    rate.rate_limited(1)
    assert rate.current == 30


def test_the_rate_climbs_back_fast_then_slowly_and_never_above_the_limit():
    clock = FakeClock()
    rate = AdaptiveRate(100, clock=clock)
    start = clock.now
    rate.rate_limited(None)
    steps = [(0.0, rate.current)]
    for _ in range(10 * 60 * 4):  # a request gets through every 0.25 s for ten minutes
        clock.now += 0.25
        rate.succeeded()
        if rate.current != steps[-1][1]:
            steps.append((clock.now - start, rate.current))
    # 10 % of R per quiet second up to 90 % of the rate that met the 429, then 2 % per 5 s
    assert [at for at, _ in steps] == pytest.approx([0, 1, 2, 3, 4, 9, 14, 19, 24, 29])
    assert [current for _, current in steps] == [50, 60, 70, 80, 90, 92, 94, 96, 98, 100]


def test_after_a_second_429_the_fast_climb_stops_at_90_percent_of_where_it_came():
    clock = FakeClock()
    rate = AdaptiveRate(100, clock=clock)
    rate.rate_limited(None)  # 100 → 50
    for _ in range(3):  # 50 → 80
        clock.now += 1
        rate.succeeded()
    rate.rate_limited(None)  # 80 → 40; fast back to 72 only
    for _ in range(5):
        clock.now += 1
        rate.succeeded()
    assert rate.current == pytest.approx(72)


# --- the circuit breaker -------------------------------------------------------------


def test_five_failures_in_a_row_open_the_breaker_and_a_success_resets_the_count():
    breaker = CircuitBreaker(clock=FakeClock())
    for _ in range(4):
        breaker.failed()
    breaker.succeeded()
    for _ in range(4):
        breaker.failed()
    assert not breaker.is_open and breaker.try_admit()
    breaker.failed()
    assert breaker.is_open and not breaker.try_admit()


def test_an_open_breaker_probes_one_at_a_time_at_1_2_4_up_to_60_seconds():
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    open_breaker(breaker)
    intervals = []
    for _ in range(9):
        intervals.append(breaker.next_probe_in())
        clock.now += intervals[-1] - 0.01
        assert not breaker.try_admit()
        until_probe(clock, breaker)
        assert breaker.try_admit()  # this caller is the probe
        assert not breaker.try_admit() and breaker.next_probe_in() == float("inf")
        breaker.failed()
    assert intervals == pytest.approx([1, 2, 4, 8, 16, 32, 60, 60, 60])


def test_a_successful_probe_closes_the_breaker_and_the_next_outage_starts_at_1_second():
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    open_breaker(breaker)
    for _ in range(3):
        until_probe(clock, breaker)
        assert breaker.try_admit()
        breaker.failed()
    assert breaker.outage_seconds() == pytest.approx(1 + 2 + 4)
    until_probe(clock, breaker)
    assert breaker.try_admit()
    breaker.succeeded()
    assert not breaker.is_open and breaker.outage_seconds() == 0
    assert breaker.try_admit() and breaker.try_admit()
    open_breaker(breaker)
    assert breaker.next_probe_in() == pytest.approx(1)


def test_a_cancelled_probe_lets_the_next_caller_probe_without_a_longer_wait():
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    open_breaker(breaker)
    clock.now += 1
    assert breaker.try_admit()
    breaker.cancel_probe()
    assert breaker.next_probe_in() == 0
    assert breaker.try_admit()
    breaker.failed()
    assert breaker.next_probe_in() == pytest.approx(2)  # the first probe's delay, doubled once


# --- waits end when the run stops ----------------------------------------------------


async def test_sleep_unless_sleeps_its_time_or_ends_when_stopped():
    stop = asyncio.Event()
    assert await sleep_unless(stop, 0.01)
    assert await sleep_unless(stop, 0)
    asyncio.get_running_loop().call_later(0.02, stop.set)
    assert not await asyncio.wait_for(sleep_unless(stop, 86400), HANG)
    assert not await sleep_unless(stop, 0)


async def test_stop_ends_a_wait_behind_a_retry_after_of_a_day_and_takes_no_slot():
    clock = FakeClock()
    rate = AdaptiveRate(60, clock=clock)
    rate.rate_limited(86400)
    stop = asyncio.Event()
    waiters = [asyncio.create_task(rate.acquire(stop)) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert not any(waiter.done() for waiter in waiters)
    stop.set()
    assert await asyncio.wait_for(asyncio.gather(*waiters), HANG) == [False] * 3
    assert rate.bucket.level == 0
    assert not await rate.acquire(stop)


async def test_stop_ends_a_wait_in_the_bucket():
    rate = AdaptiveRate(1, clock=FakeClock())  # one every two minutes
    stop = asyncio.Event()
    assert await rate.acquire(stop)
    waiter = asyncio.create_task(rate.acquire(stop))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    stop.set()
    assert await asyncio.wait_for(waiter, HANG) is False


async def test_a_caller_whose_own_stop_is_set_leaves_the_line_at_once():
    rate = AdaptiveRate(60, clock=FakeClock())
    rate.rate_limited(86400)
    run_stop, poll_stop = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(rate.acquire(run_stop))
    second = asyncio.create_task(rate.acquire(poll_stop))
    await asyncio.sleep(0.05)
    poll_stop.set()
    assert await asyncio.wait_for(second, HANG) is False
    assert not first.done()
    run_stop.set()
    assert await asyncio.wait_for(first, HANG) is False


async def test_waiters_get_their_slots_in_the_order_they_came():
    rate = AdaptiveRate(1200)  # real clock: 20 at once, then one every 52 ms
    stop = asyncio.Event()
    order: list[int] = []

    async def request(n: int) -> None:
        assert await rate.acquire(stop)
        order.append(n)

    await asyncio.wait_for(asyncio.gather(*(request(n) for n in range(23))), HANG)
    assert order == list(range(23))


async def test_stop_ends_a_wait_behind_another_callers_probe():
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    open_breaker(breaker)
    clock.now += 1
    assert breaker.try_admit()  # another caller is probing
    stop = asyncio.Event()
    waiter = asyncio.create_task(breaker.admit(stop, max_outage=600))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    stop.set()
    assert await asyncio.wait_for(waiter, HANG) is False


async def test_an_outage_longer_than_max_outage_ends_the_wait():
    stop = asyncio.Event()
    breaker = CircuitBreaker()  # real clock: the first probe would be due in 1 s
    open_breaker(breaker)
    assert await asyncio.wait_for(breaker.admit(stop, max_outage=0.1), HANG) is False
    assert not stop.is_set()  # the caller tells an outage from a stop by this

    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    open_breaker(breaker)
    clock.now += 601
    assert await breaker.admit(stop, max_outage=600) is False


async def test_waiters_behind_an_open_breaker_proceed_when_the_probe_succeeds():
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    open_breaker(breaker)
    clock.now += 1
    assert breaker.try_admit()
    stop = asyncio.Event()
    waiters = [asyncio.create_task(breaker.admit(stop, max_outage=600)) for _ in range(3)]
    await asyncio.sleep(0.05)
    assert not any(waiter.done() for waiter in waiters)
    breaker.succeeded()
    assert await asyncio.wait_for(asyncio.gather(*waiters), HANG) == [True] * 3


async def test_a_waiter_probes_as_soon_as_the_probe_is_cancelled():
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    open_breaker(breaker)
    clock.now += 1
    assert breaker.try_admit()
    stop = asyncio.Event()
    waiter = asyncio.create_task(breaker.admit(stop, max_outage=600))
    await asyncio.sleep(0.05)
    breaker.cancel_probe()
    assert await asyncio.wait_for(waiter, HANG) is True
    assert breaker.is_open and breaker.next_probe_in() == float("inf")  # it is the probe


async def test_after_a_failed_probe_a_waiter_probes_when_the_next_one_is_due():
    clock = FakeClock()
    breaker = CircuitBreaker(max_delay=0.05, clock=clock)  # probes every 50 ms
    open_breaker(breaker)
    clock.now += 0.05
    assert breaker.try_admit()
    stop = asyncio.Event()
    waiter = asyncio.create_task(breaker.admit(stop, max_outage=600))
    await asyncio.sleep(0.02)
    breaker.failed()  # the next probe is due 50 ms from now
    await asyncio.sleep(0.01)  # the waiter now waits for that moment, not the outage's end
    assert not waiter.done()
    clock.now += 0.05
    assert await asyncio.wait_for(waiter, HANG) is True


async def test_failures_of_requests_sent_before_the_outage_do_not_end_the_probe():
    clock = FakeClock()
    breaker = CircuitBreaker(clock=clock)
    open_breaker(breaker)
    clock.now += 1
    stop, answer = asyncio.Event(), asyncio.Event()

    async def probe() -> None:
        assert await breaker.admit(stop, max_outage=600)
        await answer.wait()
        breaker.failed()

    prober = asyncio.create_task(probe())
    await asyncio.sleep(0.01)
    breaker.failed()  # an older request, still in flight when the breaker opened
    assert breaker.next_probe_in() == float("inf") and not breaker.try_admit()
    answer.set()
    await asyncio.wait_for(prober, HANG)
    assert breaker.next_probe_in() == pytest.approx(2)
