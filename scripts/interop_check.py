#!/usr/bin/env python3
"""Real-clients test of a `kaokore build` output directory (the layout README.md describes under "What you get").

    python scripts/interop_check.py OUT_DIR [--metadata-labels PATH] [--formats idx,npz,parquet]

Reads every artifact with the libraries users load it with (idx2numpy, numpy,
pyarrow, pandas, polars, DuckDB, Hugging Face `datasets`, mlcroissant, Pillow,
and with `tfds` TensorFlow Datasets and tf.data) and checks that they agree with each other and with labels.csv: among them,
`mlcroissant validate` of croissant.json, its records, and
`datasets.load_dataset(OUT)` with no other argument (the card's YAML header). Every check prints one
line (`ok` / `FAIL` with the reason / `skip` with why it cannot run here); the
last line is `N passed, N failed` (`, N skipped` when any was).
Exit status 0 when nothing failed, 1 otherwise (2 for bad usage).

--metadata-labels PATH   the labels.csv the build was made from (e.g. the
                         upstream file); OUT/labels.csv must be identical to it.
                         Default: OUT/labels.csv is the reference.
--formats LIST           formats the build was asked for (default idx,npz,parquet;
                         add `images` to check images_S/, `webdataset` to read the
                         shards with the webdataset package and `datasets`, `mnist`
                         to check mnist/, `tfds` to read tfds/ with TensorFlow
                         Datasets and tf.data: skipped, and said so, when
                         tensorflow and tensorflow_datasets do not import); checks
                         of formats not listed are not run.
--kaokore BIN            the kaokore binary that made OUT_DIR: also parse
                         `BIN verify --json OUT_DIR` and `BIN info --json` with
                         Python's json and check them against SHA256SUMS,
                         report.json and labels.csv. info is of the build's
                         version, from the directory of --metadata-labels when it
                         holds a urls.txt, else from the built-in metadata (then
                         OUT_DIR must be a build of the built-in metadata).

    python scripts/interop_check.py --self-test

checks the checker: builds fake outputs with scripts/make_fake_output.py and
asserts that a clean one passes and that each kind of corruption fails exactly
the checks that should catch it.

Memory: one split at a time; the npz images of the split are the reference
(plus the idx images while comparing them); Parquet is streamed by row group,
TFRecords record by record.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

# `datasets` must never reach the network and must not write outside a temp dir.
_TMP = Path(tempfile.mkdtemp(prefix="kaokore-interop-"))
os.environ["HF_DATASETS_OFFLINE"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HOME"] = str(_TMP / "hf-home")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ["CROISSANT_CACHE"] = str(_TMP / "croissant-cache")

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from PIL import Image  # noqa: E402

SPLITS = ("train", "dev", "test")
GENDER_NAMES = ["male", "female"]
STATUS_NAMES = ["noble", "warrior", "incarnation", "commoner"]
ATTRIBUTION = '"KaoKore Dataset" (collected by CODH from multiple organizations), doi:10.20676/00000353'
DOI = "10.20676/00000353"
# what `datasets` names the split of a `{split}-0000k-of-0000n.parquet` file
# (checked empirically with datasets 5.2: "dev" is recognised as validation)
HF_SPLIT = {"train": "train", "dev": "validation", "test": "test"}
JPEG_MAX_MEAN_ABS_DIFF = 3.0
ROW_GROUP_MAX = 200  # "about 100 rows"
ROW_GROUP_MIN = 50  # for every row group but the last

S_STR = pa.string()
EXPECTED_SCHEMA = [
    ("image", pa.struct([pa.field("bytes", pa.binary()), pa.field("path", pa.string())])),
    ("image_id", pa.int32()),
    ("gender", pa.int64()),
    ("status", pa.int64()),
    ("url", S_STR),
    ("provider", S_STR),
    ("source_title", S_STR),
    ("source_id", S_STR),
    ("orientation", S_STR),
    ("era", S_STR),
    ("holder", S_STR),
    ("year_from", pa.int32()),
    ("year_to", pa.int32()),
    ("tags", pa.list_(pa.string())),
    ("original_tags", S_STR),
]
ARTIFACT_NAMES = {
    "idx": [
        "idx/kaokore-{s}-images-idx4-ubyte.gz",
        "idx/kaokore-{s}-gender-idx1-ubyte.gz",
        "idx/kaokore-{s}-status-idx1-ubyte.gz",
    ],
    "npz": ["npz/kaokore-{s}-imgs.npz", "npz/kaokore-{s}-labels.npz"],
    "mnist": [
        "mnist/kaokore-{s}-images-idx3-ubyte.gz",
        "mnist/kaokore-{s}-gender-idx1-ubyte.gz",
        "mnist/kaokore-{s}-status-idx1-ubyte.gz",
    ],
}


class Fail(Exception):
    """A check's assertion failed; the message says what and where."""


class Skip(Exception):
    """A check cannot run here (its client is not installed); the message says why."""


def need(cond: bool, msg: str) -> None:
    if not cond:
        raise Fail(msg)


def image_id_of(name: str) -> int:
    """'00000012.jpg' / '00000012' / 12 -> 12"""
    if isinstance(name, (int, np.integer)):
        return int(name)
    stem = str(name).strip().split("/")[-1].split(".")[0]
    return int(stem)


def first_diff(a: np.ndarray, b: np.ndarray) -> str:
    idx = np.argwhere(a != b)
    if idx.size == 0:
        return "no difference"
    pos = tuple(int(v) for v in idx[0])
    return f"{len(idx)} values differ, first at {pos}: {a[pos]} vs {b[pos]}"


# --------------------------------------------------------------------------- state


class SplitData:
    """What one split's checks share. Loaded lazily, freed when the split is done."""

    def __init__(self, out: Path, split: str):
        self.out = out
        self.split = split
        self._npz_imgs = None
        self._npz_labels = None
        self._idx = None

    # npz: the reference for everything else
    def npz_images(self) -> np.ndarray:
        if self._npz_imgs is None:
            with np.load(self.out / f"npz/kaokore-{self.split}-imgs.npz") as z:
                need("arr_0" in z.files, f"imgs.npz has keys {z.files}, expected ['arr_0']")
                self._npz_imgs = z["arr_0"]
        return self._npz_imgs

    def npz_labels(self) -> dict:
        if self._npz_labels is None:
            with np.load(self.out / f"npz/kaokore-{self.split}-labels.npz") as z:
                self._npz_labels = {k: z[k] for k in z.files}
        return self._npz_labels

    def ids(self) -> np.ndarray:
        lab = self.npz_labels()
        need("image_id" in lab, "labels.npz has no image_id")
        return lab["image_id"]

    def idx_arrays(self) -> dict:
        if self._idx is None:
            import idx2numpy

            arrs = {}
            for kind in ("images", "gender", "status"):
                dim = 4 if kind == "images" else 1
                path = self.out / f"idx/kaokore-{self.split}-{kind}-idx{dim}-ubyte.gz"
                with gzip.open(path, "rb") as f:
                    arrs[kind] = idx2numpy.convert_from_file(f)
            self._idx = arrs
        return self._idx

    def drop_idx(self) -> None:
        self._idx = None

    def parquet_files(self) -> list[Path]:
        files = sorted((self.out / "parquet").glob(f"{self.split}-*-of-*.parquet"))
        need(files, f"no parquet/{self.split}-*-of-*.parquet")
        pat = re.compile(rf"^{self.split}-(\d{{5}})-of-(\d{{5}})\.parquet$")
        parsed = []
        for f in files:
            m = pat.match(f.name)
            need(m is not None, f"{f.name}: not named {self.split}-NNNNN-of-NNNNN.parquet")
            parsed.append((int(m.group(1)), int(m.group(2))))
        total = parsed[0][1]
        need(
            [p[0] for p in parsed] == list(range(total)) and all(p[1] == total for p in parsed),
            f"parquet shards of {self.split} are {[f.name for f in files]}, expected 00000..{total - 1:05d} of {total:05d}",
        )
        return files


class Ctx:
    def __init__(self, out: Path, labels_ref: Path, formats: set[str], kaokore: str | None = None):
        self.out = out
        self.labels_ref = labels_ref
        self.formats = formats
        self.kaokore = kaokore  # the binary, for the checks of its JSON output
        self._labels = None
        self._report = None
        self._hf = None
        self._hf_dir = None
        self._croissant = None
        self._croissant_records = None
        self.S = None  # edge length, from the first array read
        self.tags_cache: dict = {}

    def labels(self) -> dict[str, list[tuple[int, int, int, int]]]:
        """split -> [(image_id, gender, status, csv_line)] in file order"""
        if self._labels is None:
            by_split: dict[str, list] = {s: [] for s in SPLITS}
            with open(self.labels_ref, newline="", encoding="utf-8") as f:
                reader = csv.DictReader(f)
                need(
                    reader.fieldnames is not None
                    and {"image", "gender", "status", "set"} <= set(reader.fieldnames),
                    f"{self.labels_ref}: header {reader.fieldnames}, expected image,gender,status,set",
                )
                for row in reader:
                    sp = row["set"].strip()
                    need(sp in by_split, f"{self.labels_ref}:{reader.line_num}: unknown set {sp!r}")
                    by_split[sp].append(
                        (image_id_of(row["image"]), int(row["gender"]), int(row["status"]), reader.line_num)
                    )
            self._labels = by_split
        return self._labels

    def report(self):
        if self._report is None:
            self._report = json.loads((self.out / "report.json").read_text(encoding="utf-8"))
        return self._report

    def reported_missing(self) -> set[int] | None:
        """ids listed as failed/missing anywhere in report.json; None if it has no such list."""
        try:
            rep = self.report()
        except FileNotFoundError:
            return None
        found: set[int] = set()
        has_list = False

        def walk(node, key=""):
            nonlocal has_list
            if isinstance(node, dict):
                for k, v in node.items():
                    walk(v, str(k))
            elif isinstance(node, list):
                objs = [e for e in node if isinstance(e, dict) and ("image_id" in e or "id" in e)]
                if objs or re.search(r"fail|miss|skip|error", key, re.I):
                    has_list = True
                for e in node:
                    if isinstance(e, dict):
                        for k in ("image_id", "id", "image"):
                            if k in e:
                                try:
                                    found.add(image_id_of(e[k]))
                                except (TypeError, ValueError):
                                    pass
                                break
                        walk(e, key)
                    elif re.search(r"fail|miss|skip", key, re.I) and isinstance(e, (int, str)):
                        try:
                            found.add(image_id_of(e))
                        except (TypeError, ValueError):
                            pass

        walk(rep)
        return found if has_list else None

    def hf(self):
        if self._hf is None:
            import datasets

            try:
                datasets.disable_progress_bars()
            except AttributeError:
                pass
            self._hf = datasets.load_dataset(
                "parquet", data_dir=str(self.out / "parquet"), cache_dir=str(_TMP / "hf-cache")
            )
        return self._hf

    def hf_dir(self):
        """`datasets.load_dataset(OUT)`, nothing else: the card's YAML header decides."""
        if self._hf_dir is None:
            import datasets

            self._hf_dir = datasets.load_dataset(str(self.out))
        return self._hf_dir

    def croissant(self) -> dict:
        if self._croissant is None:
            self._croissant = json.loads((self.out / "croissant.json").read_text(encoding="utf-8"))
        return self._croissant

    def croissant_records(self) -> list[tuple[str, int, int, int, object]]:
        """mlcroissant's `images` records: (split, image_id, gender, status, image) in
        the order it yields them; the images are PIL images, opened lazily."""
        if self._croissant_records is None:
            import mlcroissant as mlc

            _quiet_mlcroissant()
            ds = mlc.Dataset(jsonld=str(self.out / "croissant.json"))
            rows = []
            records = ds.records(record_set="images")
            try:
                records = list(records)
            except Exception as e:  # noqa: BLE001 - a client that cannot read the records fails the check
                raise Fail(f"mlcroissant cannot read the images records: {_root_cause(e)}") from e
            for r in records:
                split = r["images/split"]
                rows.append((
                    split.decode() if isinstance(split, bytes) else split,
                    int(r["images/image_id"]),
                    int(r["images/gender"]),
                    int(r["images/status"]),
                    r["images/image"],
                ))
            self._croissant_records = rows
        return self._croissant_records

    def set_S(self, S: int, where: str) -> None:
        if self.S is None:
            self.S = S
        need(self.S == S, f"{where}: edge length {S}, but other artifacts have {self.S}")


# --------------------------------------------------------------------------- checks per split


def check_idx_headers(ctx: Ctx, sd: SplitData) -> None:
    """Parse each idx file by hand: magic, big-endian dims, exact body length."""
    dims_of = {}
    for kind, magic, ndim in (("images", 0x00000804, 4), ("gender", 0x00000801, 1), ("status", 0x00000801, 1)):
        dim = 4 if kind == "images" else 1
        rel = f"idx/kaokore-{sd.split}-{kind}-idx{dim}-ubyte.gz"
        with gzip.open(ctx.out / rel, "rb") as f:
            head = f.read(4)
            need(len(head) == 4, f"{rel}: shorter than an idx header")
            (got,) = struct.unpack(">I", head)
            need(got == magic, f"{rel}: magic 0x{got:08x}, expected 0x{magic:08x}")
            raw_dims = f.read(4 * ndim)
            need(len(raw_dims) == 4 * ndim, f"{rel}: header truncated")
            dims = struct.unpack(">" + "I" * ndim, raw_dims)
        expect = int(np.prod(dims, dtype=np.int64))
        # Fast path: the gzip trailer's ISIZE (length mod 2**32 of a single-member
        # stream). Only when it disagrees is the whole body decompressed and counted.
        with open(ctx.out / rel, "rb") as raw:
            raw.seek(-4, os.SEEK_END)
            (isize,) = struct.unpack("<I", raw.read(4))
        if isize != (4 + 4 * ndim + expect) % (1 << 32):
            body = 0
            with gzip.open(ctx.out / rel, "rb") as f:
                f.read(4 + 4 * ndim)
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    body += len(chunk)
            need(body == expect, f"{rel}: header dims {dims} need {expect} body bytes, file has {body}")
        dims_of[kind] = dims
    n, h, w, c = dims_of["images"]
    need(h == w and c == 3, f"images idx dims {dims_of['images']}, expected (N, S, S, 3)")
    ctx.set_S(h, f"idx/kaokore-{sd.split}-images")
    need(
        dims_of["gender"] == (n,) and dims_of["status"] == (n,),
        f"label idx dims gender={dims_of['gender']} status={dims_of['status']}, images have N={n}",
    )


def check_idx_idx2numpy(ctx: Ctx, sd: SplitData) -> None:
    """idx2numpy reads the gunzipped files: (N,S,S,3) uint8 and (N,) uint8."""
    a = sd.idx_arrays()
    im = a["images"]
    need(im.dtype == np.uint8 and im.ndim == 4, f"idx2numpy images: dtype {im.dtype}, shape {im.shape}")
    n, h, w, c = im.shape
    need(h == w and c == 3, f"idx2numpy images shape {im.shape}, expected (N, S, S, 3)")
    ctx.set_S(h, "idx2numpy images")
    for k in ("gender", "status"):
        need(a[k].dtype == np.uint8 and a[k].shape == (n,), f"idx2numpy {k}: dtype {a[k].dtype}, shape {a[k].shape}, expected uint8 ({n},)")
    need(int(a["gender"].max(initial=0)) < 2, f"idx gender has value {a['gender'].max()} (>= 2 classes)")
    need(int(a["status"].max(initial=0)) < 4, f"idx status has value {a['status'].max()} (>= 4 classes)")


def check_npz(ctx: Ctx, sd: SplitData) -> None:
    """np.load: imgs arr_0 (N,S,S,3) uint8; labels keys exactly gender, status (uint8), image_id (int32)."""
    rel = f"npz/kaokore-{sd.split}-imgs.npz"
    with np.load(ctx.out / rel) as z:
        need(sorted(z.files) == ["arr_0"], f"{rel}: keys {z.files}, expected exactly ['arr_0']")
    im = sd.npz_images()
    need(im.dtype == np.uint8 and im.ndim == 4, f"{rel}: dtype {im.dtype}, shape {im.shape}")
    n, h, w, c = im.shape
    need(h == w and c == 3, f"{rel}: shape {im.shape}, expected (N, S, S, 3)")
    ctx.set_S(h, rel)
    rel = f"npz/kaokore-{sd.split}-labels.npz"
    lab = sd.npz_labels()
    need(sorted(lab) == ["gender", "image_id", "status"], f"{rel}: keys {sorted(lab)}, expected exactly gender, image_id, status")
    for k, dt in (("gender", np.uint8), ("status", np.uint8), ("image_id", np.int32)):
        need(lab[k].dtype == dt and lab[k].shape == (n,), f"{rel}: {k} is {lab[k].dtype} {lab[k].shape}, expected {np.dtype(dt)} ({n},)")
    need(int(lab["gender"].max(initial=0)) < 2, f"{rel}: gender value {lab['gender'].max()} out of range")
    need(int(lab["status"].max(initial=0)) < 4, f"{rel}: status value {lab['status'].max()} out of range")
    need(len(set(lab["image_id"].tolist())) == n, f"{rel}: duplicate image_id")


def check_labels_csv(ctx: Ctx, sd: SplitData) -> None:
    """Artifact ids are labels.csv's rows of this split, in order, missing ones skipped (and reported)."""
    rows = ctx.labels()[sd.split]
    lab = sd.npz_labels()
    ids = [int(v) for v in sd.ids()]
    where = {}
    for sp, rs in ctx.labels().items():
        for pos, r in enumerate(rs):
            where[r[0]] = (sp, pos)
    j = 0
    skipped = []
    mismatches = []
    for k, iid in enumerate(ids):
        if iid not in where:
            raise Fail(f"row {k}: image_id {iid} is not in labels.csv (unlabelled images must not be packed)")
        sp, pos = where[iid]
        need(sp == sd.split, f"row {k}: image_id {iid} belongs to split {sp!r} in labels.csv, found in {sd.split!r}")
        need(
            pos >= j,
            f"row {k}: image_id {iid} is out of labels.csv order (labels.csv line {rows[pos][3]}, "
            f"but an earlier row already matched line {rows[j - 1][3] if j else '?'})",
        )
        skipped.extend(r[0] for r in rows[j:pos])
        _, g, s, line = rows[pos]
        if int(lab["gender"][k]) != g or int(lab["status"][k]) != s:
            mismatches.append(
                f"row {k} image_id {iid}: gender/status {int(lab['gender'][k])}/{int(lab['status'][k])}, "
                f"labels.csv line {line} says {g}/{s}"
            )
        j = pos + 1
    skipped.extend(r[0] for r in rows[j:])
    need(not mismatches, f"{len(mismatches)} label mismatches: " + "; ".join(mismatches[:5]))
    if skipped:
        listed = ctx.reported_missing()
        if listed is None:
            print(f"     note: {len(skipped)} labelled {sd.split} images not packed; report.json has no failure list to check them against")
        else:
            unlisted = [i for i in skipped if i not in listed]
            need(
                not unlisted,
                f"{len(unlisted)} labelled {sd.split} images are neither packed nor listed as failed/missing "
                f"in report.json: {unlisted[:10]}",
            )
        print(f"     note: {len(skipped)} labelled {sd.split} images not packed (reported missing): {skipped[:10]}")


def check_idx_equals_npz(ctx: Ctx, sd: SplitData) -> None:
    """idx and npz hold exactly the same images and labels."""
    a = sd.idx_arrays()
    im = sd.npz_images()
    lab = sd.npz_labels()
    need(a["images"].shape == im.shape, f"idx images {a['images'].shape} vs npz {im.shape}")
    if not np.array_equal(a["images"], im):
        rows = np.flatnonzero((a["images"] != im).reshape(len(im), -1).any(axis=1))
        raise Fail(
            f"idx and npz images differ in {len(rows)} rows (first row {rows[0]}, image_id {int(lab['image_id'][rows[0]])}): "
            + first_diff(a["images"], im)
        )
    for k in ("gender", "status"):
        need(np.array_equal(a[k], lab[k]), f"idx {k} differs from npz {k}: " + first_diff(a[k], lab[k]))
    sd.drop_idx()


def _type_str(t: pa.DataType) -> str:
    return str(t)


def _same_type(got: pa.DataType, want: pa.DataType) -> bool:
    # the list element's field name (item / element) is not part of the contract
    if pa.types.is_list(want):
        return pa.types.is_list(got) and got.value_type == want.value_type
    if pa.types.is_struct(want):
        return (
            pa.types.is_struct(got)
            and [got.field(i).name for i in range(got.num_fields)] == [want.field(i).name for i in range(want.num_fields)]
            and all(_same_type(got.field(i).type, want.field(i).type) for i in range(want.num_fields))
        )
    return got == want


def check_parquet_schema(ctx: Ctx, sd: SplitData) -> None:
    """Arrow schema is exactly the contract's columns, types and order."""
    for f in sd.parquet_files():
        schema = pq.read_schema(f)
        got = [(fl.name, fl.type) for fl in schema]
        names = [n for n, _ in got]
        want_names = [n for n, _ in EXPECTED_SCHEMA]
        need(
            set(names) == set(want_names),
            f"{f.name}: missing columns {sorted(set(want_names) - set(names))}, unexpected {sorted(set(names) - set(want_names))}",
        )
        need(names == want_names, f"{f.name}: column order {names}, expected {want_names}")
        bad = [
            f"{n}: {_type_str(t)} (expected {_type_str(w)})"
            for (n, t), (_, w) in zip(got, EXPECTED_SCHEMA)
            if not _same_type(t, w)
        ]
        need(not bad, f"{f.name}: wrong types: " + "; ".join(bad))
        img = schema.field("image").type
        need(
            all(img.field(i).nullable for i in range(img.num_fields)),
            f"{f.name}: image.bytes / image.path must be nullable",
        )


def check_parquet_metadata(ctx: Ctx, sd: SplitData) -> None:
    """Footer has `huggingface` (Image, ClassLabel names) and `kaokore` JSON; ~100-row groups; encodings."""
    for f in sd.parquet_files():
        pf = pq.ParquetFile(f)
        kv = pf.schema_arrow.metadata or {}
        need(b"huggingface" in kv, f"{f.name}: no `huggingface` key in the file key-value metadata (keys: {sorted(k.decode() for k in kv)})")
        need(b"kaokore" in kv, f"{f.name}: no `kaokore` key in the file key-value metadata")
        try:
            hf = json.loads(kv[b"huggingface"])
        except ValueError as e:
            raise Fail(f"{f.name}: `huggingface` metadata is not JSON: {e}")
        feats = (hf.get("info") or {}).get("features") if isinstance(hf, dict) else None
        need(isinstance(feats, dict), f"{f.name}: `huggingface` metadata has no info.features object")
        need((feats.get("image") or {}).get("_type") == "Image", f"{f.name}: huggingface features image = {feats.get('image')}, expected _type Image")
        for col, names in (("gender", GENDER_NAMES), ("status", STATUS_NAMES)):
            ft = feats.get(col) or {}
            need(
                ft.get("_type") == "ClassLabel" and ft.get("names") == names,
                f"{f.name}: huggingface features {col} = {ft}, expected ClassLabel names {names}",
            )
        need(
            set(feats) == {n for n, _ in EXPECTED_SCHEMA},
            f"{f.name}: huggingface features cover {sorted(feats)}, expected every column",
        )
        try:
            kk = json.loads(kv[b"kaokore"])
        except ValueError as e:
            raise Fail(f"{f.name}: `kaokore` metadata is not JSON: {e}")
        need(isinstance(kk, dict), f"{f.name}: `kaokore` metadata is not a JSON object")
        need(DOI in json.dumps(kk), f"{f.name}: `kaokore` metadata does not mention the DOI {DOI}")

        md = pf.metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        if md.num_rows:
            need(max(sizes) <= ROW_GROUP_MAX, f"{f.name}: row groups of {sizes[:10]}... rows; expected about 100 (at most {ROW_GROUP_MAX})")
            need(
                all(s >= ROW_GROUP_MIN for s in sizes[:-1]),
                f"{f.name}: row groups {sizes[:10]}...: only the last may have fewer than {ROW_GROUP_MIN} rows",
            )
        for i in range(md.num_row_groups):
            rg = md.row_group(i)
            for j in range(rg.num_columns):
                col = rg.column(j)
                p = col.path_in_schema
                if p == "image.bytes":
                    need(col.compression == "UNCOMPRESSED", f"{f.name}: image.bytes compressed with {col.compression}, expected none")
                    need(not col.has_dictionary_page, f"{f.name}: image.bytes is dictionary-encoded, expected plain")
                else:
                    need(col.compression == "ZSTD", f"{f.name}: column {p} compressed with {col.compression}, expected ZSTD")


def _decode(data: bytes, where: str):
    try:
        im = Image.open(io.BytesIO(data))
        fmt = im.format
        im.load()
    except Exception as e:  # noqa: BLE001
        raise Fail(f"{where}: Pillow cannot decode the image bytes: {e}")
    return im, fmt


def check_parquet_rows(ctx: Ctx, sd: SplitData) -> None:
    """Stream row groups: ids, labels = npz; PNG rows = npz pixels exactly; JPEG rows S x S RGB, close."""
    im_ref = sd.npz_images()
    lab = sd.npz_labels()
    ids_ref = sd.ids()
    n_ref = len(ids_ref)
    S = im_ref.shape[1]
    tags_line = _original_tags(ctx)
    k = 0
    n_png = n_jpg = 0
    worst = (0.0, None)
    for f in sd.parquet_files():
        pf = pq.ParquetFile(f)
        for g in range(pf.num_row_groups):
            t = pf.read_row_group(g)
            cols = {name: t.column(name).to_pylist() for name in ("image_id", "gender", "status", "url", "original_tags")}
            images = t.column("image").to_pylist()
            for r in range(t.num_rows):
                need(k < n_ref, f"{f.name}: more rows than the npz ({n_ref})")
                iid = cols["image_id"][r]
                where = f"{f.name} row {k} (image_id {iid})"
                need(iid == int(ids_ref[k]), f"{f.name} row {k}: image_id {iid}, npz has {int(ids_ref[k])}")
                need(
                    cols["gender"][r] == int(lab["gender"][k]) and cols["status"][r] == int(lab["status"][k]),
                    f"{where}: gender/status {cols['gender'][r]}/{cols['status'][r]}, npz has {int(lab['gender'][k])}/{int(lab['status'][k])}",
                )
                url = cols["url"][r] or ""
                need(url.startswith(("http://", "https://")), f"{where}: url {url!r} is not the upstream http(s) URL")
                if tags_line is not None and iid in tags_line:
                    got = (cols["original_tags"][r] or "").rstrip()
                    want = tags_line[iid]
                    need(
                        got in (want, f"{iid:08d}.jpg:{want}"),
                        f"{where}: original_tags {got[:60]!r}... is not the line of original_tags.txt {want[:60]!r}...",
                    )
                cell = images[r]
                need(cell is not None and cell.get("bytes"), f"{where}: image.bytes is empty")
                path = cell.get("path") or ""
                pil, fmt = _decode(cell["bytes"], where)
                need(pil.size == (S, S), f"{where}: image is {pil.size[0]}x{pil.size[1]}, expected {S}x{S}")
                if path.endswith(".png"):
                    need(path == f"{iid:08d}.png", f"{where}: image.path {path!r}, expected {iid:08d}.png")
                    need(fmt == "PNG", f"{where}: image.path ends in .png but the bytes are {fmt}")
                    arr = np.asarray(pil.convert("RGB"))
                    if not np.array_equal(arr, im_ref[k]):
                        raise Fail(f"{where}: PNG pixels differ from npz: " + first_diff(arr, im_ref[k]))
                    n_png += 1
                elif path.endswith(".jpg"):
                    need(path == f"{iid:08d}.jpg", f"{where}: image.path {path!r}, expected {iid:08d}.jpg")
                    need(fmt == "JPEG", f"{where}: image.path ends in .jpg but the bytes are {fmt}")
                    need(pil.mode == "RGB", f"{where}: JPEG stored unchanged must be RGB, is {pil.mode}")
                    arr = np.asarray(pil)
                    mad = float(np.abs(arr.astype(np.int16) - im_ref[k].astype(np.int16)).mean())
                    need(
                        mad < JPEG_MAX_MEAN_ABS_DIFF,
                        f"{where}: JPEG decodes {mad:.2f} mean absolute difference from npz (limit {JPEG_MAX_MEAN_ABS_DIFF})",
                    )
                    if mad > worst[0]:
                        worst = (mad, iid)
                    n_jpg += 1
                else:
                    raise Fail(f"{where}: image.path {path!r} ends neither in .png nor .jpg")
                k += 1
            del t, cols, images
    need(k == n_ref, f"parquet has {k} rows, npz has {n_ref}")
    print(f"     note: {sd.split}: {n_png} PNG rows (exact), {n_jpg} JPEG rows (worst mean abs diff {worst[0]:.3f})")


def _original_tags(ctx: Ctx) -> dict[int, str] | None:
    """id -> the line of OUT/original_tags.txt after `NNNNNNNN.jpg:` (None without the file)"""
    if "v" not in ctx.tags_cache:
        p = ctx.out / "original_tags.txt"
        d = None
        if p.exists():
            d = {}
            for line in p.read_text(encoding="utf-8").splitlines():
                m = re.match(r"^(\d+)\.jpg:(.*)$", line)
                if m:
                    d[int(m.group(1))] = m.group(2).rstrip()
        ctx.tags_cache["v"] = d
    return ctx.tags_cache["v"]


def check_pandas(ctx: Ctx, sd: SplitData) -> None:
    """pd.read_parquet reads every file; rows and ids equal the npz."""
    import pandas as pd

    ids = []
    for f in sd.parquet_files():
        df = pd.read_parquet(f)
        need(list(df.columns) == [n for n, _ in EXPECTED_SCHEMA], f"pandas {f.name}: columns {list(df.columns)}")
        ids.extend(int(v) for v in df["image_id"])
        del df
    need(ids == [int(v) for v in sd.ids()], f"pandas image_id differs from npz: {len(ids)} rows vs {len(sd.ids())}")


def check_polars(ctx: Ctx, sd: SplitData) -> None:
    """pl.read_parquet reads every file; rows and ids equal the npz."""
    import polars as pl

    ids = []
    for f in sd.parquet_files():
        df = pl.read_parquet(f)
        need(df.columns == [n for n, _ in EXPECTED_SCHEMA], f"polars {f.name}: columns {df.columns}")
        need(df.schema["image_id"] == pl.Int32, f"polars {f.name}: image_id is {df.schema['image_id']}, expected Int32")
        ids.extend(df["image_id"].to_list())
        del df
    need(ids == [int(v) for v in sd.ids()], f"polars image_id differs from npz: {len(ids)} rows vs {len(sd.ids())}")


def check_duckdb(ctx: Ctx, sd: SplitData) -> None:
    """DuckDB: count(*), min(image_id) and the id column agree with the npz."""
    import duckdb

    ref = [int(v) for v in sd.ids()]
    con = duckdb.connect()
    try:
        total = 0
        got = []
        for f in sd.parquet_files():
            q = str(f).replace("'", "''")
            cnt, mn = con.execute(f"SELECT count(*), min(image_id) FROM '{q}'").fetchone()
            total += cnt
            rows = [r[0] for r in con.execute(f"SELECT image_id FROM '{q}'").fetchall()]
            need(cnt == len(rows), f"duckdb {f.name}: count(*) {cnt} but {len(rows)} rows")
            if rows:
                need(mn == min(rows), f"duckdb {f.name}: min(image_id) {mn} vs {min(rows)}")
            got.extend(rows)
        need(total == len(ref), f"duckdb count(*) {total}, npz has {len(ref)} rows")
        need(got == ref, "duckdb image_id column (in file order) differs from npz")
        if ref:
            mn = con.execute(
                "SELECT min(image_id) FROM read_parquet([" + ",".join("'" + str(f).replace("'", "''") + "'" for f in sd.parquet_files()) + "])"
            ).fetchone()[0]
            need(mn == min(ref), f"duckdb min(image_id) {mn}, npz min {min(ref)}")
    finally:
        con.close()


def check_datasets(ctx: Ctx, sd: SplitData) -> None:
    """datasets.load_dataset('parquet', data_dir=OUT/parquet): features, rows, ids, decoded images."""
    dd = ctx.hf()
    name = HF_SPLIT[sd.split]
    if name not in dd and sd.split in dd:
        name = sd.split
    need(name in dd, f"datasets gave splits {list(dd)}, no {HF_SPLIT[sd.split]!r} for {sd.split} files")
    _check_hf_split(dd[name], name, sd)


def check_datasets_dir(ctx: Ctx, sd: SplitData) -> None:
    """datasets.load_dataset(OUT), no other argument: the card's configs give the split
    (dev as `validation`) with Image and ClassLabel features, rows and labels of the npz."""
    dd = ctx.hf_dir()
    name = HF_SPLIT[sd.split]
    need(name in dd, f"load_dataset(OUT) gave splits {list(dd)}, no {name!r} for the {sd.split} files")
    _check_hf_split(dd[name], name, sd)


def _check_hf_split(ds, name: str, sd: SplitData) -> None:
    import datasets

    fe = ds.features
    need(isinstance(fe.get("image"), datasets.Image), f"datasets feature image is {fe.get('image')!r}, expected Image()")
    for col, names in (("gender", GENDER_NAMES), ("status", STATUS_NAMES)):
        ft = fe.get(col)
        need(
            isinstance(ft, datasets.ClassLabel) and list(ft.names) == names,
            f"datasets feature {col} is {ft!r}, expected ClassLabel(names={names})",
        )
    for col in ("image_id", "year_from", "year_to"):
        need(fe.get(col) == datasets.Value("int32"), f"datasets feature {col} is {fe.get(col)!r}, expected Value('int32')")
    for col in ("url", "provider", "source_title", "source_id", "orientation", "era", "holder", "original_tags"):
        need(fe.get(col) == datasets.Value("string"), f"datasets feature {col} is {fe.get(col)!r}, expected Value('string')")
    tags = fe.get("tags")
    inner = getattr(tags, "feature", None)
    need(inner == datasets.Value("string"), f"datasets feature tags is {tags!r}, expected a list of Value('string')")

    ref = [int(v) for v in sd.ids()]
    need(ds.num_rows == len(ref), f"datasets split {name}: {ds.num_rows} rows, npz has {len(ref)}")
    need([int(v) for v in ds["image_id"]] == ref, f"datasets split {name}: image_id differs from npz")
    lab = sd.npz_labels()
    need([int(v) for v in ds["gender"]] == lab["gender"].tolist(), f"datasets split {name}: gender differs from npz")
    need([int(v) for v in ds["status"]] == lab["status"].tolist(), f"datasets split {name}: status differs from npz")
    im_ref = sd.npz_images()
    for k in sorted({0, len(ref) // 2, len(ref) - 1}) if ref else []:
        ex = ds[k]
        img = ex["image"]
        need(isinstance(img, Image.Image), f"datasets {name}[{k}]['image'] is {type(img).__name__}, expected a PIL image")
        arr = np.asarray(img.convert("RGB"))
        need(arr.shape == im_ref[k].shape, f"datasets {name}[{k}] image shape {arr.shape}, npz {im_ref[k].shape}")
        mad = float(np.abs(arr.astype(np.int16) - im_ref[k].astype(np.int16)).mean())
        if getattr(img, "format", None) == "PNG":
            need(np.array_equal(arr, im_ref[k]), f"datasets {name}[{k}] PNG image differs from npz: " + first_diff(arr, im_ref[k]))
        else:
            need(mad < JPEG_MAX_MEAN_ABS_DIFF, f"datasets {name}[{k}] image differs from npz by {mad:.2f} mean abs")


# --------------------------------------------------------------------------- webdataset


def _wds_shards(ctx: Ctx, split: str) -> list[Path]:
    """webdataset/{split}-NNNNNN.tar, numbered from 000000 without a gap."""
    shards = sorted((ctx.out / "webdataset").glob(f"{split}-*.tar"))
    names = [f.name for f in shards]
    need(names == [f"{split}-{k:06d}.tar" for k in range(len(shards))] and shards,
         f"webdataset shards of {split} are {names}, expected {split}-000000.tar onwards")
    return shards


def _wds_compare(where: str, k: int, key: str, gender: int, status: int, meta: dict, img, sd: SplitData, worst: list) -> None:
    """One sample against npz row k: key, labels, JSON, and pixels (JPEG: close; Pillow and
    kaokore's decoder may round differently)."""
    ids, lab, im_ref = sd.ids(), sd.npz_labels(), sd.npz_images()
    need(k < len(ids), f"{where}: more samples than the npz ({len(ids)})")
    iid = int(ids[k])
    need(key == f"{iid:08d}", f"{where} sample {k}: key {key!r}, npz row has image_id {iid}")
    need((gender, status) == (int(lab["gender"][k]), int(lab["status"][k])),
         f"{where} {key}: gender/status {gender}/{status}, npz has {int(lab['gender'][k])}/{int(lab['status'][k])}")
    need(meta.get("image_id") == iid and meta.get("split") == sd.split
         and (meta.get("gender"), meta.get("status")) == (gender, status),
         f"{where} {key}.json: {dict((f, meta.get(f)) for f in ('image_id', 'split', 'gender', 'status'))}")
    need(meta.get("gender_name") == GENDER_NAMES[gender] and meta.get("status_name") == STATUS_NAMES[status],
         f"{where} {key}.json: class names {meta.get('gender_name')}/{meta.get('status_name')}")
    need(str(meta.get("url", "")).startswith(("http://", "https://")), f"{where} {key}.json: url {meta.get('url')!r}")
    need(isinstance(img, Image.Image), f"{where} {key}.jpg decoded to {type(img).__name__}, expected a PIL image")
    need(img.mode == "RGB", f"{where} {key}.jpg is {img.mode}, expected RGB")
    arr = np.asarray(img)
    need(arr.shape == im_ref[k].shape, f"{where} {key}.jpg is {arr.shape}, npz {im_ref[k].shape}")
    mad = float(np.abs(arr.astype(np.int16) - im_ref[k].astype(np.int16)).mean())
    need(mad < JPEG_MAX_MEAN_ABS_DIFF, f"{where} {key}.jpg differs from npz by {mad:.2f} mean abs (limit {JPEG_MAX_MEAN_ABS_DIFF})")
    worst[0] = max(worst[0], mad)
    worst[1] += int(mad == 0.0)


def check_webdataset_tar(ctx: Ctx, sd: SplitData) -> None:
    """Python's tarfile: ustar headers with mtime 0, uid/gid 0, no owner names, mode 0644; 4 members per sample."""
    import tarfile

    n = 0
    for f in _wds_shards(ctx, sd.split):
        raw = f.read_bytes()
        need(len(raw) % 512 == 0 and raw[-1024:] == bytes(1024), f"{f.name}: not whole blocks ending in two zero blocks")
        with tarfile.open(f, "r:") as t:
            members = t.getmembers()
        exts = [m.name.split(".", 1)[1] for m in members]
        need(exts == ["jpg", "gender.cls", "status.cls", "json"] * (len(members) // 4),
             f"{f.name}: members {exts[:8]}..., expected jpg, gender.cls, status.cls, json per sample")
        for m in members:
            need((m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode, m.isreg()) == (0, 0, 0, "", "", 0o644, True),
                 f"{f.name} {m.name}: mtime {m.mtime} uid {m.uid} gid {m.gid} uname {m.uname!r} gname {m.gname!r} mode {oct(m.mode)}")
            need(raw[m.offset + 257:m.offset + 265] == b"ustar\x0000", f"{f.name} {m.name}: not a ustar header")
            need("." not in m.name.split(".", 1)[0], f"{f.name} {m.name}: a dot in the key")
        n += len(members) // 4
    need(n == len(sd.ids()), f"webdataset {sd.split}: {n} samples, npz has {len(sd.ids())}")


def check_webdataset_package(ctx: Ctx, sd: SplitData) -> None:
    """webdataset.WebDataset(urls).decode("pil"): every sample in order, labels, JSON and pixels = npz."""
    import webdataset as wds

    urls = [str(f) for f in _wds_shards(ctx, sd.split)]
    ds = wds.WebDataset(urls, shardshuffle=False, empty_check=False).decode("pil")
    worst = [0.0, 0]
    k = 0
    for sample in ds:
        _wds_compare("webdataset", k, sample["__key__"], sample["gender.cls"], sample["status.cls"],
                     sample["json"], sample["jpg"], sd, worst)
        k += 1
    need(k == len(sd.ids()), f"webdataset {sd.split}: {k} samples, npz has {len(sd.ids())}")
    print(f"     note: webdataset {sd.split}: {k} samples; {worst[1]} JPEGs decode exactly to npz, worst mean abs diff {worst[0]:.3f}")


def check_webdataset_datasets(ctx: Ctx, sd: SplitData) -> None:
    """datasets.load_dataset("webdataset", data_files={split: shards}): Image + int columns, rows = npz."""
    import datasets

    n = len(sd.ids())
    if n == 0:
        print(f"     note: {sd.split} is empty: datasets infers a webdataset's columns from its samples, skipped")
        return
    files = [str(f) for f in _wds_shards(ctx, sd.split)]
    dd = datasets.load_dataset("webdataset", data_files={sd.split: files}, cache_dir=str(_TMP / "hf-wds-cache"))
    ds = dd[sd.split]
    fe = ds.features
    need(isinstance(fe.get("jpg"), datasets.Image), f"datasets webdataset feature jpg is {fe.get('jpg')!r}, expected Image()")
    for col in ("gender.cls", "status.cls"):
        need(fe.get(col) == datasets.Value("int64"), f"datasets webdataset feature {col} is {fe.get(col)!r}, expected Value('int64')")
    need(ds.num_rows == n, f"datasets webdataset {sd.split}: {ds.num_rows} rows, npz has {n}")
    worst = [0.0, 0]
    for k, ex in enumerate(ds):
        _wds_compare("datasets webdataset", k, ex["__key__"], ex["gender.cls"], ex["status.cls"], ex["json"], ex["jpg"], sd, worst)
    print(f"     note: datasets webdataset {sd.split}: {ds.num_rows} rows, worst mean abs diff {worst[0]:.3f}")


def check_webdataset_sums(ctx: Ctx, present: list[str]) -> None:
    """Every shard is listed in SHA256SUMS (the sums themselves are checked by sha256sums)."""
    sums = (ctx.out / "SHA256SUMS").read_text(encoding="utf-8")
    listed = {line.split(None, 1)[1].lstrip("*") for line in sums.splitlines() if line.strip()}
    shards = sorted(f"webdataset/{f.name}" for f in (ctx.out / "webdataset").glob("*.tar"))
    need(shards, "no webdataset/*.tar")
    unlisted = [s for s in shards if s not in listed]
    need(not unlisted, f"shards not in SHA256SUMS: {unlisted}")


def check_croissant_records(ctx: Ctx, sd: SplitData) -> None:
    """mlcroissant reads the `images` records (from the Parquet files): the split's ids,
    labels and order equal the npz, and sampled images decode to the npz pixels."""
    rows = [r for r in ctx.croissant_records() if r[0] == sd.split]
    ref = [int(v) for v in sd.ids()]
    need(len(rows) == len(ref), f"mlcroissant gave {len(rows)} {sd.split} records, npz has {len(ref)} rows")
    need([r[1] for r in rows] == ref, f"mlcroissant {sd.split} image_id sequence differs from npz")
    lab = sd.npz_labels()
    need([r[2] for r in rows] == lab["gender"].tolist(), f"mlcroissant {sd.split} gender differs from npz")
    need([r[3] for r in rows] == lab["status"].tolist(), f"mlcroissant {sd.split} status differs from npz")
    im_ref = sd.npz_images()
    for k in sorted({0, len(ref) // 2, len(ref) - 1}) if ref else []:
        img = rows[k][4]
        need(isinstance(img, Image.Image), f"mlcroissant {sd.split}[{k}] image is {type(img).__name__}, expected a PIL image")
        arr = np.asarray(img.convert("RGB"))
        need(arr.shape == im_ref[k].shape, f"mlcroissant {sd.split}[{k}] image shape {arr.shape}, npz {im_ref[k].shape}")
        if img.format == "PNG":
            need(np.array_equal(arr, im_ref[k]), f"mlcroissant {sd.split}[{k}] PNG differs from npz: " + first_diff(arr, im_ref[k]))
        else:
            mad = float(np.abs(arr.astype(np.int16) - im_ref[k].astype(np.int16)).mean())
            need(mad < JPEG_MAX_MEAN_ABS_DIFF, f"mlcroissant {sd.split}[{k}] image differs from npz by {mad:.2f} mean abs")


# --------------------------------------------------------------------------- global checks


def _root_cause(e: BaseException) -> str:
    """mlcroissant wraps what went wrong in a GenerationError: say what it was."""
    while e.__cause__ is not None or e.__context__ is not None:
        e = e.__cause__ or e.__context__
    return f"{type(e).__name__}: {e}"


def _quiet_mlcroissant() -> None:
    """mlcroissant logs its validation warnings through absl on every load: once is
    enough (croissant_validate prints them)."""
    try:
        from absl import logging as absl_logging

        absl_logging.set_verbosity(absl_logging.ERROR)
    except ImportError:
        pass


def check_croissant_validate(ctx: Ctx, present: list[str]) -> None:
    """`mlcroissant validate --jsonld OUT/croissant.json` exits 0 (no errors)."""
    import subprocess

    path = ctx.out / "croissant.json"
    need(path.is_file(), "croissant.json is missing")
    cli = Path(sys.executable).with_name("mlcroissant")
    cmd = [str(cli)] if cli.exists() else [sys.executable, "-m", "mlcroissant.scripts.cli"]
    proc = subprocess.run(cmd + ["validate", "--jsonld", str(path)], capture_output=True, text=True, timeout=600)
    log = (proc.stdout + proc.stderr).strip().splitlines()
    need(proc.returncode == 0, f"mlcroissant validate exited {proc.returncode}: " + " | ".join(log[-8:]))
    warnings = [ln.strip() for ln in log if ln.strip().startswith("-  [")]
    if warnings:
        print(f"     note: mlcroissant warnings: {' | '.join(warnings)}")


def check_croissant(ctx: Ctx, present: list[str]) -> None:
    """croissant.json: Croissant 1.1, licence, DOI; a FileObject with the true sha256 for
    every SHA256SUMS artifact (but itself and per-image files); the class names in the
    enumerations the label fields reference; the splits."""
    doc = ctx.croissant()
    need(doc.get("conformsTo") == "http://mlcommons.org/croissant/1.1", f"conformsTo is {doc.get('conformsTo')!r}")
    need("by-sa/4.0" in str(doc.get("license")), f"license is {doc.get('license')!r}")
    need(DOI in str(doc.get("citeAs")), "citeAs lacks the DOI")
    listed = {}
    for line in (ctx.out / "SHA256SUMS").read_text(encoding="utf-8").splitlines():
        if line.strip():
            listed[line[66:]] = line[:64]
    objects = {d.get("contentUrl"): d for d in doc.get("distribution", []) if d.get("@type") == "cr:FileObject"}
    want = {p for p in listed if p != "croissant.json" and not re.match(r"^images_\d+/", p)}
    need(set(objects) == want, f"FileObjects {sorted(set(objects) - want)} not artifacts, artifacts {sorted(want - set(objects))} not described")
    bad = [p for p, d in objects.items() if d.get("sha256") != hashlib.sha256((ctx.out / p).read_bytes()).hexdigest()]
    need(not bad, f"croissant.json sha256 differs from the file for {bad[:5]}")
    sets = {r.get("@id"): r for r in doc.get("recordSet", [])}
    for rs_id, names in (("gender", GENDER_NAMES), ("status", STATUS_NAMES)):
        rs = sets.get(rs_id, {})
        need(rs.get("dataType") == "sc:Enumeration", f"record set {rs_id} is not an sc:Enumeration")
        got = [d.get(f"{rs_id}/name") for d in sorted(rs.get("data", []), key=lambda d: d.get(f"{rs_id}/index"))]
        need(got == names, f"{rs_id} enumeration names {got}, expected {names}")
        for user in ("labels", "images") if "parquet" in ctx.formats else ("labels",):
            f = next((f for f in sets.get(user, {}).get("field", []) if f.get("@id") == f"{user}/{rs_id}"), {})
            need(f.get("references", {}).get("field", {}).get("@id") == f"{rs_id}/index", f"{user}/{rs_id} does not reference {rs_id}/index")
    splits = sets.get("splits", {})
    got = {d.get("splits/name"): d.get("splits/url") for d in splits.get("data", [])}
    need(
        splits.get("dataType") == "cr:Split"
        and got == {"train": "cr:TrainingSplit", "dev": "cr:ValidationSplit", "test": "cr:TestSplit"},
        f"splits record set is {got}",
    )


def check_croissant_labels(ctx: Ctx, present: list[str]) -> None:
    """mlcroissant reads the `labels` records (labels.csv): the same rows as labels.csv."""
    import mlcroissant as mlc

    _quiet_mlcroissant()
    ds = mlc.Dataset(jsonld=str(ctx.out / "croissant.json"))
    dec = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731
    try:
        got = [
            (dec(r["labels/split"]), image_id_of(dec(r["labels/image"])), int(r["labels/gender"]), int(r["labels/status"]))
            for r in ds.records(record_set="labels")
        ]
    except Exception as e:  # noqa: BLE001 - a client that cannot read the records fails the check
        raise Fail(f"mlcroissant cannot read the labels records: {_root_cause(e)}") from e
    want = [(sp, r[0], r[1], r[2]) for sp, rows in ctx.labels().items() for r in rows]
    need(sorted(got) == sorted(want), f"mlcroissant labels: {len(got)} records, labels.csv has {len(want)} rows, or they differ")


def check_datasets_dir_splits(ctx: Ctx, present: list[str]) -> None:
    """load_dataset(OUT) gives exactly train, validation, test."""
    got = sorted(ctx.hf_dir())
    want = sorted(HF_SPLIT[s] for s in SPLITS)
    need(got == want, f"load_dataset(OUT) gave splits {got}, expected {want}")


def check_datasets_splits(ctx: Ctx, present: list[str]) -> None:
    """datasets maps train/dev/test files to train/validation/test and loads nothing else."""
    dd = ctx.hf()
    got = sorted(dd)
    want = sorted(HF_SPLIT[s] for s in present)
    print(f"     note: datasets split names: {', '.join(f'{s}->{HF_SPLIT[s]}' for s in present)}; loaded {got}")
    need(got == want, f"datasets gave splits {got}, expected {want}")


def check_sha256sums(ctx: Ctx, present: list[str]) -> None:
    """Every file listed in SHA256SUMS matches; every artifact is listed; report.json is not."""
    p = ctx.out / "SHA256SUMS"
    need(p.exists(), "SHA256SUMS is missing")
    listed = {}
    for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        m = re.match(r"^([0-9a-f]{64}) [ *](.+)$", line)
        need(m is not None, f"SHA256SUMS:{n}: not `sha256sum` format: {line[:80]!r}")
        rel = m.group(2)
        need(not rel.startswith("/") and ".." not in rel.split("/"), f"SHA256SUMS:{n}: path {rel!r} is not inside the output")
        listed[rel] = m.group(1)
    bad = []
    for rel, want in listed.items():
        f = ctx.out / rel
        if not f.is_file():
            bad.append(f"{rel}: missing")
            continue
        h = hashlib.sha256()
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        if h.hexdigest() != want:
            bad.append(f"{rel}: FAILED")
    need(not bad, "sha256 mismatch: " + "; ".join(bad[:10]))
    need("report.json" not in listed, "SHA256SUMS lists report.json (a log with timings, not an artifact)")
    expected = ["README.md", "CONTENT_PROVIDERS.txt", "croissant.json", "labels.csv", "original_tags.txt", "labels.metadata.en.txt", "labels.metadata.ja.txt"]
    for s in present:
        for fmt, names in ARTIFACT_NAMES.items():
            if fmt in ctx.formats:
                expected += [n.format(s=s) for n in names]
    if "parquet" in ctx.formats and (ctx.out / "parquet").is_dir():
        expected += [f"parquet/{f.name}" for f in sorted((ctx.out / "parquet").glob("*.parquet"))]
    for d in (ctx.out / "parquet", ctx.out / "idx", ctx.out / "npz"):
        if d.is_dir():
            expected += [f"{d.name}/{f.name}" for f in sorted(d.iterdir()) if f.is_file()]
    unlisted = sorted({e for e in expected if e not in listed})
    need(not unlisted, f"artifacts not in SHA256SUMS: {unlisted}")


def check_card(ctx: Ctx, present: list[str]) -> None:
    """README.md has the attribution and CC BY-SA 4.0; CONTENT_PROVIDERS.txt exists."""
    card = (ctx.out / "README.md").read_text(encoding="utf-8")
    need(ATTRIBUTION in card, f"README.md lacks the attribution string {ATTRIBUTION}")
    need("CC BY-SA 4.0" in card, "README.md does not mention CC BY-SA 4.0")
    import yaml

    need(card.startswith("---\n"), "README.md has no YAML front matter")
    head = card[4:].split("\n---\n", 1)
    need(len(head) == 2, "README.md's YAML front matter is not closed")
    meta = yaml.safe_load(head[0])
    need(isinstance(meta, dict), "README.md's front matter is not a mapping")
    need(meta.get("license") == "cc-by-sa-4.0", f"front matter license {meta.get('license')!r}")
    need("image-classification" in meta.get("task_categories", []), "front matter task_categories lack image-classification")
    need(meta.get("size_categories"), "front matter has no size_categories")
    if "parquet" in ctx.formats:
        files = {d["split"]: d["path"] for d in meta["configs"][0]["data_files"]}
        want = {HF_SPLIT[s]: f"parquet/{s}-*.parquet" for s in SPLITS}
        need(files == want, f"front matter data_files {files}, expected {want}")
        features = {f["name"]: f for f in meta["dataset_info"]["features"]}
        for col, names in (("gender", GENDER_NAMES), ("status", STATUS_NAMES)):
            got = features.get(col, {}).get("dtype", {}).get("class_label", {}).get("names", {})
            need([got.get(str(i), got.get(i)) for i in range(len(got))] == names, f"front matter {col} class names {got}, expected {names}")
    cp = ctx.out / "CONTENT_PROVIDERS.txt"
    need(cp.is_file(), "CONTENT_PROVIDERS.txt is missing")
    need(cp.read_text(encoding="utf-8").strip() != "", "CONTENT_PROVIDERS.txt is empty")


def check_copied_metadata(ctx: Ctx, present: list[str]) -> None:
    """The upstream metadata files are copied; labels.csv equals --metadata-labels when given."""
    for name in ("labels.csv", "original_tags.txt", "labels.metadata.en.txt", "labels.metadata.ja.txt"):
        need((ctx.out / name).is_file(), f"{name} is missing from the output")
    if ctx.labels_ref != ctx.out / "labels.csv":
        need(
            (ctx.out / "labels.csv").read_bytes() == ctx.labels_ref.read_bytes(),
            f"OUT/labels.csv differs from {ctx.labels_ref}",
        )


def check_images_dir(ctx: Ctx, present: list[str]) -> None:
    """--formats images: images_S/NNNNNNNN.jpg for every packed image, S x S RGB JPEG, in SHA256SUMS."""
    S = ctx.S
    if S is None:
        dirs = sorted(ctx.out.glob("images_*"))
        need(dirs, "no images_S directory")
        S = int(dirs[0].name.split("_", 1)[1])
    d = ctx.out / f"images_{S}"
    need(d.is_dir(), f"images_{S}/ is missing")
    ids = []
    for sp in present:
        p = ctx.out / f"npz/kaokore-{sp}-labels.npz"
        if p.exists():
            with np.load(p) as z:
                ids += [int(v) for v in z["image_id"]]
        else:
            for f in SplitData(ctx.out, sp).parquet_files():
                ids += pq.read_table(f, columns=["image_id"]).column(0).to_pylist()
    names = {f.name for f in d.iterdir()}
    absent = [i for i in ids if f"{i:08d}.jpg" not in names]
    need(not absent, f"images_{S}/ lacks {len(absent)} packed images: {absent[:10]}")
    for i in ids[:: max(1, len(ids) // 50)]:  # a sample is enough: SHA256SUMS covers the rest
        with Image.open(d / f"{i:08d}.jpg") as im:
            need(im.format == "JPEG" and im.mode == "RGB" and im.size == (S, S),
                 f"images_{S}/{i:08d}.jpg is {im.format} {im.mode} {im.size}, expected an RGB JPEG {S}x{S}")
    sums = (ctx.out / "SHA256SUMS").read_text(encoding="utf-8")
    unlisted = [n for n in sorted(names) if f" images_{S}/{n}" not in sums and f"*images_{S}/{n}" not in sums]
    need(not unlisted, f"{len(unlisted)} files of images_{S}/ are not in SHA256SUMS: {unlisted[:5]}")


def check_report(ctx: Ctx, present: list[str]) -> None:
    """report.json parses as a JSON object."""
    rep = ctx.report()
    need(isinstance(rep, dict), "report.json is not a JSON object")


def _kaokore_json(ctx: Ctx, args: list[str]) -> tuple[int, dict]:
    """Run `kaokore ARGS`; its exit status and its stdout, which must be one JSON object
    with `"schema": 1` (README, "Machine-readable output")."""
    p = subprocess.run([ctx.kaokore, *args], capture_output=True, timeout=600)
    where = "kaokore " + " ".join(args[:2])
    try:
        doc = json.loads(p.stdout.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise Fail(f"{where}: stdout is not one JSON document ({e}); exit {p.returncode}, stderr {p.stderr[-500:]!r}") from e
    need(isinstance(doc, dict), f"{where}: not a JSON object")
    need(doc.get("schema") == 1, f"{where}: schema {doc.get('schema')!r}, expected 1")
    return p.returncode, doc


def check_verify_json(ctx: Ctx, present: list[str]) -> None:
    """`kaokore verify --json OUT`: exit 0, ok, no problem, every SHA256SUMS line checksummed,
    the rows report.json says were packed."""
    rc, doc = _kaokore_json(ctx, ["verify", "--json", str(ctx.out)])
    need(rc == 0, f"exit {rc}, problems {doc.get('problems')!r:.500}")
    need(doc.get("ok") is True and doc.get("problems") == [], f"ok {doc.get('ok')!r}, problems {doc.get('problems')!r:.500}")
    checks = doc.get("checks")
    need(isinstance(checks, dict), f"checks is {checks!r}")
    sums = [ln for ln in (ctx.out / "SHA256SUMS").read_text(encoding="utf-8").splitlines() if ln.strip()]
    need(checks.get("checksums") == len(sums), f"checks.checksums {checks.get('checksums')!r}, SHA256SUMS has {len(sums)} lines")
    rows = checks.get("rows")
    packed = ctx.report()["counts"]["packed"]
    need(isinstance(rows, dict) and list(rows) == list(SPLITS), f"checks.rows {rows!r}, expected the splits {SPLITS}")
    for sp in SPLITS:
        need(rows[sp] == packed.get(sp, 0), f"checks.rows.{sp} {rows[sp]!r}, report.json packed {packed.get(sp, 0)}")
    pixel_rows = checks.get("pixel_rows")
    need(isinstance(pixel_rows, int) and 0 < pixel_rows <= sum(rows.values()), f"checks.pixel_rows {pixel_rows!r} of {sum(rows.values())} rows")
    need(isinstance(doc.get("extra_files"), list) and isinstance(doc.get("extra_files_count"), int), "extra_files or extra_files_count missing")


INFO_KEYS = {
    "schema", "version", "source", "lines", "urls", "blank_lines", "labelled", "labelled_without_url",
    "unlabelled_urls", "splits", "hosts", "providers", "size_requests", "warnings", "cache",
}


def check_info_json(ctx: Ctx, present: list[str]) -> None:
    """`kaokore info --json` of the build's version and metadata: the counts of labels.csv
    per split and class, and those report.json has."""
    rep = ctx.report()
    args = ["info", "--json", "--dataset-version", rep["dataset_version"], "--cache", str(_TMP / "no-cache")]
    meta = ctx.labels_ref.parent
    if ctx.labels_ref != ctx.out / "labels.csv" and (meta / "urls.txt").is_file():
        args += ["--metadata", str(meta)]
    rc, info = _kaokore_json(ctx, args)
    need(rc == 0, f"exit {rc}")
    need(INFO_KEYS <= set(info), f"keys missing: {sorted(INFO_KEYS - set(info))}")
    need(info["version"] == rep["dataset_version"], f"version {info['version']!r}, report.json says {rep['dataset_version']!r}")
    need(info["cache"] is None, f"cache {info['cache']!r} for a cache directory that does not exist")
    counts = rep["counts"]
    for key in ("urls", "blank_lines", "labelled", "labelled_without_url"):
        need(info[key] == counts[key], f"{key} {info[key]!r}, report.json says {counts[key]!r}")
    need(list(info["splits"]) == list(SPLITS), f"splits {list(info['splits'])}, expected {list(SPLITS)}")
    labels = ctx.labels()
    for sp in SPLITS:
        s = info["splits"][sp]
        rows = labels[sp]
        need(s["images"] == len(rows), f"splits.{sp}.images {s['images']}, labels.csv has {len(rows)}")
        for key, names, col in (("gender", GENDER_NAMES, 1), ("status", STATUS_NAMES, 2)):
            want = {names[c]: n for c in range(len(names)) if (n := sum(1 for r in rows if r[col] == c))}
            need(s[key] == want, f"splits.{sp}.{key} {s[key]}, labels.csv has {want}")
        packed = counts["packed"].get(sp, 0)
        need(packed <= s["with_url"] <= s["images"], f"splits.{sp}: with_url {s['with_url']}, images {s['images']}, packed {packed}")
    need(sum(info["hosts"].values()) == info["urls"], f"hosts {info['hosts']} do not add up to {info['urls']} URLs")


# --------------------------------------------------------------------------- driver


# --------------------------------------------------------------------------- --formats mnist
#
# torchvision itself (with torch) is too heavy to install for this test; its MNIST
# reader logic is reimplemented below from torchvision/datasets/mnist.py
# (read_sn3_pascalvincent_tensor, read_image_file, read_label_file), which KMNIST uses.

_SN3_DTYPES = {8: np.uint8, 9: np.int8, 11: ">i2", 12: ">i4", 13: ">f4", 14: ">f8"}


def _mnist_path(ctx: Ctx, split: str, kind: str) -> Path:
    dim = 3 if kind == "images" else 1
    return ctx.out / f"mnist/kaokore-{split}-{kind}-idx{dim}-ubyte.gz"


def _read_sn3_like_torchvision(path: Path) -> np.ndarray:
    """torchvision's read_sn3_pascalvincent_tensor(path, strict=True) on the extracted file
    (its MNIST/KMNIST classes gunzip what they download): magic = type * 256 + ndim, the
    dims big-endian, then exactly prod(dims) items."""
    with gzip.open(path, "rb") as f:
        data = f.read()

    def get_int(b: bytes) -> int:
        return int.from_bytes(b, "big")

    magic = get_int(data[0:4])
    nd = magic % 256
    ty = magic // 256
    need(1 <= nd <= 3, f"{path.name}: {nd} dimensions, torchvision accepts 1 to 3")
    need(8 <= ty <= 14 and ty in _SN3_DTYPES, f"{path.name}: type code {ty}, unknown to torchvision")
    s = [get_int(data[4 * (i + 1) : 4 * (i + 2)]) for i in range(nd)]
    parsed = np.frombuffer(data, dtype=_SN3_DTYPES[ty], offset=4 * (nd + 1))
    need(parsed.shape[0] == int(np.prod(s)), f"{path.name}: {parsed.shape[0]} items, header dims {s}")
    return parsed.reshape(*s)


def check_mnist_torchvision(ctx: Ctx, sd: SplitData) -> None:
    """mnist/: torchvision's read_image_file (uint8, 3 dims) and read_label_file (uint8, 1 dim)
    load the split with the npz's shape and labels."""
    images = _read_sn3_like_torchvision(_mnist_path(ctx, sd.split, "images"))
    need(images.dtype == np.uint8 and images.ndim == 3, f"read_image_file: dtype {images.dtype}, {images.ndim} dims")
    n, h, w = images.shape
    rgb = sd.npz_images()
    need(images.shape == rgb.shape[:3], f"mnist images shape {images.shape}, npz has {rgb.shape}")
    ctx.set_S(h, f"mnist/kaokore-{sd.split}-images")
    lab = sd.npz_labels()
    for kind in ("gender", "status"):
        labels = _read_sn3_like_torchvision(_mnist_path(ctx, sd.split, kind))
        need(labels.dtype == np.uint8 and labels.ndim == 1, f"read_label_file {kind}: dtype {labels.dtype}, {labels.ndim} dims")
        need(np.array_equal(labels.astype(np.int64), lab[kind].astype(np.int64)), f"mnist {kind} labels differ from the npz's: {first_diff(labels, lab[kind])}")


def check_mnist_idx2numpy(ctx: Ctx, sd: SplitData) -> None:
    """idx2numpy loads mnist/ as it loads KMNIST: (N,S,S) uint8 images, (N,) uint8 labels equal to the npz's."""
    import idx2numpy

    arrs = {}
    for kind in ("images", "gender", "status"):
        with gzip.open(_mnist_path(ctx, sd.split, kind), "rb") as f:
            arrs[kind] = idx2numpy.convert_from_file(f)
    rgb = sd.npz_images()
    im = arrs["images"]
    need(im.dtype == np.uint8 and im.shape == rgb.shape[:3], f"idx2numpy mnist images: dtype {im.dtype}, shape {im.shape}, expected uint8 {rgb.shape[:3]}")
    lab = sd.npz_labels()
    for kind in ("gender", "status"):
        need(arrs[kind].dtype == np.uint8 and np.array_equal(arrs[kind], lab[kind]), f"idx2numpy mnist {kind} differs from the npz's")


def check_mnist_gray(ctx: Ctx, sd: SplitData) -> None:
    """Every mnist gray row equals PIL.Image.fromarray(npz RGB row).convert("L")."""
    images = _read_sn3_like_torchvision(_mnist_path(ctx, sd.split, "images"))
    rgb = sd.npz_images()
    need(images.shape == rgb.shape[:3], f"mnist images shape {images.shape}, npz has {rgb.shape}")
    for i in range(rgb.shape[0]):
        want = np.asarray(Image.fromarray(rgb[i]).convert("L"))
        if not np.array_equal(images[i], want):
            need(False, f"row {i} (image {int(sd.ids()[i]):08d}): gray differs from Pillow's convert('L'): {first_diff(images[i], want)}")


# --------------------------------------------------------------------------- tfds (TensorFlow)

# what TFDS calls each split (`dev` is `validation`, as in datasets)
TFDS_SPLIT = {"train": "train", "dev": "validation", "test": "test"}
# TensorFlow decodes JPEG with its own IDCT settings: besides the mean (as for Pillow), the
# largest difference of one value from kaokore's decoder is bounded
JPEG_TF_MAX_ABS_DIFF = 32
TF_SKIPPED = "tensorflow-cpu/tensorflow-datasets not installed (scripts/setup_venv.sh --tf)"


def tf_modules():
    """(tensorflow, tensorflow_datasets), or None when they do not import."""
    if "tf" not in _TF:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        os.environ.setdefault("TFDS_DATA_DIR", str(_TMP / "tfds-data"))
        try:
            import tensorflow as tf
            import tensorflow_datasets as tfds

            from absl import logging as absl_logging

            absl_logging.set_verbosity(absl_logging.ERROR)
            tf.get_logger().setLevel("ERROR")
            _TF["tf"] = (tf, tfds)
        except Exception:  # noqa: BLE001 - not installed, or an install that cannot import
            _TF["tf"] = None
    return _TF["tf"]


_TF: dict = {}


def _tfds_dir(ctx: Ctx) -> Path:
    """OUT/tfds/kaokore/X.Y.Z: the one version directory of the build."""
    dirs = sorted(p for p in (ctx.out / "tfds" / "kaokore").glob("*") if p.is_dir())
    need(len(dirs) == 1 and re.fullmatch(r"\d+\.\d+\.\d+", dirs[0].name) is not None,
         f"tfds/kaokore/ holds {[d.name for d in dirs]}, expected one X.Y.Z directory")
    return dirs[0]


def _tfds_builder(ctx: Ctx):
    if "builder" not in ctx.tags_cache:
        _, tfds = tf_modules()
        ctx.tags_cache["builder"] = tfds.builder_from_directory(str(_tfds_dir(ctx)))
    return ctx.tags_cache["builder"]


def _tfds_shards(ctx: Ctx, split: str) -> list[Path]:
    """kaokore-{split}.tfrecord-NNNNN-of-MMMMM, numbered from 00000 without a gap."""
    name = TFDS_SPLIT[split]
    shards = sorted(_tfds_dir(ctx).glob(f"kaokore-{name}.tfrecord-*"))
    total = len(shards)
    need([f.name for f in shards] == [f"kaokore-{name}.tfrecord-{k:05d}-of-{total:05d}" for k in range(total)],
         f"tfds shards of {name} are {[f.name for f in shards]}, expected kaokore-{name}.tfrecord-00000-of-{total:05d} onwards")
    return shards


def _tf_compare_image(where: str, data: bytes, img: np.ndarray, ref: np.ndarray, stats: dict) -> None:
    """A decoded image against its npz row: exact for a stored PNG, within TensorFlow's JPEG
    decoding differences for a stored JPEG (the fetched file, which kaokore decoded itself)."""
    need(img.shape == ref.shape and img.dtype == np.uint8, f"{where}: image is {img.dtype} {img.shape}, expected uint8 {ref.shape}")
    diff = np.abs(img.astype(np.int16) - ref.astype(np.int16))
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        need(int(diff.max()) == 0, f"{where}: PNG pixels differ from npz: " + first_diff(img, ref))
        stats["png"] += 1
    else:
        need(data[:3] == b"\xff\xd8\xff", f"{where}: image bytes are neither PNG nor JPEG")
        mx, mean = int(diff.max()), float(diff.mean())
        need(mx <= JPEG_TF_MAX_ABS_DIFF and mean < JPEG_MAX_MEAN_ABS_DIFF,
             f"{where}: JPEG decodes {mx} max / {mean:.2f} mean abs difference from npz (limits {JPEG_TF_MAX_ABS_DIFF} / {JPEG_MAX_MEAN_ABS_DIFF})")
        stats["jpg"] += 1
        stats["max"] = max(stats["max"], mx)
        stats["mean"] = max(stats["mean"], mean)


def check_tfds_info(ctx: Ctx, present: list[str]) -> None:
    """tfds.builder_from_directory(OUT/tfds/kaokore/X.Y.Z): name, version, features (Image
    (S, S, 3) uint8, ClassLabel names), the splits with rows (an empty one is not listed),
    licence and citation, and every file of the directory in SHA256SUMS."""
    if tf_modules() is None:
        raise Skip(TF_SKIPPED)
    b = _tfds_builder(ctx)
    d = _tfds_dir(ctx)
    need(b.info.name == "kaokore" and str(b.info.version) == d.name, f"builder is {b.info.name} {b.info.version}, directory {d.name}")
    fe = b.info.features
    need(fe["gender"].names == GENDER_NAMES, f"features['gender'].names is {fe['gender'].names}")
    need(fe["status"].names == STATUS_NAMES, f"features['status'].names is {fe['status'].names}")
    shape = tuple(fe["image"].shape)
    need(len(shape) == 3 and shape[0] == shape[1] and shape[2] == 3 and fe["image"].np_dtype == np.uint8,
         f"features['image'] is {fe['image']!r}, expected Image((S, S, 3), uint8)")
    ctx.set_S(shape[0], "tfds features.json")
    want = {TFDS_SPLIT[s]: len(ctx.labels()[s]) for s in SPLITS}
    got = {name: info.num_examples for name, info in b.info.splits.items()}
    for s in SPLITS:
        n = len(SplitData(ctx.out, s).ids()) if s in present and "npz" in ctx.formats else None
        if n == 0:
            need(TFDS_SPLIT[s] not in got, f"tfds lists the empty split {TFDS_SPLIT[s]}")
        elif n is not None:
            need(got.get(TFDS_SPLIT[s]) == n, f"tfds split {TFDS_SPLIT[s]} has {got.get(TFDS_SPLIT[s])} examples, npz has {n}")
    need(set(got) <= set(want), f"tfds splits {sorted(got)}")
    need(b.info.disable_shuffling, "dataset_info.json does not mark the labels.csv order (disableShuffling)")
    need("CC BY-SA 4.0" in b.info.redistribution_info.license and DOI in b.info.redistribution_info.license,
         f"redistribution_info.license is {b.info.redistribution_info.license!r}")
    need("KaoKore" in b.info.citation and ATTRIBUTION in b.info.description, "citation or description lacks KaoKore's attribution")
    listed = {line[66:] for line in (ctx.out / "SHA256SUMS").read_text(encoding="utf-8").splitlines() if line.strip()}
    files = sorted(str(f.relative_to(ctx.out)) for f in d.iterdir())
    need(files and all(f in listed for f in files), f"tfds files not in SHA256SUMS: {[f for f in files if f not in listed]}")
    print(f"     note: tfds {b.info.full_name}: splits {got}")


def check_tfds_builder(ctx: Ctx, sd: SplitData) -> None:
    """builder.as_dataset(split=...): every example in order, image (S, S, 3) uint8 equal to
    the npz row (exact for a stored PNG, within TensorFlow's JPEG decoding for a stored
    JPEG), image_id and labels equal to the npz's, class names from the features."""
    if tf_modules() is None:
        raise Skip(TF_SKIPPED)
    tf, tfds = tf_modules()
    b = _tfds_builder(ctx)
    name = TFDS_SPLIT[sd.split]
    ids, lab, ref = sd.ids(), sd.npz_labels(), sd.npz_images()
    if len(ids) == 0:
        need(name not in b.info.splits, f"tfds lists the empty split {name}")
        print(f"     note: {sd.split} is empty: not a tfds split (TFDS reads no empty split)")
        return
    decoded = b.as_dataset(split=name)
    raw = b.as_dataset(split=name, decoders={"image": tfds.decode.SkipDecoding()})
    gender_names = b.info.features["gender"].names
    stats = {"png": 0, "jpg": 0, "max": 0, "mean": 0.0}
    k = 0
    for ex, rex in zip(decoded.as_numpy_iterator(), raw.as_numpy_iterator()):
        need(k < len(ids), f"tfds {name}: more examples than the npz ({len(ids)})")
        where = f"tfds {name}[{k}] (image_id {int(ids[k])})"
        need(int(ex["image_id"]) == int(ids[k]) == int(rex["image_id"]), f"{where}: image_id {int(ex['image_id'])}")
        need((int(ex["gender"]), int(ex["status"])) == (int(lab["gender"][k]), int(lab["status"][k])),
             f"{where}: gender/status {int(ex['gender'])}/{int(ex['status'])}, npz has {int(lab['gender'][k])}/{int(lab['status'][k])}")
        need(gender_names[int(ex["gender"])] == GENDER_NAMES[int(lab["gender"][k])], f"{where}: gender name")
        _tf_compare_image(where, bytes(rex["image"]), ex["image"], ref[k], stats)
        k += 1
    need(k == len(ids), f"tfds {name}: {k} examples, npz has {len(ids)}")
    print(f"     note: tfds {name}: {k} examples; {stats['png']} PNG exact, {stats['jpg']} JPEG "
          f"(worst max abs diff {stats['max']}, worst mean {stats['mean']:.3f})")


def check_tfds_tfdata(ctx: Ctx, sd: SplitData) -> None:
    """Plain tf.data.TFRecordDataset over the split's shards and tf.io.parse_single_example
    read the same records: ids, labels, metadata (url, original_tags), the image bytes equal
    to Parquet's when it was built, decoded by tf.io.decode_image as the npz row."""
    if tf_modules() is None:
        raise Skip(TF_SKIPPED)
    tf, _ = tf_modules()
    ids, lab, ref = sd.ids(), sd.npz_labels(), sd.npz_images()
    shards = _tfds_shards(ctx, sd.split)
    if len(ids) == 0:
        need(not shards, f"the empty split {sd.split} has shards {[f.name for f in shards]}")
        return
    text = tf.io.FixedLenFeature([], tf.string)
    spec = {
        "image": text,
        "image_id": tf.io.FixedLenFeature([], tf.int64),
        "gender": tf.io.FixedLenFeature([], tf.int64),
        "status": tf.io.FixedLenFeature([], tf.int64),
        "year_from": tf.io.FixedLenFeature([], tf.int64),
        "year_to": tf.io.FixedLenFeature([], tf.int64),
        "tags": tf.io.RaggedFeature(tf.string),
        **{k: text for k in ("url", "provider", "source_title", "source_id", "orientation", "era", "holder", "original_tags")},
    }
    parquet_images = None
    if "parquet" in ctx.formats:
        parquet_images = (
            row["bytes"]
            for f in sd.parquet_files()
            for batch in pq.ParquetFile(f).iter_batches(columns=["image"], batch_size=64)
            for row in batch.column("image").to_pylist()
        )
    tags_line = _original_tags(ctx)
    ds = tf.data.TFRecordDataset([str(f) for f in shards]).map(lambda r: tf.io.parse_single_example(r, spec))
    stats = {"png": 0, "jpg": 0, "max": 0, "mean": 0.0}
    k = 0
    for ex in ds.as_numpy_iterator():
        need(k < len(ids), f"tf.data {sd.split}: more records than the npz ({len(ids)})")
        iid = int(ids[k])
        where = f"tf.data {sd.split}[{k}] (image_id {iid})"
        need(int(ex["image_id"]) == iid, f"{where}: image_id {int(ex['image_id'])}")
        need((int(ex["gender"]), int(ex["status"])) == (int(lab["gender"][k]), int(lab["status"][k])), f"{where}: labels differ from npz")
        need(ex["url"].decode().startswith(("http://", "https://")), f"{where}: url {ex['url']!r}")
        if tags_line is not None and iid in tags_line:
            need(ex["original_tags"].decode().rstrip() == tags_line[iid], f"{where}: original_tags is not the line of original_tags.txt")
        need(all(isinstance(t, bytes) for t in ex["tags"]), f"{where}: tags are {ex['tags']!r}")
        data = bytes(ex["image"])
        if parquet_images is not None:
            need(data == next(parquet_images, None), f"{where}: image bytes differ from Parquet's")
        img = tf.io.decode_image(data, channels=3, expand_animations=False).numpy()
        _tf_compare_image(where, data, img, ref[k], stats)
        k += 1
    need(k == len(ids), f"tf.data {sd.split}: {k} records, npz has {len(ids)}")
    print(f"     note: tf.data {sd.split}: {k} records in {len(shards)} shard(s)"
          + (", image bytes = Parquet's" if parquet_images is not None else ""))


PER_SPLIT = [
    ("idx", "idx_headers", check_idx_headers),
    ("idx", "idx_idx2numpy", check_idx_idx2numpy),
    ("npz", "npz", check_npz),
    ("npz", "labels_csv", check_labels_csv),
    ("idx+npz", "idx_equals_npz", check_idx_equals_npz),
    ("parquet", "parquet_schema", check_parquet_schema),
    ("parquet", "parquet_metadata", check_parquet_metadata),
    ("parquet+npz", "parquet_rows", check_parquet_rows),
    ("parquet+npz", "pandas", check_pandas),
    ("parquet+npz", "polars", check_polars),
    ("parquet+npz", "duckdb", check_duckdb),
    ("parquet+npz", "datasets", check_datasets),
    ("webdataset+npz", "webdataset_tar", check_webdataset_tar),
    ("webdataset+npz", "webdataset_package", check_webdataset_package),
    ("webdataset+npz", "webdataset_datasets", check_webdataset_datasets),
    ("parquet+npz", "datasets_dir", check_datasets_dir),
    ("parquet+npz", "croissant_records", check_croissant_records),
    ("mnist+npz", "mnist_torchvision", check_mnist_torchvision),
    ("mnist+npz", "mnist_idx2numpy", check_mnist_idx2numpy),
    ("mnist+npz", "mnist_gray", check_mnist_gray),
    ("tfds+npz", "tfds_builder", check_tfds_builder),
    ("tfds+npz", "tfds_tfdata", check_tfds_tfdata),
]
GLOBAL = [
    ("parquet", "datasets_splits", check_datasets_splits),
    ("parquet", "datasets_dir_splits", check_datasets_dir_splits),
    ("", "croissant_validate", check_croissant_validate),
    ("", "croissant", check_croissant),
    ("", "croissant_labels", check_croissant_labels),
    ("", "sha256sums", check_sha256sums),
    ("", "dataset_card", check_card),
    ("", "copied_metadata", check_copied_metadata),
    ("", "report_json", check_report),
    ("images", "images_dir", check_images_dir),
    ("webdataset", "webdataset_sums", check_webdataset_sums),
    ("tfds", "tfds_info", check_tfds_info),
    ("kaokore", "verify_json", check_verify_json),
    ("kaokore", "info_json", check_info_json),
]


SELF_TEST = [
    # (--corrupt of make_fake_output.py, checks that must fail (the rest must pass))
    (None, set()),
    ("pixel", {"idx_equals_npz[train]", "parquet_rows[train]", "datasets[train]", "datasets_dir[train]", "croissant_records[train]"}),
    ("swap-labels", {"labels_csv[train]"}),
    ("no-hf-metadata", {f"{c}[{s}]" for c in ("parquet_metadata", "datasets") for s in SPLITS}),
    ("order", {"labels_csv[dev]"}),
    ("unlisted-missing", {"labels_csv[test]"}),
    # the YAML header's features win over the files' own: load_dataset(OUT) gets its names
    ("hub-class-names", {"dataset_card"} | {f"datasets_dir[{s}]" for s in SPLITS}),
    # mlcroissant itself refuses labels.csv when its sha256 does not match
    ("croissant-sha", {"croissant", "croissant_labels"}),
]


def self_test() -> int:
    """Check the checker: a fake build must pass, and each corruption must fail exactly where expected."""
    import contextlib

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import make_fake_output

    passed = failed = 0
    base = _TMP / "self-test"
    for corrupt, must_fail in SELF_TEST:
        d = base / (corrupt or "clean")
        with contextlib.redirect_stderr(io.StringIO()):
            make_fake_output.main([str(d)] + (["--corrupt", corrupt] if corrupt else []))
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            rc = main([str(d)], cleanup=False)
        failing = {ln.split(":", 1)[0][5:] for ln in buf.getvalue().splitlines() if ln.startswith("FAIL ")}
        ok = failing == must_fail and rc == (1 if must_fail else 0)
        name = corrupt or "clean"
        if ok:
            passed += 1
            print(f"ok   self-test {name}: fails {sorted(failing) or 'nothing'}")
        else:
            failed += 1
            print(f"FAIL self-test {name}: exit {rc}, failed {sorted(failing)}, expected {sorted(must_fail)}")
            print("\n".join("     | " + ln for ln in buf.getvalue().splitlines() if not ln.startswith("ok ")))
    shutil.rmtree(_TMP, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def main(argv: list[str] | None = None, cleanup: bool = True) -> int:
    if argv is None:
        argv = sys.argv[1:]
    if argv == ["--self-test"]:
        return self_test()
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="output directory of `kaokore build` (or --self-test alone)")
    ap.add_argument("--metadata-labels", type=Path, help="labels.csv the build was made from (default OUT/labels.csv)")
    ap.add_argument("--formats", default="idx,npz,parquet", help="formats to check (default idx,npz,parquet)")
    ap.add_argument("--kaokore", help="the kaokore binary: also check `verify --json` and `info --json`")
    args = ap.parse_args(argv)
    out = args.out
    if not out.is_dir():
        print(f"interop_check: {out} is not a directory", file=sys.stderr)
        return 2
    formats = {f.strip() for f in args.formats.split(",") if f.strip()}
    unknown = formats - {"idx", "npz", "parquet", "images", "webdataset", "mnist", "tfds"}
    if unknown:
        print(f"interop_check: unknown formats {sorted(unknown)}", file=sys.stderr)
        return 2
    ctx = Ctx(out, args.metadata_labels or out / "labels.csv", formats, args.kaokore)

    passed = failed = skipped = 0

    def run(name: str, fn, *a) -> None:
        nonlocal passed, failed, skipped
        t0 = time.monotonic()
        try:
            fn(*a)
        except Skip as e:
            skipped += 1
            print(f"skip {name}: {e}", flush=True)
        except Fail as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        except Exception as e:  # noqa: BLE001 - any crash of a client is a failed check
            failed += 1
            tb = traceback.extract_tb(e.__traceback__)[-1]
            print(f"FAIL {name}: {type(e).__name__}: {e} (at {Path(tb.filename).name}:{tb.lineno})", flush=True)
        else:
            passed += 1
            print(f"ok   {name} ({time.monotonic() - t0:.1f}s)", flush=True)

    def present_in(sp: str) -> bool:
        return any(
            (out / n.format(s=sp)).exists() for names in ARTIFACT_NAMES.values() for n in names
        ) or any((out / "parquet").glob(f"{sp}-*-of-*.parquet"))

    present = [sp for sp in SPLITS if present_in(sp)]
    try:
        labelled = {sp for sp, rows in ctx.labels().items() if rows}
    except Exception:  # noqa: BLE001 - reported by the checks themselves
        labelled = set()

    def splits_check() -> None:
        need(present, f"no split's artifacts found in {out}")
        missing = sorted(labelled - set(present), key=SPLITS.index)
        need(not missing, f"labels.csv has splits {missing} but no artifacts for them")

    run("splits_present", splits_check)

    def runnable(req: str) -> bool:
        # `kaokore`: the checks that run the binary, when it is given.
        return all(r in formats or (r == "kaokore" and ctx.kaokore) for r in req.split("+") if r)

    for sp in present:
        sd = SplitData(out, sp)
        for req, name, fn in PER_SPLIT:
            if runnable(req):
                run(f"{name}[{sp}]", fn, ctx, sd)
        del sd
    for req, name, fn in GLOBAL:
        if runnable(req):
            run(name, fn, ctx, present)

    if cleanup:
        shutil.rmtree(_TMP, ignore_errors=True)
    print(f"{passed} passed, {failed} failed" + (f", {skipped} skipped" if skipped else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
