"""What an adversarial review of issue 15 broke, as a careless user and a hostile API
would: each test is one of its findings, run through the CLI against the simulator."""

from __future__ import annotations

import csv

import pytest

from .conftest import FAST, events, write_jobs

BAD_FILES = [  # (file name, content, extra options, what the error says)
    ("ids.csv", "id,prompt,variants\n,a red fox,2\nf6785e6b2287885e-v2,a blue whale,1\n", (),
     "row 2, id: 'f6785e6b2287885e-v2' is used twice: row 3 (its id column)"),
    ("sup.csv", "prompt,variants\nfox,²\n", (), "row 2, variants: must be a whole number"),
    ("surrogate.jsonl", '{"prompt": "fox", "model": "\\ud800"}\n', (),
     "line 1, model: '\\ud800' is not a model slug"),
    ("number.jsonl", '{"prompt": "fox", "model": 123}\n', (), "line 1, model: 123 is not"),
    ("path.csv", "prompt,model\nfox,../../etc\n", ("--price", "0.01"),
     "row 2, model: '../../etc' is not a model slug"),
    ("samples.csv", "prompt,param.samples\nfox,abc\n", ("--model", "ssd-1b"),
     "row 2, param.samples: must be a whole number from 1 to 4, not 'abc'"),
    ("twice.csv", "prompt,seed,param.seed\nfox,5,abc\n", ("--model", "ssd-1b"),
     "row 2, param.seed: sets seed again (so does 'seed')"),
    ("prompt.csv", "prompt,param.prompt\nfox,evil\n", (),
     "row 2, param.prompt: the prompt is the prompt column's"),
    ("ratio.csv", "prompt,param.aspect_ratio\nfox,7:3\n", (),
     "row 2, param.aspect_ratio: luma-photon-txt-2-img's aspect ratio is checked"),
    ("unknown.csv", "prompt,model,aspect_ratio\nfox,my-model,16:9\n", ("--price", "0.01"),
     "row 2, aspect_ratio: my-model is not in batchgen's registry"),
    ("evil.csv", "prompt\nfox\n", ("--param", "prompt=evil"),
     "--param prompt: the prompt is the prompt column's"),
    ("inf.csv", "prompt\nfox\n", ("--param", "foo=1e400"),
     "--param foo: '1e400' holds a number JSON cannot carry"),
    ("nan.jsonl", '{"prompt": "fox", "param.foo": NaN}\n', (),
     "line 1, param.foo: nan holds a number JSON cannot carry"),
    ("price.csv", "prompt,model\nfox,my-model\n", (),
     "'my-model' is not in batchgen's registry (luma-photon-txt-2-img, flux-schnell"),
]


@pytest.mark.parametrize(("name", "content", "options", "says"), BAD_FILES,
                         ids=[case[0] for case in BAD_FILES])
def test_what_cannot_be_sent_as_meant_is_a_named_error_and_costs_nothing(
        tmp_path, sim, cli, name, content, options, says):
    jobs = tmp_path / name
    jobs.write_text(content, encoding="utf-8")
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, *FAST,
                 *options)
    assert result.code == 2, result.err
    assert says in result.err
    assert "Traceback" not in result.err
    assert sim.records == []


def test_a_registry_slug_in_another_case_and_a_parameter_name_in_another_case_are_the_registrys(
        tmp_path, sim, cli):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompt,model,Steps\nfox,Flux-Schnell,3\n", encoding="utf-8")
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, *FAST,
                 "--param", "Seed=4")
    assert result.code == 0, result.err
    (record,) = sim.generation_records()
    assert record.model == "flux-schnell"
    assert record.params == {"prompt": "fox", "steps": 3, "seed": 4}


def billed_micro(sim) -> int:
    return round(sim.stats()["spent"] * 1_000_000)


def test_price_is_per_image_so_samples_multiply_it_under_max_cost(tmp_path, sim, cli):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompt\n" + "".join(f"castle {n}\n" for n in range(6)), encoding="utf-8")
    estimate = cli("validate", jobs, "--model", "flux-schnell", "--param", "samples=4",
                   "--price", "0.01")
    assert "6 x $0.04 = $0.24" in estimate.out
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, *FAST,
                 "--model", "flux-schnell", "--param", "samples=4", "--price", "0.01",
                 "--max-cost", "0.05")
    assert result.code == 4, result.err
    assert sim.charged == 1 and billed_micro(sim) == 32_000  # 4 images at $0.008


@pytest.mark.parametrize("says", ["0.000", "-0.5"])
def test_an_api_reporting_no_cost_cannot_spend_past_the_cap(tmp_path, start_simulator, cli,
                                                            says):
    sim = start_simulator(credits_consumed=says)
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompt\n" + "".join(f"fox {n}\n" for n in range(20)), encoding="utf-8")
    out = tmp_path / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST,
                 "--max-cost", "0.05")
    assert result.code == 4, result.err
    assert sim.charged == 2  # each answer counts at no less than the price: 2 × $0.019
    recorded = [line["cost"] for line in events(out, "succeeded")]
    assert recorded == ([0.0, 0.0] if says == "0.000" else [0.019, 0.019])
    assert {line["cost_basis"] for line in events(out, "succeeded")} == (
        {"reported"} if says == "0.000" else {"price"})


def test_an_answer_that_costs_more_than_the_price_raises_what_the_next_request_reserves(
        tmp_path, sim, cli):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompt\n" + "".join(f"fox {n}\n" for n in range(10)), encoding="utf-8")
    result = cli("run", jobs, "--out", tmp_path / "out", "--base-url", sim.base_url, *FAST,
                 "--price", "0.001", "--max-cost", "0.05", "--concurrency", "1")
    assert result.code == 4, result.err
    assert sim.charged == 2 and billed_micro(sim) == 38_000  # $0.019 each, as reported


def crash_before_the_success_line(out, keep: int) -> None:
    """What a crash while saving a 3-image answer leaves: the first `keep` images on
    disk, and no `succeeded` line."""
    manifest = out / "manifest.jsonl"
    lines = manifest.read_text(encoding="utf-8").splitlines(keepends=True)
    manifest.write_text("".join(line for line in lines if '"succeeded"' not in line),
                        encoding="utf-8")
    for file in sorted((out / "images").iterdir())[keep:]:
        file.unlink()


@pytest.mark.parametrize("keep", [1, 3])
def test_a_crash_while_saving_several_images_never_keeps_the_job_short_of_one(
        tmp_path, sim, cli, keep):
    jobs = tmp_path / "jobs.txt"
    jobs.write_text("three candidates\n", encoding="utf-8")
    out = tmp_path / "out"
    options = ("--model", "flux-schnell", "--param", "samples=3", "--api", "v2",
               "--poll-interval", "0.02")
    run = ("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST, *options)
    assert cli(*run).code == 0
    crash_before_the_success_line(out, keep)

    assert cli(*run).code == 0
    assert sim.charged == 1  # collected (v2) or kept, never bought again
    (done,) = events(out, "succeeded")
    assert done["files"] == ["images/" + name for name in sorted(
        p.name for p in (out / "images").iterdir())] and len(done["files"]) == 3
    assert done.get("recovered", False) == (keep == 3)
    assert len(done["sizes"]) == 3


def test_a_parameter_changed_and_changed_back_buys_nothing_while_its_images_are_intact(
        tmp_path, sim, start_simulator, cli):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("id,prompt\na,a fox\nb,a cat\nc,an owl\n", encoding="utf-8")
    out = tmp_path / "out"

    def run(server, seed: str) -> int:
        return cli("run", jobs, "--out", out, "--base-url", server.base_url, *FAST,
                   "--model", "ssd-1b", "--param", f"seed={seed}").code

    assert run(sim, "1") == 0 and sim.charged == 3
    broke = start_simulator(credits=0.0)  # a mistyped seed, and the account ran dry
    assert run(broke, "2") == 3 and events(out, "pending")
    image = out / "images" / "c.png"  # a crash replaced c's image, unrecorded
    image.write_bytes(bytes(reversed(image.read_bytes())))

    assert run(sim, "1") == 0
    assert sim.charged == 4  # only c, whose image is no longer the one its line recorded
    assert [line["job_id"] for line in events(out, "succeeded")][3:] == ["c"]


def test_a_parameter_named_like_a_results_column_gets_a_column_of_its_own(tmp_path, sim, cli):
    jobs = tmp_path / "jobs.csv"
    jobs.write_text("prompt,param.state,state\nfox,x,mine\n", encoding="utf-8")
    out = tmp_path / "out"
    assert cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST,
               "--model", "my-model", "--price", "0.01").code == 0
    with open(out / "results.csv", encoding="utf-8") as fh:
        (row,) = csv.DictReader(fh)
    assert (row["state"], row["param.state"], row["metadata.state"]) == ("done", "x", "mine")


def test_skip_invalid_leaves_out_every_variant_of_a_skipped_row_from_counts_and_cost(
        tmp_path, sim, cli):
    jobs = tmp_path / "dup.csv"  # row 3 repeats id 'a': its 3 flux-dev variants are left out
    jobs.write_text("id,prompt,variants,model\na,one,1,flux-schnell\na,two,3,flux-dev\n"
                    "b,three,2,\n", encoding="utf-8")
    out = tmp_path / "out"
    options = ("--out", out, "--base-url", sim.base_url, *FAST, "--skip-invalid")
    plan = cli("run", jobs, *options, "--dry-run")
    assert plan.code == 0, plan.err
    assert "3 jobs, valid" in plan.out and "1:1  2\n" in plan.out
    assert "1 × flux-schnell" in plan.out and "2 × luma-photon-txt-2-img" in plan.out
    assert "flux-dev" not in plan.out
    estimate = float(plan.out.split("estimate: 3 jobs = $")[1].split()[0])

    result = cli("run", jobs, *options)
    assert result.code == 1, result.err  # 1: rows were left out
    assert events(out, "run_started")[0]["jobs"] == 3 == len(events(out, "succeeded"))
    assert billed_micro(sim) == round(estimate * 1_000_000)


def test_json_text_whose_escape_is_a_lone_surrogate_is_a_named_error_that_costs_nothing(
        tmp_path, sim, cli):
    cell = tmp_path / "cell.csv"
    cell.write_text('prompt,model,param.extra\nhello,flux-dev,"{""k"":""\\ud800""}"\n',
                    encoding="utf-8")
    option = write_jobs(tmp_path / "option.csv", ["hello"])
    for jobs, options, says in [
            (cell, (), "row 2, param.extra: contains text that is not valid Unicode "
                       "(a lone surrogate \\ud800)"),
            (option, ("--model", "flux-dev", "--param", 'foo={"k":["\\udfff"]}'),
             "--param foo: contains text that is not valid Unicode (a lone surrogate "
             "\\udfff)")]:
        for command in (("validate", jobs), ("run", jobs, "--out", tmp_path / "out",
                                             "--base-url", sim.base_url, *FAST)):
            result = cli(*command, *options)
            assert result.code == 2, result.err
            assert says in result.err and "Traceback" not in result.err
    assert sim.records == []


def test_models_shows_a_registry_model_named_in_any_case_as_a_run_takes_it(cli):
    result = cli("models", " FLUX-Schnell ")
    assert result.code == 0, result.err
    assert "(flux-schnell)" in result.out and "steps" in result.out
