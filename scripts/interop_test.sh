#!/usr/bin/env bash
# The real-clients test: build part of KaoKore 1.0 (its first 800 urls.txt lines: every
# split and class, the three hosts, grayscale images) at 256 against the fixture IIIF servers,
# verify it, then load every artifact with numpy, idx2numpy, pandas, polars, pyarrow, DuckDB
# and Hugging Face datasets, its WebDataset shards (5 MB, so train has two) with the
# webdataset package and datasets, its mnist/ files as torchvision's MNIST readers and
# idx2numpy read them, and, when tensorflow and tensorflow_datasets import in the venv
# (scripts/setup_venv.sh --tf), its tfds/ directory (5 MB shards too) with
# tfds.builder_from_directory and tf.data; it also parses `kaokore verify --json` and
# `kaokore info --json` with Python's json (scripts/interop_check.py). Installs the Python
# packages into a venv (scripts/setup_venv.sh) first. LINES=N changes the part; LINES=all
# builds all of 1.0; FORMATS=LIST changes the formats.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/fixture.sh
source scripts/lib/fixture.sh
# shellcheck source=lib/small_metadata.sh
source scripts/lib/small_metadata.sh

venv="${VENV:-.venv}"
lines="${LINES:-800}"
bash scripts/setup_venv.sh "$venv" >/dev/null
formats="${FORMATS:-idx,npz,parquet,webdataset,mnist}"
if [[ -z "${FORMATS:-}" ]]; then
  if TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -c 'import tensorflow, tensorflow_datasets' >/dev/null 2>&1; then
    formats+=",tfds"
  else
    echo "interop: SKIPPED the TensorFlow step: tensorflow-cpu/tensorflow-datasets not installed (scripts/setup_venv.sh --tf)" >&2
  fi
fi

# The release build: the one README builds first and the tests use.
cargo build --release --quiet --bin kaokore --example iiif_fixture
target="${CARGO_TARGET_DIR:-target}"
bin="$target/release/kaokore"

work="$(mktemp -d)"
fixture_pid=""
cleanup() {
  [ -n "$fixture_pid" ] && kill "$fixture_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start_fixture "$target/release/examples/iiif_fixture" "$work/fixture.out" --hosts 3 --gray-one-in 25

metadata=(--dataset-version 1.0)
labels=data/kaokore-metadata/v1.0/labels.csv
if [[ "$lines" != all ]]; then
  small_metadata data/kaokore-metadata/v1.0 "$lines" "$work/meta"
  metadata+=(--metadata "$work/meta")
  labels="$work/meta/labels.csv"
fi

echo "interop: building KaoKore 1.0 (${lines} urls.txt lines) at 256 against the fixture"
"$bin" build "${metadata[@]}" --size 256 --cache "$work/cache" --out "$work/out" \
  --per-host 8 --quiet --formats "$formats" --shard-size 5MB "${rewrites[@]}"
"$bin" verify "$work/out"

echo "interop: reading it with the Python clients"
"$venv/bin/python" scripts/interop_check.py "$work/out" --metadata-labels "$labels" --formats "$formats" \
  --kaokore "$bin"
