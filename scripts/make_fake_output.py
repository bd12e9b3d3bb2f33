#!/usr/bin/env python3
"""Write a small fake `kaokore build` output directory laid out as README.md describes under "What you get".

    python scripts/make_fake_output.py OUT_DIR [--size 32] [--train 130] [--dev 7] [--test 6]
                                               [--corrupt KIND]

It exists to develop and test scripts/interop_check.py without the Rust packer:
three splits, S x S RGB images (some rows stored in Parquet as the original
JPEG, some as PNG), gzip idx, npz, Parquet with the contract's schema and the
`huggingface` / `kaokore` file metadata, SHA256SUMS, README.md (with the Hub's
YAML header), croissant.json,
CONTENT_PROVIDERS.txt, the copied metadata files and report.json. A few
labelled images are "failed" (listed in report.json and absent from the
artifacts) and a few images are unlabelled.

--corrupt writes a deliberately wrong but self-consistent directory (SHA256SUMS
still matches) so that a specific interop check must fail:
  pixel          one pixel of the npz images of `train` differs from idx/Parquet
  swap-labels    two rows of `train` have their gender swapped in every artifact,
                 so the artifacts no longer match labels.csv
  no-hf-metadata the Parquet files carry no `huggingface` key
  order          two rows of `dev` are swapped in every artifact
  unlisted-missing  a labelled image is skipped but not listed in report.json
  hub-class-names   the card's YAML header gives the gender class names reversed
  croissant-sha     croissant.json gives labels.csv a wrong sha256

    python scripts/make_fake_output.py --images-for METADATA_DIR IMAGES_DIR [--size 256]

instead writes fake downloaded images NNNNNNNN.jpg (the upstream download.py
layout) for every labelled image of an upstream-layout metadata directory, for
scripts/baseline_pack.py and scripts/bench_pack.sh: mostly S x S RGB JPEGs, with
some non-square, some grayscale and some of another size, as the real servers
give; ids whose urls.txt line is blank get no file.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import os
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

SPLITS = ("train", "dev", "test")
GENDER = ["male", "female"]
STATUS = ["noble", "warrior", "incarnation", "commoner"]
ATTRIBUTION = '"KaoKore Dataset" (collected by CODH from multiple organizations), doi:10.20676/00000353'
DOI = "10.20676/00000353"
LICENSE = "CC BY-SA 4.0"
ROW_GROUP = 100

# The `datasets` features JSON in the Parquet footer (`huggingface` key), as the
# Rust packer writes it. `datasets` 5.x itself writes `"_type": "List"` for the
# list column; `"_type": "Sequence"` loads as the same List(Value("string")) in
# datasets 5.x and is also understood by datasets < 4, which has no "List".
HF_FEATURES = {
    "image": {"_type": "Image"},
    "image_id": {"dtype": "int32", "_type": "Value"},
    "gender": {"names": GENDER, "_type": "ClassLabel"},
    "status": {"names": STATUS, "_type": "ClassLabel"},
    "url": {"dtype": "string", "_type": "Value"},
    "provider": {"dtype": "string", "_type": "Value"},
    "source_title": {"dtype": "string", "_type": "Value"},
    "source_id": {"dtype": "string", "_type": "Value"},
    "orientation": {"dtype": "string", "_type": "Value"},
    "era": {"dtype": "string", "_type": "Value"},
    "holder": {"dtype": "string", "_type": "Value"},
    "year_from": {"dtype": "int32", "_type": "Value"},
    "year_to": {"dtype": "int32", "_type": "Value"},
    "tags": {"feature": {"dtype": "string", "_type": "Value"}, "_type": "Sequence"},
    "original_tags": {"dtype": "string", "_type": "Value"},
}

SCHEMA = pa.schema(
    [
        pa.field("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
        pa.field("image_id", pa.int32()),
        pa.field("gender", pa.int64()),
        pa.field("status", pa.int64()),
        pa.field("url", pa.string()),
        pa.field("provider", pa.string()),
        pa.field("source_title", pa.string()),
        pa.field("source_id", pa.string()),
        pa.field("orientation", pa.string()),
        pa.field("era", pa.string()),
        pa.field("holder", pa.string()),
        pa.field("year_from", pa.int32()),
        pa.field("year_to", pa.int32()),
        pa.field("tags", pa.list_(pa.string())),
        pa.field("original_tags", pa.string()),
    ]
)

PROVIDERS = [
    ("Kyoto University Library", "京都大学", "病草子", "京都大学貴重資料デジタルアーカイブレコードID"),
    ("National Institute of Japanese Literature", "国文学研究資料館", "酒飯論絵巻", "DOI"),
    ("Keio University Library", "慶應義塾図書館", "をこぜ", "原典ID"),
]
ORIENTATIONS = ["正面", "四分の三", "横"]


def fake_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth gradient plus noise: compresses like a picture, not like noise."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    base = rng.uniform(0, 255, 3).astype(np.float32)
    slope = rng.uniform(-3, 3, (2, 3)).astype(np.float32) * (64.0 / size)
    img = base + x[..., None] * slope[0] + y[..., None] * slope[1]
    img += rng.normal(0, 6, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def idx_bytes(arr: np.ndarray) -> bytes:
    code = 0x08  # unsigned byte
    header = struct.pack(">BBBB", 0, 0, code, arr.ndim) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + np.ascontiguousarray(arr, dtype=np.uint8).tobytes()


def write_gz(path: Path, data: bytes) -> None:
    # mtime=0 keeps the file deterministic
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(data)


def write_fake_images(metadata: Path, out: Path, S: int, seed: int) -> int:
    import csv

    rng = np.random.default_rng(seed)
    urls = (metadata / "urls.txt").read_text(encoding="utf-8").splitlines()
    out.mkdir(parents=True, exist_ok=True)
    n = 0
    with open(metadata / "labels.csv", newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            i = int(row["image"].split(".")[0])
            if i >= len(urls) or not urls[i].strip():
                continue
            px = fake_image(rng, S)
            im = Image.fromarray(px)
            kind = i % 20
            if kind == 0:  # clipped at the page edge: not square
                im = im.resize((S, max(1, S * 3 // 4)))
            elif kind == 1:  # grayscale
                im = im.convert("L")
            elif kind == 2:  # another size request (e.g. !200,200)
                im = im.resize((S * 200 // 256, S * 200 // 256))
            im.save(out / f"{i:08d}.jpg", format="JPEG", quality=90)
            n += 1
    return n


PARQUET_COLUMNS = [
    ("image", "image"), ("image_id", "int32"), ("gender", None), ("status", None),
    ("url", "string"), ("provider", "string"), ("source_title", "string"), ("source_id", "string"),
    ("orientation", "string"), ("era", "string"), ("holder", "string"),
    ("year_from", "int32"), ("year_to", "int32"), ("tags", "list"), ("original_tags", "string"),
]


def front_matter(S: int, rows: int, reverse_gender: bool) -> list[str]:
    """The card's YAML header, as the Rust packer writes it (dev is `validation`)."""
    lines = ["---", f'pretty_name: "KaoKore 1.3 ({S}x{S})"', "license: cc-by-sa-4.0",
             "task_categories:", "- image-classification", "size_categories:",
             "- n<1K" if rows < 1000 else "- 1K<n<10K",
             "configs:", "- config_name: default", "  default: true", "  data_files:"]
    for split, name in (("train", "train"), ("dev", "validation"), ("test", "test")):
        lines += [f"  - split: {name}", f'    path: "parquet/{split}-*.parquet"']
    lines += ["dataset_info:", "  config_name: default", "  features:"]
    classes = {"gender": GENDER[::-1] if reverse_gender else GENDER, "status": STATUS}
    for name, dtype in PARQUET_COLUMNS:
        lines.append(f"  - name: {name}")
        if name in classes:
            lines += ["    dtype:", "      class_label:", "        names:"]
            lines += [f"          '{i}': {json.dumps(c)}" for i, c in enumerate(classes[name])]
        elif dtype == "list":
            lines.append("    sequence: string")
        else:
            lines.append(f"    dtype: {dtype}")
    return lines + ["---", ""]


def write_croissant(out: Path, S: int, artifacts: list[str], packed: dict, wrong_sha: str | None) -> None:
    """croissant.json as the Rust packer writes it (the structure its checks rely on)."""
    mime = {"parquet": "application/x-parquet", "gz": "application/gzip", "npz": "application/zip",
            "csv": "text/csv", "md": "text/markdown", "txt": "text/plain", "jpg": "image/jpeg"}
    context = {"@language": "en", "@vocab": "https://schema.org/", "cr": "http://mlcommons.org/croissant/",
               "rai": "http://mlcommons.org/croissant/RAI/", "dct": "http://purl.org/dc/terms/",
               "sc": "https://schema.org/", "conformsTo": "dct:conformsTo",
               "data": {"@id": "cr:data", "@type": "@json"}, "dataType": {"@id": "cr:dataType", "@type": "@vocab"},
               "examples": {"@id": "cr:examples", "@type": "@json"}}
    for term in ("arrayShape citeAs column containedIn equivalentProperty extract field fileObject fileProperty "
                 "fileSet format includes isArray isLiveDataset jsonPath key md5 parentField path recordSet "
                 "references regex repeated replace samplingRate separator source subField transform").split():
        context[term] = f"cr:{term}"
    dist = []
    for rel in artifacts:
        if rel.startswith("images_"):
            continue
        sha = hashlib.sha256((out / rel).read_bytes()).hexdigest()
        dist.append({"@type": "cr:FileObject", "@id": rel, "name": rel, "contentUrl": rel,
                     "contentSize": f"{(out / rel).stat().st_size} B",
                     "encodingFormat": mime.get(rel.rsplit(".", 1)[-1], "application/octet-stream"),
                     "sha256": "0" * 64 if rel == wrong_sha else sha})
    dist.append({"@type": "cr:FileSet", "@id": "parquet-files", "name": "parquet-files",
                 "encodingFormat": "application/x-parquet", "includes": "parquet/*.parquet"})

    def field(rs, name, dtype, source=None, ref=None, **extra):
        f = {"@type": "cr:Field", "@id": f"{rs}/{name}", "name": f"{rs}/{name}", "dataType": dtype}
        if source:
            f["source"] = source
        if ref:
            f["references"] = {"field": {"@id": ref}}
        return {**f, **extra}

    def enum(rs, names):
        return {"@type": "cr:RecordSet", "@id": rs, "name": rs, "dataType": "sc:Enumeration",
                "key": {"@id": f"{rs}/index"},
                "field": [field(rs, "index", "sc:Integer"), field(rs, "name", "sc:Text")],
                "data": [{f"{rs}/index": i, f"{rs}/name": n} for i, n in enumerate(names)]}

    csv_col = lambda c: {"fileObject": {"@id": "labels.csv"}, "extract": {"column": c}}  # noqa: E731
    pq_col = lambda c: {"fileSet": {"@id": "parquet-files"}, "extract": {"column": c}}  # noqa: E731
    split_urls = {"train": "cr:TrainingSplit", "dev": "cr:ValidationSplit", "test": "cr:TestSplit"}
    images = [
        field("images", "image", "sc:ImageObject", {**pq_col("image"), "transform": {"jsonPath": "bytes"}}),
        field("images", "image_id", "sc:Integer", pq_col("image_id")),
        field("images", "gender", "sc:Integer", pq_col("gender"), "gender/index"),
        field("images", "status", "sc:Integer", pq_col("status"), "status/index"),
        field("images", "split", "sc:Text", {"fileSet": {"@id": "parquet-files"}, "extract": {"fileProperty": "filename"},
                                              "transform": {"regex": r"^(train|dev|test)-\d+-of-\d+\.parquet$"}}, "splits/name"),
    ]
    doc = {
        "@context": context, "@type": "sc:Dataset", "conformsTo": "http://mlcommons.org/croissant/1.1",
        "name": f"KaoKore 1.3 ({S}x{S})", "description": f"Fake test output. {ATTRIBUTION}", "version": "1.3",
        "license": "https://creativecommons.org/licenses/by-sa/4.0/", "url": f"https://doi.org/{DOI}",
        "citeAs": f"@misc{{kaokore_dataset, doi = {{{DOI}}}}}",
        "creator": [{"@type": "sc:Organization", "name": "ROIS-DS Center for Open Data in the Humanities (CODH)"}],
        "distribution": dist,
        "recordSet": [
            {"@type": "cr:RecordSet", "@id": "splits", "name": "splits", "dataType": "cr:Split",
             "key": {"@id": "splits/name"},
             "field": [field("splits", "name", "sc:Text"), field("splits", "url", "sc:URL"), field("splits", "images", "sc:Integer")],
             "data": [{"splits/name": s, "splits/url": split_urls[s], "splits/images": packed[s]} for s in SPLITS]},
            enum("gender", GENDER), enum("status", STATUS),
            {"@type": "cr:RecordSet", "@id": "labels", "name": "labels", "key": {"@id": "labels/image"}, "field": [
                field("labels", "image", "sc:Text", csv_col("image")),
                field("labels", "gender", "sc:Integer", csv_col("gender"), "gender/index"),
                field("labels", "status", "sc:Integer", csv_col("status"), "status/index"),
                field("labels", "split", "sc:Text", csv_col("set"), "splits/name"),
            ]},
            {"@type": "cr:RecordSet", "@id": "images", "name": "images", "key": {"@id": "images/image_id"}, "field": images},
        ],
    }
    (out / "croissant.json").write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv and argv[0] == "--images-for":
        ap = argparse.ArgumentParser(prog="make_fake_output.py --images-for")
        ap.add_argument("metadata", type=Path)
        ap.add_argument("images", type=Path)
        ap.add_argument("--size", type=int, default=256)
        ap.add_argument("--seed", type=int, default=1)
        a = ap.parse_args(argv[1:])
        n = write_fake_images(a.metadata, a.images, a.size, a.seed)
        print(f"wrote {n} images to {a.images}", file=sys.stderr)
        return 0
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--train", type=int, default=130, help="labelled train rows (before failures)")
    ap.add_argument("--dev", type=int, default=7)
    ap.add_argument("--test", type=int, default=6)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--with-images", action="store_true", help="also write images_S/ (as --formats images)")
    ap.add_argument(
        "--corrupt",
        choices=["pixel", "swap-labels", "no-hf-metadata", "order", "unlisted-missing", "hub-class-names", "croissant-sha"],
        help="write a deliberately inconsistent directory (see module doc)",
    )
    args = ap.parse_args(argv)
    S = args.size
    rng = np.random.default_rng(args.seed)
    out: Path = args.out
    if out.exists():
        shutil.rmtree(out)
    for d in ("idx", "npz", "parquet"):
        (out / d).mkdir(parents=True)

    counts = {"train": args.train, "dev": args.dev, "test": args.test}
    total_labelled = sum(counts.values())
    n_urls = total_labelled + 5  # a few unlabelled images
    blank_lines = {3}  # a blank urls.txt line keeps its number

    # ids in a shuffled order, as in the real labels.csv
    ids = [i for i in range(n_urls) if i not in blank_lines]
    rng.shuffle(ids)
    labelled = ids[:total_labelled]
    split_of = []
    for sp in SPLITS:
        split_of += [sp] * counts[sp]
    rows = []  # labels.csv rows in file order: (id, gender, status, split)
    for i, sp in zip(labelled, split_of):
        rows.append((i, int(rng.integers(0, 2)), int(rng.integers(0, 4)), sp))
    # interleave the splits a little, as a real csv might
    order = rng.permutation(len(rows))
    rows = [rows[k] for k in sorted(order[: len(rows) // 2])] + [rows[k] for k in sorted(order[len(rows) // 2 :])]

    urls = []
    for i in range(n_urls):
        if i in blank_lines:
            urls.append("")
        else:
            urls.append(f"https://iiif.example.org/iiif/W{i % 7:04d}/{i * 13 % 900},{i * 7 % 900},120,120/{S},{S}/0/default.jpg")

    tags_lines = []
    tag_info = {}
    for i in range(n_urls):
        prov_en, holder, title, id_key = PROVIDERS[i % len(PROVIDERS)]
        orient = ORIENTATIONS[i % 3]
        yf = None if i % 4 == 0 else 1200 + (i % 300)
        yt = None if yf is None or i % 3 == 0 else yf + 50
        era_parts = []
        if yf is not None:
            era_parts.append(f"from {yf}")
        if yt is not None:
            era_parts.append(f"to {yt}")
        tags = [] if i % 5 == 0 else [f"人物{i % 11}"] + (["扇"] if i % 2 else [])
        tag_field = ";".join(f"タグ={t}" for t in tags) if tags else "タグ="
        line = (
            f"{tag_field};{id_key}=R{i:06d};制作年={' '.join(era_parts)};原典={title};"
            f"向き={orient};性別=;所蔵={holder};身分="
        )
        tags_lines.append(f"{i:08d}.jpg:{line}")
        tag_info[i] = dict(
            provider=prov_en,
            source_title=title,
            source_id=f"R{i:06d}",
            orientation=orient,
            era=" ".join(era_parts),
            holder=holder,
            year_from=yf,
            year_to=yt,
            tags=tags,
            original_tags=line,
        )

    # some labelled images "failed to fetch"
    failed = {}
    for sp in SPLITS:
        sp_ids = [r[0] for r in rows if r[3] == sp]
        if len(sp_ids) > 3:
            failed[sp_ids[1]] = "HTTP 404 Not Found"
    unlisted = None
    if args.corrupt == "unlisted-missing":
        unlisted = [r[0] for r in rows if r[3] == "test"][2]

    # metadata copies
    (out / "labels.csv").write_text(
        "image,gender,status,set\n" + "".join(f"{i:08d}.jpg,{g},{s},{sp}\n" for i, g, s, sp in rows)
    )
    (out / "original_tags.txt").write_text("\n".join(tags_lines) + "\n")
    (out / "labels.metadata.en.txt").write_text(
        "gender\tstatus\n2\t4\n\ngender\n" + "".join(f"\t{k}\t{n}\n" for k, n in enumerate(GENDER))
        + "\nstatus\n" + "".join(f"\t{k}\t{n}\n" for k, n in enumerate(STATUS))
    )
    (out / "labels.metadata.ja.txt").write_text(
        "性別\t身分\n2\t4\n\n性別\n\t0\t男\n\t1\t女\n\n身分\n\t0\t貴族\n\t1\t武士\n\t2\t化身\n\t3\t庶民\n"
    )
    (out / "CONTENT_PROVIDERS.txt").write_text("".join(f"{p[0]} ({p[1]})\n" for p in PROVIDERS))

    hf_meta = json.dumps({"info": {"features": HF_FEATURES}})
    kk_meta = json.dumps(
        {"dataset_version": "1.3", "doi": DOI, "license": LICENSE, "attribution": ATTRIBUTION, "size": S}
    )
    packed_counts = {}
    for sp in SPLITS:
        sp_rows = [r for r in rows if r[3] == sp and r[0] not in failed and r[0] != unlisted]
        n = len(sp_rows)
        packed_counts[sp] = n
        imgs = np.empty((n, S, S, 3), np.uint8)
        stored = []  # (bytes, path)
        for k, (i, _g, _s, _sp) in enumerate(sp_rows):
            px = fake_image(rng, S)
            if i % 3 == 0:  # an S x S RGB JPEG from the server: stored unchanged
                buf = io.BytesIO()
                Image.fromarray(px).save(buf, format="JPEG", quality=90)
                data = buf.getvalue()
                imgs[k] = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
                stored.append((data, f"{i:08d}.jpg"))
            else:  # normalized pixels: lossless PNG
                imgs[k] = px
                buf = io.BytesIO()
                Image.fromarray(px).save(buf, format="PNG")
                stored.append((buf.getvalue(), f"{i:08d}.png"))
        gender = np.array([r[1] for r in sp_rows], np.uint8)
        status = np.array([r[2] for r in sp_rows], np.uint8)
        image_id = np.array([r[0] for r in sp_rows], np.int32)

        if args.corrupt == "swap-labels" and sp == "train":
            a, b = next((a, b) for a in range(n) for b in range(a + 1, n) if gender[a] != gender[b])
            gender[a], gender[b] = gender[b], gender[a]
        if args.corrupt == "order" and sp == "dev":
            perm = np.arange(n)
            perm[[1, 2]] = perm[[2, 1]]
            imgs, gender, status, image_id = imgs[perm], gender[perm], status[perm], image_id[perm]
            stored = [stored[k] for k in perm]
            sp_rows = [sp_rows[k] for k in perm]

        if args.with_images:
            (out / f"images_{S}").mkdir(exist_ok=True)
            for k, (data, path) in enumerate(stored):
                target = out / f"images_{S}" / (path[:-4] + ".jpg")
                if path.endswith(".jpg"):
                    target.write_bytes(data)
                else:
                    Image.fromarray(imgs[k]).save(target, format="JPEG", quality=95)

        write_gz(out / "idx" / f"kaokore-{sp}-images-idx4-ubyte.gz", idx_bytes(imgs))
        write_gz(out / "idx" / f"kaokore-{sp}-gender-idx1-ubyte.gz", idx_bytes(gender))
        write_gz(out / "idx" / f"kaokore-{sp}-status-idx1-ubyte.gz", idx_bytes(status))

        npz_imgs = imgs.copy()
        if args.corrupt == "pixel" and sp == "train":
            npz_imgs[n // 2, S // 2, S // 3, 1] ^= 0x01
        np.savez_compressed(out / "npz" / f"kaokore-{sp}-imgs.npz", npz_imgs)
        np.savez_compressed(out / "npz" / f"kaokore-{sp}-labels.npz", gender=gender, status=status, image_id=image_id)

        cols = {
            "image": [{"bytes": b, "path": p} for b, p in stored],
            "image_id": image_id.tolist(),
            "gender": gender.astype(np.int64).tolist(),
            "status": status.astype(np.int64).tolist(),
            "url": [urls[r[0]] for r in sp_rows],
        }
        for key in ("provider", "source_title", "source_id", "orientation", "era", "holder",
                    "year_from", "year_to", "tags", "original_tags"):
            cols[key] = [tag_info[r[0]][key] for r in sp_rows]
        meta = {b"kaokore": kk_meta.encode()}
        if args.corrupt != "no-hf-metadata":
            meta[b"huggingface"] = hf_meta.encode()
        table = pa.Table.from_pydict(cols, schema=SCHEMA.with_metadata(meta))
        # per-column options take leaf paths (e.g. tags.list.element): ask pyarrow for them
        probe = io.BytesIO()
        pq.write_table(table.slice(0, 0), probe)
        leaves = [c.path for c in pq.ParquetFile(io.BytesIO(probe.getvalue())).metadata.schema]
        non_image = [c for c in leaves if c != "image.bytes"]
        pq.write_table(
            table,
            out / "parquet" / f"{sp}-00000-of-00001.parquet",
            row_group_size=ROW_GROUP,
            compression={**{c: "zstd" for c in non_image}, "image.bytes": "none"},
            use_dictionary=non_image,
            write_statistics=True,
        )

    card = [
        *front_matter(S, sum(packed_counts.values()), reverse_gender=args.corrupt == "hub-class-names"),
        "# KaoKore (fake test output)",
        "",
        f"Version 1.3, images normalized to {S} x {S} RGB.",
        "",
        "| split | images |",
        "|---|---|",
        *[f"| {sp} | {packed_counts[sp]} |" for sp in SPLITS],
        "",
        f"Attribution: {ATTRIBUTION}",
        "",
        f"License: {LICENSE} (https://creativecommons.org/licenses/by-sa/4.0/)",
        "",
        "Tian et al., KaoKore: A Pre-modern Japanese Art Facial Expression Dataset, ICCC 2020.",
        "",
    ]
    (out / "README.md").write_text("\n".join(card))

    artifacts = sorted(
        p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name not in ("SHA256SUMS", "report.json")
    )
    write_croissant(out, S, artifacts, packed_counts, wrong_sha="labels.csv" if args.corrupt == "croissant-sha" else None)
    artifacts = sorted(artifacts + ["croissant.json"])
    with open(out / "SHA256SUMS", "w") as f:
        for rel in artifacts:
            f.write(f"{hashlib.sha256((out / rel).read_bytes()).hexdigest()}  {rel}\n")

    report = {
        "dataset_version": "1.3",
        "size": S,
        "counts": {
            "urls": n_urls,
            "blank_lines": len(blank_lines),
            "labelled": total_labelled,
            "unlabelled": n_urls - len(blank_lines) - total_labelled,
            "fetched": n_urls - len(blank_lines) - len(failed),
            "from_cache": 0,
            "failed": len(failed),
            "packed": packed_counts,
        },
        "failures": [{"image_id": i, "url": urls[i], "reason": r} for i, r in sorted(failed.items())],
        "normalization": {"resized": 0, "converted": 0},
        "seconds": {"fetch": 0.0, "normalize": 0.0, "pack": 0.0},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {out} (S={S}, packed {packed_counts}, failed {sorted(failed)})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
