"""Unattended and hostile conditions: locks, signals, kill -9, 429 storms, outages,
credits, cron-friendly output, secrets and bad environments."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from batchgen.client import key_exposed
from batchgen.manifest import read_events, replay
from batchgen.store import image_extension

from .conftest import FAST, TEST_KEY, events, kill_9_when, spawn, wait_for, write_jobs

SUMMARY = re.compile(
    r"^done=\d+ failed=\d+ pending=\d+ spent=\$\d+\.\d+ total=\$\d+\.\d+ "
    r"(credits=\$\d+\.\d+ )?exit=\d+$")


def succeeded_count(out: Path) -> int:
    path = out / "manifest.jsonl"
    return path.read_text().count('"event": "succeeded"') if path.exists() else 0


def assert_each_job_done_once(out: Path, n: int) -> None:
    ids = [line["job_id"] for line in events(out, "succeeded")]
    assert len(ids) == len(set(ids)) == n
    for line in events(out, "succeeded"):
        assert image_extension((out / line["file"]).read_bytes()) == "png"


# -- one run per output folder ----------------------------------------------------------


def test_second_run_on_the_same_folder_exits_6_naming_the_holder(
        tmp_path, start_simulator, cli):
    sim = start_simulator(latency=1.0)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"locked {i}" for i in range(6)])
    out = tmp_path / "out"
    first = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, "--concurrency", "1",
                  *FAST)
    try:
        wait_for(lambda: (out / "manifest.jsonl").exists())
        second = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST)
        assert second.code == 6
        assert f"pid {first.pid}" in second.err
    finally:
        first.kill()  # kill -9: its lock must die with it
        first.wait()
    third = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST)
    assert third.code == 0, third.err
    assert_each_job_done_once(out, 6)


# -- signals ------------------------------------------------------------------------------


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_signal_lets_in_flight_requests_finish_and_rerun_completes_without_duplicates(
        tmp_path, start_simulator, cli, signum, code):
    sim = start_simulator(latency=0.3)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"signal {i}" for i in range(16)])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, "--concurrency", "4",
                 *FAST)
    wait_for(lambda: succeeded_count(out) >= 4)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code, err
    assert events(out, "run_finished")[0]["reason"] == "interrupted"
    assert sim.charged == succeeded_count(out)  # in-flight requests finished and were recorded
    assert (out / "results.csv").exists()
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST).code == 0
    assert sim.charged == 16
    assert_each_job_done_once(out, 16)


def test_second_signal_cancels_in_flight_requests_promptly(tmp_path, start_simulator, cli):
    sim = start_simulator(latency=30)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"slow {i}" for i in range(6)])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, "--concurrency", "3",
                 *FAST)
    wait_for(lambda: len(sim.generation_records()) == 3)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=15)  # far sooner than the 30 s latency or the 60 s grace
    assert proc.returncode == 130
    pending = events(out, "pending")
    assert len(pending) == 3 and {p["reason"] for p in pending} == {"interrupted"}
    assert sim.charged == 0


def test_kill_9_at_random_moments_never_loses_or_double_pays_more_than_in_flight(
        tmp_path, start_simulator, cli):
    sim = start_simulator(latency=0.15, jitter=0.1)
    n, concurrency = 30, 4
    jobs = write_jobs(tmp_path / "jobs.csv", [f"crash {i}" for i in range(n)])
    out = tmp_path / "out"
    kills = 0
    for delay in (0.4, 0.9, 0.6):
        proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url,
                     "--concurrency", str(concurrency), *FAST)
        wait_for(lambda: (out / "manifest.jsonl").exists())
        time.sleep(delay)
        proc.kill()
        proc.wait()
        kills += 1
        state = replay(out / "manifest.jsonl")  # always loadable, torn line or not
        for _, event in read_events(out / "manifest.jsonl"):
            if event is not None and event.name == "succeeded":
                assert image_extension((out / event.file).read_bytes()) == "png"
                assert state.jobs.get(event.job_id) is not None
    (out / "images" / ".half-written.png.123.tmp").write_bytes(b"\x89PNG\r\n")  # crash leftover
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST)
    assert result.code == 0, result.err
    assert_each_job_done_once(out, n)
    assert not any(p.name.endswith(".tmp") for p in (out / "images").iterdir())
    assert n <= sim.charged <= n + kills * concurrency


# -- adaptive rate and circuit breaker -------------------------------------------------------


def test_rate_set_too_high_converges_to_the_plan_limit(tmp_path, start_simulator, cli):
    """The account allows 600/min (scaled to 60 per 6 s); --rate says 1200/min."""
    sim = start_simulator(rpm=60, rate_window=6.0)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"storm {i}" for i in range(120)])
    out = tmp_path / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, "--backoff", "0.01",
                 "--no-progress", "--rate", "1200", "--concurrency", "8")
    assert result.code == 0, result.err
    statuses = [r.status for r in sim.generation_records()]
    assert statuses.count(200) == 120
    assert statuses.count(429) / len(statuses) < 0.2


def test_circuit_breaker_waits_out_an_outage_without_spending_retries(
        tmp_path, start_simulator, cli):
    sim = start_simulator(fault_script=["503"] * 7)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"outage {i}" for i in range(5)])
    out = tmp_path / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST,
                 "--concurrency", "5", "--retries", "1")
    assert result.code == 0, result.err  # without the breaker, one job would fail twice
    assert_each_job_done_once(out, 5)
    records = sim.generation_records()
    assert [r.status for r in records[:7]] == [503] * 7
    # While open: one probe at a time (its growing intervals are tested with a fake
    # clock in test_pacing). The breaker opens on the 5th failed answer; a quick retry
    # may have gone out just before, so the last two probes (records 6 and 7, the first
    # success) are the ones certain to be probes.
    assert records[7].status == 200 and records[7].in_flight == records[6].in_flight == 1


def test_outage_longer_than_max_outage_ends_the_run_with_jobs_pending(
        tmp_path, start_simulator, cli):
    sim = start_simulator(fault_rate=1.0, fault_kinds=("503",))
    jobs = write_jobs(tmp_path / "jobs.csv", [f"down {i}" for i in range(3)])
    out = tmp_path / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST,
                 "--concurrency", "3", "--max-outage", "1.5")
    assert result.code == 1
    assert events(out, "run_finished")[0]["reason"] == "outage"
    assert events(out, "failed") == []
    assert {p["reason"] for p in events(out, "pending")} == {"outage"}
    assert len(sim.generation_records()) < 12  # probes, not every job's retries


# -- pre-flight credits ----------------------------------------------------------------------


def test_preflight_says_how_many_jobs_the_balance_covers(tmp_path, start_simulator, cli):
    sim = start_simulator(credits=0.05)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"credit {i}" for i in range(10)])
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, *FAST)
    assert "the balance ($0.050) covers only 2 of the 10 jobs" in result.err
    assert result.code == 3 and sim.charged == 2
    assert "credits=$0.012" in result.err.strip().splitlines()[-1]


def test_require_credits_stops_before_sending_anything(tmp_path, start_simulator, cli):
    sim = start_simulator(credits=0.05)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"credit {i}" for i in range(10)])
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, *FAST,
                 "--require-credits")
    assert result.code == 3
    assert sim.generation_records() == []


def test_unavailable_credit_endpoint_is_reported_once_and_the_run_goes_on(
        tmp_path, start_simulator, cli):
    sim = start_simulator(credits_endpoint=False)
    jobs = write_jobs(tmp_path / "jobs.csv", ["a", "b"])
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, *FAST)
    assert result.code == 0
    assert result.err.count("could not check the account balance") == 1


# -- cron-friendly output ---------------------------------------------------------------------


def test_without_a_terminal_the_log_is_plain_with_status_lines_and_a_summary(
        tmp_path, start_simulator):
    sim = start_simulator(latency=0.05)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"cron {i}" for i in range(30)])
    log_file = tmp_path / "batch.log"
    proc = spawn("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url,
                 "--concurrency", "2", "--rate", "100000", "--status-interval", "0.1",
                 "--log-file", log_file)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0
    assert "\r" not in err and "\x1b" not in err
    assert "progress: " in err
    assert SUMMARY.match(err.strip().splitlines()[-1])
    assert "done=30 failed=0 pending=0" in log_file.read_text()


def test_quiet_prints_only_errors_and_the_summary(tmp_path, sim):
    jobs = write_jobs(tmp_path / "jobs.csv", ["ok", "bad [reject]"])
    proc = spawn("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, "-q",
                 *FAST)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert SUMMARY.match(lines[-1]) and len(lines) == 1 and out == ""


# -- security ---------------------------------------------------------------------------------


def test_the_key_never_appears_in_any_output(tmp_path, start_simulator):
    sim = start_simulator(fault_script=["500", "400", "garbage"], response_format="mixed")
    jobs = write_jobs(tmp_path / "jobs.csv", ["a", "b", "c", "d"])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, "-v", "--log-file",
                 tmp_path / "log.txt", *FAST)
    stdout, stderr = proc.communicate(timeout=60)
    texts = [stdout, stderr] + [p.read_text(errors="replace")
                                for p in [*out.rglob("*"), tmp_path / "log.txt"] if p.is_file()]
    assert all(TEST_KEY not in text for text in texts)


def test_hostile_ids_cannot_write_outside_images(tmp_path, sim, cli):
    ids = ["../../escape", "/etc/passwd", "a\u0000b", "CON", "x" * 300, "..", "a/b", "a_b"]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": i, "prompt": f"p {n}"}) + "\n"
                            for n, i in enumerate(ids)), encoding="utf-8")
    out = tmp_path / "out"
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST).code == 0
    files = sorted((out / "images").iterdir())
    assert len(files) == len(ids)
    assert all(f.parent == out / "images" and len(f.name) < 120 for f in files)
    assert sorted(p.name for p in out.iterdir()) == [
        ".batchgen.lock", ".manifest.checkpoint.npz", "images", "index.html", "manifest.jsonl",
        "results.csv"]


def test_key_over_plain_http_to_another_host_is_flagged():
    assert key_exposed("http://api.example.com")
    assert not key_exposed("https://api.segmind.com")
    assert not key_exposed("http://127.0.0.1:8765")


# -- bad environments -------------------------------------------------------------------------


def test_output_folder_that_cannot_be_created_is_a_clear_error(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["a"])
    (tmp_path / "a-file").write_text("not a folder")
    result = cli("run", jobs, "--out", tmp_path / "a-file" / "out", "--base-url", sim.base_url)
    assert result.code == 2 and "cannot create the output folder" in result.err
    assert sim.records == []


def test_disk_full_stops_the_run_and_leaves_a_consistent_manifest(
        tmp_path, start_simulator, cli, tiny_disk):
    sim = start_simulator(image_size=400)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"big image {i}" for i in range(200)])
    out = tiny_disk / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST,
                 "--concurrency", "2")
    assert result.code == 1, result.err
    assert "No space left on device" in result.err
    for _, event in read_events(out / "manifest.jsonl"):
        if event is not None and event.name == "succeeded":
            assert image_extension((out / event.file).read_bytes()) == "png"
    assert sim.charged < 200


def test_job_file_deleted_between_runs(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["a", "b"])
    out = tmp_path / "out"
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST).code == 0
    os.unlink(jobs)
    again = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST)
    assert again.code == 2 and "no such file" in again.err
    status = cli("status", out)
    assert status.code == 0 and "done 2" in status.out


def test_an_image_left_empty_by_a_power_cut_is_generated_again(tmp_path, start_simulator, cli):
    """Images are not fsync'd one by one: after a power cut, one written just before it
    can be an empty file under its final name, with its success line on disk."""
    sim = start_simulator(latency=0.05)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"power {i}" for i in range(8)])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, "--concurrency", "1",
                 *FAST)
    kill_9_when(proc, lambda: len(events(out, "succeeded")) >= 3)  # the run never finishes
    victim = events(out, "succeeded")[-1]
    (out / victim["file"]).write_bytes(b"")  # what the power cut left of it
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST).code == 0
    assert len({line["job_id"] for line in events(out, "succeeded")}) == 8
    assert [r.prompt for r in sim.generation_records()].count(victim["prompt"]) == 2
    assert image_extension((out / victim["file"]).read_bytes()) == "png"

