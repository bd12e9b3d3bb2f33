#!/usr/bin/env bash
# The project's test suite. It changes nothing outside the repository: no sudo, no system
# packages; the Python clients go into the repository's venv (.venv, or $VENV).
#
#   scripts/test.sh          Rust tests on small metadata sets and fixture images, then the
#                            real-clients test on a fixture build of part of KaoKore 1.0
#   scripts/test.sh --full   the same, then the slow checks: the whole-version runs (every URL
#                            of 1.3 fetched, all of 1.0 built, packed and verified), the kill
#                            sweeps (a pack killed before each of its renames, then resumed;
#                            needs strace), the reference build under qemu-x86_64 as older
#                            CPUs (skipped without qemu-user) and the pip wheel's test
#                            (scripts/wheel_test.sh: maturin, pinned, goes into the venv)
#   scripts/test.sh --tf     also install TensorFlow and TensorFlow Datasets into the venv
#                            (scripts/requirements-tf.txt, large), so the real-clients test
#                            reads the tfds format with them; CI runs --full --tf
#
# Needs a Rust toolchain and a C compiler. The real-clients tests also need Python 3.9+ with
# its venv module and PyPI the first time; without them they are skipped, and this says so
# (as it says when the venv has no TensorFlow, whose step is then skipped).
set -euo pipefail
cd "$(dirname "$0")/.."

full=0
tf=()
for arg in "$@"; do
    case "$arg" in
        --full) full=1 ;;
        --tf) tf=(--tf) ;;
        -h | --help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "test.sh: unknown option '$arg' (see --help)" >&2; exit 2 ;;
    esac
done

skipped=()
python=""
for candidate in "${PYTHON:-}" python3.11 python3; do
    if [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 \
        && "$candidate" -c 'import sys, venv; sys.exit(sys.version_info < (3, 9))' 2>/dev/null; then
        python="$candidate"
        break
    fi
done

venv="${VENV:-.venv}"
if [[ -n "$python" ]]; then
    PYTHON="$python" bash scripts/setup_venv.sh "${tf[@]}" "$venv"
    KAOKORE_PYTHON="$(cd "$venv/bin" && pwd)/python"
    export KAOKORE_PYTHON
else
    skipped+=("the real-clients tests: no Python 3.9+ with venv (install python3 and python3-venv, or set PYTHON)")
    if [[ $full -eq 1 ]]; then
        skipped+=("the wheel test (scripts/wheel_test.sh): no Python 3.9+ with venv (install python3 and python3-venv, or set PYTHON)")
    fi
fi

# The layers of the code: no module imports from a higher layer (README, "Code layout").
if command -v python3 >/dev/null 2>&1; then
    python3 scripts/check_layers.py
else
    skipped+=("the layer check: no python3")
fi

# cargo-nextest runs each test in its own process, side by side (about twice as fast
# here); plain cargo test runs the same tests when it is not installed. --workspace takes
# in the fixture server's crate (fixture/) too. The tests build in the release profile:
# they reuse what `cargo build --release` (README's first command) compiled, and the
# binary they drive is the one users run.
# With --full, the same bytes on other CPUs: the reference build run by qemu-x86_64 as
# an SSE2-only and an SSE4.2 CPU (tests/it/reference.rs), where qemu-user is installed.
ignored=()
if [[ $full -eq 1 ]]; then
    # Whole dataset versions, each once: tests named whole_version_*, ignored by default.
    ignored+=(whole_version_)
    # A pack killed before each of its renames in turn, then resumed: kill_sweep_*.
    if command -v strace >/dev/null 2>&1; then
        ignored+=(kill_sweep_)
    else
        skipped+=("the kill sweeps: no strace (Debian: apt-get install strace)")
    fi
    if command -v qemu-x86_64 >/dev/null 2>&1; then
        ignored+=(same_bytes_on_every_cpu_under_qemu)
    else
        skipped+=("the same-bytes-on-every-CPU test: no qemu-x86_64 (Debian: apt-get install qemu-user)")
    fi
fi
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --release --workspace --all-targets
    if [[ ${#ignored[@]} -gt 0 ]]; then
        cargo nextest run --release --workspace --all-targets --run-ignored only "${ignored[@]}"
    fi
else
    cargo test --release --workspace --all-targets
    for name in "${ignored[@]}"; do
        cargo test --release --workspace --all-targets -- --ignored "$name"
    done
fi

if [[ -n "$python" ]]; then
    "$venv/bin/python" scripts/interop_check.py --self-test
    VENV="$venv" bash scripts/interop_test.sh
    if [[ $full -eq 1 ]]; then
        # The pip wheel built from the release target, installed into a fresh venv, and
        # a small build with it: a release check, too slow for the plain command.
        VENV="$venv" bash scripts/wheel_test.sh
    fi
    if ! TF_CPP_MIN_LOG_LEVEL=3 "$venv/bin/python" -c 'import tensorflow, tensorflow_datasets' >/dev/null 2>&1; then
        skipped+=("the TensorFlow step of the real-clients test (tfds read with tfds and tf.data): tensorflow-cpu/tensorflow-datasets not installed (scripts/test.sh --tf installs them)")
    fi
fi

for s in "${skipped[@]}"; do
    echo "test.sh: SKIPPED $s" >&2
done
