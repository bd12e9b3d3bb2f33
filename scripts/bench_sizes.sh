#!/usr/bin/env bash
# Several sizes in one pass: CPU (user + sys) of `kaokore pack --size 256` against
# `kaokore pack --size 64,256` from the same warm cache, side by side, RUNS times each.
# The extra size should cost about its own resize and encode (target: at most 1.4x).
#
#   scripts/bench_sizes.sh --cache DIR          # a warm cache of the version (e.g. KEEP_WORK=1
#                                               # scripts/bench_build.sh keeps one)
#   VERSION=1.3 SIZES=64,256 RUNS=2 FORMATS=idx,npz,parquet scripts/bench_sizes.sh --cache DIR
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=${VERSION:-1.3}
SIZES=${SIZES:-64,256}
RUNS=${RUNS:-2}
FORMATS=${FORMATS:-idx,npz,parquet}
[[ "${1:-}" == --cache && -d "${2:-}" ]] || { echo "usage: $0 --cache DIR" >&2; exit 2; }
cache=$2
single=${SIZES##*,}
TARGET=${CARGO_TARGET_DIR:-target}
if [[ ! -x /usr/bin/time ]]; then
    apt-get install -y -qq time >/dev/null
fi
cargo build --release --quiet ${FEATURES:+--features "$FEATURES"} --bin kaokore
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cpu() {  # SIZES OUTDIR -> CPU seconds
    /usr/bin/time -f "%U %S" -o "$work/t" "$TARGET/release/kaokore" pack --dataset-version "$VERSION" \
        --cache "$cache" --formats "$FORMATS" --size "$1" --out "$work/$2" --quiet
    awk '{ printf "%.2f", $1 + $2 }' "$work/t"
}
echo "kaokore pack v$VERSION, formats $FORMATS: --size $single against --size $SIZES (CPU s)"
for run in $(seq "$RUNS"); do
    rm -rf "$work"/one "$work"/several
    a=$(cpu "$single" one)
    b=$(cpu "$SIZES" several)
    echo "  run $run: --size $single ${a}  --size $SIZES ${b}  ratio $(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", b / a }')"
done
