"""Command line: arguments → library calls → messages and an exit code. Nothing else.

Exit codes (SPEC §3): 0 done · 1 some jobs failed · 2 invalid input or usage ·
3 out of credits · 4 budget reached · 5 key or endpoint refused · 6 folder locked ·
130/143 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from collections import Counter
from dataclasses import replace
from pathlib import Path

from . import __version__, report
from .config import (
    API_KEY_ENV,
    BASE_URL_ENV,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_BASE_URL,
    PRICE_MICRO,
    RunConfig,
    format_usd,
    usd_to_micro,
)
from .errors import JobFileError, LockedError, OutputError, UsageError
from .jobs import Job, JobFile, load_jobs
from .manifest import MANIFEST_NAME, replay
from .progress import Reporter, TqdmHandler
from .runner import RunSummary, arun_batch, make_plan
from .simulator import FAULTS, FORMATS, Simulator, SimulatorConfig
from .store import ImageStore

log = logging.getLogger("batchgen")
SUMMARY = 45  # a log level above ERROR: the summary line survives -q
logging.addLevelName(SUMMARY, "SUMMARY")
DEFAULT_RATE = 50.0  # requests per minute: Segmind's Pro plan


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno in (logging.WARNING, logging.ERROR):
            return f"{record.levelname.lower()}: {text}"
        return text


def _setup_logging(quiet: bool, verbose: bool, log_file: str | None, bar: bool) -> None:
    log.handlers.clear()
    log.propagate = False
    handler = TqdmHandler() if bar else logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)
    handler.setFormatter(_Format())
    log.addHandler(handler)
    if log_file:
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(file_handler)
    # records no handler wants are never built (a debug line per job costs real time)
    log.setLevel(min(h.level for h in log.handlers))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError("must be more than 0")
    return value


def _usd(text: str) -> int:
    try:
        return usd_to_micro(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError("use I/N, e.g. 2/4") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError("I/N needs 1 <= I <= N")
    return index, count


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="batchgen", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"batchgen {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    def job_file_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("job_file", type=Path, help="CSV, TSV, TXT, XLSX, YAML or JSONL")
        p.add_argument("--out", type=Path, help="output folder (default output/<job file stem>)")
        p.add_argument("--aspect-ratio", default=DEFAULT_ASPECT_RATIO,
                       help="for rows without one (default 1:1)")
        p.add_argument("--sheet", help="Excel sheet name (default: the first)")
        p.add_argument("--price", type=_usd, default=PRICE_MICRO,
                       help="dollars per image (default 0.019)")

    run = sub.add_parser("run", help="generate every job not yet done (resumes)")
    job_file_options(run)
    run.add_argument("--concurrency", type=_positive_int, default=8)
    run.add_argument("--rate", type=_positive_float,
                     help=f"requests per minute (default {DEFAULT_RATE:g}; none with --simulate)")
    run.add_argument("--max-cost", type=_usd, help="dollars this run may spend at most")
    run.add_argument("--retries", type=int, default=5)
    run.add_argument("--backoff", type=_positive_float, default=1.0,
                     help="seconds before the first retry, doubling (default 1)")
    run.add_argument("--timeout", type=_positive_float, default=600.0,
                     help="seconds per request attempt (default 600)")
    run.add_argument("--api", choices=("v1", "v2"), default="v1",
                     help="v1: one blocking request per image (default); v2: submit and poll")
    run.add_argument("--poll-interval", type=_positive_float, default=1.0,
                     help="v2: seconds before the first status poll, growing to 5 (default 1)")
    run.add_argument("--base-url", help=f"API base URL (default ${BASE_URL_ENV} or "
                     f"{DEFAULT_BASE_URL})")
    run.add_argument("--simulate", action="store_true",
                     help="run against the built-in simulator (no key, no money)")
    run.add_argument("--sim-credits", type=float, help="with --simulate: the account balance")
    run.add_argument("--sim-latency", type=float, default=0.3,
                     help="with --simulate: seconds per image (default 0.3)")
    run.add_argument("--dry-run", action="store_true", help="validate and estimate only")
    run.add_argument("--retry-failed", action="store_true",
                     help="also retry jobs that failed permanently")
    run.add_argument("--limit", type=_positive_int, help="run at most N of the jobs not done")
    run.add_argument("--shard", type=_shard, help="run only shard I of N (e.g. 1/4)")
    run.add_argument("--require-credits", action="store_true",
                     help="stop (exit 3) if the balance cannot pay for every job")
    run.add_argument("--max-outage", type=_positive_float, default=600.0,
                     help="seconds of API outage before giving up (default 600)")
    run.add_argument("--grace", type=float, default=60.0,
                     help="seconds in-flight requests may finish after Ctrl-C (default 60)")
    run.add_argument("--status-interval", type=_positive_float, default=30.0,
                     help="seconds between status lines without a terminal (default 30)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument("--log-file", help="also append the log to this file")
    loud = run.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")
    loud.add_argument("-v", "--verbose", action="store_true", help="a line per job")

    validate = sub.add_parser("validate", help="check a job file; count and estimate")
    job_file_options(validate)

    status = sub.add_parser("status", help="what an output folder holds")
    status.add_argument("out_dir", type=Path)
    status.add_argument("--json", action="store_true", help="machine-readable")

    rep = sub.add_parser("report", help="(re)write results.csv and index.html")
    rep.add_argument("out_dir", type=Path)

    sim = sub.add_parser("simulator", help="serve the fake Segmind API")
    sim.add_argument("--host", default="127.0.0.1")
    sim.add_argument("--port", type=int, default=8765)
    sim.add_argument("--latency", type=float, default=0.0, help="seconds per image")
    sim.add_argument("--jitter", type=float, default=0.0, help="± seconds of latency")
    sim.add_argument("--credits", type=float, help="balance in dollars (default unlimited)")
    sim.add_argument("--rpm", type=int, help="requests per window before 429")
    sim.add_argument("--rate-window", type=float, default=60.0, help="seconds (default 60)")
    sim.add_argument("--format", choices=FORMATS, default="raw", dest="response_format")
    sim.add_argument("--fault-rate", type=float, default=0.0, help="probability of a fault")
    sim.add_argument("--faults", default="500,502,503,504,429,timeout,garbage",
                     help=f"kinds for --fault-rate, from {','.join(FAULTS)}")
    sim.add_argument("--fault-script", default="",
                     help="faults for the first requests in order, e.g. 503,503,200,timeout")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--reject-marker", default="[reject]", help="prompts with it get 400")
    sim.add_argument("--fail-marker", default="[fail]", help="v2 prompts with it end FAILED")
    sim.add_argument("--hang", type=float, default=3600.0,
                     help="seconds a 'timeout' fault keeps the client waiting")
    sim.add_argument("--image-size", type=int, default=96, help="pixels on the long side")
    sim.add_argument("--price", type=float, default=PRICE_MICRO / 1_000_000,
                     help="dollars charged per image (default 0.019)")
    sim.add_argument("--key", help="accept only this key (default: any non-empty key)")
    sim.add_argument("--queue-delay", type=float, default=0.0, help="v2: seconds QUEUED")
    sim.add_argument("--result-ttl", type=float, default=3600.0, help="v2: result lifetime")
    sim.add_argument("--no-credits-endpoint", action="store_true",
                     help="answer 404 to GET /v1/get-user-credits")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    commands = {"run": _run, "validate": _validate, "status": _status, "report": _report,
                "simulator": _simulator}
    try:
        return commands[args.command](args)
    except JobFileError as exc:
        print("error: the job file is not valid:", *exc.problems, sep="\n  ", file=sys.stderr)
        print("nothing was sent.", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OutputError as exc:
        print(f"error: {exc}; what was recorded is kept, rerun to resume", file=sys.stderr)
        return 1
    except LockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 6


def _load(args: argparse.Namespace) -> JobFile:
    return load_jobs(args.job_file, default_ratio=args.aspect_ratio, sheet=args.sheet)


def _out_dir(args: argparse.Namespace) -> Path:
    return args.out or Path("output") / args.job_file.stem


def _estimate(args: argparse.Namespace, jobs: list[Job]) -> None:
    """Counts, cost, and what an existing output folder already holds."""
    price = args.price
    print(f"{args.job_file}: {len(jobs)} jobs, valid")
    for ratio, count in sorted(Counter(j.aspect_ratio for j in jobs).items()):
        print(f"  {ratio:>5}  {count}")
    print(f"estimate: {len(jobs)} x {format_usd(price)} = {format_usd(len(jobs) * price)}")
    out_dir = _out_dir(args)
    manifest = out_dir / MANIFEST_NAME
    if manifest.exists():
        config = RunConfig(out_dir=out_dir, api_key="", price_micro=price)
        state = replay(manifest)
        on_disk = ImageStore(out_dir).existing(suspect=state.unfinished_files)
        plan = make_plan(jobs, state, on_disk, config)
        left = len(plan.to_run)
        print(f"already done: {plan.done_before} "
              f"({plan.permanent_failures} failed permanently) in {out_dir}; "
              f"left: {left} = {format_usd(left * price)}")


def _validate(args: argparse.Namespace) -> int:
    _estimate(args, _load(args))
    return 0


def _run(args: argparse.Namespace) -> int:
    bar = not args.no_progress and not args.quiet and sys.stderr.isatty()
    _setup_logging(args.quiet, args.verbose, args.log_file, bar)
    jobs = _load(args)
    if args.dry_run:
        _estimate(args, jobs)
        return 0
    api_key = os.environ.get(API_KEY_ENV, "")
    if not args.simulate and not api_key:
        raise UsageError(f"set {API_KEY_ENV} to your Segmind API key "
                         "(or try --simulate to run against the built-in simulator)")
    config = RunConfig(
        out_dir=_out_dir(args), api_key=api_key or "simulated",
        base_url=args.base_url or os.environ.get(BASE_URL_ENV) or DEFAULT_BASE_URL,
        api=args.api, concurrency=args.concurrency,
        rate=args.rate or (0.0 if args.simulate else DEFAULT_RATE),
        retries=args.retries, backoff=args.backoff, timeout=args.timeout,
        max_cost_micro=args.max_cost, price_micro=args.price, retry_failed=args.retry_failed,
        limit=args.limit, shard=args.shard, require_credits=args.require_credits,
        max_outage=args.max_outage, grace_period=args.grace, poll_interval=args.poll_interval,
        status_interval=args.status_interval, job_file=args.job_file,
        default_ratio=args.aspect_ratio, sheet=args.sheet,
        job_file_sha256=jobs.sha256,
    )
    reporter = Reporter(bar=bar, status_interval=args.status_interval)
    summary = asyncio.run(_run_async(args, jobs, config, reporter))
    if summary.reason in ("out_of_credits", "insufficient_credits"):
        log.error("out of credits: %d done, %d left, %s spent. Top up and rerun the same "
                  "command to continue.", summary.done, summary.pending,
                  format_usd(summary.spent_run_micro))
    elif summary.reason == "budget":
        log.warning("--max-cost reached: %d left; rerun to continue", summary.pending)
    elif summary.reason == "auth":
        log.error("fix %s or --base-url and rerun", API_KEY_ENV)
    log.log(SUMMARY, summary.line())
    return summary.exit_code


async def _run_async(args: argparse.Namespace, jobs: list[Job], config: RunConfig,
                     reporter: Reporter) -> RunSummary:
    if not args.simulate:
        return await arun_batch(jobs, config, reporter=reporter, handle_signals=True)
    simulator = Simulator(SimulatorConfig(
        latency=args.sim_latency, jitter=args.sim_latency / 2, credits=args.sim_credits,
        price=args.price / 1_000_000,
    ))
    base_url = await simulator.start()
    log.info("simulating the Segmind API at %s (no key, no money)", base_url)
    try:
        return await arun_batch(jobs, replace(config, base_url=base_url), reporter=reporter,
                                handle_signals=True)
    finally:
        await simulator.close()


def _status(args: argparse.Namespace) -> int:
    info = report.status(args.out_dir)
    if args.json:
        print(json.dumps(info, indent=2))
    else:
        print(report.format_status(info))
    return 0


def _report(args: argparse.Namespace) -> int:
    written = report.regenerate(args.out_dir)
    for path in written:
        print(path)
    return 0


def _simulator(args: argparse.Namespace) -> int:
    try:
        config = SimulatorConfig(
            latency=args.latency, jitter=args.jitter, credits=args.credits, rpm=args.rpm,
            rate_window=args.rate_window, response_format=args.response_format,
            fault_rate=args.fault_rate,
            fault_kinds=tuple(f for f in args.faults.split(",") if f),
            fault_script=[f for f in args.fault_script.split(",") if f], seed=args.seed,
            reject_marker=args.reject_marker or None, fail_marker=args.fail_marker or None,
            key=args.key, hang=args.hang, image_size=args.image_size, price=args.price,
            queue_delay=args.queue_delay, result_ttl=args.result_ttl,
            credits_endpoint=not args.no_credits_endpoint,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None

    async def serve() -> None:
        simulator = Simulator(config)
        url = await simulator.start(args.host, args.port)
        print(f"batchgen simulator serving the Segmind API at {url}", flush=True)
        print(f"try: curl -H 'x-api-key: any' -H 'content-type: application/json' "
              f"-d '{{\"prompt\": \"a red fox\"}}' {url}/v1/luma-photon-txt-2-img -o fox.png",
              flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await simulator.close()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0
