"""One run per output folder, with a kernel lock (flock) that dies with its process:
a run killed with -9 never leaves a lock that blocks the next one."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .errors import LockedError

LOCK_NAME = ".batchgen.lock"


class FolderLock:
    """`with FolderLock(out_dir):` - raises LockedError naming the holder's pid."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            pid = int(holder) if holder.isdigit() else None
            raise LockedError(str(self.path.parent), pid) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None
