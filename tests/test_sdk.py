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
from batchgen.models import MODELS, price_of
from batchgen.simulator import make_png, read_stamp

from .conftest import TEST_KEY
from .model_examples import EXAMPLES, MULTI, WRONG

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


# -- every model of batchgen's registry -------------------------------------------------


def _sent(slug: str, response_bytes: bytes, params: dict, prompt: str) -> None:
    """The image is what the simulator made of exactly these parameters."""
    if slug == MODEL and params.keys() <= {"prompt", "aspect_ratio"}:
        assert response_bytes == make_png(prompt, params.get("aspect_ratio", "1:1"))
    else:
        assert read_stamp(response_bytes) == {"model": slug, "params": params, "sample": 1}


@pytest.mark.parametrize("slug", sorted(MODELS))
def test_run_sync_sends_a_registry_models_parameters_as_typed(start_simulator, slug):
    sim = start_simulator(credits=1.0)
    params = {"prompt": "a lighthouse at dusk", **EXAMPLES[slug]}
    response = sdk(sim).run_sync(slug, **params)
    assert response.status_code == 200 and response.headers["content-type"] == "image/png"
    _sent(slug, response.content, params, "a lighthouse at dusk")
    record = sim.generation_records()[0]
    assert (record.path, record.model, record.params) == (f"/v1/{slug}", slug, params)
    price = price_of(MODELS[slug], params) / 1e6
    assert float(response.headers["x-credits-consumed"]) == pytest.approx(price)
    assert sim.stats()["balance"] == pytest.approx(1.0 - price)


@pytest.mark.parametrize("slug", sorted(MODELS))
def test_run_v2_completes_for_a_registry_model(start_simulator, slug):
    sim = start_simulator(credits=1.0)
    params = {"prompt": "a red fox", **EXAMPLES[slug]}
    result = sdk(sim).run(slug, **params)
    assert result["status"] == "COMPLETED" and "metrics" in result
    _sent(slug, httpx.get(result["output"]).content, params, "a red fox")
    assert [r.path for r in sim.generation_records()] == [f"/v2/{slug}"]
    assert sim.charged == 1


@pytest.mark.parametrize("slug", sorted(WRONG))
def test_a_value_the_page_does_not_allow_is_a_segmind_error_400(sim, slug):
    name, value = WRONG[slug]
    with pytest.raises(SegmindError) as info:
        sdk(sim).run_sync(slug, prompt="a fox", **{**EXAMPLES[slug], name: value})
    assert info.value.status == 400 and info.value.detail.startswith(f"{name} must be ")
    assert sim.charged == 0


@pytest.mark.parametrize("slug", MULTI)
def test_run_v2_with_samples_lists_every_image(sim, slug):
    params = {"prompt": "a red fox", **EXAMPLES[slug], "samples": 2}
    result = sdk(sim).run(slug, **params)
    stamps = [read_stamp(httpx.get(item["url"]).content) for item in result["images"]]
    assert [s["sample"] for s in stamps] == [1, 2] and stamps[0]["params"] == params


def test_run_sync_reaches_a_model_outside_the_registry(sim):
    response = sdk(sim).run_sync("some-new-model", prompt="a fox", quality="high")
    assert response.status_code == 200
    assert read_stamp(response.content)["params"] == {"prompt": "a fox", "quality": "high"}
