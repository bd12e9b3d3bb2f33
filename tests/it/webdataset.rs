//! `--formats webdataset`: the tar layout byte for byte, determinism, shard splitting,
//! and verify catching a tampered member even when SHA256SUMS was updated to match.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kaokore::metadata::{ImageId, Split};
use kaokore::pack::format::SHARD_SIZE;
use kaokore::pack::{self, webdataset};
use kaokore::progress::Progress;
use kaokore::verify::verify;
use ndarray::{Array1, Array4};
use ndarray_npy::NpzReader;

use crate::support::inline::*;
use crate::support::{kaokore, stderr, tree};

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

/// A tar read by hand: (header, name, data) per member, after checking the closing blocks.
fn members(bytes: &[u8]) -> Vec<([u8; 512], String, Vec<u8>)> {
    assert_eq!(bytes.len() % 512, 0, "whole 512-byte blocks");
    assert!(bytes.len() >= 1024);
    assert!(
        bytes[bytes.len() - 1024..].iter().all(|&b| b == 0),
        "two zero blocks at the end"
    );
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() - 1024 {
        let header: [u8; 512] = bytes[at..at + 512].try_into().unwrap();
        let end = header[..100].iter().position(|&b| b == 0).unwrap();
        let name = String::from_utf8(header[..end].to_vec()).unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&header[124..135]).unwrap(), 8).unwrap();
        let data = bytes[at + 512..at + 512 + size].to_vec();
        let padded = size.div_ceil(512) * 512;
        assert!(
            bytes[at + 512 + size..at + 512 + padded]
                .iter()
                .all(|&b| b == 0)
        );
        out.push((header, name, data));
        at += 512 + padded;
    }
    assert_eq!(
        at,
        bytes.len() - 1024,
        "nothing between the members and the end"
    );
    out
}

/// The shards of a split in `out`, in order.
fn shards(out: &Path, split: Split) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(out.join("webdataset"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with(&format!("{split}-"))
        })
        .collect();
    found.sort();
    found
}

fn npz_labels(out: &Path, split: Split) -> (Vec<i32>, Vec<u8>, Vec<u8>) {
    let mut npz =
        NpzReader::new(std::fs::File::open(out.join(pack::npz_labels_name(split))).unwrap())
            .unwrap();
    let ids: Array1<i32> = npz.by_name("image_id").unwrap();
    let g: Array1<u8> = npz.by_name("gender").unwrap();
    let s: Array1<u8> = npz.by_name("status").unwrap();
    (ids.to_vec(), g.to_vec(), s.to_vec())
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
fn a_member_header_is_ustar_with_fixed_fields_byte_for_byte() {
    let h = webdataset::tar_header("00000042.gender.cls", 1).unwrap();
    let mut expected = [0u8; 512];
    expected[..19].copy_from_slice(b"00000042.gender.cls");
    // mode, uid, gid, size, mtime, checksum, type: as Python's tarfile writes this member
    // (USTAR_FORMAT, mode 0o644, uid/gid 0, empty uname/gname, mtime 0).
    expected[100..157].copy_from_slice(
        b"0000644\x000000000\x000000000\x0000000000001\x0000000000000\x00010567\x00 0",
    );
    expected[257..265].copy_from_slice(b"ustar\x0000");
    assert_eq!(h.to_vec(), expected.to_vec());
    // The checksum is the sum of the header with its field as spaces.
    let mut blank = h;
    blank[148..156].fill(b' ');
    let sum: u32 = blank.iter().map(|&b| u32::from(b)).sum();
    assert_eq!(sum, 0o10567);
    assert!(webdataset::tar_header(&"x".repeat(101), 1).is_err());
}

#[test]
fn shards_hold_one_sample_per_row_in_label_order() {
    let (_dir, out) = build("npz,webdataset", SHARD_SIZE.default_value());
    assert!(verify(&out).unwrap().is_ok());
    for split in Split::ALL {
        let files = shards(&out, split);
        assert_eq!(
            files,
            [out.join(webdataset::shard_name(split, 0))],
            "one shard per split at the default size"
        );
        let bytes = std::fs::read(&files[0]).unwrap();
        let members = members(&bytes);
        let (ids, gender, status) = npz_labels(&out, split);
        assert!(!ids.is_empty());
        assert_eq!(members.len(), 4 * ids.len());
        for (row, sample) in members.chunks(4).enumerate() {
            let key = ImageId(ids[row] as u32).to_string();
            let names: Vec<&str> = sample.iter().map(|(_, n, _)| n.as_str()).collect();
            assert_eq!(
                names,
                [
                    format!("{key}.jpg"),
                    format!("{key}.gender.cls"),
                    format!("{key}.status.cls"),
                    format!("{key}.json")
                ]
            );
            for (header, name, data) in sample {
                assert_eq!(
                    header.to_vec(),
                    webdataset::tar_header(name, data.len() as u64)
                        .unwrap()
                        .to_vec()
                );
            }
            assert_eq!(sample[1].2, gender[row].to_string().as_bytes());
            assert_eq!(sample[2].2, status[row].to_string().as_bytes());
            let json: serde_json::Value = serde_json::from_slice(&sample[3].2).unwrap();
            assert_eq!(json["image_id"], ids[row]);
            assert_eq!(json["split"], split.name());
            assert_eq!(json["gender"], gender[row]);
            assert_eq!(
                json["gender_name"],
                ["male", "female"][gender[row] as usize]
            );
            assert_eq!(
                json["status_name"],
                ["noble", "warrior", "incarnation", "commoner"][status[row] as usize]
            );
            assert!(json["url"].as_str().unwrap().starts_with("http"));
            assert_eq!(json["holder"], "慶應義塾大学");
            assert_eq!(json["year_from"], 1500 + ids[row]);
            assert!(
                json["tags"]
                    .as_str()
                    .unwrap()
                    .starts_with("唐のたいしやう;t")
            );
            assert_eq!(&sample[0].2[..2], [0xff, 0xd8], "a JPEG");
        }
    }
}

#[test]
fn image_members_are_the_images_files_and_decode_to_the_npz_rows() {
    let (_dir, out) = build("npz,images,webdataset", SHARD_SIZE.default_value());
    let mut checked = 0;
    for split in Split::ALL {
        let bytes = std::fs::read(&shards(&out, split)[0]).unwrap();
        let images: Array4<u8> =
            NpzReader::new(std::fs::File::open(out.join(pack::npz_images_name(split))).unwrap())
                .unwrap()
                .by_name("arr_0")
                .unwrap();
        for (row, sample) in members(&bytes).chunks(4).enumerate() {
            let (_, name, jpg) = &sample[0];
            let file = std::fs::read(out.join(format!("images_{S}/{name}"))).unwrap();
            assert!(file == *jpg, "{name} is the images_{S}/ file");
            let decoded = kaokore::normalize::normalize(jpg, S).unwrap();
            let npz_row = images.index_axis(ndarray::Axis(0), row).to_owned();
            if decoded.pixels == npz_row.as_slice().unwrap() {
                checked += 1;
            } else {
                // Re-encoded by pack: exactly the JPEG of the npz row.
                let again = kaokore::encode::encode_jpeg(npz_row.as_slice().unwrap(), S).unwrap();
                assert!(again == *jpg, "{name}");
            }
        }
    }
    assert!(checked > 0, "some fetched JPEGs are stored unchanged");
}

#[test]
fn output_is_the_same_across_jobs_and_directory_names() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("one");
    let b = dir.path().join("another-name");
    pack_into(&a, 1, "npz,webdataset", 20_000);
    pack_into(&b, 4, "npz,webdataset", 20_000);
    let shards_of = |out: &Path| -> BTreeMap<String, Vec<u8>> {
        tree::files(out)
            .into_iter()
            .filter(|(k, _)| k.starts_with("webdataset/"))
            .collect()
    };
    let (ta, tb) = (shards_of(&a), shards_of(&b));
    assert!(ta.len() > 3, "several shards: {:?}", ta.keys());
    assert!(ta == tb);
    assert_eq!(
        std::fs::read(a.join("SHA256SUMS")).unwrap(),
        std::fs::read(b.join("SHA256SUMS")).unwrap()
    );
}

#[test]
fn shards_split_at_the_shard_size() {
    let one = build("npz,webdataset", SHARD_SIZE.default_value());
    let small = build("npz,webdataset", 8_000);
    let each = build("npz,webdataset", 1);
    for split in Split::ALL {
        let whole = std::fs::read(&shards(&one.1, split)[0]).unwrap();
        let all = members(&whole);
        let (ids, _, _) = npz_labels(&one.1, split);
        // At 1 byte, one sample per shard.
        let singles = shards(&each.1, split);
        assert_eq!(singles.len(), ids.len());
        // At 8 kB: every shard within the size unless its only sample is larger, no shard
        // that could have taken the next sample, and the samples in order.
        let parts = shards(&small.1, split);
        assert!(parts.len() > 1);
        let mut joined = Vec::new();
        for (k, p) in parts.iter().enumerate() {
            let bytes = std::fs::read(p).unwrap();
            assert_eq!(
                p.file_name().unwrap().to_string_lossy(),
                format!("{split}-{k:06}.tar")
            );
            let m = members(&bytes);
            assert!(bytes.len() <= 8_000 || m.len() == 4, "{p:?}");
            if let Some(next) = parts.get(k + 1) {
                let next = members(&std::fs::read(next).unwrap());
                let first: usize = next[..4]
                    .iter()
                    .map(|(_, _, d)| 512 + d.len().div_ceil(512) * 512)
                    .sum();
                assert!(
                    bytes.len() + first > 8_000,
                    "{p:?} could hold the next sample"
                );
            }
            joined.extend(m);
        }
        assert_eq!(joined, all);
    }
    for (_, out) in [&one, &small, &each] {
        let report = verify(out).unwrap();
        assert!(report.is_ok(), "{:?}", report.problems);
    }
}

#[test]
fn a_webdataset_only_build_verifies() {
    let (_dir, out) = build("webdataset", 10_000);
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert!(report.rows.iter().map(|(_, n)| n).sum::<u64>() > 10);
}

/// Change `data` of member `name` in place (same length), then update SHA256SUMS.
fn tamper(out: &Path, split: Split, name_ends: &str, change: impl Fn(&mut [u8])) -> String {
    let shard = webdataset::shard_name(split, 0);
    let mut bytes = std::fs::read(out.join(&shard)).unwrap();
    let mut at = 0;
    let mut row = 0;
    loop {
        let end = bytes[at..at + 100].iter().position(|&b| b == 0).unwrap();
        let name = String::from_utf8(bytes[at..at + end].to_vec()).unwrap();
        let size =
            usize::from_str_radix(std::str::from_utf8(&bytes[at + 124..at + 135]).unwrap(), 8)
                .unwrap();
        if name.ends_with(name_ends) && row > 0 {
            change(&mut bytes[at + 512..at + 512 + size]);
            std::fs::write(out.join(&shard), bytes).unwrap();
            update_sum(out, &shard);
            return name;
        }
        if name.ends_with(".json") {
            row += 1;
        }
        at += 512 + size.div_ceil(512) * 512;
    }
}

#[test]
fn a_tampered_label_member_is_caught_even_with_updated_checksums() {
    let (_dir, out) = build("npz,parquet,webdataset", SHARD_SIZE.default_value());
    let name = tamper(&out, Split::Train, ".gender.cls", |d| {
        d[0] = if d[0] == b'0' { b'1' } else { b'0' }
    });
    let m = problems(&out);
    assert!(!m.is_empty());
    let key = &name[..8];
    assert!(
        m.iter()
            .any(|p| p.starts_with("webdataset/train-000000.tar: row 1: ")
                && p.contains(&format!("{key}.json says"))),
        "{m:?}"
    );
    assert!(
        m.iter()
            .any(|p| p.starts_with("webdataset/train-*.tar: row 1: labels")),
        "{m:?}"
    );
}

#[test]
fn a_tampered_image_member_is_caught_even_with_updated_checksums() {
    let (_dir, out) = build("npz,webdataset", SHARD_SIZE.default_value());
    // Flip bits in the middle of the entropy-coded data: it decodes to other pixels or not
    // at all.
    tamper(&out, Split::Dev, ".jpg", |d| {
        let middle = d.len() / 2;
        d[middle] ^= 0x21;
        d[middle + 1] ^= 0x42;
    });
    let m = problems(&out);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("webdataset/dev-000000.tar: row 1: ")
            && (m[0].contains("pixels differ") || m[0].contains("does not decode")),
        "{m:?}"
    );
}

#[test]
fn a_tampered_image_member_is_caught_against_the_parquet_pixels() {
    // No npz or idx: the reference row is Parquet's image, decoded as pack decoded it.
    let (_dir, out) = build("parquet,webdataset", SHARD_SIZE.default_value());
    assert!(verify(&out).unwrap().pixel_rows_compared > 10);
    tamper(&out, Split::Train, ".jpg", |d| {
        let middle = d.len() / 2;
        d[middle] ^= 0x21;
        d[middle + 1] ^= 0x42;
    });
    let m = problems(&out);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("webdataset/train-000000.tar: row 1: ")
            && (m[0].contains("pixels differ from parquet/train-")
                || m[0].contains("does not decode")),
        "{m:?}"
    );
}

#[test]
fn webdataset_is_a_registered_format_with_its_own_timer() {
    let help = pack::format_help();
    let listed: Vec<&str> = help
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        listed,
        [
            "idx",
            "npz",
            "parquet",
            "images",
            "webdataset",
            "mnist",
            "tfds"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let summary = pack_into(&dir.path().join("out"), 2, "mnist,webdataset", 8_000);
    let timers = serde_json::to_value(&summary.seconds).unwrap();
    for name in ["webdataset", "mnist"] {
        assert!(timers[name].as_f64().unwrap() > 0.0, "{name}: {timers}");
    }
    assert!(timers.get("npz").is_none(), "{timers}");
}

#[test]
fn a_changed_header_is_caught_even_with_updated_checksums() {
    let (_dir, out) = build("npz,webdataset", SHARD_SIZE.default_value());
    let shard = webdataset::shard_name(Split::Test, 0);
    let mut bytes = std::fs::read(out.join(&shard)).unwrap();
    // mtime 0 -> 1, with the checksum fixed up: a valid tar, not as kaokore writes it.
    bytes[146] = b'1';
    bytes[148..156].fill(b' ');
    let sum: u32 = bytes[..512].iter().map(|&b| u32::from(b)).sum();
    bytes[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    std::fs::write(out.join(&shard), bytes).unwrap();
    update_sum(&out, &shard);
    let m = problems(&out);
    assert!(
        m.iter().any(
            |p| p.starts_with("webdataset/test-000000.tar: row 0: member")
                && p.contains("header is not as kaokore writes it")
        ),
        "{m:?}"
    );
}

#[test]
fn a_removed_shard_is_reported() {
    let (_dir, out) = build("npz,webdataset", 8_000);
    let last = shards(&out, Split::Train).pop().unwrap();
    std::fs::remove_file(&last).unwrap();
    let m = problems(&out);
    let name = format!("webdataset/{}", last.file_name().unwrap().to_string_lossy());
    assert!(m.iter().any(|p| p == &format!("{name}: missing")), "{m:?}");
}

#[test]
fn an_empty_split_has_one_empty_shard_that_verifies() {
    // As in verify's test: no dev image is ever fetched.
    let inline = without_dev_images(S);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    pack::pack(
        &inline.dataset,
        &MapSource::new(inline.files),
        &kaokore::pipeline::IMAGE_CHAIN,
        &options(S, 2, "npz,webdataset"),
        &out,
        &Progress::hidden("pack", 0),
    )
    .unwrap();
    let dev = std::fs::read(out.join(webdataset::shard_name(Split::Dev, 0))).unwrap();
    assert_eq!(dev, vec![0u8; 1024]);
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn a_bad_shard_size_is_a_usage_error() {
    for bad in ["0", "1TB", "lots"] {
        let out = kaokore()
            .args(["pack", "--formats", "webdataset", "--shard-size", bad])
            .output()
            .unwrap();
        let stderr = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(stderr.contains("--shard-size"), "{bad}: {stderr}");
    }
}

#[test]
fn a_rebuild_with_fewer_shards_removes_the_old_ones() {
    let (_dir, out) = build("npz,webdataset", 8_000);
    assert!(shards(&out, Split::Train).len() > 1);
    let summary = pack_into(&out, 2, "npz,webdataset", SHARD_SIZE.default_value());
    for split in Split::ALL {
        assert_eq!(shards(&out, split).len(), 1, "{split}");
    }
    assert!(
        summary
            .removed_stale
            .contains(&webdataset::shard_name(Split::Train, 1)),
        "{:?}",
        summary.removed_stale
    );
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}
