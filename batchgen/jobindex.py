"""Validated jobs kept on disk, so that the passes after validation (planning, the
pool, the reports) read a million jobs back a chunk at a time instead of holding
them: a temporary file of pickled chunks that only this process writes and reads,
deleted when it is closed or the process ends."""

from __future__ import annotations

import pickle
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

CHUNK = 10_000  # jobs a chunk


class JobIndex:
    """Append tuples, `seal`, then iterate (as often as needed) in the same order;
    `make` turns a stored tuple back into a job."""

    def __init__(self, make: Callable[..., Any]):
        self._make = make
        self._file = tempfile.TemporaryFile(prefix="batchgen-jobs-")  # noqa: SIM115
        self._chunks: list[tuple[int, int]] = []  # (offset, size)
        self._buffer: list[tuple] = []
        self.skip: set[str] = set()  # sources (e.g. "row 7") to leave out after all

    def add(self, fields: tuple) -> None:
        self._buffer.append(fields)
        if len(self._buffer) >= CHUNK:
            self._flush()

    def seal(self) -> None:
        self._flush()

    def _flush(self) -> None:
        if self._buffer:
            data = pickle.dumps(self._buffer, protocol=pickle.HIGHEST_PROTOCOL)
            self._file.seek(0, 2)
            self._chunks.append((self._file.tell(), len(data)))
            self._file.write(data)
            self._buffer = []

    def chunks(self) -> Iterator[list[Any]]:
        """The jobs, a chunk (a list) at a time."""
        make, skip = self._make, self.skip
        for offset, size in self._chunks:
            self._file.seek(offset)
            stored = pickle.loads(self._file.read(size))
            yield [make(*fields) for fields in stored if not skip or fields[4] not in skip]

    def __iter__(self) -> Iterator[Any]:
        for chunk in self.chunks():
            yield from chunk

    def close(self) -> None:
        self._file.close()
