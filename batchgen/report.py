"""Reports replayed from the manifest: results.csv (one row per job, file order),
index.html (a self-contained gallery) and the numbers behind `batchgen status`.

Everything here is a pure function of the manifest, the job file and the images on
disk, so `batchgen report DIR` rebuilds exactly what the end of a run wrote:

    state = replay(out_dir / "manifest.jsonl")
    write_reports(out_dir, load_jobs("jobs.csv"), state)

A job's state in the reports is the state the next run would act on: `done` only
when its image is on disk and its row is unchanged; `failed` when its last
attempt failed; everything else (never tried, stopped by 406, budget, Ctrl-C or an
outage, a v2 request not yet collected, an edited row, a deleted image) `pending`.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

import pandas as pd

from .config import MICRO, MODEL, PRICE_MICRO, format_usd, micro_to_usd, usd_to_micro
from .jobs import Job, fingerprint
from .lock import LOCK_NAME
from .manifest import MANIFEST_NAME, Replay, read_lines, replay
from .store import ImageStore

RESULTS_NAME = "results.csv"
INDEX_NAME = "index.html"
BASE_COLUMNS = ["id", "prompt", "aspect_ratio", "state", "file", "cost", "attempts", "error"]
STATES = ("done", "failed", "pending")
PAGE_SIZE = 200  # cards per page in the gallery when JavaScript runs
OPEN_TABLE_ROWS = 500  # the failures table starts folded when it is longer than this
CHUNK_ROWS = 10_000  # results.csv rows per pandas frame

#: Why a job is pending, as the manifest's `pending.reason` (or our own key) → words.
PENDING_REASONS = {
    "never_tried": "not run yet",
    "out_of_credits": "out of credits (406): top up and rerun",
    "insufficient_credits": "the balance could not pay for it: top up and rerun",
    "budget": "--max-cost reached: rerun to continue",
    "interrupted": "interrupted: rerun to continue",
    "outage": "API outage: rerun to continue",
    "submitted": "submitted (v2): the next run collects the result",
    "image_missing": "its image file is missing: the next run generates it again",
    "edited": "the row was edited since it ran: the next run generates it again",
}


# -- one row per job -------------------------------------------------------------------


def job_rows(jobs: Sequence[Job], state: Replay, on_disk: set[str]) -> Iterator[dict[str, Any]]:
    """One dict per job in file order: the BASE_COLUMNS (`cost` in micro-dollars as
    `cost_micro`), plus `metadata`, `reason` (pending jobs) and `retryable` (failed).
    A generator: the reports walk it several times rather than hold a million dicts."""
    for job in jobs:
        record = state.jobs.get(job.id)
        row: dict[str, Any] = {
            "id": job.id, "prompt": job.prompt, "aspect_ratio": job.aspect_ratio,
            "state": "pending", "file": "", "cost_micro": 0, "attempts": 0, "error": "",
            "metadata": job.metadata, "reason": "never_tried", "retryable": False,
        }
        if record is not None:
            row["cost_micro"] = record.cost_micro
            row["attempts"] = record.attempts
            if not record.describes(job.prompt, job.aspect_ratio):
                row["reason"] = "edited"
            elif record.state == "done":
                if record.file in on_disk:
                    row.update(state="done", file=record.file, reason="")
                else:
                    row["reason"] = "image_missing"
            elif record.state == "failed":
                row.update(state="failed", error=record.error or "", reason="",
                           retryable=record.retryable)
            elif record.state == "submitted":
                row["reason"] = "submitted"
            else:
                row["reason"] = record.reason or "interrupted"
        if row["state"] == "pending" and row["reason"] != "never_tried":
            row["error"] = PENDING_REASONS.get(row["reason"], row["reason"])
        yield row


def _usd_text(micro: int) -> str:
    """Exact dollars for the CSV: 19000 → '0.019', 0 → '0'."""
    return f"{micro / MICRO:.6f}".rstrip("0").rstrip(".")


def _cell(value: Any) -> str:
    """A metadata value as text: YAML and JSONL may carry numbers, lists or null."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False)


def metadata_columns(jobs: Sequence[Job]) -> list[str]:
    """Every metadata column of every job (YAML items may differ), first seen first."""
    seen: dict[str, None] = {}
    for job in jobs:
        for name in job.metadata:
            seen.setdefault(name, None)
    return list(seen)


def results_frame(rows: Sequence[dict[str, Any]], meta: Sequence[str]) -> pd.DataFrame:
    """results.csv as a DataFrame. A metadata column named like one of ours (say
    `state`) is written as `metadata.state` so neither hides the other."""
    headers = [f"metadata.{name}" if name in BASE_COLUMNS else name for name in meta]
    records = [
        [r["id"], r["prompt"], r["aspect_ratio"], r["state"], r["file"],
         _usd_text(r["cost_micro"]), r["attempts"], r["error"],
         *(_cell(r["metadata"].get(name)) for name in meta)]
        for r in rows
    ]
    return pd.DataFrame(records, columns=BASE_COLUMNS + headers, dtype=object)


def _write_atomically(path: Path, write: Callable[[TextIO], None]) -> None:
    """Readers (a browser, a script) never see half a report."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "w", encoding="utf-8", newline="") as fh:
        write(fh)
    os.replace(temp, path)


def write_reports(out_dir: Path, jobs: Sequence[Job], state: Replay) -> None:
    """Write results.csv and index.html for `jobs` as the manifest `state` has them.
    Both are streamed a chunk of rows at a time, so memory stays flat with the batch."""
    on_disk = ImageStore(out_dir).existing(suspect=state.unfinished_files)

    def rows() -> Iterator[dict[str, Any]]:
        return job_rows(jobs, state, on_disk)

    meta = metadata_columns(jobs)
    _write_atomically(out_dir / RESULTS_NAME, lambda fh: write_results(fh, rows(), meta))
    _write_atomically(out_dir / INDEX_NAME, lambda fh: write_gallery(fh, rows, state))


def write_results(fh: TextIO, rows: Iterable[dict[str, Any]], meta: Sequence[str]) -> None:
    """results.csv through pandas, CHUNK_ROWS rows at a time."""
    header = True
    for chunk in _chunks(rows, CHUNK_ROWS):
        results_frame(chunk, meta).to_csv(fh, index=False, header=header, lineterminator="\n")
        header = False
    if header:  # no jobs at all: still a file with its columns
        results_frame([], meta).to_csv(fh, index=False, lineterminator="\n")


def _chunks(rows: Iterable[dict[str, Any]], size: int) -> Iterator[list[dict[str, Any]]]:
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


# -- index.html ------------------------------------------------------------------------


def _when(ts: str | None, *, seconds: bool = False) -> str:
    """'2026-11-01T12:03:04.123Z' → '2026-11-01 12:03 UTC' (or '… 12:03:04 UTC')."""
    if not ts:
        return "-"
    return ts[:19 if seconds else 16].replace("T", " ") + " UTC" if ts.endswith("Z") else ts


_CSS = """
:root{color-scheme:light dark;--bg:#f6f6f4;--fg:#1d1d1b;--muted:#6b6b66;--card:#fff;
--line:#ddd;--done:#2e7d32;--failed:#c62828;--pending:#b26a00}
@media (prefers-color-scheme:dark){:root{--bg:#161614;--fg:#ececea;--muted:#9a9a94;
--card:#232320;--line:#3a3a36}}
*{box-sizing:border-box}[hidden]{display:none!important}
body{margin:0;padding:1.2rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
background:var(--bg);color:var(--fg)}
h1{font-size:1.4rem;margin:0 0 .2rem}h2{font-size:1.1rem;margin:2rem 0 .6rem}
.sub{color:var(--muted);margin:0 0 1rem}
.stats{display:flex;flex-wrap:wrap;gap:.6rem;margin:0 0 1rem;padding:0;list-style:none}
.stats li{background:var(--card);border:1px solid var(--line);border-radius:8px;
padding:.4rem .8rem;min-width:6.5rem}
.stats b{display:block;font-size:1.25rem}.stats span{color:var(--muted);font-size:.85rem}
.stats .done b{color:var(--done)}.stats .failed b{color:var(--failed)}
.stats .pending b{color:var(--pending)}
#controls{display:flex;flex-wrap:wrap;gap:.6rem;align-items:center;margin:0 0 1rem}
#controls input,#controls select,#pager button{font:inherit;padding:.3rem .5rem;
border:1px solid var(--line);border-radius:6px;background:var(--card);color:var(--fg)}
#controls input{flex:1 1 16rem;max-width:28rem}
#count{color:var(--muted)}
#grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(190px,1fr));gap:.9rem}
.card{background:var(--card);border:1px solid var(--line);border-radius:8px;overflow:hidden;
content-visibility:auto;contain-intrinsic-size:auto 310px;display:flex;flex-direction:column}
.thumb{display:block;position:relative;aspect-ratio:1;overflow:hidden;
background:repeating-conic-gradient(#8881 0 25%,#0000 0 50%) 50%/16px 16px}
.thumb img{position:absolute;inset:0;width:100%;height:100%;object-fit:contain}
.ph{aspect-ratio:1;display:flex;flex-direction:column;justify-content:center;
align-items:center;text-align:center;padding:.8rem;gap:.4rem;font-size:.85rem;
border-bottom:3px solid var(--pending);color:var(--muted);overflow:hidden}
.card.failed .ph{border-color:var(--failed)}
.ph strong{text-transform:uppercase;letter-spacing:.05em;color:var(--pending)}
.card.failed .ph strong{color:var(--failed)}
.ph small{overflow-wrap:anywhere}
.cap{padding:.5rem .6rem;font-size:.85rem}
.prompt{margin:0 0 .3rem;overflow-wrap:anywhere;display:-webkit-box;-webkit-line-clamp:4;
-webkit-box-orient:vertical;overflow:hidden}
.meta{margin:0;color:var(--muted);font-size:.78rem;overflow-wrap:anywhere}
.meta code{font-size:.78rem}
.ratio{border:1px solid var(--line);border-radius:4px;padding:0 .25rem;margin-right:.3rem}
#pager{display:flex;gap:.5rem;align-items:center;justify-content:center;margin:1rem 0}
table{border-collapse:collapse;width:100%;font-size:.88rem;background:var(--card)}
th,td{border:1px solid var(--line);padding:.3rem .5rem;text-align:left;vertical-align:top;
overflow-wrap:anywhere}
td.failed{color:var(--failed)}td.pending{color:var(--pending)}
details summary{cursor:pointer;margin:.4rem 0}
footer{margin-top:2rem;color:var(--muted);font-size:.8rem}
"""

# Filters by state and text, pages through the matches; the URL hash keeps the view
# (#state=failed&q=fox&page=2). Without JavaScript every card is shown, its image in a
# <noscript>; with it, a card gets its <img> when it is first shown, so a page of 10,000
# jobs holds only the images of the page on screen (6,000 lazy <img>s cost seconds).
_JS = """
(function(){
var grid=document.getElementById('grid');if(!grid)return;
var cards=[].slice.call(grid.children),text=cards.map(function(c){
return c.querySelector('.cap').textContent.toLowerCase();});
var form=document.getElementById('controls'),sel=document.getElementById('state'),
q=document.getElementById('q'),pager=document.getElementById('pager'),
count=document.getElementById('count'),prev=document.getElementById('prev'),
next=document.getElementById('next'),where=document.getElementById('where');
var size=+grid.getAttribute('data-page-size')||200,page=0;
function readHash(){var p=new URLSearchParams(location.hash.slice(1));
sel.value=p.get('state')||'';if(sel.selectedIndex<0)sel.value='';q.value=p.get('q')||'';
page=Math.max(0,(parseInt(p.get('page'),10)||1)-1);}
function writeHash(){var p=new URLSearchParams();if(sel.value)p.set('state',sel.value);
if(q.value)p.set('q',q.value);if(page)p.set('page',page+1);var h=p.toString();
try{history.replaceState(null,'',h?'#'+h:location.pathname+location.search);}catch(e){}}
function apply(){var s=sel.value,t=q.value.trim().toLowerCase(),hits=[],i;
for(i=0;i<cards.length;i++){cards[i].hidden=true;
if((!s||cards[i].getAttribute('data-state')===s)&&(!t||text[i].indexOf(t)>=0))hits.push(i);}
var pages=Math.max(1,Math.ceil(hits.length/size));if(page>=pages)page=pages-1;
var from=page*size,to=Math.min(hits.length,from+size);
for(i=from;i<to;i++){cards[hits[i]].hidden=false;show(cards[hits[i]]);}
count.textContent=hits.length?'showing '+(from+1)+'\\u2013'+to+' of '+hits.length+
(hits.length<cards.length?' matching':'')+' ('+cards.length+' jobs)':'no job matches';
grid.setAttribute('data-shown',to-from);grid.setAttribute('data-matches',hits.length);
where.textContent='page '+(page+1)+' of '+pages;prev.disabled=page<=0;next.disabled=page>=pages-1;
pager.hidden=pages<2;}
function show(card){var a=card.querySelector('a.thumb');
if(!a||a.querySelector('img'))return;var img=document.createElement('img');
img.loading='lazy';img.decoding='async';img.src=a.getAttribute('href');
img.alt=card.querySelector('.prompt').textContent;a.appendChild(img);}
function change(){page=0;apply();writeHash();}
sel.addEventListener('change',change);q.addEventListener('input',change);
form.addEventListener('submit',function(e){e.preventDefault();});
prev.addEventListener('click',function(){page--;apply();writeHash();scrollTo(0,grid.offsetTop);});
next.addEventListener('click',function(){page++;apply();writeHash();scrollTo(0,grid.offsetTop);});
addEventListener('hashchange',function(){readHash();apply();});
form.hidden=false;readHash();apply();
})();
"""


def _card(row: dict[str, Any]) -> str:
    esc = html.escape
    state = row["state"]
    meta = " · ".join(f"{esc(str(k))}: {esc(_cell(v))}" for k, v in row["metadata"].items()
                      if _cell(v) != "")
    if state == "done":
        src = esc(quote(row["file"]))
        picture = (f'<a class="thumb" href="{src}" target="_blank" title="open full size">'
                   f'<noscript><img loading="lazy" src="{src}" alt="{esc(row["prompt"])}">'
                   f"</noscript></a>")
    else:
        note = row["error"] or PENDING_REASONS["never_tried"]
        picture = f'<div class="ph"><strong>{state}</strong><small>{esc(note)}</small></div>'
    return (
        f'<article class="card {state}" data-state="{state}">{picture}'
        f'<div class="cap"><p class="prompt">{esc(row["prompt"])}</p>'
        f'<p class="meta"><span class="ratio">{esc(row["aspect_ratio"])}</span>'
        f'<code>{esc(row["id"])}</code>{" · " + meta if meta else ""}</p></div></article>'
    )


def _problem_row(row: dict[str, Any]) -> str:
    esc = html.escape
    kind = row["state"]
    if kind == "failed":
        kind += " (retried next run)" if row["retryable"] else " (rerun with --retry-failed)"
    error = row["error"] or PENDING_REASONS["never_tried"]
    return (f'<tr><td><code>{esc(row["id"])}</code></td><td class="{row["state"]}">{kind}</td>'
            f'<td>{esc(row["prompt"])}</td><td>{esc(error)}</td>'
            f'<td>{row["attempts"]}</td><td>{esc(format_usd(row["cost_micro"]))}</td></tr>')


def _run_row(run: dict[str, Any]) -> str:
    esc = html.escape
    finished = run.get("finished") or {}
    spent = finished.get("spent_run")
    return (f"<tr><td>{esc(_when(run.get('ts')))}</td><td>{esc(_when(finished.get('ts')))}</td>"
            f"<td>{esc(str(finished.get('reason') or 'unfinished'))}</td>"
            f"<td>{esc(str(finished.get('exit_code', '-')))}</td>"
            f"<td>{esc(format_usd(usd_to_micro(spent)) if spent is not None else '-')}</td></tr>")


def write_gallery(fh: TextIO, rows: Callable[[], Iterable[dict[str, Any]]],
                  state: Replay) -> None:
    """index.html: one self-contained page (inline CSS and JS, relative image links).
    `rows()` is walked three times (totals, cards, problems) instead of kept."""
    esc = html.escape
    counts: Counter[str] = Counter()
    left = 0
    for r in rows():
        counts[r["state"]] += 1
        left += r["state"] == "pending" or r["retryable"]
    total = sum(counts.values())
    runs = state.runs
    last = runs[-1] if runs else {}
    job_file = Path(last.get("job_file") or "").name or "batchgen"
    price = _price_micro(last)
    first_ts = runs[0].get("ts") if runs else None
    last_ts = ((last.get("finished") or {}).get("ts") or last.get("ts")) if runs else None
    stats = [("jobs", total, ""), ("done", counts["done"], "done"),
             ("failed", counts["failed"], "failed"), ("pending", counts["pending"], "pending"),
             ("spent", format_usd(state.spent_micro), ""),
             ("left to do", f"{left} ≈ {format_usd(left * price)}", "")]
    stat_items = "".join(f'<li class="{cls}"><b>{esc(str(value))}</b><span>{name}</span></li>'
                         for name, value, cls in stats)
    options = "".join(f'<option value="{s}">{s} ({counts[s]})</option>' for s in STATES)
    problems = counts["failed"] + counts["pending"]
    run_table = ""
    if runs:
        run_table = (
            f"<h2>Runs ({len(runs)})</h2><details><summary>from {esc(_when(first_ts))} "
            f"to {esc(_when(last_ts))}</summary><table><thead><tr><th>started</th>"
            "<th>finished</th><th>reason</th><th>exit</th><th>spent</th></tr></thead><tbody>"
            + "\n".join(_run_row(run) for run in runs) + "</tbody></table></details>"
        )
    fh.write(f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(job_file)} · batchgen results</title>
<style>{_CSS}</style></head><body>
<header><h1>{esc(job_file)}</h1>
<p class="sub">batchgen results · {len(runs)} run{"s" if len(runs) != 1 else ""}, \
{esc(_when(first_ts))} → {esc(_when(last_ts))}</p>
<ul class="stats">{stat_items}</ul></header>
<form id="controls" hidden role="search"><label>state <select id="state">
<option value="">all ({total})</option>{options}</select></label>
<input id="q" type="search" placeholder="search prompts, ids, metadata" aria-label="search">
<span id="count"></span></form>
<main id="grid" data-page-size="{PAGE_SIZE}">
""")
    fh.writelines(_card(r) + "\n" for r in rows())
    fh.write("""</main>
<nav id="pager" hidden><button id="prev" type="button">← previous</button>
<span id="where"></span><button id="next" type="button">next →</button></nav>
""")
    if problems:
        fh.write(
            f'<h2 id="problems">Failed and pending ({problems})</h2>'
            f'<details{" open" if problems <= OPEN_TABLE_ROWS else ""}>'
            f"<summary>{counts['failed']} failed, {counts['pending']} pending</summary>"
            "<table><thead><tr><th>id</th><th>state</th><th>prompt</th><th>error</th>"
            "<th>attempts</th><th>cost</th></tr></thead><tbody>")
        fh.writelines(_problem_row(r) + "\n" for r in rows() if r["state"] != "done")
        fh.write("</tbody></table></details>\n")
    fh.write(f"""{run_table}
<footer>Written by batchgen from manifest.jsonl; images link to full size.</footer>
<script>{_JS}</script>
</body></html>
""")


# -- batchgen report / batchgen status -------------------------------------------------


def _price_micro(run: dict[str, Any]) -> int:
    price = (run.get("settings") or {}).get("price")
    return usd_to_micro(price) if price is not None else PRICE_MICRO


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jobs_of(out_dir: Path, state: Replay) -> tuple[list[Job], list[str]]:
    """The jobs of the batch: the job file named by the last run, re-read the same way;
    if it is gone, the jobs the manifest mentions. Second value: warnings."""
    from .errors import JobFileError
    from .jobs import load_jobs

    run = state.last_run or {}
    job_file = run.get("job_file")
    settings = run.get("settings") or {}
    if job_file:
        try:
            jobs = load_jobs(job_file, default_ratio=settings.get("aspect_ratio") or "1:1",
                             sheet=settings.get("sheet"))
        except JobFileError as exc:
            warning = f"cannot re-read the job file: {exc.problems[0]}"
        else:
            recorded = run.get("job_file_sha256")
            if recorded and recorded != _sha256(Path(job_file)):
                return jobs, [f"{job_file} changed since the last run: "
                              "counting the jobs it holds now"]
            return jobs, []
    else:
        warning = "the manifest names no job file"
    return _manifest_jobs(out_dir / MANIFEST_NAME, state), [
        warning + "; listing only the jobs the manifest mentions"]


def _manifest_jobs(path: Path, state: Replay) -> list[Job]:
    """Every job the manifest mentions, in order of first mention, with the prompt,
    ratio and metadata of its latest line that has them."""
    known: dict[str, dict[str, Any]] = {}
    for _, line in read_lines(path):
        job_id = line.get("job_id") if line else None
        if job_id is None:
            continue
        entry = known.setdefault(job_id, {})
        for key in ("prompt", "aspect_ratio", "metadata"):
            if line.get(key) is not None:
                entry[key] = line[key]
    jobs = []
    for job_id, entry in known.items():
        if job_id in state.jobs:
            prompt, ratio = entry.get("prompt", ""), entry.get("aspect_ratio", "")
            jobs.append(Job(job_id, prompt, ratio, entry.get("metadata") or {},
                            fp=fingerprint(MODEL, prompt, ratio)))
    return jobs


def _load_state(out_dir: Path) -> Replay:
    from .errors import UsageError

    path = out_dir / MANIFEST_NAME
    if not path.is_file():
        raise UsageError(f"{out_dir} has no {MANIFEST_NAME}: not a batchgen output folder")
    return replay(path)


def regenerate(out_dir: Path) -> list[Path]:
    """`batchgen report`: rewrite both reports from the manifest."""
    state = _load_state(out_dir)
    jobs, warnings = _jobs_of(out_dir, state)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    write_reports(out_dir, jobs, state)
    return [out_dir / RESULTS_NAME, out_dir / INDEX_NAME]


def _running_pid(out_dir: Path) -> int | None:
    """The pid a live run wrote into the lock file, without touching the lock itself
    (taking it, even for a moment, could make a run starting then exit 6)."""
    try:
        text = (out_dir / LOCK_NAME).read_text().strip()
    except OSError:
        return None
    if not text.isdigit() or int(text) == os.getpid():
        return None
    try:
        os.kill(int(text), 0)
    except ProcessLookupError:
        return None  # killed: the kernel lock died with it
    except PermissionError:
        pass
    return int(text)


def _spent_since_last_start(path: Path) -> int:
    """Money recorded after the last run_started line (for a run with no run_finished)."""
    spent = 0
    for _, line in read_lines(path):
        if line is None:
            continue
        if line.get("event") == "run_started":
            spent = 0
        elif line.get("event") in ("succeeded", "failed"):
            spent += round((line.get("cost") or 0) * MICRO)
    return spent


def status(out_dir: Path) -> dict[str, Any]:
    """`batchgen status`: counts by state, money, the last run, what is left."""
    state = _load_state(out_dir)
    jobs, warnings = _jobs_of(out_dir, state)
    rows = list(job_rows(jobs, state, ImageStore(out_dir).existing(state.unfinished_files)))
    counts = Counter(r["state"] for r in rows)
    retryable = sum(1 for r in rows if r["state"] == "failed" and r["retryable"])
    run = state.last_run or {}
    finished = run.get("finished") or {}
    running = _running_pid(out_dir) if run and not finished else None
    if run and finished:
        spent_last = usd_to_micro(finished.get("spent_run") or 0)
    elif run:
        spent_last = _spent_since_last_start(out_dir / MANIFEST_NAME)
    else:
        spent_last = 0
    if state.bad_lines:
        warnings.append(f"{len(state.bad_lines)} unreadable manifest line(s) skipped "
                        f"(line {state.bad_lines[0]}…): a torn write from a crash")
    price = _price_micro(run)
    left = counts["pending"] + retryable
    return {
        "out_dir": str(out_dir),
        "job_file": run.get("job_file"),
        "jobs": len(rows),
        "done": counts["done"],
        "failed": counts["failed"],
        "pending": counts["pending"],
        "failed_retryable": retryable,
        "failed_permanent": counts["failed"] - retryable,
        "pending_reasons": dict(Counter(r["reason"] for r in rows if r["state"] == "pending")),
        "spent_total": micro_to_usd(state.spent_micro),
        "spent_last_run": micro_to_usd(spent_last),
        "runs": len(state.runs),
        "last_run": {
            "run_id": run.get("run_id"),
            "started": run.get("ts"),
            "finished": finished.get("ts"),
            "exit_code": finished.get("exit_code"),
            "reason": finished.get("reason") or (
                None if not run else "running" if running else "unfinished (killed?)"),
            "running_pid": running,
        },
        "left": left,
        "left_cost": micro_to_usd(left * price),
        "price": micro_to_usd(price),
        "warnings": warnings,
    }


def format_status(info: dict[str, Any]) -> str:
    """`batchgen status` for people."""
    last = info["last_run"]
    money = lambda usd: format_usd(usd_to_micro(usd))  # noqa: E731
    failed = f"failed {info['failed']}"
    if info["failed"]:
        failed += (f" ({info['failed_retryable']} retried next run, "
                   f"{info['failed_permanent']} need --retry-failed)")
    pending = f"pending {info['pending']}"
    if info["pending_reasons"]:
        pending += " (" + ", ".join(f"{n} {reason.replace('_', ' ')}" for reason, n
                                    in sorted(info["pending_reasons"].items())) + ")"
    lines = [
        f"{info['out_dir']}: {info['jobs']} jobs from {info['job_file'] or '?'}",
        f"  done {info['done']}  {failed}  {pending}",
        f"  spent {money(info['spent_total'])} in total over {info['runs']} "
        f"run{'s' if info['runs'] != 1 else ''}, {money(info['spent_last_run'])} in the last",
    ]
    if last["run_id"]:
        end = _when(last["finished"], seconds=True)
        exit_code = "" if last["exit_code"] is None else f", exit {last['exit_code']}"
        pid = f", pid {last['running_pid']}" if last["running_pid"] else ""
        lines.append(f"  last run {last['run_id']}: {_when(last['started'], seconds=True)} → {end} "
                     f"({last['reason']}{exit_code}{pid})")
    lines.append(f"  left: {info['left']} jobs ≈ {money(info['left_cost'])} "
                 f"at {money(info['price'])} each")
    lines += [f"  warning: {w}" for w in info["warnings"]]
    return "\n".join(lines)
