//! Broken metadata directories: each mistake gets a clear message naming the file and the
//! line, exit status 2, and nothing written.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{kaokore, stderr};

const FILES: [&str; 5] = [
    "urls.txt",
    "labels.csv",
    "original_tags.txt",
    "labels.metadata.en.txt",
    "labels.metadata.ja.txt",
];

/// A copy of the real v1.0 files with one file replaced by `edit` of its text.
fn broken(name: &str, edit: impl FnOnce(String) -> Vec<u8>) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/kaokore-metadata/v1.0");
    for f in FILES {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join(name)).unwrap();
    std::fs::write(dir.path().join(name), edit(text)).unwrap();
    dir
}

fn replace_line(text: &str, line: usize, new: &str) -> Vec<u8> {
    let mut lines: Vec<&str> = text.lines().collect();
    lines[line - 1] = new;
    (lines.join("\n") + "\n").into_bytes()
}

/// Run `kaokore build --metadata DIR --out OUT` and return (status, stderr, OUT).
fn build_with(meta: &Path) -> (i32, String, PathBuf) {
    let out = meta.join("out");
    let output = kaokore()
        .args(["build", "--quiet", "--dataset-version", "1.0", "--metadata"])
        .arg(meta)
        .arg("--out")
        .arg(&out)
        .arg("--cache")
        .arg(meta.join("cache"))
        .output()
        .unwrap();
    (output.status.code().unwrap_or(-1), stderr(&output), out)
}

/// `expected` starts with the file name; the message carries its full path.
fn assert_rejected(dir: tempfile::TempDir, expected: &str) {
    let (code, stderr, out) = build_with(dir.path());
    assert_eq!(code, 2, "exit status; stderr: {stderr}");
    let named = dir.path().join(expected.split(':').next().unwrap());
    assert!(
        stderr.contains(&named.display().to_string()),
        "the message names the file by its path {named:?}: {stderr}"
    );
    assert!(
        stderr.contains(expected),
        "stderr should contain {expected:?}, got: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!out.exists(), "nothing may be written on bad input");
    assert!(!dir.path().join("cache").exists(), "nor the cache created");
}

#[test]
fn unknown_split() {
    let d = broken("labels.csv", |t| {
        replace_line(&t, 3, "00005529.jpg,0,2,valid")
    });
    assert_rejected(
        d,
        "labels.csv:3: unknown split 'valid' (expected train, dev or test)",
    );
}

#[test]
fn gender_out_of_range() {
    let d = broken("labels.csv", |t| {
        replace_line(&t, 2, "00002311.jpg,2,0,train")
    });
    assert_rejected(d, "labels.csv:2: gender 2 out of range (0..1)");
}

#[test]
fn status_out_of_range() {
    let d = broken("labels.csv", |t| {
        replace_line(&t, 5, "00000100.jpg,0,4,test")
    });
    assert_rejected(d, "labels.csv:5: status 4 out of range (0..3)");
}

#[test]
fn label_not_a_number() {
    let d = broken("labels.csv", |t| {
        replace_line(&t, 4, "00000100.jpg,male,0,test")
    });
    assert_rejected(d, "labels.csv:4: gender 'male' is not a class index");
}

#[test]
fn duplicate_image() {
    let d = broken("labels.csv", |t| {
        replace_line(&t, 10, "00002311.jpg,1,0,dev")
    });
    assert_rejected(
        d,
        "labels.csv:10: duplicate image 00002311.jpg (first on line 2)",
    );
}

#[test]
fn non_numeric_id() {
    let d = broken("labels.csv", |t| replace_line(&t, 7, "face.jpg,1,0,train"));
    assert_rejected(
        d,
        "labels.csv:7: image 'face.jpg' is not an image name like 00000042.jpg",
    );
}

#[test]
fn missing_column() {
    let d = broken("labels.csv", |t| {
        let body: Vec<String> = t
            .lines()
            .map(|l| l.rsplit_once(',').unwrap().0.to_string())
            .collect();
        (body.join("\n") + "\n").into_bytes()
    });
    assert_rejected(
        d,
        "labels.csv:1: missing column 'set' (header is 'image,gender,status')",
    );
}

#[test]
fn wrong_number_of_fields() {
    let d = broken("labels.csv", |t| replace_line(&t, 6, "00000100.jpg,0,1"));
    assert_rejected(d, "labels.csv:6: 3 fields, the header has 4");
}

#[test]
fn url_that_is_not_http() {
    let d = broken("urls.txt", |t| replace_line(&t, 12, "file:///etc/passwd"));
    assert_rejected(d, "urls.txt:12: not an http(s) URL: 'file:///etc/passwd'");
}

#[test]
fn tags_line_without_image_name() {
    let d = broken("original_tags.txt", |t| {
        replace_line(&t, 20, "原典=ふんせう;向き=横")
    });
    assert_rejected(
        d,
        "original_tags.txt:20: expected 'NNNNNNNN.jpg:key=value;...'",
    );
}

#[test]
fn tags_line_with_bad_image_name() {
    let d = broken("original_tags.txt", |t| {
        replace_line(&t, 21, "0000002x.jpg:原典=ふんせう")
    });
    assert_rejected(
        d,
        "original_tags.txt:21: '0000002x.jpg' is not an image name like 00000042.jpg",
    );
}

#[test]
fn not_utf8() {
    let d = broken("original_tags.txt", |t| {
        let mut bytes = t.into_bytes();
        let second_line = bytes.iter().position(|&b| b == b'\n').unwrap() + 1;
        bytes[second_line + 3] = 0xff;
        bytes
    });
    assert_rejected(d, "original_tags.txt: not valid UTF-8 (line 2)");
}

#[test]
fn missing_file() {
    let d = broken("urls.txt", |t| t.into_bytes());
    std::fs::remove_file(d.path().join("urls.txt")).unwrap();
    assert_rejected(d, "urls.txt: No such file or directory");
}

#[test]
fn class_count_mismatch() {
    let d = broken("labels.metadata.en.txt", |t| {
        t.replacen("2\t4", "2\t5", 1).into_bytes()
    });
    assert_rejected(
        d,
        "labels.metadata.en.txt:8: 'status' lists 4 classes, the header says 5",
    );
}

#[test]
fn empty_labels() {
    let d = broken("labels.csv", |_| Vec::new());
    assert_rejected(d, "labels.csv:1: empty file");
}

#[test]
fn label_beyond_the_end_of_urls() {
    // v1.0's urls.txt has 5824 lines (ids 0..5823): a label for 5824 names no line.
    let d = broken("labels.csv", |t| {
        replace_line(&t, 3, "00005824.jpg,0,0,train")
    });
    assert_rejected(
        d,
        "labels.csv:3: image 00005824.jpg is beyond the end of urls.txt (5824 lines): the files are not of one version",
    );
}

#[test]
fn absurd_label_id_is_an_error_not_an_allocation() {
    // Once a 216 GB allocation and an abort.
    let d = broken("labels.csv", |t| {
        replace_line(&t, 4, "999999999.jpg,0,0,train")
    });
    assert_rejected(
        d,
        "labels.csv:4: image 999999999.jpg is beyond the end of urls.txt (5824 lines): the files are not of one version",
    );
}

#[test]
fn tags_beyond_the_end_of_urls() {
    let d = broken("original_tags.txt", |t| {
        replace_line(&t, 7, "999999999.jpg:原典=ふんせう")
    });
    assert_rejected(
        d,
        "original_tags.txt:7: image 999999999.jpg is beyond the end of urls.txt (5824 lines): the files are not of one version",
    );
}

#[test]
fn urls_file_of_200_mb_blank_lines_is_refused_unread() {
    // Once more than 4 GB of memory (a 216-byte record and a warning per line).
    let d = broken("urls.txt", |t| t.into_bytes());
    {
        use std::io::Write;
        let mut f = std::fs::File::create(d.path().join("urls.txt")).unwrap();
        let chunk = vec![b'\n'; 1 << 20];
        for _ in 0..200 {
            f.write_all(&chunk).unwrap();
        }
    }
    let started = std::time::Instant::now();
    assert_rejected(
        d,
        "urls.txt: 209715200 bytes, more than the 16 MiB a metadata file may have (upstream's largest is under 2 MB)",
    );
    assert!(started.elapsed().as_secs() < 30, "stops at once");
}

#[test]
fn urls_file_with_more_lines_than_any_version_could_have() {
    // 1 MB of blank lines: small, but a million and one image ids.
    let d = broken("urls.txt", |t| {
        let mut text = t.into_bytes();
        text.resize(text.len() + 1_000_001 - 5824, b'\n');
        text
    });
    assert_rejected(
        d,
        "urls.txt:1000001: more than 1000000 lines (image ids); KaoKore versions have about 10,000",
    );
}

/// Run `kaokore info --json --metadata DIR` with its address space capped at `limit_kib`
/// (so a parse that takes more memory aborts): (status, stdout as JSON, stderr).
fn info_with(meta: &Path, limit_kib: u64) -> (i32, serde_json::Value, String) {
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {limit_kib} && exec \"$@\""))
        .arg("sh")
        .arg(env!("CARGO_BIN_EXE_kaokore"))
        .args(["info", "--json", "--dataset-version", "1.0", "--metadata"])
        .arg(meta)
        .arg("--cache")
        .arg(meta.join("cache"))
        .output()
        .unwrap();
    let json = serde_json::from_slice(&o.stdout).unwrap_or(serde_json::Value::Null);
    assert!(!meta.join("cache").exists(), "info creates no cache");
    (o.status.code().unwrap_or(-1), json, stderr(&o))
}

#[test]
fn the_most_lines_urls_may_have_parse_in_bounded_memory() {
    // A million lines, nearly all blank: accepted, and parsed within 256 MiB of address
    // space (a blank line costs about 100 bytes; it cost 270 before records boxed tags).
    let d = broken("urls.txt", |t| {
        let mut text = t.into_bytes();
        text.resize(text.len() + 1_000_000 - 5824, b'\n');
        text
    });
    let (code, info, stderr) = info_with(d.path(), 256 << 10);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(info["lines"], 1_000_000);
    assert_eq!(info["urls"], 5552);
    assert_eq!(info["blank_lines"], 1_000_000 - 5552);
}

#[test]
fn byte_order_marks_are_accepted() {
    let d = broken("urls.txt", |t| t.into_bytes());
    for f in FILES {
        let path = d.path().join(f);
        let text = std::fs::read(&path).unwrap();
        std::fs::write(&path, [b"\xef\xbb\xbf".as_slice(), &text].concat()).unwrap();
    }
    let (code, info, stderr) = info_with(d.path(), 4 << 20);
    assert_eq!(code, 0, "{stderr}");
    // The same figures as without the marks (see info_on_real_files).
    assert_eq!(info["lines"], 5824);
    assert_eq!(info["urls"], 5552);
    assert_eq!(info["labelled"], 5298);
    assert_eq!(info["splits"]["train"]["images"], 4238);
    assert_eq!(info["hosts"]["codh.rois.ac.jp"], 2366);
}

#[test]
fn url_schemes_are_case_insensitive() {
    let d = broken("urls.txt", |t| {
        let upper: Vec<String> = t
            .lines()
            .map(|l| {
                l.replacen("http://", "HTTP://", 1)
                    .replacen("https://", "Https://", 1)
            })
            .collect();
        (upper.join("\n") + "\n").into_bytes()
    });
    let (code, info, stderr) = info_with(d.path(), 4 << 20);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(info["urls"], 5552);
    assert_eq!(info["hosts"]["codh.rois.ac.jp"], 2366);
    // Other schemes are still refused, whatever their case.
    let d = broken("urls.txt", |t| {
        replace_line(&t, 9, "FTP://codh.rois.ac.jp/a.jpg")
    });
    assert_rejected(
        d,
        "urls.txt:9: not an http(s) URL: 'FTP://codh.rois.ac.jp/a.jpg'",
    );
}

#[test]
fn usage_errors_exit_2() {
    let run = |args: &[&str]| {
        let o = kaokore().args(args).output().unwrap();
        (o.status.code(), stderr(&o))
    };
    let (code, err) = run(&["build", "--dataset-version", "2.0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown dataset version '2.0'"), "{err}");
    let (code, err) = run(&["build", "--formats", "idx,tiff"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("unknown format 'tiff'"), "{err}");
    let (code, err) = run(&["fetch", "--rewrite", "nonsense"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("expected FROM=TO"), "{err}");
    let (code, err) = run(&["fetch", "--timeout", "0"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--timeout must be a positive number"), "{err}");
    // Beyond a day is refused (1e20 seconds panicked in Duration); tiny values stay.
    for big in ["1e20", "86401"] {
        let (code, err) = run(&["fetch", "--timeout", big]);
        assert_eq!(code, Some(2), "{big}: {err}");
        assert!(err.contains("at most 86400"), "{err}");
    }
}

#[test]
fn info_on_real_files() {
    let o = kaokore()
        .args(["info", "--dataset-version", "1.0", "--json", "--cache"])
        .arg(std::env::temp_dir().join("kaokore-no-such-cache"))
        .output()
        .unwrap();
    assert!(o.status.success());
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["lines"], 5824);
    assert_eq!(v["urls"], 5552);
    assert_eq!(v["blank_lines"], 272);
    assert_eq!(v["labelled"], 5298);
    assert_eq!(v["splits"]["train"]["images"], 4238);
    assert_eq!(v["splits"]["dev"]["images"], 533);
    assert_eq!(v["splits"]["test"]["images"], 527);
    assert_eq!(v["hosts"]["codh.rois.ac.jp"], 2366);
    assert_eq!(v["size_requests"]["256,"], 5552);
}
