"""batchgen: a spreadsheet or YAML file of prompts → a folder of generated images.

    from batchgen import RunConfig, load_jobs, run_batch
    jobs = load_jobs("jobs/example.csv")
    summary = run_batch(jobs, RunConfig(out_dir=Path("output/example"), api_key=key))

Names are imported on first use, so `batchgen --help` does not pay for pandas.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("batchgen-images")  # the distribution name (pyproject.toml)
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

_WHERE = {
    "errors": ".errors",
    "RunConfig": ".config",
    "Job": ".jobs",
    "JobFile": ".jobs",
    "load_jobs": ".jobs",
    "Estimate": ".plan",
    "estimate": ".plan",
    "RunSummary": ".runner",
    "arun_batch": ".runner",
    "run_batch": ".runner",
}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'batchgen' has no attribute {name!r}")
    module = importlib.import_module(_WHERE[name], __name__)
    return module if name == "errors" else getattr(module, name)
