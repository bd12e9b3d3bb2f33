#!/usr/bin/env bash
# Create (or reuse) a Python virtualenv with the pinned clients from
# scripts/requirements.txt.
#
#   scripts/setup_venv.sh [VENV_DIR]     (default: .venv at the repository root)
#
# Idempotent: the sha256 of requirements.txt is stored in the venv after a
# successful install; when it matches and the interpreter still works, nothing
# is installed again. Set PYTHON to choose the interpreter (default: python3.11
# if present, else python3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
req="$here/requirements.txt"
venv="${1:-$root/.venv}"

if [[ -z "${PYTHON:-}" ]]; then
    if command -v python3.11 >/dev/null 2>&1; then PYTHON=python3.11; else PYTHON=python3; fi
fi

want="$(sha256sum "$req" | cut -d' ' -f1)"
stamp="$venv/.requirements.sha256"

if [[ -x "$venv/bin/python" ]] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1 \
    && [[ -f "$stamp" ]] && [[ "$(cat "$stamp")" == "$want" ]]; then
    echo "setup_venv: $venv is up to date"
    exit 0
fi

if [[ ! -x "$venv/bin/python" ]] || ! "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
    echo "setup_venv: creating $venv with $("$PYTHON" --version 2>&1)"
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
fi

echo "setup_venv: installing $(grep -cvE '^\s*(#|$)' "$req") pinned packages into $venv"
rm -f "$stamp"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade pip
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
echo "setup_venv: done"
