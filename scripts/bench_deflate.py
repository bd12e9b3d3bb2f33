#!/usr/bin/env python3
"""C deflate backends on kaokore's pixel segments, for comparison with the Rust ones.

    python scripts/bench_deflate.py OUT/npz/kaokore-train-imgs.npz [--rows 300]

Each image's pixel rows are deflated on one thread as kaokore needs them: an independent,
byte-aligned, non-final raw-deflate segment (a full flush, no final block), so that the
segments of many images concatenate into one stream. Prints MB/s of input and the output
ratio per backend and level, to set beside the Rust backends measured on the same npz:

    KAOKORE_BENCH_NPZ=OUT/npz/kaokore-train-imgs.npz \\
        cargo test --release --test it -- --ignored --nocapture deflate_level_bench

Backends: zlib (C; CPython's zlib module, one call per image, so the interpreter's share is
negligible) and, when the `deflate` package (libdeflate bindings) is installed, libdeflate,
which compresses whole streams only: it always ends with a final block and does not say
where its last block starts, so it cannot make these segments; it is shown as the bound a
whole-stream C compressor reaches.
"""

from __future__ import annotations

import argparse
import time
import zlib

import numpy as np


def measure(name: str, rows: list[bytes], deflate) -> None:
    raw = sum(len(r) for r in rows)
    start = time.perf_counter()
    packed = sum(len(deflate(r)) for r in rows)
    secs = time.perf_counter() - start
    print(f"{name}: {raw / secs / 1e6:.1f} MB/s, ratio {packed / raw:.3f}")


def zlib_segment(level: int):
    def run(row: bytes) -> bytes:
        z = zlib.compressobj(level, zlib.DEFLATED, -15)
        return z.compress(row) + z.flush(zlib.Z_FULL_FLUSH)

    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz", help="an images npz of a kaokore build (key arr_0)")
    ap.add_argument("--rows", type=int, default=300, help="images to deflate (default 300)")
    args = ap.parse_args()
    images = np.load(args.npz)["arr_0"]
    rows = [images[i].tobytes() for i in range(min(args.rows, images.shape[0]))]
    print(f"{len(rows)} images of {images.shape[1]} x {images.shape[2]} x 3, one thread")
    for level in (1, 2, 6):
        measure(f"zlib {zlib.ZLIB_RUNTIME_VERSION} level {level} (segments)", rows, zlib_segment(level))
    try:
        import deflate  # libdeflate
    except ImportError:
        print("libdeflate: not installed (pip install deflate), skipped")
        return
    for level in (1, 6):
        measure(f"libdeflate level {level} (whole streams only)", rows,
                lambda r, level=level: deflate.deflate_compress(r, level))


if __name__ == "__main__":
    main()
