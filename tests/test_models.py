"""The model registry: where each model's facts come from, how a spreadsheet cell or a
YAML value becomes the typed value the API wants (or a message saying what is allowed),
and what one request costs."""

from __future__ import annotations

import re

import pytest

from batchgen.config import ASPECT_RATIOS, MODEL
from batchgen.models import (
    DEFAULT_MODEL,
    MODELS,
    Model,
    Param,
    canonical_ratio,
    model,
    parse_value,
    price_of,
    samples_of,
)

from .model_examples import EXAMPLES, MULTI, WRONG

STEPS = Param("steps", "int", 4, minimum=1, maximum=8)
STRENGTH = Param("strength", "float", 0.8, minimum=0, maximum=1)
FLAG = Param("refiner", "bool")
TEXT = Param("negative_prompt", "str")
RATIO = MODELS[MODEL].param("aspect_ratio")
WIDTH = Param("img_width", "enum", 1024, choices=(1024,))
MAGIC = Param("magic_prompt_option", "enum", "AUTO", choices=("AUTO", "ON", "OFF"))


# -- the registry's facts -----------------------------------------------------------


@pytest.mark.parametrize("slug", sorted(MODELS))
def test_every_model_says_where_and_when_its_facts_were_read(slug):
    entry = MODELS[slug]
    assert entry.slug == slug and entry.title
    assert re.search(rf"https://(www\.)?segmind\.com/models/{re.escape(slug)}/api", entry.source)
    assert "2026-12-01" in entry.source and "stored copy" in entry.source
    assert entry.price_text and "$" in entry.price_text
    assert entry.price_micro is None or entry.price_micro > 0
    assert entry.v2_path == f"/v2/{slug}"
    assert len({p.name for p in entry.params}) == len(entry.params)
    assert "prompt" not in {p.name for p in entry.params}
    if entry.samples_param is not None:
        assert entry.param(entry.samples_param).kind == "int"


def test_the_registry_covers_luma_flux_sdxl_a_distillation_and_ideogram():
    assert set(MODELS) == set(EXAMPLES) == set(WRONG)
    assert {"luma-photon-txt-2-img", "flux-schnell", "sdxl1.0-txt2img", "ssd-1b",
            "ideogram-2a-txt-2-img"} <= set(MODELS)
    assert sorted(m.slug for m in MODELS.values() if m.samples_param) == sorted(MULTI)


def test_luma_keeps_exactly_todays_rules():
    luma = model(DEFAULT_MODEL)
    assert DEFAULT_MODEL == MODEL == luma.slug
    assert luma.price_micro == 19_000 and luma.samples_param is None
    assert luma.v1_path == "/v1/models/luma-photon-txt-2-img"
    assert [p.name for p in luma.params] == ["aspect_ratio"]
    assert RATIO.kind == "enum" and RATIO.choices == ASPECT_RATIOS and RATIO.default == "1:1"


def test_other_models_answer_at_v1_slug_and_unknown_slugs_are_not_in_the_registry():
    assert MODELS["flux-schnell"].v1_path == "/v1/flux-schnell"
    assert model("no-such-model") is None and model("") is None


@pytest.mark.parametrize("slug", sorted(MODELS))
def test_each_pages_sample_request_passes_the_registrys_checks(slug):
    assert MODELS[slug].check_body({"prompt": "a fox", **EXAMPLES[slug]}) is None
    name, value = WRONG[slug]
    problem = MODELS[slug].check_body({"prompt": "a fox", **EXAMPLES[slug], name: value})
    assert problem is not None and problem.startswith(f"{name} must be ")


# -- Param.parse: spreadsheet text and YAML values → typed values ---------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("4", 4), (" 8 ", 8), ("+1", 1), ("3.0", 3), (5, 5), (6.0, 6), ("1e0", 1)])
def test_a_whole_number_parses_from_text_or_numbers(value, expected):
    parsed = STEPS.parse(value)
    assert parsed == expected and type(parsed) is int


@pytest.mark.parametrize("value", ["3.5", "9", "0", "four", "", "  ", True, None, 2.5, [4]])
def test_a_bad_whole_number_names_the_range(value):
    with pytest.raises(ValueError, match=r"^must be a whole number from 1 to 8, not "):
        STEPS.parse(value)


def test_ranges_with_one_end_or_none_say_so():
    assert Param("s", "int", minimum=1).allowed() == "a whole number of at least 1"
    assert Param("q", "float", maximum=2.5).allowed() == "a number of at most 2.5"
    assert Param("seed", "int").parse("9876543210") == 9876543210
    assert Param("seed", "int").allowed() == "a whole number"
    huge = Param("seed", "int", minimum=-1, maximum=999999999999999)
    assert huge.parse("999999999999999") == 999999999999999
    with pytest.raises(ValueError, match="from -1 to 999999999999999"):
        huge.parse("1000000000000000")


@pytest.mark.parametrize(("value", "expected"), [("0.2", 0.2), (1, 1.0), ("1", 1.0), (0, 0.0)])
def test_a_number_parses_to_a_float(value, expected):
    parsed = STRENGTH.parse(value)
    assert parsed == expected and type(parsed) is float


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan", "inf", "0,5", False, None])
def test_a_bad_number_names_the_range(value):
    with pytest.raises(ValueError, match=r"^must be a number from 0 to 1, not "):
        STRENGTH.parse(value)


@pytest.mark.parametrize(("value", "expected"), [
    ("true", True), ("TRUE", True), ("Yes", True), ("1", True), (True, True), (1, True),
    ("false", False), ("No", False), ("0", False), (" FALSE ", False), (0, False)])
def test_booleans_read_true_false_yes_no_1_0(value, expected):
    assert FLAG.parse(value) is expected


@pytest.mark.parametrize("value", ["maybe", "", "2", 2, None, "on"])
def test_a_bad_boolean_says_true_or_false(value):
    with pytest.raises(ValueError, match=r"^must be true or false, not "):
        FLAG.parse(value)


@pytest.mark.parametrize("text", ["16:9", " 16:9 ", "16 : 9", "16x9", "16X9", "16/9",
                                  "16:09:00", "16×9"])
def test_ratio_spellings_of_an_allowed_ratio_are_that_ratio(text):
    assert RATIO.parse(text) == "16:9"
    assert canonical_ratio(text) == "16:9"


@pytest.mark.parametrize("text", ["4:3", "969", "16:10", "", "wide", 969])
def test_a_ratio_outside_the_choices_lists_all_nine(text):
    with pytest.raises(ValueError) as info:
        RATIO.parse(text)
    assert str(info.value).startswith("must be one of 1:1, 16:9, 2:3, 3:2, 4:5, 5:4, 9:16, "
                                      "9:21, 21:9, not ")


def test_ratio_spellings_follow_each_models_own_choices():
    assert canonical_ratio("21x9", ("1:1", "21:9")) == "21:9"
    assert canonical_ratio("16x9", ("1:1", "21:9")) is None


def test_enum_words_match_case_insensitively_and_whole_numbers_from_text():
    assert MAGIC.parse("auto") == "AUTO" and MAGIC.parse(" On ") == "ON"
    assert WIDTH.parse("1024") == 1024 and WIDTH.parse(1024.0) == 1024
    with pytest.raises(ValueError, match=r"^must be one of AUTO, ON, OFF, not 'MAYBE'$"):
        MAGIC.parse("MAYBE")
    with pytest.raises(ValueError, match=r"^must be one of 1024, not '512'$"):
        WIDTH.parse("512")


def test_text_stays_text_and_numbers_from_yaml_become_text():
    assert TEXT.parse(" blurry ") == " blurry " and TEXT.parse(42) == "42"
    for value in ([1], {"a": 1}, None, True):
        with pytest.raises(ValueError, match="^must be text"):
            TEXT.parse(value)


def test_a_param_of_unknown_kind_or_an_enum_without_choices_is_refused():
    with pytest.raises(ValueError):
        Param("x", "list")
    with pytest.raises(ValueError):
        Param("x", "enum")


# -- Param.check: the JSON the API received, strictly ---------------------------------


@pytest.mark.parametrize(("param", "value"), [
    (STEPS, "4"), (STEPS, 4.0), (STEPS, True), (STEPS, 9), (STRENGTH, "0.5"),
    (STRENGTH, True), (FLAG, "true"), (FLAG, 1), (TEXT, 5), (RATIO, "16:09"),
    (RATIO, " 1:1"), (RATIO, None), (WIDTH, "1024"), (WIDTH, 1024.0), (MAGIC, "auto")])
def test_the_api_takes_only_the_right_json_type_and_an_allowed_value(param, value):
    with pytest.raises(ValueError, match="^must be "):
        param.check(value)


@pytest.mark.parametrize(("param", "value"), [
    (STEPS, 4), (STRENGTH, 1), (STRENGTH, 0.5), (FLAG, False), (TEXT, ""), (RATIO, "9:21"),
    (WIDTH, 1024), (MAGIC, "OFF")])
def test_the_api_takes_typed_allowed_values(param, value):
    param.check(value)


def test_a_required_parameter_missing_is_named():
    strict = Model("m", "M", 1, "$1", (Param("style", "enum", choices=("a", "b"),
                                             required=True),), v1_path="/v1/m")
    assert strict.check_body({"prompt": "x"}) == "style is required: one of a, b"
    assert strict.check_body({"prompt": "x", "style": "a", "extra": [1]}) is None


# -- parse_value: --param NAME=VALUE and param.<name> for any model -------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("true", True), ("False", False), ("42", 42), ("-3", -3), ("0.5", 0.5), ("1e3", 1000.0),
    (' {"a": [1, 2]} ', {"a": [1, 2]}), ("[1, 2]", [1, 2]), ("16:9", "16:9"),
    ("[draft] poster", "[draft] poster"), ("{oops", "{oops"), ("null", "null"),
    ("nan", "nan"), ("", ""), ("a red fox", "a red fox"), (7, 7), (False, False),
    ({"k": 1}, {"k": 1})])
def test_parse_value_reads_numbers_booleans_and_json_and_leaves_the_rest_text(text, expected):
    parsed = parse_value(text)
    assert parsed == expected and type(parsed) is type(expected)


# -- price_of -------------------------------------------------------------------------


def test_a_request_costs_the_price_times_the_images_it_asks_for():
    ssd = MODELS["ssd-1b"]
    assert price_of(ssd) == price_of(ssd, {}) == 4_000
    assert price_of(ssd, {"samples": 3}) == 12_000 and samples_of(ssd, {"samples": 3}) == 3
    assert price_of(MODELS["flux-schnell"], {"samples": "2"}) == 16_000
    assert price_of(MODELS[MODEL], {"aspect_ratio": "16:9"}) == 19_000
    assert price_of(MODELS["segmind-vega-rt-v1"], {"samples": 3}) == 2_000
    assert samples_of(MODELS["segmind-vega-rt-v1"], {"samples": 3}) == 1
    assert samples_of(None, {"samples": 3}) == 1
    assert price_of(MODELS["ideogram-2a-txt-2-img"]) == 50_000


def test_a_model_without_a_documented_price_has_none():
    free_text = Model("x", "X", None, "not shown", (), v1_path="/v1/x")
    assert price_of(free_text, {"samples": 2}) is None
    flat = Model("y", "Y", 5_000, "$0.005",
                 (Param("samples", "int", 1, minimum=1),), v1_path="/v1/y",
                 samples_param="samples", price_per_sample=False)
    assert price_of(flat, {"samples": 4}) == 5_000 and samples_of(flat, {"samples": 4}) == 4
