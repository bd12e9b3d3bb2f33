#!/usr/bin/env bash
# Create (or reuse) a Python virtualenv with the pinned clients from
# scripts/requirements.txt, and with --tf also those of scripts/requirements-tf.txt
# (TensorFlow and TensorFlow Datasets, for the `tfds` format's checks: large, so opt-in).
#
#   scripts/setup_venv.sh [--tf] [VENV_DIR]     (default: .venv at the repository root)
#
# Idempotent: the sha256 of each requirements file is stored in the venv after a
# successful install; when it matches and the interpreter still works, nothing is
# installed again (a venv set up with --tf stays so when later reused without it). Set
# PYTHON to choose the interpreter (default: python3.11 if present, else python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
tf=0
venv=""
for arg in "$@"; do
    case "$arg" in
        --tf) tf=1 ;;
        -*) echo "setup_venv: unknown option '$arg'" >&2; exit 2 ;;
        *) venv="$arg" ;;
    esac
done
venv="${venv:-$root/.venv}"

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

# Each requirements file with the stamp that records its installed hash.
sets=("$here/requirements.txt:$venv/.requirements.sha256")
if [[ $tf -eq 1 ]]; then
    sets+=("$here/requirements-tf.txt:$venv/.requirements-tf.sha256")
fi

works() { [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; }

stale=0
for s in "${sets[@]}"; do
    req="${s%%:*}" stamp="${s#*:}"
    if ! works || [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$(sha256sum "$req" | cut -d' ' -f1)" ]]; then
        stale=1
    fi
done
if [[ $stale -eq 0 ]]; then
    echo "setup_venv: $venv is up to date"
    exit 0
fi

if ! works; then
    echo "setup_venv: creating $venv with $("$PYTHON" --version 2>&1)"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
fi

# Every chosen file in one resolve, so that pip keeps them compatible with each other.
args=()
count=0
for s in "${sets[@]}"; do
    req="${s%%:*}"
    args+=(-r "$req")
    count=$((count + $(grep -cvE '^\s*(#|$)' "$req")))
    rm -f "${s#*:}"
done
echo "setup_venv: installing $count pinned packages into $venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${args[@]}"
for s in "${sets[@]}"; do
    sha256sum "${s%%:*}" | cut -d' ' -f1 > "${s#*:}"
done
echo "setup_venv: done"
