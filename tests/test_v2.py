"""--api v2: submit, poll, download - and a submitted job is polled on resume,
never submitted (and paid for) again."""

from __future__ import annotations

import signal
import time
from collections import Counter

from batchgen.store import image_extension

from .conftest import events, kill_9_when, manifest_lines, spawn, wait_for, write_jobs
from .test_unattended import assert_each_job_done_once

V2 = ("--api", "v2", "--poll-interval", "0.05", "--backoff", "0.01", "--no-progress",
      "--rate", "100000")


def submits_per_prompt(sim) -> Counter:
    return Counter(r.prompt for r in sim.records if r.method == "POST")


def status_polls(sim) -> Counter:
    return Counter(r.request_id for r in sim.records if r.path.endswith("/status"))


def test_v2_happy_path_records_the_request_id_before_the_result(tmp_path, start_simulator,
                                                                 cli):
    sim = start_simulator(latency=0.2, response_format="url")
    jobs = write_jobs(tmp_path / "jobs.csv", [f"v2 job {i}" for i in range(6)])
    out = tmp_path / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *V2)
    assert result.code == 0, result.err
    assert_each_job_done_once(out, 6)
    request_of = {}
    for line in manifest_lines(out):
        if line["event"] == "submitted":
            request_of[line["job_id"]] = line["request_id"]
        elif line["event"] == "succeeded":  # its submitted line came first, same request
            assert request_of[line["job_id"]] == line["request_id"]
    assert len(request_of) == 6
    assert sim.charged == 6 and set(submits_per_prompt(sim).values()) == {1}


def test_polling_load_per_job_stays_bounded(tmp_path, start_simulator, cli):
    sim = start_simulator(latency=1.0)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"poll {i}" for i in range(4)])
    assert cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url,
               *V2).code == 0
    polls = status_polls(sim)
    assert len(polls) == 4
    assert max(polls.values()) <= 10  # a 1 s job, first poll at 0.05 s, intervals growing


def test_kill_9_after_submit_then_resume_charges_nothing_extra(tmp_path, start_simulator, cli):
    sim = start_simulator(latency=1.5)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"crash v2 {i}" for i in range(4)])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, "--concurrency", "4",
                 *V2)
    kill_9_when(proc, lambda: len(events(out, "submitted")) == 4)
    assert events(out, "succeeded") == []
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *V2)
    assert result.code == 0, result.err
    assert_each_job_done_once(out, 4)
    assert sim.charged == 4
    assert set(submits_per_prompt(sim).values()) == {1}


def test_sigterm_between_submit_and_result_then_rerun_charges_once(
        tmp_path, start_simulator, cli):
    sim = start_simulator(latency=2.0)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"term v2 {i}" for i in range(3)])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, "--grace", "0.2",
                 *V2)
    wait_for(lambda: len(events(out, "submitted")) == 3)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 143
    pending = events(out, "pending")
    assert {p["reason"] for p in pending} == {"interrupted"} and all(
        p["request_id"] for p in pending)
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *V2).code == 0
    assert sim.charged == 3 and set(submits_per_prompt(sim).values()) == {1}


def test_a_v1_rerun_polls_a_v2_job_instead_of_posting_it(tmp_path, start_simulator, cli):
    sim = start_simulator(latency=1.0)
    jobs = write_jobs(tmp_path / "jobs.csv", ["switching apis"])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, *V2)
    kill_9_when(proc, lambda: events(out, "submitted"))
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, "--no-progress",
                 "--rate", "100000")  # plain v1
    assert result.code == 0
    assert sim.charged == 1 and len(sim.generation_records()) == 1


def test_expired_result_is_submitted_once_more_and_the_manifest_says_so(
        tmp_path, start_simulator, cli):
    sim = start_simulator(latency=0.3, result_ttl=0.2)
    jobs = write_jobs(tmp_path / "jobs.csv", ["expiring"])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, *V2)
    kill_9_when(proc, lambda: events(out, "submitted"))
    time.sleep(1.0)  # the result completes and expires while nobody is polling
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *V2)
    assert result.code == 0, result.err
    first, second = events(out, "submitted")
    assert second["replaces"] == first["request_id"] != second["request_id"]
    assert submits_per_prompt(sim)["expiring"] == 2
    (done,) = events(out, "succeeded")
    assert done["request_id"] == second["request_id"]
    assert image_extension((out / done["file"]).read_bytes()) == "png"


def test_failed_generation_is_recorded_with_the_api_message(tmp_path, start_simulator, cli):
    sim = start_simulator(latency=0.05)
    jobs = write_jobs(tmp_path / "jobs.csv", ["fine", "this one will [fail]"])
    out = tmp_path / "out"
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *V2).code == 1
    (failed,) = events(out, "failed")
    assert failed["error"] == "Generation failed: model error"
    assert failed["status"] == 422 and failed["retryable"] is False
    assert sim.charged == 1


def test_406_on_submit_stops_like_v1(tmp_path, start_simulator, cli):
    sim = start_simulator(latency=0.05, credits=0.019 * 2)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"credits v2 {i}" for i in range(5)])
    out = tmp_path / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *V2,
                 "--concurrency", "1")
    assert result.code == 3, result.err
    assert sim.charged == 2 and len(events(out, "succeeded")) == 2
    assert events(out, "pending")[0]["reason"] == "out_of_credits"
    sim.top_up(1)
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *V2).code == 0
    assert sim.charged == 5


def test_wrong_key_on_submit_exits_5(tmp_path, start_simulator, cli):
    sim = start_simulator(key="right")
    jobs = write_jobs(tmp_path / "jobs.csv", ["a", "b"])
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, *V2)
    assert result.code == 5
    assert events(tmp_path / "out", "failed") == []
