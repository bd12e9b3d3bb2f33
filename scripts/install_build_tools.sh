#!/usr/bin/env bash
# Tools the opt-in `isal` feature needs to build ISA-L from source: nasm, autoconf,
# automake, libtool and make. Installs the missing ones with apt-get (Debian/Ubuntu; as
# root, or through sudo); does nothing when all are there. CI runs it; the default build and
# scripts/test.sh need none of these. Elsewhere, install them with the system's package
# manager.
set -euo pipefail

missing=()
for tool in nasm autoconf automake libtoolize make; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
echo "install_build_tools: missing ${missing[*]}; installing nasm autoconf automake libtool make" >&2
sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || {
        echo "install_build_tools: not root and no sudo: install nasm autoconf automake libtool make" >&2
        exit 1
    }
    sudo=(sudo)
fi
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nasm autoconf automake libtool make >/dev/null
