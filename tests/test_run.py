"""The run, as a user sees it: files, manifest lines, exit codes and the money
the simulator charged."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchgen import RunConfig, load_jobs, run_batch
from batchgen.manifest import read_events
from batchgen.store import image_extension

from .conftest import FAST, TEST_KEY, events, manifest_lines, write_jobs


def run(cli, jobs: Path, out: Path, sim, *extra: str):
    return cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST, *extra)


def test_happy_path_writes_every_image_and_charges_once_per_image(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", [f"a photo of thing {i}" for i in range(12)])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, "--rate", "6000")
    assert result.code == 0, result.err
    succeeded = events(out, "succeeded")
    assert len(succeeded) == 12
    for line in succeeded:
        data = (out / line["file"]).read_bytes()
        assert image_extension(data) == "png"
        assert line["cost"] == 0.019 and line["attempts"] == 1
        assert line["bytes"] == len(data)
    assert sim.charged == 12
    assert "done=12 failed=0 pending=0 spent=$0.228 total=$0.228 exit=0" in result.err
    started, finished = events(out, "run_started")[0], events(out, "run_finished")[0]
    assert started["jobs"] == 12 and started["job_file"] == str(jobs.resolve())
    assert finished["exit_code"] == 0 and finished["spent_total"] == pytest.approx(0.228)


def test_every_response_format_is_saved_as_an_image(tmp_path, start_simulator, cli):
    sim = start_simulator(response_format="mixed")
    jobs = write_jobs(tmp_path / "jobs.csv", [f"format test {i}" for i in range(6)])
    assert run(cli, jobs, tmp_path / "out", sim).code == 0
    files = [tmp_path / "out" / line["file"] for line in events(tmp_path / "out", "succeeded")]
    assert len(files) == 6 and all(image_extension(f.read_bytes()) == "png" for f in files)


def test_rerun_of_a_finished_batch_sends_nothing(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["one", "two", "three"])
    assert run(cli, jobs, tmp_path / "out", sim).code == 0
    before = len(sim.generation_records())
    result = run(cli, jobs, tmp_path / "out", sim)
    assert result.code == 0
    assert len(sim.generation_records()) == before == 3
    assert "done=3 failed=0 pending=0 spent=$0.00 total=$0.057 exit=0" in result.err


def test_concurrency_is_reached_and_never_exceeded(tmp_path, start_simulator, cli):
    sim = start_simulator(latency=0.1)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"concurrency {i}" for i in range(24)])
    assert run(cli, jobs, tmp_path / "out", sim, "--concurrency", "4").code == 0
    assert sim.max_in_flight == 4


def test_429_is_retried_and_does_not_use_up_retries(tmp_path, start_simulator, cli):
    sim = start_simulator(fault_script=["429"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["rate limited once"])
    result = run(cli, jobs, tmp_path / "out", sim, "--retries", "0", "--rate", "600")
    assert result.code == 0, result.err
    first, second = sim.generation_records()
    assert (first.status, second.status) == (429, 200)
    assert events(tmp_path / "out", "succeeded")[0]["attempts"] == 2


def test_server_errors_are_retried_until_success(tmp_path, start_simulator, cli):
    sim = start_simulator(fault_script=["500", "503"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["flaky"])
    assert run(cli, jobs, tmp_path / "out", sim).code == 0
    assert [r.status for r in sim.generation_records()] == [500, 503, 200]
    assert events(tmp_path / "out", "succeeded")[0]["attempts"] == 3
    assert sim.charged == 1


def test_exhausted_retries_are_retryable_failures_that_the_next_run_retries(
        tmp_path, start_simulator, cli):
    sim = start_simulator(fault_script=["502", "502", "502"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["stubborn"])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, "--retries", "2")
    assert result.code == 1
    (failed,) = events(out, "failed")
    assert failed["retryable"] is True and failed["status"] == 502 and failed["attempts"] == 3
    assert failed["cost"] == 0
    assert run(cli, jobs, out, sim, "--retries", "2").code == 0
    assert sim.charged == 1 and len(events(out, "succeeded")) == 1


def test_timeouts_are_retried(tmp_path, start_simulator, cli):
    sim = start_simulator(fault_script=["timeout"], hang=5)
    jobs = write_jobs(tmp_path / "jobs.csv", ["slow"])
    assert run(cli, jobs, tmp_path / "out", sim, "--timeout", "0.3").code == 0
    assert [r.status for r in sim.generation_records()][-1] == 200
    assert sim.charged == 1


def test_rejected_prompt_is_a_permanent_failure_not_resent(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["fine", "bad [reject] prompt", "also fine"])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim)
    assert result.code == 1
    (failed,) = events(out, "failed")
    assert failed["retryable"] is False and failed["status"] == 400
    assert failed["error"] == "Prompt rejected by content filter"
    assert len(events(out, "succeeded")) == 2
    rerun = run(cli, jobs, out, sim)
    assert rerun.code == 1  # only the permanent failure remains
    rejected = [r for r in sim.generation_records() if "[reject]" in (r.prompt or "")]
    assert len(rejected) == 1
    run(cli, jobs, out, sim, "--retry-failed")
    rejected = [r for r in sim.generation_records() if "[reject]" in (r.prompt or "")]
    assert len(rejected) == 2


def test_wrong_key_aborts_at_once_and_marks_nothing_failed(tmp_path, start_simulator, cli):
    sim = start_simulator(key="the-right-key")
    jobs = write_jobs(tmp_path / "jobs.csv", [f"job {i}" for i in range(30)])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, "--concurrency", "4")
    assert result.code == 5
    assert "SEGMIND_API_KEY" in result.err
    assert len(sim.generation_records()) <= 4
    assert events(out, "failed") == [] and events(out, "succeeded") == []
    assert TEST_KEY not in result.err


def test_out_of_credits_stops_then_rerun_after_top_up_charges_nothing_twice(
        tmp_path, start_simulator, cli):
    sim = start_simulator(credits=0.019 * 5, latency=0.02)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"credit {i}" for i in range(12)])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, "--concurrency", "3")
    assert result.code == 3
    assert "Top up and rerun the same command" in result.err
    assert sim.charged == 5 and len(events(out, "succeeded")) == 5
    assert events(out, "failed") == []
    assert {p["reason"] for p in events(out, "pending")} == {"out_of_credits"}
    assert "done=5 failed=0 pending=7" in result.err
    sim.top_up(1.0)
    assert run(cli, jobs, out, sim).code == 0
    assert sim.charged == 12 and len(list((out / "images").iterdir())) == 12
    ids = [line["job_id"] for line in events(out, "succeeded")]
    assert len(ids) == len(set(ids)) == 12


@pytest.mark.parametrize("concurrency", ["1", "8"])
def test_budget_cap_buys_exactly_what_it_pays_for(tmp_path, start_simulator, cli, concurrency):
    sim = start_simulator(latency=0.01)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"budget {i}" for i in range(30)])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, "--max-cost", "0.38", "--concurrency", concurrency)
    assert result.code == 4
    assert sim.charged == 20  # $0.38 / $0.019, in exact arithmetic
    assert "spent=$0.38 " in result.err
    finished = events(out, "run_finished")[0]
    assert finished["reason"] == "budget" and finished["spent_run"] <= 0.38


def test_edited_job_file_charges_only_new_and_changed_rows(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["keep me", "change me", "keep me too"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim).code == 0
    write_jobs(jobs, ["keep me too", "keep me", "changed!", "brand new"])
    assert run(cli, jobs, out, sim).code == 0
    prompts = [r.prompt for r in sim.generation_records()]
    assert sorted(prompts[3:]) == ["brand new", "changed!"]
    assert sim.charged == 5


def test_edited_prompt_under_a_user_id_is_generated_again(tmp_path, sim, cli):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("id,prompt\nhero,a castle\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim).code == 0
    jobs.write_text("id,prompt\nhero,a castle at night\n", encoding="utf-8")
    assert run(cli, jobs, out, sim).code == 0
    assert [r.prompt for r in sim.generation_records()] == ["a castle", "a castle at night"]


def test_identical_rows_are_two_images(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["twice", "twice"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim).code == 0
    assert sim.charged == 2 and len(list((out / "images").iterdir())) == 2


def test_torn_last_line_is_skipped_and_the_batch_resumes(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", [f"torn {i}" for i in range(4)])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--limit", "2").code == 0
    with open(out / "manifest.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"event": "succeeded", "job_id": "torn-3", "pro')  # crash mid-write
    result = run(cli, jobs, out, sim)
    assert result.code == 0
    assert "torn by a crash" in result.err
    assert sim.charged == 4
    assert "torn by a crash" not in run(cli, jobs, out, sim).err  # said once, not every run
    lines = (out / "manifest.jsonl").read_text().splitlines()
    bad = [line for line in lines if not line.startswith("{") or not line.endswith("}")]
    assert len(bad) == 1  # the torn line stays alone on its line; later events are whole
    readable = [e for _, e in read_events(out / "manifest.jsonl") if e is not None]
    assert len(readable) == len(lines) - 1


def test_garbage_200_is_paid_for_but_never_a_success(tmp_path, start_simulator, cli):
    sim = start_simulator(fault_script=["garbage"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["garbled"])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim)
    assert result.code == 0
    (line,) = events(out, "succeeded")
    (garbage,) = events(out, "failed")  # the billed garbage, on record as it arrived
    assert line["attempts"] == 2 and line["cost"] + garbage["cost"] == pytest.approx(0.038)
    assert image_extension((out / line["file"]).read_bytes()) == "png"
    assert "spent=$0.038" in result.err


def test_garbage_200_every_time_is_a_retryable_failure_with_its_cost(
        tmp_path, start_simulator, cli):
    sim = start_simulator(fault_script=["garbage", "garbage"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["garbled"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--retries", "1").code == 1
    first, failed = events(out, "failed")
    assert failed["retryable"] and first["cost"] + failed["cost"] == pytest.approx(0.038)
    assert "invalid image data" in failed["error"]
    assert list((out / "images").iterdir()) == []


def test_limit_and_shards_split_the_work(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", [f"shard {i}" for i in range(20)])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--limit", "3").code == 0
    assert sim.charged == 3
    assert run(cli, jobs, out, sim, "--shard", "1/2").code == 0
    assert run(cli, jobs, out, sim, "--shard", "2/2").code == 0
    assert sim.charged == 20


def test_dry_run_sends_nothing(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["a", "b"])
    result = run(cli, jobs, tmp_path / "out", sim, "--dry-run")
    assert result.code == 0 and "$0.038" in result.out
    assert sim.records == []


def test_missing_key_is_a_usage_error(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["a"])
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, key=None)
    assert result.code == 2 and "SEGMIND_API_KEY" in result.err
    assert sim.records == []


def test_python_api_runs_and_resumes(tmp_path, sim):
    jobs_file = write_jobs(tmp_path / "jobs.csv", ["api one", "api two"])
    config = RunConfig(out_dir=tmp_path / "out", api_key=TEST_KEY, base_url=sim.base_url,
                       rate=0)
    summary = run_batch(load_jobs(jobs_file), config)
    assert (summary.exit_code, summary.done, summary.spent_run_micro) == (0, 2, 38_000)
    again = run_batch(load_jobs(jobs_file), config)
    assert (again.done_run, again.spent_total_micro) == (0, 38_000)
    assert sim.charged == 2
    assert TEST_KEY not in (tmp_path / "out" / "manifest.jsonl").read_text()
    assert all(line.get("event") for line in manifest_lines(tmp_path / "out"))


def _replays_agree(out: Path) -> None:
    """The checkpoint's replay, extended, is exactly the full replay of the manifest."""
    from batchgen.checkpoint import CHECKPOINT_NAME
    from batchgen.manifest import replay

    manifest = out / "manifest.jsonl"
    quick, full = replay(manifest, out / CHECKPOINT_NAME), replay(manifest)
    assert (quick.bad_lines, quick.torn_tail, quick.offset, quick.lines, quick.spent_micro,
            quick.digest.hexdigest()) == (full.bad_lines, full.torn_tail, full.offset,
                                          full.lines, full.spent_micro, full.digest.hexdigest())
    ids = {e.job_id for _, e in read_events(manifest) if e and hasattr(e, "job_id")}
    assert all(quick.jobs.get(job_id) == full.jobs.get(job_id) for job_id in ids)


def test_a_whole_last_line_without_its_newline_is_used_not_bought_again(tmp_path, sim, cli):
    """A script that rewrote the manifest with "\\n".join, or an editor, dropped the final
    newline: the line is a complete event, and its job must not be paid for twice."""
    from batchgen.checkpoint import CHECKPOINT_NAME

    jobs = write_jobs(tmp_path / "jobs.csv", ["paid once"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim).code == 0
    manifest = out / "manifest.jsonl"
    kept = [line for line in manifest.read_text(encoding="utf-8").splitlines()
            if '"run_finished"' not in line]
    manifest.write_text("\n".join(kept), encoding="utf-8")
    (out / CHECKPOINT_NAME).unlink()
    for _ in range(2):
        result = run(cli, jobs, out, sim)
        assert result.code == 0, result.err
        assert len(sim.generation_records()) == 1
        assert "torn by a crash" not in result.err
        assert all(line["event"] for line in manifest_lines(out))  # every line parses
        _replays_agree(out)
    assert len(events(out, "succeeded")) == 1


def test_a_torn_line_is_counted_once_after_the_next_run(tmp_path, sim, cli):
    """The run that finds a torn tail writes after it: the line is one unreadable line,
    in `status`, in the checkpoint and in a full replay alike."""
    from batchgen.manifest import replay

    jobs = write_jobs(tmp_path / "jobs.csv", [f"count {i}" for i in range(3)])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--limit", "2").code == 0
    with open(out / "manifest.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"event": "succeeded", "ts": "2026-12-01T06:1')
    torn = len((out / "manifest.jsonl").read_text(encoding="utf-8").splitlines())
    assert run(cli, jobs, out, sim).code == 0
    assert run(cli, jobs, out, sim).code == 0
    assert replay(out / "manifest.jsonl").bad_lines == [torn]
    _replays_agree(out)
    status = cli("status", out)
    assert "1 unreadable manifest line(s)" in status.out, status.out
    assert len(sim.generation_records()) == 3


def test_text_glued_onto_a_line_read_whole_is_one_line_for_every_replay(tmp_path, sim, cli):
    """A whole last line without its newline was read (and checkpointed); then something
    other than batchgen glued text onto it. A full replay sees one unreadable line, so
    the checkpoint's replay must see the same, never a different set of jobs."""
    from batchgen.checkpoint import CHECKPOINT_NAME, save
    from batchgen.manifest import replay

    jobs = write_jobs(tmp_path / "jobs.csv", [f"glued {i}" for i in range(4)])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--limit", "2").code == 0
    manifest = out / "manifest.jsonl"
    kept = [line for line in manifest.read_text(encoding="utf-8").splitlines()
            if '"run_finished"' not in line]
    manifest.write_text("\n".join(kept), encoding="utf-8")
    save(replay(manifest), out / CHECKPOINT_NAME)
    with open(manifest, "a", encoding="utf-8") as fh:
        fh.write('{"event": "succ')
    _replays_agree(out)
    assert run(cli, jobs, out, sim, "--limit", "1").code == 0
    _replays_agree(out)
