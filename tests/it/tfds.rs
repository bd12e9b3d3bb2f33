//! `--formats tfds`: the TFDS directory's records and metadata, determinism, shard
//! splitting, an empty split, and verify catching a flipped byte even when SHA256SUMS was
//! updated to match.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kaokore::metadata::{DatasetVersion, Split};
use kaokore::pack::format::SHARD_SIZE;
use kaokore::pack::{self, tfds};
use kaokore::progress::Progress;
use kaokore::verify::verify;
use ndarray::{Array1, Array4, Axis};
use ndarray_npy::NpzReader;

use crate::support::inline::*;
use crate::support::tree;

const S: u32 = 32;

fn pack_into(out: &Path, jobs: usize, formats: &str, shard_bytes: u64) -> pack::PackSummary {
    pack_sharded(out, S, jobs, formats, shard_bytes)
}

fn build(formats: &str, shard_bytes: u64) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    pack_into(&out, 2, formats, shard_bytes);
    (dir, out)
}

/// `tfds/kaokore/1.0.0` (the fixture is KaoKore 1.0).
fn tfds_dir() -> String {
    tfds::builder_dir(DatasetVersion::V1_0)
}

/// The shards of a split in `out`, in order.
fn shards(out: &Path, split: Split) -> Vec<PathBuf> {
    let prefix = format!("kaokore-{}.tfrecord-", tfds::tfds_split(split));
    let mut found: Vec<PathBuf> = std::fs::read_dir(out.join(tfds_dir()))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(&prefix)
        })
        .collect();
    found.sort();
    found
}

/// Every record of a file.
fn records(path: &Path) -> Vec<Vec<u8>> {
    let bytes = std::fs::read(path).unwrap();
    let len = bytes.len() as u64;
    let mut r = tfds::TfRecordReader::new(std::io::Cursor::new(bytes), Some(len));
    let mut out = Vec::new();
    while let Some(record) = r.next_record(u64::MAX).unwrap() {
        out.push(record);
    }
    out
}

fn int(e: &tfds::Example<'_>, name: &str) -> i64 {
    match &e.features[name] {
        tfds::Feature::Int64(v) if v.len() == 1 => v[0],
        other => panic!("{name}: {other:?}"),
    }
}

fn bytes<'a>(e: &'a tfds::Example<'_>, name: &str) -> Vec<&'a [u8]> {
    match &e.features[name] {
        tfds::Feature::Bytes(v) => v.clone(),
        other => panic!("{name}: {other:?}"),
    }
}

fn info(out: &Path) -> serde_json::Value {
    let path = out.join(format!("{}/dataset_info.json", tfds_dir()));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn problems(out: &Path) -> Vec<String> {
    verify(out)
        .unwrap()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn records_hold_each_row_in_label_order_with_its_metadata() {
    let (_dir, out) = build("npz,parquet,tfds", SHARD_SIZE.default_value());
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let info = info(&out);
    assert_eq!(info["version"], "1.0.0");
    let mut png = 0;
    for split in Split::ALL {
        let files = shards(&out, split);
        assert_eq!(
            files,
            [out.join(format!(
                "{}/{}",
                tfds_dir(),
                tfds::shard_file_name(split, 0, 1)
            ))],
            "one shard per split at the default size"
        );
        let mut npz =
            NpzReader::new(std::fs::File::open(out.join(pack::npz_labels_name(split))).unwrap())
                .unwrap();
        let ids: Array1<i32> = npz.by_name("image_id").unwrap();
        let gender: Array1<u8> = npz.by_name("gender").unwrap();
        let status: Array1<u8> = npz.by_name("status").unwrap();
        let images: Array4<u8> =
            NpzReader::new(std::fs::File::open(out.join(pack::npz_images_name(split))).unwrap())
                .unwrap()
                .by_name("arr_0")
                .unwrap();
        let records = records(&files[0]);
        assert_eq!(records.len(), ids.len());
        let entry = info["splits"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == tfds::tfds_split(split))
            .unwrap();
        assert_eq!(
            entry["shardLengths"],
            serde_json::json!([ids.len().to_string()])
        );
        let example_bytes: usize = records.iter().map(Vec::len).sum();
        assert_eq!(entry["numBytes"], example_bytes.to_string());
        for (row, record) in records.iter().enumerate() {
            let e = tfds::Example::decode(record).unwrap();
            assert_eq!(e.features.len(), 15);
            assert_eq!(e.encode(), *record, "features in name order, as encoded");
            assert_eq!(int(&e, "image_id"), i64::from(ids[row]));
            assert_eq!(int(&e, "gender"), i64::from(gender[row]));
            assert_eq!(int(&e, "status"), i64::from(status[row]));
            assert_eq!(int(&e, "year_from"), 1500 + i64::from(ids[row]));
            assert_eq!(bytes(&e, "holder"), ["慶應義塾大学".as_bytes()]);
            let tags = bytes(&e, "tags");
            assert_eq!(tags[0], "唐のたいしやう".as_bytes());
            assert!(bytes(&e, "url")[0].starts_with(b"http"));
            // The stored file decodes to the npz row, as pack decoded it.
            let image = bytes(&e, "image")[0];
            png += usize::from(image.starts_with(b"\x89PNG"));
            let decoded = kaokore::normalize::normalize(image, S).unwrap();
            assert!(!decoded.resized);
            let npz_row = images.index_axis(Axis(0), row).to_owned();
            assert!(decoded.pixels == npz_row.as_slice().unwrap(), "row {row}");
        }
    }
    assert!(png > 0, "some images needed a change and are PNG");
    let features =
        std::fs::read_to_string(out.join(format!("{}/features.json", tfds_dir()))).unwrap();
    assert!(features.contains("\"32\""), "the image shape is S x S x 3");
    assert_eq!(
        std::fs::read_to_string(out.join(format!("{}/status.labels.txt", tfds_dir()))).unwrap(),
        "noble\nwarrior\nincarnation\ncommoner\n"
    );
}

#[test]
fn output_is_the_same_across_jobs_and_directory_names() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("one");
    let b = dir.path().join("another-name");
    pack_into(&a, 1, "npz,tfds", 3_000);
    pack_into(&b, 4, "npz,tfds", 3_000);
    let tfds_of = |out: &Path| -> BTreeMap<String, Vec<u8>> {
        tree::files(out)
            .into_iter()
            .filter(|(k, _)| k.starts_with("tfds/"))
            .collect()
    };
    let (ta, tb) = (tfds_of(&a), tfds_of(&b));
    assert!(ta.len() > 7, "several shards: {:?}", ta.keys());
    assert!(ta == tb);
    assert_eq!(
        std::fs::read(a.join("SHA256SUMS")).unwrap(),
        std::fs::read(b.join("SHA256SUMS")).unwrap()
    );
}

#[test]
fn shards_split_at_the_shard_size() {
    let one = build("npz,tfds", SHARD_SIZE.default_value());
    let small = build("npz,tfds", 3_000);
    let each = build("npz,tfds", 1);
    for split in Split::ALL {
        let all = records(&shards(&one.1, split)[0]);
        assert_eq!(
            shards(&each.1, split).len(),
            all.len(),
            "one record a shard"
        );
        let parts = shards(&small.1, split);
        assert!(parts.len() > 1, "{split}");
        let mut joined = Vec::new();
        for (k, p) in parts.iter().enumerate() {
            assert_eq!(
                p.file_name().unwrap().to_string_lossy(),
                tfds::shard_file_name(split, k as u32, parts.len() as u32)
            );
            let len = std::fs::metadata(p).unwrap().len();
            let r = records(p);
            assert!(len <= 3_000 || r.len() == 1, "{p:?}");
            if let Some(next) = parts.get(k + 1) {
                let first = records(next)[0].len() as u64 + tfds::FRAMING_BYTES;
                assert!(len + first > 3_000, "{p:?} could hold the next record");
            }
            joined.extend(r);
        }
        assert_eq!(joined, all);
    }
    for (_, out) in [&one, &small, &each] {
        let report = verify(out).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
    }
}

#[test]
fn a_tfds_only_build_verifies() {
    let (_dir, out) = build("tfds", 10_000);
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.rows.iter().map(|(_, n)| n).sum::<u64>() > 10);
    assert!(report.pixel_rows_compared > 10);
}

#[test]
fn a_flipped_byte_is_caught_even_with_updated_checksums() {
    let (_dir, out) = build("npz,tfds", SHARD_SIZE.default_value());
    let shard = format!(
        "{}/{}",
        tfds_dir(),
        tfds::shard_file_name(Split::Train, 0, 1)
    );
    let mut bytes = std::fs::read(out.join(&shard)).unwrap();
    // A byte inside the second record's data: past the first record and the second's
    // 12 bytes of length and length CRC.
    let first = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let at = first + 16 + 12 + 40;
    bytes[at] ^= 0x10;
    std::fs::write(out.join(&shard), bytes).unwrap();
    update_sum(&out, &shard);
    let m = problems(&out);
    assert!(
        m.iter().any(|p| p.starts_with(&format!("{shard}: row 1: record 1: "))
            && p.contains("CRC-32C")),
        "{m:?}"
    );
}

#[test]
fn a_wrong_shard_length_in_dataset_info_is_caught() {
    let (_dir, out) = build("npz,tfds", 6_000);
    let name = format!("{}/dataset_info.json", tfds_dir());
    let mut doc = info(&out);
    let lengths = &mut doc["splits"][0]["shardLengths"];
    let a: u64 = lengths[0].as_str().unwrap().parse().unwrap();
    let b: u64 = lengths[1].as_str().unwrap().parse().unwrap();
    assert!(b > 1, "{lengths}");
    // The same total, split differently between the first two shards.
    lengths[0] = (a + 1).to_string().into();
    lengths[1] = (b - 1).to_string().into();
    std::fs::write(out.join(&name), serde_json::to_string_pretty(&doc).unwrap()).unwrap();
    update_sum(&out, &name);
    let m = problems(&out);
    assert!(
        m.iter()
            .any(|p| p.contains("kaokore-train.tfrecord-00000-of-")
                && p.contains(&format!(
                    "holds {a} records, dataset_info.json says {}",
                    a + 1
                ))),
        "{m:?}"
    );
}

#[test]
fn a_removed_shard_is_reported() {
    let (_dir, out) = build("npz,tfds", 3_000);
    let last = shards(&out, Split::Train).pop().unwrap();
    std::fs::remove_file(&last).unwrap();
    let m = problems(&out);
    let name = format!(
        "{}/{}",
        tfds_dir(),
        last.file_name().unwrap().to_string_lossy()
    );
    assert!(m.iter().any(|p| p == &format!("{name}: missing")), "{m:?}");
}

#[test]
fn an_empty_split_has_no_shard_and_is_not_listed() {
    // No dev image is ever fetched: TFDS neither writes nor reads an empty split.
    let inline = without_dev_images(S);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    pack::pack(
        &inline.dataset,
        &MapSource::new(inline.files),
        &kaokore::pipeline::IMAGE_CHAIN,
        &options(S, 2, "npz,tfds"),
        &out,
        &Progress::hidden("pack", 0),
    )
    .unwrap();
    assert!(shards(&out, Split::Dev).is_empty());
    let names: Vec<String> = info(&out)["splits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["train", "test"]);
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn a_rebuild_with_fewer_shards_removes_the_old_ones() {
    let (_dir, out) = build("npz,tfds", 3_000);
    let before = shards(&out, Split::Train);
    assert!(before.len() > 1);
    let summary = pack_into(&out, 2, "npz,tfds", SHARD_SIZE.default_value());
    for split in Split::ALL {
        assert_eq!(shards(&out, split).len(), 1, "{split}");
    }
    let first = format!(
        "{}/{}",
        tfds_dir(),
        before[0].file_name().unwrap().to_string_lossy()
    );
    assert!(
        summary.removed_stale.contains(&first),
        "{:?}",
        summary.removed_stale
    );
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
