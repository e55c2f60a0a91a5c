"""What a user looks at after a batch: results.csv, the gallery page, `batchgen status`
and `batchgen report` - all replayed from the manifest of real runs against the
simulator, and the page opened in a real (headless) Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import io
import json
import shutil
import struct
import subprocess
import threading
import time
import urllib.request
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import aiohttp
import pandas as pd
import pytest
from PIL import Image

from batchgen.cli import main
from batchgen.gallery import PAGE_SIZE
from batchgen.results import BASE_COLUMNS
from batchgen.simulator import make_png

from .conftest import FAST, events, wait_for, write_jobs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def run(cli, jobs: Path, out: Path, sim, *extra: str):
    return cli("run", jobs, "--out", out, "--base-url", sim.base_url, *FAST, *extra)


def results(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)


class Page(HTMLParser):
    """The parts of index.html the tests look at."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.live_images: list[dict[str, str | None]] = []  # <img>s outside <noscript>
        self.pictures: list[tuple[dict, dict]] = []  # (<img>, the <a> around it)
        self.text: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False
        self._in_noscript = False
        self._link: dict | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        self._in_noscript |= tag == "noscript"
        if tag == "a":
            self._link = dict(attrs)
        if tag == "img" and not self._in_noscript:
            self.live_images.append(dict(attrs))
        if tag == "img" and self._link is not None:
            self.pictures.append((dict(attrs), self._link))

    def handle_endtag(self, tag):
        self._in_script = False
        self._in_noscript &= tag != "noscript"
        if tag == "a":
            self._link = None

    def handle_data(self, data):
        (self.scripts if self._in_script else self.text).append(data)

    def all(self, tag: str) -> list[dict[str, str | None]]:
        return [attrs for name, attrs in self.tags if name == tag]

    def cards(self) -> list[dict[str, str | None]]:
        return [a for a in self.all("article") if "card" in (a.get("class") or "")]


def page(out: Path) -> Page:
    return Page((out / "index.html").read_text(encoding="utf-8"))


def write_table(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def mixed_batch(tmp_path, sim, cli):
    """Four images, one prompt the API rejects, metadata columns: a finished batch."""
    jobs = write_table(tmp_path / "jobs.csv", "id,prompt,aspect_ratio,campaign,Owner Name", [
        'fox,"A red fox in snow, at dawn",16:9,winter,Ana',
        'mug,A black mug,1:1,shop,',
        'bad,"[reject] a forbidden prompt",1:1,shop,Bo',
        'poster,"Poster of ""Lisbon"" trams",2:3,travel,Cy',
        'cat,A cat in a helmet,,fun,Di',
    ])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim)
    assert result.code == 1, result.err
    return jobs, out


def test_results_csv_has_one_row_per_job_in_file_order_matching_the_manifest(mixed_batch):
    jobs, out = mixed_batch
    table = results(out)
    assert list(table.columns) == [*BASE_COLUMNS, "campaign", "Owner Name"]
    assert list(table["id"]) == ["fox", "mug", "bad", "poster", "cat"]
    assert list(table["state"]) == ["done", "done", "failed", "done", "done"]
    assert table.loc[3, "prompt"] == 'Poster of "Lisbon" trams'
    assert table.loc[4, "aspect_ratio"] == "1:1"
    assert list(table["campaign"]) == ["winter", "shop", "shop", "travel", "fun"]
    assert table.loc[1, "Owner Name"] == ""
    by_id = table.set_index("id")
    for line in events(out, "succeeded"):
        row = by_id.loc[line["job_id"]]
        assert row["file"] == line["file"] and (out / row["file"]).is_file()
        assert float(row["cost"]) == line["cost"] == 0.019
        assert int(row["attempts"]) == line["attempts"]
        assert row["error"] == ""
    [failed] = events(out, "failed")
    assert by_id.loc["bad", "error"] == failed["error"] and failed["error"]
    assert by_id.loc["bad", "file"] == "" and float(by_id.loc["bad", "cost"]) == 0
    spent_total = events(out, "run_finished")[-1]["spent_total"]
    assert table["cost"].astype(float).sum() == pytest.approx(spent_total) == 4 * 0.019


def test_yaml_items_with_different_keys_give_every_metadata_column(tmp_path, sim, cli):
    jobs = tmp_path / "jobs.yaml"
    jobs.write_text(
        "defaults: {aspect_ratio: 16:9}\n"
        "jobs:\n"
        "  - a bare prompt\n"
        "  - {prompt: with a size, size: 3, tags: [a, b]}\n"
        "  - {prompt: with an owner, owner: Ana, size: ''}\n"
        "  - {prompt: both, owner: Bo, size: 7, state: draft}\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim).code == 0
    table = results(out)
    # "state" is ours: the job's own "state" keeps its name with a prefix, not hiding ours
    assert list(table.columns) == [*BASE_COLUMNS, "size", "tags", "owner", "metadata.state"]
    assert list(table["state"]) == ["done"] * 4
    assert list(table["aspect_ratio"]) == ["16:9"] * 4
    assert list(table["size"]) == ["", "3", "", "7"]
    assert list(table["owner"]) == ["", "", "Ana", "Bo"]
    assert table.loc[1, "tags"] == '["a", "b"]'
    assert list(table["metadata.state"]) == ["", "", "", "draft"]


def test_a_406_halfway_leaves_the_rest_pending_in_every_report(tmp_path, start_simulator, cli):
    sim = start_simulator(credits=0.05)  # pays for two images
    prompts = [f"a lighthouse, take {i}" for i in range(6)]
    jobs = write_jobs(tmp_path / "jobs.csv", prompts)
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim, "--concurrency", "1")
    assert result.code == 3, result.err

    table = results(out)
    assert list(table["prompt"]) == prompts
    assert list(table["state"]) == ["done", "done"] + ["pending"] * 4
    assert "out of credits" in table.loc[2, "error"]  # the job that got the 406
    assert table.loc[5, "error"] == ""  # never tried
    assert table["cost"].astype(float).sum() == pytest.approx(0.038)

    html = page(out)
    assert [c["data-state"] for c in html.cards()] == table["state"].tolist()
    assert "out of credits (406)" in "".join(html.text)

    info = json.loads(cli("status", out, "--json").out)
    assert (info["jobs"], info["done"], info["failed"], info["pending"]) == (6, 2, 0, 4)
    assert info["pending_reasons"] == {"out_of_credits": 1, "never_tried": 3}
    assert info["spent_total"] == info["spent_last_run"] == pytest.approx(0.038)
    assert info["last_run"]["exit_code"] == 3
    assert info["last_run"]["reason"] == "out_of_credits"
    assert info["left"] == 4 and info["left_cost"] == pytest.approx(0.076)

    topped_up = start_simulator()
    assert run(cli, jobs, out, topped_up).code == 0
    assert list(results(out)["state"]) == ["done"] * 6
    info = json.loads(cli("status", out, "--json").out)
    assert info["spent_total"] == pytest.approx(6 * 0.019)
    assert info["spent_last_run"] == pytest.approx(4 * 0.019)
    assert info["runs"] == 2 and info["left"] == 0


def test_budget_stop_is_pending_with_its_reason(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", [f"a budget poster {i}" for i in range(5)])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim, "--max-cost", "0.038").code == 4
    table = results(out)
    assert table["state"].value_counts().to_dict() == {"done": 2, "pending": 3}
    assert list(table["error"]) == [""] * 5  # the cap stopped the run before them
    info = json.loads(cli("status", out, "--json").out)
    assert info["last_run"]["reason"] == "budget"
    assert info["left"] == 3 and info["left_cost"] == pytest.approx(0.057)


def test_gallery_links_every_image_it_shows_and_needs_nothing_else(mixed_batch):
    _, out = mixed_batch
    html = page(out)
    images = html.all("img")
    assert len(images) == 4
    links = {a.get("href") for a in html.all("a")}
    for img in images:
        assert not img["src"].startswith(("/", "http:", "https:", "file:"))
        assert (out / img["src"]).is_file()
        assert img["src"] in links  # click opens the full-size image
        assert img.get("loading") == "lazy"
    # self-contained: no stylesheet, script or font from anywhere else
    assert html.all("link") == []
    assert all("src" not in attrs for attrs in html.all("script"))
    assert not any(a["href"].startswith(("http:", "https:")) for a in html.all("a"))
    # without JavaScript every card shows (images in <noscript>); the JS-only controls
    # start hidden
    assert html.live_images == []
    cards = html.cards()
    assert len(cards) == 5 and not any("hidden" in c for c in cards)
    assert "hidden" in next(a for tag, a in html.tags if a.get("id") == "controls")
    text = " ".join(html.text)
    for words in ("5", "jobs", "done", "failed", "pending", "$0.076", "Prompt rejected"):
        assert words in text
    assert "winter" in text and "16:9" in text and "fox" in text


def test_prompts_and_metadata_are_escaped(tmp_path, sim, cli):
    evil = '<script>alert("x")</script> & <img src=x onerror=alert(1)>'
    jobs = write_table(tmp_path / "jobs.csv", "id,prompt,note", [
        f'"<u>id</u>","{evil.replace(chr(34), chr(34) * 2)}","<i>note</i>"',
        f'x2,"[reject] {evil.replace(chr(34), chr(34) * 2)}",plain',
    ])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim).code == 1
    raw = (out / "index.html").read_text(encoding="utf-8")
    html = Page(raw)
    assert len(html.all("script")) == 1  # ours
    assert all("onerror" not in attrs for attrs in html.all("img"))
    assert html.all("u") == [] and html.all("i") == []
    text = "".join(html.text)
    assert evil in text and "<u>id</u>" in text and "<i>note</i>" in text
    assert "<script>alert" not in raw and "&lt;script&gt;alert" in raw
    assert results(out).loc[0, "prompt"] == evil


def test_status_text_counts_money_and_what_is_left(mixed_batch, cli):
    _, out = mixed_batch
    result = cli("status", out)
    assert result.code == 0
    text = result.out
    assert "5 jobs from" in text and "jobs.csv" in text
    assert "done 4" in text
    assert "failed 1 (0 retried next run, 1 need --retry-failed)" in text
    assert "pending 0" in text
    assert "spent $0.076 in total over 1 run, $0.076 in the last" in text
    assert "(failed, exit 1)" in text
    assert "left: 0 jobs" in text
    info = json.loads(cli("status", out, "--json").out)
    assert info["failed_permanent"] == 1 and info["warnings"] == []
    assert info["last_run"]["started"] <= info["last_run"]["finished"]


def test_report_rewrites_both_files_exactly(mixed_batch, cli):
    _, out = mixed_batch
    before = {name: (out / name).read_bytes() for name in ("results.csv", "index.html")}
    for name in before:
        (out / name).unlink()
    result = cli("report", out)
    assert result.code == 0, result.err
    assert result.err == ""
    for name, content in before.items():
        assert (out / name).read_bytes() == content


def test_report_without_the_job_file_lists_the_jobs_the_manifest_knows(mixed_batch, cli):
    jobs, out = mixed_batch
    expected = results(out)
    jobs.unlink()
    result = cli("report", out)
    assert result.code == 0
    assert "warning: cannot re-read the job file" in result.err
    # the manifest knows every job that ran (in the order they ran) and their metadata
    table = results(out).set_index("id").sort_index()
    expected = expected.set_index("id").sort_index()
    pd.testing.assert_frame_equal(table.drop(index="bad"), expected.drop(index="bad"))
    # a failure's manifest line has no metadata: only its own columns come back
    assert table.loc["bad", BASE_COLUMNS[1:]].equals(expected.loc["bad", BASE_COLUMNS[1:]])
    status = cli("status", out)
    assert "warning: cannot re-read the job file" in status.out


def test_a_deleted_image_is_pending_again(mixed_batch, cli):
    _, out = mixed_batch
    (out / "images" / "fox.png").unlink()
    assert cli("report", out).code == 0
    fox = results(out).set_index("id").loc["fox"]
    assert fox["state"] == "pending" and fox["file"] == "" and "missing" in fox["error"]
    assert all((out / img["src"]).is_file() for img in page(out).all("img"))


def test_an_edited_job_file_is_reported_as_it_is_now(mixed_batch, cli):
    jobs, out = mixed_batch
    jobs.write_text(jobs.read_text().replace("A black mug", "A white mug")
                    + "new,A brand new row,1:1,x,y\n")
    info = json.loads(cli("status", out, "--json").out)
    assert info["jobs"] == 6 and info["done"] == 3 and info["pending"] == 2
    assert info["pending_reasons"] == {"edited": 1, "never_tried": 1}
    assert any("changed since the last run" in w for w in info["warnings"])


def drop_run_finished(out: Path) -> None:
    """The manifest as a run killed with -9 leaves it: no run_finished line."""
    path = out / "manifest.jsonl"
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(x for x in lines if '"run_finished"' not in x))


def test_status_of_a_killed_run_counts_its_money_from_the_manifest(mixed_batch, cli):
    _, out = mixed_batch
    drop_run_finished(out)
    info = json.loads(cli("status", out, "--json").out)
    assert info["last_run"]["reason"] == "unfinished (killed?)"
    assert info["last_run"]["finished"] is None and info["last_run"]["exit_code"] is None
    assert info["spent_last_run"] == info["spent_total"] == pytest.approx(0.076)
    assert "→ - (unfinished (killed?))" in cli("status", out).out


def test_status_names_the_run_still_going(mixed_batch, cli):
    _, out = mixed_batch
    drop_run_finished(out)
    with subprocess.Popen(["sleep", "600"]) as other:  # stands in for a live run
        try:
            (out / ".batchgen.lock").write_text(str(other.pid))
            info = json.loads(cli("status", out, "--json").out)
        finally:
            other.kill()
    assert info["last_run"]["reason"] == "running"
    assert info["last_run"]["running_pid"] == other.pid


def test_status_and_report_need_an_output_folder(tmp_path, cli):
    for command in ("status", "report"):
        result = cli(command, tmp_path)
        assert result.code == 2 and "not a batchgen output folder" in result.err


# -- ten thousand jobs ------------------------------------------------------------------


@pytest.fixture
def big_batch(tmp_path) -> Path:
    """A 10,000-job batch written directly: 6,000 done, 1,000 failed, 3,000 never run."""
    count = 10_000
    jobs = write_table(tmp_path / "big.csv", "id,prompt,aspect_ratio,batch",
                       [f"job{i:05d},prompt number {i} of a big batch,1:1,b{i % 7}"
                        for i in range(count)])
    out = tmp_path / "big"
    (out / "images").mkdir(parents=True)
    png = make_png("big", "1:1", 8)
    lines = [{"event": "run_started", "ts": "2026-11-01T10:00:00.000Z", "run_id": "r1",
              "job_file": str(jobs.resolve()), "job_file_sha256": None, "jobs": count,
              "settings": {"price": 0.019, "aspect_ratio": "1:1"}, "version": "test"}]
    for i in range(7000):
        job = {"job_id": f"job{i:05d}", "ts": "2026-11-01T10:01:00.000Z",
               "prompt": f"prompt number {i} of a big batch", "aspect_ratio": "1:1",
               "attempts": 1}
        if i < 6000:
            (out / "images" / f"job{i:05d}.png").write_bytes(png)
            lines.append({"event": "succeeded", **job, "file": f"images/job{i:05d}.png",
                          "cost": 0.019, "metadata": {"batch": f"b{i % 7}"}})
        else:
            lines.append({"event": "failed", **job, "status": 400, "error": "rejected",
                          "retryable": False, "cost": 0})
    lines.append({"event": "run_finished", "ts": "2026-11-01T11:00:00.000Z", "run_id": "r1",
                  "exit_code": 1, "reason": "failed", "done": 6000, "failed": 1000,
                  "pending": 3000, "spent_run": 114.0, "spent_total": 114.0})
    (out / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return out


def test_ten_thousand_jobs_stay_usable(big_batch, cli):
    out = big_batch
    assert cli("report", out).code == 0
    table = results(out)
    assert len(table) == 10_000
    assert table["state"].value_counts().to_dict() == {"done": 6000, "pending": 3000,
                                                        "failed": 1000}
    html = page(out)
    assert len(html.cards()) == 10_000 and len(html.all("img")) == 6000
    assert all(img.get("loading") == "lazy" for img in html.all("img"))
    # the failures table starts folded; cards render lazily (content-visibility)
    assert not any("open" in attrs for attrs in html.all("details"))
    assert "content-visibility:auto" in (out / "index.html").read_text()
    assert (out / "index.html").stat().st_size < 8_000_000
    info = json.loads(cli("status", out, "--json").out)
    assert (info["done"], info["failed"], info["pending"]) == (6000, 1000, 3000)
    assert info["left"] == 3000 and info["left_cost"] == pytest.approx(57.0)


# -- a real browser ----------------------------------------------------------------------

needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium)")


def chromium(tmp_path: Path, url: str, *flags: str) -> subprocess.CompletedProcess:
    """Headless Chromium as CI runs it: no sandbox (root), no network chatter."""
    profile = tmp_path / f"chromium-profile-{len(list(tmp_path.glob('chromium-profile-*')))}"
    return subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
         "--window-size=1280,900", *flags, url],
        capture_output=True, text=True, timeout=300, check=False,
    )


def dom(tmp_path: Path, index: Path, fragment: str = "") -> Page:
    result = chromium(tmp_path, index.as_uri() + fragment, "--dump-dom")
    assert result.returncode == 0 and "</html>" in result.stdout, result.stderr[-2000:]
    return Page(result.stdout)


def shown(html: Page) -> list[dict]:
    return [c for c in html.cards() if "hidden" not in c]


@needs_chromium
def test_chromium_renders_the_gallery_and_takes_a_screenshot(mixed_batch, tmp_path):
    _, out = mixed_batch
    html = dom(tmp_path, out / "index.html")
    assert len(html.cards()) == 5 and len(shown(html)) == 5
    controls = next(a for tag, a in html.tags if a.get("id") == "controls")
    assert "hidden" not in controls  # the script ran and showed the filter
    assert len(html.live_images) == 4  # it gave each shown image card its <img>
    assert all((out / img["src"]).is_file() for img in html.live_images)
    assert "showing 1–5 of 5 (5 jobs)" in "".join(html.text)

    shot = tmp_path / "gallery.png"
    result = chromium(tmp_path, (out / "index.html").as_uri(), f"--screenshot={shot}")
    assert result.returncode == 0, result.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1280, 900)
    assert len(data) > 20_000  # thumbnails, text and colour, not a blank page


@needs_chromium
def test_chromium_filters_by_state_and_text_from_the_url(mixed_batch, tmp_path):
    _, out = mixed_batch
    index = out / "index.html"
    failed = shown(dom(tmp_path, index, "#state=failed"))
    assert [c["data-state"] for c in failed] == ["failed"]
    found = dom(tmp_path, index, "#q=FOX")
    assert len(shown(found)) == 1
    assert "showing 1–1 of 1 matching (5 jobs)" in "".join(found.text)
    none = dom(tmp_path, index, "#state=done&q=forbidden")
    assert shown(none) == [] and "no job matches" in "".join(none.text)


@needs_chromium
def test_chromium_pages_through_ten_thousand_jobs(big_batch, tmp_path, cli):
    assert cli("report", big_batch).code == 0
    index = big_batch / "index.html"
    first = dom(tmp_path, index)
    assert len(first.cards()) == 10_000
    assert len(shown(first)) == PAGE_SIZE
    assert len(first.live_images) == PAGE_SIZE  # only the page on screen has <img>s
    pager = next(a for tag, a in first.tags if a.get("id") == "pager")
    assert "hidden" not in pager
    last = dom(tmp_path, index, "#state=failed&page=5")
    cards = shown(last)
    assert len(cards) == PAGE_SIZE and {c["data-state"] for c in cards} == {"failed"}
    assert "showing 801–1000 of 1000 matching (10000 jobs)" in "".join(last.text)



# -- thumbnails in a real browser: what it downloads, where a click goes -------------------


def photo(seed: int, side: int = 1024) -> bytes:
    """A photo-like JPEG: noise over a coloured gradient, as heavy as a real one."""
    noise = Image.effect_noise((side, side), 40 + seed % 20)
    gradient = Image.linear_gradient("L").resize((side, side))
    picture = Image.merge("RGB", (noise, gradient, Image.blend(noise, gradient, 0.5)))
    out = io.BytesIO()
    picture.save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def photo_batch(tmp_path_factory) -> Path:
    """300 done jobs with 1024-px photo-like images, written directly; `batchgen report`
    makes their thumbnails and the gallery. Shared by the tests of this module (they
    only read it)."""
    count = 300
    folder = tmp_path_factory.mktemp("photo-batch")
    jobs = write_table(folder / "photos.csv", "id,prompt,aspect_ratio",
                       [f"p{i:03d},photo number {i},1:1" for i in range(count)])
    out = folder / "photos"
    (out / "images").mkdir(parents=True)
    image = photo(0)
    lines = [{"event": "run_started", "ts": "2026-11-01T10:00:00.000Z", "run_id": "r1",
              "job_file": str(jobs.resolve()), "job_file_sha256": None, "jobs": count,
              "settings": {"price": 0.019, "aspect_ratio": "1:1"}, "version": "test"}]
    for i in range(count):
        (out / "images" / f"p{i:03d}.jpg").write_bytes(image)
        lines.append({"event": "succeeded", "job_id": f"p{i:03d}",
                      "ts": "2026-11-01T10:01:00.000Z", "prompt": f"photo number {i}",
                      "aspect_ratio": "1:1", "attempts": 1, "file": f"images/p{i:03d}.jpg",
                      "bytes": len(image), "cost": 0.019, "metadata": {}})
    (out / "manifest.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["report", str(out)]) == 0
    assert len(list((out / "thumbs").glob("*.webp"))) == count
    return out


@contextlib.contextmanager
def served(root: Path):
    """`root` over HTTP on loopback; yields its URL and the list of paths requested."""
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def do_GET(self):  # noqa: N802 - the name http.server calls
            requests.append(unquote(self.path))
            super().do_GET()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/", requests
    finally:
        server.shutdown()
        server.server_close()


@needs_chromium
def test_chromium_loads_only_thumbnails_for_the_first_page(photo_batch, tmp_path):
    out = photo_batch
    with served(out) as (url, requests):
        html = dom_of(tmp_path, url + "index.html")
    first_page = {"/" + img["src"] for img in html.live_images}
    assert len(first_page) == PAGE_SIZE  # the script made the first page's <img>s
    assert {f"/thumbs/p{i:03d}.webp" for i in range(PAGE_SIZE)} == first_page
    images = [path for path in requests if path.startswith("/images/")]
    thumbs = [path for path in requests if path.startswith("/thumbs/")]
    assert images == []  # not one full-size image
    assert thumbs, requests  # the cards on screen (lazy: maybe not all 200)
    assert set(thumbs) <= first_page
    loaded = sum((out / path[1:]).stat().st_size for path in thumbs)
    full = sum((out / "images" / (Path(p).stem + ".jpg")).stat().st_size for p in thumbs)
    assert loaded * 10 < full


def dom_of(tmp_path: Path, url: str) -> Page:
    result = chromium(tmp_path, url, "--dump-dom", "--virtual-time-budget=5000")
    assert result.returncode == 0 and "</html>" in result.stdout, result.stderr[-2000:]
    return Page(result.stdout)


class DevTools:
    """Just enough of the DevTools protocol to click like a user: one page, over a
    websocket on loopback."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse):
        self.ws, self.serial = ws, 0

    async def send(self, method: str, **params) -> dict:
        self.serial += 1
        await self.ws.send_json({"id": self.serial, "method": method, "params": params})
        while True:
            message = await asyncio.wait_for(self.ws.receive_json(), 30)
            if message.get("id") == self.serial:
                assert "error" not in message, message
                return message["result"]

    async def evaluate(self, expression: str):
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")


def devtools_targets(port: int) -> list[dict]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as answer:
        return json.load(answer)


@needs_chromium
def test_chromium_click_on_a_card_opens_the_full_image(photo_batch, tmp_path):
    profile = tmp_path / "chromium-profile-click"
    with served(photo_batch) as (url, requests):
        browser = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--disable-background-networking", "--disable-component-update",
             "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
             f"--user-data-dir={profile}", "--window-size=1280,900",
             "--remote-debugging-port=0", url + "index.html"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            port_file = profile / "DevToolsActivePort"
            wait_for(port_file.is_file)
            port = int(port_file.read_text().split()[0])
            wait_for(lambda: any(t["type"] == "page" for t in devtools_targets(port)))
            [tab] = [t for t in devtools_targets(port) if t["type"] == "page"]
            href = asyncio.run(click_first_card(tab["webSocketDebuggerUrl"]))
            assert href == "images/p000.jpg"
            wait_for(lambda: "/images/p000.jpg" in requests)  # the full image, downloaded
            wait_for(lambda: any(t["url"] == url + href for t in devtools_targets(port)))
        finally:
            browser.kill()
            browser.wait()
    assert [p for p in requests if p.startswith("/images/")] == ["/images/p000.jpg"]


async def click_first_card(ws_url: str) -> str:
    """Wait for the gallery to show its first card's thumbnail, click it with the
    mouse; the link's href."""
    async with aiohttp.ClientSession() as session, session.ws_connect(
            ws_url, max_msg_size=0) as ws:
        page = DevTools(ws)
        deadline = time.monotonic() + 30
        card = "document.querySelector('#grid a.thumb')"
        while not await page.evaluate(f"document.readyState === 'complete' && "
                                      f"!!{card} && {card}.querySelector('img').complete"):
            assert time.monotonic() < deadline, "the first card never showed its thumbnail"
            await asyncio.sleep(0.1)
        box = await page.evaluate(f"(function(r){{return [r.x + r.width / 2, "
                                  f"r.y + r.height / 2]}})({card}.getBoundingClientRect())")
        assert await page.evaluate(f"{card}.querySelector('img').getAttribute('src')") \
            == "thumbs/p000.webp"
        for kind in ("mousePressed", "mouseReleased"):
            await page.send("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1],
                            button="left", clickCount=1)
        return await page.evaluate(f"{card}.getAttribute('href')")
