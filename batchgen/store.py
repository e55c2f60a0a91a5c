"""Image files: safe, unique names from job ids, and atomic writes.

An image is written to a hidden temporary file and renamed into place, so a
file named like an image is always a whole image as far as a killed process is
concerned; the next run deletes leftover `.tmp` files. Images are not fsync'd
one by one (at full speed that cost more than everything else per image): after a
power cut an image can be an empty or short file, which `state.job_state` does not
count as done, because its size differs from the `bytes` of its line (SPEC §8 S1).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

IMAGES_DIR = "images"
EXTENSIONS = ("png", "jpg", "webp", "gif")
MAX_STEM = 80
# An id used as it is: lower case, no '..', starting with a letter or digit.
_PLAIN = re.compile(r"(?!.*\.\.)[a-z0-9][a-z0-9_.-]{0,79}")
# What a hashed stem ends with; a plain id never does, so the two kinds never meet.
_HASHED = re.compile(r".*-[0-9a-f]{12}")
_UNSAFE = re.compile(r"[^a-z0-9._-]+")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}

_SIGNATURES = (
    (b"\xff\xd8\xff", "jpg"),
    (b"\x89PNG\r\n\x1a\n", "png"),
    (b"GIF87a", "gif"),
    (b"GIF89a", "gif"),
)


def image_extension(data: bytes) -> str | None:
    """The file extension for image bytes, judged by their magic bytes, or None."""
    for magic, ext in _SIGNATURES:
        if data.startswith(magic):
            return ext
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


@functools.lru_cache(maxsize=1 << 14)  # a job's name is asked for several times in a row
def safe_stem(job_id: str) -> str:
    """The file name stem of a job id (SPEC §6, §8 S3). Every stem is lower case, so
    distinct ids get distinct names also on case-insensitive file systems: an id that
    is already a plain lower-case name is used as it is; any other is sanitised and
    gets 12 hex digits of the id's hash, a suffix no plain id can end with."""
    if (_PLAIN.fullmatch(job_id) and not _HASHED.fullmatch(job_id)
            and job_id.split(".")[0] not in _RESERVED and not job_id.endswith(".")):
        return job_id
    base = _UNSAFE.sub("_", job_id.lower()).strip("._-")[:MAX_STEM] or "job"
    if base.split(".")[0] in _RESERVED:
        base = "_" + base
    digest = hashlib.sha256(job_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{base}-{digest}"


class ImageStore:
    """The `images/` folder of one output folder. Paths are relative to the output
    folder ('images/x.png'), as the manifest records them."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.path = out_dir / IMAGES_DIR
        self._root = str(out_dir)  # joined as text: a million stats need no Path objects

    def prepare(self) -> None:
        """Create the folder and remove temporary files left by a crashed run."""
        self.path.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(self.path):
            if entry.name.endswith(".tmp"):
                os.unlink(entry.path)

    def size(self, file: str) -> int | None:
        """The size of a recorded image, or None when it is not there."""
        try:
            return os.stat(f"{self._root}/{file}").st_size
        except (OSError, ValueError):
            return None

    def mtime(self, file: str) -> float | None:
        try:
            return os.stat(f"{self._root}/{file}").st_mtime
        except (OSError, ValueError):
            return None

    def find(self, job_id: str, n: int = 1) -> str | None:
        """The `n`th image of a job's answer (see `write_all`), whatever its type, if
        there is one."""
        stem = self._stem(job_id if n == 1 else (job_id, n))
        for ext in EXTENSIONS:
            file = f"{IMAGES_DIR}/{stem}.{ext}"
            if self.size(file) is not None:
                return file
        return None

    def blocked(self, job_id: str) -> str | None:
        """Why a job's image could not be saved, checked before paying for it: its name
        is taken by something that is not a file (a folder, say). None when clear."""
        stem = safe_stem(job_id)
        for ext in EXTENSIONS:
            path = f"{self._root}/{IMAGES_DIR}/{stem}.{ext}"
            if os.path.exists(path) and not os.path.isfile(path):
                return (f"{IMAGES_DIR}/{stem}.{ext} is in the way (not a file): remove it and "
                        "rerun; nothing was paid for this job")
        return None

    def read(self, file: str) -> bytes:
        with open(f"{self._root}/{file}", "rb") as fh:
            return fh.read()

    def write_all(self, job_id: str, images: Iterable[tuple[bytes, str]]) -> list[str]:
        """Write each image of one answer: `<stem>.<ext>`, then `<stem>~2.<ext>`, ... (a
        '~' no job's own name can hold, so the second image of `hero` never takes the
        file of a job called `hero-2`). Returns the paths."""
        return [self.write(job_id if n == 1 else (job_id, n), ext, data)
                for n, (data, ext) in enumerate(images, start=1)]

    @staticmethod
    def _stem(job_id: str | tuple[str, int]) -> str:
        return safe_stem(job_id) if isinstance(job_id, str) else \
            f"{safe_stem(job_id[0])}~{job_id[1]}"

    def write(self, job_id: str | tuple[str, int], extension: str, data: bytes) -> str:
        """Write atomically, replacing an image of another type; return the path."""
        stem = self._stem(job_id)
        name = f"{stem}.{extension}"
        folder = f"{self._root}/{IMAGES_DIR}"  # as text: Path objects cost more than the write
        temp = f"{folder}/.{name}.{os.getpid()}.tmp"
        with open(temp, "wb") as fh:
            fh.write(data)
        os.replace(temp, f"{folder}/{name}")
        for other in EXTENSIONS:  # an edited job's earlier image of another type
            if other != extension:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{folder}/{stem}.{other}")
        return f"{IMAGES_DIR}/{name}"


def is_complete_image(data: bytes) -> bool:
    """Magic bytes at the start and the format's end marker at the end: a file cut
    short by a crash or a power cut is no image."""
    ext = image_extension(data)
    if ext == "png":
        return data.endswith(b"IEND\xaeB`\x82")
    if ext == "jpg":
        return data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if ext == "webp":
        return int.from_bytes(data[4:8], "little") + 8 <= len(data)
    return ext == "gif" and data.endswith(b";")
