//! The same bytes on every machine. A fixed fixture build (every format at sizes 64 and
//! 256, images of every kind: baseline, gray, CMYK and progressive JPEG, 16-bit PNG,
//! sources larger and smaller than S) must give the SHA256SUMS checked in at
//! `tests/fixtures/reference.SHA256SUMS`; and, under `scripts/test.sh --full`, the same
//! build run by `qemu-x86_64` as CPUs without AVX (Nehalem: SSE4.2) or without SSE4
//! (qemu64: SSE2) must give the same bytes as this machine's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use kaokore_fixture::{FixtureConfig, ImageKind};

use crate::support::{Run, path_arg, report, stderr};

/// Set to 1 to rewrite the reference file from this build (and say why in the commit).
const BLESS: &str = "KAOKORE_BLESS";
const REFERENCE: &str = "tests/fixtures/reference.SHA256SUMS";
const SIZES: [u32; 2] = [64, 256];
const FORMATS: &str = "idx,npz,parquet,images,webdataset,mnist,tfds";

/// Lines of KaoKore 1.3's urls.txt (0-based) the build takes, in this order as ids 0..22:
/// Kyoto and CODH crops asked at `256,256` (as large as S = 256, larger than 64) and Keio
/// crops asked at `!200,200` (served 200 x 200: smaller than 256, larger than 64).
const SOURCE_LINES: [usize; 22] = [
    0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 668, 669, 670, 671, 7280, 7281, 7282, 7283, 7284, 7285,
];

/// The kind each image is served as: the six kinds in turn, so each size request gets
/// every kind.
fn kind_of(id: usize) -> ImageKind {
    [
        ImageKind::AsRequested,
        ImageKind::Gray,
        ImageKind::CmykJpeg,
        ImageKind::ProgressiveJpeg,
        ImageKind::Png16,
        ImageKind::AsRequested,
    ][id % 6]
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The reference dataset's metadata in `dir`: the chosen real URLs with their real tag
/// lines (renumbered), and labels that give every split and class rows.
fn write_metadata(dir: &Path) -> Vec<String> {
    let src = repo().join("data/kaokore-metadata/v1.3");
    let read = |f: &str| std::fs::read_to_string(src.join(f)).unwrap();
    let all_urls = read("urls.txt");
    let all_urls: Vec<&str> = all_urls.lines().collect();
    let all_tags = read("original_tags.txt");
    let urls: Vec<String> = SOURCE_LINES
        .iter()
        .map(|&l| all_urls[l].to_string())
        .collect();
    let mut labels = String::from("image,gender,status,set\n");
    let mut tags = String::new();
    for (id, &line) in SOURCE_LINES.iter().enumerate() {
        let split = ["train", "train", "dev", "train", "test"][id % 5];
        labels += &format!("{id:08}.jpg,{},{},{split}\n", id % 2, (id / 2) % 4);
        let prefix = format!("{line:08}.jpg:");
        if let Some(t) = all_tags.lines().find(|t| t.starts_with(&prefix)) {
            tags += &format!("{id:08}.jpg:{}\n", &t[prefix.len()..]);
        }
    }
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join("urls.txt"), urls.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("labels.csv"), labels).unwrap();
    std::fs::write(dir.join("original_tags.txt"), tags).unwrap();
    for f in ["labels.metadata.en.txt", "labels.metadata.ja.txt"] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    urls
}

/// Fixture hosts serving the reference images: each URL's path (unique per image) is a
/// rule for its kind.
fn reference_run() -> (Run, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let urls = write_metadata(tmp.path());
    let kinds = urls
        .iter()
        .enumerate()
        .map(|(id, url)| {
            let path = url.splitn(4, '/').nth(3).unwrap();
            (format!("/{path}"), kind_of(id))
        })
        .collect();
    let run = Run::with(FixtureConfig {
        kinds,
        ..FixtureConfig::default()
    });
    let meta = run.root.join("meta");
    copy_dir(tmp.path(), &meta);
    (run, meta)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// Build the reference dataset into `ROOT/name` (with its own cache), the binary run by
/// `runner` (say `qemu-x86_64 -cpu qemu64`) when given; returns the build's SHA256SUMS,
/// every size's lines with their paths from the build's top.
fn build(run: &Run, meta: &Path, name: &str, runner: &[&str]) -> String {
    let out = run.root.join(name);
    let cache = run.root.join(format!("{name}-cache"));
    let bin = env!("CARGO_BIN_EXE_kaokore");
    let mut cmd = match runner.split_first() {
        Some((program, args)) => {
            let mut c = Command::new(program);
            c.args(args).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let sizes = SIZES.map(|s| s.to_string()).join(",");
    let o = cmd
        .arg("build")
        .args(run.hosts.rewrite_args())
        .args(["--metadata", &path_arg(meta), "--dataset-version", "1.3"])
        .args(["--out", &path_arg(&out), "--cache", &path_arg(&cache)])
        .args([
            "--size",
            &sizes,
            "--formats",
            FORMATS,
            "--strict",
            "--quiet",
        ])
        .output()
        .expect("run kaokore");
    assert!(
        o.status.success(),
        "{runner:?} build failed: {}",
        stderr(&o)
    );
    let mut sums = String::new();
    for s in SIZES {
        let dir = format!("size-{s}");
        let text = std::fs::read_to_string(out.join(&dir).join("SHA256SUMS")).unwrap();
        for line in text.lines() {
            let (hash, file) = line.split_once("  ").expect("a sha256sum line");
            sums += &format!("{hash}  {dir}/{file}\n");
        }
    }
    sums
}

/// The files whose lines differ between two SHA256SUMS texts: the first few, and how
/// many in all.
fn differing(a: &str, b: &str) -> String {
    let set = |t: &str| -> BTreeSet<String> { t.lines().map(String::from).collect() };
    let (a, b) = (set(a), set(b));
    let files: BTreeSet<&str> = a
        .symmetric_difference(&b)
        .map(|l| l.split_once("  ").map_or(l.as_str(), |(_, f)| f))
        .collect();
    let shown: Vec<&str> = files.iter().take(8).copied().collect();
    format!("{} files, among them {}", files.len(), shown.join(", "))
}

#[test]
fn reference_build_takes_every_decode_and_resize_path() {
    let (run, meta) = reference_run();
    build(&run, &meta, "out", &[]);
    let out = run.root.join("out");
    for s in SIZES {
        let r = report(&out.join(format!("size-{s}")));
        let n = &r["normalization"];
        assert_eq!(n["decoded"], 22, "size {s}: {n}");
        for layout in ["gray8", "cmyk8", "rgb16"] {
            assert!(
                n["converted_from"][layout].as_u64().unwrap_or(0) >= 2,
                "size {s}: no {layout} source converted: {n}"
            );
        }
        // At 64 every image is made smaller; at 256 the six 200 x 200 crops larger and
        // the 256 x 256 ones not at all, and those that are RGB JPEGs are kept as they are
        // (the baseline and progressive ones).
        let resized = n["resized"].as_u64().unwrap();
        let kept = n["stored_as_jpeg"].as_u64().unwrap();
        if s == 64 {
            assert_eq!((resized, kept), (22, 0), "size 64: {n}");
        } else {
            assert_eq!(resized, 6, "size 256: {n}");
            assert!(kept >= 6, "size 256: {n}");
        }
    }
}

#[test]
fn reference_sha256sums_hold() {
    let (run, meta) = reference_run();
    let sums = build(&run, &meta, "out", &[]);
    let reference_path = repo().join(REFERENCE);
    if std::env::var(BLESS).as_deref() == Ok("1") {
        std::fs::write(&reference_path, &sums).unwrap();
        eprintln!("{REFERENCE} rewritten from this build ({BLESS}=1)");
        return;
    }
    let reference = std::fs::read_to_string(&reference_path).unwrap_or_default();
    assert!(
        sums == reference,
        "the output bytes of the reference build changed: {}.\n\
         If that is intended, regenerate {REFERENCE} deliberately with\n    \
         {BLESS}=1 cargo nextest run --release -E 'test(reference_sha256sums_hold)'\n\
         and say in the commit message why the bytes changed.",
        differing(&sums, &reference)
    );
}

/// The `qemu-x86_64` CPU models this build must give this machine's bytes on: SSE2 only
/// (qemu64) and SSE4.2 without AVX (Nehalem).
const CPU_MODELS: [&str; 2] = ["qemu64", "Nehalem"];

#[test]
#[ignore = "needs qemu-x86_64 (Debian: qemu-user) and a few minutes: scripts/test.sh --full"]
fn same_bytes_on_every_cpu_under_qemu() {
    let (run, meta) = reference_run();
    let native = build(&run, &meta, "native", &[]);
    for cpu in CPU_MODELS {
        let emulated = build(&run, &meta, cpu, &["qemu-x86_64", "-cpu", cpu]);
        assert!(
            emulated == native,
            "under qemu-x86_64 -cpu {cpu}, files differ from this machine's: {}",
            differing(&emulated, &native)
        );
    }
}
