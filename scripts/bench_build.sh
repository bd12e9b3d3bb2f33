#!/usr/bin/env bash
# Build benchmark: a full `kaokore build` of a version (default 1.3 at 256) from a cold
# cache against the fixture IIIF servers with a fixed latency per response (default 30 ms)
# and --per-host 8. Reports, as ratios:
#   - wall time / the fetch bound ceil(busiest host's requested URLs / per-host) x latency
#     (the best any polite fetcher can do; what is left is decode + compression that did
#     not overlap the network);
#   - peak resident memory and CPU seconds of kaokore (the fixture runs in its own process);
#   - CPU seconds per 1,000 images for each pack step, from report.json.
#
#   scripts/bench_build.sh
#   VERSION=1.0 SIZE=256 PER_HOST=8 LATENCY_MS=30 scripts/bench_build.sh
#   KEEP_WORK=1 scripts/bench_build.sh      # keep the cache, output and report.json
#   FEATURES=isal scripts/bench_build.sh    # the opt-in ISA-L deflate
#   SIZE=64,128,256 FORMATS=idx,npz,parquet,images,webdataset,mnist scripts/bench_build.sh
set -euo pipefail

VERSION=${VERSION:-1.3}
SIZE=${SIZE:-256}
PER_HOST=${PER_HOST:-8}
LATENCY_MS=${LATENCY_MS:-30}
cd "$(dirname "$0")/.."
# shellcheck source=lib/fixture.sh
source scripts/lib/fixture.sh
TARGET=${CARGO_TARGET_DIR:-target}

if [[ ! -x /usr/bin/time ]]; then
    apt-get install -y -qq time >/dev/null
fi
cargo build --release --quiet ${FEATURES:+--features "$FEATURES"} --example iiif_fixture --bin kaokore

work=$(mktemp -d)
fixture_pid=""
cleanup() {
    if [[ -n "$fixture_pid" ]]; then kill "$fixture_pid" 2>/dev/null || true; fi
    if [[ -n "${KEEP_WORK:-}" ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT

start_fixture "$TARGET/release/examples/iiif_fixture" "$work/fixture.out" \
    --latency-ms "$LATENCY_MS" --hosts 3 --gray-one-in 50

/usr/bin/time -v -o "$work/time.txt" \
    "$TARGET/release/kaokore" build --dataset-version "$VERSION" --size "$SIZE" \
    ${FORMATS:+--formats "$FORMATS"} \
    --per-host "$PER_HOST" --cache "$work/cache" --out "$work/out" --quiet "${rewrites[@]}"

python3 - "$work" "$VERSION" "$SIZE" "$PER_HOST" "$LATENCY_MS" <<'PY'
import json, math, re, sys, collections
work, version, size, per_host, latency_ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
t = open(f"{work}/time.txt").read()
def field(name):
    return re.search(re.escape(name) + r":\s*(.+)", t).group(1).strip()
wall_parts = [float(p) for p in field("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")]
wall = sum(p * 60 ** i for i, p in enumerate(reversed(wall_parts)))
cpu = float(field("User time (seconds)")) + float(field("System time (seconds)"))
rss_mib = int(field("Maximum resident set size (kbytes)")) / 1024
# Several sizes: each has its own report; the first one's counts and pack steps are shown.
first = size.split(",")[0]
report = json.load(open(f"{work}/out/report.json" if "," not in size else f"{work}/out/size-{first}/report.json"))

# What the build requested: labelled images with a URL, per host.
meta = f"data/kaokore-metadata/v{version}"
urls = open(f"{meta}/urls.txt").read().split("\n")
labelled = [int(l.split(",")[0][:8]) for l in open(f"{meta}/labels.csv").read().split("\n")[1:] if l.strip()]
hosts = collections.Counter(urls[i].split("/")[2] for i in labelled if i < len(urls) and urls[i].strip())
busiest_host, busiest = hosts.most_common(1)[0]
bound = math.ceil(busiest / per_host) * latency_ms / 1000
all_hosts = collections.Counter(u.split("/")[2] for u in urls if u.strip())
bound_all = math.ceil(max(all_hosts.values()) / per_host) * latency_ms / 1000
packed = report["counts"]["packed_total"]

print(f"kaokore build v{version} at {size}, --per-host {per_host}, fixture latency {latency_ms} ms")
print(f"  requested {sum(hosts.values())} images; busiest host {busiest_host}: {busiest}")
print(f"  wall {wall:.1f} s; fetch bound {bound:.2f} s; ratio {wall / bound:.2f}")
print(f"  (bound over every URL of the busiest host, {max(all_hosts.values())}: {bound_all:.2f} s; ratio {wall / bound_all:.2f})")
print(f"  CPU {cpu:.1f} s (user+sys of kaokore); {cpu / packed * 1000:.2f} s per 1,000 images")
print(f"  peak RSS {rss_mib:.0f} MiB")
print(f"  packed {packed}; failed {report['counts']['failed']}")
ps = report.get("pack_seconds") or {}
steps = {k: v for k, v in ps.items() if k not in ("total", "waiting") and v}
print("  pack steps, CPU s per 1,000 images: " + ", ".join(f"{k} {v / packed * 1000:.2f}" for k, v in steps.items()))
PY
