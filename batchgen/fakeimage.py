"""Image bodies the simulator serves: a small real PNG of any ratio or size, stamped (if
asked) with the parameters of the request that made it; and a gzip bomb dressed as one.

    png = make_png("a fox", "16:9")                    # Luma's plain answer, as always
    png = make_image("a fox", 96, 54, stamp={"model": "flux-dev", "params": {...}})
    read_stamp(png)                                    # {"model": "flux-dev", ...}
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import struct
import zlib
from collections.abc import Mapping
from typing import Any

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOMB_SIZE = 60 * 2**20  # bytes a gzip bomb inflates to
STAMP_KEYWORD = b"batchgen-sim"  # the tEXt chunk holding what the request asked for
# The pairs of parameters models use for an image's width and height, and spellings of
# a size in one parameter: "16:9", "1024x1365", Ideogram's "RESOLUTION_1024_576".
_SIZE_PARAMS = (("img_width", "img_height"), ("width", "height"))
_SIZE_TEXT = re.compile(r"^(?:RESOLUTION_)?(\d{1,5})\s*[xX_]\s*(\d{1,5})$")
_RATIO_TEXT = re.compile(r"^([1-9]\d?):([1-9]\d?)$")  # an aspect ratio such as 21:9


def make_png(prompt: str, aspect_ratio: str, long_side: int = 96) -> bytes:
    """A small real PNG of exactly the ratio's shape (long side at most `long_side`,
    at least the ratio itself), with a gradient coloured by the prompt."""
    w_ratio, h_ratio = (int(x) for x in aspect_ratio.split(":"))
    return make_image(prompt, *_scale_up(w_ratio, h_ratio, long_side))


def _scale_up(w_ratio: int, h_ratio: int, long_side: int) -> tuple[int, int]:
    """A ratio scaled by the largest whole factor within `long_side` (at least 1)."""
    scale = max(1, long_side // max(w_ratio, h_ratio))
    return w_ratio * scale, h_ratio * scale


def fit(width: int, height: int, long_side: int = 96) -> tuple[int, int]:
    """A pixel size (1024x768) scaled down to `long_side`, its ratio kept."""
    longest = max(width, height)
    if longest <= long_side:
        return _scale_up(width, height, long_side)
    return max(1, width * long_side // longest), max(1, height * long_side // longest)


def shape(params: Mapping[str, Any], long_side: int = 96) -> tuple[int, int]:
    """The shape of the image a request asks for: its `aspect_ratio`, else a width and
    height pair (img_width/img_height, width/height), else a `size` or `resolution`
    text; square when it says none (or nothing usable)."""
    ratio = params.get("aspect_ratio")
    if isinstance(ratio, str) and (match := _RATIO_TEXT.match(ratio)):
        return _scale_up(int(match[1]), int(match[2]), long_side)
    candidates: list[Any] = [(params.get(w), params.get(h)) for w, h in _SIZE_PARAMS]
    candidates += [params.get("size"), params.get("resolution")]
    for value in candidates:
        if isinstance(value, str) and (match := _SIZE_TEXT.match(value.strip())):
            value = (int(match[1]), int(match[2]))
        if (isinstance(value, tuple) and all(type(v) is int and 0 < v <= 16384
                                             for v in value)):
            return fit(value[0], value[1], long_side)
    return _scale_up(1, 1, long_side)


def make_image(prompt: str, width: int, height: int,
               stamp: Mapping[str, Any] | None = None) -> bytes:
    """A real `width`×`height` PNG with a gradient coloured by the prompt; with `stamp`,
    a tEXt chunk holding it as canonical JSON (sorted keys, ASCII), which `read_stamp`
    gives back."""
    r, g, b = hashlib.sha256(prompt.encode()).digest()[:3]
    row = bytearray(b"\x00")
    for x in range(width):
        shade = x * 160 // max(1, width - 1)
        row += bytes(((r + shade) % 256, (g + shade // 2) % 256, b))
    raw = bytes(row) * height

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    text = b""
    if stamp is not None:
        text = _chunk(b"tEXt", STAMP_KEYWORD + b"\x00" + canonical_json(stamp).encode())
    return (
        PNG_SIGNATURE
        + _chunk(b"IHDR", header)
        + text
        + _chunk(b"IDAT", zlib.compress(raw, 6))
        + _chunk(b"IEND", b"")
    )


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def _chunk(kind: bytes, data: bytes) -> bytes:
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))


def read_stamp(png: bytes) -> dict | None:
    """The stamp `make_image` wrote into a PNG, or None (not a PNG, or not stamped)."""
    if not png.startswith(PNG_SIGNATURE):
        return None
    at = len(PNG_SIGNATURE)
    while at + 8 <= len(png):
        length, kind = struct.unpack(">I4s", png[at:at + 8])
        data = png[at + 8:at + 8 + length]
        if kind == b"tEXt" and data.startswith(STAMP_KEYWORD + b"\x00"):
            return json.loads(data[len(STAMP_KEYWORD) + 1:])
        if kind == b"IEND":
            return None
        at += 12 + length
    return None


@functools.cache
def gzip_bomb() -> bytes:
    """A gzip stream of about 60 KB that inflates to `BOMB_SIZE` bytes: a PNG signature
    and zeros. Built once (a fraction of a second), never held inflated in memory."""
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # gzip framing
    parts = [packer.compress(PNG_SIGNATURE)]
    megabyte = bytes(2**20)
    left = BOMB_SIZE - len(PNG_SIGNATURE)
    while left:
        piece = megabyte[:min(left, len(megabyte))]
        parts.append(packer.compress(piece))
        left -= len(piece)
    parts.append(packer.flush())
    return b"".join(parts)
