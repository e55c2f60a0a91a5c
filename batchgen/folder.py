"""Whose an output folder is. A folder belongs to one job file (SPEC §8 M4) and holds
either real or simulated results, never both (M5): otherwise a second job file's
`hero` would overwrite the first one's image and pay again, and the simulator's
placeholder images would count as a real batch's done jobs.

Both checks run after the folder is locked and before anything is sent.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from .checkpoint import CHECKPOINT_NAME
from .config import RunConfig
from .errors import UsageError
from .jobs import JobFile
from .manifest import MANIFEST_NAME, Replay

log = logging.getLogger("batchgen")

#: What batchgen writes in an output folder, and so what discarding it removes.
MADE_HERE = ("images", "thumbs", MANIFEST_NAME, CHECKPOINT_NAME, "results.csv", "index.html",
             "invalid.csv")


def claim(out_dir: Path, history: Replay, jobs: JobFile, config: RunConfig) -> Replay:
    """The folder's history if this run may use the folder; raises UsageError (exit 2)
    when it may not. With `discard_simulated`, simulated results are removed first and
    an empty history is returned."""
    started = [run["started"] for run in history.runs]
    simulated = any(run.simulated for run in started)
    real = any(not run.simulated for run in started)
    if config.simulated and real:
        raise UsageError(f"{out_dir} holds real results: a --simulate run must not mix "
                         "placeholder images into them (leave out --out to use "
                         "output/<job file>-simulated)")
    if not config.simulated and simulated:
        if not config.discard_simulated:
            raise UsageError(f"{out_dir} holds simulated results (placeholder images from "
                             "--simulate), which a real run would count as done: use another "
                             "--out, or --discard-simulated to remove them first")
        if real:
            raise UsageError(f"{out_dir} holds both real and simulated results; "
                             "--discard-simulated will not touch real images: use another --out")
        _discard(out_dir)
        return Replay()
    if started and not config.take_over:
        last = started[-1]
        if last.job_file != str(jobs.path) and last.job_file_sha256 != jobs.sha256:
            raise UsageError(f"{out_dir} belongs to the job file {last.job_file}, not "
                             f"{jobs.path}: use another --out, or --take-over to hand the "
                             "folder to this job file")
    return history


def _discard(out_dir: Path) -> None:
    log.warning("removing the simulated results in %s (--discard-simulated)", out_dir)
    for name in MADE_HERE:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
