"""The simulator speaks Segmind's API (SPEC §1) over real HTTP on loopback: what a
client sends, what it gets back, what the fake account is charged, and what the
simulator records about it."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import struct
import time
import urllib.error
import urllib.request
from datetime import datetime
from email.message import Message
from fractions import Fraction

import aiohttp
import pytest

from batchgen.config import ASPECT_RATIOS, MODEL
from batchgen.simulator import SimulatorConfig

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
    sim = start_simulator(key="k", credits=0.0, fault_script=["503", "garbage"])
    assert generate(sim, path=V2, key=None).status == 401
    assert generate(sim, path=V2, key="k").status == 503
    garbage = generate(sim, path=V2, key="k")
    assert garbage.status == 200 and garbage.headers["Content-Type"].startswith("text/html")
    assert generate(sim, "fox", "4:3", path=V2, key="k").status == 400
    broke = generate(sim, path=V2, key="k")
    assert broke.status == 406 and broke.json() == {"error": "Not enough credits"}
    assert call(sim, "/v2/requests/x/status", key=None).status == 401
    assert sim.charged == 0


def test_v2_polls_do_not_count_against_the_rate_limit(start_simulator):
    sim = start_simulator(rpm=1)
    request_id = generate(sim, path=V2).json()["request_id"]
    _poll_until_done(sim, request_id)
    for _ in range(3):
        assert call(sim, f"/v2/requests/{request_id}").status == 200
    assert generate(sim, path=V2).status == 429


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


def test_batchgen_simulator_serves_from_a_shell():
    port = _free_port()
    proc = spawn("simulator", "--port", port, "--credits", "1", "--key", "shell-key")
    base = f"http://127.0.0.1:{port}"
    try:
        def up():
            assert proc.poll() is None, proc.stderr.read()
            try:
                return call(base, "/v1/get-user-credits", key="shell-key")
            except urllib.error.URLError:
                return None

        assert wait_for(up, "the simulator to start").json()["credits"] == 1.0
        answer = generate(base, key="shell-key", path=V1_SDK)
        assert answer.status == 200 and answer.body.startswith(PNG)
        assert generate(base, key="other").status == 401
    finally:
        proc.kill()
        out, _ = proc.communicate(timeout=10)
    assert f"serving the Segmind API at {base}" in out


def test_simulator_command_refuses_an_unknown_fault(cli):
    result = cli("simulator", "--fault-script", "503,999")
    assert result.code == 2 and "unknown fault '999'" in result.err
