#!/usr/bin/env bash
# The project's whole test suite: the Rust tests, then (when present) the Python interop
# check that loads a fixture build with numpy, pandas, polars, pyarrow, DuckDB and datasets.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --all-targets

if [ -f scripts/interop_test.sh ]; then
  bash scripts/interop_test.sh
fi
