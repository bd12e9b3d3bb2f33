#!/usr/bin/env bash
# Fetch benchmark: the wall time of fetching every v1.3 URL from the fixture IIIF server
# (one port per KaoKore host, fixed latency per response), as a ratio to the bound no
# polite fetcher can beat: ceil(busiest host's URLs / per-host) x latency.
#
#   scripts/bench_fetch.sh                       # per-host 8, 30 ms latency
#   PER_HOST=4 LATENCY_MS=50 scripts/bench_fetch.sh
#
# Times `kaokore fetch` (RUNNER=example: the same library call from
# examples/fetch_bench.rs). Honours CARGO_TARGET_DIR.
set -euo pipefail

PER_HOST=${PER_HOST:-8}
LATENCY_MS=${LATENCY_MS:-30}
VERSION=${VERSION:-1.3}
cd "$(dirname "$0")/.."
# shellcheck source=lib/fixture.sh
source scripts/lib/fixture.sh
TARGET=${CARGO_TARGET_DIR:-target}

cargo build --release --quiet --example iiif_fixture --example fetch_bench --bin kaokore

work=$(mktemp -d)
fixture_pid=""
cleanup() {
    if [[ -n "$fixture_pid" ]]; then kill "$fixture_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

start_fixture "$TARGET/release/examples/iiif_fixture" "$work/fixture.out" \
    --latency-ms "$LATENCY_MS" --hosts 3

# The busiest host's share of the URLs decides the bound.
urls="data/kaokore-metadata/v$VERSION/urls.txt"
busiest=$(awk -F/ 'NF > 2 { n[$3]++ } END { m = 0; for (h in n) if (n[h] > m) m = n[h]; print m }' "$urls")
total=$(grep -c . "$urls")

# RUNNER=example times the library call (examples/fetch_bench.rs) instead of the binary.
runner_for() {
    case "$1" in
        binary) echo "$TARGET/release/kaokore fetch --quiet" ;;
        example) echo "$TARGET/release/examples/fetch_bench" ;;
    esac
}
RUNNER=${RUNNER:-binary}
read -r -a runner <<<"$(runner_for "$RUNNER")"
start=$(date +%s.%N)
"${runner[@]}" --dataset-version "$VERSION" --cache "$work/cache" --per-host "$PER_HOST" \
    "${rewrites[@]}"
end=$(date +%s.%N)
cached=$(find "$work/cache" -name '*.img' | wc -l)

awk -v s="$start" -v e="$end" -v b="$busiest" -v p="$PER_HOST" -v l="$LATENCY_MS" \
    -v t="$total" -v c="$cached" -v r="${runner[0]##*/}" 'BEGIN {
    wall = e - s
    rounds = int((b + p - 1) / p)
    bound = rounds * l / 1000
    printf "runner:        %s\n", r
    printf "urls:          %d (busiest host %d), cached %d\n", t, b, c
    printf "per-host:      %d, latency %d ms\n", p, l
    printf "wall time:     %.2f s\n", wall
    printf "bound:         ceil(%d/%d) x %d ms = %.2f s\n", b, p, l, bound
    printf "ratio:         %.3f\n", wall / bound
}'
