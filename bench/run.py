"""`python -m bench`: run the benchmarks and print the table of ratios.

    python -m bench              # full sizes (10-15 min); writes bench/RESULTS.md
    python -m bench --quick      # about two minutes, smaller sizes; prints only
    python -m bench --smoke      # tiny sizes, seconds; what tests/test_bench_smoke.py runs
    python -m bench --only zero,memory
    python -m bench --profile    # cProfile batchgen at zero latency, print the hot spots

Generated data lives in a temporary folder, removed afterwards (`--keep` keeps it).
Exit code 1 when a benchmark could not run; missed targets are reported, not fatal.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import tempfile
import time
import traceback
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from .harness import ROOT
from .suite import BENCHMARKS, PRESETS, Bench, Row, say

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"
PACKAGES = ("batchgen-images", "aiohttp", "pandas", "tqdm", "requests", "pillow")


def format_table(rows: list[Row]) -> str:
    lines = ["| # | benchmark | measured | ratio | target | |",
             "|---|---|---|---:|---|---|"]
    for row in rows:
        ratio = "" if row.ratio is None else f"{row.ratio:.3g}" if row.ratio < 100 \
            else f"{row.ratio:.0f}"
        verdict = {True: "ok", False: "**miss**", None: ""}[row.ok]
        lines.append(f"| {row.section} | {row.name} | {row.measured} | {ratio} | {row.target} "
                     f"| {verdict} |")
    return "\n".join(lines)


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh
                        if line.startswith("model name")), cpu)
    except OSError:
        pass
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    return [
        f"- date: {datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}",
        f"- machine: {os.cpu_count()} cores ({cpu}), {platform.system()} {platform.release()}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- packages: {', '.join(versions)}",
        f"- code: {git_state()}",
    ]


def git_state() -> str:
    def git(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "batchgen")
    changed = len(dirty.splitlines()) if dirty else 0
    return f"commit {commit}" + (f" with {changed} uncommitted file(s) in batchgen/"
                                 if changed else "")


def save(path: Path, rows: list[Row], minutes: float, sizes_name: str) -> None:
    text = "\n".join([
        "# Benchmark results",
        "",
        f"`python -m bench` ({sizes_name} sizes, {minutes:.1f} min). "
        "Regenerate with the same command; see `bench/__init__.py` for what each row means.",
        "",
        *machine(),
        "",
        format_table(rows),
        "",
        "Throughputs are timed by the simulator (separate process) from the first "
        "generation request it receives to the last image it charges, the same observer "
        "for batchgen and the baselines; end-to-end figures include interpreter start-up, "
        "job-file loading and the final reports. CPU and peak RSS are the client process's "
        "own (`os.wait4`). Absolute numbers depend on the machine; the ratios are measured "
        "side by side in one run.",
        "",
    ])
    path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="sizes", const="quick")
    size.add_argument("--smoke", action="store_const", dest="sizes", const="smoke")
    parser.add_argument("--only", help=f"comma-separated subset of {','.join(BENCHMARKS)}")
    parser.add_argument("--keep", action="store_true", help="keep the generated data")
    parser.add_argument("--tmp", type=Path, help="parent folder for generated data")
    parser.add_argument("--save", type=Path, metavar="FILE",
                        help=f"write the table there (default for a full run: {RESULTS})")
    parser.add_argument("--profile", action="store_true",
                        help="profile batchgen at zero latency instead (see bench/hotspots.py)")
    args = parser.parse_args(argv)
    sizes = PRESETS[args.sizes or "full"]
    if args.profile:
        from .hotspots import profile
        return profile(sizes, args.tmp, keep=args.keep)
    chosen = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; choose from "
                     f"{', '.join(BENCHMARKS)}")
    tmp = Path(tempfile.mkdtemp(prefix="batchgen-bench-", dir=args.tmp))
    say(f"{sizes.name} sizes, data in {tmp}")
    started = time.monotonic()
    rows: list[Row] = []
    broken = 0
    bench = Bench(sizes, tmp)
    try:
        for name in chosen:
            try:
                rows += BENCHMARKS[name](bench)
            except Exception as exc:  # one broken benchmark must not hide the others
                broken += 1
                traceback.print_exc()
                rows.append(Row(name, "(could not run)", f"ERROR: {exc}".splitlines()[0],
                                ok=False))
    finally:
        bench.close()
        if args.keep:
            say(f"data kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    minutes = (time.monotonic() - started) / 60
    table = format_table(rows)
    print(table)
    print(f"\n{sizes.name} sizes, {minutes:.1f} min")
    target = args.save or (RESULTS if sizes.name == "full" and not args.only else None)
    if target is not None and not broken:
        save(target, rows, minutes, sizes.name)
        say(f"table saved to {target}")
    return 1 if broken else 0
