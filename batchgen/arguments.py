"""The command line's grammar: every command, its options in titled groups with help
texts and METAVARs, its environment, exit codes and examples (the simulator's options
are `simarguments.py`). The parser and the value converters are `parser.py`.

    args = build_parser().parse_args(["run", "jobs.csv", "--simulate"])

Only the standard library and batchgen's light modules are imported here, so that
`batchgen --help` starts fast (SPEC §7; `python -m bench --only startup`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, NoReturn

from .config import (
    API_KEY_ENV,
    ASPECT_RATIOS,
    BASE_URL_ENV,
    DEFAULT_ASPECT_RATIO,
    DEFAULT_BASE_URL,
    MODEL,
)
from .parser import (
    Parser,
    aspect_ratio,
    assignment,
    dollars,
    model_slug,
    number,
    shard,
    whole,
)
from .simarguments import SIMULATOR_EPILOG, simulator_options

DEFAULT_RATE = 50.0  # requests per minute: Segmind's Pro plan
SIMULATED_SUFFIX = "-simulated"  # `--simulate`'s default folder: output/<stem>-simulated


# -- help texts ----------------------------------------------------------------------

EXIT_CODES = """\
exit codes:
  0        every selected job is done (--limit/--shard: their own jobs; --dry-run:
           the file is valid)
  1        finished, but some jobs failed or are still pending (rerun to retry them)
  2        invalid job file, option or environment; nothing was sent
  3        out of credits (HTTP 406), or --require-credits and the balance is too low
  4        --max-cost reached
  5        the API refused the key or the endpoint (401, 403, 404 or a redirect)
  6        another batchgen run holds the output folder (its pid is printed)
  130/143  interrupted by Ctrl-C / SIGTERM (rerun the same command to resume)"""

ENVIRONMENT = f"""\
environment:
  {API_KEY_ENV}   your Segmind API key; needed by `run` without --simulate or
                    --dry-run. Never a flag, so it stays out of `ps` and shell history
  {BASE_URL_ENV}  the API's base URL (default {DEFAULT_BASE_URL}); --base-url wins"""

NO_KEY = f"""\
environment:
  {API_KEY_ENV}, {BASE_URL_ENV}: not needed; this command sends nothing"""

TOP_EPILOG = f"""\
quick start (no key, no money):
  batchgen run jobs/example.csv --simulate   # images in output/example-simulated/
  batchgen status jobs/example.csv           # what that folder holds

for real:
  export {API_KEY_ENV}=sk-...
  batchgen validate prompts.xlsx             # problems, or count and cost estimate
  batchgen run prompts.xlsx --max-cost 5     # rerun the same command to resume

`batchgen COMMAND --help` explains a command, its options and its exit codes."""

RUN_EPILOG = f"""\
{ENVIRONMENT}

{EXIT_CODES}

Every run ends with where its gallery and results.csv are, the failures grouped by
cause, and one summary line: done=… failed=… pending=… spent=$… total=$… exit=N.

examples:
  batchgen run jobs/example.csv --simulate            # try it: no key, no money
  batchgen run prompts.xlsx --max-cost 5 --rate 50    # at most $5 this run
  batchgen run prompts.csv --api v2 -q --log-file batch.log   # unattended (cron)"""

VALIDATE_EPILOG = f"""\
{NO_KEY}

exit codes:
  0  the job file is valid
  2  the job file is not valid (every problem is listed with its row and column),
     or an option is wrong

examples:
  batchgen validate prompts.xlsx --sheet Posters
  batchgen validate prompts.csv --out output/big-batch
  batchgen validate prompts.csv --json | jq .left_cost"""

FOLDER_HELP = ("an output folder, or a job file: its folder is output/<stem> "
               f"(or output/<stem>{SIMULATED_SUFFIX} if only a simulated run is there), "
               "or --out DIR")

STATUS_EPILOG = f"""\
{NO_KEY}

exit codes:
  0  done (whatever state the batch is in)
  2  not a batchgen output folder, or a job file that has not run yet

examples:
  batchgen status output/prompts
  batchgen status prompts.csv             # the same: the job file's folder
  batchgen status prompts.csv --json | jq .failure_causes"""

REPORT_EPILOG = f"""\
{NO_KEY}

exit codes:
  0  both files written (their paths are printed)
  2  not a batchgen output folder, a job file that has not run yet, or the
     folder cannot be written

examples:
  batchgen report output/prompts
  batchgen report prompts.csv --out output/big-batch"""

MODELS_EPILOG = f"""\
{NO_KEY}

A model outside this list still runs: give its slug to --model (or a model column)
and its price with --price; its parameters are sent as given, unchecked.

examples:
  batchgen models                   # slug, title, price per image
  batchgen models flux-schnell      # its parameters, what each allows, defaults"""

# -- the parsers -----------------------------------------------------------------------


def build_parser() -> Parser:
    parser = Parser(
        prog="batchgen",
        description="Turn a spreadsheet or YAML file of prompts into a folder of AI images "
                    "(Segmind Luma Photon,\nor any Segmind model), resumably: rerun the same "
                    "command and nothing is paid for twice.",
        epilog=TOP_EPILOG,
    )
    parser.add_argument("--version", action=_Version, help="print the version and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                title="commands")

    def command(name: str, purpose: str, description: str, epilog: str) -> Parser:
        made = sub.add_parser(name, help=purpose, description=description, epilog=epilog)
        parser.commands[name] = made
        return made

    _run_options(command(
        "run", "generate every job not yet done (rerun to resume)",
        "Generate an image for every job of JOBFILE not yet done, into an output folder\n"
        "holding images/, manifest.jsonl, results.csv and index.html. Resumes: rerunning\n"
        "the same command pays for nothing twice.", RUN_EPILOG))
    _validate_options(command(
        "validate", "check a job file: problems, count, cost, what is done",
        "Check a job file without sending anything: every problem with its row and\n"
        "column; if valid, the job count per aspect ratio, the cost estimate and what\n"
        "the output folder already holds.", VALIDATE_EPILOG))
    _folder_options(command(
        "status", "what an output folder holds: counts, money, what is left",
        "Say what an output folder holds: jobs by state, failures grouped by cause,\n"
        "money spent, the last run and what is left to do.", STATUS_EPILOG), json=True)
    _folder_options(command(
        "report", "(re)write an output folder's results.csv and index.html",
        "Rewrite results.csv and the gallery index.html of an output folder from its\n"
        "manifest, the job file and the images on disk.", REPORT_EPILOG), json=False)
    models = command(
        "models", "the Segmind models batchgen knows: prices and parameters",
        "List the models batchgen knows (slug, price per image, where the figures come\n"
        "from), or one model's parameters: type, allowed values, default.", MODELS_EPILOG)
    models.add_argument("slug", nargs="?", metavar="SLUG", help="show this model's parameters")
    simulator_options(command(
        "simulator", "serve a fake Segmind API on loopback, for trying things out",
        "Serve a fake Segmind API that speaks the real protocol (v1, v2 queue, credits\n"
        "endpoint) with configurable latency, balance, rate limit and faults.",
        SIMULATOR_EPILOG))
    return parser


class _Version(argparse.Action):
    """--version, reading the version only when asked."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: Any):
        super().__init__(option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS,
                         nargs=0, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> NoReturn:
        from . import __version__

        print(f"batchgen {__version__}")
        parser.exit()


def _job_file_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("job_file", type=Path, metavar="JOBFILE",
                       help="the jobs: .csv .tsv .txt .xlsx .yaml .jsonl")
    group.add_argument("--out", type=Path, metavar="DIR",
                       help="output folder (default output/<stem of JOBFILE>)")
    group.add_argument("--sheet", metavar="NAME", help="Excel sheet (default: the first)")
    group.add_argument("--aspect-ratio", type=aspect_ratio, default=DEFAULT_ASPECT_RATIO,
                       metavar="R", help=f"for rows without one: {', '.join(ASPECT_RATIOS)} "
                                         f"(default {DEFAULT_ASPECT_RATIO})")


def _model_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--model", type=model_slug, default=MODEL, metavar="SLUG",
                       help=f"the Segmind model for rows without a model column (default "
                            f"{MODEL}); `batchgen models` lists the ones batchgen knows")
    group.add_argument("--param", type=assignment, action="append", default=[],
                       metavar="NAME=VALUE",
                       help="a parameter sent with every job that does not set it itself, "
                            "e.g. --param seed=42 (repeat for more)")
    group.add_argument("--variants", "--count", type=whole(1, 100), default=1, metavar="N",
                       help="jobs (images) per row for rows without a variants column "
                            "(default 1)")
    group.add_argument("--price", type=dollars(above_zero=True), metavar="USD",
                       help="dollars per image for every row instead of the registry's "
                            "price (times samples where each image is billed); needed for "
                            "a model batchgen does not know")


def _run_options(run: Parser) -> None:
    what = run.add_argument_group("what to run")
    _job_file_options(what)
    what.add_argument("--skip-invalid", action="store_true",
                      help="run the valid rows; write the invalid ones with their row and "
                           "error to invalid.csv in the output folder")
    what.add_argument("--limit", type=whole(1), metavar="N",
                      help="run at most N of the jobs not yet done")
    what.add_argument("--shard", type=shard, metavar="I/N",
                      help="run only shard I of N (split a batch over N machines or keys)")
    what.add_argument("--retry-failed", action="store_true",
                      help="also retry jobs that failed permanently (e.g. rejected prompts)")
    what.add_argument("--dry-run", action="store_true",
                      help="validate and estimate only; send nothing")
    what.add_argument("--take-over", action="store_true",
                      help="hand this output folder to this job file, though another job "
                           "file ran in it")
    what.add_argument("--discard-simulated", action="store_true",
                      help="remove the simulator's placeholder results from this folder "
                           "first, so a real run can use it")

    speed = run.add_argument_group("speed and limits")
    speed.add_argument("--concurrency", type=whole(1), default=8, metavar="N",
                       help="requests (v2: jobs) in flight at once (default 8)")
    speed.add_argument("--rate", type=number(0, above=True), metavar="RPM",
                       help=f"at most RPM requests in any 60 s, evenly spaced (default "
                            f"{DEFAULT_RATE:g}; none with --simulate)")
    speed.add_argument("--timeout", type=number(0, above=True), default=600.0, metavar="S",
                       help="seconds per request attempt (default 600)")

    money = run.add_argument_group("money")
    money.add_argument("--max-cost", type=dollars(), metavar="USD",
                       help="dollars this run may spend at most (exact: 0.38 buys 20 images)")
    money.add_argument("--require-credits", action="store_true",
                       help="stop (exit 3) before sending anything if the balance cannot pay "
                            "for every job")
    _model_options(run.add_argument_group("model"))

    retries = run.add_argument_group("retries and waiting")
    retries.add_argument("--retries", type=whole(0), default=5, metavar="N",
                         help="retries of 5xx, timeouts and connection errors (default 5)")
    retries.add_argument("--backoff", type=number(0, above=True), default=1.0, metavar="S",
                         help="seconds before the first retry, doubling, jittered (default 1)")
    retries.add_argument("--max-outage", type=number(0, above=True), default=600.0,
                         metavar="S", help="give up after the API has failed this long; "
                                           "jobs stay pending (default 600)")
    retries.add_argument("--grace", type=number(0), default=60.0, metavar="S",
                         help="after Ctrl-C/SIGTERM, how long requests in flight may finish "
                              "(default 60)")

    api = run.add_argument_group("API and v2")
    api.add_argument("--base-url", metavar="URL",
                     help=f"API base URL (default ${BASE_URL_ENV} or {DEFAULT_BASE_URL})")
    api.add_argument("--api", choices=("v1", "v2"), default="v1", metavar="v1|v2",
                     help="v1: one blocking request per image (default); v2: submit, poll, "
                          "collect")
    api.add_argument("--poll-interval", type=number(0, above=True), default=1.0, metavar="S",
                     help="v2: seconds before the first status poll, growing to 5 (default 1)")

    output = run.add_argument_group("output and logging")
    output.add_argument("--no-progress", action="store_true", help="no progress bar")
    loud = output.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true",
                      help="only errors and the summary line")
    loud.add_argument("-v", "--verbose", action="store_true", help="also a line per job")
    output.add_argument("--log-file", type=Path, metavar="FILE",
                        help="also append the whole log, with timestamps, to FILE")
    output.add_argument("--status-interval", type=number(0, above=True), default=30.0,
                        metavar="S",
                        help="seconds between progress lines without a terminal (default 30)")

    sim = run.add_argument_group("simulator")
    sim.add_argument("--simulate", action="store_true",
                     help="run against the built-in simulator: no key, no money; default "
                          f"folder output/<stem>{SIMULATED_SUFFIX}")
    sim.add_argument("--sim-credits", type=number(0), metavar="USD",
                     help="with --simulate: the account's balance (default unlimited)")
    sim.add_argument("--sim-latency", type=number(0), default=0.3, metavar="S",
                     help="with --simulate: seconds per image (default 0.3)")


def _validate_options(validate: Parser) -> None:
    what = validate.add_argument_group("what to check")
    _job_file_options(what)
    _model_options(what)
    what.add_argument("--json", action="store_true", help="print the estimate as JSON")


def _folder_options(parser: Parser, *, json: bool) -> None:
    where = parser.add_argument_group("which folder")
    where.add_argument("target", type=Path, metavar="FOLDER|JOBFILE", help=FOLDER_HELP)
    where.add_argument("--out", type=Path, metavar="DIR",
                       help="with a job file: the folder it ran into")
    if json:
        where.add_argument("--json", action="store_true", help="machine-readable")
