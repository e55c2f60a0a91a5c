"""batchgen's benchmarks (issue 7, SPEC §7): `python -m bench [--quick|--smoke]`.

Each row of the table is a ratio of two things measured side by side in one run,
against a simulator (`python -m batchgen simulator`) in its own process on loopback:

1. throughput vs the ideal `min(C/L, R/60)`: a latency-bound case (L=0.2 s, C=16)
   and a rate-bound case (--rate 1200/min, L=0.05 s);
2. vs the alternatives a user has today (bench/baselines.py): a sequential
   `requests.post` loop like Segmind's sample code, and the asyncio.gather +
   semaphore + aiohttp recipe; at L=0.2 s and at zero latency;
3. overhead: jobs/s and CPU seconds per 1,000 jobs against a zero-latency simulator;
4. memory: peak RSS over 10k vs 100k jobs, and `batchgen validate` on a 1M-row CSV;
5. resume: start → first request with 1M done jobs in the manifest, vs reading
   that manifest with json.loads line by line;
6. 429 storm: a simulator allowing half of --rate → share of 429s, achieved / limit;
7. gallery: the bytes of the images the gallery's first page loads over 1,000
   1024-px images, with thumbnails vs the same page rendered without them, for the
   simulator's gradients and for photo-like JPEGs; and `batchgen report` making the
   thumbnails of a folder from before them.
8. start-up: `batchgen --help` and `--version` wall time vs `python -c pass` (best of
   10 each, interleaved), and `batchgen validate` of the example file for comparison.

Modules: harness (processes, measurement, data), baselines, suite (the
benchmarks), run (the command line and the table), hotspots (cProfile).
"""
