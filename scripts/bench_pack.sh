#!/usr/bin/env bash
# Side-by-side benchmark of `kaokore pack` and the plain Python packer
# (scripts/baseline_pack.py) on the same warm inputs.
#
#   scripts/bench_pack.sh --cache DIR [--images DIR] [options]
#
#   --cache DIR         warm kaokore image cache (required: `kaokore pack` reads it)
#   --images DIR        NNNNNNNN.jpg files for the Python packer; when omitted they are made
#                       once from the cache with `kaokore build --formats images` (no network
#                       needed on a warm cache) into WORK/images-input
#   --dataset-version V dataset version (default 1.3)
#   --size S            edge length (default 256)
#   --formats LIST      formats both packers write (default idx,npz,parquet)
#   --metadata DIR      upstream-layout metadata for the Python packer
#                       (default data/kaokore-metadata/vV in the repository)
#   --work DIR          where outputs and measurements go (default: a new temp dir)
#   --runs N            runs of each packer; the fastest (wall) run is reported (default 1)
#   --check             run scripts/interop_check.py on both outputs afterwards
#   --keep              keep WORK (default: outputs are removed, measurements kept only when
#                       --work was given)
#
# Environment: KAOKORE_BIN (default target/release/kaokore), PYTHON (default .venv/bin/python,
# else python3). Needs GNU time at /usr/bin/time; as root it is installed with apt-get when missing.
#
# Prints wall seconds, CPU seconds (user + sys) and peak RSS of each, and the ratios
# python / kaokore. Both read their inputs once before timing so the page cache is warm
# for both.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"

cache="" images="" version="1.3" size=256 formats="idx,npz,parquet" metadata="" work="" runs=1
check=0 keep=0
die() { echo "bench_pack: $*" >&2; exit 2; }
while [[ $# -gt 0 ]]; do
    case "$1" in
        --cache) cache="${2:?}"; shift 2 ;;
        --images) images="${2:?}"; shift 2 ;;
        --dataset-version|--version) version="${2:?}"; shift 2 ;;
        --size) size="${2:?}"; shift 2 ;;
        --formats) formats="${2:?}"; shift 2 ;;
        --metadata) metadata="${2:?}"; shift 2 ;;
        --work) work="${2:?}"; shift 2 ;;
        --runs) runs="${2:?}"; shift 2 ;;
        --check) check=1; shift ;;
        --keep) keep=1; shift ;;
        -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) die "unknown argument $1 (see --help)" ;;
    esac
done

kaokore="${KAOKORE_BIN:-$root/target/release/kaokore}"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then PYTHON="$root/.venv/bin/python"; else PYTHON=python3; fi
fi
metadata="${metadata:-$root/data/kaokore-metadata/v$version}"

[[ -n "$cache" ]] || die "--cache DIR is required"
[[ -d "$cache" ]] || die "cache $cache is not a directory"
[[ -x "$kaokore" ]] || die "kaokore binary $kaokore not found (build with cargo build --release or set KAOKORE_BIN)"
[[ -f "$metadata/labels.csv" && -f "$metadata/urls.txt" ]] || die "$metadata has no labels.csv / urls.txt"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "--runs must be a positive integer"
[[ "$size" =~ ^[1-9][0-9]*$ ]] || die "--size must be a positive integer"
"$PYTHON" -c 'import numpy, pyarrow, PIL' 2>/dev/null || die "$PYTHON lacks numpy/pyarrow/Pillow (run scripts/setup_venv.sh)"

# GNU time for peak RSS (the shell keyword `time` cannot report it)
if [[ ! -x /usr/bin/time ]]; then
    if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null; then
        echo "bench_pack: installing GNU time (apt-get install -y time)" >&2
        apt-get install -y -qq time >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq time >/dev/null; }
    fi
    [[ -x /usr/bin/time ]] || die "GNU time (/usr/bin/time) is needed: apt-get install -y time"
fi

own_work=0
if [[ -z "$work" ]]; then work="$(mktemp -d "${TMPDIR:-/tmp}/kaokore-bench.XXXXXX")"; own_work=1; fi
mkdir -p "$work"
work="$(cd "$work" && pwd)"
cleanup() {
    if [[ $keep == 0 ]]; then
        rm -rf "$work/kaokore-out" "$work/python-out" "$work/images-build"
        [[ $own_work == 1 ]] && rm -rf "$work"
    fi
    return 0
}
trap cleanup EXIT

if [[ -z "$images" ]]; then
    images="$work/images-input"
    if [[ ! -d "$images" ]] || [[ -z "$(ls -A "$images" 2>/dev/null)" ]]; then
        echo "bench_pack: making the Python packer's input with kaokore build --formats images" >&2
        rm -rf "$work/images-build"
        "$kaokore" build --dataset-version "$version" --cache "$cache" --size "$size" \
            --formats images --out "$work/images-build" --quiet
        src="$(find "$work/images-build" -maxdepth 1 -type d -name 'images_*' | head -n1)"
        [[ -n "$src" ]] || die "kaokore build --formats images wrote no images_* directory"
        mv "$src" "$images"
    fi
fi
[[ -d "$images" ]] || die "images $images is not a directory"

warm() { find "$@" -type f -print0 | xargs -0 -r cat >/dev/null; }
echo "bench_pack: warming the page cache" >&2
warm "$cache" "$images" "$metadata"
warm "$kaokore"

# run NAME OUTDIR CMD...  -> appends "name wall cpu rss_kb" to $work/results.tsv
seconds_of() {  # h:mm:ss.ss or m:ss.ss -> seconds
    awk -F: '{ s = 0; for (i = 1; i <= NF; i++) s = s * 60 + $i; printf "%.2f", s }' <<<"$1"
}
run() {
    local name="$1" out="$2"; shift 2
    local i best_wall="" best_line=""
    for ((i = 1; i <= runs; i++)); do
        rm -rf "$out"
        local tv="$work/$name.time.$i" log="$work/$name.log.$i"
        if ! /usr/bin/time -v -o "$tv" "$@" >"$log" 2>&1; then
            echo "bench_pack: $name failed (run $i); its output:" >&2
            tail -n 30 "$log" >&2
            grep -E 'Exit status' "$tv" >&2 || true
            exit 1
        fi
        local wall user sys rss
        wall="$(seconds_of "$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$tv")")"
        user="$(sed -n 's/.*User time (seconds): //p' "$tv")"
        sys="$(sed -n 's/.*System time (seconds): //p' "$tv")"
        rss="$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$tv")"
        local cpu; cpu="$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')"
        echo "bench_pack: $name run $i: wall ${wall}s cpu ${cpu}s peak RSS $((rss / 1024)) MiB" >&2
        if [[ -z "$best_wall" ]] || awk -v a="$wall" -v b="$best_wall" 'BEGIN { exit !(a < b) }'; then
            best_wall="$wall"; best_line="$name	$wall	$cpu	$rss"
        fi
    done
    echo "$best_line" >>"$work/results.tsv"
}

: >"$work/results.tsv"
run kaokore "$work/kaokore-out" \
    "$kaokore" pack --dataset-version "$version" --cache "$cache" --size "$size" \
    --formats "$formats" --out "$work/kaokore-out" --quiet
run python "$work/python-out" \
    "$PYTHON" "$here/baseline_pack.py" --metadata "$metadata" --images "$images" \
    --size "$size" --formats "$formats" --dataset-version "$version" --out "$work/python-out"

du_mib() { du -sm "$1" 2>/dev/null | cut -f1; }
echo
echo "kaokore pack vs Python baseline: v$version, ${size}x${size}, formats $formats, $(nproc) cores, best of $runs"
awk -F'\t' -v ko="$(du_mib "$work/kaokore-out")" -v po="$(du_mib "$work/python-out")" '
    { wall[$1] = $2; cpu[$1] = $3; rss[$1] = $4 / 1024 }
    END {
        printf "%-9s %10s %10s %14s %10s\n", "", "wall s", "cpu s", "peak RSS MiB", "out MiB"
        printf "%-9s %10.2f %10.2f %14.1f %10s\n", "kaokore", wall["kaokore"], cpu["kaokore"], rss["kaokore"], ko
        printf "%-9s %10.2f %10.2f %14.1f %10s\n", "python", wall["python"], cpu["python"], rss["python"], po
        printf "%-9s %10s %10s %14s\n", "ratio", \
            (wall["kaokore"] > 0 ? sprintf("%.2fx", wall["python"] / wall["kaokore"]) : "n/a"), \
            (cpu["kaokore"] > 0 ? sprintf("%.2fx", cpu["python"] / cpu["kaokore"]) : "n/a"), \
            (rss["kaokore"] > 0 ? sprintf("%.2fx", rss["python"] / rss["kaokore"]) : "n/a")
        print "(ratio = python / kaokore: above 1 means kaokore is faster / smaller)"
    }' "$work/results.tsv"

status=0
if [[ $check == 1 ]]; then
    for o in kaokore-out python-out; do
        echo
        echo "interop_check $o:"
        "$PYTHON" "$here/interop_check.py" "$work/$o" --formats "$formats" | tail -n 1 || status=1
    done
fi
[[ $keep == 1 || $own_work == 0 ]] && echo "measurements in $work" >&2
exit $status
