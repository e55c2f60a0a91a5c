"""A million-row batch in flat memory (issue 14), as behaviour rather than timing:
the jobs sent are exactly the jobs validated, and a checkpoint of the manifest's
replay gives exactly what a full replay gives, or is ignored."""

from __future__ import annotations

import shutil

import pytest

from batchgen import RunConfig, load_jobs, run_batch
from batchgen.checkpoint import CHECKPOINT_NAME, load, save
from batchgen.errors import JobFileError
from batchgen.manifest import Replay, read_events, replay

from .conftest import FAST, TEST_KEY, events, kill_9_when, spawn, write_jobs


def config(out, sim, **options) -> RunConfig:
    return RunConfig(out_dir=out, api_key=TEST_KEY, base_url=sim.base_url, rate=0,
                     backoff=0.01, poll_interval=0.02, **options)


def test_a_job_file_edited_after_validation_sends_nothing(tmp_path, sim):
    path = write_jobs(tmp_path / "jobs.csv", ["a", "b"])
    jobs = load_jobs(path)
    write_jobs(path, ["a", "b", "an edit made while the run was starting"])
    with pytest.raises(JobFileError, match="changed while batchgen was reading it"):
        run_batch(jobs, config(tmp_path / "out", sim))
    assert sim.records == []


def test_the_jobs_sent_are_the_jobs_validated_even_if_the_file_changes_later(tmp_path, sim):
    """The run reads its jobs back from what was validated, never from the file."""
    path = write_jobs(tmp_path / "jobs.csv", ["first", "second"])
    jobs = load_jobs(path)
    assert [job.prompt for job in jobs] == ["first", "second"]
    path.write_text("prompt\nsomething else entirely\n", encoding="utf-8")
    assert [job.prompt for job in jobs] == ["first", "second"]


def _every_event_kind(tmp_path, start_simulator, cli):
    """An output folder whose manifest holds every kind of line: successes, retried
    garbage, a permanent and a retryable failure, v2 submissions, lost requests, a
    406 stop with pending jobs, a recovered image and a torn line in the middle."""
    sim = start_simulator(latency=0.02, credits=0.019 * 9,
                          fault_script=["garbage", "400", "503", "503", "lost"])
    prompts = [f"kind {i}" for i in range(14)]
    jobs = write_jobs(tmp_path / "jobs.csv", prompts)
    out = tmp_path / "out"
    cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST, "--retries", "1",
        "--concurrency", "1")
    cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST, "--api", "v2",
        "--poll-interval", "0.02", "--concurrency", "2")
    with open(out / "manifest.jsonl", "a", encoding="utf-8") as fh:
        fh.write('{"event": "succeeded", "job_id": "torn"\n')
    sim.top_up(1)
    cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST, "--api", "v2",
        "--poll-interval", "0.02")
    kinds = {event.name for _, event in read_events(out / "manifest.jsonl") if event}
    assert kinds == {"run_started", "run_finished", "submitted", "succeeded", "failed",
                     "pending"}
    return out


def _same(a: Replay, b: Replay, job_ids) -> None:
    assert (a.spent_micro, a.bad_lines, a.offset, a.lines) == (
        b.spent_micro, b.bad_lines, b.offset, b.lines)
    assert [(r["started"].to_line(), r["finished"] and r["finished"].to_line(),
             r["spent_micro"]) for r in a.runs] == [
        (r["started"].to_line(), r["finished"] and r["finished"].to_line(), r["spent_micro"])
        for r in b.runs]
    for job_id in job_ids:
        assert a.jobs.get(job_id) == b.jobs.get(job_id), job_id


def test_a_checkpoint_gives_exactly_what_a_full_replay_gives(tmp_path, start_simulator, cli):
    out = _every_event_kind(tmp_path, start_simulator, cli)
    manifest, checkpoint = out / "manifest.jsonl", out / CHECKPOINT_NAME
    assert checkpoint.exists()  # written by the last run
    job_ids = {e.job_id for _, e in read_events(manifest) if e and hasattr(e, "job_id")}
    full = replay(manifest)
    _same(replay(manifest, checkpoint), full, job_ids)
    # stale: the manifest grew since; the checkpoint covers the start, the rest is read
    with open(manifest, "a", encoding="utf-8") as fh:
        for line in (out / "manifest.jsonl").read_text().splitlines()[-3:]:
            fh.write(line + "\n")
    _same(replay(manifest, checkpoint), replay(manifest), job_ids)


@pytest.mark.parametrize("damage", ["truncated", "foreign", "garbage", "edited", "empty",
                                    "cut", "flipped", "float offset", "odd offset"])
def test_a_checkpoint_that_does_not_fit_the_manifest_is_ignored(tmp_path, start_simulator,
                                                                 cli, damage):
    out = _every_event_kind(tmp_path, start_simulator, cli)
    manifest, checkpoint = out / "manifest.jsonl", out / CHECKPOINT_NAME
    text = manifest.read_text(encoding="utf-8")
    if damage == "truncated":
        manifest.write_text(text[: len(text) // 2].rsplit("\n", 1)[0] + "\n", encoding="utf-8")
    elif damage == "foreign":
        other = tmp_path / "other"
        other.mkdir()
        (other / "manifest.jsonl").write_text(text.replace("kind", "KIND"), encoding="utf-8")
        shutil.copy(checkpoint, other / CHECKPOINT_NAME)
        manifest, checkpoint = other / "manifest.jsonl", other / CHECKPOINT_NAME
    elif damage == "garbage":
        checkpoint.write_bytes(b"not a checkpoint at all")
    elif damage in DAMAGE:
        DAMAGE[damage](checkpoint)
    else:  # the same length, one line changed in the middle
        manifest.write_text(text.replace('"attempts": 1', '"attempts": 7', 1), encoding="utf-8")
    assert load(checkpoint, manifest) is None
    job_ids = {e.job_id for _, e in read_events(manifest) if e and hasattr(e, "job_id")}
    _same(replay(manifest, checkpoint), replay(manifest), job_ids)


def test_a_run_resumes_from_its_checkpoint_after_a_kill(tmp_path, start_simulator, cli):
    """A killed run writes no checkpoint: the next one starts from the last one and
    reads the lines after it, and the batch still ends with each job done once."""
    sim = start_simulator(latency=0.05)
    jobs = write_jobs(tmp_path / "jobs.csv", [f"resume {i}" for i in range(12)])
    out = tmp_path / "out"
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST,
               "--limit", "4").code == 0
    stamp = (out / CHECKPOINT_NAME).stat().st_mtime_ns
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST,
                 "--concurrency", "1")
    kill_9_when(proc, lambda: len(events(out, "succeeded")) >= 7)
    assert (out / CHECKPOINT_NAME).stat().st_mtime_ns == stamp
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST).code == 0
    ids = [line["job_id"] for line in events(out, "succeeded")]
    assert len(ids) == len(set(ids)) == 12
    assert sim.charged <= 12 + 1


def test_save_then_load_round_trips(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["round", "trip"])
    out = tmp_path / "out"
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST).code == 0
    full = replay(out / "manifest.jsonl")
    save(full, tmp_path / "copy.npz")
    again = load(tmp_path / "copy.npz", out / "manifest.jsonl")
    assert again is not None
    _same(again, full, [e.job_id for e in map(lambda x: x[1], read_events(
        out / "manifest.jsonl")) if hasattr(e, "job_id")])


def test_the_plans_quick_done_check_agrees_with_the_job_state_of_every_job(
        tmp_path, start_simulator):
    """The survey classifies plain successes in numpy; every job it judges must get
    the state `job_state` gives it, whatever the manifest says about it."""
    from batchgen.plan import Plan
    from batchgen.state import job_state
    from batchgen.store import ImageStore

    sim = start_simulator(fault_rate=0.3, seed=3, fault_kinds=("500", "garbage", "truncate"))
    path = write_jobs(tmp_path / "jobs.csv", [f"prompt {n}" for n in range(40)])
    out = tmp_path / "out"
    run_batch(load_jobs(path), config(out, sim, retries=0))
    images = sorted((out / "images").iterdir())
    images[0].unlink()
    images[1].write_bytes(images[1].read_bytes()[:-5])
    images[2].write_bytes(bytes(reversed(images[2].read_bytes())))  # same size
    write_jobs(path, [f"prompt {n}" for n in range(39)] + ["an edited row"])
    jobs = load_jobs(path)

    history = replay(out / "manifest.jsonl")
    store = ImageStore(out)
    plan = Plan(jobs, history, store)
    quick = list(plan._states())
    full = [(job, job_state(job, history.jobs.get(job.id), store)) for job in jobs]
    assert quick == full
    assert {state.state for _, state in quick} >= {"done", "failed", "pending"}


def _with_meta(checkpoint, **changes) -> None:
    """Rewrite a checkpoint's meta by hand, as a sloppy script might."""
    import json

    import numpy as np

    with np.load(checkpoint) as data:
        arrays = {name: data[name] for name in data.files}
    meta = {**json.loads(str(arrays["meta"])), **changes}
    with open(checkpoint, "wb") as fh:
        np.savez(fh, **{**arrays, "meta": np.array(json.dumps(meta))})


def _flip_middle_byte(checkpoint) -> None:
    data = bytearray(checkpoint.read_bytes())
    data[len(data) // 2] ^= 0xFF
    checkpoint.write_bytes(bytes(data))


DAMAGE = {
    "empty": lambda checkpoint: checkpoint.write_bytes(b""),
    "cut": lambda checkpoint: checkpoint.write_bytes(checkpoint.read_bytes()[:100]),
    "flipped": _flip_middle_byte,
    "float offset": lambda checkpoint: _with_meta(checkpoint, offset=1.5),
    "odd offset": lambda checkpoint: _with_meta(checkpoint, offset="12"),
}


@pytest.mark.parametrize("damage", ["empty", "cut", "flipped"])
def test_a_damaged_checkpoint_means_a_full_replay_not_a_crash(tmp_path, sim, cli, damage):
    """A power cut or a bad disk sector in the hidden checkpoint must not stop `run`,
    `validate --out` or `status` until someone finds and deletes it."""
    jobs = write_jobs(tmp_path / "jobs.csv", [f"damage {i}" for i in range(3)])
    out = tmp_path / "out"
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST).code == 0
    manifest, checkpoint = out / "manifest.jsonl", out / CHECKPOINT_NAME
    DAMAGE[damage](checkpoint)
    job_ids = {e.job_id for _, e in read_events(manifest) if e and hasattr(e, "job_id")}
    _same(replay(manifest, checkpoint), replay(manifest), job_ids)
    assert cli("validate", jobs, "--out", out).code == 0
    assert cli("status", out).code == 0
    sent = len(sim.generation_records())
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST)
    assert result.code == 0, result.err
    assert len(sim.generation_records()) == sent == 3
    assert load(checkpoint, manifest) is not None  # the run wrote a good one again
    _same(replay(manifest, checkpoint), replay(manifest), job_ids)


def test_a_checkpoint_taken_before_a_final_newline_still_fits(tmp_path, sim, cli):
    """A checkpoint that ends inside a whole last line (no newline yet): the newline a
    writer adds later belongs to that line, in offsets, line numbers and digest."""
    jobs = write_jobs(tmp_path / "jobs.csv", ["no", "newline"])
    out = tmp_path / "out"
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST).code == 0
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text(encoding="utf-8").splitlines()
    manifest.write_text("\n".join(lines[:-1]), encoding="utf-8")
    save(replay(manifest), tmp_path / "early.npz")
    with open(manifest, "a", encoding="utf-8") as fh:
        fh.write("\n" + lines[-1] + "\n")
    job_ids = {e.job_id for _, e in read_events(manifest) if e and hasattr(e, "job_id")}
    _same(replay(manifest, tmp_path / "early.npz"), replay(manifest), job_ids)
    assert replay(manifest).runs[-1]["finished"] is not None
