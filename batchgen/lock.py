"""One run per output folder, with a kernel lock that dies with its process: a run
killed with -9 never leaves a lock that blocks the next one. `flock` on Linux and
macOS, `msvcrt.locking` on Windows; the holder's pid is written in the lock file
so the second run can name it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .errors import LockedError, OutputError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".batchgen.lock"
_WINDOWS_LOCK_OFFSET = 64  # lock a byte past the pid, so others can still read it


def _try_lock(fd: int) -> bool:
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    import msvcrt

    os.lseek(fd, _WINDOWS_LOCK_OFFSET, os.SEEK_SET)
    try:
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


class FolderLock:
    """`with FolderLock(out_dir):` - raises LockedError naming the holder's pid, and
    OutputError when the folder cannot hold a lock file (read-only, disk full)."""

    def __init__(self, out_dir: Path):
        self.path = out_dir / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> FolderLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise OutputError(f"cannot write in {self.path.parent}: {exc.strerror}") from None
        if not _try_lock(fd):
            pid = _read_pid(fd)
            os.close(fd)
            raise LockedError(str(self.path.parent), pid)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
        except OSError as exc:
            os.close(fd)
            raise OutputError(f"cannot write in {self.path.parent}: {exc.strerror}") from None
        self._fd = fd
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None


def _read_pid(fd: int) -> int | None:
    os.lseek(fd, 0, os.SEEK_SET)
    text = os.read(fd, 32).decode(errors="replace").strip()
    return int(text) if text.isdigit() else None


def running_pid(out_dir: Path) -> int | None:
    """The pid of a run that holds the folder now, or None. Never sends a signal to
    anyone: on POSIX `kill(pid, 0)` only asks whether the process exists (and the
    lock file is emptied when a run ends); on Windows, where os.kill would terminate
    the process, the lock itself is tried and let go at once."""
    try:
        fd = os.open(out_dir / LOCK_NAME, os.O_RDWR)
    except OSError:
        return None
    try:
        pid = _read_pid(fd)
        if pid is None or pid == os.getpid():
            return None
        if fcntl is not None:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return None  # killed: the kernel lock died with it
            except PermissionError:
                pass
            return pid
        if _try_lock(fd):
            return None  # closing the descriptor lets the lock go
        return pid
    finally:
        os.close(fd)
