"""What the simulator makes of a generation request's body, for any model slug: whether
the API would take it (a registry model's parameters are checked as its page documents
them), how many images it asks for, what it costs, and the images themselves — each
stamped with the parameters received, so a test can prove exactly what was sent.

    problem = read_job(record, "ssd-1b", body, config)   # a 400 message, or None
    record.samples, record.price_micro                   # 3, 12000
    images = render(record, long_side=96)                # three stamped PNGs
"""

from __future__ import annotations

from typing import Any

from .config import MODEL
from .fakeimage import make_image, make_png, shape
from .models import Model, model, samples_of
from .money import MICRO
from .simconfig import RequestRecord, SimulatorConfig

#: Most images one request may ask for: the simulator's own limit (the pages show no
#: maximum for Flux's `samples`), so a typo cannot make it draw a million PNGs.
MAX_SAMPLES = 64
PLAIN_LUMA = frozenset({"prompt", "aspect_ratio"})  # a request Luma always had: no stamp


def read_job(record: RequestRecord, slug: str, body: Any,
             config: SimulatorConfig) -> str | None:
    """Fill the record from a request body for `slug`; the API's 400 message, or None.
    A registry model's parameters are checked strictly (the right JSON type, an allowed
    value); parameters it does not list are let through. Any other slug takes any JSON
    object with a non-empty prompt."""
    if not isinstance(body, dict):
        return "Request body must be a JSON object"
    entry = model(slug)
    record.model, record.params = slug, body
    prompt = body.get("prompt")
    record.prompt = prompt if isinstance(prompt, str) else None
    ratio_param = entry.param("aspect_ratio") if entry is not None else None
    ratio = body.get("aspect_ratio", ratio_param.default if ratio_param else None)
    record.aspect_ratio = ratio if ratio is None or isinstance(ratio, str) else repr(ratio)
    if not isinstance(prompt, str) or not prompt.strip():
        return "prompt is required"
    if entry is not None:
        problem = entry.check_body(body)
        if problem is not None:
            return problem
    record.samples = samples_of(entry, body)
    if record.samples > MAX_SAMPLES:
        return f"{entry.samples_param} must be at most {MAX_SAMPLES} (the simulator's limit)"
    marker = config.reject_marker
    if marker and marker in prompt:
        return config.reject_message
    record.price_micro = price_micro(config, slug, entry, body)
    return None


def price_micro(config: SimulatorConfig, slug: str, entry: Model | None,
                body: dict) -> int:
    """What a successful request costs: the price per image (`config.prices` for the
    slug, else the registry's, else `config.price`) times the images when the model
    bills each one."""
    override = config.prices.get(slug)
    if override is not None:
        per_image = round(override * MICRO)
    elif entry is not None and entry.price_micro is not None:
        per_image = entry.price_micro
    else:
        per_image = round(config.price * MICRO)
    if entry is not None and entry.price_per_sample:
        return per_image * samples_of(entry, body)
    return per_image


def render(record: RequestRecord, long_side: int) -> list[bytes]:
    """The images of a successful request. A plain Luma request (prompt and ratio only)
    gets today's unstamped PNG; every other one gets `record.samples` PNGs stamped with
    {"model": slug, "params": <the body>, "sample": 1, 2, …}."""
    body = record.params or {}
    prompt = record.prompt or ""
    if record.model == MODEL and body.keys() <= PLAIN_LUMA:
        return [make_png(prompt, record.aspect_ratio or "1:1", long_side)]
    width, height = shape(body, long_side)
    return [make_image(prompt, width, height,
                       {"model": record.model, "params": body, "sample": sample})
            for sample in range(1, record.samples + 1)]


def media(url: str, image: bytes) -> dict:
    """One generated file as Segmind's v2 results list it under `images`."""
    return {"url": url, "content_type": "image/png", "file_name": url.rsplit("/", 1)[-1],
            "file_size": str(len(image))}


def dollars(micro: int) -> str:
    """`x-credits-consumed`: '0.019', '0.012', '0.0025' (at least three decimals)."""
    text = f"{micro / MICRO:.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"{whole}.{frac.ljust(3, '0')}"
