"""A checkpoint of a manifest's replay, so a run over a million done jobs reads a
few columns instead of a million lines (issue 14).

The manifest stays the single source of truth: a checkpoint records how many bytes
of it it covers and their sha256, and `load` ignores it unless the manifest still
begins with exactly those bytes. A missing, truncated, foreign or corrupt checkpoint
just means a full replay; a stale one (the manifest grew since) means folding in the
lines after it. Checkpoints are written by the run that holds the folder's lock, as
its last act, atomically. They hold no pickles: numpy arrays and JSON only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .events import RunFinished, RunStarted
from .manifest import Replay
from .records import COLUMNS, Records

log = logging.getLogger("batchgen")

CHECKPOINT_NAME = ".manifest.checkpoint.npz"
VERSION = 2
_BLOCK = 1 << 20


def save(history: Replay, path: Path) -> None:
    """Write `history` as the checkpoint at `path`: atomically, and synced before it
    replaces the old one, so a power cut cannot leave an empty checkpoint."""
    runs = [{"started": run["started"].to_line(),
             "finished": run["finished"].to_line() if run["finished"] else None,
             "spent_micro": run["spent_micro"]} for run in history.runs]
    meta = {
        "version": VERSION, "offset": history.offset, "lines": history.lines,
        "sha256": history.digest.hexdigest(), "spent_micro": history.spent_micro,
        "bad_lines": history.settled_bad_lines, "unterminated": history.unterminated,
        "runs": runs, "reasons": history.jobs.reasons,
        "side": [[str(key), facts] for key, facts in history.jobs.side.items()],
    }
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temp, "wb") as fh:
            np.savez(fh, keys=history.jobs.keys, meta=np.array(json.dumps(meta)),
                     **{f"c_{name}": history.jobs.columns[name] for name in COLUMNS})
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except OSError as exc:
        log.debug("could not write the checkpoint %s: %s", path, exc)
        temp.unlink(missing_ok=True)


def load(path: Path, manifest: Path) -> Replay | None:
    """The replay a checkpoint holds, if it is one of this manifest; else None. Any
    damage to it (empty, cut short, a flipped bit, odd values) means a full replay."""
    try:
        return _load(path, manifest)
    except Exception as exc:  # zipfile, numpy and json raise many kinds: none may stop a run
        log.debug("ignoring the checkpoint %s: %r", path, exc)
        return None


def _load(path: Path, manifest: Path) -> Replay | None:
    if not path.exists():
        return None
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        if not _valid_meta(meta):
            return None
        keys = data["keys"]
        columns = {name: data[f"c_{name}"] for name in COLUMNS}
    if not _valid_arrays(keys, columns):
        return None
    digest = _prefix_digest(manifest, meta["offset"])
    if digest is None or digest.hexdigest() != meta["sha256"]:
        return None
    side = {int(key): facts for key, facts in meta["side"]}
    return Replay(
        jobs=Records(keys, columns, meta["reasons"], side), runs=[_run(r) for r in meta["runs"]],
        spent_micro=meta["spent_micro"], bad_lines=meta["bad_lines"], offset=meta["offset"],
        lines=meta["lines"], digest=digest, unterminated=meta.get("unterminated", False),
    )


def _valid_meta(meta: Any) -> bool:
    """The meta's fields have the types `save` writes (a hand-made one may not)."""
    if not isinstance(meta, dict) or meta.get("version") != VERSION:
        return False
    counts = [meta.get(name) for name in ("offset", "lines", "spent_micro")]
    lists = [meta.get(name) for name in ("bad_lines", "runs", "reasons", "side")]
    return (all(_count(value) for value in counts)
            and all(isinstance(value, list) for value in lists)
            and all(_count(line) for line in meta["bad_lines"])
            and all(isinstance(reason, str) for reason in meta["reasons"])
            and all(isinstance(run, dict) for run in meta["runs"])
            and all(isinstance(item, list) and len(item) == 2 and isinstance(item[1], dict)
                    for item in meta["side"])
            and isinstance(meta.get("sha256"), str)
            and isinstance(meta.get("unterminated", False), bool))


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _valid_arrays(keys: np.ndarray, columns: dict[str, np.ndarray]) -> bool:
    """One-dimensional arrays of the dtypes `Records` uses, all as long as `keys`."""
    empty = Records.empty()
    return keys.ndim == 1 and keys.dtype == empty.keys.dtype and all(
        column.shape == keys.shape and column.dtype == empty.columns[name].dtype
        for name, column in columns.items())


def _prefix_digest(manifest: Path, size: int) -> Any:
    """sha256 of the first `size` bytes of the manifest; None when it is shorter."""
    digest = hashlib.sha256()
    try:
        with open(manifest, "rb") as fh:
            left = size
            while left:
                block = fh.read(min(_BLOCK, left))
                if not block:
                    return None
                digest.update(block)
                left -= len(block)
    except OSError:
        return None
    return digest


def _run(saved: dict[str, Any]) -> dict[str, Any]:
    finished = saved["finished"]
    return {"started": RunStarted.from_line(saved["started"]),
            "finished": RunFinished.from_line(finished) if finished else None,
            "spent_micro": saved["spent_micro"]}
