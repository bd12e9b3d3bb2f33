//! What the command line says about itself: the shell completions and the man page name
//! every command and every long option that `--help` shows (the formats' own options
//! included), and `info --json` and `verify --json` print one JSON document with exactly
//! the keys README documents.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Output;

use kaokore::metadata::Split;
use kaokore::pack;
use kaokore::progress::Progress;

use crate::support::inline::*;
use crate::support::{kaokore, path_arg, stderr};

fn run(args: &[&str]) -> Output {
    kaokore().args(args).output().expect("run kaokore")
}

/// stdout of a run that must succeed.
fn stdout_of(args: &[&str]) -> String {
    let o = run(args);
    assert_eq!(o.status.code(), Some(0), "{args:?}: {}", stderr(&o));
    String::from_utf8(o.stdout).expect("UTF-8 on stdout")
}

/// The lines of a `--help` section (`Commands:`, `Options:`) up to the next section.
fn section<'a>(help: &'a str, title: &str) -> Vec<&'a str> {
    help.lines()
        .skip_while(|l| *l != title)
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .collect()
}

/// The commands `kaokore --help` lists (clap's own `help` left out).
fn commands() -> Vec<String> {
    let help = stdout_of(&["--help"]);
    section(&help, "Commands:")
        .into_iter()
        // A command's line is indented by two; its wrapped description, further.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect()
}

/// The long options `kaokore CMD --help` lists, `--help` itself included.
fn long_options(cmd: &str) -> Vec<String> {
    let help = stdout_of(&[cmd, "--help"]);
    section(&help, "Options:")
        .into_iter()
        // An option's line is indented by at most six (`  -h, --help`, `      --out <DIR>`);
        // its help text, by ten.
        .filter(|l| {
            let text = l.trim_start();
            text.starts_with('-') && l.len() - text.len() <= 6
        })
        .filter_map(|l| {
            l.split([' ', ','])
                .find(|word| word.starts_with("--"))
                .map(String::from)
        })
        .collect()
}

#[test]
fn the_help_lists_every_command_and_the_formats_options() {
    assert_eq!(
        commands(),
        [
            "build",
            "fetch",
            "pack",
            "verify",
            "info",
            "completions",
            "man"
        ]
    );
    let build = long_options("build");
    for option in [
        "--dataset-version",
        "--formats",
        "--shard-size",
        "--row-group-rows",
        "--strict",
        "--max-missing",
        "--help",
    ] {
        assert!(build.iter().any(|o| o == option), "{option}: {build:?}");
    }
    assert_eq!(long_options("verify"), ["--quiet", "--json", "--help"]);
}

#[test]
fn bash_completions_offer_each_command_its_options() {
    let script = stdout_of(&["completions", "bash"]);
    // The words offered after `kaokore`, and after `kaokore CMD`.
    let offered = |state: &str| -> BTreeSet<String> {
        let mut lines = script.lines().map(str::trim);
        lines.find(|l| *l == format!("{state})"));
        let opts = lines
            .find_map(|l| l.strip_prefix("opts=\""))
            .unwrap_or_else(|| panic!("no completions for {state}"));
        opts.trim_end_matches('"')
            .split_whitespace()
            .map(String::from)
            .collect()
    };
    let top = offered("kaokore");
    for cmd in commands() {
        assert!(top.contains(&cmd), "{cmd} not offered: {top:?}");
        let words = offered(&format!("kaokore__subcmd__{cmd}"));
        for option in long_options(&cmd) {
            assert!(
                words.contains(&option),
                "kaokore {cmd}: {option} not offered"
            );
        }
    }
}

#[test]
fn every_shell_gets_completions_for_every_command_and_option() {
    let all: BTreeSet<String> = commands().iter().flat_map(|c| long_options(c)).collect();
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let script = stdout_of(&["completions", shell]);
        for cmd in commands() {
            assert!(script.contains(&cmd), "{shell}: no {cmd}");
        }
        for option in &all {
            // fish names a long option without its dashes (`-l shard-size`).
            let written = match shell {
                "fish" => format!("-l {}", &option[2..]),
                _ => option.clone(),
            };
            assert!(script.contains(&written), "{shell}: no {written}");
        }
    }
}

#[test]
fn an_unknown_shell_is_a_usage_error() {
    let o = run(&["completions", "nosuchshell"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(
        stderr(&o).contains("bash, elvish, fish, powershell, zsh"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn the_man_page_documents_every_command_and_option() {
    // roff writes a dash as `\-`.
    let man = stdout_of(&["man"]).replace("\\-", "-");
    assert!(man.contains(".TH kaokore 1"), "{man}");
    assert_eq!(man.matches(".TH ").count(), 1, "one page");
    for cmd in commands() {
        // The command's part: from its heading to the next one.
        let heading = format!(".SS \"kaokore {cmd}\"\n");
        let start = man
            .find(&heading)
            .unwrap_or_else(|| panic!("no part for {cmd}"));
        let part = &man[start + heading.len()..];
        let part = &part[..part.find("\n.S").unwrap_or(part.len())];
        for option in long_options(&cmd) {
            assert!(
                part.contains(&option),
                "kaokore {cmd}: {option} not documented"
            );
        }
    }
    // The help's wording, not a summary of it.
    assert!(
        man.contains("if any image could not be fetched or decoded"),
        "{man}"
    );
}

/// The keys of a JSON object, sorted.
fn keys(v: &serde_json::Value) -> Vec<&str> {
    let mut keys: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    keys
}

/// README's section on the JSON output.
fn readme_json_section() -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
        .expect("README.md");
    let start = readme
        .find("## Machine-readable output")
        .expect("README has a section on the JSON output");
    let rest = &readme[start + 3..];
    rest[..rest.find("\n## ").unwrap_or(rest.len())].to_string()
}

/// Every key is explained in README (as `key`).
fn assert_documented(names: &[&str]) {
    let readme = readme_json_section();
    for name in names {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README does not explain `{name}`"
        );
    }
}

#[test]
fn info_json_is_one_document_of_the_documented_shape() {
    let tmp = tempfile::tempdir().unwrap();
    let args = |cache: &Path| {
        let o = kaokore()
            .args(["info", "--dataset-version", "1.0", "--json", "--cache"])
            .arg(cache)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let text = String::from_utf8(o.stdout).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).expect("one JSON document");
        (text, v)
    };
    // No cache yet: `cache` is null, and none is made.
    let (text, v) = args(&tmp.path().join("no-cache"));
    assert!(!tmp.path().join("no-cache").exists());
    let top = [
        "blank_lines",
        "cache",
        "hosts",
        "labelled",
        "labelled_without_url",
        "lines",
        "providers",
        "schema",
        "size_requests",
        "source",
        "splits",
        "unlabelled_urls",
        "urls",
        "version",
        "warnings",
    ];
    assert_eq!(keys(&v), top);
    assert!(text.starts_with("{\n  \"schema\": 1,"), "{text}");
    assert_eq!(v["version"], "1.0");
    assert_eq!(v["labelled"], 5298);
    assert!(v["cache"].is_null());
    // The splits in split order, each with its counts per label.
    assert_eq!(keys(&v["splits"]), ["dev", "test", "train"]);
    let order: Vec<usize> = ["\"train\"", "\"dev\"", "\"test\""]
        .iter()
        .map(|s| text.find(s).unwrap())
        .collect();
    assert!(order.is_sorted(), "{text}");
    let split = ["gender", "images", "status", "with_url"];
    let mut labelled = 0;
    for s in Split::ALL {
        let info = &v["splits"][s.name()];
        assert_eq!(keys(info), split);
        let images = info["images"].as_u64().unwrap();
        for label in ["gender", "status"] {
            let per_class: u64 = info[label]
                .as_object()
                .unwrap()
                .values()
                .map(|n| n.as_u64().unwrap())
                .sum();
            assert_eq!(per_class, images, "{s} {label}");
        }
        labelled += images;
    }
    assert_eq!(v["labelled"], labelled);
    assert_eq!(v["hosts"]["codh.rois.ac.jp"], 2366);
    // A cache that exists: what it holds of the version.
    let cache = tmp.path().join("cache");
    std::fs::create_dir(&cache).unwrap();
    let (_, v) = args(&cache);
    let coverage = ["dir", "packable", "packable_cached", "urls_cached"];
    assert_eq!(keys(&v["cache"]), coverage);
    assert_eq!(v["cache"]["packable"], 5298);
    assert_eq!(v["cache"]["urls_cached"], 0);
    for names in [&top[..], &split, &coverage] {
        assert_documented(names);
    }
}

const S: u32 = 32;

/// A small build (idx, npz, Parquet) made by the library, no network needed.
fn small_build() -> (tempfile::TempDir, PathBuf) {
    let inline = inline_dataset(30, S, &ALL_KINDS);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    pack::pack(
        &inline.dataset,
        &MapSource::new(inline.files),
        &kaokore::pipeline::IMAGE_CHAIN,
        &options(S, 2, "idx,npz,parquet"),
        &out,
        &Progress::hidden("pack", 0),
    )
    .unwrap();
    (dir, out)
}

/// `kaokore verify --json DIR`: its exit status and its document.
fn verify_json(dir: &Path) -> (Option<i32>, serde_json::Value) {
    let o = kaokore()
        .args(["verify", "--json"])
        .arg(dir)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}): {}",
            String::from_utf8_lossy(&o.stdout)
        )
    });
    // With --json, stderr is left for errors that stop verify.
    assert_eq!(stderr(&o), "");
    (o.status.code(), v)
}

const VERIFY_KEYS: [&str; 7] = [
    "checks",
    "dir",
    "extra_files",
    "extra_files_count",
    "ok",
    "problems",
    "schema",
];
const CHECK_KEYS: [&str; 3] = ["checksums", "pixel_rows", "rows"];
const PROBLEM_KEYS: [&str; 3] = ["file", "reason", "row"];

#[test]
fn verify_json_of_a_good_build() {
    let (_dir, out) = small_build();
    std::fs::write(out.join("notes.txt"), "mine").unwrap();
    let (code, v) = verify_json(&out);
    assert_eq!(code, Some(0), "{v:#}");
    assert_eq!(keys(&v), VERIFY_KEYS);
    assert_eq!(v["schema"], 1);
    assert_eq!(v["dir"], path_arg(&out));
    assert_eq!(v["ok"], true);
    assert_eq!(v["problems"], serde_json::json!([]));
    assert_eq!(v["extra_files"], serde_json::json!(["notes.txt"]));
    assert_eq!(v["extra_files_count"], 1);
    let checks = &v["checks"];
    assert_eq!(keys(checks), CHECK_KEYS);
    assert!(checks["checksums"].as_u64().unwrap() > 10, "{checks}");
    assert_eq!(keys(&checks["rows"]), ["dev", "test", "train"]);
    let rows: u64 = Split::ALL
        .iter()
        .map(|s| checks["rows"][s.name()].as_u64().unwrap())
        .sum();
    assert!(rows > 20, "{checks}");
    assert_eq!(checks["pixel_rows"], rows);
    assert_documented(&VERIFY_KEYS);
    assert_documented(&CHECK_KEYS);
    assert_documented(&PROBLEM_KEYS);
}

#[test]
fn verify_json_names_the_file_and_row_of_each_problem() {
    let (_dir, out) = small_build();
    // A flipped byte: a problem with the file as a whole.
    let parquet = out.join(pack::parquet_name(Split::Train));
    let mut bytes = std::fs::read(&parquet).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x40;
    std::fs::write(&parquet, bytes).unwrap();
    // A label changed in row 3, its checksums updated: a problem with one row.
    let labels = pack::idx_labels_name(Split::Train, "status");
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(out.join(&labels)).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    raw[8 + 3] = (raw[8 + 3] + 1) % 4;
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(out.join(&labels)).unwrap(),
        flate2::Compression::default(),
    );
    gz.write_all(&raw).unwrap();
    gz.finish().unwrap();
    update_sum(&out, &labels);

    let (code, v) = verify_json(&out);
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(keys(&v), VERIFY_KEYS);
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().unwrap();
    for p in problems {
        assert_eq!(keys(p), PROBLEM_KEYS);
        assert!(p["reason"].as_str().is_some_and(|r| !r.is_empty()), "{p}");
    }
    let whole_file = problems
        .iter()
        .find(|p| p["file"] == pack::parquet_name(Split::Train))
        .unwrap_or_else(|| panic!("no problem with the Parquet file: {v:#}"));
    assert!(whole_file["row"].is_null(), "{whole_file}");
    assert!(
        whole_file["reason"]
            .as_str()
            .unwrap()
            .starts_with("SHA-256 is"),
        "{whole_file}"
    );
    assert!(
        problems.iter().any(|p| p["row"] == 3),
        "no problem with row 3: {v:#}"
    );
}

#[test]
fn verify_json_of_a_directory_that_is_not_a_build() {
    // A problem with the directory as a whole: no file, no row; exit 1.
    let empty = tempfile::tempdir().unwrap();
    let (code, v) = verify_json(empty.path());
    assert_eq!(code, Some(1), "{v:#}");
    assert_eq!(v["ok"], false);
    let problems = v["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{v:#}");
    assert!(problems[0]["file"].is_null() && problems[0]["row"].is_null());
    assert_eq!(v["checks"]["rows"], serde_json::json!({}));
    // Not a directory at all: exit 2, the error on stderr and nothing on stdout.
    let file = empty.path().join("file");
    std::fs::write(&file, "").unwrap();
    let o = kaokore()
        .args(["verify", "--json"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(o.stdout.is_empty());
    assert!(stderr(&o).contains("not a directory"), "{}", stderr(&o));
}
