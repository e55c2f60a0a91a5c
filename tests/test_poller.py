"""v2 polling always ends (SPEC §8 S4), shown with an injected clock that jumps ahead
at every reading: the poller meets a real simulator, and minutes of its time pass in
milliseconds of ours, with no timed assertion."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from batchgen.client import Client
from batchgen.errors import RequestLost, StillRunning
from batchgen.poller import Poller

from .conftest import TEST_KEY


def jumping_clock(step: float):
    """A clock that advances `step` seconds every time it is read."""
    ticks = itertools.count()
    return lambda: next(ticks) * step


async def collect(sim, *, timeout=600.0, max_outage=600.0, clock_step=50.0):
    async with Client.open(sim.base_url, TEST_KEY) as client:
        request_id = await client.submit({"prompt": "a fox", "aspect_ratio": "1:1"})
        poller = Poller(client, None, interval=0.001, max_interval=0.001, timeout=timeout,
                        max_outage=max_outage, clock=jumping_clock(clock_step))
        task = asyncio.create_task(poller.run())
        try:
            await asyncio.wait_for(poller.wait(request_id), 30)  # a hang guard only
        finally:
            task.cancel()
    return poller


@pytest.mark.parametrize("fault", ["503", "CANCELLED", "WEIRD"])
async def test_a_status_that_never_tells_ends_as_an_outage(start_simulator, fault):
    sim = start_simulator(status_fault=fault)
    with pytest.raises(StillRunning) as info:
        await collect(sim)
    assert info.value.outage and "--max-outage" in info.value.message


async def test_a_request_queued_past_the_timeout_is_left_for_the_next_run(start_simulator):
    sim = start_simulator(queue_delay=3600)
    with pytest.raises(StillRunning) as info:
        await collect(sim, timeout=600)
    assert not info.value.outage and "--timeout" in info.value.message


async def test_a_retry_after_beyond_max_outage_is_not_waited_for(start_simulator):
    sim = start_simulator(status_faults=["429"], retry_after=86400)
    with pytest.raises(StillRunning) as info:
        await collect(sim, clock_step=0.001)
    assert info.value.outage
    assert sum(r.path.endswith("/status") for r in sim.records) == 1


async def test_a_passing_blip_is_polled_through(start_simulator):
    sim = start_simulator(latency=0.05, status_faults=["503", "CANCELLED", "503"])
    await collect(sim, clock_step=0.001)  # completes: no exception


async def test_an_id_the_api_forgot_is_lost(start_simulator):
    sim = start_simulator(fault_script=["lost"])
    with pytest.raises(RequestLost):
        await collect(sim, clock_step=0.001)
