"""Gallery thumbnails: about 320 px on the long side, WebP (JPEG where Pillow was
built without WebP), in `thumbs/` beside `images/`, named after their image
(images/fox.png → thumbs/fox.webp).

A run makes each one as its image is saved, on one worker thread, so the event loop
never waits (Pillow releases the GIL while it decodes, resizes and encodes); the
reports make any that is missing or older than its image (images adopted after a
crash, folders from before thumbnails, a thumbnail that failed). A thumbnail is a
convenience: one that cannot be made (a corrupt image, a full disk) is logged at
debug level and the gallery shows the full image instead. Nothing here ever fails a
job, a run or a report.

    thumbs = Thumbnails(out_dir)
    thumbs.ensure("images/fox.png")          # → "thumbs/fox.webp", or None: use the image

    with Thumbnailer(out_dir) as thumbnailer:  # a run: Pool(..., on_image=thumbnailer.submit)
        ...
        thumbnailer.drain()                    # before the reports
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path, PurePosixPath

from PIL import Image, ImageOps, features

log = logging.getLogger("batchgen")

THUMBS_DIR = "thumbs"
LONG_SIDE = 320  # pixels; a card is about 190-300 px wide
QUALITY = 80
# An image this small (the simulator's 96-px gradients) already weighs less than a
# thumbnail would: it is shown as it is, and no thumbnail is made or looked for.
SMALL_IMAGE = 4096  # bytes
FORMAT, EXTENSION = ("WEBP", "webp") if features.check("webp") else ("JPEG", "jpg")


def thumbnail_size(aspect_ratio: str) -> tuple[int, int] | None:
    """The pixel size of a thumbnail of an image in `aspect_ratio` ('16:9' → (320, 180)),
    or None for a ratio that is not two positive numbers."""
    try:
        width, height = (int(x) for x in aspect_ratio.split(":"))
    except ValueError:
        return None
    if width <= 0 or height <= 0:
        return None
    long = max(width, height)
    return max(1, round(LONG_SIDE * width / long)), max(1, round(LONG_SIDE * height / long))


class Thumbnails:
    """The `thumbs/` folder of one output folder. Paths are relative to the output
    folder, as the manifest records images."""

    def __init__(self, out_dir: Path):
        self.out_dir = out_dir
        self.path = out_dir / THUMBS_DIR

    def path_for(self, file: str) -> str:
        """'images/fox.png' → 'thumbs/fox.webp'."""
        return f"{THUMBS_DIR}/{PurePosixPath(file).stem}.{EXTENSION}"

    def prepare(self) -> None:
        """Remove temporary files a killed run left behind (under the folder's lock)."""
        with contextlib.suppress(OSError):
            for entry in os.scandir(self.path):
                if entry.name.endswith(".tmp"):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)

    def ensure(self, file: str) -> str | None:
        """The thumbnail of image `file`, made now if it is missing or older than the
        image; None when the gallery should show the image itself."""
        try:
            image = os.stat(self.out_dir / file)
        except (OSError, ValueError):
            return None
        if image.st_size <= SMALL_IMAGE:
            return None
        thumb = self.path_for(file)
        try:
            if os.stat(self.out_dir / thumb).st_mtime_ns >= image.st_mtime_ns:
                return thumb
        except OSError:
            pass
        return self.make(file)

    def make(self, file: str) -> str | None:
        """(Re)make the thumbnail of image `file`: its path, or None when it cannot be
        made (then no thumbnail is left: never one of an earlier image)."""
        thumb = self.path_for(file)
        target = self.out_dir / thumb
        temp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            if os.stat(self.out_dir / file).st_size <= SMALL_IMAGE:
                with contextlib.suppress(OSError):
                    os.unlink(target)  # the thumbnail of a bigger earlier image
                return None
            self.path.mkdir(exist_ok=True)
            with Image.open(self.out_dir / file) as image:
                image.draft("RGB", (LONG_SIDE, LONG_SIDE))  # JPEG: decode at 1/2, 1/4, 1/8
                image.thumbnail((LONG_SIDE, LONG_SIDE))
                small = ImageOps.exif_transpose(image)
            if small.mode not in ("RGB", "RGBA") or (small.mode == "RGBA" and FORMAT == "JPEG"):
                transparent = "A" in small.mode or "transparency" in small.info
                small = small.convert("RGBA" if transparent and FORMAT == "WEBP" else "RGB")
            small.save(temp, FORMAT, quality=QUALITY)
            os.replace(temp, target)
            return thumb
        except Exception as exc:  # Pillow raises many kinds for a bad image
            log.debug("no thumbnail for %s (%s: %s); the gallery shows the image itself",
                      file, type(exc).__name__, exc)
            for leftover in (temp, target):
                with contextlib.suppress(OSError):
                    os.unlink(leftover)
            return None


class Thumbnailer:
    """Makes thumbnails on one background thread as a run saves images. `submit` only
    queues (cheap, never raises); `drain` waits for the queue; leaving the `with`
    block after an error drops what is still queued (the reports make it later)."""

    def __init__(self, out_dir: Path):
        self.thumbs = Thumbnails(out_dir)
        self.thumbs.prepare()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="batchgen-thumbs")

    def submit(self, file: str) -> None:
        """Queue the thumbnail of the image just saved at `file` (relative path)."""
        try:
            if os.stat(self.thumbs.out_dir / file).st_size <= SMALL_IMAGE:
                return  # no thread woken for nothing (the simulator's small images)
            self._pool.submit(self.thumbs.make, file)
        except (OSError, RuntimeError):  # gone already; shut down
            pass

    def drain(self) -> None:
        """Wait until every queued thumbnail is made (or failed)."""
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Thumbnailer:
        return self

    def __exit__(self, exc_type, *rest) -> None:
        self._pool.shutdown(wait=exc_type is None, cancel_futures=exc_type is not None)


__all__ = ["THUMBS_DIR", "Thumbnailer", "Thumbnails", "thumbnail_size"]
