//! `preview.jpg` through the binary: one row per gender x status class with images, tiles
//! of S/2 (64 below 128), the same bytes whatever the threads, on a rerun and from `pack`;
//! listed everywhere a build lists its artifacts unless `--no-preview`; one per size; and
//! `verify` checks it against the classes the labels hold.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Output;

use image::RgbImage;
use ndarray::{Array1, Array4};
use ndarray_npy::NpzReader;

use crate::support::inline::update_sum;
use crate::support::{Run, kaokore_verify, stderr};

/// Images of the v1.0 metadata the builds take (ids below it): some classes fill a row of
/// eight, some do not.
const IMAGES: u32 = 120;

/// `kaokore CMD --dataset-version 1.0 --metadata (first IMAGES) --cache ROOT/cache --out
/// ROOT/OUT --quiet ARGS...`
fn kaokore(run: &Run, cmd: &str, out: &str, args: &[&str]) -> Output {
    run.kaokore(cmd)
        .args(["--quiet", "--dataset-version", "1.0", "--metadata"])
        .arg(run.metadata(IMAGES))
        .arg("--cache")
        .arg(run.cache())
        .arg("--out")
        .arg(run.root.join(out))
        .args(args)
        .output()
        .expect("run kaokore")
}

fn ok(run: &Run, cmd: &str, out: &str, args: &[&str]) -> std::path::PathBuf {
    let o = kaokore(run, cmd, out, args);
    assert!(o.status.success(), "{cmd} {args:?}: {}", stderr(&o));
    run.root.join(out)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sheet(dir: &Path) -> RgbImage {
    image::load_from_memory_with_format(
        &std::fs::read(dir.join("preview.jpg")).unwrap(),
        image::ImageFormat::Jpeg,
    )
    .unwrap()
    .to_rgb8()
}

/// Images per (gender, status) class of the metadata's labels.csv, read without the
/// library (every labelled image of these lines has a URL, and the fixture serves all).
fn classes(run: &Run) -> BTreeMap<(u8, u8), u64> {
    let labels = read(&run.metadata(IMAGES).join("labels.csv"));
    let mut counts = BTreeMap::new();
    for row in labels.lines().skip(1).filter(|l| !l.is_empty()) {
        let f: Vec<&str> = row.split(',').collect();
        *counts
            .entry((f[1].parse().unwrap(), f[2].parse().unwrap()))
            .or_insert(0) += 1;
    }
    counts
}

/// Width and height of a sheet of `rows` rows of `tile`-pixel tiles, 2-pixel gutters.
fn dimensions(tile: u32, rows: u32) -> (u32, u32) {
    (8 * tile + 9 * 2, rows * tile + (rows + 1) * 2)
}

/// verify's stdout and stderr, and whether it passed.
fn verify(dir: &Path) -> (bool, String) {
    let v = kaokore_verify(dir);
    let text = String::from_utf8_lossy(&v.stdout).into_owned() + &stderr(&v);
    (v.status.success(), text)
}

#[test]
fn one_row_per_class_the_same_bytes_whatever_the_jobs_the_run_or_the_command() {
    let run = Run::new();
    let one = ok(&run, "build", "one", &["--jobs", "1"]);
    let four = ok(&run, "build", "four", &["--jobs", "4"]);
    let bytes = std::fs::read(one.join("preview.jpg")).unwrap();
    assert_eq!(bytes, std::fs::read(four.join("preview.jpg")).unwrap());
    assert_eq!(
        read(&one.join("SHA256SUMS")),
        read(&four.join("SHA256SUMS"))
    );
    // A rerun into the same directory, and pack from the cache, write the same bytes.
    ok(&run, "build", "one", &["--jobs", "3"]);
    assert_eq!(bytes, std::fs::read(one.join("preview.jpg")).unwrap());
    let packed = ok(&run, "pack", "packed", &["--jobs", "2"]);
    assert_eq!(bytes, std::fs::read(packed.join("preview.jpg")).unwrap());

    let classes = classes(&run);
    assert!(
        classes.len() >= 4 && classes.values().any(|&n| n > 8) && classes.values().any(|&n| n < 8)
    );
    let sheet = sheet(&one);
    assert_eq!(sheet.dimensions(), dimensions(128, classes.len() as u32));

    // Each row's tiles are its class's first train images (then dev, then test), each the
    // 2 x 2 mean of the normalized pixels, up to JPEG's error.
    let mut first: BTreeMap<(u8, u8), Vec<ndarray::Array3<u8>>> = BTreeMap::new();
    for split in ["train", "dev", "test"] {
        let mut npz = NpzReader::new(
            std::fs::File::open(one.join(format!("npz/kaokore-{split}-imgs.npz"))).unwrap(),
        )
        .unwrap();
        let images: Array4<u8> = npz.by_name("arr_0").unwrap();
        let mut labels = NpzReader::new(
            std::fs::File::open(one.join(format!("npz/kaokore-{split}-labels.npz"))).unwrap(),
        )
        .unwrap();
        let gender: Array1<u8> = labels.by_name("gender").unwrap();
        let status: Array1<u8> = labels.by_name("status").unwrap();
        for (i, image) in images.outer_iter().enumerate() {
            let tiles = first.entry((gender[i], status[i])).or_default();
            if tiles.len() < 8 {
                tiles.push(image.to_owned());
            }
        }
    }
    for (row, ((g, s), images)) in first.iter().enumerate() {
        assert_eq!(images.len() as u64, classes[&(*g, *s)].min(8));
        for (col, image) in images.iter().enumerate() {
            let (left, top) = (2 + col as u32 * 130, 2 + row as u32 * 130);
            let mut diff = 0u64;
            for y in 0..128u32 {
                for x in 0..128u32 {
                    let got = sheet.get_pixel(left + x, top + y);
                    for c in 0..3 {
                        let (y2, x2) = (2 * y as usize, 2 * x as usize);
                        let sum: u32 = [(0, 0), (0, 1), (1, 0), (1, 1)]
                            .iter()
                            .map(|(dy, dx)| u32::from(image[[y2 + dy, x2 + dx, c]]))
                            .sum();
                        let want = (sum + 2) / 4;
                        diff += u64::from(want.abs_diff(u32::from(got[c])));
                    }
                }
            }
            let mean = diff as f64 / (128.0 * 128.0 * 3.0);
            assert!(mean < 6.0, "row {row} tile {col}: mean difference {mean}");
        }
        // A row of fewer than eight images ends in tiles of the gutter's colour.
        if images.len() < 8 {
            let centre = sheet.get_pixel(2 + 7 * 130 + 64, 2 + row as u32 * 130 + 64);
            assert!(centre.0.iter().all(|&c| c.abs_diff(48) <= 3), "{centre:?}");
        }
    }
}

#[test]
fn tiles_are_64_below_size_128_and_half_the_edge_above_one_sheet_per_size() {
    let run = Run::new();
    let out = ok(&run, "build", "out", &["--size", "32,160"]);
    let rows = classes(&run).len() as u32;
    assert_eq!(
        sheet(&out.join("size-32")).dimensions(),
        dimensions(64, rows)
    );
    assert_eq!(
        sheet(&out.join("size-160")).dimensions(),
        dimensions(80, rows)
    );
    assert!(!out.join("preview.jpg").exists());
    for size in ["size-32", "size-160"] {
        assert!(read(&out.join(size).join("SHA256SUMS")).contains("  preview.jpg\n"));
    }
    let (passed, text) = verify(&out);
    assert!(passed, "{text}");
    // Exactly 128: 64 pixels either way.
    let at_128 = ok(&run, "pack", "at-128", &["--size", "128"]);
    assert_eq!(sheet(&at_128).dimensions(), dimensions(64, rows));
}

#[test]
fn no_preview_leaves_it_out_everywhere_and_a_rebuild_owns_it() {
    let run = Run::new();
    let out = ok(&run, "build", "out", &["--no-preview", "--size", "32"]);
    let listings = |out: &Path| {
        [
            "SHA256SUMS",
            "croissant.json",
            "README.md",
            ".kaokore-build.json",
            "report.json",
        ]
        .map(|f| (f, read(&out.join(f))))
    };
    assert!(!out.join("preview.jpg").exists());
    for (file, text) in listings(&out) {
        assert!(!text.contains("preview"), "{file} mentions the preview");
    }
    let (passed, text) = verify(&out);
    assert!(passed, "{text}");

    // Built again with it: it is there and listed; without it again: removed.
    ok(&run, "pack", "out", &["--size", "32"]);
    assert!(out.join("preview.jpg").is_file());
    for (file, text) in listings(&out) {
        assert!(
            text.contains("preview"),
            "{file} does not mention the preview"
        );
    }
    let (passed, text) = verify(&out);
    assert!(passed, "{text}");
    ok(&run, "pack", "out", &["--size", "32", "--no-preview"]);
    assert!(!out.join("preview.jpg").exists());
    let (passed, text) = verify(&out);
    assert!(passed, "{text}");

    // --formats names the other formats only.
    let o = kaokore(&run, "pack", "other", &["--formats", "idx,preview"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("unknown format 'preview'"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn verify_decodes_the_sheet_and_checks_its_rows_against_the_labels() {
    let run = Run::new();
    let out = ok(&run, "build", "out", &["--size", "32", "--formats", "idx"]);
    let rows = classes(&run).len() as u32;
    let (passed, text) = verify(&out);
    assert!(passed, "{text}");
    let good = std::fs::read(out.join("preview.jpg")).unwrap();

    // A sheet of one row too few, its checksums updated to match.
    let (width, height) = dimensions(64, rows - 1);
    let mut swapped = Vec::new();
    image::codecs::jpeg::JpegEncoder::new(&mut swapped)
        .encode(
            &vec![128u8; (width * height * 3) as usize],
            width,
            height,
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    std::fs::write(out.join("preview.jpg"), &swapped).unwrap();
    update_sum(&out, "preview.jpg");
    let (passed, text) = verify(&out);
    assert!(!passed);
    let (w, h) = dimensions(64, rows);
    assert!(
        text.contains(&format!(
            "preview.jpg: is {width} x {height} pixels; {rows} classes with images make a \
             sheet of {w} x {h} at size 32"
        )),
        "{text}"
    );

    // Not a JPEG at all.
    std::fs::write(out.join("preview.jpg"), b"<html>not an image</html>").unwrap();
    update_sum(&out, "preview.jpg");
    let (passed, text) = verify(&out);
    assert!(
        !passed && text.contains("preview.jpg: does not decode"),
        "{text}"
    );

    // Gone.
    std::fs::write(out.join("preview.jpg"), &good).unwrap();
    update_sum(&out, "preview.jpg");
    assert!(verify(&out).0);
    std::fs::remove_file(out.join("preview.jpg")).unwrap();
    let (passed, text) = verify(&out);
    assert!(!passed && text.contains("preview.jpg"), "{text}");
}

#[test]
fn the_card_shows_the_sheet_with_a_table_of_its_rows() {
    let run = Run::new();
    let out = ok(&run, "build", "out", &["--size", "32"]);
    let card = read(&out.join("README.md"));
    let image = card
        .find("\n![preview](preview.jpg)\n")
        .expect("the image line");
    assert!(image < card.find("## Contents").unwrap(), "at the top");
    assert!(card.contains("the request above not to redistribute applies to it"));
    let gender = ["male", "female"];
    let status = ["noble", "warrior", "incarnation", "commoner"];
    let mut table = String::from("| row | gender | status | images |\n|---:|---|---|---:|\n");
    for (row, ((g, s), n)) in classes(&run).iter().enumerate() {
        table.push_str(&format!(
            "| {} | {} | {} | {n} |\n",
            row + 1,
            gender[*g as usize],
            status[*s as usize]
        ));
    }
    assert!(card.contains(&table), "{card}");
    let croissant: serde_json::Value =
        serde_json::from_str(&read(&out.join("croissant.json"))).unwrap();
    let entry = croissant["distribution"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["contentUrl"] == "preview.jpg")
        .expect("a FileObject");
    assert_eq!(entry["encodingFormat"], "image/jpeg");
    assert_eq!(entry["@type"], "cr:FileObject");
}
