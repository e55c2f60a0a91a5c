"""Thumbnails: the gallery of real-sized images shows small ones and links to the full
image; a thumbnail that cannot be made never costs a job, a run or a report - the
gallery shows the full image instead. Against the simulator serving 1024-px images."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from PIL import Image

from batchgen.simulator import make_png
from batchgen.thumbs import LONG_SIDE

from .conftest import events, kill_9_when, spawn
from .test_report import Page, page, run, write_table

SIZE = 1024  # the simulator's image_size: pixels on the long side


@pytest.fixture
def big_images(tmp_path, start_simulator, cli):
    """Three 1024-px images in different shapes and one rejected prompt."""
    sim = start_simulator(image_size=SIZE)
    jobs = write_table(tmp_path / "jobs.csv", "id,prompt,aspect_ratio", [
        "fox,A red fox in snow,16:9",
        "mug,A black mug,1:1",
        "tower,A tall tower,9:21",
        'bad,"[reject] a forbidden prompt",1:1',
    ])
    out = tmp_path / "out"
    result = run(cli, jobs, out, sim)
    assert result.code == 1, result.err  # the rejected one
    return sim, jobs, out


def thumbs_of(out: Path) -> dict[str, Path]:
    return {p.name: p for p in (out / "thumbs").iterdir()}


def card_sources(html: Page) -> dict[str, tuple[str, str]]:
    """Image file → (what its card's <img> shows, where its link goes)."""
    return {link["href"]: (img["src"], link["href"]) for img, link in html.pictures}


def test_a_run_of_real_sized_images_leaves_a_small_thumbnail_of_each(big_images):
    _, _, out = big_images
    images = {line["file"] for line in events(out, "succeeded")}
    assert thumbs_of(out).keys() == {f"{Path(f).stem}.webp" for f in images}
    for file in images:
        thumb = out / "thumbs" / f"{Path(file).stem}.webp"
        with Image.open(out / file) as full, Image.open(thumb) as small:
            assert max(full.size) > 1000 and small.format == "WEBP"
            assert max(small.size) == LONG_SIDE <= 400
            # the same shape, to a pixel
            assert abs(small.width / small.height - full.width / full.height) < 0.02
        assert thumb.stat().st_size * 5 < (out / file).stat().st_size
    assert list((out / "thumbs").glob(".*")) == []  # no temporary file left


def test_the_gallery_shows_thumbnails_and_links_to_the_full_images(big_images):
    _, _, out = big_images
    html = page(out)
    shown = card_sources(html)
    assert set(shown) == {line["file"] for line in events(out, "succeeded")}
    for file, (src, href) in shown.items():
        assert href == file and href.startswith("images/")  # a click opens the full image
        assert src == f"thumbs/{Path(file).stem}.webp" and (out / src).is_file()
    for link in html.all("a"):  # what the script shows when JavaScript runs
        if "thumb" in (link.get("class") or ""):
            assert link["data-src"].startswith("thumbs/")
    for img, _ in html.pictures:  # room kept before it loads: the layout does not jump
        assert img["loading"] == "lazy"
        assert max(int(img["width"]), int(img["height"])) == LONG_SIDE
    fox = next(img for img, link in html.pictures if link["href"] == "images/fox.png")
    assert (fox["width"], fox["height"]) == ("320", "180")


def test_small_images_are_shown_as_they_are_without_a_thumbnail(tmp_path, sim, cli):
    jobs = write_table(tmp_path / "jobs.csv", "id,prompt", ["a,a small image"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, sim).code == 0  # the simulator's default: 96 px, < 1 KB
    assert not (out / "thumbs").exists() or thumbs_of(out) == {}
    assert card_sources(page(out)) == {"images/a.png": ("images/a.png", "images/a.png")}


def test_a_corrupt_image_still_gets_a_gallery_showing_the_full_image(big_images, cli):
    _, _, out = big_images
    mug = out / "images" / "mug.png"
    mug.write_bytes(os.urandom(mug.stat().st_size))  # same size: still counted as done
    later = (out / "thumbs" / "mug.webp").stat().st_mtime + 10
    os.utime(mug, (later, later))
    result = cli("report", out)
    assert result.code == 0, result.err
    assert "Traceback" not in result.err
    shown = card_sources(page(out))
    assert shown["images/mug.png"] == ("images/mug.png", "images/mug.png")
    assert shown["images/fox.png"][0] == "thumbs/fox.webp"
    assert not (out / "thumbs" / "mug.webp").exists()  # never the old image's thumbnail


def test_report_makes_the_thumbnails_that_are_missing(big_images, cli):
    _, _, out = big_images
    before = {name: path.read_bytes() for name, path in thumbs_of(out).items()}
    for path in thumbs_of(out).values():
        path.unlink()
    (out / "thumbs").rmdir()  # as in a folder made before thumbnails existed
    assert cli("report", out).code == 0
    assert {name: path.read_bytes() for name, path in thumbs_of(out).items()} == before
    assert all(src.startswith("thumbs/") for src, _ in card_sources(page(out)).values())


def test_a_thumbnail_older_than_its_image_is_made_again_a_newer_one_is_kept(big_images, cli):
    _, _, out = big_images
    fox, mug = out / "thumbs" / "fox.webp", out / "thumbs" / "mug.webp"
    right_mug = mug.read_bytes()
    mug.write_bytes(fox.read_bytes())  # the wrong picture, and older than the image
    old = (out / "images" / "mug.png").stat().st_mtime - 60
    os.utime(mug, (old, old))
    fox_mtime = fox.stat().st_mtime_ns
    assert cli("report", out).code == 0
    assert mug.read_bytes() == right_mug
    assert fox.stat().st_mtime_ns == fox_mtime  # up to date: not made again


def test_an_edited_row_gets_the_thumbnail_of_its_new_image(big_images, cli):
    sim, jobs, out = big_images
    old = (out / "thumbs" / "mug.webp").read_bytes()
    jobs.write_text(jobs.read_text().replace("A black mug", "A white mug"))
    assert run(cli, jobs, out, sim).code == 1  # the rejected one is still rejected
    assert (out / "images" / "mug.png").read_bytes() == make_png("A white mug", "1:1", SIZE)
    new = out / "thumbs" / "mug.webp"
    assert new.read_bytes() != old
    with Image.open(new) as small:  # it is a picture of the new image
        expected = Image.open(out / "images" / "mug.png").convert("RGB").resize(small.size)
        pixel = (small.width // 2, small.height // 2)
        assert all(abs(a - b) <= 8 for a, b in zip(small.convert("RGB").getpixel(pixel),
                                                   expected.getpixel(pixel), strict=True))


def test_an_image_adopted_after_a_crash_gets_its_thumbnail(tmp_path, start_simulator, cli):
    failing = start_simulator(image_size=SIZE, fault_script=["503"])
    jobs = write_table(tmp_path / "jobs.csv", "id,prompt", ["hero,saved before the crash"])
    out = tmp_path / "out"
    assert run(cli, jobs, out, failing, "--retries", "0").code == 1
    # the image reached the disk, the crash came before its line
    (out / "images" / "hero.png").write_bytes(make_png("saved before the crash", "1:1", SIZE))
    assert run(cli, jobs, out, failing).code == 0
    assert events(out, "succeeded")[0]["recovered"]
    assert card_sources(page(out))["images/hero.png"][0] == "thumbs/hero.webp"
    assert (out / "thumbs" / "hero.webp").is_file()


def test_thumbnails_that_cannot_be_written_never_fail_the_run(tmp_path, start_simulator, cli):
    sim = start_simulator(image_size=SIZE)
    jobs = write_table(tmp_path / "jobs.csv", "id,prompt", ["a,one", "b,two", "c,three"])
    out = tmp_path / "out"
    out.mkdir()
    (out / "thumbs").write_text("a file where the thumbnails' folder should be")
    result = run(cli, jobs, out, sim, "-v")
    assert result.code == 0, result.err
    assert len(events(out, "succeeded")) == 3
    assert "Traceback" not in result.err and "no thumbnail for images/a.png" in result.err
    shown = card_sources(page(out))
    assert all(src == href for src, href in shown.values()) and len(shown) == 3
    assert cli("report", out).code == 0


def test_thumbnails_are_made_as_images_arrive_not_only_at_the_end(tmp_path, start_simulator):
    sim = start_simulator(image_size=SIZE, latency=0.2)
    jobs = write_table(tmp_path / "jobs.csv", "id,prompt",
                       [f"j{i},slow image {i}" for i in range(40)])
    out = tmp_path / "out"
    proc = spawn("run", jobs, "--out", out, "--base-url", sim.base_url, "--concurrency", "2",
                 "--no-progress")
    kill_9_when(proc, lambda: len(list(out.glob("thumbs/*.webp"))) >= 3)
    assert not (out / "index.html").exists()  # killed long before the reports
    saved = {Path(line["file"]).stem for line in events(out, "succeeded")}
    made = {path.stem for path in out.glob("thumbs/*.webp")}
    assert len(made) >= 3 and made <= saved
