"""The API client against the simulator (and, for answers the simulator never gives,
a tiny scripted aiohttp server): every answer becomes an image or the error type
that tells the runner what to do, and the key goes nowhere it should not."""

from __future__ import annotations

import asyncio
import base64
import email.utils
import socket
import time

import aiohttp
import pytest
from aiohttp import web

from batchgen.answers import parse_retry_after
from batchgen.client import Client, key_exposed
from batchgen.errors import (
    ApiError,
    FatalApiError,
    InvalidImage,
    JobRejected,
    NoAnswer,
    OutOfCredits,
    RateLimited,
    RequestLost,
    RetryableError,
)
from batchgen.simulator import make_png

from .conftest import TEST_KEY

PNG = make_png("scripted", "1:1")


async def generate(base_url: str, prompt: str = "a red fox", ratio: str = "1:1",
                   key: str = TEST_KEY, timeout: float = 30.0):
    async with Client.open(base_url, key, timeout=timeout) as client:
        return await client.generate({"prompt": prompt, "aspect_ratio": ratio})


async def failure(base_url: str, prompt: str = "a red fox", ratio: str = "1:1",
                  key: str = TEST_KEY, timeout: float = 30.0) -> ApiError:
    with pytest.raises(ApiError) as info:
        await generate(base_url, prompt, ratio, key, timeout)
    return info.value


@pytest.fixture
async def scripted():
    """A real HTTP server that answers each request with the next scripted response,
    for bodies and headers the simulator never sends. Requests are kept in `.seen`."""

    class Scripted:
        def __init__(self):
            self.responses: list = []
            self.seen: list[web.Request] = []
            self.base_url = ""

        async def handle(self, request: web.Request) -> web.StreamResponse:
            self.seen.append(request)
            answer = self.responses.pop(0)
            return await answer(request) if callable(answer) else answer

    server = Scripted()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.base_url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield server
    await runner.cleanup()


# -- success in every format ---------------------------------------------------------


@pytest.mark.parametrize("fmt", ["raw", "base64", "url"])
async def test_every_success_format_gives_the_same_verified_image(start_simulator, fmt):
    sim = start_simulator(response_format=fmt, credits=1.0)
    image = await generate(sim.base_url, "a fox", "16:9")
    assert image.data == make_png("a fox", "16:9")
    assert image.extension == "png"
    assert image.request_id == sim.generation_records()[0].request_id
    assert image.remaining_credits == pytest.approx(0.981)
    assert image.credits_consumed == pytest.approx(0.019)
    assert image.latency_s >= 0
    assert sim.charged == 1


async def test_the_default_endpoint_is_the_model_page_url(sim):
    await generate(sim.base_url)
    assert sim.records[0].path == "/v1/models/luma-photon-txt-2-img"


@pytest.mark.parametrize("answer", [
    lambda url: web.json_response({"output": url}),
    lambda url: web.json_response({"output": [url]}),
    lambda url: web.json_response({"image_url": url}),
    lambda url: web.json_response({"image": base64.b64encode(PNG).decode()}),
    lambda url: web.json_response({"image": "data:image/png;base64,"
                                   + base64.encodebytes(PNG).decode()}),
    lambda url: web.Response(text=f'{{"output": "{url}"}}', content_type="text/plain"),
    lambda url: web.Response(body=PNG, content_type="application/octet-stream"),
], ids=["output", "output-list", "image_url", "base64", "data-uri-wrapped", "json-as-text",
        "octet-stream"])
async def test_every_documented_answer_shape_is_accepted(scripted, sim, answer):
    url = sim.publish(PNG)
    scripted.responses.append(answer(url))
    image = await generate(scripted.base_url)
    assert image.data == PNG and image.extension == "png"


# -- every error status maps to the error type that says what to do ---------------------


@pytest.mark.parametrize("fault, kind", [
    ("500", RetryableError), ("502", RetryableError), ("503", RetryableError),
    ("504", RetryableError), ("429", RateLimited), ("400", JobRejected),
    ("406", OutOfCredits), ("401", FatalApiError), ("403", FatalApiError),
    ("404", FatalApiError), ("garbage", InvalidImage),
])
async def test_each_error_status_raises_its_type(start_simulator, fault, kind):
    sim = start_simulator(fault_script=[fault])
    error = await failure(sim.base_url)
    assert type(error) is kind
    assert error.status == (200 if fault == "garbage" else int(fault))
    assert error.message


async def test_a_429_carries_its_retry_after(start_simulator):
    sim = start_simulator(rpm=1)
    await generate(sim.base_url)
    error = await failure(sim.base_url)
    assert isinstance(error, RateLimited) and isinstance(error, RetryableError)
    assert 1 <= error.retry_after <= 60


async def test_a_429_with_an_http_date_or_a_reset_time(scripted):
    in_30s = email.utils.formatdate(time.time() + 30, usegmt=True)
    scripted.responses += [
        web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": in_30s}),
        web.json_response({"error": "slow down"}, status=429,
                          headers={"x-rate-limit-reset-at-utc": str(time.time() + 20)}),
        web.json_response({"error": "slow down"}, status=429),
    ]
    first, second, bare = [await failure(scripted.base_url) for _ in range(3)]
    assert first.retry_after == pytest.approx(30, abs=3)
    assert second.retry_after == pytest.approx(20, abs=3)
    assert isinstance(bare, RateLimited) and bare.retry_after is None


async def test_bad_input_is_rejected_for_this_job_only(sim):
    bad_ratio = await failure(sim.base_url, ratio="4:3")
    assert isinstance(bad_ratio, JobRejected) and bad_ratio.status == 400
    assert "aspect_ratio" in bad_ratio.message
    filtered = await failure(sim.base_url, prompt="a [reject] fox")
    assert isinstance(filtered, JobRejected) and "rejected" in filtered.message.lower()


async def test_a_wrong_key_or_endpoint_is_fatal(start_simulator):
    sim = start_simulator(key="right")
    wrong_key = await failure(sim.base_url, key="wrong")
    assert isinstance(wrong_key, FatalApiError) and wrong_key.status == 401
    assert "SEGMIND_API_KEY" in str(wrong_key)
    wrong_endpoint = await failure(sim.base_url + "/not-segmind", key="right")
    assert isinstance(wrong_endpoint, FatalApiError) and wrong_endpoint.status == 404


async def test_an_empty_account_raises_out_of_credits(start_simulator):
    sim = start_simulator(credits=0.02)
    await generate(sim.base_url)
    error = await failure(sim.base_url)
    assert isinstance(error, OutOfCredits) and error.message == "Not enough credits"


async def test_a_generation_that_hangs_past_the_timeout_may_have_been_billed(start_simulator):
    sim = start_simulator(fault_script=["timeout"], hang=3600)
    error = await failure(sim.base_url, timeout=0.2)
    assert type(error) is NoAnswer and error.status is None  # retried, its price kept aside
    assert isinstance(error, RetryableError) and "0.2s" in error.message


async def test_connection_refused_is_retryable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once the socket is closed
    error = await failure(f"http://127.0.0.1:{port}")
    assert type(error) is RetryableError and "connection failed" in error.message


@pytest.mark.parametrize("answer", [
    web.Response(text="<html>oops</html>", content_type="text/html"),
    web.Response(body=b"", content_type="image/png"),
    web.Response(body=b"GIF8 not really", content_type="image/gif"),
    web.json_response({"status": "ok"}),
    web.json_response({"image": "not base64!"}),
    web.json_response({"image": base64.b64encode(b"plain text").decode()}),
    web.json_response({"output": ["a", "b"]}),
    web.json_response(["not", "an", "object"]),
], ids=["html", "empty", "fake-gif", "no-image", "bad-base64", "base64-text", "two-urls",
        "json-list"])
async def test_a_200_that_is_not_an_image_is_invalid_image(scripted, answer):
    scripted.responses.append(answer)
    error = await failure(scripted.base_url)
    assert isinstance(error, InvalidImage) and error.status == 200
    assert "invalid image data" in error.message


async def test_a_failed_download_after_a_billed_200_is_invalid_image(scripted, sim):
    scripted.responses.append(web.json_response({"output": sim.base_url + "/files/gone.png"}))
    error = await failure(scripted.base_url)
    assert isinstance(error, InvalidImage) and "download failed" in error.message
    assert error.status == 200


# -- parse_retry_after ---------------------------------------------------------------


NOW = 1_700_000_000.0


@pytest.mark.parametrize("headers, seconds", [
    ({"Retry-After": "7"}, 7.0),
    ({"Retry-After": " 2.5 "}, 2.5),
    ({"Retry-After": "-3"}, 0.0),
    ({"Retry-After": email.utils.formatdate(NOW + 42, usegmt=True)}, 42.0),
    ({"Retry-After": email.utils.formatdate(NOW - 42, usegmt=True)}, 0.0),
    ({"x-rate-limit-reset-at-utc": "2023-11-14T22:13:40Z"}, 20.0),
    ({"x-rate-limit-reset-at-utc": "2023-11-14T22:13:40.500+00:00"}, 20.5),
    ({"x-rate-limit-reset-at-utc": "2023-11-14T23:13:40+01:00"}, 20.0),
    ({"x-rate-limit-reset-at-utc": "2023-11-14T22:13:40"}, 20.0),  # no zone: UTC
    ({"x-rate-limit-reset-at-utc": str(NOW + 15)}, 15.0),
    ({"x-rate-limit-reset-at-utc": str(int(NOW + 15))}, 15.0),
    ({"x-rate-limit-reset-at-utc": str(int((NOW + 15) * 1000))}, 15.0),  # milliseconds
    ({"x-rate-limit-reset-at-utc": "12"}, 12.0),  # no date that small: a delay
    ({"Retry-After": "3", "x-rate-limit-reset-at-utc": str(NOW + 15)}, 3.0),
    ({"Retry-After": "soon", "x-rate-limit-reset-at-utc": str(NOW + 15)}, 15.0),
])
def test_parse_retry_after(headers, seconds):
    assert parse_retry_after(headers, now=NOW) == pytest.approx(seconds)


@pytest.mark.parametrize("headers", [
    {}, {"Retry-After": ""}, {"Retry-After": "soon"}, {"Retry-After": "inf"},
    {"Retry-After": "nan"}, {"x-rate-limit-reset-at-utc": "tomorrow"},
])
def test_parse_retry_after_gives_none_when_nothing_parses(headers):
    assert parse_retry_after(headers, now=NOW) is None


def test_the_reset_time_the_simulator_sends_parses(start_simulator):
    from .test_simulator import generate as post

    sim = start_simulator(rpm=1)
    post(sim)
    limited = post(sim)
    only_reset = {"x-rate-limit-reset-at-utc": limited.headers["x-rate-limit-reset-at-utc"]}
    assert 0 < parse_retry_after(only_reset) <= 61


# -- the key stays secret -------------------------------------------------------------


async def test_the_key_appears_in_no_error_and_not_in_the_client(start_simulator, scripted):
    secret = "sk-VERY-SECRET-KEY-42"
    errors: list[Exception] = []
    for fault in ["500", "429", "400", "401", "403", "404", "406", "garbage"]:
        sim = start_simulator(fault_script=[fault])
        errors.append(await failure(sim.base_url, key=secret))
    strict = start_simulator(key="another")
    errors.append(await failure(strict.base_url, key=secret))
    errors.append(await failure(strict.base_url + "/nowhere", key=secret))
    # A server that echoes the key back in its error message gets it blotted out.
    scripted.responses.append(
        web.json_response({"error": f"key {secret} is not valid"}, status=401))
    errors.append(await failure(scripted.base_url, key=secret))
    assert "***" in errors[-1].message
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    errors.append(await failure(f"http://127.0.0.1:{port}", key=secret))
    hang = start_simulator(fault_script=["timeout"], hang=3600)
    errors.append(await failure(hang.base_url, key=secret, timeout=0.1))

    for error in errors:
        for text in (str(error), repr(error), error.message, repr(error.args)):
            assert secret not in text
    async with Client.open(strict.base_url, secret) as client:
        assert secret not in repr(client) and secret not in str(client)


@pytest.mark.parametrize("url, exposed", [
    ("http://api.example.com", True), ("http://10.0.0.5:8765", True),
    ("https://api.segmind.com", False), ("http://127.0.0.1:8765", False),
    ("http://127.0.0.2", False), ("http://localhost:1", False), ("http://[::1]:80", False),
])
def test_plain_http_to_another_machine_is_flagged(url, exposed):
    assert key_exposed(url) is exposed


# -- downloads ----------------------------------------------------------------------


@pytest.mark.parametrize("url", [
    "file:///etc/passwd", "ftp://127.0.0.1/image.png", "data:image/png;base64,AAAA",
    "gopher://127.0.0.1/",
])
async def test_downloads_refuse_anything_but_http(sim, url):
    async with Client.open(sim.base_url, TEST_KEY) as client:
        with pytest.raises(InvalidImage, match="refusing"):
            await client.download(url)
    assert sim.records == []


async def test_a_json_answer_pointing_at_a_file_url_is_refused(scripted):
    scripted.responses.append(web.json_response({"output": "file:///etc/passwd"}))
    error = await failure(scripted.base_url)
    assert isinstance(error, InvalidImage) and "refusing" in error.message


async def test_downloads_are_capped(sim):
    big = sim.publish(b"\x89PNG\r\n\x1a\n" + bytes(5000))
    small = sim.publish(PNG)
    async with aiohttp.ClientSession() as session:
        client = Client(session, sim.base_url, TEST_KEY, max_download=len(PNG) + 10)
        assert await client.download(small) == PNG
        with pytest.raises(InvalidImage, match="larger than"):
            await client.download(big)


async def test_the_cap_holds_without_a_content_length(scripted):
    async def stream(request):
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(20):
            await response.write(b"\x89PNG" + bytes(1000))
        await response.write_eof()
        return response

    scripted.responses.append(stream)
    async with aiohttp.ClientSession() as session:
        client = Client(session, scripted.base_url, TEST_KEY, max_download=5000)
        with pytest.raises(InvalidImage, match="larger than"):
            await client.download(scripted.base_url + "/big.png")


async def test_the_key_goes_only_to_the_api_host(start_simulator):
    api, cdn = start_simulator(response_format="url"), start_simulator()
    async with Client.open(api.base_url, TEST_KEY) as client:
        assert await client.download(cdn.publish(PNG)) == PNG
        # its URL points back at the API's own host
        await client.generate({"prompt": "a fox", "aspect_ratio": "1:1"})
    assert [r.has_key for r in cdn.records] == [False]
    assert [(r.path.split("/")[1], r.has_key) for r in api.records] == [
        ("v1", True), ("files", True)]


async def test_an_image_url_on_another_host_gets_no_key(scripted, start_simulator):
    cdn = start_simulator()
    scripted.responses.append(web.json_response({"output": cdn.publish(PNG)}))
    image = await generate(scripted.base_url)
    assert image.data == PNG
    assert scripted.seen[0].headers["x-api-key"] == TEST_KEY
    assert cdn.records[0].has_key is False


async def test_same_host_other_port_or_scheme_gets_no_key(sim, scripted):
    async with aiohttp.ClientSession() as session:
        client = Client(session, sim.base_url.replace("http://", "https://"), TEST_KEY)
        assert await client.download(sim.publish(PNG)) == PNG  # http, not the API's https
        client = Client(session, scripted.base_url, TEST_KEY)
        assert await client.download(sim.publish(PNG)) == PNG  # same address, other port
    assert [r.has_key for r in sim.records] == [False, False]


async def test_a_redirect_is_followed_once_and_never_carries_the_key(scripted, start_simulator):
    cdn = start_simulator()
    scripted.responses += [
        web.Response(status=302, headers={"Location": cdn.publish(PNG)}),
        web.Response(status=302, headers={"Location": "file:///etc/passwd"}),
    ]
    async with Client.open(scripted.base_url, TEST_KEY) as client:
        assert await client.download(scripted.base_url + "/image") == PNG
        with pytest.raises(InvalidImage, match="refusing to fetch"):
            await client.download(scripted.base_url + "/image")
    assert cdn.records[0].has_key is False


# -- credits and v2 ---------------------------------------------------------------------


async def test_credits_reads_the_balance(start_simulator):
    sim = start_simulator(credits=0.5)
    async with Client.open(sim.base_url, TEST_KEY) as client:
        assert await client.credits() == pytest.approx(0.5)
        await client.generate({"prompt": "a fox", "aspect_ratio": "1:1"})
        assert await client.credits() == pytest.approx(0.481)
    off = start_simulator(credits_endpoint=False)
    async with Client.open(off.base_url, TEST_KEY) as client:
        with pytest.raises(FatalApiError) as info:
            await client.credits()
    assert info.value.status == 404


async def _wait(client: Client, request_id: str) -> tuple[str, str | None]:
    for _ in range(2000):
        state, error = await client.status(request_id)
        if state not in ("QUEUED", "PROCESSING"):
            return state, error
        await asyncio.sleep(0.01)
    raise AssertionError("the v2 request never finished")


async def test_v2_submit_status_result(start_simulator):
    sim = start_simulator(credits=1.0, queue_delay=0.01)
    async with Client.open(sim.base_url, TEST_KEY) as client:
        request_id = await client.submit({"prompt": "a fox", "aspect_ratio": "9:16"})
        assert await _wait(client, request_id) == ("COMPLETED", None)
        image = await client.result(request_id)
    assert image.data == make_png("a fox", "9:16") and image.extension == "png"
    assert image.request_id == request_id
    assert sim.charged == 1


async def test_v2_failed_and_unfinished_and_expired(start_simulator):
    sim = start_simulator(result_ttl=3600)
    async with Client.open(sim.base_url, TEST_KEY) as client:
        failed = await client.submit({"prompt": "a [fail] fox", "aspect_ratio": "1:1"})
        state, error = await _wait(client, failed)
        assert state == "FAILED" and error
        with pytest.raises(JobRejected) as info:
            await client.result(failed)
        assert info.value.status == 422

        with pytest.raises(RequestLost, match="expired"):
            await client.status("no-such-request")
        with pytest.raises(RequestLost):
            await client.result("no-such-request")
        with pytest.raises(JobRejected):
            await client.submit({"prompt": "a fox", "aspect_ratio": "4:3"})

    slow = start_simulator(queue_delay=3600)
    async with Client.open(slow.base_url, TEST_KEY) as client:
        queued = await client.submit({"prompt": "a fox", "aspect_ratio": "1:1"})
        assert await client.status(queued) == ("QUEUED", None)
        with pytest.raises(RetryableError, match="not finished"):
            await client.result(queued)


async def test_v2_unreadable_answers_are_retryable_and_only_a_submit_is_billed(scripted):
    scripted.responses += [
        web.Response(text="<html>hiccup</html>", content_type="text/html"),
        web.Response(text="<html>hiccup</html>", content_type="text/html", status=422),
        web.Response(text="<html>bad gateway</html>", content_type="text/html", status=502),
    ]
    async with Client.open(scripted.base_url, TEST_KEY) as client:
        with pytest.raises(InvalidImage) as submit_error:  # it may have been queued all the same
            await client.submit({"prompt": "a fox", "aspect_ratio": "1:1"})
        assert submit_error.value.billed
        with pytest.raises(JobRejected):
            await client.status("abc")  # a 422 that is not a FAILED body
        with pytest.raises(RetryableError) as gateway:
            await client.status("abc")
        assert gateway.value.status == 502
