"""The simulator speaks Segmind's API (SPEC §1) over real HTTP on loopback: what a
client sends, what it gets back, what the fake account is charged, and what the
simulator records about it."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from fractions import Fraction
from types import SimpleNamespace

import aiohttp
import pytest

from batchgen.config import ASPECT_RATIOS, MODEL
from batchgen.simulator import SimulatorConfig, make_png

from .conftest import spawn

V1 = f"/v1/models/{MODEL}"
V1_SDK = f"/v1/{MODEL}"
V2 = f"/v2/{MODEL}"
PNG = b"\x89PNG\r\n\x1a\n"


class Answer:
    def __init__(self, status: int, headers: Message, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)


def call(sim_or_url, path: str = V1, body=None, *, key: str | None = "any-key",
         method: str | None = None, timeout: float = 30) -> Answer:
    """One real HTTP request; error statuses are answers, not exceptions."""
    base = sim_or_url if isinstance(sim_or_url, str) else sim_or_url.base_url
    data = None
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)
    request.add_header("content-type", "application/json")
    if key is not None:
        request.add_header("x-api-key", key)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return Answer(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.headers, err.read())


def generate(sim, prompt: str = "a red fox", ratio: str | None = "1:1", **kwargs) -> Answer:
    body = {"prompt": prompt} if ratio is None else {"prompt": prompt, "aspect_ratio": ratio}
    return call(sim, kwargs.pop("path", V1), body, **kwargs)


def png_size(data: bytes) -> tuple[int, int]:
    assert data.startswith(PNG)
    return struct.unpack(">II", data[16:24])


def wait_for(predicate, what: str, limit: float = 20.0):
    """Poll until predicate() is truthy (a deadline for a hung test, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"gave up waiting for {what}")


# -- v1 generation -------------------------------------------------------------------


@pytest.mark.parametrize("path", [V1, V1_SDK])
def test_both_v1_paths_return_a_png(sim, path):
    answer = generate(sim, path=path)
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/png"
    assert answer.body.startswith(PNG)
    assert answer.headers["x-request-id"]
    assert answer.headers["x-credits-consumed"] == "0.019"
    assert [r.path for r in sim.records] == [path]


def test_a_missing_key_is_401_and_any_key_is_accepted_by_default(sim):
    missing = generate(sim, key=None)
    assert missing.status == 401 and "error" in missing.json()
    assert generate(sim, key="whatever").status == 200
    assert sim.charged == 1


def test_with_a_key_set_only_that_key_is_accepted(start_simulator):
    sim = start_simulator(key="the-right-key")
    assert generate(sim, key=None).status == 401
    wrong = generate(sim, key="the-wrong-key")
    assert wrong.status == 401 and wrong.json()["error"]
    assert generate(sim, key="the-right-key").status == 200
    assert sim.charged == 1


@pytest.mark.parametrize("body", [
    {}, {"prompt": ""}, {"prompt": "   "}, {"prompt": None}, {"prompt": 42},
    {"aspect_ratio": "1:1"},
], ids=["empty", "blank", "spaces", "null", "number", "ratio-only"])
def test_a_missing_prompt_is_400(sim, body):
    answer = call(sim, V1, body)
    assert answer.status == 400
    assert "prompt" in answer.json()["error"]
    assert sim.charged == 0


@pytest.mark.parametrize("ratio", ["4:3", "969", 969, "16x9", "", "1:1 ", "16:09", None, [16, 9]])
def test_each_invalid_aspect_ratio_is_400(sim, ratio):
    answer = call(sim, V1, {"prompt": "a fox", "aspect_ratio": ratio})
    assert answer.status == 400
    assert "aspect_ratio" in answer.json()["error"]
    assert sim.charged == 0


def test_a_body_that_is_not_json_is_400(sim):
    assert call(sim, V1, b"prompt=fox").status == 400
    assert call(sim, V1, [1, 2]).status == 400


@pytest.mark.parametrize("ratio", ASPECT_RATIOS)
def test_every_allowed_ratio_gives_a_png_of_that_shape(sim, ratio):
    answer = generate(sim, ratio=ratio)
    assert answer.status == 200
    width, height = png_size(answer.body)
    w, h = (int(x) for x in ratio.split(":"))
    assert Fraction(width, height) == Fraction(w, h)
    assert max(width, height) <= 96
    assert sim.records[0].aspect_ratio == ratio


def test_the_ratio_defaults_to_square(sim):
    answer = generate(sim, ratio=None)
    assert answer.status == 200
    width, height = png_size(answer.body)
    assert width == height and sim.records[0].aspect_ratio == "1:1"


def test_latency_is_what_the_record_says(start_simulator):
    fixed = start_simulator(latency=0.02)
    generate(fixed)
    assert fixed.records[0].latency == 0.02
    assert fixed.records[0].charged and fixed.records[0].status == 200

    jittery = start_simulator(latency=0.03, jitter=0.02, seed=7)
    for i in range(5):
        generate(jittery, f"prompt {i}")
    latencies = [r.latency for r in jittery.records]
    assert all(0.01 <= latency <= 0.05 for latency in latencies)
    assert len(set(latencies)) > 1


def test_x_remaining_credits_follows_the_balance(start_simulator):
    sim = start_simulator(credits=1.0)
    first, second = generate(sim, "one"), generate(sim, "two")
    assert float(first.headers["x-remaining-credits"]) == pytest.approx(0.981)
    assert float(second.headers["x-remaining-credits"]) == pytest.approx(0.962)


def test_an_unlimited_account_sends_no_credits_header(sim):
    assert "x-remaining-credits" not in generate(sim).headers


# -- the three success formats ----------------------------------------------------


def test_raw_format_is_image_bytes(start_simulator):
    sim = start_simulator(response_format="raw")
    answer = generate(sim)
    assert answer.headers["Content-Type"] == "image/png" and answer.body.startswith(PNG)


def test_base64_format_is_json_with_the_image(start_simulator):
    sim = start_simulator(response_format="base64")
    answer = generate(sim)
    assert answer.headers["Content-Type"].startswith("application/json")
    assert base64.b64decode(answer.json()["image"]).startswith(PNG)


def test_url_format_is_json_with_a_url_the_simulator_serves_without_a_key(start_simulator):
    sim = start_simulator(response_format="url", key="secret")
    answer = generate(sim, key="secret")
    url = answer.json()["output"]
    assert url.startswith(sim.base_url + "/files/")
    image = call(url, "", key=None)
    assert image.status == 200 and image.body.startswith(PNG)
    assert image.headers["Content-Type"] == "image/png"
    assert call(sim, "/files/no-such-file.png").status == 404


def test_url_format_uses_the_host_name_the_client_used(start_simulator):
    sim = start_simulator(response_format="url")
    via_localhost = sim.base_url.replace("127.0.0.1", "localhost")
    url = generate(via_localhost).json()["output"]
    assert url.startswith(via_localhost + "/files/")
    assert call(url, "").body.startswith(PNG)


def test_mixed_format_cycles_raw_base64_url(start_simulator):
    sim = start_simulator(response_format="mixed")
    kinds = [generate(sim, f"p{i}").headers["Content-Type"].split(";")[0] for i in range(3)]
    assert kinds == ["image/png", "application/json", "application/json"]


def test_an_unknown_format_or_fault_is_refused_up_front():
    with pytest.raises(ValueError, match="response_format"):
        SimulatorConfig(response_format="jpeg")
    with pytest.raises(ValueError, match="5O3"):
        SimulatorConfig(fault_script=["503", "5O3"])


# -- credits ------------------------------------------------------------------------


def test_each_image_costs_0_019_and_an_empty_account_gets_406(start_simulator):
    sim = start_simulator(credits=0.05)
    assert generate(sim, "one").status == 200
    assert generate(sim, "[reject] two").status == 400  # only a 200 is billed
    assert generate(sim, "three").status == 200
    broke = generate(sim, "four")
    assert broke.status == 406 and broke.json() == {"error": "Not enough credits"}
    assert sim.charged == 2
    assert sim.stats()["spent"] == pytest.approx(0.038)
    assert sim.stats()["balance"] == pytest.approx(0.012)
    assert [r.charged for r in sim.generation_records()] == [True, False, True, False]

    sim.top_up(0.01)  # 0.022 now pays for one more
    assert generate(sim, "five").status == 200
    assert generate(sim, "six").status == 406


def test_get_user_credits_reports_the_balance(start_simulator):
    sim = start_simulator(credits=0.1)
    generate(sim)
    answer = call(sim, "/v1/get-user-credits")
    assert answer.status == 200
    assert answer.json() == {"credits": pytest.approx(0.081), "free-credits": 0.0}
    assert call(sim, "/v1/get-user-credits", key=None).status == 401


def test_get_user_credits_can_be_switched_off(start_simulator):
    sim = start_simulator(credits_endpoint=False)
    assert call(sim, "/v1/get-user-credits").status == 404
    assert generate(sim).status == 200


# -- rate limit ---------------------------------------------------------------------


def test_more_than_rpm_requests_in_a_window_get_429_with_retry_after(start_simulator):
    sim = start_simulator(rpm=2)
    assert [generate(sim, f"p{i}").status for i in range(2)] == [200, 200]
    limited = generate(sim, "p3")
    assert limited.status == 429 and limited.json()["error"]
    assert 1 <= int(limited.headers["Retry-After"]) <= 60
    reset = datetime.fromisoformat(limited.headers["x-rate-limit-reset-at-utc"])
    assert reset.tzinfo is not None and 0 < reset.timestamp() - time.time() <= 61
    assert sim.charged == 2
    # Balance checks are not generation requests: they do not count against the plan.
    assert call(sim, "/v1/get-user-credits").status == 200


def test_the_window_slides(start_simulator):
    sim = start_simulator(rpm=1, rate_window=0.2)
    assert generate(sim, "one").status == 200
    wait_for(lambda: generate(sim, "two").status == 200, "the window to pass")
    assert sim.charged == 2


# -- faults -------------------------------------------------------------------------


def test_a_fault_script_plays_in_order_then_requests_succeed(start_simulator):
    script = ["503", "200", "500", "502", "504", "429", "garbage", "400", "406", "ok"]
    sim = start_simulator(fault_script=script)
    answers = [generate(sim, f"p{i}") for i in range(len(script) + 1)]
    assert [a.status for a in answers] == [503, 200, 500, 502, 504, 429, 200, 400, 406, 200, 200]
    for answer in answers:
        if answer.status not in (200,):
            assert answer.json()["error"]
    assert answers[5].headers["Retry-After"] == "1"
    garbage = answers[6]
    assert garbage.headers["Content-Type"].startswith("text/html")
    assert not garbage.body.startswith(PNG)
    # Only the 200s are billed, the garbage one included: the real API bills it too.
    assert sim.charged == 4


def _statuses_with_seed(start_simulator, seed: int) -> list[int]:
    sim = start_simulator(fault_rate=0.5, seed=seed, fault_kinds=("500", "503", "429"))
    return [generate(sim, f"p{i}").status for i in range(30)]


def test_a_seeded_fault_rate_is_reproducible(start_simulator):
    first = _statuses_with_seed(start_simulator, seed=3)
    again = _statuses_with_seed(start_simulator, seed=3)
    other = _statuses_with_seed(start_simulator, seed=4)
    assert first == again
    assert first != other
    assert set(first) == {200, 500, 503, 429}


def test_the_fault_sequence_does_not_depend_on_latency_jitter(start_simulator):
    kinds = ("500", "502", "429", "garbage")
    plain = start_simulator(fault_rate=0.5, seed=9, fault_kinds=kinds)
    jittery = start_simulator(fault_rate=0.5, seed=9, fault_kinds=kinds, jitter=0.001)
    statuses = [[generate(s, f"p{i}").status for i in range(20)] for s in (plain, jittery)]
    assert statuses[0] == statuses[1]


def test_prompts_with_the_reject_marker_get_400(start_simulator):
    sim = start_simulator()
    rejected = generate(sim, "a cat [reject] on a mat")
    assert rejected.status == 400 and "rejected" in rejected.json()["error"].lower()
    custom = start_simulator(reject_marker="NSFW")
    assert generate(custom, "something NSFW").status == 400
    assert generate(custom, "a cat [reject]").status == 200
    off = start_simulator(reject_marker=None)
    assert generate(off, "a cat [reject]").status == 200


def test_a_timeout_fault_keeps_the_client_waiting_then_gives_504(start_simulator):
    sim = start_simulator(fault_script=["timeout"], hang=0.05)
    assert generate(sim).status == 504
    assert sim.records[0].status == 504 and sim.charged == 0


def test_a_client_that_gives_up_on_a_hang_is_recorded_as_timeout(start_simulator):
    sim = start_simulator(fault_script=["timeout"], hang=3600)
    with pytest.raises((TimeoutError, urllib.error.URLError)):
        generate(sim, timeout=0.2)
    assert sim.records[0].status == "timeout"
    assert generate(sim).status == 200  # the script moved on
    wait_for(lambda: sim.stats()["by_status"] == {"timeout": 1, "200": 1}, "the records")


# -- v2 -----------------------------------------------------------------------------


def _poll_until_done(sim, request_id: str) -> Answer:
    def terminal():
        answer = call(sim, f"/v2/requests/{request_id}/status")
        return answer if answer.json().get("status") in ("COMPLETED", "FAILED") else None

    return wait_for(terminal, "the v2 request to finish")


def test_v2_submit_poll_and_fetch_the_result(start_simulator):
    sim = start_simulator(credits=1.0)
    submitted = generate(sim, "a fox", "16:9", path=V2)
    assert submitted.status == 200
    body = submitted.json()
    request_id = body["request_id"]
    assert body["status"] == "QUEUED"
    assert body["status_url"] == f"{sim.base_url}/v2/requests/{request_id}/status"
    assert body["response_url"] == f"{sim.base_url}/v2/requests/{request_id}"
    assert submitted.headers["x-remaining-credits"]

    status = _poll_until_done(sim, request_id)
    assert status.status == 200 and status.json()["status"] == "COMPLETED"
    result = call(sim, f"/v2/requests/{request_id}")
    assert result.status == 200
    assert result.json()["status"] == "COMPLETED" and "metrics" in result.json()
    image = call(result.json()["output"], "", key=None)
    width, height = png_size(image.body)
    assert Fraction(width, height) == Fraction(16, 9)
    assert sim.charged == 1 and sim.generation_records()[0].charged
    assert sim.stats()["balance"] == pytest.approx(0.981)


def test_v2_states_queued_then_processing(start_simulator):
    queued = start_simulator(queue_delay=3600)
    request_id = generate(queued, path=V2).json()["request_id"]
    assert call(queued, f"/v2/requests/{request_id}/status").json()["status"] == "QUEUED"
    result = call(queued, f"/v2/requests/{request_id}")
    assert result.status == 200 and result.json()["status"] == "QUEUED"
    assert "output" not in result.json()

    processing = start_simulator(latency=3600)
    request_id = generate(processing, path=V2).json()["request_id"]
    wait_for(lambda: call(processing, f"/v2/requests/{request_id}/status").json()["status"]
             == "PROCESSING", "PROCESSING")
    assert processing.charged == 0


def test_v2_failed_is_served_with_422_and_not_billed(start_simulator):
    sim = start_simulator(credits=1.0)
    request_id = generate(sim, "a [fail] prompt", path=V2).json()["request_id"]
    status = _poll_until_done(sim, request_id)
    assert status.status == 422
    assert status.json()["status"] == "FAILED" and status.json()["error"]
    result = call(sim, f"/v2/requests/{request_id}")
    assert result.status == 422
    assert result.json()["status"] == "FAILED" and result.json()["error"]
    assert sim.charged == 0 and sim.stats()["balance"] == pytest.approx(1.0)


def test_v2_results_expire_with_404(start_simulator):
    sim = start_simulator(result_ttl=0.0)
    request_id = generate(sim, path=V2).json()["request_id"]
    wait_for(lambda: call(sim, f"/v2/requests/{request_id}/status").status == 404, "expiry")
    assert call(sim, f"/v2/requests/{request_id}").status == 404
    assert call(sim, "/v2/requests/no-such-id/status").status == 404


def test_v2_checks_key_body_credits_and_faults_like_v1(start_simulator):
    sim = start_simulator(key="k", credits=0.019, fault_script=["503", "garbage"])
    assert generate(sim, path=V2, key=None).status == 401
    assert generate(sim, path=V2, key="k").status == 503
    garbage = generate(sim, path=V2, key="k")  # a 200: queued and billed, its body garbled
    assert garbage.status == 200 and garbage.headers["Content-Type"].startswith("text/html")
    assert generate(sim, "fox", "4:3", path=V2, key="k").status == 400
    broke = generate(sim, path=V2, key="k")
    assert broke.status == 406 and broke.json() == {"error": "Not enough credits"}
    assert call(sim, "/v2/requests/x/status", key=None).status == 401
    _completed(sim)


def test_v2_polls_do_not_count_against_the_rate_limit(start_simulator):
    sim = start_simulator(rpm=1)
    request_id = generate(sim, path=V2).json()["request_id"]
    _poll_until_done(sim, request_id)
    for _ in range(3):
        assert call(sim, f"/v2/requests/{request_id}").status == 200
    assert generate(sim, path=V2).status == 429


# -- faults an adversarial review used --------------------------------------------------


@dataclass
class Fetched:
    status: int
    headers: Mapping[str, str]
    body: bytes | None  # None when reading it failed
    error: aiohttp.ClientPayloadError | None = None


async def fetch(url: str, body: dict | None = None, *, key: str | None = "any-key",
                decompress: bool = True) -> Fetched:
    """One aiohttp request (POST with a body, else GET) that never follows a redirect;
    a body cut off mid-transfer is kept as the error reading it raised."""
    headers = {"x-api-key": key} if key else {}
    async with aiohttp.ClientSession(auto_decompress=decompress) as session:
        method = "GET" if body is None else "POST"
        async with session.request(method, url, json=body, headers=headers,
                                   allow_redirects=False) as resp:
            try:
                return Fetched(resp.status, resp.headers, await resp.read())
            except aiohttp.ClientPayloadError as exc:
                return Fetched(resp.status, resp.headers, None, exc)


def _completed(sim, count: int = 1) -> None:
    """Wait until `count` v2 requests were processed and billed, without polling them."""
    wait_for(lambda: sim.charged == count, f"{count} v2 request(s) to complete")


async def test_a_truncated_200_promises_the_whole_png_sends_half_and_is_billed(start_simulator):
    sim = start_simulator(fault_script=["truncate"], credits=1.0)
    cut = await fetch(sim.base_url + V1, {"prompt": "a red fox", "aspect_ratio": "16:9"})
    assert cut.status == 200 and isinstance(cut.error, aiohttp.ClientPayloadError)
    assert cut.headers["Content-Type"] == "image/png"
    assert int(cut.headers["Content-Length"]) == len(make_png("a red fox", "16:9"))
    assert cut.headers["x-request-id"] and cut.headers["x-remaining-credits"]
    assert sim.charged == 1 and sim.stats()["balance"] == pytest.approx(0.981)
    record = sim.records[0]
    assert (record.status, record.charged, record.fault) == (200, True, "truncate")
    whole = await fetch(sim.base_url + V1, {"prompt": "a red fox"})  # the script moved on
    assert whole.status == 200 and whole.body.startswith(PNG)


async def test_a_truncated_v2_submit_hides_the_id_of_a_request_that_still_completes(
        start_simulator):
    sim = start_simulator(fault_script=["truncate"])
    cut = await fetch(sim.base_url + V2, {"prompt": "a red fox"})
    assert cut.status == 200 and cut.error is not None
    assert cut.headers["Content-Type"].startswith("application/json")
    _completed(sim)
    request_id = sim.records[0].request_id  # the client never learnt it
    assert sim.records[0].charged and sim.records[0].fault == "truncate"
    assert call(sim, f"/v2/requests/{request_id}/status").json()["status"] == "COMPLETED"


@pytest.mark.parametrize("path", [V1, V1_SDK, V2])
async def test_a_redirect_points_to_another_host_and_is_not_billed(start_simulator, path):
    sim = start_simulator(fault_script=["redirect"])
    moved = await fetch(sim.base_url + path, {"prompt": "a red fox"})
    assert moved.status == 302
    assert moved.headers["Location"] == f"http://elsewhere.invalid{path}"
    assert sim.charged == 0 and sim.records[0].status == 302
    assert (await fetch(sim.base_url + path, {"prompt": "a red fox"})).status == 200


async def test_a_gzip_bomb_is_a_billed_200_of_60_kb_that_inflates_to_60_mb(start_simulator):
    sim = start_simulator(fault_script=["gzipbomb", "gzipbomb"])
    bomb = await fetch(sim.base_url + V1, {"prompt": "a red fox"})
    assert bomb.status == 200
    assert bomb.headers["Content-Type"] == "image/png"
    assert bomb.headers["Content-Encoding"] == "gzip"
    assert int(bomb.headers["Content-Length"]) < 100_000
    assert len(bomb.body) == 60 * 2**20 and bomb.body.startswith(PNG)
    on_the_wire = await fetch(sim.base_url + V1, {"prompt": "a red fox"}, decompress=False)
    assert len(on_the_wire.body) == int(on_the_wire.headers["Content-Length"]) < 100_000
    assert sim.charged == 2


async def test_a_lost_v2_request_is_billed_but_unknown_from_its_first_poll(start_simulator):
    sim = start_simulator(fault_script=["lost"], credits=1.0)
    submitted = await fetch(sim.base_url + V2, {"prompt": "a red fox"})
    request_id = json.loads(submitted.body)["request_id"]
    assert submitted.status == 200
    _completed(sim)
    for path in (f"/v2/requests/{request_id}/status", f"/v2/requests/{request_id}"):
        gone = call(sim, path)
        assert gone.status == 404
        assert gone.json() == {"error": "Request not found or expired"}
    assert sim.generation_records()[0].charged
    assert sim.stats()["balance"] == pytest.approx(0.981)


def test_a_429_fault_asks_for_the_configured_wait(start_simulator):
    stubborn = start_simulator(fault_script=["429"], retry_after=86400)
    assert generate(stubborn).headers["Retry-After"] == "86400"
    brief = start_simulator(fault_script=["429"], retry_after=0.5)
    assert generate(brief).headers["Retry-After"] == "0.5"
    assert stubborn.charged == brief.charged == 0


def test_status_polls_play_their_script_then_the_permanent_fault(start_simulator):
    sim = start_simulator(status_faults=["503", "500", "404", "CANCELLED", "200"],
                          status_fault="WEIRD")
    request_id = generate(sim, path=V2).json()["request_id"]
    _completed(sim)
    polls = [call(sim, f"/v2/requests/{request_id}/status") for _ in range(7)]
    assert [p.status for p in polls] == [503, 500, 404, 200, 200, 200, 200]
    assert polls[0].json()["error"] and polls[1].json()["error"]
    assert polls[2].json() == {"error": "Request not found or expired"}
    assert [p.json()["status"] for p in polls[3:]] == [
        "CANCELLED", "COMPLETED", "WEIRD", "WEIRD"]
    assert polls[3].json() == {"request_id": request_id, "status": "CANCELLED"}
    # The request is stuck for good: its result URL says so too.
    result = call(sim, f"/v2/requests/{request_id}")
    assert result.status == 200 and result.json() == {"request_id": request_id,
                                                      "status": "WEIRD"}
    assert sim.charged == 1
    assert sim.stats()["faults"] == {"503": 1, "500": 1, "404": 1, "CANCELLED": 1, "WEIRD": 3}


def test_a_status_script_leaves_the_result_url_alone(start_simulator):
    sim = start_simulator(status_faults=["503"])
    request_id = generate(sim, path=V2).json()["request_id"]
    _completed(sim)
    result = call(sim, f"/v2/requests/{request_id}")
    assert result.status == 200 and result.json()["output"]
    assert call(sim, f"/v2/requests/{request_id}/status").status == 503
    assert call(sim, f"/v2/requests/{request_id}/status").json()["status"] == "COMPLETED"


def test_a_status_endpoint_can_fail_forever(start_simulator):
    sim = start_simulator(status_fault="503")
    request_id = generate(sim, path=V2).json()["request_id"]
    _completed(sim)
    assert {call(sim, f"/v2/requests/{request_id}/status").status for _ in range(5)} == {503}
    assert call(sim, f"/v2/requests/{request_id}").status == 503
    assert call(sim, f"/v2/requests/{request_id}/status", key=None).status == 401
    assert sim.charged == 1


async def test_status_polls_can_be_cut_off_redirected_garbled_or_hung(start_simulator):
    sim = start_simulator(status_faults=["truncate", "redirect", "garbage", "timeout"],
                          hang=0.05)
    request_id = generate(sim, path=V2).json()["request_id"]
    _completed(sim)
    path = f"/v2/requests/{request_id}/status"
    cut, moved, garbled, hung, fine = [await fetch(sim.base_url + path) for _ in range(5)]
    assert cut.status == 200 and cut.error is not None
    assert cut.headers["Content-Type"].startswith("application/json")
    assert moved.status == 302 and moved.headers["Location"] == f"http://elsewhere.invalid{path}"
    assert garbled.status == 200 and garbled.headers["Content-Type"].startswith("text/html")
    assert hung.status == 504
    assert json.loads(fine.body)["status"] == "COMPLETED"


async def test_downloads_play_their_script_then_the_permanent_fault(start_simulator):
    sim = start_simulator(response_format="url", file_faults=["503", "truncate", "ok"],
                          file_fault="404")
    url = generate(sim).json()["output"]
    unavailable, cut, fine, missing, still_missing = [
        await fetch(url, key=None) for _ in range(5)]
    assert unavailable.status == 503
    assert cut.status == 200 and cut.error is not None
    assert int(cut.headers["Content-Length"]) == len(fine.body)
    assert fine.status == 200 and fine.body.startswith(PNG)
    assert missing.status == still_missing.status == 404
    assert sim.charged == 1


def test_v2_results_are_downloaded_through_the_file_faults(start_simulator):
    sim = start_simulator(file_faults=["502"])
    request_id = generate(sim, path=V2).json()["request_id"]
    _completed(sim)
    output = call(sim, f"/v2/requests/{request_id}").json()["output"]
    assert call(output, "", key=None).status == 502
    assert call(output, "", key=None).body.startswith(PNG)


def test_with_no_result_ttl_a_completed_request_is_gone_at_its_first_poll(start_simulator):
    sim = start_simulator(result_ttl=0)
    request_id = generate(sim, path=V2).json()["request_id"]
    _completed(sim)
    assert call(sim, f"/v2/requests/{request_id}/status").status == 404
    assert sum(r.path.endswith("/status") for r in sim.records) == 1
    assert sim.charged == 1


async def test_every_new_fault_is_billed_only_when_the_api_would_bill_it(start_simulator):
    v1 = start_simulator(fault_script=["truncate", "redirect", "gzipbomb", "lost", "200"])
    for i in range(5):
        await fetch(v1.base_url + V1, {"prompt": f"p{i}"})
    stats = call(v1, "/_sim/stats").json()
    assert stats["charged"] == 4  # every 200: cut off, bomb, "lost" (v1 has no id to lose), ok
    assert stats["generation_by_status"] == {"200": 4, "302": 1}
    assert stats["faults"] == {"truncate": 1, "redirect": 1, "gzipbomb": 1, "lost": 1}

    v2 = start_simulator(fault_script=["truncate", "redirect", "gzipbomb", "lost"])
    for i in range(4):
        await fetch(v2.base_url + V2, {"prompt": f"p{i}"})
    _completed(v2, 3)  # every 200: cut off, bomb (its body garbled) and lost
    assert [r.charged for r in v2.generation_records()] == [True, False, True, True]
    assert call(v2, "/_sim/stats").json()["charged"] == 3


def test_status_and_file_faults_are_checked_up_front():
    SimulatorConfig(status_faults=["503", "302", "CANCELLED", "WEIRD", "timeout", "200"],
                    status_fault="PROCESSING", file_faults=["truncate", "ok"], file_fault="503",
                    fault_script=["truncate", "redirect", "gzipbomb", "lost"])
    for bad in ("cancelled", "5O3", "999", "200OK", ""):
        with pytest.raises(ValueError, match="status fault"):
            SimulatorConfig(status_faults=[bad])
    with pytest.raises(ValueError, match="status fault 'weird'"):
        SimulatorConfig(status_fault="weird")
    with pytest.raises(ValueError, match="file fault 'CANCELLED'"):
        SimulatorConfig(file_fault="CANCELLED")
    with pytest.raises(ValueError, match="retry_after"):
        SimulatorConfig(retry_after=-1)


# -- records ------------------------------------------------------------------------


def test_records_say_what_was_asked_and_answered(start_simulator):
    sim = start_simulator(credits=1.0)
    generate(sim, "a fox", "21:9")
    generate(sim, "a [reject] fox", "1:1")
    generate(sim, key=None)
    call(sim, "/v1/get-user-credits")
    first, rejected, anonymous, balance = sim.records
    assert (first.method, first.path, first.prompt, first.aspect_ratio) == (
        "POST", V1, "a fox", "21:9")
    assert first.status == 200 and first.charged and first.request_id and first.has_key
    assert rejected.status == 400 and not rejected.charged
    assert anonymous.status == 401 and not anonymous.has_key
    assert balance.method == "GET" and balance.status == 200
    assert first.t <= rejected.t <= anonymous.t <= balance.t
    assert len(sim.generation_records()) == 3
    stats = call(sim, "/_sim/stats").json()
    assert stats["generation_requests"] == 3 and stats["charged"] == 1
    assert stats["generation_by_status"] == {"200": 1, "400": 1, "401": 1}


def test_sequential_requests_are_one_in_flight_at_a_time(sim):
    for i in range(4):
        generate(sim, f"p{i}")
    assert [r.in_flight for r in sim.records] == [1, 1, 1, 1]
    assert sim.max_in_flight == 1


async def test_concurrent_requests_are_counted_in_flight_and_released(start_simulator):
    # Hanging requests stay in flight until their client hangs up: no timing involved.
    sim = start_simulator(fault_script=["timeout"] * 4, hang=3600)
    url = sim.base_url + V1
    async with aiohttp.ClientSession(headers={"x-api-key": "k"}) as session:

        async def post(i: int):
            async with session.post(url, json={"prompt": f"p{i}"}) as resp:
                return resp.status

        tasks = [asyncio.create_task(post(i)) for i in range(4)]
        while sim.max_in_flight < 4:
            await asyncio.sleep(0.01)
        assert sorted(r.in_flight for r in sim.records) == [1, 2, 3, 4]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    # The hung requests were let go when their clients hung up: the next one is alone.
    while sum(r.status == "timeout" for r in sim.records) < 4:
        await asyncio.sleep(0.01)
    async with aiohttp.ClientSession(headers={"x-api-key": "k"}) as session:
        deadline = time.monotonic() + 20
        while True:
            async with session.post(url, json={"prompt": "alone"}) as resp:
                assert resp.status == 200
            if sim.records[-1].in_flight == 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.01)
    assert sim.records[-1].in_flight == 1
    assert sim.max_in_flight == 4


async def test_max_in_flight_never_exceeds_the_clients_connection_limit(start_simulator):
    sim = start_simulator(latency=0.01)
    connector = aiohttp.TCPConnector(limit=3)
    async with aiohttp.ClientSession(connector=connector, headers={"x-api-key": "k"}) as session:

        async def post(i: int) -> int:
            async with session.post(sim.base_url + V1, json={"prompt": f"p{i}"}) as resp:
                await resp.read()
                return resp.status

        statuses = await asyncio.gather(*(post(i) for i in range(12)))
    assert statuses == [200] * 12
    assert 1 <= sim.max_in_flight <= 3
    assert max(r.in_flight for r in sim.records) == sim.max_in_flight
    assert sim.charged == 12


# -- the command ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def shell_simulator(*options: str, key: str = "any-key"):
    """`batchgen simulator` in its own process on a free port, once it answers; what it
    printed is in `.out` after the block."""
    port = _free_port()
    proc = spawn("simulator", "--port", port, *options)
    shell = SimpleNamespace(base=f"http://127.0.0.1:{port}", out="")
    try:
        def up():
            assert proc.poll() is None, proc.stderr.read()
            try:
                return call(shell.base, "/v1/get-user-credits", key=key)
            except urllib.error.URLError:
                return None

        wait_for(up, "the simulator to start")
        yield shell
    finally:
        proc.kill()
        shell.out, _ = proc.communicate(timeout=10)


def test_batchgen_simulator_serves_from_a_shell():
    with shell_simulator("--credits", "1", "--key", "shell-key", key="shell-key") as shell:
        base = shell.base
        assert call(base, "/v1/get-user-credits", key="shell-key").json()["credits"] == 1.0
        answer = generate(base, key="shell-key", path=V1_SDK)
        assert answer.status == 200 and answer.body.startswith(PNG)
        assert generate(base, key="other").status == 401
    assert f"serving the Segmind API at {base}" in shell.out


def test_the_shell_simulator_takes_the_new_faults_as_options():
    options = ("--fault-script", "429", "--retry-after", "86400", "--format", "url",
               "--status-faults", "503", "--status-fault", "CANCELLED",
               "--file-faults", "502", "--file-fault", "404")
    with shell_simulator(*options) as shell:
        assert generate(shell.base).headers["Retry-After"] == "86400"
        url = generate(shell.base).json()["output"]
        assert [call(url, "", key=None).status for _ in range(2)] == [502, 404]
        request_id = generate(shell.base, path=V2).json()["request_id"]
        polls = [call(shell.base, f"/v2/requests/{request_id}/status") for _ in range(2)]
        assert [p.status for p in polls] == [503, 200]
        assert polls[1].json()["status"] == "CANCELLED"


def test_simulator_command_refuses_an_unknown_fault(cli):
    result = cli("simulator", "--fault-script", "503,999")
    assert result.code == 2 and "--fault-script: '999' is not one of 500, " in result.err


@pytest.mark.parametrize("option, value, message", [
    ("--status-faults", "503,cancelled", "--status-faults: 'cancelled' is not an HTTP status"),
    ("--status-fault", "5O3", "--status-fault: '5O3' is not an HTTP status"),
    ("--file-faults", "WEIRD", "--file-faults: 'WEIRD' is not an HTTP status"),
    ("--file-fault", "lost", "--file-fault: 'lost' is not an HTTP status"),
    ("--retry-after", "-1", "--retry-after: '-1' is not a number ≥ 0"),
])
def test_simulator_command_refuses_an_unknown_poll_or_download_fault(cli, option, value,
                                                                     message):
    result = cli("simulator", option, value)
    assert result.code == 2 and message in result.err
