"""The run, as a user sees it: files, manifest lines, exit codes and the money
the simulator charged."""

from __future__ import annotations

from batchgen.client import image_extension

from .conftest import events, write_jobs


def test_happy_path_writes_every_image_and_charges_once_per_image(tmp_path, sim, cli):
    jobs = write_jobs(tmp_path / "jobs.csv", [f"a photo of thing {i}" for i in range(12)])
    out = tmp_path / "out"
    result = cli("run", jobs, "--out", out, "--base-url", sim.base_url, "--rate", "6000")
    assert result.code == 0, result.err
    succeeded = events(out, "succeeded")
    assert len(succeeded) == 12
    for line in succeeded:
        data = (out / line["file"]).read_bytes()
        assert image_extension(data) == "png"
        assert line["cost"] == 0.019
    assert sim.charged == 12
    assert "done=12 failed=0 pending=0 spent=$0.228 total=$0.228 exit=0" in result.err
