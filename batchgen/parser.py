"""argparse that explains itself: no abbreviations (`--simulat` is an error, not
`--simulate`), a suggestion for a misspelt option or command, help that keeps its
newlines, and value converters whose messages say what was wrong in plain words,
named by the option: "--concurrency: 'x' is not a whole number ≥ 1".

    parser = Parser(prog="batchgen")
    parser.add_argument("--concurrency", type=whole(1), metavar="N")

Standard library and batchgen's light modules only: `--help` must start fast.
"""

from __future__ import annotations

import argparse
import difflib
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from .config import ASPECT_RATIOS
from .money import usd_to_micro


class Parser(argparse.ArgumentParser):
    """argparse without abbreviations (`--simulat` is an error, not `--simulate`),
    with a suggestion for a misspelt option or command, and messages that name the
    option ("--concurrency: 'x' is not a whole number ≥ 1"), never a converter."""

    def __init__(self, **kwargs: Any):
        kwargs.setdefault("allow_abbrev", False)
        kwargs.setdefault("formatter_class", _Formatter)
        super().__init__(**kwargs)
        self.commands: dict[str, Parser] = {}

    def parse_args(self, args: Sequence[str] | None = None,  # type: ignore[override]
                   namespace: argparse.Namespace | None = None) -> argparse.Namespace:
        args = list(sys.argv[1:] if args is None else args)
        if self.commands:
            self._check_command(args)
        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            self.commands.get(getattr(namespace, "command", None) or "", self).unrecognized(extras)
        return namespace

    def _check_command(self, args: list[str]) -> None:
        """Before argparse asks for a missing command: a misspelt top-level option or
        command gets its suggestion."""
        for arg in args:
            if arg in ("-h", "--help", "--version"):
                return
            if arg.startswith("-"):
                self.unrecognized([arg])
            if arg not in self.commands:
                self.error(f"unknown command {arg!r}{_did_you_mean(arg, self.commands)}")
            return

    def unrecognized(self, extras: list[str]) -> NoReturn:
        option = next((arg for arg in extras if arg.startswith("-") and arg != "-"), None)
        if option is None:
            self.error(f"unexpected argument{'s' * (len(extras) > 1)}: {' '.join(extras)}")
        name = option.split("=", 1)[0]
        known = [string for action in self._actions for string in action.option_strings]
        self.error(f"unrecognized option {name}"
                   f"{_did_you_mean(name, known) or f' (see {self.prog} --help)'}")

    def error(self, message: str) -> NoReturn:
        # argparse says "argument --rate: ..."; the option's name is enough
        message = message.removeprefix("argument ")
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {message}\n")


def _did_you_mean(word: str, choices: Sequence[str] | dict[str, Any]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the newlines of descriptions and epilogs; a wider column for options."""

    def __init__(self, prog: str, **kwargs: Any):
        kwargs.setdefault("max_help_position", 30)
        super().__init__(prog, **kwargs)

    def add_argument(self, action: argparse.Action) -> None:
        super().add_argument(action)
        choices = action.choices if action.nargs == argparse.PARSER else None
        if isinstance(choices, dict):  # argparse forgets that commands are indented further
            longest = max(map(len, choices), default=0) + self._current_indent + 2 * 2
            self._action_max_length = max(self._action_max_length, longest)


# -- value converters: each message says what was wrong with the value ----------------


def _bad(text: str, what: str) -> NoReturn:
    raise argparse.ArgumentTypeError(f"{text!r} is not {what}")


def whole(minimum: int | None = 1, maximum: int | None = None) -> Callable[[str], int]:
    """A whole number within bounds, e.g. whole(1) for --concurrency."""
    if maximum is not None:
        what = f"a whole number from {minimum} to {maximum}"
    else:
        what = "a whole number" + ("" if minimum is None else f" ≥ {minimum}")

    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            _bad(text, what)
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            _bad(text, what)
        return value

    return convert


def number(minimum: float = 0.0, *, above: bool = False,
           maximum: float | None = None) -> Callable[[str], float]:
    """A finite number ≥ minimum (> minimum with `above`), at most `maximum`."""
    what = (f"a number {'>' if above else '≥'} {minimum:g}" if maximum is None
            else f"a number from {minimum:g} to {maximum:g}")

    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            _bad(text, what)
        if (not math.isfinite(value) or value < minimum or (above and value == minimum)
                or (maximum is not None and value > maximum)):
            _bad(text, what)
        return value

    return convert


def dollars(*, above_zero: bool = False) -> Callable[[str], int]:
    """An exact dollar amount, as integer micro-dollars ('0.38' → 380000)."""
    what = "a dollar amount" + (" > 0" if above_zero else "") + ", e.g. 0.019"

    def convert(text: str) -> int:
        try:
            micro = usd_to_micro(text.strip().removeprefix("$"))
        except ValueError:
            _bad(text, what)
        if above_zero and micro == 0:
            _bad(text, what)
        return micro

    return convert


def shard(text: str) -> tuple[int, int]:
    """'2/4' → (2, 4): shard I of N, 1 ≤ I ≤ N."""
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        _bad(text, "I/N, e.g. 2/4")
    if not 1 <= index <= count:
        _bad(text, "I/N with 1 ≤ I ≤ N, e.g. 2/4")
    return index, count


def aspect_ratio(text: str) -> str:
    if text in ASPECT_RATIOS:
        return text
    from .models import canonical_ratio  # only for a spelling such as 16x9

    ratio = canonical_ratio(text.strip())
    if ratio is None:
        _bad(text, f"one of {', '.join(ASPECT_RATIOS)}")
    return ratio


def assignment(text: str) -> tuple[str, str]:
    """'seed=42' → ('seed', '42'): a --param NAME=VALUE."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        _bad(text, "NAME=VALUE, e.g. seed=42")
    _unicode(text)
    return name.strip(), value


def model_slug(text: str) -> str:
    """A --model: a registry slug in any case, or what can be a slug in a URL."""
    from .models import canonical_slug

    _unicode(text)
    slug = canonical_slug(text)
    if slug is None:
        _bad(text, "a model slug: letters, digits, '.', '-' and '_', e.g. flux-schnell")
    return slug


def _unicode(text: str) -> None:
    """Bytes on the command line that are not UTF-8 arrive as lone surrogates; they
    could be neither sent nor recorded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        _bad(text, "valid UTF-8 text")


def words(valid: Callable[[str], bool], allowed: str, *,
          one: bool = False) -> Callable[[str], Any]:
    """A comma-separated list of words the simulator knows ('503,503,CANCELLED'), or
    with `one` a single word."""

    def convert(text: str) -> Any:
        items = [word.strip() for word in text.split(",") if word.strip()]
        for word in items:
            if not valid(word):
                raise argparse.ArgumentTypeError(f"{word!r} is not {allowed}")
        if one:
            if len(items) != 1:
                _bad(text, f"one word: {allowed}")
            return items[0]
        return items

    return convert
