"""The property behind SPEC §8: for any schedule of faults and `kill -9` moments,
rerunning the same command until it exits 0 leaves exactly one image per job, each
of its current prompt, and the manifest's money equal to what the API billed (less
at most concurrency × price per kill).

Each seed draws a schedule: the API version, random faults (5xx, 429, timeouts,
billed garbage, bodies cut off mid-transfer, v2 requests the API forgets), a balance
that runs out mid-batch (406, topped up before the next run), runs killed with -9
once the manifest reaches a random length, a --max-cost on some runs, and a row
edited between two runs. CI runs SHORT_SEEDS; `pytest -m slow` runs LONG_SEEDS.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from batchgen.simulator import make_png

from .conftest import PRICE, recorded_micro, spawn, wait_for

CONCURRENCY = 3
JOBS = 10
SHORT_SEEDS = range(6)
LONG_SEEDS = range(100, 160)
FAULTS = {"v1": ("500", "503", "429", "garbage", "truncate", "timeout"),
          "v2": ("500", "503", "429", "garbage", "truncate", "timeout", "lost")}


def write_job_file(path: Path, prompts: dict[str, str]) -> None:
    path.write_text("id,prompt\n" + "".join(f'{i},"{p}"\n' for i, p in prompts.items()),
                    encoding="utf-8")



def run_schedule(seed: int, tmp_path: Path, start_simulator) -> None:
    rng = random.Random(seed)
    api = rng.choice(("v1", "v2"))
    sim = start_simulator(
        latency=0.04, jitter=0.03, seed=seed, fault_rate=rng.choice((0.1, 0.2, 0.3)),
        fault_kinds=FAULTS[api], hang=3.0, retry_after=0.05,
        credits=PRICE * rng.randint(3, JOBS + 3) / 1_000_000,
    )
    prompts = {f"job{n}": f"seed {seed} prompt {n}" for n in range(JOBS)}
    jobs = tmp_path / "jobs.csv"
    write_job_file(jobs, prompts)
    out = tmp_path / "out"
    args = ["run", jobs, "--out", out, "--base-url", sim.base_url, "--api", api,
            "--concurrency", str(CONCURRENCY), "--retries", "2", "--backoff", "0.01",
            "--timeout", "0.5", "--poll-interval", "0.02", "--rate", "100000",
            "--no-progress", "--grace", "2"]
    kills = 0
    edited = False
    previous_killed = False
    for attempt in range(25):
        extra = []
        cap = None
        if rng.random() < 0.25:
            cap = PRICE * rng.randint(1, 4)
            extra = ["--max-cost", f"{cap / 1_000_000:.6f}"]
        charged_before = sim.charged
        proc = spawn(*args, *extra)
        if rng.random() < 0.4:  # kill -9 once the manifest reaches a random length
            try:
                wait_for(_progressed(proc, out, rng.randint(1, 3 * JOBS)), timeout=60)
            finally:
                if proc.poll() is None:
                    proc.kill()
            proc.wait()
            _, err = proc.communicate()
            if proc.returncode == -9:
                kills += 1
                previous_killed = True
                continue
        else:
            _, err = proc.communicate(timeout=120)
        code = proc.returncode
        assert code in (0, 1, 3, 4), f"seed {seed}, run {attempt}: exit {code}\n{err}"
        assert "Traceback" not in err, err
        if cap is not None and not previous_killed:
            assert (sim.charged - charged_before) * PRICE <= cap, f"seed {seed}: M2 broken"
        previous_killed = False
        if code == 3:
            sim.top_up(PRICE * JOBS / 1_000_000)
        if code == 0:
            break
        if not edited and rng.random() < 0.5:  # a user edits a row between two runs
            prompts[f"job{rng.randrange(JOBS)}"] += " (edited)"
            write_job_file(jobs, prompts)
            edited = True
    else:
        pytest.fail(f"seed {seed}: never reached exit 0")

    images = sorted((out / "images").iterdir())
    assert len(images) == JOBS, f"seed {seed}: {[p.name for p in images]}"
    for job_id, prompt in prompts.items():
        assert (out / "images" / f"{job_id}.png").read_bytes() == make_png(prompt, "1:1"), \
            f"seed {seed}: {job_id} is not the image of its current prompt"
    billed, recorded = sim.charged * PRICE, recorded_micro(out)
    assert billed - kills * CONCURRENCY * PRICE <= recorded <= billed, (
        f"seed {seed}: recorded {recorded} of {billed} billed, {kills} kills")


def _progressed(proc, out: Path, lines: int):
    """A condition: the run ended, or its manifest has `lines` lines (whole or not)."""
    path = out / "manifest.jsonl"
    return lambda: proc.poll() is not None or (
        path.exists() and path.read_bytes().count(b"\n") >= lines)


@pytest.mark.parametrize("seed", SHORT_SEEDS)
def test_any_fault_schedule_ends_with_one_paid_image_per_job(seed, tmp_path, start_simulator):
    run_schedule(seed, tmp_path, start_simulator)


@pytest.mark.slow
@pytest.mark.parametrize("seed", LONG_SEEDS)
def test_any_fault_schedule_long(seed, tmp_path, start_simulator):
    run_schedule(seed, tmp_path, start_simulator)
