//! Cross-language check: numpy and pyarrow read what pack writes, and the NumPy snippet of
//! the dataset card runs as written. Runs only when `KAOKORE_PYTHON` names a Python with
//! numpy and pyarrow (e.g. a virtualenv's `bin/python`); otherwise it says so and passes.

use kaokore::pack;
use kaokore::progress::Progress;

use crate::support::inline::*;

const CHECK: &str = r#"
import gzip, json, re, sys
import numpy as np
import pyarrow.parquet as pq

out, S = sys.argv[1], int(sys.argv[2])
for split in ["train", "dev", "test"]:
    imgs = np.load(f"{out}/npz/kaokore-{split}-imgs.npz")["arr_0"]
    labels = np.load(f"{out}/npz/kaokore-{split}-labels.npz")
    n = imgs.shape[0]
    assert imgs.dtype == np.uint8 and imgs.shape == (n, S, S, 3), imgs.shape
    assert labels["gender"].dtype == np.uint8 and labels["status"].dtype == np.uint8
    assert labels["image_id"].dtype == np.int32 and labels["image_id"].shape == (n,)
    with gzip.open(f"{out}/idx/kaokore-{split}-images-idx4-ubyte.gz") as f:
        raw = f.read()
    assert raw[:4] == b"\x00\x00\x08\x04"
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=4, offset=4))
    assert dims == (n, S, S, 3), dims
    assert (np.frombuffer(raw, np.uint8, offset=20).reshape(dims) == imgs).all()
    path = f"{out}/parquet/{split}-00000-of-00001.parquet"
    table = pq.read_table(path)
    assert table.num_rows == n
    assert (table.column("image_id").to_numpy() == labels["image_id"]).all()
    assert (table.column("gender").to_numpy() == labels["gender"]).all()
    assert str(table.schema.field("image").type) == "struct<bytes: binary, path: string>"
    assert str(table.schema.field("tags").type) == "list<item: string>"
    meta = pq.read_metadata(path).metadata
    features = json.loads(meta[b"huggingface"])["info"]["features"]
    assert list(features) == table.column_names, (list(features), table.column_names)
    assert json.loads(meta[b"kaokore"])["size"] == S

# The NumPy snippet of the dataset card, run from the output directory.
import os
os.chdir(out)
card = open("README.md", encoding="utf-8").read()
snippet = re.search(r"NumPy:\n\n```python\n(.*?)```", card, re.S).group(1)
scope = {}
exec(snippet, scope)
assert scope["images"].ndim == 4 and scope["gender"].ndim == 1
print("interop ok")
"#;

#[test]
fn numpy_and_pyarrow_read_the_artifacts() {
    let Some(python) = std::env::var_os("KAOKORE_PYTHON") else {
        // scripts/test.sh (and so CI) always sets it; a bare `cargo test` may not have Python.
        assert!(
            std::env::var_os("CI").is_none(),
            "KAOKORE_PYTHON must name a Python with numpy and pyarrow in CI"
        );
        eprintln!("KAOKORE_PYTHON not set: skipping the numpy/pyarrow check");
        return;
    };
    const S: u32 = 48;
    let inline = inline_dataset(40, S, &ALL_KINDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let source = MapSource::new(inline.files);
    pack::pack(
        &inline.dataset,
        &source,
        &kaokore::pipeline::IMAGE_CHAIN,
        &options(S, 2, "idx,npz,parquet"),
        &out,
        &Progress::hidden("pack", 0),
    )
    .unwrap();
    let run = std::process::Command::new(python)
        .arg("-c")
        .arg(CHECK)
        .arg(&out)
        .arg(S.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success() && stdout.contains("interop ok"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
}
