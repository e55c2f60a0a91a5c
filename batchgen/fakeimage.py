"""Image bodies the simulator serves: a small real PNG of any allowed ratio, and a
gzip bomb dressed as one."""

from __future__ import annotations

import functools
import hashlib
import struct
import zlib

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BOMB_SIZE = 60 * 2**20  # bytes a gzip bomb inflates to


def make_png(prompt: str, aspect_ratio: str, long_side: int = 96) -> bytes:
    """A small real PNG of exactly the ratio's shape (long side at most `long_side`,
    at least the ratio itself), with a gradient coloured by the prompt."""
    w_ratio, h_ratio = (int(x) for x in aspect_ratio.split(":"))
    scale = max(1, long_side // max(w_ratio, h_ratio))
    width, height = w_ratio * scale, h_ratio * scale
    r, g, b = hashlib.sha256(prompt.encode()).digest()[:3]
    row = bytearray(b"\x00")
    for x in range(width):
        shade = x * 160 // max(1, width - 1)
        row += bytes(((r + shade) % 256, (g + shade // 2) % 256, b))
    raw = bytes(row) * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


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
