"""The simulator serves any Segmind model slug: a registry model's parameters are
checked as its page documents them (400 naming the parameter, nothing billed), `samples`
gives that many images billed per the registry's rule, any other slug takes a prompt at
the default price, and every image is stamped with exactly the body the simulator
received."""

from __future__ import annotations

import base64
from fractions import Fraction

import pytest

from batchgen.config import MODEL
from batchgen.fakeimage import make_image, read_stamp, shape
from batchgen.models import MODELS, price_of
from batchgen.simulator import make_png

from .model_examples import EXAMPLES, MULTI, WRONG
from .test_simulator import PNG, call, png_size, shell_simulator, wait_for


def body_for(slug: str, **changes) -> dict:
    return {"prompt": f"a lighthouse, by {slug}", **EXAMPLES[slug], **changes}


def stamp(slug: str, body: dict, sample: int = 1) -> dict:
    return {"model": slug, "params": body, "sample": sample}


def v2_result(sim, slug: str, body: dict) -> dict:
    submitted = call(sim, f"/v2/{slug}", body)
    assert submitted.status == 200, submitted.body
    request_id = submitted.json()["request_id"]

    def done():
        answer = call(sim, f"/v2/requests/{request_id}/status").json()
        return answer["status"] in ("COMPLETED", "FAILED")

    wait_for(done, "the v2 request to finish")
    return call(sim, f"/v2/requests/{request_id}").json()


# -- one typical request per registry model ---------------------------------------------


@pytest.mark.parametrize("slug", sorted(set(MODELS) - {MODEL}))
def test_a_typical_request_is_answered_with_an_image_stamped_with_what_was_sent(sim, slug):
    body = body_for(slug)
    answer = call(sim, MODELS[slug].v1_path, body)
    assert answer.status == 200 and answer.headers["Content-Type"] == "image/png"
    assert read_stamp(answer.body) == stamp(slug, body)
    price = price_of(MODELS[slug], body)
    assert answer.headers["x-credits-consumed"] == f"{price / 1e6:.3f}"
    record = sim.generation_records()[0]
    assert (record.model, record.params, record.samples) == (slug, body, 1)
    assert record.charged and record.price_micro == price
    assert sim.stats()["by_model"] == {slug: {"charged": 1, "images": 1,
                                              "spent": pytest.approx(price / 1e6)}}


def test_a_plain_luma_request_is_todays_unstamped_png_and_any_extra_is_stamped(sim):
    plain = {"prompt": "a fox", "aspect_ratio": "9:16"}
    answer = call(sim, f"/v1/models/{MODEL}", plain)
    assert answer.body == make_png("a fox", "9:16") and read_stamp(answer.body) is None
    extra = {**plain, "seed": 7}  # not a Luma parameter: let through, and shown
    stamped = call(sim, f"/v1/{MODEL}", extra)
    assert stamped.status == 200 and read_stamp(stamped.body) == stamp(MODEL, extra)
    assert Fraction(*png_size(stamped.body)) == Fraction(9, 16)
    assert sim.stats()["by_model"][MODEL]["charged"] == 2


@pytest.mark.parametrize("slug", sorted(WRONG))
def test_a_wrong_value_is_a_400_naming_the_parameter_and_costs_nothing(start_simulator, slug):
    sim = start_simulator(credits=1.0)
    name, value = WRONG[slug]
    answer = call(sim, f"/v1/{slug}", body_for(slug, **{name: value}))
    assert answer.status == 400
    message = answer.json()["error"]
    assert message.startswith(f"{name} must be ") and MODELS[slug].param(name).allowed() in message
    assert sim.charged == 0 and sim.stats()["balance"] == pytest.approx(1.0)
    assert sim.generation_records()[0].model == slug


@pytest.mark.parametrize(("slug", "name", "value"), [
    ("ssd-1b", "seed", "123"), ("flux-schnell", "steps", 4.0), ("sdxl1.0-txt2img", "refiner",
                                                                "true"),
    ("flux-dev", "aspect_ratio", "16x9"), ("ideogram-2a-txt-2-img", "seed", 99),
    ("flux-schnell", "samples", 0), ("ssd-1b", "guidance_scale", None)])
def test_the_simulator_wants_the_typed_value_not_a_spelling_of_it(sim, slug, name, value):
    answer = call(sim, f"/v1/{slug}", body_for(slug, **{name: value}))
    assert answer.status == 400 and answer.json()["error"].startswith(f"{name} must be ")
    assert sim.charged == 0


def test_a_registry_model_still_needs_a_prompt_and_honours_the_reject_marker(sim):
    assert call(sim, "/v1/ssd-1b", {"samples": 1}).json() == {"error": "prompt is required"}
    rejected = call(sim, "/v1/ssd-1b", body_for("ssd-1b", prompt="a [reject] fox"))
    assert rejected.status == 400 and sim.charged == 0


# -- several images per answer --------------------------------------------------------


@pytest.mark.parametrize("slug", MULTI)
def test_samples_3_gives_three_stamped_images_in_one_answer_billed_per_image(sim, slug):
    body = body_for(slug, samples=3)
    answer = call(sim, f"/v1/{slug}", body)
    assert answer.status == 200 and answer.headers["Content-Type"] == "application/json"
    images = [base64.b64decode(item) for item in answer.json()["images"]]
    assert [read_stamp(image) for image in images] == [stamp(slug, body, i) for i in (1, 2, 3)]
    price = price_of(MODELS[slug], body)
    assert price == 3 * MODELS[slug].price_micro
    assert answer.headers["x-credits-consumed"] == f"{price / 1e6:.3f}"
    assert sim.charged == 1 and sim.stats()["images"] == 3
    assert sim.stats()["spent"] == pytest.approx(price / 1e6)


def test_several_images_in_url_format_list_every_file(start_simulator):
    sim = start_simulator(response_format="url")
    body = body_for("ssd-1b", samples=2)
    answer = call(sim, "/v1/ssd-1b", body).json()
    urls = [item["url"] for item in answer["images"]]
    assert answer["output"] == urls[0] and len(set(urls)) == 2
    for sample, item in enumerate(answer["images"], 1):
        image = call(item["url"], "", key=None).body
        assert read_stamp(image) == stamp("ssd-1b", body, sample)
        assert item["content_type"] == "image/png" and item["file_size"] == str(len(image))


def test_base64_true_in_the_body_asks_for_json(sim):
    body = body_for("segmind-vega-rt-v1", base64=True)
    answer = call(sim, "/v1/segmind-vega-rt-v1", body)
    image = base64.b64decode(answer.json()["image"])
    assert read_stamp(image) == stamp("segmind-vega-rt-v1", body)


def test_an_account_that_can_pay_one_image_but_not_three_gets_406(start_simulator):
    sim = start_simulator(credits=0.01)
    broke = call(sim, "/v1/ssd-1b", body_for("ssd-1b", samples=3))  # $0.012
    assert broke.status == 406 and sim.charged == 0
    assert call(sim, "/v1/ssd-1b", body_for("ssd-1b", samples=2)).status == 200  # $0.008
    assert sim.stats()["balance"] == pytest.approx(0.002)


def test_a_price_set_for_a_slug_beats_the_registry(start_simulator):
    sim = start_simulator(prices={"ssd-1b": 0.01})
    answer = call(sim, "/v1/ssd-1b", body_for("ssd-1b", samples=2))
    assert answer.headers["x-credits-consumed"] == "0.020"
    assert sim.stats()["by_model"]["ssd-1b"]["spent"] == pytest.approx(0.02)


# -- slugs outside the registry -------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/a-new-model", "/v1/models/a-new-model"])
def test_an_unknown_slug_takes_any_body_with_a_prompt_at_the_default_price(sim, path):
    body = {"prompt": "a fox", "style": {"any": ["json", 1]}, "samples": 3}
    answer = call(sim, path, body)
    assert answer.status == 200 and answer.headers["x-credits-consumed"] == "0.019"
    assert read_stamp(answer.body) == stamp("a-new-model", body)  # one image, samples or not
    assert sim.stats()["by_model"] == {"a-new-model": {"charged": 1, "images": 1,
                                                       "spent": pytest.approx(0.019)}}
    assert call(sim, path, {"style": "x"}).status == 400


def test_an_unknown_slug_bills_the_simulators_price(start_simulator):
    sim = start_simulator(price=0.25, credits=1.0)
    assert call(sim, "/v1/other", {"prompt": "a fox"}).headers["x-credits-consumed"] == "0.250"
    assert call(sim, "/v1/ssd-1b", body_for("ssd-1b")).headers["x-credits-consumed"] == "0.004"
    assert sim.stats()["balance"] == pytest.approx(0.746)


def test_the_shell_simulators_price_is_for_models_outside_the_registry():
    with shell_simulator("--price", "0.5", "--credits", "10") as shell:
        other = call(shell.base, "/v1/my-finetune", {"prompt": "a fox"})
        flux = call(shell.base, "/v1/flux-schnell", body_for("flux-schnell", samples=2))
        luma = call(shell.base, f"/v1/models/{MODEL}", {"prompt": "a fox"})
        assert [a.headers["x-credits-consumed"] for a in (other, flux, luma)] == [
            "0.500", "0.016", "0.019"]
        stats = call(shell.base, "/_sim/stats").json()
        assert stats["by_model"]["flux-schnell"] == {"charged": 1, "images": 2,
                                                     "spent": 0.016}
        assert stats["balance"] == pytest.approx(10 - 0.535)


# -- v2 ---------------------------------------------------------------------------------


@pytest.mark.parametrize("slug", sorted(MODELS))
def test_v2_serves_every_registry_model(start_simulator, slug):
    sim = start_simulator(credits=1.0)
    body = body_for(slug, prompt="a heron")
    result = v2_result(sim, slug, body)
    assert result["status"] == "COMPLETED" and len(result["images"]) == 1
    assert result["output"] == result["images"][0]["url"]
    image = call(result["output"], "", key=None).body
    if slug == MODEL:
        assert image == make_png("a heron", "16:9")
    else:
        assert read_stamp(image) == stamp(slug, body)
    price = price_of(MODELS[slug], body)
    assert result["metrics"]["cost"] == pytest.approx(price / 1e6)
    assert sim.stats()["balance"] == pytest.approx(1.0 - price / 1e6)


def test_v2_with_samples_publishes_every_image(sim):
    body = body_for("flux-dev", samples=3)
    result = v2_result(sim, "flux-dev", body)
    images = [call(item["url"], "", key=None).body for item in result["images"]]
    assert [read_stamp(image) for image in images] == [stamp("flux-dev", body, i)
                                                       for i in (1, 2, 3)]
    assert sim.charged == 1 and sim.stats()["by_model"]["flux-dev"]["images"] == 3
    assert result["metrics"]["cost"] == pytest.approx(0.06)


def test_v2_checks_a_registry_models_parameters_like_v1(sim):
    answer = call(sim, "/v2/flux-schnell", body_for("flux-schnell", scheduler="fast"))
    assert answer.status == 400 and answer.json()["error"].startswith("scheduler must be one of")
    assert v2_result(sim, "a-new-model", {"prompt": "x"})["status"] == "COMPLETED"


# -- the images -------------------------------------------------------------------------


def test_an_image_follows_the_requested_width_and_height(sim):
    tall = call(sim, "/v1/sdxl1.0-txt2img", body_for("sdxl1.0-txt2img")).body  # 896x1152
    width, height = png_size(tall)
    assert height == 96 and width == 896 * 96 // 1152
    wide = call(sim, "/v1/flux-dev", body_for("flux-dev", aspect_ratio="21:9")).body
    assert Fraction(*png_size(wide)) == Fraction(21, 9)


@pytest.mark.parametrize(("params", "size"), [
    ({}, (96, 96)), ({"aspect_ratio": "2:3"}, (64, 96)), ({"img_width": 2048, "img_height":
                                                           1024}, (96, 48)),
    ({"width": 512, "height": 512}, (96, 96)), ({"size": "1024x1365"}, (72, 96)),
    ({"resolution": "RESOLUTION_1536_640"}, (96, 40)), ({"aspect_ratio": "custom",
                                                         "width": 300, "height": 100},
                                                        (96, 32)),
    ({"width": "wide", "height": 2}, (96, 96)), ({"img_width": 10**9, "img_height": 5},
                                                 (96, 96))])
def test_the_shape_of_an_image_comes_from_the_request(params, size):
    assert shape(params) == size


def test_a_stamp_reads_back_and_anything_else_has_none():
    image = make_image("a fox", 12, 8, {"model": "m", "params": {"prompt": "ünïcode"},
                                        "sample": 2})
    assert image.startswith(PNG) and read_stamp(image) == {
        "model": "m", "params": {"prompt": "ünïcode"}, "sample": 2}
    assert read_stamp(make_png("a fox", "1:1")) is None
    assert read_stamp(b"<html>") is None and read_stamp(PNG + b"\x00" * 5) is None
    # canonical JSON in a tEXt chunk: sorted keys, no spaces, ASCII only
    assert (b'tEXtbatchgen-sim\x00{"model":"m","params":{"prompt":"\\u00fcn\\u00efcode"},'
            b'"sample":2}') in image
