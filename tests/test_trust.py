"""Day-one trust (SPEC §8 M4, M5, P1): simulated results never count as real, an
output folder belongs to one job file, rows can be skipped on purpose, and nothing
POSIX-only stands between a Windows or macOS user and a run."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys

import pytest

from batchgen import RunConfig, load_jobs, run_batch
from batchgen.errors import JobFileError, UsageError

from .conftest import ROOT, TEST_KEY, events, manifest_lines, wait_for, write_jobs


def config(out, sim, **options) -> RunConfig:
    return RunConfig(out_dir=out, api_key=TEST_KEY, base_url=sim.base_url, rate=0,
                     backoff=0.01, **options)


# -- M5: simulated results never count as real -------------------------------------------


def test_a_real_run_into_a_folder_of_simulated_results_is_refused_before_sending(
        tmp_path, sim, start_simulator):
    jobs = load_jobs(write_jobs(tmp_path / "jobs.csv", ["a", "b", "c"]))
    out = tmp_path / "out"
    placeholder = start_simulator()
    assert run_batch(jobs, config(out, placeholder, simulated=True)).exit_code == 0
    assert events(out, "run_started")[0]["simulated"] is True
    with pytest.raises(UsageError, match="simulated results"):
        run_batch(jobs, config(out, sim))
    assert sim.records == []
    summary = run_batch(jobs, config(out, sim, discard_simulated=True))
    assert (summary.exit_code, summary.done_run) == (0, 3) and sim.charged == 3
    assert [line["simulated"] for line in events(out, "run_started")] == [False]
    assert len(list((out / "images").iterdir())) == 3


def test_a_simulated_run_into_a_folder_of_real_results_is_refused(tmp_path, sim):
    jobs = load_jobs(write_jobs(tmp_path / "jobs.csv", ["a"]))
    out = tmp_path / "out"
    assert run_batch(jobs, config(out, sim)).exit_code == 0
    with pytest.raises(UsageError, match="real results"):
        run_batch(jobs, config(out, sim, simulated=True))
    with pytest.raises(UsageError, match="real results"):
        run_batch(jobs, config(out, sim, simulated=True, discard_simulated=True))
    assert (out / "images").exists() and sim.charged == 1


# -- M4: one job file per output folder ----------------------------------------------------


def test_a_second_job_file_cannot_take_a_folder_by_accident(tmp_path, sim):
    """A.csv and B.csv both with an id `hero`: B would overwrite A's image and pay again."""
    a = tmp_path / "A.csv"
    a.write_text("id,prompt\nhero,a castle\nside,a tower\n", encoding="utf-8")
    b = tmp_path / "B.csv"
    b.write_text("id,prompt\nhero,a dragon\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run_batch(load_jobs(a), config(out, sim)).exit_code == 0
    with pytest.raises(UsageError, match="A.csv"):
        run_batch(load_jobs(b), config(out, sim))
    assert sim.charged == 2
    assert run_batch(load_jobs(b), config(out, sim, take_over=True)).exit_code == 0
    assert sim.charged == 3


def test_an_edited_or_moved_job_file_keeps_its_folder(tmp_path, sim):
    jobs = write_jobs(tmp_path / "jobs.csv", ["a", "b"])
    out = tmp_path / "out"
    assert run_batch(load_jobs(jobs), config(out, sim)).exit_code == 0
    moved = tmp_path / "elsewhere" / "renamed.csv"
    moved.parent.mkdir()
    shutil.move(jobs, moved)  # same content, new path: resumes, buys nothing
    assert run_batch(load_jobs(moved), config(out, sim)).done_run == 0
    write_jobs(moved, ["a", "b", "c"])  # same path, new content: an edit
    assert run_batch(load_jobs(moved), config(out, sim)).done_run == 1
    assert sim.charged == 3


# -- --skip-invalid --------------------------------------------------------------------------


def test_skip_invalid_runs_the_valid_rows_and_lists_the_rest(tmp_path, sim):
    path = tmp_path / "nightly.csv"
    path.write_text("id,prompt,aspect_ratio\na,a fox,16:9\nb,,1:1\nc,a cat,7:3\n"
                    "d,a dog,1:1\na,a twin,1:1\n", encoding="utf-8")
    with pytest.raises(JobFileError):
        load_jobs(path)
    jobs = load_jobs(path, skip_invalid=True)
    assert [job.id for job in jobs] == ["a", "d"]
    out = tmp_path / "out"
    summary = run_batch(jobs, config(out, sim))
    assert summary.exit_code == 1 and summary.reason == "invalid_rows"
    assert summary.done == 2 and summary.invalid == 3 and "invalid=3" in summary.line()
    with open(out / "invalid.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["row"], r["column"]) for r in rows] == [
        ("row 3", "prompt"), ("row 4", "aspect_ratio"), ("row 6", "id")]
    assert "7:3" in rows[1]["error"]
    path.write_text("id,prompt,aspect_ratio\na,a fox,16:9\nd,a dog,1:1\n", encoding="utf-8")
    fixed = run_batch(load_jobs(path, skip_invalid=True), config(out, sim))
    assert fixed.exit_code == 0 and not (out / "invalid.csv").exists()
    assert sim.charged == 2


def test_skip_invalid_still_refuses_a_file_that_is_wrong_as_a_whole(tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("text,ratio\na fox,1:1\n", encoding="utf-8")
    with pytest.raises(JobFileError, match="no 'prompt' column"):
        load_jobs(path, skip_invalid=True)
    empty = tmp_path / "all-bad.csv"
    empty.write_text("prompt,aspect_ratio\n,1:1\na,9:9\n", encoding="utf-8")
    with pytest.raises(JobFileError, match="is empty"):
        load_jobs(empty, skip_invalid=True)


# -- P1: portable ----------------------------------------------------------------------------


def test_batchgen_imports_and_validates_without_fcntl(tmp_path):
    """Windows has no fcntl: nothing may import it unconditionally."""
    jobs = write_jobs(tmp_path / "jobs.csv", ["a"])
    code = ("import sys; sys.modules['fcntl'] = None\n"
            "import batchgen.cli, batchgen.runner, batchgen.lock, batchgen.status\n"
            f"sys.exit(batchgen.cli.main(['validate', {str(jobs)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "1 jobs, valid" in done.stdout


def test_ctrl_c_works_where_the_loop_takes_no_signal_handlers(tmp_path, start_simulator):
    """On Windows, loop.add_signal_handler raises NotImplementedError: Ctrl-C must still
    stop the run cleanly (exit 130, everything recorded)."""
    sim = start_simulator(latency=0.3)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"windows {i}" for i in range(12)])
    out = tmp_path / "out"
    code = ("import asyncio, sys\n"
            "def refuse(*args, **kwargs): raise NotImplementedError\n"
            "asyncio.BaseEventLoop.add_signal_handler = refuse\n"
            "asyncio.SelectorEventLoop.add_signal_handler = refuse\n"
            "from batchgen.cli import main\n"
            "sys.exit(main(sys.argv[1:]))")
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "run", str(jobs), "--out", str(out), "--base-url",
         sim.base_url, "--concurrency", "2", "--no-progress", "--rate", "100000"],
        cwd=ROOT, env={**os.environ, "SEGMIND_API_KEY": TEST_KEY},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(lambda: any(line["event"] == "succeeded" for line in manifest_lines(out)))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert events(out, "run_finished")[0]["reason"] == "interrupted"
    assert sim.charged == len(events(out, "succeeded"))


# -- the same, as a user types it ----------------------------------------------------------


def test_try_it_simulated_then_for_real_never_mixes_the_two(tmp_path, sim, cli, monkeypatch):
    """The first-hour trap: `--simulate` to try, then a real run of the same file."""
    monkeypatch.chdir(tmp_path)
    jobs = write_jobs(tmp_path / "prompts.csv", ["a", "b"])
    tried = cli("run", jobs, "--simulate", "--no-progress", "--sim-latency", "0")
    assert tried.code == 0, tried.err
    simulated = tmp_path / "output" / "prompts-simulated"
    assert "simulated" in (simulated / "index.html").read_text(encoding="utf-8")
    assert "simulated" in cli("status", simulated).out
    real = cli("run", jobs, "--base-url", sim.base_url, "--no-progress", "--rate", "100000")
    assert real.code == 0 and sim.charged == 2  # its own folder: nothing counted as done
    into = cli("run", jobs, "--out", simulated, "--base-url", sim.base_url, "--no-progress")
    assert into.code == 2 and "--discard-simulated" in into.err
    assert sim.charged == 2


def test_skip_invalid_from_the_command_line(tmp_path, sim, cli):
    path = tmp_path / "nightly.csv"
    path.write_text("prompt,aspect_ratio\na fox,1:1\n,1:1\na cat,7:3\n", encoding="utf-8")
    out = tmp_path / "out"
    strict = cli("run", path, "--out", out, "--base-url", sim.base_url, "--no-progress")
    assert strict.code == 2 and sim.records == []
    result = cli("run", path, "--out", out, "--base-url", sim.base_url, "--no-progress",
                 "--skip-invalid")
    assert result.code == 1 and "invalid=2" in result.err
    assert "invalid.csv" in result.err and (out / "invalid.csv").exists()
    assert sim.charged == 1


def test_take_over_from_the_command_line(tmp_path, sim, cli):
    a, b = write_jobs(tmp_path / "a.csv", ["a"]), write_jobs(tmp_path / "b.csv", ["b"])
    out = tmp_path / "out"
    assert cli("run", a, "--out", out, "--base-url", sim.base_url, "--no-progress").code == 0
    refused = cli("run", b, "--out", out, "--base-url", sim.base_url, "--no-progress")
    assert refused.code == 2 and "a.csv" in refused.err and "--take-over" in refused.err
    assert cli("run", b, "--out", out, "--base-url", sim.base_url, "--no-progress",
               "--take-over").code == 0
    assert sim.charged == 2
