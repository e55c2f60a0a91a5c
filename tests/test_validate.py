"""`batchgen validate` and the promise behind it: a job file with any problem costs
nothing - `batchgen run` exits 2 before a single request reaches the API."""

from __future__ import annotations

from pathlib import Path

import openpyxl
import pytest

from .conftest import DATA, spawn, write_jobs
from .test_jobs import INVALID_CASES, PARTI

INVALID = DATA / "invalid"
FAST = ("--no-progress", "--backoff", "0.01", "--rate", "100000")


def run(cli, jobs: Path, out: Path, sim, *extra: str):
    return cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST, *extra)


# -- run refuses invalid files and sends nothing ------------------------------------------


@pytest.mark.parametrize("name", sorted(INVALID_CASES))
def test_run_on_an_invalid_file_exits_2_listing_every_problem_and_sends_nothing(
        tmp_path, sim, cli, name):
    path = INVALID / name
    result = run(cli, path, tmp_path / "out", sim)
    assert result.code == 2
    assert len(sim.records) == 0
    assert not (tmp_path / "out").exists()
    assert "error: the job file is not valid:" in result.err
    assert "nothing was sent." in result.err
    problem_lines = [line.strip() for line in result.err.splitlines()
                     if line.startswith(f"  {path}")]
    assert len(problem_lines) == len(INVALID_CASES[name])
    for line, expected in zip(problem_lines, INVALID_CASES[name], strict=True):
        assert line.startswith((f"{path}{expected}", f"{path} {expected}")), line


@pytest.mark.parametrize("options", [
    ("--aspect-ratio", "4:3"),
    ("--sheet", "Nope"),
], ids=["bad-default-ratio", "unknown-sheet"])
def test_run_with_a_bad_option_for_the_job_file_exits_2_and_sends_nothing(
        tmp_path, sim, cli, options):
    book = openpyxl.Workbook()
    book.active.append(["prompt"])
    book.active.append(["a fox"])
    book.save(tmp_path / "jobs.xlsx")
    result = run(cli, tmp_path / "jobs.xlsx", tmp_path / "out", sim, *options)
    assert result.code == 2, result.err
    assert len(sim.records) == 0
    assert "4:3" in result.err or "no sheet named 'Nope'; sheets: 'Sheet'" in result.err


def test_run_on_a_missing_file_exits_2_and_sends_nothing(tmp_path, sim, cli):
    result = run(cli, tmp_path / "nope.csv", tmp_path / "out", sim)
    assert result.code == 2
    assert f"{tmp_path / 'nope.csv'}: no such file" in result.err
    assert len(sim.records) == 0


def test_one_bad_row_among_many_good_ones_still_sends_nothing(tmp_path, sim, cli):
    jobs = tmp_path / "jobs.csv"
    rows = [f"a photo of thing {i},1:1" for i in range(50)]
    rows[37] = "a photo of thing 37,4:3"
    jobs.write_text("prompt,aspect_ratio\n" + "\n".join(rows) + "\n", encoding="utf-8")
    result = run(cli, jobs, tmp_path / "out", sim)
    assert result.code == 2
    assert f"{jobs} row 39, aspect_ratio: '4:3' is not one of" in result.err
    assert len(sim.records) == 0 and sim.charged == 0


def test_a_valid_tricky_file_runs_and_sends_exactly_what_the_sheet_says(tmp_path, sim, cli):
    """The BOM/CRLF/semicolon Excel export goes out with trimmed prompts and canonical
    ratios - never a YAML 969, never the metadata."""
    result = run(cli, DATA / "excel_export.csv", tmp_path / "out", sim)
    assert result.code == 0, result.err
    sent = sorted((r.prompt, r.aspect_ratio) for r in sim.generation_records())
    assert sent == sorted([
        ("A red fox in the snow, photorealistic", "16:9"),
        ("A poem on a scroll:\nline one; line two\nline three", "1:1"),
        ("Ein Fuchs über der Brücke, 東京の夜景 🦊🌃", "9:16"),
        ("a lighthouse at dusk", "3:2"),
    ])


def test_unquoted_yaml_ratios_reach_the_api_as_strings(tmp_path, sim, cli):
    result = run(cli, DATA / "unquoted_ratios.yaml", tmp_path / "out", sim)
    assert result.code == 0, result.err
    ratios = sorted(r.aspect_ratio for r in sim.generation_records())
    assert ratios == ["16:9", "1:1", "21:9", "9:16"]


# -- text that cannot be encoded: exit 2, never a traceback (SPEC §8 S5) ------------------

SURROGATE_ROWS = {  # column named in the message → a JSONL line with a lone surrogate in it
    "prompt": '{"prompt": "a fox \\ud800"}',
    "id": '{"id": "fox-\\ud800", "prompt": "a fox"}',
    "n\\ud800te": '{"prompt": "a fox", "n\\ud800te": "x"}',
    "tags": '{"prompt": "a fox", "tags": ["ok", {"k": ["deep \\ud800"]}]}',
}


@pytest.mark.parametrize("command", ["validate", "run"])
@pytest.mark.parametrize("column", sorted(SURROGATE_ROWS))
def test_a_lone_surrogate_in_a_row_exits_2_naming_row_and_column_and_sends_nothing(
        tmp_path, cli, command, column):
    """Also without an id column, where the content id is a hash of the prompt."""
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text('{"prompt": "a good first row"}\n' + SURROGATE_ROWS[column] + "\n",
                    encoding="utf-8")
    extra = ["--simulate", "--no-progress"] if command == "run" else []
    result = cli(command, jobs, "--out", tmp_path / "out", *extra, key=None)
    assert result.code == 2, result.err
    assert f"{jobs} line 2, {column}: " in result.err
    assert "contains text that is not valid Unicode (a lone surrogate \\ud800)" in result.err
    assert "Traceback" not in result.err and "nothing was sent." in result.err
    assert result.out == "" and not (tmp_path / "out").exists()


# -- validate ------------------------------------------------------------------------------


def test_validate_prints_the_count_per_ratio_and_the_cost_without_needing_a_key(tmp_path, cli):
    result = cli("validate", DATA / "ratio_spellings.csv", "--out", tmp_path / "out", key=None)
    assert result.code == 0, result.err
    assert f"{DATA / 'ratio_spellings.csv'}: 9 jobs, valid" in result.out
    assert "   1:1  2" in result.out and "  16:9  6" in result.out and "  9:16  1" in result.out
    assert "estimate: 9 x $0.019 = $0.171" in result.out
    assert "already done" not in result.out
    assert not (tmp_path / "out").exists()


def test_validate_the_parti_prompts(cli, tmp_path):
    result = cli("validate", PARTI, "--out", tmp_path / "out", "--aspect-ratio", "16:9")
    assert result.code == 0, result.err
    assert "1632 jobs, valid" in result.out
    assert "  16:9  1632" in result.out
    assert "estimate: 1632 x $0.019 = $31.008" in result.out


def test_validate_an_invalid_file_exits_2_with_the_full_list(cli):
    result = cli("validate", INVALID / "many_problems.csv")
    assert result.code == 2
    assert result.out == ""
    lines = [line for line in result.err.splitlines() if "many_problems.csv row" in line]
    assert len(lines) == 4


def test_validate_after_a_partial_run_says_what_is_done_and_what_the_rest_costs(
        tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv",
                      ["one", "two", "[reject] three", "four", "five", "six"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--limit", "3", "--concurrency", "1").code == 1
    assert len(sim.generation_records()) == 3 and sim.charged == 2
    result = cli("validate", jobs, "--out", out)
    assert result.code == 0, result.err
    assert "6 jobs, valid" in result.out
    assert "estimate: 6 x $0.019 = $0.114" in result.out
    assert f"already done: 2 (1 failed permanently) in {out}; left: 3 = $0.057" in result.out
    assert len(sim.generation_records()) == 3  # validate itself sends nothing


def test_validate_finds_the_default_output_folder(tmp_path, sim, cli, monkeypatch):
    monkeypatch.chdir(tmp_path)
    jobs = write_jobs(tmp_path / "batch.csv", ["one", "two", "three"])
    assert cli("run", jobs, "--base-url", sim.base_url, *FAST).code == 0
    assert (tmp_path / "output" / "batch" / "manifest.jsonl").exists()
    result = cli("validate", jobs)
    assert "already done: 3 (0 failed permanently)" in result.out
    assert "left: 0 = $0.00" in result.out


def test_validate_after_an_edit_counts_only_the_changed_rows_as_left(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", ["one", "two", "three"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim).code == 0
    write_jobs(jobs, ["one", "two, edited", "three", "four"])
    result = cli("validate", jobs, "--out", out)
    assert "4 jobs, valid" in result.out
    assert "already done: 2 (0 failed permanently)" in result.out
    assert "left: 2 = $0.038" in result.out


def test_python_dash_m_batchgen_validate_works_as_a_real_process(tmp_path):
    process = spawn("validate", DATA / "defaults.yaml", "--out", tmp_path / "out")
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "5 jobs, valid" in out and "  16:9  4" in out and "   1:1  1" in out
    bad = spawn("validate", INVALID / "duplicate_id.csv")
    out, err = bad.communicate(timeout=60)
    assert bad.returncode == 2
    assert "row 4, id: 'hero' is used twice: row 2 and row 4" in err


def test_an_id_a_variant_makes_is_named_as_that_variant_when_another_row_has_it(tmp_path, cli):
    jobs = tmp_path / "ids.csv"
    jobs.write_text("id,prompt,variants\nx,a fox,1\nz,a cat,1\nh,an owl,3\nh-v3,a hen,1\n"
                    "h-v2,a bee,1\n", encoding="utf-8")
    result = cli("validate", jobs)
    assert result.code == 2
    assert result.err.index("row 5, id: 'h-v3' is used twice: row 4 (variant 3 of 'h') "
                            "and row 5") \
        < result.err.index("row 6, id: 'h-v2' is used twice: row 4 (variant 2 of 'h') "
                           "and row 6")
    first = tmp_path / "first.csv"  # the variant is the later one
    first.write_text("id,prompt,variants\nh-v2,a bee,1\nh,an owl,2\n", encoding="utf-8")
    assert "row 3, id: 'h-v2' is used twice: row 2 and row 3 (variant 2 of 'h')" \
        in cli("validate", first).err
