"""The command line explains itself, refuses to guess, and says how a run ended:
help texts, typos, bad values, what starting up imports, where the reports are,
failures grouped by cause, money still to go, and which folder a job file or
`--simulate` means (issue 13, points 5 and 6)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from batchgen import jobs as jobs_module
from batchgen import runner
from batchgen.arguments import build_parser
from batchgen.runner import RunSummary
from batchgen.status import cause_lines

from .conftest import DATA, FAST, ROOT, events, spawn, wait_for, write_jobs

COMMANDS = ["run", "validate", "status", "report", "simulator"]
SIMULATE = ("--simulate", "--sim-latency", "0.01", "--no-progress")
SUMMARY = re.compile(r"^done=\d+ failed=\d+ pending=\d+ spent=\$[\d.]+ total=\$[\d.]+ "
                     r"(credits=\$[\d.]+ )?exit=\d+$")


@pytest.fixture
def here(tmp_path, monkeypatch) -> Path:
    """Work in an empty folder, as a user in their project: output/ lands here."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


# -- help ---------------------------------------------------------------------------------


def test_batchgen_help_lists_every_command_with_its_purpose_and_a_quick_start(cli):
    result = cli("--help")
    assert result.code == 0
    for command in COMMANDS:
        assert re.search(rf"^    {command} +\S", result.out, re.M), command
    assert "batchgen run jobs/example.csv --simulate" in result.out
    assert cli("--version").out.startswith("batchgen ")


def test_run_help_groups_its_options_and_lists_environment_and_every_exit_code(cli):
    text = cli("run", "--help").out
    for title in ("what to run", "speed and limits", "money", "retries and waiting",
                  "API and v2", "output and logging", "simulator"):
        assert f"\n{title}:\n" in text, title
    assert "SEGMIND_API_KEY" in text and "SEGMIND_BASE_URL" in text
    for code in ("0", "1", "2", "3", "4", "5", "6", "130/143"):
        assert re.search(rf"^  {code} +\S", text, re.M), code
    assert "--max-cost USD" in text and "--shard I/N" in text and "--concurrency N" in text


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_help_has_a_purpose_environment_exit_codes_and_examples(cli, command):
    result = cli(command, "--help")
    assert result.code == 0
    for section in ("environment:", "exit codes:", "examples:"):
        assert f"\n{section}\n" in result.out, section
    examples = result.out.split("\nexamples:\n")[1]
    assert examples.count(f"batchgen {command}") >= 2
    parser = build_parser().commands[command]
    assert parser.description
    for action in parser._actions:  # every option explained; every value has a METAVAR
        assert action.help, action.option_strings
        if action.option_strings and action.nargs != 0:
            assert action.metavar, action.option_strings


# -- no guessing, and a suggestion --------------------------------------------------------


@pytest.mark.parametrize("args", [["--simulat"], ["--concurr", "2"], ["--max-c", "1"]])
def test_an_abbreviated_option_is_an_error_not_a_guess(here, cli, args):
    write_jobs(here / "jobs.csv", ["a fox"])
    result = cli("run", "jobs.csv", *args, key=None)
    assert result.code == 2
    assert f"unrecognized option {args[0]}" in result.err
    assert not (here / "output").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["run", "x.csv", "--max-cots", "5"], "option --max-cots; did you mean --max-cost?"),
    (["run", "x.csv", "--max-cots=5"], "option --max-cots; did you mean --max-cost?"),
    (["run", "x.csv", "--simulat"], "unrecognized option --simulat; did you mean --simulate?"),
    (["run", "x.csv", "--retry-faild"], "did you mean --retry-failed?"),
    (["status", "out", "--jsn"], "unrecognized option --jsn; did you mean --json?"),
    (["simulator", "--laterncy", "1"], "did you mean --latency?"),
    (["--verison"], "unrecognized option --verison; did you mean --version?"),
    (["rnu", "x.csv"], "unknown command 'rnu'; did you mean run?"),
])
def test_a_misspelt_option_or_command_suggests_the_right_one(cli, args, message):
    result = cli(*args)
    assert result.code == 2
    assert message in result.err
    assert "usage: batchgen" in result.err


# (command, option, bad value, what the message says about it)
BAD_VALUES = [
    ("run", "--concurrency", "x", "'x' is not a whole number ≥ 1"),
    ("run", "--concurrency", "0", "'0' is not a whole number ≥ 1"),
    ("run", "--limit", "-3", "'-3' is not a whole number ≥ 1"),
    ("run", "--retries", "many", "'many' is not a whole number ≥ 0"),
    ("run", "--rate", "fast", "'fast' is not a number > 0"),
    ("run", "--rate", "0", "'0' is not a number > 0"),
    ("run", "--timeout", "nan", "'nan' is not a number > 0"),
    ("run", "--backoff", "-1", "'-1' is not a number > 0"),
    ("run", "--max-outage", "inf", "'inf' is not a number > 0"),
    ("run", "--grace", "-1", "'-1' is not a number ≥ 0"),
    ("run", "--poll-interval", "0", "'0' is not a number > 0"),
    ("run", "--status-interval", "often", "'often' is not a number > 0"),
    ("run", "--max-cost", "ten", "'ten' is not a dollar amount"),
    ("run", "--max-cost", "-1", "'-1' is not a dollar amount"),
    ("run", "--price", "0", "'0' is not a dollar amount > 0"),
    ("run", "--shard", "3", "'3' is not I/N"),
    ("run", "--shard", "5/4", "'5/4' is not I/N with 1 ≤ I ≤ N"),
    ("run", "--aspect-ratio", "7:3", "'7:3' is not one of 1:1, 16:9"),
    ("run", "--api", "v3", "invalid choice: 'v3'"),
    ("run", "--sim-credits", "lots", "'lots' is not a number ≥ 0"),
    ("run", "--variants", "0", "'0' is not a whole number from 1 to 100"),
    ("run", "--param", "seed", "'seed' is not NAME=VALUE"),
    ("validate", "--variants", "many", "'many' is not a whole number from 1 to 100"),
    ("validate", "--param", "=1", "'=1' is not NAME=VALUE"),
    ("run", "--model", "../../etc", "'../../etc' is not a model slug"),
    ("validate", "--model", "a/b?x=1", "'a/b?x=1' is not a model slug"),
    ("validate", "--param", "seed=\udcff", "'seed=\\udcff' is not valid UTF-8 text"),
    ("run", "--sim-latency", "-1", "'-1' is not a number ≥ 0"),
    ("validate", "--price", "free", "'free' is not a dollar amount > 0"),
    ("validate", "--aspect-ratio", "square", "'square' is not one of"),
    ("simulator", "--port", "http", "'http' is not a whole number from 0 to 65535"),
    ("simulator", "--latency", "slow", "'slow' is not a number ≥ 0"),
    ("simulator", "--jitter", "-1", "'-1' is not a number ≥ 0"),
    ("simulator", "--credits", "x", "'x' is not a number ≥ 0"),
    ("simulator", "--price", "-1", "'-1' is not a number ≥ 0"),
    ("simulator", "--rpm", "0", "'0' is not a whole number ≥ 1"),
    ("simulator", "--rate-window", "0", "'0' is not a number > 0"),
    ("simulator", "--format", "gif", "invalid choice: 'gif'"),
    ("simulator", "--fault-rate", "1.5", "'1.5' is not a number from 0 to 1"),
    ("simulator", "--faults", "500,oops", "'oops' is not one of 500, 502"),
    ("simulator", "--fault-script", "503,oops", "'oops' is not one of 500, 502"),
    ("simulator", "--retry-after", "-1", "'-1' is not a number ≥ 0"),
    ("simulator", "--status-faults", "503,weird", "'weird' is not an HTTP status"),
    ("simulator", "--status-fault", "503,504", "'503,504' is not one word"),
    ("simulator", "--file-faults", "CANCELLED", "'CANCELLED' is not an HTTP status"),
    ("simulator", "--file-fault", "x", "'x' is not an HTTP status"),
    ("simulator", "--seed", "x", "'x' is not a whole number"),
    ("simulator", "--hang", "-1", "'-1' is not a number ≥ 0"),
    ("simulator", "--image-size", "0", "'0' is not a whole number ≥ 1"),
    ("simulator", "--queue-delay", "x", "'x' is not a number ≥ 0"),
    ("simulator", "--result-ttl", "-5", "'-5' is not a number ≥ 0"),
    ("simulator", "--credits-delay", "soon", "'soon' is not a number ≥ 0"),
]


@pytest.mark.parametrize(("command", "option", "value", "says"), BAD_VALUES,
                         ids=[f"{c} {o} {v}" for c, o, v, _ in BAD_VALUES])
def test_a_bad_value_is_named_by_its_option_in_plain_words(here, cli, command, option, value,
                                                           says):
    target = ["jobs.csv"] if command in ("run", "validate") else []
    result = cli(command, *target, f"{option}={value}", key=None)
    assert result.code == 2
    last = result.err.strip().splitlines()[-1]
    named = "--variants/--count" if option == "--variants" else option  # one option, two names
    assert f"error: {named}: {says}" in last
    assert not re.search(r"(?<![\w-])_\w", last), last  # no _positive_int and the like
    assert "invalid int" not in last and "invalid float" not in last
    assert "Traceback" not in result.err


@pytest.mark.parametrize("command", ["run", "validate", "simulator"])
def test_every_option_that_converts_its_value_is_checked_above(command):
    parser = build_parser().commands[command]
    checked = {option for c, option, _, _ in BAD_VALUES if c == command}
    converting = {action.option_strings[0] for action in parser._actions
                  if action.option_strings and action.nargs != 0
                  and (action.choices or action.type not in (None, Path))}
    assert converting <= checked, converting - checked


# -- start-up -------------------------------------------------------------------------------


def test_importing_the_cli_and_asking_for_help_load_no_pandas_aiohttp_or_tqdm(tmp_path):
    """`--help` and `--version` stay fast: heavy modules wait for the command that needs
    them (pandas to read a table, aiohttp to call an API, tqdm to draw a bar)."""
    heavy = "sorted(m for m in ('pandas', 'aiohttp', 'tqdm', 'yaml') if m in sys.modules)"
    code = "\n".join([
        "import contextlib, io, sys",
        "import batchgen.cli",
        f"print({heavy})",
        "with contextlib.redirect_stdout(io.StringIO()):",
        f"    for args in (['--help'], ['--version'], *[[c, '--help'] for c in {COMMANDS}]):",
        "        assert batchgen.cli.main(args) == 0, args",
        f"print({heavy})",
        "with contextlib.redirect_stdout(io.StringIO()):",
        f"    assert batchgen.cli.main(['validate', {str(ROOT / 'jobs' / 'example.csv')!r},",
        f"                              '--out', {str(tmp_path / 'out')!r}]) == 0",
        f"print({heavy})",
    ])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    imported, after_help, after_validate = done.stdout.splitlines()
    assert imported == after_help == "[]"
    assert after_validate == "['pandas']"  # a table was read; no API, no bar


# -- the end of a run -----------------------------------------------------------------------


def test_a_run_ends_saying_where_its_gallery_and_results_are(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["a fox", "a dog"])
    out = tmp_path / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST)
    assert result.code == 0, result.err
    lines = result.err.strip().splitlines()
    assert lines[-3:-1] == [f"gallery: {out / 'index.html'}", f"results: {out / 'results.csv'}"]
    assert SUMMARY.match(lines[-1])


@pytest.mark.parametrize(("stop", "code"), [(("--sim-credits", "0.05"), 3),
                                            (("--max-cost", "0.04"), 4)],
                         ids=["out-of-credits", "budget"])
def test_a_run_stopped_by_credits_or_budget_still_says_where_its_reports_are(
        here, cli, stop, code):
    write_jobs(here / "jobs.csv", [f"a fox {i}" for i in range(6)])
    result = cli("run", "jobs.csv", *SIMULATE, "--concurrency", "1", *stop, key=None)
    assert result.code == code, result.err
    assert "gallery: output/jobs-simulated/index.html" in result.err
    assert "results: output/jobs-simulated/results.csv" in result.err
    assert (here / "output" / "jobs-simulated" / "index.html").is_file()


def test_ctrl_c_still_says_where_the_reports_are(tmp_path, start_simulator):
    sim = start_simulator(latency=0.3)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"a fox {i}" for i in range(20)])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, "--concurrency", "2",
                 *FAST)
    wait_for(lambda: bool(events(out, "succeeded")))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert "interrupted: " in err and "rerun the same command" in err
    assert f"gallery: {out / 'index.html'}" in err and f"results: {out / 'results.csv'}" in err
    assert SUMMARY.match(err.strip().splitlines()[-1])


def test_a_run_ends_with_its_failures_grouped_by_cause_and_status_groups_them_alike(
        tmp_path, start_simulator, cli):
    sim = start_simulator(fault_script=["503"])  # the first request: a server error
    prompts = ["first", "a [reject] 1", "fine", "a [reject] 2", "a [reject] 3"]
    jobs = write_jobs(tmp_path / "jobs.csv", prompts)
    out = tmp_path / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, "--concurrency", "1",
                 "--retries", "0", *FAST)
    assert result.code == 1, result.err
    lines = result.err.splitlines()
    start = lines.index("warning: 4 jobs failed in this run, by cause:")
    grouped = lines[start + 1:start + 3]
    assert grouped[0] == "  3 × 400 Prompt rejected by content filter"
    assert grouped[1].startswith("  1 × 503 ")
    assert SUMMARY.match(lines[-1])
    status = cli("status", out).out.splitlines()
    at = status.index("  failures by cause:")
    assert status[at + 1:at + 3] == ["  " + line for line in grouped]


def test_past_ten_causes_the_rest_are_counted_on_one_line():
    causes = {f"400 problem {i}": 20 - i for i in range(13)}
    lines = cause_lines(causes)
    assert len(lines) == 11
    assert lines[0] == "  20 × 400 problem 0" and lines[9] == "  11 × 400 problem 9"
    assert lines[10] == "  … and 3 more causes (27 jobs)"
    assert cause_lines({"a": 1, "b": 3}) == ["  3 × b", "  1 × a"]


def test_the_progress_line_says_what_was_spent_and_about_what_is_to_go(
        tmp_path, start_simulator, cli):
    sim = start_simulator(latency=0.04)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"a fox {i}" for i in range(20)])
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url,
                 "--concurrency", "1", "--status-interval", "0.05", *FAST)
    assert result.code == 0, result.err
    progress = re.findall(r"^progress: (\d+)/20 \((\d+) done, 0 failed, \$([\d.]+) spent, "
                          r"about \$([\d.]+) to go.*$", result.err, re.M)
    assert progress, result.err
    for finished, done, spent, to_go in progress:  # one job at a time: nothing in between
        assert finished == done
        assert Decimal(spent) + Decimal(to_go) == Decimal("0.38")


# -- which folder ---------------------------------------------------------------------------


def test_simulate_writes_to_its_own_folder_beside_the_real_one(here, cli):
    write_jobs(here / "jobs.csv", ["a fox", "a dog"])
    result = cli("run", "jobs.csv", *SIMULATE, key=None)
    assert result.code == 0, result.err
    assert (here / "output" / "jobs-simulated" / "manifest.jsonl").is_file()
    assert not (here / "output" / "jobs").exists()
    dry = cli("run", "jobs.csv", "--simulate", "--dry-run", key=None)
    assert dry.code == 0
    assert "already done: 2 (0 failed permanently) in output/jobs-simulated" in dry.out
    assert cli("run", "jobs.csv", "--dry-run", key=None).out.count("already done") == 0


def test_status_report_and_validate_take_the_job_file_instead_of_its_folder(here, sim, cli):
    write_jobs(here / "poster.csv", ["a fox", "a [reject] dog", "a cow"])
    assert cli("run", "poster.csv", "--base-url", sim.base_url, *FAST).code == 1
    folder = Path("output") / "poster"
    by_file, by_folder = cli("status", "poster.csv"), cli("status", folder)
    assert by_file.code == by_folder.code == 0
    assert by_file.out == by_folder.out and by_file.out.startswith("output/poster: 3 jobs")
    assert (json.loads(cli("status", "poster.csv", "--json").out)
            == json.loads(cli("status", folder, "--json").out))
    report = cli("report", "poster.csv")
    assert report.code == 0 and report.out.split() == [str(folder / "results.csv"),
                                                       str(folder / "index.html")]
    validate = cli("validate", "poster.csv", key=None)
    assert "already done: 2 (1 failed permanently) in output/poster; left: 0" in validate.out
    # --out names the folder a job file ran into
    assert cli("run", "poster.csv", "--out", "elsewhere", "--base-url", sim.base_url,
               *FAST).code == 1
    elsewhere = json.loads(cli("status", "poster.csv", "--out", "elsewhere", "--json").out)
    assert elsewhere["out_dir"] == "elsewhere" and elsewhere["runs"] == 1


def test_a_job_file_run_only_with_simulate_shows_its_simulated_folder_and_says_so(here, cli):
    write_jobs(here / "jobs.csv", ["a fox", "a dog"])
    assert cli("run", "jobs.csv", *SIMULATE, key=None).code == 0
    status = cli("status", "jobs.csv")
    assert status.code == 0 and status.out.startswith("output/jobs-simulated: 2 jobs")
    assert "note: output/jobs holds no run of jobs.csv; showing the simulated run in " \
           "output/jobs-simulated" in status.err
    report = cli("report", "jobs.csv")
    assert report.code == 0 and "output/jobs-simulated/index.html" in report.out


def test_a_job_file_that_has_not_run_or_a_folder_with_out_is_a_usage_error(here, cli):
    write_jobs(here / "jobs.csv", ["a fox"])
    for command in ("status", "report"):
        never = cli(command, "jobs.csv")
        assert never.code == 2
        assert "jobs.csv has not run into output/jobs yet" in never.err
        assert "batchgen validate jobs.csv" in never.err
        here.joinpath("somewhere").mkdir(exist_ok=True)
        both = cli(command, "somewhere", "--out", "other")
        assert both.code == 2 and "--out goes with a job file" in both.err
        missing = cli(command, "nope.csv")
        assert missing.code == 2 and "nope.csv: no such output folder or job file" in missing.err


def test_validate_json_is_the_estimate_for_scripts(tmp_path, sim, cli):
    out = tmp_path / "out"
    result = cli("validate", DATA / "ratio_spellings.csv", "--out", out, "--json", key=None)
    assert result.code == 0, result.err
    info = json.loads(result.out)
    assert info["jobs"] == 9 and info["by_ratio"] == {"16:9": 6, "1:1": 2, "9:16": 1}
    assert info["cost"] == pytest.approx(0.171)
    assert info["by_model"] == {"luma-photon-txt-2-img": 9}
    assert info["started"] is False and info["left"] == 9 and info["out_dir"] == str(out)
    assert cli("run", DATA / "ratio_spellings.csv", "--out", out, "--base-url", sim.base_url,
               "--limit", "3", *FAST).code == 0
    info = json.loads(cli("validate", DATA / "ratio_spellings.csv", "--out", out, "--json",
                          key=None).out)
    assert (info["started"], info["done"], info["left"]) == (True, 3, 6)
    assert info["left_cost"] == pytest.approx(0.114)


# -- options handed to the library ------------------------------------------------------


@pytest.mark.parametrize("flags", [(), ("--take-over", "--discard-simulated", "--skip-invalid")])
def test_take_over_discard_simulated_and_skip_invalid_reach_the_library(
        tmp_path, cli, monkeypatch, flags):
    seen: dict = {}
    load_jobs = jobs_module.load_jobs

    def spy_load(path, **options):
        seen["load"] = options
        return load_jobs(path, **options)

    async def fake_run(jobs, config, **_):
        seen["config"] = config
        return RunSummary(exit_code=0, reason="completed", done=0, failed=0, pending=0,
                          spent_run_micro=0, spent_total_micro=0)

    monkeypatch.setattr(jobs_module, "load_jobs", spy_load)
    monkeypatch.setattr(runner, "arun_batch", fake_run)
    jobs = write_jobs(tmp_path / "jobs.csv", ["a fox"])
    result = cli("run", jobs, "--out", tmp_path / "out", "--simulate", "--no-progress", *flags,
                 key=None)
    assert result.code == 0, result.err
    given = bool(flags)
    assert seen["load"]["skip_invalid"] is given
    config = seen["config"]
    assert (config.take_over, config.discard_simulated, config.simulated) == (given, given, True)


@pytest.mark.parametrize("args", [["models"], ["models", "ssd-1b"], ["--help"]])
def test_output_into_a_closed_pipe_ends_quietly(args):
    """`batchgen models | head -1`: the reader has gone before batchgen writes."""
    proc = subprocess.Popen([sys.executable, "-m", "batchgen", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    _, err = proc.communicate(timeout=60)
    assert b"Traceback" not in err and b"BrokenPipe" not in err, err.decode()
    assert proc.returncode in (0, 141)
