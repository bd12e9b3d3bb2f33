#!/usr/bin/env bash
# Offline failure check: how long a build takes to give up when no host can be reached,
# and how many lines it prints. Every KaoKore host is sent (--rewrite) to a `.invalid`
# name that no resolver answers (RFC 6761), or, with MODE=netns, the build runs in an
# empty network namespace (`unshare -n`, where available) with the real URLs.
#
#   scripts/offline_check.sh                 # v1.3, --rewrite to .invalid hosts
#   MODE=netns scripts/offline_check.sh      # no network at all
#
# Prints the exit status, the wall time, the stderr line count and stderr itself; fails
# unless the build exits 1 within 15 s in at most 8 lines. Honours CARGO_TARGET_DIR.
set -euo pipefail

MODE=${MODE:-rewrite}
VERSION=${VERSION:-1.3}
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-target}
cargo build --release --quiet --bin kaokore
bin="$TARGET/release/kaokore"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

args=(build --dataset-version "$VERSION" --cache "$work/cache" --out "$work/out")
prefix=()
case "$MODE" in
    rewrite)
        for from in http://codh.rois.ac.jp https://iiif.lib.keio.ac.jp \
            http://iiif.lib.keio.ac.jp https://rmda.kulib.kyoto-u.ac.jp; do
            host=${from#*://}
            args+=(--rewrite "$from=http://${host%%/*}.invalid")
        done
        ;;
    netns) prefix=(unshare -n -r) ;;
    *) echo "MODE is rewrite or netns" >&2; exit 2 ;;
esac

start=$(date +%s.%N)
set +e
"${prefix[@]}" "$bin" "${args[@]}" 2>"$work/stderr" >/dev/null
status=$?
set -e
end=$(date +%s.%N)
seconds=$(echo "$end - $start" | bc)
lines=$(wc -l <"$work/stderr")

cat "$work/stderr"
echo "---"
echo "mode $MODE: exit $status, ${seconds} s, $lines line(s) of stderr"
ok=1
[[ $status -eq 1 ]] || { echo "FAIL: exit $status, expected 1"; ok=0; }
[[ $lines -le 8 ]] || { echo "FAIL: more than 8 lines of stderr"; ok=0; }
(( $(echo "$seconds <= 15" | bc) )) || { echo "FAIL: more than 15 s"; ok=0; }
[[ $ok -eq 1 ]]
