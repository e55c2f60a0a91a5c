"""What a Segmind model is to batchgen: its parameters, each with a type, allowed
values or range and a default (`Param`), where it is served and how its price follows
from the parameters (`Model`), and how a spreadsheet's text becomes the typed values a
request sends. The models themselves, and where their figures come from, are in
`models`.

    Param("steps", "int", 25, minimum=20, maximum=100).parse("30")   # 30
    parse_value("{\"a\": 1}")                                         # {'a': 1}
"""

from __future__ import annotations

import contextlib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .config import ASPECT_RATIOS

__all__ = ["KINDS", "Model", "Param", "canonical_ratio", "parse_value", "price_of",
           "samples_of"]

KINDS = ("str", "int", "float", "bool", "enum")
# "16:9", "16 : 9", "16x9", "16/9" - and Excel's reading of 16:9 as the time 16:09:00
_RATIO_SPELLING = re.compile(r"^\s*(\d{1,2})\s*[:xX×/]\s*(\d{1,2})(?::00)?\s*$")
_INT_TEXT = re.compile(r"^[+-]?\d+$")
_FLOAT_TEXT = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$")
_TRUE, _FALSE = ("true", "yes", "1"), ("false", "no", "0")


def canonical_ratio(value: str, choices: tuple[str, ...] = ASPECT_RATIOS) -> str | None:
    """'16 : 9', '16x9' and Excel's '16:09:00' → '16:9' when that is one of `choices`;
    None otherwise."""
    if value in choices:
        return value
    match = _RATIO_SPELLING.match(value)
    if match:
        ratio = f"{int(match[1])}:{int(match[2])}"
        if ratio in choices:
            return ratio
    return None


def _number(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


@dataclass(frozen=True)
class Param:
    """One request parameter of a model (every model also takes `prompt`)."""

    name: str
    kind: str  # one of KINDS
    default: Any = None  # what the API uses when it is not sent (None: not documented)
    choices: tuple[Any, ...] = ()  # for "enum": strings or whole numbers
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS or (self.kind == "enum") != bool(self.choices):
            raise ValueError(f"{self.name}: kind {self.kind!r} with choices {self.choices!r}")

    def allowed(self) -> str:
        """What a value must be, in words: 'a whole number from 1 to 8'."""
        if self.kind == "enum":
            return "one of " + ", ".join(str(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "str":
            return "text"
        noun = "a whole number" if self.kind == "int" else "a number"
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            return f"{noun} from {_number(low)} to {_number(high)}"
        if low is not None:
            return f"{noun} of at least {_number(low)}"
        if high is not None:
            return f"{noun} of at most {_number(high)}"
        return noun

    def _refuse(self, value: Any) -> ValueError:
        shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
        return ValueError(f"must be {self.allowed()}, not {shown}")

    def _in_range(self, value: Any, original: Any) -> Any:
        if ((self.minimum is not None and value < self.minimum)
                or (self.maximum is not None and value > self.maximum)):
            raise self._refuse(original)
        return value

    def parse(self, value: Any) -> Any:
        """Text from a spreadsheet cell ('30', 'TRUE', '16:09:00') or a YAML/JSON value →
        the typed value the API wants; ValueError saying what is allowed."""
        text = value.strip() if isinstance(value, str) else None
        if self.kind == "str":
            if isinstance(value, str):
                return value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            raise self._refuse(value)
        if self.kind == "bool":
            if isinstance(value, bool):
                return value
            word = text.lower() if text is not None else (
                str(value) if isinstance(value, int) else None)
            if word in _TRUE or word in _FALSE:
                return word in _TRUE
            raise self._refuse(value)
        if self.kind == "enum":
            return self._parse_choice(value, text)
        number = self._parse_number(value, text)
        return self._in_range(number, value)

    def _parse_number(self, value: Any, text: str | None) -> int | float:
        if isinstance(value, bool) or not (isinstance(value, (int, float)) or text):
            raise self._refuse(value)
        if text is not None:
            if self.kind == "int" and _INT_TEXT.match(text):
                return int(text)
            if not _FLOAT_TEXT.match(text):
                raise self._refuse(value)
            number: int | float = float(text)
        else:
            number = value
        if not math.isfinite(number):
            raise self._refuse(value)
        if self.kind == "float":
            return float(number)
        if float(number).is_integer():  # 30.0 from a spreadsheet is 30
            return int(number)
        raise self._refuse(value)

    def _parse_choice(self, value: Any, text: str | None) -> Any:
        for choice in self.choices:
            if value == choice and type(value) is type(choice):
                return choice
        if text is not None:
            for choice in self.choices:
                if text == str(choice) or (isinstance(choice, str)
                                           and text.lower() == choice.lower()):
                    return choice
            ratio = canonical_ratio(text, tuple(c for c in self.choices if isinstance(c, str)))
            if ratio is not None:
                return ratio
        elif isinstance(value, float) and value.is_integer():
            return self._parse_choice(int(value), None)
        raise self._refuse(value)

    def check(self, value: Any) -> None:
        """Strictly, as a JSON value received by the API: the right JSON type and an
        allowed value (no spelling is corrected). ValueError saying what is allowed."""
        kind = self.kind
        if kind == "enum":
            if not any(value == c and type(value) is type(c) for c in self.choices):
                raise self._refuse(value)
            return
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {"str": isinstance(value, str), "bool": isinstance(value, bool),
              "int": isinstance(value, int) and not isinstance(value, bool),
              "float": number and math.isfinite(value)}[kind]
        if not ok:
            raise self._refuse(value)
        if kind in ("int", "float"):
            self._in_range(value, value)


@dataclass(frozen=True)
class Model:
    """A Segmind text-to-image model: where it is served, what it takes, what it costs."""

    slug: str
    title: str
    price_micro: int | None  # per image, as documented; None: not documented (needs --price)
    price_text: str  # the price as the page writes it
    params: tuple[Param, ...]  # everything but `prompt`, which every model has
    v1_path: str
    samples_param: str | None = None  # the parameter asking for several images per answer
    price_per_sample: bool = False  # whether those images multiply the price
    source: str = ""  # the page read, and when

    def param(self, name: str) -> Param | None:
        return next((p for p in self.params if p.name == name), None)

    @property
    def v2_path(self) -> str:
        return f"/v2/{self.slug}"

    def check_body(self, body: Mapping[str, Any]) -> str | None:
        """What the API would answer 400 about in a request body (prompt aside), or
        None. Parameters the model does not list are let through."""
        for param in self.params:
            if param.name in body:
                try:
                    param.check(body[param.name])
                except ValueError as exc:
                    return f"{param.name} {exc}"
            elif param.required:
                return f"{param.name} is required: {param.allowed()}"
        return None


def samples_of(model: Model | None, params: Mapping[str, Any] | None = None) -> int:
    """How many images one request with these parameters returns."""
    if model is None or model.samples_param is None:
        return 1
    param = model.param(model.samples_param)
    value = (params or {}).get(model.samples_param)
    if value is None:
        value = param.default if param is not None else None
    if value is None:
        return 1
    return max(1, param.parse(value) if param is not None else int(value))


def price_of(model: Model, params: Mapping[str, Any] | None = None,
             per_image: int | None = None) -> int | None:
    """Micro-dollars for one request with these parameters, at `per_image` (--price)
    or the documented price (None: neither is known)."""
    price = model.price_micro if per_image is None else per_image
    if price is None:
        return None
    return price * (samples_of(model, params) if model.price_per_sample else 1)


def parse_value(text: Any) -> Any:
    """A `--param NAME=VALUE` or `param.<name>` cell for a parameter batchgen has no
    type for: true/false, whole and decimal numbers, JSON objects and lists are parsed;
    everything else (including JSON that does not parse) stays text. Non-text values
    (from YAML or JSON job files) are kept as they are. ValueError for a number JSON
    cannot carry (1e400, NaN), which no request could send."""
    value = text
    if isinstance(text, str):
        stripped = text.strip()
        if stripped.lower() in ("true", "false"):
            return stripped.lower() == "true"
        if _INT_TEXT.match(stripped):
            return int(stripped)
        if _FLOAT_TEXT.match(stripped):
            value = float(stripped)
        elif stripped[:1] in ("{", "["):
            with contextlib.suppress(ValueError):
                parsed = json.loads(stripped)
                value = parsed if isinstance(parsed, (dict, list)) else text
    if value is not text or not isinstance(text, (str, bool, int)):
        try:
            json.dumps(value, allow_nan=False)
        except ValueError:
            raise ValueError(f"{text!r} holds a number JSON cannot carry (infinite or "
                             "NaN)") from None
        except TypeError:  # not JSON at all (cannot come from a job file)
            raise ValueError(f"{text!r} cannot be sent as JSON") from None
    return value
