"""The benchmark suite still runs: `python -m bench --smoke` end to end, tiny sizes.

The benchmarks themselves are not tests (their figures depend on the machine);
this only proves every one of them runs and fills its rows, so the suite does
not rot while batchgen changes under it.
"""

from __future__ import annotations

from bench.run import main
from bench.suite import BENCHMARKS


def test_every_benchmark_runs_at_smoke_size_and_prints_its_ratio(tmp_path, capsys):
    code = main(["--smoke", "--tmp", str(tmp_path), "--save", str(tmp_path / "RESULTS.md")])
    out = capsys.readouterr().out
    assert code == 0, out
    for section in ("1 throughput", "2 alternatives", "3 overhead", "4 memory", "5 resume",
                    "6 429 storm", "7 gallery", "8 start-up"):
        assert f"| {section} |" in out
    assert "ERROR" not in out
    assert len(BENCHMARKS) == 8
    saved = (tmp_path / "RESULTS.md").read_text()
    assert "cores" in saved and "Python" in saved and "| 5 resume |" in saved
    assert [p.name for p in tmp_path.iterdir()] == ["RESULTS.md"]  # generated data removed
