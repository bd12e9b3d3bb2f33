//! verify on good and damaged builds: checksums, and the row-by-row agreement of formats
//! even when the damage is covered by an updated SHA256SUMS.

use std::io::{Read, Write};
use std::path::Path;

use kaokore::metadata::Split;
use kaokore::out::BuildRecord;
use kaokore::pack;
use kaokore::progress::Progress;
use kaokore::verify::verify;
use ndarray::{Array1, Array4};
use ndarray_npy::{NpzReader, NpzWriter};

use crate::support::inline::*;
use crate::support::{Run, kaokore_verify, stderr};

const S: u32 = 32;

fn build(formats: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let inline = inline_dataset(30, S, &ALL_KINDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let source = MapSource::new(inline.files);
    pack::pack(
        &inline.dataset,
        &source,
        &kaokore::pipeline::IMAGE_CHAIN,
        &options(S, 2, formats),
        &out,
        &Progress::hidden("pack", 0),
    )
    .unwrap();
    (dir, out)
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
    for formats in ["parquet", "npz", "idx", "images"] {
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

/// Rewrite the gzip file `relative` with `edit` applied to its content, and re-hash it in
/// SHA256SUMS.
fn edit_gzip(out: &Path, relative: &str, edit: impl FnOnce(&mut Vec<u8>)) {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(out.join(relative)).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    edit(&mut raw);
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(out.join(relative)).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap();
    update_sum(out, relative);
}

#[test]
fn a_build_with_mnist_verifies_and_compares_its_gray_rows() {
    let (_dir, out) = build("idx,npz,parquet,mnist");
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    let rows: u64 = report.rows.iter().map(|(_, n)| n).sum();
    assert_eq!(report.pixel_rows_compared, rows);
    // Alone, its labels are still checked against each other and the record.
    let (_dir, out) = build("mnist");
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
}

#[test]
fn a_changed_gray_pixel_is_caught_even_with_updated_checksums() {
    let (_dir, out) = build("idx,npz,parquet,mnist");
    let name = pack::mnist_images_name(Split::Dev);
    // Header: magic and three dimensions; then rows of S x S bytes.
    let byte = 5 * S + 7;
    edit_gzip(&out, &name, |raw| {
        assert_eq!(&raw[..4], &[0, 0, 8, 3]);
        raw[16 + (S * S + byte) as usize] ^= 0x01;
    });
    assert_eq!(
        messages(&out),
        [format!(
            "mnist/kaokore-dev-images-idx3-ubyte.gz: row 1: gray pixels differ from the gray of idx/kaokore-dev-images-idx4-ubyte.gz's pixels (first at byte {byte})"
        )]
    );
}

#[test]
fn a_swapped_image_file_is_caught_even_with_updated_checksums() {
    // idx states no ids: the files are then read in labels.csv order.
    for formats in ["npz,images", "idx,images"] {
        let (_dir, out) = build(formats);
        assert_eq!(messages(&out), Vec::<String>::new(), "{formats}");
        let record = BuildRecord::read(&out).unwrap().unwrap();
        let files: Vec<&String> = record
            .files
            .iter()
            .filter(|f| f.starts_with("images_32/"))
            .collect();
        let (a, b) = (files[3], files[4]);
        let (bytes_a, bytes_b) = (
            std::fs::read(out.join(a)).unwrap(),
            std::fs::read(out.join(b)).unwrap(),
        );
        std::fs::write(out.join(a), &bytes_b).unwrap();
        std::fs::write(out.join(b), &bytes_a).unwrap();
        update_sum(&out, a);
        update_sum(&out, b);
        let m = messages(&out);
        assert!(m.len() >= 2, "{formats}: {m:?}");
        for f in [a, b] {
            assert!(
                m.iter().any(|p| p.starts_with(&format!("{f}: row "))),
                "{formats}: {f} not named: {m:?}"
            );
        }
    }
}

#[test]
fn a_changed_mnist_label_is_caught_even_with_updated_checksums() {
    let (_dir, out) = build("idx,mnist");
    let name = pack::mnist_labels_name(Split::Train, "status");
    edit_gzip(&out, &name, |raw| raw[8 + 3] = (raw[8 + 3] + 1) % 4);
    let m = messages(&out);
    assert_eq!(m.len(), 1, "{m:?}");
    assert!(
        m[0].starts_with("mnist/kaokore-train-gender-idx1-ubyte.gz: row 3: labels"),
        "{m:?}"
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
    // Reported once, though both the checksums and the idx reader look for it.
    assert_eq!(
        messages(&out),
        ["idx/kaokore-test-status-idx1-ubyte.gz: missing"]
    );
}

/// Remove `relative` lines from SHA256SUMS.
fn drop_sums(out: &Path, gone: impl Fn(&str) -> bool) {
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let kept: String = sums
        .lines()
        .filter(|l| !gone(l.split_once("  ").unwrap().1))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(out.join("SHA256SUMS"), kept).unwrap();
}

#[test]
fn formats_removed_with_their_checksum_lines_are_missing() {
    // Once "ok": verify only checked what SHA256SUMS listed.
    let (_dir, out) = build("idx,npz,parquet");
    std::fs::remove_dir_all(out.join("idx")).unwrap();
    std::fs::remove_dir_all(out.join("npz")).unwrap();
    drop_sums(&out, |p| p.starts_with("idx/") || p.starts_with("npz/"));
    let m = messages(&out);
    let mut expected = Vec::new();
    for split in Split::ALL {
        expected.push(pack::idx_images_name(split));
        expected.push(pack::idx_labels_name(split, "gender"));
        expected.push(pack::idx_labels_name(split, "status"));
        expected.push(pack::npz_images_name(split));
        expected.push(pack::npz_labels_name(split));
    }
    for name in &expected {
        assert!(
            m.contains(&format!("{name}: missing (idx/ does not exist)"))
                || m.contains(&format!("{name}: missing (npz/ does not exist)")),
            "{name} not reported: {m:?}"
        );
    }
    assert_eq!(m.len(), expected.len(), "{m:?}");
}

#[test]
fn an_artifact_missing_from_sha256sums_fails() {
    let (_dir, out) = build("npz,parquet");
    drop_sums(&out, |p| p == "parquet/dev-00000-of-00001.parquet");
    assert_eq!(
        messages(&out),
        ["parquet/dev-00000-of-00001.parquet: not listed in SHA256SUMS"]
    );
}

#[test]
fn a_checksum_line_for_a_file_no_build_writes_fails() {
    let (_dir, out) = build("npz");
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let mut sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    sums.push_str(&format!("{}  notes.txt\n", pack::sha256_hex(b"mine")));
    std::fs::write(out.join("SHA256SUMS"), sums).unwrap();
    let m = messages(&out);
    assert_eq!(
        m,
        ["notes.txt: listed in SHA256SUMS, but the build's record has no such artifact"]
    );
}

#[test]
fn row_counts_must_match_the_record() {
    let (_dir, out) = build("idx,npz,parquet");
    let mut record = BuildRecord::read(&out).unwrap().unwrap();
    let train = record.rows["train"];
    record.rows.insert("train".into(), train + 1);
    record.write(&out).unwrap();
    let m = messages(&out);
    let more = train + 1;
    for expected in [
        format!(
            "idx/kaokore-train-gender-idx1-ubyte.gz: header says {train} rows, the build's record says {more}"
        ),
        format!(
            "npz/kaokore-train-labels.npz: gender has shape [{train}], the build's record says [{more}]"
        ),
        format!(
            "idx/kaokore-train-images-idx4-ubyte.gz: header states shape [{train}, {S}, {S}, 3], the build's record says [{more}, {S}, {S}, 3]"
        ),
        format!(
            "parquet/train-00000-of-00001.parquet: metadata says {train} rows, the build's record says {more}"
        ),
    ] {
        assert!(m.contains(&expected), "{expected:?} not in {m:?}");
    }
}

/// Run verify on another thread: a verify that blocks on a file fails the test instead of
/// hanging it.
fn messages_within(out: &Path, secs: u64) -> Vec<String> {
    let out = out.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(messages(&out));
    });
    rx.recv_timeout(std::time::Duration::from_secs(secs))
        .expect("verify stops within the time")
}

#[cfg(unix)]
#[test]
fn a_symlink_to_dev_zero_is_reported_not_read() {
    // Once a hang: verify read /dev/zero through the link.
    let (_dir, out) = build("idx,npz");
    let name = pack::npz_images_name(Split::Dev);
    std::fs::remove_file(out.join(&name)).unwrap();
    std::os::unix::fs::symlink("/dev/zero", out.join(&name)).unwrap();
    assert_eq!(
        messages_within(&out, 60),
        [format!("{name}: is a symbolic link: not followed")]
    );
}

#[cfg(unix)]
#[test]
fn a_symlinked_directory_is_not_followed() {
    let (dir, out) = build("idx,npz");
    std::fs::rename(out.join("idx"), dir.path().join("elsewhere")).unwrap();
    std::os::unix::fs::symlink(dir.path().join("elsewhere"), out.join("idx")).unwrap();
    let m = messages_within(&out, 60);
    assert!(
        m.contains(&format!(
            "{}: idx/ is a symbolic link: not followed",
            pack::idx_images_name(Split::Train)
        )),
        "{m:?}"
    );
    assert!(!verify(&out).unwrap().is_ok());
}

#[cfg(unix)]
#[test]
fn a_fifo_is_reported_not_opened() {
    let (_dir, out) = build("idx");
    let name = pack::idx_labels_name(Split::Test, "gender");
    std::fs::remove_file(out.join(&name)).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(out.join(&name))
        .status()
        .unwrap();
    assert!(made.success());
    assert_eq!(
        messages_within(&out, 60),
        [format!("{name}: is a FIFO, not a regular file: not opened")]
    );
}

#[test]
fn an_npz_header_claiming_a_huge_shape_is_refused_before_allocating() {
    // Once a 30 GB allocation and an abort: the header's shape was trusted.
    let (_dir, out) = build("idx,npz");
    let name = pack::npz_images_name(Split::Train);
    let rows = BuildRecord::read(&out).unwrap().unwrap().rows["train"];
    let mut npy = Vec::new();
    zip::ZipArchive::new(std::fs::File::open(out.join(&name)).unwrap())
        .unwrap()
        .by_name("arr_0.npy")
        .unwrap()
        .read_to_end(&mut npy)
        .unwrap();
    // Same pixels, same header length: only the shape lies (padding absorbs the digits).
    let header_len = 10 + u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let header = String::from_utf8(npy[10..header_len].to_vec()).unwrap();
    let real = format!("({rows}, {S}, {S}, 3)");
    let bogus = format!("({rows}, 100000, 100000, 3)");
    assert!(header.contains(&real), "{header}");
    let lied = header
        .replace(&real, &bogus)
        .replacen(&" ".repeat(bogus.len() - real.len()), "", 1);
    assert_eq!(lied.len(), header.len());
    npy.splice(10..header_len, lied.into_bytes());
    let mut w = zip::ZipWriter::new(std::fs::File::create(out.join(&name)).unwrap());
    w.start_file("arr_0.npy", zip::write::SimpleFileOptions::default())
        .unwrap();
    w.write_all(&npy).unwrap();
    w.finish().unwrap();
    update_sum(&out, &name);
    assert_eq!(
        messages_within(&out, 120),
        [format!(
            "{name}: header states shape [{rows}, 100000, 100000, 3], the build's record says [{rows}, {S}, {S}, 3]"
        )]
    );
}

#[test]
fn files_of_the_user_are_reported_and_do_not_fail() {
    let (_dir, out) = build("idx,npz,parquet");
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    std::fs::write(out.join("idx").join("mine.csv"), "a,b").unwrap();
    // A killed run's staging directory is named once, not walked.
    let staged = out.join(".kaokore-staging-999999999-0/npz");
    std::fs::create_dir_all(&staged).unwrap();
    std::fs::write(staged.join("kaokore-train-imgs.npz"), "half a file").unwrap();
    let report = verify(&out).unwrap();
    assert!(report.is_ok(), "{:?}", report.problems);
    assert_eq!(
        report.extra_files,
        [".kaokore-staging-999999999-0/", "idx/mine.csv", "notes.txt"]
    );
    let o = kaokore_verify(&out);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("notes.txt: not written by kaokore (left alone, not checked)"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_directory_without_a_record_is_not_a_kaokore_build() {
    let (_dir, out) = build("npz");
    std::fs::remove_file(out.join(kaokore::out::RECORD_FILE)).unwrap();
    assert_eq!(
        messages(&out),
        ["not a kaokore build (no .kaokore-build.json); verify checks what kaokore built"]
    );
    let o = kaokore_verify(&out);
    let stderr = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: not a kaokore build (no .kaokore-build.json)",
            out.display()
        )),
        "{stderr}"
    );
    // An empty directory, the same.
    let empty = tempfile::tempdir().unwrap();
    assert_eq!(kaokore_verify(empty.path()).status.code(), Some(1));
}

#[test]
fn a_missing_checksum_list_is_reported() {
    let (_dir, out) = build("npz");
    std::fs::remove_file(out.join("SHA256SUMS")).unwrap();
    let m = messages(&out);
    assert!(m.contains(&"SHA256SUMS: missing".to_string()), "{m:?}");
    assert!(
        m.contains(&format!(
            "{}: not listed in SHA256SUMS",
            pack::npz_labels_name(Split::Dev)
        )),
        "{m:?}"
    );
}

#[test]
fn an_empty_split_is_packed_and_verifies() {
    let inline = without_dev_images(S);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let summary = pack::pack(
        &inline.dataset,
        &MapSource::new(inline.files),
        &kaokore::pipeline::IMAGE_CHAIN,
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
    let inline = inline_dataset(4, S, &[Kind::RgbJpeg]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    std::fs::write(&out, "a file").unwrap();
    let err = pack::pack(
        &inline.dataset,
        &MapSource::new(inline.files),
        &kaokore::pipeline::IMAGE_CHAIN,
        &options(S, 1, "npz"),
        &out,
        &Progress::hidden("pack", 0),
    )
    .unwrap_err();
    assert!(err.to_string().contains("out"), "{err}");
    assert!(verify(&out).is_err());
}

#[test]
fn a_labels_csv_the_build_accepts_verifies_whatever_its_column_order() {
    // Once a failure: verify read labels.csv with a parser of its own, which knew only
    // `image,gender,status,set` in that order.
    let run = Run::new();
    let meta = run.metadata(30);
    let labels = std::fs::read_to_string(meta.join("labels.csv")).unwrap();
    let mut lines = labels.lines();
    assert_eq!(lines.next(), Some("image,gender,status,set"));
    let mut reordered = String::from("set , note,status, image,gender\n");
    for line in lines {
        let [image, gender, status, set] = line.split(',').collect::<Vec<_>>()[..] else {
            panic!("{line}");
        };
        reordered.push_str(&format!(" {set},mine , {status} ,{image} , {gender}\n"));
    }
    std::fs::write(meta.join("labels.csv"), reordered).unwrap();
    let out = run.out();
    // idx states no ids and images names its files by id: both read labels.csv's order.
    let o = run
        .kaokore("build")
        .args(["--quiet", "--dataset-version", "1.0", "--size", "16"])
        .args(["--jobs", "2", "--formats", "idx,npz,images", "--metadata"])
        .arg(&meta)
        .arg("--cache")
        .arg(run.cache())
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(messages(&out), Vec::<String>::new());
    let v = kaokore_verify(&out);
    assert_eq!(v.status.code(), Some(0), "{}", stderr(&v));
}

#[cfg(unix)]
#[test]
fn a_symlinked_size_directory_is_not_followed() {
    // Once "ok": a size directory that is a link to another build verified that build.
    let inline = inline_dataset(12, S, &ALL_KINDS);
    let source = MapSource::new(inline.files);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(S, 2, "npz");
    opts.sizes = vec![S, 48];
    let [out, other] = [dir.path().join("out"), dir.path().join("other")];
    for path in [&out, &other] {
        pack::pack_sizes(
            &inline.dataset,
            &source,
            &kaokore::pipeline::IMAGE_CHAIN,
            &opts,
            path,
            &Progress::hidden("pack", 0),
        )
        .unwrap();
    }
    assert_eq!(messages(&out), Vec::<String>::new());
    std::fs::remove_dir_all(out.join("size-48")).unwrap();
    std::os::unix::fs::symlink(other.join("size-48"), out.join("size-48")).unwrap();
    // Named once: the files the record lists in it are not each a problem too.
    assert_eq!(messages(&out), ["size-48: is a symlink: not followed"]);
    let o = kaokore_verify(&out);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
}

#[test]
fn an_artifact_larger_than_its_rows_allow_is_reported_unread() {
    // A 20 GB sparse file where the train images go: the record's rows and size say that
    // no such npz can be right, so it is not hashed (minutes of zeros) first.
    let (_dir, out) = build("idx,npz");
    let name = pack::npz_images_name(Split::Train);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(out.join(&name))
        .unwrap();
    file.set_len(20 << 30).unwrap();
    let m = messages_within(&out, 60);
    let prefix = format!(
        "{name}: {} bytes, more than any file of a build of its rows and size can have (",
        20u64 << 30
    );
    assert!(m.iter().any(|p| p.starts_with(&prefix)), "{m:?}");
}
