"""The alternatives a user has today, written the way people write them.

    python -m bench.baselines sequential JOBS.csv --out DIR --base-url URL
    python -m bench.baselines gather JOBS.csv --out DIR --base-url URL --concurrency 16

`sequential` is Segmind's sample code in a loop: `requests.post` one prompt at a
time (no session, as in the sample), save the bytes. `gather` is the common
asyncio recipe: one aiohttp session, `asyncio.gather` over a coroutine per job,
an `asyncio.Semaphore` for concurrency, files written as answers arrive. Neither
has a manifest, a rate limiter, retries or resume: they are the floor batchgen's
extra work is measured against. Both read the same job CSV, send the same
request and exit 1 if any job failed.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import os
import sys
from pathlib import Path

MODEL_PATH = "/v1/models/luma-photon-txt-2-img"


def read_jobs(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def sequential(jobs: list[dict[str, str]], out: Path, base_url: str) -> int:
    import requests

    url = base_url + MODEL_PATH
    headers = {"x-api-key": os.environ["SEGMIND_API_KEY"]}
    failed = 0
    for job in jobs:
        data = {"prompt": job["prompt"], "aspect_ratio": job["aspect_ratio"] or "1:1"}
        response = requests.post(url, json=data, headers=headers, timeout=600)
        if response.status_code == 200:
            (out / f"{job['id']}.png").write_bytes(response.content)
        else:
            failed += 1
    return failed


def gather(jobs: list[dict[str, str]], out: Path, base_url: str, concurrency: int) -> int:
    import aiohttp

    async def main() -> int:
        url = base_url + MODEL_PATH
        semaphore = asyncio.Semaphore(concurrency)
        headers = {"x-api-key": os.environ["SEGMIND_API_KEY"]}
        async with aiohttp.ClientSession(headers=headers) as session:

            async def one(job: dict[str, str]) -> bool:
                data = {"prompt": job["prompt"], "aspect_ratio": job["aspect_ratio"] or "1:1"}
                async with semaphore, session.post(url, json=data) as response:
                    if response.status != 200:
                        return False
                    body = await response.read()
                (out / f"{job['id']}.png").write_bytes(body)
                return True

            results = await asyncio.gather(*(one(job) for job in jobs))
        return results.count(False)

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.baselines")
    parser.add_argument("kind", choices=("sequential", "gather"))
    parser.add_argument("job_file", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--base-url", required=True)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = read_jobs(args.job_file)
    if args.kind == "sequential":
        failed = sequential(jobs, args.out, args.base_url)
    else:
        failed = gather(jobs, args.out, args.base_url, args.concurrency)
    if failed:
        print(f"{failed} of {len(jobs)} jobs failed", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
