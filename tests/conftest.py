"""Shared fixtures: a real simulator on a free loopback port, and the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchgen.cli import main
from batchgen.simulator import Simulator, SimulatorConfig, SimulatorThread

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
TEST_KEY = "sk-test-SECRET-0123456789"
FAST = ("--backoff", "0.01", "--no-progress", "--rate", "100000")  # run options for tests
V2 = (*FAST, "--api", "v2", "--poll-interval", "0.05")
PRICE = 19_000  # Luma's price in micro-dollars


@pytest.fixture
def start_simulator():
    """start_simulator(**SimulatorConfig fields) → a running Simulator (in its own thread)."""
    threads: list[SimulatorThread] = []

    def start(**config) -> Simulator:
        thread = SimulatorThread(SimulatorConfig(**config))
        threads.append(thread)
        return thread.__enter__()

    yield start
    for thread in threads:
        thread.__exit__(None, None, None)


@pytest.fixture
def sim(start_simulator) -> Simulator:
    """A fast, unlimited simulator."""
    return start_simulator()


@dataclass
class CliResult:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(capsys, monkeypatch):
    """cli("run", "jobs.csv", ...) → CliResult; runs batchgen's real main() in-process
    with SEGMIND_API_KEY set to TEST_KEY (pass key=None to unset it)."""

    def run(*args: str | Path, key: str | None = TEST_KEY) -> CliResult:
        if key is None:
            monkeypatch.delenv("SEGMIND_API_KEY", raising=False)
        else:
            monkeypatch.setenv("SEGMIND_API_KEY", key)
        capsys.readouterr()
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run


def spawn(*args: str | Path, key: str = TEST_KEY, **kwargs) -> subprocess.Popen:
    """Start `python -m batchgen ...` as a real child process (for signals and kill -9)."""
    env = {**os.environ, "SEGMIND_API_KEY": key, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "batchgen", *map(str, args)], env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs,
    )


def write_jobs(path: Path, prompts: list[str], ratio: str = "1:1") -> Path:
    """A CSV job file with one row per prompt."""
    lines = ["prompt,aspect_ratio"] + [f'"{p}",{ratio}' for p in prompts]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def recorded_micro(out_dir: Path) -> int:
    """What the manifest's job lines say the API billed, in micro-dollars."""
    return sum(round(line.get("cost", 0) * 1_000_000) for line in manifest_lines(out_dir)
               if line["event"] in ("succeeded", "failed", "pending"))


def manifest_lines(out_dir: Path) -> list[dict]:
    """Every line of the manifest; none before it exists."""
    path = out_dir / "manifest.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def events(out_dir: Path, event: str) -> list[dict]:
    return [line for line in manifest_lines(out_dir) if line["event"] == event]


def wait_for(predicate, timeout: float = 30.0) -> None:
    """Poll until predicate() is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def kill_9_when(proc: subprocess.Popen, predicate) -> None:
    """`kill -9` a child process as soon as predicate() holds."""
    wait_for(predicate)
    proc.kill()
    proc.wait()


@pytest.fixture
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48k", "tmpfs", str(mount)],
                          capture_output=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=False)
