"""The Segmind text-to-image models batchgen knows: each one's parameters (type, allowed
values or range, default) and price per image, as its Segmind model page documents them
(what a parameter and a model are, and how values are read, is `modelspec`).

    m = model("ssd-1b")
    m.param("num_inference_steps").parse("30")        # 30
    m.param("num_inference_steps").parse("3")         # ValueError: must be a whole number
                                                       #   from 20 to 100, not '3'
    price_of(m, {"samples": 3})                        # 12000 micro-dollars

Where every figure comes from: each model's page, `<host>/models/<slug>/api`, read on
2026-12-01 through the search tool's stored copies of those pages (not the live site).
The price is written here as the page writes it; a "~" is the page's own (those models
are billed by GPU time, and the page shows an estimate per generation).

| slug | price as written | page read (2026-12-01, stored copy) |
|---|---|---|
| luma-photon-txt-2-img | $0.019 per generation | www.segmind.com/models/<slug>/api |
| flux-schnell | ~$0.008 | segmind.com/models/<slug>/api |
| flux-dev | ~$0.02 | segmind.com/models/<slug>/api |
| sdxl1.0-txt2img | ~$0.008 | www.segmind.com/models/<slug>/api |
| ssd-1b | ~$0.004 | segmind.com/models/<slug>/api (and www.) |
| segmind-vega-rt-v1 | ~$0.002 | segmind.com/models/<slug>/api |
| ideogram-2a-txt-2-img | $0.05 per generation | www.segmind.com/models/<slug>/api |

What the stored copies did not show is not made up:

- A parameter the page lists but whose allowed values the copy cut short ("27 total",
  "78 total", an enum whose values did not render) is typed `str` and not checked.
  Parameters that appear only in the page's sample request are typed from the sample's
  value, without a range. Parameters a model page does not show at all are not in its
  entry: batchgen sends them only as `param.<name>` / `--param`, unchecked.
- `samples`: the SDXL and SSD-1B pages mark it "Affects Pricing" without saying how;
  Flux's copies don't show the mark. The registry assumes every image is billed (price ×
  samples) for all three - the safe side for a budget; the ledger records what the API
  reports (`x-credits-consumed`) when it differs.
- Left out: Recraft V3 (its stored page shows no price and its parameter list was cut
  off), Flux 1.1 Pro (no price in the stored copy), Segmind-Vega (parameter list cut
  off; its real-time sibling Segmind-VegaRT is fully documented and is here instead).
- Where two stored copies of a page disagree (Ideogram 2a's seed range: 100-999999 on
  the current page, 1-99999 on an older preview), the current page wins.

Whether the real API refuses parameters it does not know is not documented; the SDK
forwards `**params` as they are, and the simulator ignores unknown ones (see README).
"""

from __future__ import annotations

import re
from typing import Any

from .config import ASPECT_RATIOS, MODEL
from .modelspec import Model, Param, canonical_ratio, parse_value, price_of, samples_of

__all__ = ["DEFAULT_MODEL", "MODELS", "Model", "Param", "canonical_ratio", "canonical_slug",
           "model", "parse_value", "price_of", "samples_of", "v1_path"]

DEFAULT_MODEL = MODEL
_READ = "read 2026-12-01 through the search tool's stored copy"
_SLUG = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # no '/', '?', '#', '..' first


def canonical_slug(text: str) -> str | None:
    """A model cell or --model as batchgen sends it: a registry slug whatever its case
    ('Flux-Schnell'), else the text if it can be a slug (it goes into the URL's path),
    else None."""
    slug = text.strip()
    if slug.lower() in MODELS:
        return slug.lower()
    return slug if _SLUG.fullmatch(slug) else None


def model(slug: str) -> Model | None:
    """The registry's entry for a slug, or None for a model outside it."""
    return MODELS.get(slug)


def v1_path(slug: str) -> str:
    """Where a model's v1 endpoint is: its page's path for a registry model, else
    `/v1/<slug>`, the form Segmind's SDK uses."""
    entry = MODELS.get(slug)
    return entry.v1_path if entry else f"/v1/{slug}"


# -- the registry ---------------------------------------------------------------------

def _page(slug: str, host: str = "https://www.segmind.com") -> str:
    return f"{host}/models/{slug}/api ({_READ})"


def _int(name: str, lo: float | None = None, hi: float | None = None, default: Any = None,
         help: str = "") -> Param:
    return Param(name, "int", default, minimum=lo, maximum=hi, help=help)


def _float(name: str, lo: float | None = None, hi: float | None = None,
           default: Any = None, help: str = "") -> Param:
    return Param(name, "float", default, minimum=lo, maximum=hi, help=help)


def _enum(name: str, choices: tuple[Any, ...], default: Any = None, help: str = "") -> Param:
    return Param(name, "enum", default, choices=choices, help=help)


def _str(name: str, default: Any = None, help: str = "") -> Param:
    return Param(name, "str", default, help=help)


_CUT = "an enum on the page whose values the stored copy did not show: not checked"
_FROM_SAMPLE = "in the page's sample request; no range shown"
_ONLY_1024 = _enum("img_width", (1024,), 1024, "Can only be 1024 for SDXL")
_ONLY_1024_H = _enum("img_height", (1024,), 1024, "Can only be 1024 for SDXL")
_BASE64 = Param("base64", "bool", False, help="Base64 encoding of the output image")
_SEED_RANGE = dict(lo=-1, hi=999999999999999, default=-1)
_FLUX_RATIOS = ("1:1", "16:9", "21:9", "2:3", "3:2", "4:5", "5:4", "9:16", "9:21")

MODELS: dict[str, Model] = {m.slug: m for m in (
    Model(
        MODEL, "Luma Photon", 19_000, "$0.019 per generation",
        (_enum("aspect_ratio", ASPECT_RATIOS, "1:1", "Aspect ratio of the output image"),),
        v1_path=f"/v1/models/{MODEL}", source=_page(MODEL),
    ),
    Model(
        "flux-schnell", "Flux.1 Schnell", 8_000, "~$0.008",
        (_float("denoise", 0, 1, 1),
         _int("height", 512, 2048, 1024, "between 512 and 2048 in multiples of 8 "
              "(the multiple is not checked)"),
         _str("sampler_name", "euler", "27 allowed values, 10 shown in the stored copy: "
              "not checked"),
         _int("samples", 1, None, 1, "Number of samples to generate (no maximum shown)"),
         _enum("scheduler", ("normal", "karras", "exponential", "sgm_uniform", "simple",
                             "ddim_uniform"), "normal"),
         _int("seed", default=123456789),
         _int("steps", 1, 8, 4),
         _int("width", help="the stored copy cut its range off; sample value 1024")),
        v1_path="/v1/flux-schnell", samples_param="samples", price_per_sample=True,
        source=_page("flux-schnell", "https://segmind.com"),
    ),
    Model(
        "flux-dev", "Flux.1 Dev", 20_000, "~$0.02",
        (_enum("aspect_ratio", _FLUX_RATIOS),
         _float("guidance", 0, 10, 3, "the page says integer, its own sample sends 3.5"),
         _enum("output_format", ("webp", "jpg", "png"), "webp"),
         _int("output_quality", 0, 100, 80),
         _float("prompt_strength", 0, 1, 0.8),
         _int("samples", 1, help="Number of samples to generate (no range shown)"),
         _int("seed", help=_FROM_SAMPLE), _int("steps", help=_FROM_SAMPLE)),
        v1_path="/v1/flux-dev", samples_param="samples", price_per_sample=True,
        source=_page("flux-dev", "https://segmind.com"),
    ),
    Model(
        "sdxl1.0-txt2img", "Stable Diffusion XL 1.0", 8_000, "~$0.008",
        (_str("negative_prompt"), _str("style", "base", _CUT),
         _int("samples", 1, 4, 1, "Affects Pricing"), _str("scheduler", "UniPC", _CUT),
         _int("num_inference_steps", 20, 100), _float("guidance_scale", 1, 25, 7.5),
         _float("strength", help=_FROM_SAMPLE), _float("high_noise_fraction", 0, 1, 0.8),
         _int("seed", help=_FROM_SAMPLE), _int("img_width", help=_FROM_SAMPLE),
         _int("img_height", 512, 2048, help="between 512 and 2048"),
         Param("refiner", "bool", help=_FROM_SAMPLE), _BASE64),
        v1_path="/v1/sdxl1.0-txt2img", samples_param="samples", price_per_sample=True,
        source=_page("sdxl1.0-txt2img"),
    ),
    Model(
        "ssd-1b", "SSD-1B (distilled SDXL)", 4_000, "~$0.004",
        (_str("negative_prompt"), _int("samples", 1, 4, 1, "Affects Pricing"),
         _str("scheduler", help=_CUT + " (copies disagree on the default)"),
         _int("num_inference_steps", 20, 100, 25, "Affects Pricing"),
         _float("guidance_scale", 1, 25, 7.5), _int("seed", **_SEED_RANGE),
         _ONLY_1024, _ONLY_1024_H, _BASE64),
        v1_path="/v1/ssd-1b", samples_param="samples", price_per_sample=True,
        source=_page("ssd-1b", "https://segmind.com"),
    ),
    Model(
        "segmind-vega-rt-v1", "Segmind-VegaRT (distilled SDXL, LCM)", 2_000, "~$0.002",
        (_int("num_inference_steps", 4, 10, 4, "Affects Pricing"),
         _int("seed", **_SEED_RANGE), _ONLY_1024, _ONLY_1024_H, _BASE64),
        v1_path="/v1/segmind-vega-rt-v1", source=_page("segmind-vega-rt-v1",
                                                       "https://segmind.com"),
    ),
    Model(
        "ideogram-2a-txt-2-img", "Ideogram 2a", 50_000, "$0.05 per generation",
        (_enum("magic_prompt_option", ("AUTO", "ON", "OFF"), "AUTO"),
         _str("resolution", "RESOLUTION_1024_1024", "78 allowed values, 10 shown in the "
              "stored copy: not checked"),
         _int("seed", 100, 999999), _str("style_type", "GENERAL", _CUT)),
        v1_path="/v1/ideogram-2a-txt-2-img", source=_page("ideogram-2a-txt-2-img"),
    ),
)}
