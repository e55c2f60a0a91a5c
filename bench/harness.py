"""What every benchmark needs: a simulator in its own process, child processes
measured with `wait4` (their own CPU time and peak RSS, nobody else's), a
watcher that sees requests arrive at the simulator, and generated data.

    with SimulatorProcess(latency=0.2) as sim:
        with StatsWatcher(sim, expected=400) as watch:
            child = run_child(batchgen_run(jobs, out, sim.url, concurrency=16))
        print(watch.throughput(), child.cpu_s, child.max_rss_mb)

Every wait here is bounded: a child that outlives its timeout is killed, a
simulator that does not come up within `START_TIMEOUT` is an error.
"""

from __future__ import annotations

import csv
import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

START_TIMEOUT = 20.0
API_KEY = "bench-key"
BIG_RATE = 100_000_000  # requests per minute: no limit in practice
ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env() -> dict[str, str]:
    """The environment of every child: the API key set, the repo importable, no
    progress bar or colour surprises."""
    env = dict(os.environ, SEGMIND_API_KEY=API_KEY, PYTHONUNBUFFERED="1")
    env.pop("SEGMIND_BASE_URL", None)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


class SimulatorProcess:
    """`python -m batchgen simulator` on a free loopback port, in a separate process."""

    def __init__(self, *, latency: float = 0.0, rpm: int | None = None,
                 rate_window: float | None = None, image_size: int | None = None,
                 log_dir: Path | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = [sys.executable, "-m", "batchgen", "simulator", "--port", str(self.port),
                     "--latency", str(latency)]
        if rpm:
            self.args += ["--rpm", str(rpm)]
        if rate_window:
            self.args += ["--rate-window", str(rate_window)]
        if image_size:
            self.args += ["--image-size", str(image_size)]
        self._log_dir = log_dir or Path(tempfile.gettempdir())
        self._proc: subprocess.Popen | None = None

    def __enter__(self) -> SimulatorProcess:
        log = open(self._log_dir / f"simulator-{self.port}.log", "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT,
                                      env=child_env(), cwd=ROOT)
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the simulator exited with {self._proc.returncode}: "
                                   f"{' '.join(self.args)}")
            try:
                self.stats()
                return self
            except OSError:
                time.sleep(0.05)
        self.__exit__()
        raise RuntimeError(f"the simulator did not answer within {START_TIMEOUT:g} s")

    def __exit__(self, *exc_info: object) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)
        self._proc = None

    def stats(self, conn: http.client.HTTPConnection | None = None) -> dict:
        own = conn is None
        conn = conn or http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
        try:
            conn.request("GET", "/_sim/stats")
            return json.loads(conn.getresponse().read())
        finally:
            if own:
                conn.close()


class StatsWatcher(threading.Thread):
    """Polls the simulator's stats and notes when the first generation request
    arrived and when the `expected`-th image was charged: the window the
    simulator itself saw, the same observer for batchgen and the baselines.
    Polls every `fast` seconds near the start and the end, `slow` in between,
    so that polling stays cheap for the simulator. With `max_generation` it
    keeps watching and kills the client (`guard`) once it sends more than that."""

    def __init__(self, sim: SimulatorProcess, expected: int, *, fast: float = 0.01,
                 slow: float = 0.05, timeout: float = 900.0, max_generation: int | None = None):
        super().__init__(daemon=True)
        self.sim, self.expected = sim, expected
        self.fast, self.slow, self.timeout = fast, slow, timeout
        self.max_generation = max_generation  # more requests than this: kill the client
        self.exceeded = False
        self._client: subprocess.Popen | None = None
        self.first: float | None = None  # time.perf_counter() of the first generation request
        self.last: float | None = None  # ... and of the expected-th charge
        self.base: dict = {}
        self.final: dict = {}
        self._halt = threading.Event()

    def __enter__(self) -> StatsWatcher:
        self.base = self.sim.stats()
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._halt.set()
        self.join(10)
        self.final = self.sim.stats()

    def guard(self, client: subprocess.Popen) -> None:
        """The process to kill when it exceeds `max_generation` requests."""
        self._client = client

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=5)
        base_gen = self.base["generation_requests"]
        base_charged = self.base["charged"]
        deadline = time.perf_counter() + self.timeout
        near_end = max(50, self.expected // 20)
        try:
            while not self._halt.is_set() and time.perf_counter() < deadline:
                stats = self.sim.stats(conn)
                now = time.perf_counter()
                sent = stats["generation_requests"] - base_gen
                if self.first is None and sent > 0:
                    self.first = now
                if self.max_generation is not None and sent > self.max_generation:
                    self.exceeded = True
                    if self._client is not None:
                        self._client.kill()
                    return
                charged = stats["charged"] - base_charged
                if self.last is None and charged >= self.expected:
                    self.last = now
                    if self.max_generation is None:
                        return
                slow = self.last is not None or (
                    self.first is not None and self.expected - charged > near_end)
                self._halt.wait(self.slow if slow else self.fast)
        finally:
            conn.close()

    @property
    def window(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        return max(self.last - self.first, 1e-6)

    def throughput(self) -> float:
        """Images per second in the simulator's window (0 when it never completed)."""
        return self.expected / self.window if self.window else 0.0

    def delta(self, key: str) -> dict:
        """A by-status counter (e.g. 'generation_by_status') since the watcher started."""
        before, after = self.base.get(key, {}), self.final.get(key, {})
        return {k: after.get(k, 0) - before.get(k, 0) for k in after
                if after.get(k, 0) - before.get(k, 0)}


@dataclass
class Child:
    """How a child process went: exit code, wall clock, its own CPU and peak RSS."""

    code: int
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    stderr: str
    started: float  # time.perf_counter() just before the process was spawned

    def check(self, what: str) -> Child:
        if self.code != 0:
            raise RuntimeError(f"{what} exited with {self.code}:\n{self.stderr[-2000:]}")
        return self


def run_child(args: Sequence[str], *, timeout: float, cwd: Path | None = None,
              log_dir: Path | None = None,
              on_start: Callable[[subprocess.Popen], None] | None = None) -> Child:
    """Run a process to the end (killed after `timeout` s) and measure it with wait4,
    which reports this child's rusage alone, not the sum over all children."""
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="bench-child-"))
    err_path = log_dir / f"child-{time.monotonic_ns()}.err"
    with open(err_path, "wb") as err:
        started = time.perf_counter()
        proc = subprocess.Popen(list(args), stdout=subprocess.DEVNULL, stderr=err,
                                env=child_env(), cwd=cwd or ROOT)
    if on_start is not None:
        on_start(proc)
    killer = threading.Timer(timeout, proc.kill)
    killer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        killer.cancel()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = err_path.read_text("utf-8", "replace")
    if proc.returncode == -signal.SIGKILL and wall >= timeout:
        stderr += f"\n[bench] killed after {timeout:g} s"
    return Child(proc.returncode, wall, usage.ru_utime + usage.ru_stime,
                 usage.ru_maxrss / 1024, stderr, started)


def batchgen_run(job_file: Path, out: Path, base_url: str, *, concurrency: int,
                 rate: float = BIG_RATE, extra: Sequence[str] = ()) -> list[str]:
    """The command line of a quiet, bar-less batchgen run against `base_url`."""
    return [sys.executable, "-m", "batchgen", "run", str(job_file), "--out", str(out),
            "--base-url", base_url, "--rate", f"{rate:g}", "--concurrency", str(concurrency),
            "--no-progress", "-q", *extra]


def baseline_run(kind: str, job_file: Path, out: Path, base_url: str, *,
                 concurrency: int = 1) -> list[str]:
    return [sys.executable, "-m", "bench.baselines", kind, str(job_file), "--out", str(out),
            "--base-url", base_url, "--concurrency", str(concurrency)]


# -- generated data -------------------------------------------------------------------

SUBJECTS = ("red fox", "lighthouse", "tram in Lisbon", "coffee mug", "pine forest",
            "astronaut cat", "sneaker", "mountain lake")


def job_id(number: int) -> str:
    return f"u{number:07d}"


def prompt(number: int) -> str:
    return (f"A watercolour {SUBJECTS[number % len(SUBJECTS)]}, variation {number}, "
            "soft morning light")


def write_jobs(path: Path, count: int, *, start: int = 0) -> Path:
    """A CSV of `count` jobs with user ids, one metadata column, all 1:1."""
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "prompt", "aspect_ratio", "campaign"])
        for number in range(start, start + count):
            writer.writerow([job_id(number), prompt(number), "1:1", "bench"])
    return path


def photo_like(side: int = 1024, quality: int = 92) -> bytes:
    """A JPEG that weighs like a photo (about 0.6 MB at 1024 px): coloured noise at
    several scales, so that it keeps detail when shrunk, as photos do (the simulator's
    gradients shrink to almost nothing). Random: two calls give two images."""
    from PIL import Image

    def layer(scale: int, sigma: float) -> Image.Image:
        small = Image.effect_noise((max(2, side // scale),) * 2, sigma)
        return small.resize((side, side), Image.Resampling.BICUBIC)

    channels = []
    for _ in range(3):
        channel = layer(128, 90)
        for scale, weight in ((32, 0.5), (8, 0.35), (2, 0.25), (1, 0.2)):
            channel = Image.blend(channel, layer(scale, 70), weight)
        channels.append(channel)
    out = io.BytesIO()
    Image.merge("RGB", channels).save(out, "JPEG", quality=quality)
    return out.getvalue()


def read_json_lines(path: Path) -> float:
    """Seconds to read a JSONL file line by line with json.loads: the floor for any replay."""
    started = time.perf_counter()
    with open(path, "rb") as fh:
        for line in fh:
            json.loads(line)
    return time.perf_counter() - started
