"""What is sent for a job besides its prompt: the model, its parameters typed and
checked, their fingerprint, and the price of one request.

For a model in the registry (`models.py`), a column named like one of its
parameters is sent, parsed to its type and checked against its allowed values
before anything is sent; a column named `param.<name>` (and `--param NAME=VALUE`)
is sent for any model as it is given (numbers, booleans, JSON lists and objects
parsed). Every other column is metadata and is never sent. `aspect_ratio` is the
parameter of the models that take one (Luma Photon, Flux Dev, ...): an empty cell
takes the run's default ratio, as it always did.

    sending = Sending("ssd-1b", Defaults())
    sending.read({"prompt": "a fox", "seed": "42"}, ...)   # {"seed": 42} and its price
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import models
from .config import DEFAULT_ASPECT_RATIO, MODEL
from .models import Model, canonical_ratio, parse_value, price_of
from .readers import Problems, normalize_column

PARAM_PREFIX = "param."
RATIO = "aspect_ratio"
# What UTF-8 cannot encode: a lone half of a surrogate pair, as JSON's "\ud800" makes.
_SURROGATE = re.compile("[\ud800-\udfff]")


def fingerprint(model: str, prompt: str, aspect_ratio: str,
                extra: Mapping[str, Any] | None = None) -> str:
    """16 hex characters of sha256 over what is sent for a job: the model, the prompt,
    the aspect ratio and every other parameter. A job with no other parameter keeps
    the fingerprint (and the id) it had before models had parameters."""
    text = f"{model}\n{aspect_ratio}\n{prompt}"
    if extra:
        text += "\n" + json.dumps(extra, sort_keys=True, ensure_ascii=False,
                                  separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Defaults:
    """What applies to every row unless the row says otherwise."""

    model: str = MODEL
    aspect_ratio: str = DEFAULT_ASPECT_RATIO  # for models that take one
    params: dict[str, str] = field(default_factory=dict)  # --param NAME=VALUE, as text
    variants: int = 1  # --variants: jobs per row
    price_micro: int | None = None  # --price: instead of the registry's


class Sending:
    """The rules for one model: which columns it reads, and the defaults parsed once.
    Problems with the defaults themselves (`--param`) go to `problems` once."""

    def __init__(self, slug: str, defaults: Defaults, problems: Problems):
        self.slug = slug
        self.model: Model | None = models.model(slug)
        self.per_image = defaults.price_micro  # --price, else the registry's
        self.ratio = self.model.param(RATIO) if self.model else None
        self._ratio_choices = tuple(c for c in self.ratio.choices if isinstance(c, str)) \
            if self.ratio else ()
        self._ratios: dict[str, str | None] = {}  # a ratio cell as written → canonical
        self.params: dict[str, Any] = {}  # from --param
        for given, text in defaults.params.items():
            name, param, refused = self._name(given, "--aspect-ratio")
            place = f"--param {given}"
            if refused:
                problems.add(None, place, refused)
                continue
            try:
                self.params[name] = _parse(param, text)
            except ValueError as exc:
                problems.add(None, place, f"{exc} (for {slug})")
        self._columns: dict[tuple[str, ...], list[tuple[str, str, Any]]] = {}
        self._unsent: dict[tuple[str, ...], frozenset[str]] = {}
        self._plain: dict[str | None, dict[str, Any]] = {}  # ratio → what a plain row sends
        # the price of every request when no parameter can change it
        self._flat = self.per_image if self.model is None else (
            None if self.model.samples_param else price_of(self.model, {}, self.per_image))

    def not_metadata(self, names: tuple[str, ...], reserved: set[str]) -> frozenset[str]:
        """The columns of a row with these names that are not its metadata: batchgen's
        own (`reserved`) and this model's parameters."""
        found = self._unsent.get(names)
        if found is None:
            found = frozenset(reserved.union(c for c, _, _ in self.columns(names)))
            if len(self._unsent) < 1000:
                self._unsent[names] = found
        return found

    def _name(self, given: str, ratio_hint: str) -> tuple[str, Any, str | None]:
        """A parameter name as written in `param.<name>` or `--param` → (the name sent,
        its registry Param or None, why it cannot be sent or None). A registry
        parameter is matched ignoring case and checked like its own column."""
        param = self.model.param(normalize_column(given)) if self.model else None
        name = param.name if param else given
        if normalize_column(given) == "prompt":
            return name, None, "the prompt is the prompt column's; a parameter cannot replace it"
        if param is not None and param is self.ratio:
            return name, None, f"{self.slug}'s aspect ratio is checked: use {ratio_hint}"
        return name, param, None

    def columns(self, names: tuple[str, ...]) -> list[tuple[str, str, Any]]:
        """(column, parameter name, Param, or None to send as given, or a str saying why
        it cannot be sent) for the columns of a row that are parameters: the model's
        own (but the ratio, read apart) and param.<name>."""
        found = self._columns.get(names)
        if found is None:
            found = []
            for column in names:
                key = normalize_column(column)
                if key.startswith(PARAM_PREFIX) and len(key) > len(PARAM_PREFIX):
                    name, param, refused = self._name(
                        str(column).strip()[len(PARAM_PREFIX):], "the aspect_ratio column")
                    found.append((column, name, refused or param))
                elif self.model is not None and key != RATIO and self.model.param(key):
                    found.append((column, key, self.model.param(key)))
            if len(self._columns) < 1000:
                self._columns[names] = found
        return found

    def read(self, row: Mapping[str, Any], names: tuple[str, ...], ratio: str | None,
             location: str, problems: Problems) -> dict[str, Any]:
        """The parameters a row sends (besides its prompt), typed; a problem for each
        value that is not allowed. `ratio` is the row's canonical aspect ratio, or None
        when the row has none and the model takes none. Rows that set nothing but
        their ratio share one dict per ratio (never changed): a million plain rows then
        cost no dict each, and their index chunks pickle it once."""
        columns = self.columns(names)
        if not columns:
            plain = self._plain.get(ratio)
            if plain is None:
                plain = self._plain[ratio] = self._with_ratio(ratio)
            return plain
        params = self._with_ratio(ratio)
        given: dict[str, str] = {}  # parameter → the column that set it
        for column, name, param in columns:
            value = row.get(column)
            if value is None or (isinstance(value, str) and not value.strip()):
                continue  # empty: the API's default
            if isinstance(param, str):
                problems.add(location, column, param)
                continue
            if name in given:
                problems.add(location, column, f"sets {name} again (so does {given[name]!r}): "
                             "keep one of the two columns")
                continue
            given[name] = column
            try:
                params[name] = _parse(param, value)
            except ValueError as exc:
                problems.add(location, column, str(exc))
        return params

    def _with_ratio(self, ratio: str | None) -> dict[str, Any]:
        params = dict(self.params)
        if ratio is not None:
            params[RATIO] = ratio
        return params

    def ratio_of(self, text: str) -> str | None:
        """A ratio cell's canonical form for this model, or None when not allowed
        (remembered: a million rows spell their ratio a handful of ways)."""
        try:
            return self._ratios[text]
        except KeyError:
            pass
        choices = self._ratio_choices
        ratio = canonical_ratio(text, choices) if choices else canonical_ratio(text)
        if len(self._ratios) < 1000:
            self._ratios[text] = ratio
        return ratio

    def cost(self, params: Mapping[str, Any]) -> int | None:
        """Micro-dollars for one request of a job with these parameters: --price or the
        registry's price per image, times the images asked for where each is billed."""
        if self._flat is not None or self.model is None:
            return self._flat
        return price_of(self.model, params, self.per_image)


def _parse(param: Any, value: Any) -> Any:
    """A parameter's value as sent: typed by its registry Param, else `parse_value`.
    ValueError also for JSON text whose escapes decode to a lone surrogate ('\\ud800'),
    which could be neither sent nor recorded; a surrogate already in the value is the
    job file's (`cells.encodable` names it), not the parse's."""
    if param is not None:
        return param.parse(value)
    parsed = parse_value(value)
    if parsed is not value and isinstance(value, str) and "\\u" in value \
            and lone_surrogate(value) is None and (char := lone_surrogate(parsed)):
        raise ValueError(unencodable(char))
    return parsed


def lone_surrogate(value: Any) -> str | None:
    """The first character UTF-8 cannot encode in `value` (text, or text nested in lists
    and mappings, their keys included), or None. Such a character is half of a
    surrogate pair, as JSON's "\\ud800" escape makes."""
    pending = [value]
    while pending:  # a loop, not recursion: JSON may nest as deep as its parser allows
        item = pending.pop()
        if isinstance(item, str):
            if not item.isascii() and (match := _SURROGATE.search(item)):
                return match[0]
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return None


def unencodable(char: str, what: str = "") -> str:
    return f"{what}contains text that is not valid Unicode (a lone surrogate \\u{ord(char):04x})"
