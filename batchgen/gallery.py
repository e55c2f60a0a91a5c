"""index.html: one self-contained page (inline CSS and JS, relative image links),
written card by card so a million jobs take flat memory. Every text from the job
file is escaped. A card shows its image's thumbnail (see `thumbs`) and links to the
full image; without a thumbnail it shows the full image."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote

from .manifest import Replay
from .money import format_usd
from .reports import cell, is_left
from .state import PENDING_REASONS, STATES
from .thumbs import thumbnail_size

PAGE_SIZE = 200  # cards per page in the gallery when JavaScript runs
OPEN_TABLE_ROWS = 500  # the failures table starts folded when it is longer than this


def when(ts: str | None, *, seconds: bool = False) -> str:
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
# (#state=failed&q=fox&page=2). Without JavaScript every card is shown, its thumbnail in
# a <noscript>; with it, a card gets its <img> (the thumbnail in the link's data-src, or
# the full image it links to) when it is first shown, so a page of 10,000 jobs holds
# only the images of the page on screen (6,000 lazy <img>s cost seconds).
_JS = """
(function(){
var grid=document.getElementById('grid');if(!grid)return;
var cards=[].slice.call(grid.children),text=cards.map(function(c){
return c.querySelector('.cap').textContent.toLowerCase();});
var form=document.getElementById('controls'),sel=document.getElementById('state'),
mod=document.getElementById('model'),
q=document.getElementById('q'),pager=document.getElementById('pager'),
count=document.getElementById('count'),prev=document.getElementById('prev'),
next=document.getElementById('next'),where=document.getElementById('where');
var size=+grid.getAttribute('data-page-size')||200,page=0;
function readHash(){var p=new URLSearchParams(location.hash.slice(1));
sel.value=p.get('state')||'';if(sel.selectedIndex<0)sel.value='';q.value=p.get('q')||'';
mod.value=p.get('model')||'';if(mod.selectedIndex<0)mod.value='';
page=Math.max(0,(parseInt(p.get('page'),10)||1)-1);}
function writeHash(){var p=new URLSearchParams();if(sel.value)p.set('state',sel.value);
if(mod.value)p.set('model',mod.value);
if(q.value)p.set('q',q.value);if(page)p.set('page',page+1);var h=p.toString();
try{history.replaceState(null,'',h?'#'+h:location.pathname+location.search);}catch(e){}}
function apply(){var s=sel.value,m=mod.value,t=q.value.trim().toLowerCase(),hits=[],i;
for(i=0;i<cards.length;i++){cards[i].hidden=true;
if((!s||cards[i].getAttribute('data-state')===s)&&(!m||cards[i].getAttribute('data-model')===m)
&&(!t||text[i].indexOf(t)>=0))hits.push(i);}
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
img.loading='lazy';img.decoding='async';
img.src=a.getAttribute('data-src')||a.getAttribute('href');
img.alt=card.querySelector('.prompt').textContent;a.appendChild(img);}
function change(){page=0;apply();writeHash();}
sel.addEventListener('change',change);mod.addEventListener('change',change);
q.addEventListener('input',change);
form.addEventListener('submit',function(e){e.preventDefault();});
prev.addEventListener('click',function(){page--;apply();writeHash();scrollTo(0,grid.offsetTop);});
next.addEventListener('click',function(){page++;apply();writeHash();scrollTo(0,grid.offsetTop);});
addEventListener('hashchange',function(){readHash();apply();});
form.hidden=false;readHash();apply();
})();
"""


def _card(row: dict[str, Any], thumbnail: Callable[[str], str | None] | None) -> str:
    esc = html.escape
    state = row["state"]
    meta = " · ".join(f"{esc(str(k))}: {esc(cell(v))}" for k, v in row["metadata"].items()
                      if cell(v) != "")
    sent = " ".join(f"{esc(str(k))}={esc(cell(v))}" for k, v in row["params"].items()
                    if k != "aspect_ratio")
    more = "".join(f' <a class="more" href="{esc(quote(file))}" target="_blank">'
                   f"image {n}</a>" for n, file in enumerate(row["files"][1:], start=2))
    if state == "done":
        href = esc(quote(row["file"]))
        thumb = thumbnail(row["file"]) if thumbnail else None
        src = esc(quote(thumb)) if thumb else href
        size = thumbnail_size(row["aspect_ratio"])
        box = f' width="{size[0]}" height="{size[1]}"' if size else ""
        data = f' data-src="{src}"' if thumb else ""
        picture = (f'<a class="thumb" href="{href}"{data} target="_blank" '
                   f'title="open full size"><noscript><img loading="lazy" src="{src}"{box} '
                   f'alt="{esc(row["prompt"])}"></noscript></a>')
    else:
        note = row["error"] or PENDING_REASONS["never_tried"]
        picture = f'<div class="ph"><strong>{state}</strong><small>{esc(note)}</small></div>'
    ratio = f'<span class="ratio">{esc(row["aspect_ratio"])}</span>' if row["aspect_ratio"] \
        else ""
    return (
        f'<article class="card {state}" data-state="{state}" data-model="{esc(row["model"])}">'
        f'{picture}<div class="cap"><p class="prompt">{esc(row["prompt"])}</p>'
        f'<p class="meta">{ratio}<code>{esc(row["id"])}</code>{more}'
        f'{" · " + meta if meta else ""}</p>'
        f'<p class="meta model">{esc(row["model"])}{" · " + sent if sent else ""}</p>'
        f"</div></article>"
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
    started, finished = run["started"], run["finished"]
    reason = finished.reason if finished else "unfinished"
    exit_code = str(finished.exit_code) if finished else "-"
    end = when(finished and finished.ts)
    return (f"<tr><td>{esc(when(started.ts))}</td><td>{esc(end)}</td>"
            f"<td>{esc(reason)}</td><td>{esc(exit_code)}</td>"
            f"<td>{esc(format_usd(run['spent_micro']))}</td></tr>")


def write_gallery(fh: TextIO, rows: Callable[[], Iterable[dict[str, Any]]],
                  history: Replay,
                  thumbnail: Callable[[str], str | None] | None = None) -> None:
    """`rows()` is walked three times (totals, cards, problems) instead of kept.
    `thumbnail(image)` gives the thumbnail to show for an image, or None for the image
    itself; without it every card shows its full image."""
    esc = html.escape
    counts: Counter[str] = Counter()
    models: Counter[str] = Counter()
    left = left_cost = 0
    for r in rows():
        counts[r["state"]] += 1
        models[r["model"]] += 1
        if is_left(r):
            left += 1
            left_cost += r["price_micro"]
    total = sum(counts.values())
    runs = history.runs
    last = runs[-1] if runs else None
    job_file = Path(last["started"].job_file or "").name if last else ""
    job_file = job_file or "batchgen"
    first_ts = runs[0]["started"].ts if runs else None
    simulated = (' · <strong class="simulated">simulated: placeholder images, no money '
                 "spent</strong>" if last and last["started"].simulated else "")
    last_ts = ((last["finished"] or last["started"]).ts) if last else None
    stats = [("jobs", total, ""), ("done", counts["done"], "done"),
             ("failed", counts["failed"], "failed"), ("pending", counts["pending"], "pending"),
             ("spent", format_usd(history.spent_micro), ""),
             ("left to do", f"{left} ≈ {format_usd(left_cost)}", "")]
    stat_items = "".join(f'<li class="{cls}"><b>{esc(str(value))}</b><span>{name}</span></li>'
                         for name, value, cls in stats)
    options = "".join(f'<option value="{s}">{s} ({counts[s]})</option>' for s in STATES)
    model_options = "".join(f'<option value="{esc(m)}">{esc(m)} ({n})</option>'
                            for m, n in sorted(models.items()))
    problems = counts["failed"] + counts["pending"]
    run_table = ""
    if runs:
        run_table = (
            f"<h2>Runs ({len(runs)})</h2><details><summary>from {esc(when(first_ts))} "
            f"to {esc(when(last_ts))}</summary><table><thead><tr><th>started</th>"
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
{esc(when(first_ts))} → {esc(when(last_ts))}{simulated}</p>
<ul class="stats">{stat_items}</ul></header>
<form id="controls" hidden role="search"><label>state <select id="state">
<option value="">all ({total})</option>{options}</select></label>
<label{"" if len(models) > 1 else " hidden"}>model <select id="model">
<option value="">all</option>{model_options}</select></label>
<input id="q" type="search" placeholder="search prompts, ids, metadata" aria-label="search">
<span id="count"></span></form>
<main id="grid" data-page-size="{PAGE_SIZE}">
""")
    fh.writelines(_card(r, thumbnail) + "\n" for r in rows())
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
