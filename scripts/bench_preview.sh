#!/usr/bin/env bash
# What preview.jpg costs: CPU (user + sys) of `kaokore pack` against `kaokore pack
# --no-preview` from the same warm cache, alternating, RUNS times each (target: at most
# 1.02x).
#
#   scripts/bench_preview.sh --cache DIR        # a warm cache of the version (e.g. KEEP_WORK=1
#                                               # scripts/bench_build.sh keeps one)
#   VERSION=1.3 SIZE=256 RUNS=3 FORMATS=idx,npz,parquet scripts/bench_preview.sh --cache DIR
#   MEASURE=instructions METADATA=DIR scripts/bench_preview.sh --cache DIR
#                                               # instructions retired instead (valgrind's
#                                               # callgrind, one worker thread, one run each):
#                                               # the same count however loaded the machine;
#                                               # METADATA packs a part of a version
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:-1.3}
SIZE=${SIZE:-256}
RUNS=${RUNS:-3}
MEASURE=${MEASURE:-cpu}
FORMATS=${FORMATS:-idx,npz,parquet}
[[ "${1:-}" == --cache && -d "${2:-}" ]] || { echo "usage: $0 --cache DIR" >&2; exit 2; }
cache=$2
TARGET=${CARGO_TARGET_DIR:-target}
if [[ ! -x /usr/bin/time ]]; then
    apt-get install -y -qq time >/dev/null
fi
cargo build --release --quiet ${FEATURES:+--features "$FEATURES"} --bin kaokore
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The pack command of this run, for OUTDIR, with ARGS after it.
pack_args() {
    local out=$1
    shift
    printf '%s\0' "$TARGET/release/kaokore" pack --dataset-version "$VERSION" \
        ${METADATA:+--metadata "$METADATA"} --cache "$cache" --formats "$FORMATS" \
        --size "$SIZE" --out "$work/$out" --quiet "$@"
}

if [[ "$MEASURE" == instructions ]]; then
    command -v valgrind >/dev/null || { echo "MEASURE=instructions needs valgrind" >&2; exit 2; }
    count() {  # OUTDIR [ARGS...] -> instructions retired
        local out=$1
        shift
        rm -rf "${work:?}/$out"
        local cmd=()
        mapfile -d '' cmd < <(pack_args "$out" --jobs 1 "$@")
        valgrind --tool=callgrind --callgrind-out-file=/dev/null "${cmd[@]}" 2>"$work/vg"
        awk '/Collected :/ { print $NF }' "$work/vg"
    }
    echo "kaokore pack v$VERSION${METADATA:+ (part: $METADATA)} at $SIZE, formats $FORMATS: instructions, with preview.jpg against --no-preview"
    a=$(count without --no-preview)
    b=$(count with)
    echo "  --no-preview $a  with preview $b  ratio $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.4f", b / a }')"
    exit 0
fi

cpu() {  # OUTDIR [ARGS...] -> CPU seconds
    local out=$1
    shift
    rm -rf "${work:?}/$out"
    local cmd=()
    mapfile -d '' cmd < <(pack_args "$out" "$@")
    /usr/bin/time -f "%U %S" -o "$work/t" "${cmd[@]}"
    awk '{ printf "%.2f", $1 + $2 }' "$work/t"
}
echo "kaokore pack v$VERSION at $SIZE, formats $FORMATS: with preview.jpg against --no-preview (CPU s)"
with_total=0 without_total=0
for run in $(seq "$RUNS"); do
    # Alternate which goes first, so neither always meets a colder page cache.
    if (( run % 2 )); then
        a=$(cpu without --no-preview); b=$(cpu with)
    else
        b=$(cpu with); a=$(cpu without --no-preview)
    fi
    with_total=$(awk -v t="$with_total" -v b="$b" 'BEGIN { print t + b }')
    without_total=$(awk -v t="$without_total" -v a="$a" 'BEGIN { print t + a }')
    echo "  run $run: --no-preview ${a}  with preview ${b}  ratio $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.3f", b / a }')"
done
echo "  all runs: --no-preview ${without_total}  with preview ${with_total}  ratio $(awk -v a="$without_total" -v b="$with_total" 'BEGIN { printf "%.3f", b / a }')"
