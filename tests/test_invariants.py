"""SPEC §8, one finding of the adversarial review at a time: every billed answer is
counted once (M1), the cap holds (M2), a journaled v2 request is collected and never
replaced while it may complete (M3), done means a complete image of the current
content (S1, S2), every run ends (S4) and bad input never ends in a traceback (S5).
Each test drives the real CLI against the simulator and reads what a user would:
files, manifest lines, exit codes, and what the simulator charged."""

from __future__ import annotations

import json

import pytest

from batchgen.config import RunConfig
from batchgen.reports import write_atomically
from batchgen.simulator import make_png
from batchgen.store import safe_stem

from .conftest import (
    FAST,
    PRICE,
    TEST_KEY,
    V2,
    events,
    kill_9_when,
    manifest_lines,
    recorded_micro,
    spawn,
    write_jobs,
)


def job_micro(out, job_id) -> int:
    """What the manifest's lines say one job cost, in micro-dollars."""
    return sum(round(line.get("cost", 0) * 1_000_000) for line in manifest_lines(out)
               if line.get("job_id") == job_id and "cost" in line)


def run(cli, jobs, out, sim, *extra):
    return cli("run", jobs, "--out", out, "--base-url", sim.base_url, *extra)


def assert_money_matches(out, sim):
    """M1: the manifest's money is what the simulator billed, and the last run says so."""
    assert recorded_micro(out) == sim.charged * PRICE
    finished = events(out, "run_finished")[-1]
    assert round(finished["spent_total"] * 1_000_000) == sim.charged * PRICE


# -- money -------------------------------------------------------------------------------


def test_v2_result_that_keeps_expiring_is_resubmitted_once_within_the_cap(
        tmp_path, start_simulator, cli):
    """Finding 1: a status 404 used to resubmit without limit (17 charges for one image
    under --max-cost 0.019, while the summary said spent=$0.00)."""
    sim = start_simulator(latency=0.05, result_ttl=0)
    jobs = write_jobs(tmp_path / "jobs.csv", ["expires at once"])
    out = tmp_path / "out"
    capped = run(cli, jobs, out, sim, *V2, "--max-cost", "0.019")
    assert capped.code == 4, capped.err
    assert sim.charged == 1 and "spent=$0.019" in capped.err
    assert_money_matches(out, sim)
    again = run(cli, jobs, tmp_path / "uncapped", sim, *V2)
    assert again.code == 1  # lost twice in one run: a retryable failure, not a loop
    assert sim.charged == 3
    lost_once, lost_twice = events(tmp_path / "uncapped", "failed")  # each on record at once
    assert lost_once["retryable"] and lost_twice["retryable"]
    assert lost_once["cost"] == lost_twice["cost"] == pytest.approx(0.019)
    assert [line.get("replaces") is not None for line in
            events(tmp_path / "uncapped", "submitted")] == [False, True]


def test_v2_image_that_cannot_be_downloaded_is_fetched_next_run_without_a_new_submit(
        tmp_path, start_simulator, cli):
    """Finding 2 / M3: a completed request whose file URL fails keeps its id and cost."""
    sim = start_simulator(latency=0.05, file_fault="503")
    jobs = write_jobs(tmp_path / "jobs.csv", ["a", "b"])
    out = tmp_path / "out"
    first = run(cli, jobs, out, sim, *V2, "--retries", "1")
    assert first.code == 1 and sim.charged == 2
    failed = events(out, "failed")
    assert {f["request_status"] for f in failed} == {"COMPLETED"}
    assert all(f["request_id"] for f in failed)
    assert {job_micro(out, f["job_id"]) for f in failed} == {PRICE}
    assert_money_matches(out, sim)
    sim.config.file_fault = None
    second = run(cli, jobs, out, sim, *V2)
    assert second.code == 0, second.err
    assert len(sim.generation_records()) == 2 and sim.charged == 2  # nothing submitted
    assert "spent=$0.00 total=$0.038" in second.err
    assert_money_matches(out, sim)


def test_a_200_cut_off_mid_transfer_is_paid_for_and_counted(tmp_path, start_simulator, cli):
    """Finding 3, v1: a truncated image body was retried as if free."""
    sim = start_simulator(fault_script=["truncate"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["cut off"])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, *FAST)
    assert result.code == 0, result.err
    (done,) = events(out, "succeeded")
    assert done["attempts"] == 2 and job_micro(out, done["job_id"]) == 2 * PRICE
    (cut,) = events(out, "failed")  # the cut-off answer, on record as soon as it was billed
    assert cut["retryable"] and cut["cost"] == pytest.approx(0.019)
    assert sim.charged == 2
    assert_money_matches(out, sim)


def test_a_v2_id_the_api_then_refuses_is_counted_once_and_submitted_once_more(
        tmp_path, start_simulator, cli):
    """Finding 3, v2: a submit answered 200 with an id the status endpoint refuses."""
    sim = start_simulator(latency=0.05, fault_script=["lost"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["lost once"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, *V2).code == 0
    assert sim.charged == 2
    (done,) = events(out, "succeeded")
    assert job_micro(out, done["job_id"]) == 2 * PRICE
    assert_money_matches(out, sim)


@pytest.mark.parametrize(("then", "extra", "code"), [
    ("406", (), 3),
    (None, ("--max-cost", "0.019"), 4),
])
def test_a_billed_non_image_before_a_stop_keeps_its_cost(tmp_path, start_simulator, cli,
                                                          then, extra, code):
    """Finding 4: pending lines lost the money of a garbage answer (spent=$0.019
    total=$0.00, and `status` said $0.00)."""
    sim = start_simulator(fault_script=["garbage", *([then] if then else [])])
    jobs = write_jobs(tmp_path / "jobs.csv", ["garbled then stopped"])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, *FAST, *extra)
    assert result.code == code, result.err
    (pending,) = events(out, "pending")
    assert job_micro(out, pending["job_id"]) == PRICE
    assert "spent=$0.019 total=$0.019" in result.err
    assert_money_matches(out, sim)
    status = cli("status", out, "--json")
    assert json.loads(status.out)["spent_total"] == pytest.approx(0.019)


def test_v2_garbage_result_then_a_good_one_is_one_charge(tmp_path, start_simulator, cli):
    """Finding 5: a garbage result fetch then a good one recorded $0.038 for one charge."""
    sim = start_simulator(latency=0.05, file_faults=["garbage"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["garbage result"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, *V2).code == 0
    (done,) = events(out, "succeeded")
    assert job_micro(out, done["job_id"]) == PRICE and sim.charged == 1
    assert_money_matches(out, sim)


@pytest.mark.parametrize("cap", ["0.06", "0.057"])
def test_money_held_by_a_rejected_job_goes_back_to_the_budget(tmp_path, start_simulator,
                                                               cli, cap):
    """Finding 6 / M2: --max-cost 0.06 stopped at $0.038 when a job in flight was
    rejected; 0.057 buys 3 images whenever 3 jobs can succeed."""
    sim = start_simulator(latency=0.05)
    jobs = write_jobs(tmp_path / "jobs.csv",
                      ["first [reject]", "second [reject]", "a", "b", "c", "d", "e"])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, *FAST, "--max-cost", cap, "--concurrency", "4")
    assert result.code == 4, result.err
    assert sim.charged == 3 and len(events(out, "succeeded")) == 3
    assert_money_matches(out, sim)


# -- state -------------------------------------------------------------------------------


def _failed_once(cli, tmp_path, sim, prompts):
    """A batch whose jobs all failed retryably (the simulator's script: a 503 each)."""
    jobs = write_jobs(tmp_path / "jobs.csv", prompts)
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, *FAST, "--retries", "0", "--concurrency", "1")
    assert result.code == 1
    return jobs, out


def test_an_image_saved_just_before_a_crash_is_kept_after_a_failed_line(
        tmp_path, start_simulator, cli):
    """Finding 7: recovery skipped jobs whose last line was `failed`."""
    sim = start_simulator(fault_script=["503"])
    jobs, out = _failed_once(cli, tmp_path, sim, ["saved before the crash"])
    (failed,) = events(out, "failed")
    image = make_png("saved before the crash", "1:1")
    (out / "images" / f"{safe_stem(failed['job_id'])}.png").write_bytes(image)
    result = run(cli, jobs, out, sim, *FAST)
    assert result.code == 0, result.err
    assert len(sim.generation_records()) == 1  # only the failed attempt, nothing bought
    (kept,) = events(out, "succeeded")
    assert kept["recovered"] and kept["cost"] == 0 and kept["bytes"] == len(image)


@pytest.mark.parametrize("leftover", [b"", b"<html>not an image</html>",
                                      make_png("cut", "1:1")[:-30]])
def test_an_empty_or_broken_file_is_never_adopted(tmp_path, start_simulator, cli, leftover):
    """Finding 9: a 0-byte or non-image file was adopted as done, with a phantom cost."""
    sim = start_simulator(fault_script=["503"])
    jobs, out = _failed_once(cli, tmp_path, sim, ["broken leftover"])
    (failed,) = events(out, "failed")
    (out / "images" / f"{safe_stem(failed['job_id'])}.png").write_bytes(leftover)
    assert run(cli, jobs, out, sim, *FAST).code == 0
    assert sim.charged == 1
    (done,) = events(out, "succeeded")
    assert not done["recovered"]
    assert (out / done["file"]).read_bytes() == make_png("broken leftover", "1:1")


def test_an_older_contents_image_is_not_adopted_for_an_edited_row(
        tmp_path, start_simulator, cli):
    """S1/S2: the image of the row before it was edited is not the new row's image."""
    sim = start_simulator()
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("id,prompt\nhero,a castle\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, *FAST).code == 0
    jobs.write_text("id,prompt\nhero,a castle at night\n", encoding="utf-8")
    failing = start_simulator(fault_script=["503"])
    assert run(cli, jobs, out, failing, *FAST, "--retries", "0").code == 1
    assert run(cli, jobs, out, sim, *FAST).code == 0
    assert (out / "images" / "hero.png").read_bytes() == make_png("a castle at night", "1:1")
    assert sim.charged == 2


def test_an_image_emptied_after_a_finished_run_is_generated_again(
        tmp_path, start_simulator, cli):
    """Finding 9 / S1: done needs the recorded size, whatever run finished since."""
    sim = start_simulator()
    jobs = write_jobs(tmp_path / "jobs.csv", ["will be emptied", "stays"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, *FAST).code == 0
    assert run(cli, jobs, out, sim, *FAST).code == 0  # a run that finished since
    victim = events(out, "succeeded")[0]
    (out / victim["file"]).write_bytes(b"")
    status = json.loads(cli("status", out, "--json").out)
    assert status["done"] == 1 and status["pending_reasons"] == {"image_missing": 1}
    assert run(cli, jobs, out, sim, *FAST).code == 0
    assert sim.charged == 3
    assert (out / victim["file"]).read_bytes() == make_png(victim["prompt"], "1:1")


def test_an_edited_v2_job_never_inherits_the_old_request(tmp_path, start_simulator, cli):
    """Finding 8 / S2: submitted, interrupted, edited under the same id: the old
    prompt's image must not complete the new row."""
    sim = start_simulator(latency=1.0)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("id,prompt\nhero,a castle\n", encoding="utf-8")
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, *V2)
    kill_9_when(proc, lambda: events(out, "submitted"))
    assert events(out, "submitted")[0]["fp"]
    jobs.write_text("id,prompt\nhero,a castle at night\n", encoding="utf-8")
    assert run(cli, jobs, out, sim, *V2).code == 0
    assert [r.prompt for r in sim.generation_records()] == ["a castle", "a castle at night"]
    assert (out / "images" / "hero.png").read_bytes() == make_png("a castle at night", "1:1")


def test_ids_that_sanitise_alike_or_differ_only_in_case_get_their_own_files(
        tmp_path, sim, cli):
    """Finding 10 / S3."""
    ids = ["a b", safe_stem("a b"), "Hero", "hero", "HERO"]
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("".join(json.dumps({"id": i, "prompt": f"p {n}"}) + "\n"
                            for n, i in enumerate(ids)), encoding="utf-8")
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, *FAST).code == 0
    names = [p.name.lower() for p in (out / "images").iterdir()]
    assert len(set(names)) == len(ids)


# -- every run ends ------------------------------------------------------------------------


def _ends(proc, timeout=60):
    """The run ended by itself (a hang guard, not a timing assertion)."""
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def test_a_401_answering_a_breaker_probe_ends_the_run_at_once(tmp_path, start_simulator):
    """Finding 11: the run hung until --max-outage (10 minutes by default)."""
    sim = start_simulator(fault_script=["503"] * 5 + ["401"] * 50)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"probe {i}" for i in range(8)])
    out = tmp_path / "out"
    code, err = _ends(spawn("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST,
                            "--concurrency", "1"))
    assert code == 5, err
    assert events(out, "failed") == []


@pytest.mark.parametrize("fault", ["CANCELLED", "503"])
def test_a_v2_status_that_never_says_anything_useful_ends_the_run(tmp_path, start_simulator,
                                                                   cli, fault):
    """Finding 11 / S4: an unknown state, or a status endpoint failing forever, falls
    under --max-outage; the request id is kept and the next run collects it."""
    sim = start_simulator(latency=0.05, status_fault=fault)
    jobs = write_jobs(tmp_path / "jobs.csv", ["stuck"])
    out = tmp_path / "out"
    code, err = _ends(spawn("run", jobs, "--out", out, "--base-url", sim.base_url, *V2,
                            "--max-outage", "1"))
    assert code == 1, err
    (pending,) = events(out, "pending")
    assert pending["reason"] == "outage" and pending["request_id"]
    sim.config.status_fault = None
    assert run(cli, jobs, out, sim, *V2).code == 0
    assert len(sim.generation_records()) == 1 and sim.charged == 1


def test_a_retry_after_of_a_day_ends_the_run_with_the_job_pending(tmp_path, start_simulator):
    """Finding 11 / S4: a Retry-After: 86400 slept a day."""
    sim = start_simulator(fault_script=["429"], retry_after=86400)
    jobs = write_jobs(tmp_path / "jobs.csv", ["stubborn server"])
    out = tmp_path / "out"
    code, err = _ends(spawn("run", jobs, "--out", out, "--base-url", sim.base_url,
                            "--backoff", "0.01", "--no-progress", "--rate", "100000"))
    assert code == 1, err
    assert "--max-outage" in err
    assert events(out, "pending")[0]["reason"] == "outage"
    assert events(out, "run_finished")[0]["reason"] == "outage"


def test_a_redirect_from_the_api_is_exit_5_naming_where_it_points(tmp_path, start_simulator,
                                                                   cli):
    """Finding 12: a 3xx marked jobs permanently failed."""
    sim = start_simulator(fault_script=["redirect"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["redirected", "another"])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, *FAST, "--concurrency", "1")
    assert result.code == 5
    assert "elsewhere.invalid" in result.err
    assert events(out, "failed") == []
    assert sim.charged == 0


def test_a_gzip_bomb_is_capped_after_decoding_and_paid_for(tmp_path, start_simulator, cli):
    """Finding 13: 61 KB of gzip became a 62,914,568-byte 'png'."""
    sim = start_simulator(fault_script=["gzipbomb"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["bomb"])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, *FAST, "--retries", "0")
    assert result.code == 1
    (failed,) = events(out, "failed")
    assert "larger than" in failed["error"] and failed["cost"] == pytest.approx(0.019)
    assert list((out / "images").iterdir()) == []
    assert_money_matches(out, sim)


# -- bad input and small things --------------------------------------------------------------


def test_an_unwritable_output_folder_at_start_is_exit_2_with_nothing_sent(
        tmp_path, sim, cli, tiny_disk):
    """Finding 14 / S5: a full disk gave a raw OSError traceback from the lock."""
    jobs = write_jobs(tmp_path / "jobs.csv", ["a"])
    out = tiny_disk / "out"
    out.mkdir()
    filler = tiny_disk / "filler"
    with open(filler, "wb") as fh, pytest.raises(OSError):
        fh.write(bytes(1 << 20))
    result = run(cli, jobs, out, sim, *FAST)
    assert result.code == 2, result.err
    assert "Traceback" not in result.err and "cannot write" in result.err
    assert sim.records == []


def test_a_report_that_fails_midway_leaves_no_temporary_file(tmp_path):
    """Finding 15: `.results.csv.<pid>.tmp` was left behind after errors."""
    def explode(fh):
        fh.write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomically(tmp_path / "results.csv", explode)
    assert list(tmp_path.iterdir()) == []


def test_the_key_is_not_in_the_settings_repr(tmp_path):
    """Finding 15: RunConfig's repr held the key."""
    config = RunConfig(out_dir=tmp_path, api_key=TEST_KEY)
    assert TEST_KEY not in repr(config) and TEST_KEY not in str(config.public_settings())


def test_every_pending_reason_a_run_writes_has_words_in_the_reports(tmp_path,
                                                                    start_simulator, cli):
    """Finding 15: reasons such as `auth` had no words in the reports."""
    sim = start_simulator(fault_script=["garbage", "401"])
    jobs = write_jobs(tmp_path / "jobs.csv", ["refused"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, *FAST).code == 5
    (pending,) = events(out, "pending")
    assert pending["reason"] == "auth"
    text = (out / "results.csv").read_text(encoding="utf-8")
    assert "the API refused the key or endpoint" in text
