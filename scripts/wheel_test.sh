#!/usr/bin/env bash
# The wheel test: build the pip wheel of pyproject.toml (maturin's "bin" bindings: the
# `kaokore` binary, no Python module) from the release target, install it with no index into
# a fresh venv, and check that what pip installed is the cargo build: `kaokore` on the venv's
# PATH, the same bytes as target/release/kaokore, `--version` equal to Cargo.toml's version,
# the metadata (summary, licence, README, the embedded data's notice) equal to Cargo.toml's,
# and a small build of KaoKore 1.0 against the fixture IIIF servers verified by the installed
# binary, with the SHA256SUMS of the same build made by the cargo binary.
#
#   VENV=DIR scripts/wheel_test.sh     (the test venv, default .venv; maturin goes into it)
#
# maturin is pinned in scripts/requirements-wheel.txt. scripts/test.sh runs this with --full
# only: a wheel is a release artifact, and the plain test command does not build one.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=lib/fixture.sh
source scripts/lib/fixture.sh
# shellcheck source=lib/small_metadata.sh
source scripts/lib/small_metadata.sh

venv="${VENV:-.venv}"
fail() { echo "wheel: FAILED: $*" >&2; exit 1; }

pin="$(grep -E '^maturin==' scripts/requirements-wheel.txt)"
if [[ "$("$venv/bin/maturin" --version 2>/dev/null)" != "maturin ${pin#maturin==}" ]]; then
  echo "wheel: installing $pin into $venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r scripts/requirements-wheel.txt
fi

# The release build (README's first command) and the fixture server; the wheel reuses both
# the dependencies and kaokore itself from this target directory.
cargo build --release --quiet --bin kaokore --example iiif_fixture
target="${CARGO_TARGET_DIR:-target}"
cargo_bin="$target/release/kaokore"
# Cargo.toml's version, description and licence, one a line as JSON strings.
mapfile -t package < <(cargo metadata --no-deps --format-version 1 | "$venv/bin/python" -c '
import json, sys
p = next(p for p in json.load(sys.stdin)["packages"] if p["name"] == "kaokore")
for key in ("version", "description", "license"):
    print(json.dumps(p[key]))')
version="$(echo "${package[0]}" | tr -d '"')"
summary="${package[1]}" license="${package[2]}"

work="$(mktemp -d)"
fixture_pid=""
cleanup() {
  [ -n "$fixture_pid" ] && kill "$fixture_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

start=$(date +%s%N)
"$venv/bin/maturin" build --release --out "$work/dist" >"$work/maturin.log" 2>&1 \
  || { cat "$work/maturin.log" >&2; fail "maturin build"; }
ms=$((($(date +%s%N) - start) / 1000000))
wheels=("$work"/dist/*.whl)
[[ ${#wheels[@]} -eq 1 ]] || fail "expected one wheel, got: ${wheels[*]}"
wheel="${wheels[0]}"
[[ "$(basename "$wheel")" == "kaokore-$version-py3-none-"*.whl ]] \
  || fail "wheel name $(basename "$wheel") is not kaokore-$version-py3-none-*"
printf 'wheel: built %s (%s bytes) in %d.%01d s\n' "$(basename "$wheel")" "$(stat -c %s "$wheel")" \
  $((ms / 1000)) $((ms % 1000 / 100))

# A fresh venv and no index: the wheel alone installs kaokore, no Rust toolchain or PyPI.
"$venv/bin/python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index "$wheel"
on_path="$(
  # shellcheck disable=SC1091
  source "$work/venv/bin/activate" && command -v kaokore
)"
[[ "$on_path" == "$work/venv/bin/kaokore" ]] || fail "kaokore on the venv's PATH is '$on_path'"
cmp -s "$on_path" "$cargo_bin" || fail "the installed kaokore differs from $cargo_bin"
[[ "$("$on_path" --version)" == "kaokore $version" ]] \
  || fail "installed kaokore --version says '$("$on_path" --version)', Cargo.toml says $version"

# The metadata pip recorded, against Cargo.toml and README.md.
"$work/venv/bin/python" - "$version" "$summary" "$license" <<'PY' || fail "wheel metadata"
import json, sys
from importlib import metadata
version, summary, license = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
dist = metadata.distribution("kaokore")
md = dist.metadata
problems = []
def expect(what, got, want):
    if got != want:
        problems.append(f"{what}: {got!r}, expected {want!r}")
expect("Version", md["Version"], version)
expect("Summary", md["Summary"], summary)
expect("License", md["License-Expression"] or md["License"], license)
expect("Description-Content-Type", (md["Description-Content-Type"] or "").split(";")[0], "text/markdown")
readme = open("README.md", encoding="utf-8").read()
if md.get_payload().strip() != readme.strip():
    problems.append(f"description: {len(md.get_payload())} characters, not README.md's {len(readme)}")
notice = "data/kaokore-metadata/SOURCE.md"
expect("License-File", md.get_all("License-File"), [notice])
files = {str(f) for f in dist.files}
expect("licence file", f"kaokore-{version}.dist-info/licenses/{notice}" in files, True)
for p in problems:
    print("wheel metadata:", p, file=sys.stderr)
sys.exit(1 if problems else 0)
PY

# A small build with the installed binary, verified by it, then the same build by the cargo
# binary from the same cache: the artifacts must be byte-identical.
start_fixture "$target/release/examples/iiif_fixture" "$work/fixture.out" --hosts 3 --gray-one-in 25
small_metadata data/kaokore-metadata/v1.0 200 "$work/meta"
args=(--dataset-version 1.0 --metadata "$work/meta" --size 64 --cache "$work/cache" --per-host 8
  --quiet --formats idx,npz,parquet "${rewrites[@]}")
"$on_path" build "${args[@]}" --out "$work/out-wheel"
"$on_path" verify --quiet "$work/out-wheel" || fail "the installed kaokore's verify of its own build"
images=$("$work/venv/bin/python" -c '
import json, sys
print(sum(json.load(open(sys.argv[1]))["counts"]["packed"].values()))' "$work/out-wheel/report.json")
labelled=$(($(wc -l <"$work/meta/labels.csv") - 1))
[[ "$images" -eq "$labelled" ]] || fail "packed $images images, labels.csv has $labelled"
"$cargo_bin" build "${args[@]}" --out "$work/out-cargo"
cmp -s "$work/out-wheel/SHA256SUMS" "$work/out-cargo/SHA256SUMS" \
  || fail "SHA256SUMS of the installed kaokore's build and of the cargo binary's differ"
echo "wheel: kaokore $version from the wheel built and verified $images images; SHA256SUMS equal to the cargo binary's"
