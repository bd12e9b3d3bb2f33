#!/usr/bin/env bash
# Run kaokore's fuzz targets (fuzz/fuzz_targets/, cargo-fuzz with libFuzzer on the nightly
# toolchain) for a bounded time each, and print the executions per target; exits non-zero
# on the first crash (its input is left in fuzz/artifacts/TARGET/).
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]   each target (default: all) for SECONDS (default 30)
#   scripts/fuzz.sh --seeds                 remake fuzz/base/ (a small valid build at size 16,
#                                           every format) and the seed corpus fuzz/corpus/
#
# The checked-in corpus is read, never written: what a run discovers goes to a temporary
# directory (FUZZ_KEEP=DIR keeps it there instead, for a longer campaign). SANITIZER=none
# builds without AddressSanitizer (cargo fuzz -s none): faster, catches panics only.
# Needs `rustup toolchain install nightly` and `cargo install cargo-fuzz --locked`.
set -euo pipefail
cd "$(dirname "$0")/.."

targets_all=(deflate_roundtrip metadata_urls metadata_labels metadata_tags metadata_class_names
  record_croissant verify_arrays verify_parquet verify_shards tfrecord_example)

make_seeds() {
  # shellcheck source=lib/fixture.sh
  source scripts/lib/fixture.sh
  # shellcheck source=lib/small_metadata.sh
  source scripts/lib/small_metadata.sh
  cargo build --release --quiet --bin kaokore --example iiif_fixture
  local target="${CARGO_TARGET_DIR:-target}"
  work="$(mktemp -d)"
  fixture_pid=""
  trap '[ -n "$fixture_pid" ] && kill "$fixture_pid" 2>/dev/null; rm -rf "$work"' EXIT
  start_fixture "$target/release/examples/iiif_fixture" "$work/fixture.out" --hosts 3 --gray-one-in 4
  # The first 13 lines of 1.0: train, dev and test rows, three hosts, gray images.
  small_metadata data/kaokore-metadata/v1.0 13 "$work/meta"
  rm -rf fuzz/base
  "$target/release/kaokore" build --metadata "$work/meta" --dataset-version 1.0 --size 16 \
    --formats idx,npz,parquet,images,webdataset,mnist,tfds --cache "$work/cache" \
    --out fuzz/base --quiet "${rewrites[@]}"
  rm -f fuzz/base/report.json # timings: not read by verify, and never the same twice
  "$target/release/kaokore" verify fuzz/base

  rm -rf fuzz/corpus
  local t f i
  for t in "${targets_all[@]}"; do mkdir -p "fuzz/corpus/$t"; done
  # A verify target's input is a byte picking the file (its index in the target's list),
  # then the file: one seed per file, the valid file itself.
  for t in record_croissant verify_arrays verify_parquet verify_shards; do
    i=0
    while read -r f; do
      { printf "\\x$(printf %02x "$i")"; cat "fuzz/base/$f"; } >"fuzz/corpus/$t/$i"
      i=$((i + 1))
    done < <(sed -n '/^const FILES/,/^];/p' "fuzz/fuzz_targets/$t.rs" | grep -o '"[^"]*"' | tr -d '"')
  done
  local v=data/kaokore-metadata
  head -n 40 "$v/v1.0/urls.txt" >fuzz/corpus/metadata_urls/v1.0-head
  sed -n '270,300p' "$v/v1.1/urls.txt" >fuzz/corpus/metadata_urls/v1.1-blank-lines
  grep -m 20 '!200,200' "$v/v1.3/urls.txt" >fuzz/corpus/metadata_urls/v1.3-keio
  head -n 30 "$v/v1.3/labels.csv" >fuzz/corpus/metadata_labels/v1.3-head
  printf 'set,status,image,gender\r\n00000000.jpg,0,train,1\r\n' >fuzz/corpus/metadata_labels/reordered
  head -n 5 "$v/v1.3/original_tags.txt" >fuzz/corpus/metadata_tags/v1.3-head
  cp "$v/v1.3/labels.metadata.en.txt" fuzz/corpus/metadata_class_names/en
  cp "$v/v1.3/labels.metadata.ja.txt" fuzz/corpus/metadata_class_names/ja
  # deflate_roundtrip: a mode byte (bit 0: made pixel-like), then data.
  { printf '\x00'; gzip -dc fuzz/base/idx/kaokore-train-images-idx4-ubyte.gz | head -c 3000; } \
    >fuzz/corpus/deflate_roundtrip/pixels
  { printf '\x07'; head -c 600 "$v/v1.3/urls.txt"; } >fuzz/corpus/deflate_roundtrip/text-as-steps
  printf '\x00' >fuzz/corpus/deflate_roundtrip/empty
  # tfrecord_example: the first example of a shard (after its 12 bytes of framing), and
  # the whole framed shard.
  f=fuzz/base/tfds/kaokore/1.0.0/kaokore-test.tfrecord-00000-of-00001
  tail -c +13 "$f" | head -c "$(od -An -t u8 -N 8 "$f" | tr -d ' ')" >fuzz/corpus/tfrecord_example/example
  cp "$f" fuzz/corpus/tfrecord_example/framed
  du -sh fuzz/base fuzz/corpus
}

if [[ "${1:-}" == --seeds ]]; then
  make_seeds
  exit 0
fi

seconds="${1:-30}"
shift || true
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${targets_all[@]}")
sanitizer=(-s "${SANITIZER:-address}")

cd fuzz
cargo +nightly fuzz build "${sanitizer[@]}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export KAOKORE_FUZZ_SCRATCH="$work"
summary=()
for t in "${targets[@]}"; do
  found="${FUZZ_KEEP:-$work}/$t"
  mkdir -p "$found"
  log="$work/$t.log"
  echo "fuzz: $t for ${seconds}s"
  if ! cargo +nightly fuzz run "${sanitizer[@]}" "$t" "$found" "corpus/$t" -- \
    -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $t FAILED: the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$log")"
  summary+=("$t: ${execs:-?} executions in ${seconds}s")
done
printf 'fuzz: %s\n' "${summary[@]}"
