"""Image files: safe names from job ids, and atomic writes.

An image is written to a hidden temporary file, fsync'd and renamed into
place, so a file named like an image is always a whole image: a crash leaves
at worst a `.tmp` file, which the next run deletes.
"""

from __future__ import annotations

import hashlib
import os
import re
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

    def existing(self) -> set[str]:
        """Relative paths ('images/x.png') of every image on disk, in one directory scan."""
        if not self.path.is_dir():
            return set()
        return {f"{IMAGES_DIR}/{entry.name}" for entry in os.scandir(self.path)
                if not entry.name.startswith(".")}

    def write(self, stem: str, extension: str, data: bytes) -> str:
        """Write atomically and durably; return the path relative to the output folder."""
        name = f"{stem}.{extension}"
        final = self.path / name
        temp = self.path / f".{name}.{os.getpid()}.tmp"
        with open(temp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, final)
        return f"{IMAGES_DIR}/{name}"
