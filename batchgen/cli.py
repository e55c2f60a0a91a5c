"""Command line: arguments → one library call → messages and an exit code. Nothing else.

The grammar (options, help texts, value converters) is `arguments.py`. Each command
imports what it needs when it runs — pandas only to read or write a table, aiohttp
only to talk to an API, tqdm only to draw a bar — so `--help` and `--version` start
in a few hundredths of a second.

Exit codes (SPEC §3): 0 done · 1 some jobs failed · 2 invalid input or usage ·
3 out of credits · 4 budget reached · 5 key or endpoint refused · 6 folder locked ·
130/143 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from .arguments import DEFAULT_RATE, SIMULATED_SUFFIX, build_parser
from .config import API_KEY_ENV, BASE_URL_ENV, DEFAULT_BASE_URL
from .errors import JobFileError, LockedError, OutputError, UsageError

if TYPE_CHECKING:
    from .config import RunConfig
    from .jobs import JobFile
    from .progress import Reporter
    from .runner import RunSummary

log = logging.getLogger("batchgen")
SUMMARY = 45  # a log level above ERROR: the summary line survives -q
logging.addLevelName(SUMMARY, "SUMMARY")


class _Format(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        if record.levelno in (logging.WARNING, logging.ERROR):
            return f"{record.levelname.lower()}: {text}"
        return text


def _setup_logging(quiet: bool, verbose: bool, log_file: Path | None, bar: bool) -> None:
    for old in log.handlers:
        old.close()
    log.handlers.clear()
    log.propagate = False
    if bar:
        from .progress import TqdmHandler

        handler: logging.Handler = TqdmHandler()
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.ERROR if quiet else logging.DEBUG if verbose else logging.INFO)
    handler.setFormatter(_Format())
    log.addHandler(handler)
    if log_file:
        try:
            file_handler = logging.FileHandler(log_file, encoding="utf-8")
        except OSError as exc:
            raise UsageError(f"--log-file: cannot open {log_file}: {exc.strerror}") from None
        file_handler.setLevel(logging.DEBUG)
        file_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(file_handler)
    # records no handler wants are never built (a debug line per job costs real time)
    log.setLevel(min(h.level for h in log.handlers))


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error argparse has printed
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    commands = {"run": _run, "validate": _validate, "status": _status, "report": _report,
                "models": _models, "simulator": _simulator}
    terminate = _Terminate()
    try:
        with terminate:
            code = commands[args.command](args)
            sys.stdout.flush()  # a reader gone (`| head`) shows here, not at exit
            return code
    except BrokenPipeError:  # what a shell pipeline expects: quiet, 128 + SIGPIPE
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:  # before a run took over the signals: nothing was sent yet
        print("interrupted; nothing was sent", file=sys.stderr)
        return 143 if terminate.received else 130
    except JobFileError as exc:
        print("error: the job file is not valid:", *exc.problems, sep="\n  ", file=sys.stderr)
        print("nothing was sent.", file=sys.stderr)
        return 2
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OutputError as exc:
        print(f"error: {exc}; nothing was sent", file=sys.stderr)
        return 2
    except LockedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 6


class _Terminate:
    """While a command runs, SIGTERM stops it like Ctrl-C (a clean exit 143 instead of
    dying mid-write) wherever a run has not installed its own handlers."""

    received = False

    def __enter__(self) -> _Terminate:
        self._previous = None
        if hasattr(signal, "SIGTERM") and threading.current_thread() is threading.main_thread():
            with contextlib.suppress(ValueError, OSError):
                self._previous = signal.signal(signal.SIGTERM, self._interrupt)
        return self

    def _interrupt(self, signum: int, frame: object) -> None:
        self.received = True
        raise KeyboardInterrupt

    def __exit__(self, *exc_info: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _load(args: argparse.Namespace) -> JobFile:
    from .jobs import load_jobs
    from .readers import normalize_column

    jobs = load_jobs(args.job_file, default_ratio=args.aspect_ratio, sheet=args.sheet,
                     skip_invalid=getattr(args, "skip_invalid", False), model=args.model,
                     params=dict(args.param), variants=args.variants, price_micro=args.price)
    for name in jobs.metadata_columns:
        if normalize_column(name) in ("count", "n", "num_images", "images"):
            print(f"note: the column {name!r} is metadata, not a number of images per row "
                  "(a Count column in a product sheet must not multiply what you spend); "
                  "a 'variants' column or --variants N does that", file=sys.stderr)
    return jobs


def _out_dir(args: argparse.Namespace) -> Path:
    """--out, else output/<stem>; for --simulate output/<stem>-simulated (SPEC §8 M5)."""
    if args.out:
        return args.out
    simulated = getattr(args, "simulate", False)
    return Path("output") / (args.job_file.stem + (SIMULATED_SUFFIX if simulated else ""))


def _estimate(args: argparse.Namespace, jobs: JobFile) -> None:
    """Counts, cost, and what an existing output folder already holds."""
    from .money import format_usd, usd_to_micro
    from .plan import estimate

    info = estimate(jobs, _out_dir(args))
    if getattr(args, "json", False):
        print(json.dumps(info.to_dict(), indent=2))
        return
    print(f"{args.job_file}: {info.jobs} jobs, valid")
    for ratio, count in info.by_ratio.items():
        print(f"  {ratio or 'no ratio':>8}  {count}")
    if len(info.by_model) > 1:
        for slug, count in info.by_model.items():
            print(f"  {count} × {slug}")
    cost = usd_to_micro(info.cost)
    if len(info.by_model) == 1 and cost % info.jobs == 0:
        print(f"estimate: {info.jobs} x {format_usd(cost // info.jobs)} = {format_usd(cost)}")
    else:  # several models, or images per request: prices differ between jobs
        print(f"estimate: {info.jobs} jobs = {format_usd(cost)} (each at its model's "
              f"price: `batchgen models`)")
    if info.started:
        print(f"already done: {info.done} ({info.failed_permanent} failed permanently) in "
              f"{info.out_dir}; left: {info.left} = {format_usd(usd_to_micro(info.left_cost))}")


def _validate(args: argparse.Namespace) -> int:
    _estimate(args, _load(args))
    return 0


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from .config import RunConfig
    from .progress import Reporter

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
        max_cost_micro=args.max_cost, retry_failed=args.retry_failed,
        limit=args.limit, shard=args.shard, require_credits=args.require_credits,
        max_outage=args.max_outage, grace_period=args.grace, poll_interval=args.poll_interval,
        status_interval=args.status_interval, simulated=args.simulate,
        take_over=args.take_over, discard_simulated=args.discard_simulated,
    )
    reporter = Reporter(bar=bar, status_interval=args.status_interval)
    summary = asyncio.run(_run_async(args, jobs, config, reporter))
    _tell_end(summary, config.out_dir)
    return summary.exit_code


def _tell_end(summary: RunSummary, out_dir: Path) -> None:
    """The end of every run: failures by cause, what to do next, where the reports
    are, and the summary line last."""
    from .money import format_usd
    from .reports import INDEX_NAME, RESULTS_NAME
    from .status import cause_lines

    if summary.failures:
        failed = sum(summary.failures.values())
        log.warning("%d job%s failed in this run, by cause:\n%s", failed,
                    "s" * (failed != 1), "\n".join(cause_lines(summary.failures)))
    if summary.reason in ("out_of_credits", "insufficient_credits"):
        log.error("out of credits: %d done, %d left, %s spent. Top up and rerun the same "
                  "command to continue.", summary.done, summary.pending,
                  format_usd(summary.spent_run_micro))
    elif summary.reason == "budget":
        log.warning("--max-cost reached: %d left; rerun to continue", summary.pending)
    elif summary.reason == "interrupted":
        log.warning("interrupted: %d left; rerun the same command to continue",
                    summary.pending)
    elif summary.reason == "auth":
        log.error("fix %s or --base-url and rerun", API_KEY_ENV)
    if summary.unanswered_micro:
        log.warning("%s of requests got no answer in time and may have been billed "
                    "(kept aside from --max-cost; not in spent=)",
                    format_usd(summary.unanswered_micro))
    for label, name in (("gallery", INDEX_NAME), ("results", RESULTS_NAME)):
        if (out_dir / name).is_file():
            log.info("%s: %s", label, out_dir / name)
    log.log(SUMMARY, summary.line())


async def _run_async(args: argparse.Namespace, jobs: JobFile, config: RunConfig,
                     reporter: Reporter) -> RunSummary:
    from dataclasses import replace

    from .runner import arun_batch

    if not args.simulate:
        return await arun_batch(jobs, config, reporter=reporter, handle_signals=True)
    from .simulator import Simulator, SimulatorConfig

    prices = {}  # --price: what the simulated account bills for every model of the file
    if args.price is not None:
        prices = {slug: args.price / 1_000_000 for slug in jobs.models}
    simulator = Simulator(SimulatorConfig(
        latency=args.sim_latency, jitter=args.sim_latency / 2, credits=args.sim_credits,
        prices=prices,
    ))
    base_url = await simulator.start()
    log.info("simulating the Segmind API at %s (no key, no money)", base_url)
    try:
        return await arun_batch(jobs, replace(config, base_url=base_url), reporter=reporter,
                                handle_signals=True)
    finally:
        await simulator.close()


def _folder(args: argparse.Namespace) -> Path:
    """The output folder `status`/`report` are about: the argument itself, or the
    folder of a job file (--out, else output/<stem>, else its simulated twin)."""
    from .manifest import MANIFEST_NAME
    from .readers import SUFFIXES

    target: Path = args.target
    if target.is_dir():
        if args.out is not None:
            raise UsageError(f"--out goes with a job file, and {target} is a folder")
        return target
    if not target.exists():
        raise UsageError(f"{target}: no such output folder or job file")
    if target.suffix.lower() not in SUFFIXES:
        raise UsageError(f"{target} is neither an output folder nor a job file "
                         f"({' '.join(SUFFIXES)})")
    folder = args.out or Path("output") / target.stem
    simulated = folder.with_name(folder.name + SIMULATED_SUFFIX)
    if (args.out is None and not (folder / MANIFEST_NAME).is_file()
            and (simulated / MANIFEST_NAME).is_file()):
        print(f"note: {folder} holds no run of {target}; showing the simulated run in "
              f"{simulated}", file=sys.stderr)
        return simulated
    if not (folder / MANIFEST_NAME).is_file():
        raise UsageError(f"{target} has not run into {folder} yet (it has no {MANIFEST_NAME}); "
                         f"`batchgen validate {target}` estimates it")
    return folder


def _status(args: argparse.Namespace) -> int:
    from .status import format_status, status

    info = status(_folder(args))
    print(json.dumps(info, indent=2) if args.json else format_status(info))
    return 0


def _report(args: argparse.Namespace) -> int:
    from .status import regenerate

    folder = _folder(args)
    try:
        written, warnings = regenerate(folder)
    except OSError as exc:
        raise UsageError(f"cannot write the reports in {folder}: {exc.strerror}") from None
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for path in written:
        print(path)
    return 0


def _models(args: argparse.Namespace) -> int:
    from .models import MODELS, canonical_slug, model

    if args.slug is None:
        width = max(len(slug) for slug in MODELS)
        for entry in MODELS.values():
            print(f"{entry.slug:<{width}}  {entry.price_text:<22}  {entry.title}")
        print("\n`batchgen models SLUG` shows a model's parameters; any other slug runs "
              "with --price.")
        return 0
    entry = model(canonical_slug(args.slug) or "")  # any case, as --model and a run take it
    if entry is None:
        raise UsageError(f"batchgen does not know the model {args.slug!r}; it knows "
                         f"{', '.join(MODELS)} (any other runs with --model and --price)")
    print(f"{entry.title} ({entry.slug}): {entry.price_text}"
          + (f" per image, times {entry.samples_param}" if entry.price_per_sample else ""))
    print(f"endpoint  POST {entry.v1_path}   source  {entry.source}")
    print("parameters (besides prompt; a job file column of the same name sets them):")
    width = max(len(p.name) for p in entry.params)
    for param in entry.params:
        default = "" if param.default is None else f" (default {param.default})"
        note = f"  - {param.help}" if param.help else ""
        print(f"  {param.name:<{width}}  {param.allowed()}{default}{note}")
    return 0


def _simulator(args: argparse.Namespace) -> int:
    import asyncio
    import contextlib

    from .simulator import Simulator, SimulatorConfig

    try:
        config = SimulatorConfig(
            latency=args.latency, jitter=args.jitter, credits=args.credits, rpm=args.rpm,
            rate_window=args.rate_window, response_format=args.response_format,
            fault_rate=args.fault_rate, fault_kinds=tuple(args.faults),
            fault_script=args.fault_script, retry_after=args.retry_after,
            status_faults=args.status_faults, status_fault=args.status_fault,
            file_faults=args.file_faults, file_fault=args.file_fault, seed=args.seed,
            reject_marker=args.reject_marker or None, fail_marker=args.fail_marker or None,
            key=args.key, hang=args.hang, image_size=args.image_size, price=args.price,
            queue_delay=args.queue_delay, result_ttl=args.result_ttl,
            credits_endpoint=not args.no_credits_endpoint, credits_delay=args.credits_delay,
            reject_message=args.reject_message,
        )
    except ValueError as exc:  # the converters catch most; the rest is said here
        raise UsageError(str(exc)) from None

    async def serve() -> None:
        simulator = Simulator(config)
        try:
            url = await simulator.start(args.host, args.port)
        except OSError as exc:
            raise UsageError(f"cannot listen on {args.host}:{args.port}: "
                             f"{exc.strerror or exc}") from None
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
