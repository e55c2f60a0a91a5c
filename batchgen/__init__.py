"""batchgen: a spreadsheet or YAML file of prompts → a folder of generated images.

    from batchgen import RunConfig, load_jobs, run_batch
    jobs = load_jobs("jobs/example.csv")  # a JobFile: its jobs, and .path, .sha256, ...
    summary = run_batch(jobs, RunConfig(out_dir=Path("output/example"), api_key=key))
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batchgen")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"

from . import errors  # noqa: E402
from .config import RunConfig  # noqa: E402
from .jobs import Job, JobFile, load_jobs  # noqa: E402
from .runner import RunSummary, arun_batch, run_batch  # noqa: E402

__all__ = ["Job", "JobFile", "RunConfig", "RunSummary", "__version__", "arun_batch", "errors",
           "load_jobs", "run_batch"]
