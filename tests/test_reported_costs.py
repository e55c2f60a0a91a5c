"""What the API says an answer cost (`x-credits-consumed`, v2's `metrics.cost`) is
believed only when it can be true, and teaches the budget a price per image: a lie
can neither make a paid image unreadable (bought again) nor crash a run, and
`--max-cost` holds when samples differ between jobs of one model."""

from __future__ import annotations

import csv

import pytest

from .conftest import FAST, V2, events, manifest_lines


def billed_micro(sim) -> int:
    return round(sim.stats()["spent"] * 1_000_000)


@pytest.mark.parametrize("api", ["v1", "v2"])
@pytest.mark.parametrize("says", ["1000000", "1e30", "nan", "inf", "-1", "lots"])
def test_an_impossible_reported_cost_is_counted_at_the_price_and_never_bought_again(
        tmp_path, start_simulator, cli, says, api):
    sim = start_simulator(credits_consumed=says)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompt\nalpha\nbeta\n", encoding="utf-8")
    out = tmp_path / "out"
    options = ("--base-url", sim.base_url, *FAST, *(V2 if api == "v2" else ()))
    first = cli("run", jobs, "--out", out, *options)
    assert first.code == 0, first.err
    assert sim.charged == 2 and len(list((out / "images").iterdir())) == 2
    assert [line["cost"] for line in events(out, "succeeded")] == [0.019, 0.019]
    assert {line["cost_basis"] for line in events(out, "succeeded")} == {"price"}
    assert "spent=$0.038 total=$0.038" in first.err
    again = cli("run", jobs, "--out", out, *options)
    assert again.code == 0, again.err
    assert sim.charged == 2  # nothing bought twice
    assert "unreadable" not in cli("status", jobs, "--out", out).out


def samples_file(path, rows: list[tuple[str, int]]):
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "prompt", "model", "samples"])
        for ident, samples in rows:
            writer.writerow([ident, f"a picture of {ident}", "ssd-1b", samples])
    return path


def test_a_price_learned_from_a_many_sample_answer_is_per_image(tmp_path, start_simulator,
                                                                 cli):
    """The API bills ssd-1b at $0.005 an image where the registry says $0.004: a
    4-image answer teaches $0.005 an image, not $0.020 for every later 1-image job."""
    sim = start_simulator(prices={"ssd-1b": 0.005})
    rows = [("big", 4)] + [(f"small{n}", 1) for n in range(10)]
    jobs = samples_file(tmp_path / "jobs.csv", rows)
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, *FAST,
                 "--max-cost", "0.08", "--concurrency", "1")
    assert result.code == 0, result.err  # $0.070 in all
    assert sim.charged == 11 and billed_micro(sim) == 70_000


def test_a_price_learned_per_image_holds_the_cap_for_a_many_sample_job(
        tmp_path, start_simulator, cli):
    """A 1-image answer at $0.005 means the 4-image job costs $0.020, not the
    registry's $0.016: it does not fit under $0.022 and is not bought."""
    sim = start_simulator(prices={"ssd-1b": 0.005})
    jobs = samples_file(tmp_path / "jobs.csv", [("one", 1), ("four", 4)])
    out = tmp_path / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST,
                 "--max-cost", "0.022", "--concurrency", "1")
    assert result.code == 4, result.err
    assert sim.charged == 1 and billed_micro(sim) == 5_000
    assert [line["job_id"] for line in events(out, "succeeded")] == ["one"]
    assert all(line.get("cost", 0) <= 0.022 for line in manifest_lines(out))


def test_a_lower_report_after_the_price_was_recorded_never_writes_a_negative_cost(
        tmp_path, start_simulator, cli):
    """A v2 request counted at --price when its image could not be downloaded; the
    next run collects it and the API reports less. What is on record stays: no line
    says a negative cost (a reader would refuse it as corrupt)."""
    from batchgen.manifest import replay

    sim = start_simulator(response_format="url", file_faults=["503"])
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("a fox\n", encoding="utf-8")
    out = tmp_path / "out"
    options = ("--base-url", sim.base_url, *FAST, *V2, "--retries", "0",
               "--model", "flux-schnell", "--price", "0.01")
    assert cli("run", jobs, "--out", out, *options).code == 1
    second = cli("run", jobs, "--out", out, *options)
    assert second.code == 0, second.err
    assert sim.charged == 1
    costs = [line["cost"] for line in manifest_lines(out) if "cost" in line]
    assert min(costs) >= 0 and sum(costs) == pytest.approx(0.01)
    assert replay(out / "manifest.jsonl").bad_lines == []
    assert "spent=$0.00 " in second.err or "spent=$0 " in second.err
    assert cli("run", jobs, "--out", out, *options).code == 0 and sim.charged == 1
