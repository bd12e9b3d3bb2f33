#!/usr/bin/env python3
"""The benchmark baseline: pack KaoKore the way a Python user would.

    python scripts/baseline_pack.py --metadata DIR --images DIR --out DIR
                                    [--size 256] [--formats idx,npz,parquet] [--gzip-level 6]

--metadata  an upstream-layout directory (labels.csv, urls.txt, original_tags.txt,
            labels.metadata.*.txt), e.g. data/kaokore-metadata/v1.3
--images    downloaded images named NNNNNNNN.jpg (upstream download.py layout, also
            what `kaokore build --formats images` writes); ids without a file are skipped

Per split, in labels.csv order: Pillow opens each image, converts to RGB and
resizes to S x S with LANCZOS when needed; the rows are collected in a list and
stacked into one numpy array (the ordinary, memory-hungry way). Then:
  idx      gzip.open(...).write(header + array.tobytes())
  npz      np.savez_compressed (images as arr_0; gender, status, image_id)
  parquet  pyarrow, about 100-row groups, zstd for the label/metadata columns,
           image bytes uncompressed: the original file when it is an S x S RGB
           JPEG, otherwise the normalized pixels as PNG
and SHA256SUMS over what was written. The output layout and schemas are those of
a kaokore build (README, "What you get"), so `scripts/interop_check.py` can read it (the dataset card is a stub).

It exists to be measured against `kaokore pack` (scripts/bench_pack.sh). It is
written plainly, neither tuned nor deliberately slow.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import re
import shutil
import struct
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SPLITS = ("train", "dev", "test")
GENDER = ["male", "female"]
STATUS = ["noble", "warrior", "incarnation", "commoner"]
ATTRIBUTION = '"KaoKore Dataset" (collected by CODH from multiple organizations), doi:10.20676/00000353'
PROVIDERS = {
    "codh.rois.ac.jp": "Dataset of Pre-Modern Japanese Text (National Institute of Japanese Literature and ROIS-DS Center for Open Data in the Humanities)",
    "iiif.lib.keio.ac.jp": "Digital Collection of Keio University Libraries (Keio University Media Center)",
    "rmda.kulib.kyoto-u.ac.jp": "Kyoto University Rare Materials Digital Archive (Kyoto University Library Network)",
}
HF_FEATURES = {
    "image": {"_type": "Image"},
    "image_id": {"dtype": "int32", "_type": "Value"},
    "gender": {"names": GENDER, "_type": "ClassLabel"},
    "status": {"names": STATUS, "_type": "ClassLabel"},
    **{c: {"dtype": "string", "_type": "Value"} for c in ("url", "provider", "source_title", "source_id", "orientation", "era", "holder")},
    "year_from": {"dtype": "int32", "_type": "Value"},
    "year_to": {"dtype": "int32", "_type": "Value"},
    "tags": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
    "original_tags": {"dtype": "string", "_type": "Value"},
}
SCHEMA = pa.schema(
    [
        ("image", pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        ("image_id", pa.int32()),
        ("gender", pa.int64()),
        ("status", pa.int64()),
        ("url", pa.string()),
        ("provider", pa.string()),
        ("source_title", pa.string()),
        ("source_id", pa.string()),
        ("orientation", pa.string()),
        ("era", pa.string()),
        ("holder", pa.string()),
        ("year_from", pa.int32()),
        ("year_to", pa.int32()),
        ("tags", pa.list_(pa.string())),
        ("original_tags", pa.string()),
    ]
)


def parse_tags(rest: str) -> dict:
    d = {"source_title": None, "source_id": None, "orientation": None, "era": None, "holder": None,
         "year_from": None, "year_to": None, "tags": [], "original_tags": rest}
    era = []
    for entry in rest.split(";"):
        key, sep, value = entry.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or not key or not value:
            continue
        if key == "原典":
            d["source_title"] = value
        elif key == "向き":
            d["orientation"] = value
        elif key == "所蔵":
            d["holder"] = value
        elif key == "タグ":
            d["tags"].append(value)
        elif key == "制作年":
            m = re.fullmatch(r"(from|to)\s*(-?\d+)", value)
            if m:
                d["year_from" if m.group(1) == "from" else "year_to"] = int(m.group(2))
            elif value not in era:
                era.append(value)
        elif key in ("原典ID", "DOI") or key.endswith("請求記号") or key.endswith("レコードID"):
            if d["source_id"] is None:
                d["source_id"] = value
    d["era"] = "; ".join(era) or None
    return d


def load_image(path: Path, S: int):
    """-> (pixels (S,S,3) uint8, bytes for Parquet, name suffix)"""
    data = path.read_bytes()
    im = Image.open(io.BytesIO(data))
    as_is = im.format == "JPEG" and im.mode == "RGB" and im.size == (S, S)
    im = im.convert("RGB")
    if im.size != (S, S):
        im = im.resize((S, S), Image.LANCZOS)
    px = np.asarray(im)
    if as_is:
        return px, data, ".jpg"
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return px, buf.getvalue(), ".png"


def write_idx(path: Path, arr: np.ndarray, level: int) -> None:
    header = struct.pack(">I", 0x800 + arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    with gzip.open(path, "wb", compresslevel=level) as f:
        f.write(header)
        f.write(arr.tobytes())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--metadata", type=Path, required=True)
    ap.add_argument("--images", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--formats", default="idx,npz,parquet")
    ap.add_argument("--gzip-level", type=int, default=6, help="idx gzip level (Python's own default is 9; 6 matches zlib's default)")
    ap.add_argument("--dataset-version", default=None, help="recorded in the Parquet `kaokore` metadata")
    args = ap.parse_args(argv)
    S = args.size
    formats = set(args.formats.split(","))
    t0 = time.monotonic()

    urls = (args.metadata / "urls.txt").read_text(encoding="utf-8").splitlines()
    tags = {}
    for line in (args.metadata / "original_tags.txt").read_text(encoding="utf-8").splitlines():
        name, sep, rest = line.partition(":")
        if sep and name.strip().endswith(".jpg"):
            tags[int(name.strip()[:-4])] = rest
    rows = {s: [] for s in SPLITS}
    with open(args.metadata / "labels.csv", newline="", encoding="utf-8") as f:
        for r in csv.DictReader(f):
            rows[r["set"]].append((int(r["image"].split(".")[0]), int(r["gender"]), int(r["status"])))

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    for d in ("idx", "npz", "parquet"):
        if d in formats:
            (out / d).mkdir(exist_ok=True)
    for name in ("labels.csv", "original_tags.txt", "labels.metadata.en.txt", "labels.metadata.ja.txt"):
        if (args.metadata / name).exists():
            shutil.copyfile(args.metadata / name, out / name)

    hf_meta = json.dumps({"info": {"features": HF_FEATURES}})
    kk_meta = json.dumps({"dataset_version": args.dataset_version, "doi": "10.20676/00000353",
                          "license": "CC BY-SA 4.0", "attribution": ATTRIBUTION, "size": S})
    missing = []
    packed = {}
    for split in SPLITS:
        pixels, stored, ids, gender, status = [], [], [], [], []
        for iid, g, s in rows[split]:
            p = args.images / f"{iid:08d}.jpg"
            if not p.exists():
                missing.append(iid)
                continue
            px, data, suffix = load_image(p, S)
            pixels.append(px)
            stored.append({"bytes": data, "path": f"{iid:08d}{suffix}"})
            ids.append(iid)
            gender.append(g)
            status.append(s)
        if not ids:
            continue
        images = np.stack(pixels)
        del pixels
        gender_a = np.array(gender, np.uint8)
        status_a = np.array(status, np.uint8)
        ids_a = np.array(ids, np.int32)
        packed[split] = len(ids)

        if "idx" in formats:
            write_idx(out / f"idx/kaokore-{split}-images-idx4-ubyte.gz", images, args.gzip_level)
            write_idx(out / f"idx/kaokore-{split}-gender-idx1-ubyte.gz", gender_a, args.gzip_level)
            write_idx(out / f"idx/kaokore-{split}-status-idx1-ubyte.gz", status_a, args.gzip_level)
        if "npz" in formats:
            np.savez_compressed(out / f"npz/kaokore-{split}-imgs.npz", images)
            np.savez_compressed(out / f"npz/kaokore-{split}-labels.npz", gender=gender_a, status=status_a, image_id=ids_a)
        if "parquet" in formats:
            cols = {"image": stored, "image_id": ids, "gender": gender, "status": status,
                    "url": [urls[i] if i < len(urls) else None for i in ids]}
            cols["provider"] = [PROVIDERS.get((urlsplit(u).hostname or "").lower()) if u else None for u in cols["url"]]
            parsed = [parse_tags(tags.get(i, "")) for i in ids]
            for c in ("source_title", "source_id", "orientation", "era", "holder", "year_from", "year_to", "tags", "original_tags"):
                cols[c] = [d[c] for d in parsed]
            table = pa.Table.from_pydict(cols, schema=SCHEMA.with_metadata({"huggingface": hf_meta, "kaokore": kk_meta}))
            # per-column options take leaf paths (tags.list.element or .item, by pyarrow version)
            probe = io.BytesIO()
            pq.write_table(table.slice(0, 0), probe)
            leaves = [c.path for c in pq.ParquetFile(io.BytesIO(probe.getvalue())).metadata.schema if c.path != "image.bytes"]
            pq.write_table(
                table, out / f"parquet/{split}-00000-of-00001.parquet", row_group_size=100,
                compression={**{c: "zstd" for c in leaves}, "image.bytes": "none"},
                use_dictionary=leaves,
            )
            del table, cols
        del images, stored

    counts = ", ".join(f"{k}: {v}" for k, v in packed.items())
    (out / "README.md").write_text(
        f"# KaoKore {args.dataset_version or ''} ({S} x {S} RGB, packed by the Python baseline)\n\n"
        f"Images per split: {counts}.\n\n{ATTRIBUTION}\n\nLicense: CC BY-SA 4.0\n", encoding="utf-8")
    (out / "CONTENT_PROVIDERS.txt").write_text("".join(f"{v}\n" for v in PROVIDERS.values()), encoding="utf-8")

    listed = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                    if p.is_file() and p.name not in ("SHA256SUMS", "report.json"))
    with open(out / "SHA256SUMS", "w") as f:
        for rel in listed:
            h = hashlib.sha256()
            with open(out / rel, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            f.write(f"{h.hexdigest()}  {rel}\n")
    report = {"dataset_version": args.dataset_version, "size": S, "packed": packed,
              "failures": [{"image_id": i, "reason": "no image file"} for i in missing],
              "seconds": round(time.monotonic() - t0, 3)}
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"baseline_pack: packed {packed}, {len(missing)} missing, {report['seconds']} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
