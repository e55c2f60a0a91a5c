"""Image files: safe names from job ids, and atomic writes.

An image is written to a hidden temporary file and renamed into place, so a
file named like an image is always a whole image: a killed process leaves at
worst a `.tmp` file, which the next run deletes. Images are not fsync'd one
by one (at full speed that cost more than everything else per image): after a
power cut an image written just before it can be an empty file, which
`existing()` does not count (it checks the images of a run that never
finished), so the next run generates it again.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path

IMAGES_DIR = "images"
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_RESERVED = {"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
             *(f"lpt{i}" for i in range(10))}
MAX_STEM = 80


def safe_stem(job_id: str) -> str:
    """A file name stem for a job id: no separators, no '..', no reserved or hidden
    names, bounded length. Ids that had to change get a hash of the original, so
    two ids never share a file."""
    stem = _UNSAFE.sub("_", job_id).strip("._")[:MAX_STEM] or "job"
    if stem.split(".")[0].lower() in _RESERVED:
        stem = "_" + stem
    if stem != job_id:
        stem = f"{stem}-{hashlib.sha256(job_id.encode()).hexdigest()[:8]}"
    return stem


class ImageStore:
    """The `images/` folder of one output folder."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.path = out_dir / IMAGES_DIR

    def prepare(self) -> None:
        """Create the folder and remove temporary files left by a crashed run."""
        self.path.mkdir(parents=True, exist_ok=True)
        for entry in os.scandir(self.path):
            if entry.name.endswith(".tmp"):
                os.unlink(entry.path)

    def existing(self, suspect: Iterable[str] = ()) -> set[str]:
        """Relative paths ('images/x.png') of the images on disk, in one directory scan.
        `suspect` files (written just before a crash) count only if they are not empty."""
        if not self.path.is_dir():
            return set()
        suspect = set(suspect)
        found = set()
        for entry in os.scandir(self.path):
            file = f"{IMAGES_DIR}/{entry.name}"
            if entry.name.startswith(".") or (file in suspect and not entry.stat().st_size):
                continue
            found.add(file)
        return found

    def write(self, stem: str, extension: str, data: bytes) -> str:
        """Write atomically; return the path relative to the output folder."""
        name = f"{stem}.{extension}"
        temp = self.path / f".{name}.{os.getpid()}.tmp"
        with open(temp, "wb") as fh:
            fh.write(data)
        os.replace(temp, self.path / name)
        return f"{IMAGES_DIR}/{name}"
