//! verify on good and damaged builds: checksums, and the row-by-row agreement of formats
//! even when the damage is covered by an updated SHA256SUMS.

mod pack_common;

use std::path::Path;

use kaokore::metadata::Split;
use kaokore::pack;
use kaokore::progress::Progress;
use kaokore::verify::verify;
use ndarray::{Array1, Array4};
use ndarray_npy::{NpzReader, NpzWriter};
use pack_common::*;

const S: u32 = 32;

fn build(formats: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let fx = fixture(30, S, &ALL_KINDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let source = MapSource::new(fx.files);
    pack::pack(
        &fx.dataset,
        &source,
        &options(S, 2, formats),
        &out,
        &Progress::hidden("pack", 0),
    )
    .unwrap();
    (dir, out)
}

/// Re-hash one file in SHA256SUMS, as someone covering their tracks would.
fn update_sum(out: &Path, relative: &str) {
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let hash = pack::sha256_hex(&std::fs::read(out.join(relative)).unwrap());
    let text: String = sums
        .lines()
        .map(|l| {
            if l.ends_with(&format!("  {relative}")) {
                format!("{hash}  {relative}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(out.join("SHA256SUMS"), text).unwrap();
}

fn messages(out: &Path) -> Vec<String> {
    verify(out)
        .unwrap()
        .problems
        .iter()
        .map(|p| p.to_string())
        .collect()
}

#[test]
fn a_good_build_verifies() {
    let (_dir, out) = build("idx,npz,parquet,images");
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let rows: u64 = report.rows.iter().map(|(_, n)| n).sum();
    assert!(rows > 10);
    assert_eq!(report.pixel_rows_compared, rows);
    assert!(report.checksummed > 20);
}

#[test]
fn a_single_format_build_verifies() {
    for formats in ["parquet", "npz", "idx"] {
        let (_dir, out) = build(formats);
        let report = verify(&out).unwrap();
        assert!(report.is_ok(), "{formats}: {:?}", report.problems);
    }
}

#[test]
fn a_flipped_byte_is_caught_by_checksum() {
    let (_dir, out) = build("idx,npz,parquet");
    let path = out.join(pack::parquet_name(Split::Train));
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();
    let m = messages(&out);
    assert!(
        m.iter()
            .any(|p| p.starts_with("parquet/train-00000-of-00001.parquet: SHA-256 is")),
        "{m:?}"
    );
}

#[test]
fn a_changed_pixel_is_caught_even_with_updated_checksums() {
    let (_dir, out) = build("idx,npz,parquet");
    let name = pack::npz_images_name(Split::Dev);
    let mut images: Array4<u8> = NpzReader::new(std::fs::File::open(out.join(&name)).unwrap())
        .unwrap()
        .by_name("arr_0")
        .unwrap();
    images[[1, 5, 7, 2]] ^= 0x01;
    let mut w = NpzWriter::new(std::fs::File::create(out.join(&name)).unwrap());
    w.add_array("arr_0", &images).unwrap();
    w.finish().unwrap();
    update_sum(&out, &name);
    let m = messages(&out);
    let byte = (5 * S + 7) * 3 + 2;
    // idx and Parquet agree, so the npz is named as the odd one out.
    assert_eq!(
        m,
        [format!(
            "npz/kaokore-dev-imgs.npz: row 1: pixels differ from idx/kaokore-dev-images-idx4-ubyte.gz and the other formats (first at byte {byte})"
        )]
    );
}

#[test]
fn an_edited_label_is_caught_even_with_updated_checksums() {
    let (_dir, out) = build("idx,npz,parquet");
    let name = pack::npz_labels_name(Split::Train);
    let mut npz = NpzReader::new(std::fs::File::open(out.join(&name)).unwrap()).unwrap();
    let mut gender: Array1<u8> = npz.by_name("gender").unwrap();
    let status: Array1<u8> = npz.by_name("status").unwrap();
    let ids: Array1<i32> = npz.by_name("image_id").unwrap();
    gender[2] = 1 - gender[2];
    let mut w = NpzWriter::new(std::fs::File::create(out.join(&name)).unwrap());
    w.add_array("gender", &gender).unwrap();
    w.add_array("status", &status).unwrap();
    w.add_array("image_id", &ids).unwrap();
    w.finish().unwrap();
    update_sum(&out, &name);
    let m = messages(&out);
    assert!(
        m.iter()
            .any(|p| p.starts_with("npz/kaokore-train-labels.npz: row 2: labels")),
        "{m:?}"
    );
}

#[test]
fn a_deleted_file_is_reported() {
    let (_dir, out) = build("idx,npz,parquet");
    std::fs::remove_file(out.join(pack::idx_labels_name(Split::Test, "status"))).unwrap();
    let m = messages(&out);
    assert!(
        m.iter()
            .any(|p| p
                .starts_with("idx/kaokore-test-status-idx1-ubyte.gz: listed in SHA256SUMS but")),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|p| p.starts_with("idx/kaokore-test-status-idx1-ubyte.gz: cannot read")),
        "{m:?}"
    );
}

#[test]
fn a_missing_checksum_list_is_reported() {
    let (_dir, out) = build("npz");
    std::fs::remove_file(out.join("SHA256SUMS")).unwrap();
    let m = messages(&out);
    assert!(
        m.iter().any(|p| p.starts_with("SHA256SUMS: cannot read")),
        "{m:?}"
    );
}

#[test]
fn an_empty_split_is_packed_and_verifies() {
    // Splits cycle train, train, dev, test and kinds cycle with the same period: no dev image
    // is ever fetched.
    let fx = fixture(
        24,
        S,
        &[
            Kind::RgbJpeg,
            Kind::GrayJpeg,
            Kind::Missing,
            Kind::NonSquare,
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = pack::pack(
        &fx.dataset,
        &MapSource::new(fx.files),
        &options(S, 2, "idx,npz,parquet"),
        &out,
        &Progress::hidden("pack", 0),
    )
    .unwrap();
    let dev = summary
        .splits
        .iter()
        .find(|s| s.split == Split::Dev)
        .unwrap();
    assert_eq!(dev.packed, 0);
    let images: Array4<u8> =
        NpzReader::new(std::fs::File::open(out.join(pack::npz_images_name(Split::Dev))).unwrap())
            .unwrap()
            .by_name("arr_0")
            .unwrap();
    assert_eq!(images.shape(), [0, S as usize, S as usize, 3]);
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    // The summary is what report.json will carry.
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(json["splits"][1]["split"], "dev");
    assert_eq!(json["missing"].as_array().unwrap().len(), 6);
}

#[test]
fn an_output_path_that_is_a_file_is_an_error() {
    let fx = fixture(4, S, &[Kind::RgbJpeg]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::write(&out, "a file").unwrap();
    let err = pack::pack(
        &fx.dataset,
        &MapSource::new(fx.files),
        &options(S, 1, "npz"),
        &out,
        &Progress::hidden("pack", 0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("out"), "{err}");
    assert!(verify(&out).is_err());
}
