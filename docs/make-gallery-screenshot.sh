#!/usr/bin/env bash
# Rebuild docs/gallery.png: a simulated batch of PartiPrompts (two of them rejected by
# the API, the balance running out before the last few), its index.html, and a
# screenshot of it in headless Chromium (apt-get install -y chromium).
# Usage: docs/make-gallery-screenshot.sh [path/to/PartiPrompts.tsv]
set -euo pipefail
cd "$(dirname "$0")/.."
parti=${1:-../shared/data/PartiPrompts.tsv}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

jobs=$work/parti-sample.tsv
{
  printf 'prompt\taspect_ratio\tcategory\tchallenge\n'
  # every 61st prompt, with its category and challenge as metadata, in assorted ratios
  awk -F'\t' 'NR > 1 && NR % 61 == 0 { print $1 "\t" $2 "\t" $3 }' "$parti" | head -26 \
    | awk -F'\t' -v OFS='\t' 'BEGIN { split("1:1 16:9 2:3 4:5 3:2 9:16 1:1", r, " ") }
        NR == 4 || NR == 11 { $1 = "[reject] " $1 }
        { print $1, r[NR % 7 + 1], $2, $3 }'
} > "$jobs"

# $0.38 pays for 20 images: the last few stay pending, as after a real 406
python -m batchgen run "$jobs" --out "$work/out" --simulate --sim-credits 0.38 \
  --sim-latency 0.05 --concurrency 1 --no-progress -q || true

chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
  --disable-background-networking --disable-component-update --disable-sync \
  --user-data-dir="$work/profile" --hide-scrollbars --window-size=1280,1100 \
  --screenshot="$PWD/docs/gallery.png" "file://$work/out/index.html" 2>/dev/null
echo "wrote docs/gallery.png"
