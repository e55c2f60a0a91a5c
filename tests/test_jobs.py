"""Job files as users really make them: every format and trap either loads exactly as
the user meant, or is refused with a message naming the file, the place and the column."""

from __future__ import annotations

import datetime
import hashlib
import random
from pathlib import Path

import openpyxl
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from batchgen import readers
from batchgen.config import ASPECT_RATIOS, MAX_PROMPT_CHARS, MODEL
from batchgen.errors import JobFileError
from batchgen.jobs import Job, JobFile, canonical_ratio, content_id, fingerprint, load_jobs
from batchgen.store import IMAGES_DIR, safe_stem

from .conftest import DATA, ROOT

INVALID = DATA / "invalid"
# The workspace's shared/ folder lies beside the clone (CI) or at /work/shared.
PARTI = next((p for p in (ROOT.parent / "shared" / "data" / "PartiPrompts.tsv",
                          Path("/work/shared/data/PartiPrompts.tsv")) if p.exists()),
             ROOT.parent / "shared" / "data" / "PartiPrompts.tsv")


def problems_of(path: Path, **options) -> list[str]:
    with pytest.raises(JobFileError) as caught:
        load_jobs(path, **options)
    return caught.value.problems


def by_prompt(jobs: list[Job]) -> dict[str, Job]:
    return {job.prompt: job for job in jobs}


# -- valid files, format by format ----------------------------------------------------


def test_an_excel_csv_export_with_bom_crlf_and_semicolons_loads_as_the_sheet_shows_it():
    jobs = load_jobs(DATA / "excel_export.csv")
    assert [(j.prompt, j.aspect_ratio, j.source) for j in jobs] == [
        ("A red fox in the snow, photorealistic", "16:9", "row 2"),
        ("A poem on a scroll:\nline one; line two\nline three", "1:1", "row 3"),
        ("Ein Fuchs über der Brücke, 東京の夜景 🦊🌃", "9:16", "row 4"),
        # row 5 is ';;;' - a blank row, skipped; row 6 is trimmed
        ("a lighthouse at dusk", "3:2", "row 6"),
    ]
    assert jobs[0].metadata == {"Category": "animals", "Notes": ""}  # empty cell → ""
    assert jobs[3].metadata == {"Category": "", "Notes": "trimmed"}


def test_a_multi_line_prompt_has_the_same_id_whether_saved_on_windows_or_a_mac(tmp_path):
    windows = tmp_path / "windows.csv"
    windows.write_bytes(b'prompt\r\n"line one\r\nline two"\r\n')
    mac = tmp_path / "mac.csv"
    mac.write_bytes(b'prompt\n"line one\nline two"\n')
    assert load_jobs(windows).jobs == load_jobs(mac).jobs
    assert load_jobs(mac)[0].prompt == "line one\nline two"


@pytest.mark.parametrize("word", ["NULL", "None", "nan", "0", "TRUE", "FALSE", "N/A", "null",
                                  "#N/A"])
def test_words_that_pandas_would_read_as_missing_values_are_prompts(word):
    prompts = [job.prompt for job in load_jobs(DATA / "literal_words.csv")]
    assert word in prompts
    assert len(prompts) == 9


def test_obvious_ratio_spellings_are_normalised_and_an_empty_cell_takes_the_default():
    jobs = load_jobs(DATA / "ratio_spellings.csv", default_ratio="1:1")
    assert [j.aspect_ratio for j in jobs] == ["16:9"] * 6 + ["9:16", "1:1", "1:1"]
    assert load_jobs(DATA / "ratio_spellings.csv", default_ratio="4:5")[-1].aspect_ratio == "4:5"
    assert load_jobs(DATA / "ratio_spellings.csv", default_ratio="5x4")[-1].aspect_ratio == "5:4"


@pytest.mark.parametrize("text, expected", [
    ("16:9", "16:9"), ("16 : 9", "16:9"), ("16x9", "16:9"), ("16×9", "16:9"),
    ("16:09:00", "16:9"), ("09:16:00", "9:16"), ("21:09", "21:9"),
    ("16:10", None), ("7:3", None), ("169", None), ("969", None), ("16:9:30", None),
    ("1:1:1", None), ("", None), ("sixteen by nine", None),
])
def test_canonical_ratio_accepts_only_spellings_of_an_allowed_ratio(text, expected):
    assert canonical_ratio(text) == expected


def test_every_allowed_ratio_is_canonical_as_it_is():
    assert all(canonical_ratio(ratio) == ratio for ratio in ASPECT_RATIOS)


def test_headers_match_in_any_case_with_spaces_or_hyphens_and_other_columns_are_metadata():
    (job,) = load_jobs(DATA / "header_spellings.csv")  # ID,Prompt,aspect-ratio,Shot Type
    assert (job.id, job.prompt, job.aspect_ratio) == ("fox-1", "a fox", "21:9")
    assert job.metadata == {"Shot Type": "wide"}


def test_ratio_column_alias(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("Ratio,PROMPT\n9:21,a tower\n", encoding="utf-8")
    assert load_jobs(path)[0].aspect_ratio == "9:21"


def test_blank_rows_are_skipped_and_row_numbers_still_match_the_spreadsheet(tmp_path):
    jobs = load_jobs(DATA / "blank_rows.csv")
    assert [(j.prompt, j.source) for j in jobs] == [("a cat", "row 3"), ("a dog", "row 6")]
    path = tmp_path / "jobs.csv"
    path.write_text("prompt,aspect_ratio\n\n\na fox,1:1\n,\na dog,7:3\n", encoding="utf-8")
    assert problems_of(path) == [f"{path} row 6, aspect_ratio: '7:3' is not one of "
                                 + ", ".join(ASPECT_RATIOS)]


def test_a_tsv_keeps_double_quotes_as_part_of_the_prompt():
    jobs = load_jobs(DATA / "quotes.tsv")
    assert [j.prompt for j in jobs] == [
        'A sign that says "Hello"', '"quoted from start to end"', 'half "open quote']
    assert [j.aspect_ratio for j in jobs] == ["16:9", "1:1", "1:1"]
    assert jobs[0].metadata == {"source": "parti"}


def test_all_1632_parti_prompts_load_with_their_category_challenge_and_note():
    jobs = load_jobs(PARTI)
    assert len(jobs) == 1632
    assert jobs[0].prompt == "bond" and jobs[0].source == "row 2"
    assert set(jobs[0].metadata) == {"Category", "Challenge", "Note"}
    assert jobs[0].metadata["Category"] == "Abstract"
    quoted = [j for j in jobs if '"' in j.prompt]
    assert quoted, "PartiPrompts has prompts with literal quotes"
    assert any('"Fly an airplane"' in j.prompt for j in quoted)
    assert len({j.id for j in jobs}) == 1632


def test_a_txt_file_is_one_prompt_per_non_empty_line():
    jobs = load_jobs(DATA / "prompts.txt")  # BOM, CRLF, blank lines, padding
    assert [(j.prompt, j.source) for j in jobs] == [
        ("a red fox", "line 1"), ("a blue whale", "line 3"), ("NULL", "line 4"),
        ('the word "hello", in quotes; with a semicolon', "line 5"),
    ]


def test_jsonl_takes_objects_and_strings_and_keeps_typed_metadata():
    jobs = load_jobs(DATA / "jobs.jsonl")
    assert [(j.prompt, j.aspect_ratio, j.source) for j in jobs] == [
        ("a red fox", "16:9", "line 1"),
        ("a bare JSON string", "1:1", "line 3"),
        ("line\u2028separator inside", "1:1", "line 4"),  # null ratio → default
        ("Brücke 🦊", "9:16", "line 5"),
    ]
    assert jobs[0].metadata == {"tags": ["animal", "snow"]}
    assert jobs[2].id == "7"


# -- YAML ----------------------------------------------------------------------------


def test_unquoted_yaml_ratios_stay_strings_where_pyyaml_would_read_base_60_integers():
    text = (DATA / "unquoted_ratios.yaml").read_text(encoding="utf-8")
    plain = yaml.safe_load(text)  # what a naive loader sees
    assert [item["aspect_ratio"] for item in plain] == [969, 556, 61, 1269]
    assert plain[3]["id"] == 7 and plain[3]["prompt"] is True
    jobs = load_jobs(DATA / "unquoted_ratios.yaml")
    assert [j.aspect_ratio for j in jobs] == ["16:9", "9:16", "1:1", "21:9"]
    assert (jobs[3].id, jobs[3].prompt) == ("007", "yes")
    assert all(isinstance(j.aspect_ratio, str) for j in jobs)


def test_yaml_defaults_apply_to_bare_strings_and_mappings_and_a_row_overrides_them():
    jobs = by_prompt(load_jobs(DATA / "defaults.yaml", default_ratio="9:16"))
    assert jobs["a bare string prompt"].aspect_ratio == "16:9"
    assert jobs["a bare string prompt"].metadata == {"style": "watercolor"}
    assert jobs["a quoted: bare string"].aspect_ratio == "16:9"
    assert jobs["a mapping that keeps the defaults"].metadata == {"style": "watercolor"}
    assert jobs["a mapping that overrides them"].aspect_ratio == "1:1"
    assert jobs["a mapping that overrides them"].metadata == {"style": "ink"}
    assert jobs["an empty ratio means the default"].aspect_ratio == "16:9"


def test_aspect_ratio_precedence_row_then_yaml_defaults_then_option_then_1_1(tmp_path):
    plain = tmp_path / "plain.yaml"
    plain.write_text("- a fox\n- prompt: a dog\n  aspect_ratio: 2:3\n", encoding="utf-8")
    assert [j.aspect_ratio for j in load_jobs(plain)] == ["1:1", "2:3"]
    assert [j.aspect_ratio for j in load_jobs(plain, default_ratio="4:5")] == ["4:5", "2:3"]
    with_defaults = tmp_path / "defaults.yaml"
    with_defaults.write_text("defaults: {aspect_ratio: 5:4}\njobs: [a fox, "
                             "{prompt: a dog, aspect_ratio: 2:3}]\n", encoding="utf-8")
    assert [j.aspect_ratio for j in load_jobs(with_defaults, default_ratio="4:5")] == [
        "5:4", "2:3"]


def test_yaml_defaults_cannot_hold_an_id_or_a_prompt(tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text("defaults: {id: x, prompt: y, aspect_ratio: 7:3}\njobs: [a fox]\n",
                    encoding="utf-8")
    problems = problems_of(path)
    assert problems[0] == f"{path} defaults, id: cannot have a default: each job has its own"
    assert problems[1].startswith(f"{path} defaults, prompt: cannot have a default")
    assert problems[2].startswith(f"{path} defaults, aspect_ratio: '7:3' is not one of")


def test_a_yaml_mapping_without_jobs_is_explained(tmp_path):
    path = tmp_path / "jobs.yml"
    path.write_text("prompt: a fox\naspect_ratio: 16:9\n", encoding="utf-8")
    assert problems_of(path) == [f"{path}: a YAML mapping must have a 'jobs' list (and "
                                 "optional 'defaults'); found keys: prompt, aspect_ratio"]


# -- Excel ---------------------------------------------------------------------------


def make_workbook(path: Path) -> Path:
    """A workbook as Excel users make them: ratios Excel turned into times, TRUE as a
    boolean, numbers, empty cells, a blank row, and a second sheet."""
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.title = "Jobs"
    sheet.append(["Prompt", "Aspect Ratio", "Count", "Due"])
    sheet.append(["a red fox", datetime.time(16, 9), 3, datetime.date(2024, 5, 1)])
    sheet.append(["a tall tower", "9:16", 2.5, None])
    sheet.append([None, None, None, None])
    sheet.append([True, None, 0, None])
    sheet.append([0, datetime.time(21, 9), None, None])
    sheet.append(["Brücke 🦊", "16x9", None, None])
    other = book.create_sheet("Second")
    other.append(["id", "prompt"])
    other.append(["only-one", "from the second sheet"])
    book.create_sheet("Blank")
    book.save(path)
    return path


def test_an_xlsx_first_sheet_loads_cells_as_excel_shows_them(tmp_path):
    jobs = load_jobs(make_workbook(tmp_path / "jobs.xlsx"))
    assert [(j.prompt, j.aspect_ratio, j.source) for j in jobs] == [
        ("a red fox", "16:9", "row 2"),  # Excel stored 16:9 as the time 16:09
        ("a tall tower", "9:16", "row 3"),
        ("TRUE", "1:1", "row 5"),  # row 4 is blank
        ("0", "21:9", "row 6"),
        ("Brücke 🦊", "16:9", "row 7"),
    ]
    assert jobs[0].metadata == {"Count": "3", "Due": "2024-05-01 00:00:00"}
    assert jobs[1].metadata == {"Count": "2.5", "Due": ""}


def test_an_xlsx_named_sheet_and_an_unknown_sheet(tmp_path):
    path = make_workbook(tmp_path / "jobs.xlsx")
    (job,) = load_jobs(path, sheet="Second")
    assert (job.id, job.prompt) == ("only-one", "from the second sheet")
    assert problems_of(path, sheet="Nope") == [
        f"{path} (sheet 'Nope'), --sheet: no sheet named 'Nope'; "
        "sheets: 'Jobs', 'Second', 'Blank'"]
    assert problems_of(path, sheet="Blank") == [f"{path} (sheet 'Blank'): the sheet is empty"]


def test_an_xlsx_problem_names_the_sheet_row_and_column(tmp_path):
    path = tmp_path / "jobs.xlsx"
    book = openpyxl.Workbook()
    book.active.append(["prompt", "ratio"])
    book.active.append(["a fox", "4:3"])
    book.create_sheet("Later").append(["prompt"])
    book["Later"].append(["   ", "note"])
    book.save(path)
    assert problems_of(path)[0].startswith(f"{path} row 2, ratio: '4:3' is not one of")
    assert problems_of(path, sheet="Later") == [f"{path} (sheet 'Later') row 2, prompt: is empty"]


def test_a_file_that_is_not_a_workbook_is_refused_clearly(tmp_path):
    path = tmp_path / "jobs.xlsx"
    path.write_text("prompt\na fox\n", encoding="utf-8")  # a CSV renamed to .xlsx
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: cannot be read as an Excel workbook (.xlsx)")


# -- invalid files: each names the file, the place and the column ----------------------

ALLOWED = ", ".join(ASPECT_RATIOS)
INVALID_CASES = {
    "no_prompt_column.csv": ["row 1: no 'prompt' column; columns found: "
                             "'text', 'aspect_ratio', 'notes'"],
    "empty_prompt.csv": ["row 3, prompt: is empty"],
    "bad_ratio.csv": [f"row 3, aspect_ratio: '7:3' is not one of {ALLOWED}"],
    "duplicate_id.csv": ["row 4, id: 'hero' is used twice: row 2 and row 4"],
    "empty.csv": [": the file is empty"],
    "blank.txt": [": the file is empty"],
    "header_only.csv": [": has a header but no jobs"],
    "windows_1252.csv": [" line 2: not UTF-8 text (byte 0xe9 at offset 12); save the file "
                         "as UTF-8 (in Excel: 'CSV UTF-8')"],
    "utf16.csv": [": is UTF-16 text (Excel's 'Unicode Text'); save it as UTF-8"],
    "too_long.csv": [f"row 2, prompt: is 4001 characters; at most {MAX_PROMPT_CHARS} "
                     "are allowed"],
    "jobs.json": [": unsupported file type '.json'; use one of .csv, .tsv, .tab, .txt, "
                  ".xlsx, .yaml, .yml, .jsonl"],
    "broken.yaml": [" line 3: not valid YAML: did not find expected ',' or ']'"],
    "colon_prompt.yaml": [" item 2, prompt: missing; if a cat: sitting on a mat is the "
                          "prompt, put it in quotes"],
    "broken.jsonl": [" line 2: not valid JSON at column ",  # Python 3.13 words the rest anew
                     " line 3: must be a JSON object or a string",
                     " line 4, prompt: must be text, not int"],
    "unquoted_comma.csv": [" row 2: has 3 cells but the header has 2; put a prompt "
                           "containing ',' in double quotes",
                           " row 4: has 3 cells but the header has 2"],
    "many_problems.csv": [" row 3, prompt: is empty",
                          f" row 4, aspect_ratio: '4:3' is not one of {ALLOWED}",
                          " row 4, id: 'a' is used twice: row 2 and row 4",
                          f" row 5, aspect_ratio: '16x10' is not one of {ALLOWED}"],
}


@pytest.mark.parametrize("name", sorted(INVALID_CASES))
def test_an_invalid_file_is_refused_with_every_problem_and_where_it_is(name):
    path = INVALID / name
    problems = problems_of(path)
    assert len(problems) == len(INVALID_CASES[name])
    for problem, expected in zip(problems, INVALID_CASES[name], strict=True):
        assert problem.startswith(f"{path}{expected}") or problem.startswith(
            f"{path} {expected}"), problem


def test_a_missing_file_is_named(tmp_path):
    path = tmp_path / "nope.csv"
    assert problems_of(path) == [f"{path}: no such file"]
    assert problems_of(tmp_path) == [f"{tmp_path}: unsupported file type '(none)'; use one of "
                                     ".csv, .tsv, .tab, .txt, .xlsx, .yaml, .yml, .jsonl"]
    folder = tmp_path / "folder.csv"
    folder.mkdir()
    assert problems_of(folder) == [f"{folder}: not a file"]


def test_rows_that_all_have_an_extra_cell_are_refused_not_shifted(tmp_path):
    """pandas, given a header one cell shorter than every row, silently makes the first
    column the index: prompts would lose their beginning. We refuse instead."""
    path = tmp_path / "jobs.csv"
    path.write_text("prompt,aspect_ratio\na cat, on a mat,16:9\na dog, sitting,1:1\n",
                    encoding="utf-8")
    problems = problems_of(path)
    assert [p.split(":")[0] for p in problems] == [f"{path} row 2", f"{path} row 3"]


def test_an_unclosed_quote_is_refused(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text('prompt,ratio\n"a fox,1:1\nb,1:1\n', encoding="utf-8")
    (problem,) = problems_of(path)
    assert problem.startswith(f"{path}: cannot be read as a table")
    assert "closing double quote" in problem


def test_two_columns_for_the_same_field_are_refused(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("Prompt,prompt,Aspect Ratio,ratio\na,b,1:1,1:1\n", encoding="utf-8")
    assert problems_of(path) == [f"{path} row 1, prompt: same column as 'Prompt'",
                                 f"{path} row 1, ratio: same column as 'Aspect Ratio'"]


def test_an_unnamed_column_with_data_is_kept_and_an_empty_one_ignored(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("prompt,,,\na fox,,note,\n", encoding="utf-8")
    assert load_jobs(path)[0].metadata == {"column C": "note"}


def test_an_invalid_default_ratio_is_refused(tmp_path):
    assert problems_of(DATA / "prompts.txt", default_ratio="4:3") == [
        f"--aspect-ratio '4:3' is not one of {ALLOWED}"]


def test_a_prompt_at_the_cap_is_fine_and_one_over_is_not(tmp_path):
    path = tmp_path / "jobs.txt"
    path.write_text("a" * MAX_PROMPT_CHARS + "\n" + "b" * (MAX_PROMPT_CHARS + 1) + "\n",
                    encoding="utf-8")
    assert problems_of(path) == [f"{path} line 2, prompt: is {MAX_PROMPT_CHARS + 1} "
                                 f"characters; at most {MAX_PROMPT_CHARS} are allowed"]


def test_a_thousand_problems_are_summarised_after_the_first_200(tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("prompt,ratio\n" + "a,7:3\n" * 1000, encoding="utf-8")
    problems = problems_of(path)
    assert len(problems) == 201
    assert problems[0].startswith(f"{path} row 2, ratio:")
    assert problems[-1] == "... and 800 more problems"


def test_jsonl_ids_must_be_text_or_whole_numbers(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"prompt": "a", "id": [1]}\n{"prompt": "b", "id": 2.5}\n'
                    '{"prompt": null}\n', encoding="utf-8")
    assert problems_of(path) == [f"{path} line 1, id: must be text or a whole number, not list",
                                 f"{path} line 2, id: must be text or a whole number, not float",
                                 f"{path} line 3, prompt: missing"]


# -- stable job ids --------------------------------------------------------------------


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    lines = ["prompt,aspect_ratio"] + [f'"{prompt}",{ratio}' for prompt, ratio in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


ROWS = [(f"a photo of thing {i}", "1:1" if i % 2 else "16:9") for i in range(20)]


def test_the_same_content_has_the_same_id_in_every_run_and_any_row_order(tmp_path):
    first = {(j.prompt, j.aspect_ratio): j.id for j in load_jobs(write_csv(tmp_path / "a.csv",
                                                                           ROWS))}
    again = {(j.prompt, j.aspect_ratio): j.id for j in load_jobs(tmp_path / "a.csv")}
    shuffled = ROWS[:]
    random.Random(4).shuffle(shuffled)
    reordered = {(j.prompt, j.aspect_ratio): j.id
                 for j in load_jobs(write_csv(tmp_path / "b.csv", shuffled))}
    assert first == again == reordered
    assert len(set(first.values())) == 20


def test_the_same_prompt_has_the_same_id_in_every_format(tmp_path):
    csv_job = load_jobs(write_csv(tmp_path / "a.csv", [("a red fox", "16:9")]))[0]
    yaml_path = tmp_path / "a.yaml"
    yaml_path.write_text("- {prompt: a red fox, aspect_ratio: 16:9}\n", encoding="utf-8")
    jsonl_path = tmp_path / "a.jsonl"
    jsonl_path.write_text('{"prompt": " a red fox ", "aspect_ratio": "16 x 9"}\n',
                          encoding="utf-8")
    assert csv_job.id == load_jobs(yaml_path)[0].id == load_jobs(jsonl_path)[0].id
    assert csv_job.id == content_id("a red fox", "16:9", 1)


def test_two_identical_rows_are_two_jobs_with_two_ids():
    jobs = load_jobs(DATA / "identical_rows.csv")
    cats = [j.id for j in jobs if (j.prompt, j.aspect_ratio) == ("a cat", "1:1")]
    assert len(cats) == 2 and cats[1] == f"{cats[0]}-2"
    assert len({j.id for j in jobs}) == 4


def test_an_edited_row_is_a_new_job_and_the_others_keep_their_ids(tmp_path):
    before = load_jobs(write_csv(tmp_path / "jobs.csv", ROWS))
    edited = ROWS[:]
    edited[5] = ("a photo of thing 5, in colour", ROWS[5][1])
    edited[6] = (ROWS[6][0], "9:16")
    after = load_jobs(write_csv(tmp_path / "jobs.csv", edited))
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a.id != b.id]
    assert changed == [5, 6]


def test_metadata_is_not_part_of_a_content_id(tmp_path):
    one = tmp_path / "one.csv"
    one.write_text("prompt,note\na fox,first\n", encoding="utf-8")
    two = tmp_path / "two.csv"
    two.write_text("prompt,note\na fox,edited note\n", encoding="utf-8")
    assert load_jobs(one)[0].id == load_jobs(two)[0].id


def test_user_ids_are_used_trimmed_and_need_no_sanitising_here():
    jobs = load_jobs(DATA / "user_ids.csv")
    assert [j.id for j in jobs] == ["hero-banner", "../../etc/passwd", "CON"]


def test_a_user_id_that_equals_another_rows_content_id_is_refused(tmp_path):
    taken = content_id("a fox", "1:1", 1)
    path = tmp_path / "jobs.csv"
    path.write_text(f"id,prompt\n{taken},a dog\n,a fox\n", encoding="utf-8")
    assert problems_of(path) == [f"{path} row 3, id: {taken!r} is used twice: row 2 (its id "
                                 "column) and row 3 (its content id)"]


# -- what is sent: each job's fingerprint (SPEC §8 S2) ------------------------------------


def test_a_jobs_fingerprint_is_the_digest_of_its_content_id_and_follows_prompt_and_ratio(
        tmp_path):
    path = tmp_path / "jobs.csv"
    path.write_text("id,prompt,aspect_ratio,note\n"
                    "hero,a fox,16:9,first\n,a fox,16:9,second\n,a fox,16:9,third\n"
                    ",a fox,9:16,\n,a dog,16:9,\n", encoding="utf-8")
    hero, first, copy, taller, dog = load_jobs(path)
    assert first.fp == first.id == content_id("a fox", "16:9", 1)
    assert copy.id == f"{first.fp}-2" and copy.fp == first.fp
    assert hero.fp == first.fp == fingerprint(MODEL, "a fox", "16:9")  # a user id changes no fp
    assert len({first.fp, taller.fp, dog.fp}) == 3  # the ratio or the prompt: a new fp
    assert len(first.fp) == 16 and int(first.fp, 16) >= 0
    assert fingerprint("another-model", "a fox", "16:9") != first.fp


def test_metadata_edits_do_not_change_a_jobs_fingerprint(tmp_path):
    one = tmp_path / "one.jsonl"
    one.write_text('{"id": "a", "prompt": "a fox", "tags": ["x"]}\n', encoding="utf-8")
    two = tmp_path / "two.jsonl"
    two.write_text('{"id": "a", "prompt": " a fox ", "tags": ["y"], "more": 1}\n',
                   encoding="utf-8")
    assert load_jobs(one)[0].fp == load_jobs(two)[0].fp


# -- the JobFile: the jobs and the facts a run records ------------------------------------


def test_a_csv_job_file_knows_its_absolute_path_its_hash_and_its_default_ratio(
        tmp_path, monkeypatch):
    path = tmp_path / "jobs.csv"
    path.write_bytes(b"prompt,ratio\r\na fox,\r\na dog,9:16\r\n")
    monkeypatch.chdir(tmp_path)
    jobfile = load_jobs("jobs.csv", default_ratio="16 x 9", sheet="ignored for a CSV")
    assert isinstance(jobfile, JobFile)
    assert jobfile.path == path.resolve() and jobfile.path.is_absolute()
    assert jobfile.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert (jobfile.default_ratio, jobfile.sheet) == ("16:9", None)
    assert [j.aspect_ratio for j in jobfile] == ["16:9", "9:16"]


def test_a_job_file_streams_its_jobs_as_often_as_needed(tmp_path):
    path = tmp_path / "jobs.txt"
    path.write_text("one\ntwo\nthree\n", encoding="utf-8")
    jobfile = load_jobs(path)
    assert len(jobfile) == 3 and list(jobfile) == list(jobfile) == jobfile.jobs
    assert jobfile[0].prompt == "one" and jobfile[-1].prompt == "three"
    assert [len(chunk) for chunk in jobfile.chunks()] == [3]
    assert jobfile.ratios == {"1:1": 3} and jobfile.metadata_columns == []


def test_an_xlsx_job_file_knows_which_sheet_was_read_and_rereads_the_same(tmp_path):
    path = make_workbook(tmp_path / "jobs.xlsx")
    first = load_jobs(path)
    assert first.sheet == "Jobs"  # no --sheet: the first one, by name
    assert first.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert first.path == path.resolve() and first.default_ratio == "1:1"
    second = load_jobs(path, sheet="Second", default_ratio="21:9")
    assert (second.sheet, second.default_ratio, len(second)) == ("Second", "21:9", 1)
    again = load_jobs(second.path, default_ratio=second.default_ratio, sheet=second.sheet)
    assert (again.sha256, again.sheet, again.default_ratio) == (
        second.sha256, second.sheet, second.default_ratio)
    assert again.jobs == second.jobs


def test_yaml_defaults_are_the_job_files_default_ratio(tmp_path):
    path = tmp_path / "jobs.yaml"
    path.write_text("defaults: {aspect_ratio: 5x4}\njobs: [a fox]\n", encoding="utf-8")
    jobfile = load_jobs(path, default_ratio="9:16")
    assert jobfile.default_ratio == "5:4" == jobfile[0].aspect_ratio


# -- text that cannot be encoded (SPEC §8 S5) ----------------------------------------------


def test_lone_surrogates_anywhere_in_a_jsonl_row_are_listed_with_every_other_problem(
        tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text("\n".join([
        '{"prompt": "fine, with a real pair \\ud83e\\udd8a"}',
        '{"prompt": "a fox \\ud800"}',
        '{"prompt": "a dog", "id": "dog-\\udfff"}',
        '{"prompt": "a cat", "n\\udc80te": "x"}',
        '{"prompt": "a cow", "tags": ["ok", {"k\\udc00": "v"}]}',
        '{"prompt": "an owl", "aspect_ratio": "4:3"}',
    ]) + "\n", encoding="utf-8")
    assert problems_of(path) == [
        f"{path} line 2, prompt: contains text that is not valid Unicode "
        "(a lone surrogate \\ud800)",
        f"{path} line 3, id: contains text that is not valid Unicode (a lone surrogate \\udfff)",
        f"{path} line 4, n\\udc80te: the column name contains text that is not valid Unicode "
        "(a lone surrogate \\udc80)",
        f"{path} line 5, tags: contains text that is not valid Unicode "
        "(a lone surrogate \\udc00)",
        f"{path} line 6, aspect_ratio: '4:3' is not one of {ALLOWED}",
    ]
    assert all(p.encode("utf-8") for p in problems_of(path))


@pytest.mark.parametrize("loader", ["libyaml", "pure Python"])
def test_a_lone_surrogate_escape_in_yaml_is_refused_with_or_without_libyaml(
        tmp_path, monkeypatch, loader):
    if loader == "pure Python":
        monkeypatch.setattr(readers, "_YAML_LOADER", yaml.BaseLoader)
    elif not hasattr(yaml, "CBaseLoader"):
        pytest.skip("PyYAML was built without libyaml")
    path = tmp_path / "jobs.yaml"
    path.write_text('- a fox\n- {prompt: "a dog \\ud800"}\n'
                    '- {prompt: a cow, tags: [x, {k: "\\udc00"}]}\n', encoding="utf-8")
    problems = problems_of(path)
    if loader == "libyaml":  # libyaml refuses the escape itself
        assert problems == [f"{path} line 2: not valid YAML: found invalid Unicode "
                            "character escape code"]
    else:
        assert problems == [
            f"{path} item 2, prompt: contains text that is not valid Unicode "
            "(a lone surrogate \\ud800)",
            f"{path} item 3, tags: contains text that is not valid Unicode "
            "(a lone surrogate \\udc00)"]


def test_json_nested_too_deeply_for_python_is_a_problem_not_a_traceback(tmp_path):
    path = tmp_path / "jobs.jsonl"
    path.write_text('{"prompt": "a", "m": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
                    encoding="utf-8")
    assert problems_of(path) == [f"{path} line 1: not valid JSON: nested too deeply"]


# -- safe file names from ids ------------------------------------------------------------

HOSTILE_IDS = [
    "../../etc/passwd", "..", ".", "/abs/path", "C:\\Windows\\x", "a\x00b", "x" * 500,
    "CON", "con.txt", "Lpt1", "nul", ".hidden", "a/b", "a_b", "a b", "猫", "", " ", "-",
    "ok-id_1.v2",
]


@pytest.mark.parametrize("job_id", HOSTILE_IDS)
def test_a_safe_stem_never_leaves_the_images_folder(tmp_path, job_id):
    stem = safe_stem(job_id)
    images = tmp_path / IMAGES_DIR
    assert (images / f"{stem}.png").resolve().parent == images.resolve()
    assert not set(stem) & set("/\\\x00:") and stem.isascii() and stem.isprintable()
    assert not stem.startswith((".", "-", " ")) or stem == job_id
    assert stem.split(".")[0].lower() not in {"con", "prn", "aux", "nul", "lpt1", "com1"}
    assert 0 < len(stem) <= 100


def test_safe_stems_are_the_id_itself_when_it_is_safe_and_distinct_otherwise():
    assert safe_stem("hero-banner") == "hero-banner"
    assert safe_stem("ok-id_1.v2") == "ok-id_1.v2"
    assert safe_stem("a/b") != safe_stem("a_b") == "a_b"
    stems = [safe_stem(job_id) for job_id in HOSTILE_IDS]
    assert len(set(stems)) == len(HOSTILE_IDS)
    assert safe_stem("x" * 500) != safe_stem("x" * 501)
    assert safe_stem("../../etc/passwd") == safe_stem("../../etc/passwd")  # stable


def test_two_ids_never_share_a_file_even_ignoring_case():
    """SPEC §8 S3: `a b` and an id spelled like its sanitised stem, `Hero` and `hero`."""
    stem = safe_stem("a b")
    assert safe_stem(stem) != stem
    assert safe_stem("Hero").lower() != safe_stem("hero").lower()
    assert safe_stem("HERO") != safe_stem("Hero")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(min_size=0, max_size=30), min_size=1, max_size=20, unique=True))
def test_distinct_ids_get_distinct_file_names_ignoring_case(ids):
    # the hardest neighbours: each id's own stem and its case variants, as ids too
    ids = list(dict.fromkeys([*ids, *(safe_stem(i) for i in ids), *(i.upper() for i in ids),
                              *(i.lower() for i in ids)]))
    stems = [safe_stem(i).lower() for i in ids]
    assert len(set(stems)) == len(ids)
    assert all(s == s.lower() and s.isascii() for s in (safe_stem(i) for i in ids))
