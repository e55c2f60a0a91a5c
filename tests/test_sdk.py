"""Fidelity: Segmind's own Python SDK (`segmind` on PyPI) cannot tell the simulator
from the real API (SPEC §1). The SDK is synchronous (httpx); the simulator serves
from its own thread, so the two meet over real HTTP on loopback."""

from __future__ import annotations

import struct

import httpx
import pytest
from segmind import SegmindClient
from segmind.exceptions import SegmindError
from segmind.v2 import InferenceFailed

from batchgen.config import MODEL
from batchgen.simulator import make_png

from .conftest import TEST_KEY

PNG = b"\x89PNG\r\n\x1a\n"


def sdk(sim, key: str | None = TEST_KEY) -> SegmindClient:
    client = SegmindClient(api_key=key, base_url=sim.base_url + "/v1")
    if key is None:  # the SDK falls back to SEGMIND_API_KEY; make sure none is sent
        client._client.headers.pop("x-api-key", None)
    return client


def test_run_sync_returns_the_image(sim):
    response = sdk(sim).run_sync(MODEL, prompt="a lighthouse at dusk", aspect_ratio="16:9")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == make_png("a lighthouse at dusk", "16:9")
    width, height = struct.unpack(">II", response.content[16:24])
    assert width * 9 == height * 16
    record = sim.generation_records()[0]
    assert record.path == f"/v1/{MODEL}" and record.aspect_ratio == "16:9"
    assert sim.charged == 1


def test_run_sync_json_formats_read_like_the_model_page_sample(start_simulator):
    sim = start_simulator(response_format="url")
    body = sdk(sim).run_sync(MODEL, prompt="a fox").json()
    assert httpx.get(body["output"]).content.startswith(PNG)


def test_a_bad_ratio_is_a_segmind_error_400(sim):
    with pytest.raises(SegmindError) as info:
        sdk(sim).run_sync(MODEL, prompt="a fox", aspect_ratio="4:3")
    assert info.value.status == 400
    assert "aspect_ratio" in info.value.detail
    assert sim.charged == 0


def test_a_missing_key_is_a_segmind_error_401(sim, monkeypatch):
    monkeypatch.delenv("SEGMIND_API_KEY", raising=False)
    with pytest.raises(SegmindError) as info:
        sdk(sim, key=None).run_sync(MODEL, prompt="a fox")
    assert info.value.status == 401
    assert info.value.detail
    assert sim.records[0].has_key is False


def test_a_wrong_key_is_401_when_the_simulator_has_one(start_simulator):
    sim = start_simulator(key="the-only-key")
    with pytest.raises(SegmindError) as info:
        sdk(sim, key="not-it").run_sync(MODEL, prompt="a fox")
    assert info.value.status == 401
    assert sdk(sim, key="the-only-key").run_sync(MODEL, prompt="a fox").status_code == 200


def test_out_of_credits_is_a_segmind_error_406(start_simulator):
    sim = start_simulator(credits=0.0)
    with pytest.raises(SegmindError) as info:
        sdk(sim).run_sync(MODEL, prompt="a fox")
    assert (info.value.status, info.value.detail) == (406, "Not enough credits")


def test_run_v2_completes_and_its_output_url_serves_the_image(start_simulator):
    sim = start_simulator(credits=1.0)
    result = sdk(sim).run(MODEL, prompt="a red fox", aspect_ratio="2:3")
    assert result["status"] == "COMPLETED"
    assert "metrics" in result
    image = httpx.get(result["output"])
    assert image.status_code == 200
    assert image.content == make_png("a red fox", "2:3")
    assert [r.path for r in sim.generation_records()] == [f"/v2/{MODEL}"]
    assert sim.charged == 1


def test_submit_async_wait_reports_a_failed_request(sim):
    job = sdk(sim).submit_async(MODEL, prompt="a [fail] fox")
    with pytest.raises(InferenceFailed) as info:
        job.wait(timeout=30, interval=0.01)
    assert info.value.detail and info.value.status_body["status"] == "FAILED"
    assert job.result()["status"] == "FAILED"  # served with 422, read by the SDK
    assert sim.charged == 0


def test_v2_rejects_like_v1(sim):
    with pytest.raises(SegmindError) as info:
        sdk(sim).submit_async(MODEL, prompt="a fox", aspect_ratio="969")
    assert info.value.status == 400
