#!/usr/bin/env bash
# Peak resident memory of `kaokore pack` by size: the first N (300) lines of a version,
# fetched once from the fixture IIIF servers, then packed at each of SIZES (256,4096) with
# GNU time. Rows in flight are bounded by their bytes of pixels, so a large size should
# cost a few rows' worth of memory more, not a hundred.
#
#   scripts/pack_memory.sh
#   N=300 SIZES=256,1024,4096 FORMATS=idx,npz,parquet BIN=path/to/kaokore scripts/pack_memory.sh
#
# BIN packs with another kaokore binary (e.g. an older build, for a before/after).
# Honours CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-300}
VERSION=${VERSION:-1.0}
SIZES=${SIZES:-256,4096}
FORMATS=${FORMATS:-idx,npz,parquet}
TARGET=${CARGO_TARGET_DIR:-target}
# shellcheck source=lib/fixture.sh
source scripts/lib/fixture.sh
# shellcheck source=lib/small_metadata.sh
source scripts/lib/small_metadata.sh
[[ -x /usr/bin/time ]] || { echo "needs GNU time (/usr/bin/time)" >&2; exit 2; }

cargo build --release --quiet --example iiif_fixture --bin kaokore
bin=${BIN:-$TARGET/release/kaokore}
work=$(mktemp -d)
fixture_pid=""
cleanup() {
    if [[ -n "$fixture_pid" ]]; then kill "$fixture_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
start_fixture "$TARGET/release/examples/iiif_fixture" "$work/fixture.txt"
small_metadata "data/kaokore-metadata/v$VERSION" "$N" "$work/meta"
"$TARGET/release/kaokore" fetch --quiet --dataset-version "$VERSION" --metadata "$work/meta" \
    --cache "$work/cache" "${rewrites[@]}"

for size in ${SIZES//,/ }; do
    /usr/bin/time -v -o "$work/time.txt" "$bin" pack --quiet --dataset-version "$VERSION" \
        --metadata "$work/meta" --cache "$work/cache" --out "$work/out-$size" \
        --size "$size" --formats "$FORMATS" >/dev/null
    rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$work/time.txt")
    wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$work/time.txt")
    packed=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["counts"]["packed_total"])' \
        "$work/out-$size/report.json")
    echo "pack --size $size: $packed rows, peak RSS $((rss / 1024)) MiB, wall $wall"
    rm -rf "$work/out-$size"
done
