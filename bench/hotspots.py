"""Where batchgen's own time goes: `python -m bench --profile [--quick|--smoke]`.

Runs `batchgen run ...` under cProfile over `memory_small` jobs against a
zero-latency simulator in another process (so only the client is profiled) and
prints a summary by area (manifest, image store, HTTP client, event loop, ...)
and the top functions by own and cumulative time.

The profiler's clock is the main thread's CPU time (`time.thread_time`), not the
wall clock: on a busy machine, wall time charges preemption to whichever
syscall was running, and idle waiting in epoll would dominate. Work done in
`asyncio.to_thread` (image writes, fsync) is not in the profile; the gap between
the process's CPU (from wait4) and the profiled total is that work plus threads'
overhead.
"""

from __future__ import annotations

import io
import pstats
import shutil
import sys
import tempfile
from pathlib import Path

from .harness import SimulatorProcess, batchgen_run, run_child, write_jobs
from .suite import Sizes, say

#: `python -c PROFILED STATS_FILE batchgen-arguments...`
PROFILED = """
import cProfile, runpy, sys, time
stats_file = sys.argv[1]
sys.argv = ["batchgen", *sys.argv[2:]]
profiler = cProfile.Profile(time.thread_time)
profiler.enable()
try:
    runpy.run_module("batchgen", run_name="__main__")
except SystemExit as exc:
    code = exc.code
finally:
    profiler.disable()
    profiler.dump_stats(stats_file)
sys.exit(code)
"""

AREAS = (  # (label, substrings of "file:function"), first match wins
    ("manifest (json + write + flush)", ("manifest.py",)),
    ("image files (write + fsync + rename)", ("store.py",)),
    ("fsync", ("posix.fsync",)),
    ("socket send/recv", ("_socket.socket",)),
    ("waiting in epoll", ("select.epoll",)),
    ("imports (start-up)", ("importlib", "marshal.loads", "builtins.compile", "exec_dynamic")),
    ("thread pool hand-off", ("_queue.SimpleQueue", "concurrent/futures", "threading.py")),
    ("logging", ("logging/",)),
    ("json", ("json/",)),
    ("reports (results.csv, index.html)", ("report.py",)),
    ("job file (pandas)", ("jobs.py", "readers.py", "pandas")),
    ("batchgen client", ("batchgen/client.py",)),
    ("aiohttp", ("aiohttp",)),
    ("rate limiter", ("pacing.py",)),
    ("asyncio event loop", ("asyncio",)),
)


def profile(sizes: Sizes, parent: Path | None, *, keep: bool = False, top: int = 30) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="batchgen-profile-", dir=parent))
    count = sizes.memory_small
    try:
        jobs = write_jobs(tmp / "jobs.csv", count)
        stats_file = tmp / "run.prof"
        with SimulatorProcess(log_dir=tmp) as sim:
            args = batchgen_run(jobs, tmp / "out", sim.url, concurrency=sizes.concurrency)
            args[1:3] = ["-c", PROFILED, str(stats_file)]
            say(f"profiling batchgen over {count} jobs at zero latency")
            child = run_child(args, timeout=sizes.timeout, log_dir=tmp).check("batchgen")
        say(f"{count / child.wall_s:.0f} jobs/s under the profiler, process CPU "
            f"{child.cpu_s:.1f} s (all threads, profiler overhead included)")
        print(report(stats_file, top))
    finally:
        if keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0


def report(stats_file: Path, top: int) -> str:
    out = io.StringIO()
    stats = pstats.Stats(str(stats_file), stream=out)
    total = stats.total_tt
    by_area: dict[str, float] = {}
    for (file, _line, func), (_cc, _nc, own, _cum, _callers) in stats.stats.items():
        where = f"{file}:{func}"
        label = next((name for name, keys in AREAS if any(k in where for k in keys)), "other")
        by_area[label] = by_area.get(label, 0.0) + own
    out.write(f"own time by area (of {total:.2f} s profiled):\n")
    for label, own in sorted(by_area.items(), key=lambda item: -item[1]):
        out.write(f"  {own:7.2f} s {own / total:6.1%}  {label}\n")
    out.write("\n")
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)
    return out.getvalue()


if __name__ == "__main__":
    from .suite import PRESETS

    sys.exit(profile(PRESETS[sys.argv[1] if len(sys.argv) > 1 else "quick"], None))
