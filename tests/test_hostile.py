"""The second adversarial review, finding by finding: an image of an old prompt
adopted for an edited row, timeouts that were paid for, text the API sends that
UTF-8 cannot hold, a blocked image path, waits beyond --max-outage, signals outside
the worker phase, billed answers lost to a kill -9, and corrupt manifests."""

from __future__ import annotations

import json
import signal

import pytest

from batchgen.simulator import make_png
from batchgen.store import safe_stem

from .conftest import (
    FAST,
    PRICE,
    V2,
    events,
    kill_9_when,
    manifest_lines,
    recorded_micro,
    spawn,
    wait_for,
    write_jobs,
)


def run(cli, jobs, out, sim, *extra):
    return cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST, *extra)


def ends(proc, timeout=60):
    """The run ended by itself (a hang guard, not a timing assertion)."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_an_old_prompts_image_is_not_adopted_when_its_line_was_lost(tmp_path, sim,
                                                                     start_simulator, cli):
    """1: a crash lost ALPHA's success line, the row was edited to BETA, BETA was
    rejected: BETA must not become 'done' with ALPHA's picture."""
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("id,prompt\na,ALPHA a red fox\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim).code == 0
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(line + "\n" for line in manifest.read_text().splitlines()
                                if '"succeeded"' not in line), encoding="utf-8")
    jobs.write_text("id,prompt\na,BETA a blue whale\n", encoding="utf-8")
    rejecting = start_simulator(fault_script=["400"])
    assert run(cli, jobs, out, rejecting).code == 1
    again = run(cli, jobs, out, rejecting)
    assert again.code == 1 and "found its image" not in again.err
    assert events(out, "succeeded") == []
    assert json.loads(cli("status", out, "--json").out)["failed"] == 1


def test_a_paid_answer_that_comes_too_late_is_kept_aside_from_the_cap(tmp_path,
                                                                       start_simulator, cli):
    """2: the API billed the request, the client gave up first (--timeout): the retry
    must not push what the API billed past --max-cost."""
    sim = start_simulator(fault_script=["late"], hang=3)
    jobs = write_jobs(tmp_path / "jobs.csv", ["slow to say so"])
    out = tmp_path / "out"
    capped = run(cli, jobs, out, sim, "--timeout", "0.5", "--max-cost", "0.019")
    assert capped.code == 4, capped.err
    assert sim.charged == 1  # never a second request: its price was kept aside
    assert "may have been billed" in capped.err
    free = run(cli, jobs, tmp_path / "free", sim, "--timeout", "0.5")
    assert free.code == 0 and sim.charged == 2


def test_text_utf8_cannot_hold_from_the_api_is_recorded_safely(tmp_path, start_simulator,
                                                                cli):
    """3: an error message with a lone surrogate crashed the manifest writer."""
    sim = start_simulator(reject_message="bad \ud800 prompt")
    jobs = write_jobs(tmp_path / "jobs.csv", ["please [reject] me", "fine"])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim)
    assert result.code == 1 and "Traceback" not in result.err
    (failed,) = events(out, "failed")
    assert failed["error"].startswith("bad ") and "prompt" in failed["error"]
    assert (out / "results.csv").exists() and events(out, "run_finished")


def test_a_blocked_image_name_costs_nothing_and_says_what_to_remove(tmp_path, sim, cli):
    """4: a folder where an image must go made every rerun pay and throw it away."""
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("id,prompt\na,a fox\nb,a cat\n", encoding="utf-8")
    out = tmp_path / "out"
    (out / "images" / "a.png").mkdir(parents=True)
    for _ in range(2):
        result = run(cli, jobs, out, sim)
        assert result.code == 1 and "images/a.png is in the way" in result.err
    assert sim.charged == 1  # b, once; a never paid for
    (out / "images" / "a.png").rmdir()
    assert run(cli, jobs, out, sim).code == 0 and sim.charged == 2


def test_a_hanging_status_endpoint_ends_the_run_within_max_outage(tmp_path, start_simulator):
    """6: one hung poll held up every job, and the hang itself was not counted."""
    sim = start_simulator(latency=0.05, status_fault="timeout", hang=3600)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"hung {i}" for i in range(6)])
    out = tmp_path / "out"
    code, err = ends(spawn("run", jobs, "--out", out, "--base-url", sim.base_url, *V2,
                           "--timeout", "1", "--max-outage", "0.5", "--concurrency", "6"))
    assert code == 1, err
    pending = events(out, "pending")
    assert len(pending) == 6 and all(p["request_id"] for p in pending)
    polls = [r for r in sim.records if r.path.endswith("/status")]
    assert len(polls) <= 12  # polled side by side, once or twice each: not one by one


def test_an_api_that_never_answers_ends_the_run_after_max_outage(tmp_path, start_simulator):
    """6: the outage clock started only when the breaker opened, after 5 timeouts."""
    sim = start_simulator(fault_rate=1.0, fault_kinds=("timeout",), hang=3600)
    jobs = write_jobs(tmp_path / "jobs.csv", ["silence"])
    out = tmp_path / "out"
    code, err = ends(spawn("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST,
                           "--timeout", "1", "--max-outage", "1.5", "--concurrency", "1"))
    assert code == 1 and events(out, "run_finished")[0]["reason"] == "outage", err
    assert len(sim.generation_records()) <= 3


def test_a_v2_probe_that_was_accepted_reopens_the_pool(tmp_path, start_simulator, cli):
    """6: the breaker closed only when the probe's whole job finished."""
    sim = start_simulator(latency=4, fault_script=["503"] * 5)
    jobs = write_jobs(tmp_path / "jobs.csv", ["probe", "waiting"])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, "--api", "v2", "--poll-interval", "0.05",
                 "--max-outage", "3", "--concurrency", "2")
    assert result.code == 0, result.err
    assert sim.charged == 2


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_while_the_balance_is_checked_ends_the_run_cleanly(tmp_path,
                                                                     start_simulator,
                                                                     signum, code):
    """7: a signal outside the worker phase gave a KeyboardInterrupt traceback."""
    sim = start_simulator(credits_delay=30)
    jobs = write_jobs(tmp_path / "jobs.csv", ["never sent"])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST)
    wait_for(lambda: any(r.path == "/v1/get-user-credits" for r in sim.records))
    proc.send_signal(signum)
    returncode, err = ends(proc)
    assert returncode == code and "Traceback" not in err, err
    assert events(out, "run_finished")[0]["reason"] == "interrupted"
    assert sim.generation_records() == []


def test_billed_answers_are_on_record_before_a_kill(tmp_path, start_simulator):
    """8: three billed garbage answers waited in memory for the job's last line, and a
    kill -9 lost all three."""
    sim = start_simulator(fault_script=["garbage"] * 3 + ["timeout"], hang=3600)
    jobs = write_jobs(tmp_path / "jobs.csv", ["garbled thrice"])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST)
    kill_9_when(proc, lambda: len(sim.generation_records()) == 4)
    assert sim.charged == 3 and recorded_micro(out) == 3 * PRICE


MUTATIONS = [
    ("succeeded", "cost", 1e308), ("succeeded", "cost", -1), ("succeeded", "file", 5),
    ("succeeded", "bytes", "many"), ("succeeded", "metadata", ["x"]),
    ("succeeded", "prompt", "\ud800"), ("failed", "error", None), ("failed", "status", "x"),
    ("pending", "reason", 5), ("pending", "reason", ["x"]), ("pending", "request_id", []),
    ("run_started", "settings", "x"), ("run_started", "jobs", None),
    ("run_finished", "spent_total", "lots"), ("succeeded", "job_id", None),
]


@pytest.mark.parametrize(("event", "field", "value"), MUTATIONS)
def test_a_corrupt_manifest_line_is_skipped_never_a_traceback(tmp_path, start_simulator, cli,
                                                              event, field, value):
    """9: hand-edited fields crashed status, report and run."""
    sim = start_simulator(fault_script=["400", "500", "500", "500"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["rejected [reject]", "flaky", "fine", "more"])
    out = tmp_path / "out"
    run(cli, jobs, out, sim, "--retries", "0", "--max-cost", "0.019", "--concurrency", "1")
    lines = manifest_lines(out)
    target = next((line for line in lines if line["event"] == event), None)
    if target is None:  # make one: the batch left no such line
        target = {"event": event, "ts": "2026-12-01T00:00:00.000Z", "job_id": "x"}
        lines.append(target)
    target[field] = value
    (out / "manifest.jsonl").write_text(
        "".join(json.dumps(line, ensure_ascii=False).encode("utf-8", "surrogatepass")
                .decode("utf-8", "surrogateescape") + "\n" for line in lines),
        encoding="utf-8", errors="surrogateescape")
    for command in (("status", out), ("status", out, "--json"), ("report", out),
                    ("validate", jobs, "--out", out)):
        result = cli(*command)
        assert result.code == 0 and "Traceback" not in result.err, (command, result.err)
    again = run(cli, jobs, out, sim)
    assert again.code in (0, 1) and "Traceback" not in again.err, again.err


def test_a_folder_named_like_the_manifest_is_a_clear_error(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["a"])
    out = tmp_path / "out"
    (out / "manifest.jsonl").mkdir(parents=True)
    result = run(cli, jobs, out, sim)
    assert result.code == 2 and "Traceback" not in result.err and sim.records == []


def test_a_found_image_costs_nothing_in_what_is_left(tmp_path, start_simulator, cli):
    """10: status charged left_cost for an image the next run just keeps."""
    sim = start_simulator(fault_script=["503"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["kept after a crash"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--retries", "0").code == 1
    (failed,) = events(out, "failed")
    (out / "images" / f"{safe_stem(failed['job_id'])}.png").write_bytes(
        make_png("kept after a crash", "1:1"))
    info = json.loads(cli("status", out, "--json").out)
    assert info["pending_reasons"] == {"found": 1} and info["left"] == 0
