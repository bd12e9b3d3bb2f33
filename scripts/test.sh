#!/usr/bin/env bash
# The project's whole test suite:
#   0. the tools that build ISA-L (scripts/install_build_tools.sh; a no-op when present);
#   1. a Python venv with the pinned clients (scripts/setup_venv.sh; needs PyPI the first time);
#   2. the Rust tests (cargo test), with KAOKORE_PYTHON pointing at that venv;
#   3. the interop check's own self-test, then the real-clients test: a fixture build of
#      KaoKore 1.0 read by numpy, idx2numpy, pandas, polars, pyarrow, DuckDB and datasets.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install_build_tools.sh

venv="${VENV:-.venv}"
bash scripts/setup_venv.sh "$venv"
KAOKORE_PYTHON="$(cd "$venv/bin" && pwd)/python"
export KAOKORE_PYTHON

cargo test --all-targets
# The deflate fallback used without the default `isal` feature.
cargo test --no-default-features --lib encode

"$venv/bin/python" scripts/interop_check.py --self-test
VENV="$venv" bash scripts/interop_test.sh
