"""Any Segmind model from a spreadsheet (issue 15), as a user runs it: the parameters
a row sends arrive typed at the (simulated) API and nothing else does, several images
per answer, several jobs per row, a price per model that --max-cost respects."""

from __future__ import annotations

import csv
import json

import pytest

from batchgen.fakeimage import read_stamp
from batchgen.models import MODELS

from .conftest import FAST, events, manifest_lines, write_jobs
from .model_examples import EXAMPLES, MULTI, WRONG


def write_table(path, rows: list[dict]) -> None:
    names = list(dict.fromkeys(name for row in rows for name in row))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, names)
        writer.writeheader()
        writer.writerows(rows)


def run(cli, jobs, out, sim, *extra):
    return cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST, *extra)


@pytest.mark.parametrize("slug", sorted(MODELS))
def test_each_model_receives_exactly_the_typed_parameters_of_its_row(tmp_path, sim, cli,
                                                                      slug):
    """Spreadsheet text becomes the JSON types the model's page documents; a column
    no parameter of the model is named like stays metadata and is never sent."""
    jobs = tmp_path / "jobs.csv"
    write_table(jobs, [{"prompt": "a fox", **{k: str(v) for k, v in EXAMPLES[slug].items()},
                        "campaign": "spring", "notes": "not for the API"}])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, "--model", slug)
    assert result.code == 0, result.err
    (record,) = sim.generation_records()
    assert record.model == slug
    assert record.params == {"prompt": "a fox", **EXAMPLES[slug]}
    (done,) = events(out, "succeeded")
    assert done["model"] == slug and done["metadata"] == {"campaign": "spring",
                                                          "notes": "not for the API"}
    stamp = read_stamp((out / done["file"]).read_bytes())
    assert stamp is None or stamp["params"] == record.params
    billed = round(sim.stats()["spent"] * 1_000_000)
    assert round(done["cost"] * 1_000_000) == billed == MODELS[slug].price_micro


@pytest.mark.parametrize("slug", sorted(WRONG))
def test_a_wrong_value_is_named_by_row_and_column_and_nothing_is_sent(tmp_path, sim, cli,
                                                                       slug):
    name, value = WRONG[slug]
    jobs = tmp_path / "jobs.csv"
    write_table(jobs, [{"prompt": "fine", name: ""}, {"prompt": "wrong", name: str(value)}])
    result = run(cli, jobs, tmp_path / "out", sim, "--model", slug)
    assert result.code == 2
    assert f"row 3, {name}:" in result.err
    assert "must be" in result.err or "is not one of" in result.err
    assert sim.records == []


@pytest.mark.parametrize("slug", MULTI)
def test_samples_three_gives_three_files_and_one_charge_at_the_registry_price(
        tmp_path, sim, cli, slug):
    jobs = tmp_path / "jobs.csv"
    write_table(jobs, [{"prompt": "three of a kind", "samples": "3"}])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--model", slug).code == 0
    (done,) = events(out, "succeeded")
    assert len(done["files"]) == 3 and done["file"] == done["files"][0]
    assert all((out / f).read_bytes()[:4] == b"\x89PNG" for f in done["files"])
    assert len(sim.generation_records()) == 1
    assert round(done["cost"] * 1_000_000) == 3 * MODELS[slug].price_micro
    assert round(sim.stats()["spent"] * 1_000_000) == 3 * MODELS[slug].price_micro
    assert done["cost_basis"] == "reported"
    gallery = (out / "index.html").read_text(encoding="utf-8")
    assert all(f.split("/")[-1] in gallery for f in done["files"])
    assert run(cli, jobs, out, sim, "--model", slug).code == 0
    assert len(sim.generation_records()) == 1  # done means all three are there


def test_variants_make_n_jobs_a_row_and_a_rerun_buys_nothing(tmp_path, sim, cli):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("id,prompt\nhero,a castle\nside,a tower\n", encoding="utf-8")
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--variants", "4").code == 0
    ids = sorted(line["job_id"] for line in events(out, "succeeded"))
    assert ids == ["hero", "hero-v2", "hero-v3", "hero-v4",
                   "side", "side-v2", "side-v3", "side-v4"]
    assert sim.charged == 8 and len(list((out / "images").iterdir())) == 8
    rerun = run(cli, jobs, out, sim, "--count", "4")  # the spelling of --variants
    assert rerun.code == 0 and sim.charged == 8
    with open(out / "results.csv", encoding="utf-8") as fh:
        results = list(csv.DictReader(fh))
    assert [r["id"] for r in results][:4] == ["hero", "hero-v2", "hero-v3", "hero-v4"]


def test_a_variants_column_only_multiplies_its_own_row(tmp_path, sim, cli):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompt,variants,count\none,3,500\ntwo,,7\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim)
    assert result.code == 0
    assert sim.charged == 4  # a "count" column is metadata: stock counts buy nothing
    assert "the column 'count' is metadata" in result.err
    assert {line["metadata"]["count"] for line in events(out, "succeeded")} == {"500", "7"}


def test_changing_the_seed_of_one_row_buys_exactly_one_image(tmp_path, sim, cli):
    jobs = tmp_path / "jobs.csv"
    rows = [{"id": f"shot{n}", "prompt": f"a vase {n}", "seed": str(100 + n)} for n in range(4)]
    write_table(jobs, rows)
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--model", "ssd-1b").code == 0
    rows[2]["seed"] = "999"
    rows[1]["notes"] = "metadata edits never buy anything"
    write_table(jobs, rows)
    assert run(cli, jobs, out, sim, "--model", "ssd-1b").code == 0
    records = sim.generation_records()
    assert len(records) == 5 and records[-1].params["seed"] == 999


def test_a_model_outside_the_registry_needs_a_price_and_gets_its_params_as_given(
        tmp_path, sim, cli):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompt,param.steps,param.style,param.extra,mood\n"
                    'a fox,30,cinematic,"{""a"": [1, true]}",calm\n', encoding="utf-8")
    out = tmp_path / "out"
    refused = run(cli, jobs, out, sim, "--model", "brand-new-model")
    assert refused.code == 2 and "--price" in refused.err and sim.records == []
    result = run(cli, jobs, out, sim, "--model", "brand-new-model", "--price", "0.03",
                 "--param", "guidance=7.5", "--param", "hd=true")
    assert result.code == 0, result.err
    (record,) = sim.generation_records()
    assert record.path == "/v1/brand-new-model"
    assert record.params == {"prompt": "a fox", "steps": 30, "style": "cinematic",
                             "extra": {"a": [1, True]}, "guidance": 7.5, "hd": True}
    (done,) = events(out, "succeeded")
    assert done["metadata"] == {"mood": "calm"}


def test_max_cost_holds_with_models_at_different_prices(tmp_path, sim, cli):
    jobs = tmp_path / "jobs.jsonl"
    rows = ([{"prompt": f"ideogram {n}", "model": "ideogram-2a-txt-2-img"} for n in range(4)]
            + [{"prompt": f"vega {n}", "model": "segmind-vega-rt-v1"} for n in range(10)])
    jobs.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, "--max-cost", "0.11", "--concurrency", "3")
    assert result.code == 4, result.err
    billed = round(sim.stats()["spent"] * 1_000_000)
    assert billed <= 110_000
    recorded = sum(round(line.get("cost", 0) * 1_000_000) for line in manifest_lines(out)
                   if line["event"] in ("succeeded", "failed", "pending"))
    assert recorded == billed


def test_v2_serves_any_model_too(tmp_path, sim, cli):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("async flux\n", encoding="utf-8")
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, "--model", "flux-schnell", "--api", "v2",
                 "--poll-interval", "0.02", "--param", "samples=2")
    assert result.code == 0, result.err
    (done,) = events(out, "succeeded")
    assert len(done["files"]) == 2 and sim.generation_records()[0].path == "/v2/flux-schnell"


def test_a_luma_batch_from_before_models_keeps_its_ids_and_buys_nothing_again(
        tmp_path, sim, cli):
    """The fingerprint of a job that sends only prompt and ratio is what it always was."""
    from batchgen.jobs import content_id
    jobs = write_jobs(tmp_path / "jobs.csv", ["old batch"], ratio="16:9")
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim).code == 0
    (done,) = events(out, "succeeded")
    assert done["job_id"] == content_id("old batch", "16:9", 1)


def test_models_lists_every_registry_model_with_its_price_and_shows_one_models_params(cli):
    listing = cli("models")
    assert listing.code == 0
    for entry in MODELS.values():
        assert entry.slug in listing.out and entry.price_text in listing.out

    detail = cli("models", "ssd-1b")
    assert detail.code == 0
    assert "num_inference_steps  a whole number from 20 to 100 (default 25)" in detail.out
    assert "/v1/ssd-1b" in detail.out and "per image, times samples" in detail.out


def test_models_names_the_known_ones_when_asked_for_an_unknown_one(cli):
    result = cli("models", "flux-pro-ultra")
    assert result.code == 2
    assert "flux-pro-ultra" in result.err and "ssd-1b" in result.err and "--price" in result.err


def results_of(out) -> dict[str, dict[str, str]]:
    with open(out / "results.csv", encoding="utf-8") as fh:
        return {row["id"]: row for row in csv.DictReader(fh)}


@pytest.mark.parametrize("how", ["moved", "skip-invalid"])
def test_report_keeps_each_jobs_model_and_parameters_when_it_cannot_read_the_file_as_run(
        tmp_path, sim, cli, how):
    """`batchgen report` re-reads the job file as the run read it; when the file is
    gone, the manifest still says which model and parameters each job had."""
    jobs = tmp_path / "jobs.csv"
    write_table(jobs, [{"id": "a", "prompt": "a fox", "model": "ssd-1b", "seed": "7"},
                       {"id": "b", "prompt": "a cat", "model": "flux-schnell", "seed": "8"},
                       {"id": "c", "prompt": "", "model": "ssd-1b", "seed": "9"}])
    out = tmp_path / "out"
    extra = ("--skip-invalid",) if how == "skip-invalid" else ()
    if how == "moved":
        jobs.write_text(jobs.read_text(encoding="utf-8").replace(",,ssd-1b,9", ",x,ssd-1b,9"),
                        encoding="utf-8")
    result = run(cli, jobs, out, sim, *extra)
    assert result.code == (1 if how == "skip-invalid" else 0), result.err
    before = results_of(out)
    if how == "moved":
        jobs.rename(tmp_path / "elsewhere.csv")
    report = cli("report", out)
    assert report.code == 0, report.err
    after = results_of(out)
    assert {ident: (row["model"], row["seed"]) for ident, row in after.items()} == {
        ident: (row["model"], row["seed"]) for ident, row in before.items()}
    assert after["b"]["model"] == "flux-schnell"
    status = cli("status", out)
    assert ("cannot re-read" in status.out + status.err) == (how == "moved")
