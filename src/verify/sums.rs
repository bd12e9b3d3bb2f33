//! SHA256SUMS against the files: every artifact the record expects is listed once and
//! matches its checksum, recomputed here (the checksums go on to the croissant.json
//! check). The work is bounded by the build, not by the list: each artifact is hashed once
//! and only up to the most bytes it can have; lines naming other files are listed up to a
//! limit, then counted.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Read;
use std::path::Path;

use super::VerifyReport;
use super::expected::Expected;
use crate::layout::SHA256SUMS;
use crate::out::is_plain_relative;
use crate::pack;
use crate::pack::read::{MAX_PROBLEMS_PER_FILE, length, open_artifact};

/// A SHA256SUMS is about 100 bytes a line; with `images`, a line per image.
const MAX_SUMS_BYTES: u64 = 64 << 20;

/// Check SHA256SUMS against the expected files. Returns the SHA-256 computed of each
/// file it could read.
pub(super) fn check(
    dir: &Path,
    expected: &Expected,
    report: &mut VerifyReport,
) -> HashMap<String, String> {
    let mut hashes = HashMap::new();
    let text = open_artifact(dir, SHA256SUMS).and_then(|f| {
        if length(&f)? > MAX_SUMS_BYTES {
            return Err(format!("larger than {} MiB", MAX_SUMS_BYTES >> 20));
        }
        let mut text = String::new();
        f.take(MAX_SUMS_BYTES)
            .read_to_string(&mut text)
            .map_err(|e| format!("cannot read: {e}"))?;
        Ok(text)
    });
    let text = match text {
        Ok(t) => t,
        Err(e) => {
            report.problem(SHA256SUMS, None, e);
            String::new()
        }
    };
    // Each listed path, and whether a repeat of it was reported.
    let entries = pack::parse_sums(&text);
    let mut listed: HashMap<&str, bool> = HashMap::new();
    let mut unknown = 0;
    for (hash, path) in &entries {
        let path = path.as_str();
        if !is_plain_relative(path) {
            report.problem(SHA256SUMS, None, format!("unsafe path '{path}'"));
            continue;
        }
        match listed.entry(path) {
            Entry::Occupied(mut repeated) => {
                if !repeated.insert(true) {
                    report.problem(SHA256SUMS, None, format!("lists {path} twice"));
                }
                continue;
            }
            Entry::Vacant(first) => {
                first.insert(false);
            }
        }
        if path == SHA256SUMS || !expected.files.contains(path) {
            // Each names a file of its own: the cap on problems per file does not apply.
            unknown += 1;
            if unknown <= MAX_PROBLEMS_PER_FILE {
                report.problem(
                    path,
                    None,
                    "listed in SHA256SUMS, but the build's record has no such artifact",
                );
            }
            continue;
        }
        let largest = expected.largest_file(path);
        match open_artifact(dir, path).and_then(|f| hash_within(f, largest)) {
            Ok(actual) => {
                if actual == *hash {
                    report.checksummed += 1;
                } else {
                    report.problem(
                        path,
                        None,
                        format!("SHA-256 is {actual}, SHA256SUMS says {hash}"),
                    );
                }
                hashes.insert(path.to_string(), actual);
            }
            Err(e) => report.problem(path, None, e),
        }
    }
    if unknown > MAX_PROBLEMS_PER_FILE {
        report.problem(
            SHA256SUMS,
            None,
            format!(
                "{} more lines name files that are not artifacts of the build's record",
                unknown - MAX_PROBLEMS_PER_FILE
            ),
        );
    }
    for f in expected.files.iter().filter(|f| *f != SHA256SUMS) {
        if !listed.contains_key(f.as_str()) {
            match open_artifact(dir, f) {
                Ok(_) => report.problem(f, None, "not listed in SHA256SUMS"),
                Err(e) => report.problem(f, None, e),
            }
        }
    }
    hashes
}

/// The SHA-256 of `file`, unless it is larger than `largest` bytes: then it is not read
/// (nor beyond that, should it grow while being read).
fn hash_within(file: std::fs::File, largest: u64) -> Result<String, String> {
    let len = length(&file)?;
    if len > largest {
        return Err(format!(
            "{len} bytes, more than any file of a build of its rows and size can have \
             ({largest}): not read"
        ));
    }
    let (read, hash) = pack::hash_reader(file.take(largest.saturating_add(1)))
        .map_err(|e| format!("cannot read: {e}"))?;
    if read > largest {
        return Err(format!(
            "grew past {largest} bytes, the most any file of a build of its rows and size \
             can have, while being read"
        ));
    }
    Ok(hash)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::metadata::Split;

    /// A build of no format, holding `files` (name, content) and SHA256SUMS; the record
    /// expects exactly them.
    pub(in crate::verify) fn expecting(files: &[(&str, &str)]) -> Expected {
        Expected {
            files: files
                .iter()
                .map(|(f, _)| f.to_string())
                .chain([SHA256SUMS.to_string()])
                .collect(),
            formats: Vec::new(),
            size: 8,
            rows: Split::ALL.into_iter().map(|s| (s, 0)).collect(),
        }
    }

    /// Write `files` into `dir`, and SHA256SUMS of their true checksums.
    pub(in crate::verify) fn write_with_sums(dir: &Path, files: &[(&str, &str)]) {
        let mut sums = String::new();
        for (name, content) in files {
            let path = dir.join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
            sums.push_str(&format!(
                "{}  {name}\n",
                pack::sha256_hex(content.as_bytes())
            ));
        }
        std::fs::write(dir.join(SHA256SUMS), sums).unwrap();
    }

    fn problems(report: &VerifyReport) -> Vec<String> {
        report.problems.iter().map(|p| p.to_string()).collect()
    }

    const FILES: [(&str, &str); 2] = [("a.txt", "a"), ("d/b.txt", "b")];

    #[test]
    fn every_listed_file_is_hashed_and_handed_on() {
        let dir = tempfile::tempdir().unwrap();
        write_with_sums(dir.path(), &FILES);
        let mut report = VerifyReport::default();
        let hashes = check(dir.path(), &expecting(&FILES), &mut report);
        assert!(report.is_ok(), "{:?}", problems(&report));
        assert_eq!(report.checksummed, 2);
        assert_eq!(hashes["d/b.txt"], pack::sha256_hex(b"b"));
    }

    #[test]
    fn changed_unlisted_unknown_and_repeated_files_are_problems() {
        let dir = tempfile::tempdir().unwrap();
        write_with_sums(dir.path(), &FILES);
        std::fs::write(dir.path().join("a.txt"), "changed").unwrap();
        let mut sums = std::fs::read_to_string(dir.path().join(SHA256SUMS)).unwrap();
        let b_line = sums.lines().nth(1).unwrap().to_string();
        sums = sums.replace(&format!("{b_line}\n"), "");
        let zero = "0".repeat(64);
        for line in [
            format!("{zero}  mine.txt"),
            format!("{zero}  ../x"),
            sums.lines().next().unwrap().to_string(),
        ] {
            sums.push_str(&format!("{line}\n"));
        }
        std::fs::write(dir.path().join(SHA256SUMS), sums).unwrap();
        let mut report = VerifyReport::default();
        let hashes = check(dir.path(), &expecting(&FILES), &mut report);
        let changed = pack::sha256_hex(b"changed");
        let was = pack::sha256_hex(b"a");
        assert_eq!(
            problems(&report),
            [
                format!("a.txt: SHA-256 is {changed}, SHA256SUMS says {was}"),
                "mine.txt: listed in SHA256SUMS, but the build's record has no such artifact"
                    .into(),
                "SHA256SUMS: unsafe path '../x'".into(),
                "SHA256SUMS: lists a.txt twice".into(),
                "d/b.txt: not listed in SHA256SUMS".into(),
            ]
        );
        // The checksum of what is there goes on, for croissant.json.
        assert_eq!(hashes["a.txt"], changed);
    }

    #[test]
    fn a_missing_list_leaves_every_file_unlisted() {
        let dir = tempfile::tempdir().unwrap();
        write_with_sums(dir.path(), &FILES);
        std::fs::remove_file(dir.path().join(SHA256SUMS)).unwrap();
        std::fs::remove_file(dir.path().join("a.txt")).unwrap();
        let mut report = VerifyReport::default();
        check(dir.path(), &expecting(&FILES), &mut report);
        assert_eq!(
            problems(&report),
            [
                "SHA256SUMS: missing",
                "a.txt: missing",
                "d/b.txt: not listed in SHA256SUMS"
            ]
        );
    }

    #[test]
    fn a_file_larger_than_the_build_can_have_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        write_with_sums(dir.path(), &FILES);
        let expected = expecting(&FILES);
        let largest = expected.largest_file("a.txt");
        // Sparse: nothing is written, and nothing must be read.
        let a = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("a.txt"))
            .unwrap();
        a.set_len(largest + 1).unwrap();
        let mut report = VerifyReport::default();
        let hashes = check(dir.path(), &expected, &mut report);
        assert_eq!(
            problems(&report),
            [format!(
                "a.txt: {} bytes, more than any file of a build of its rows and size can have \
                 ({largest}): not read",
                largest + 1
            )]
        );
        assert!(!hashes.contains_key("a.txt"));
    }

    #[test]
    fn a_huge_list_costs_a_line_each_and_a_hash_per_artifact() {
        // Lines that repeat an artifact and lines that name files of no build: each file is
        // hashed once, and what is reported stays short. A scan of the lines seen so far
        // for each line would take 2 x 10^10 steps here. (In a release build, 700,000
        // lines, a 50 MB list, take about 0.6 s of CPU, most of it reading and splitting.)
        let dir = tempfile::tempdir().unwrap();
        write_with_sums(dir.path(), &FILES);
        let mut sums = std::fs::read_to_string(dir.path().join(SHA256SUMS)).unwrap();
        let repeat = sums.lines().next().unwrap().to_string();
        let zero = "0".repeat(64);
        for i in 0..100_000 {
            sums.push_str(&format!("{repeat}\n{zero}  x{i}\n"));
        }
        std::fs::write(dir.path().join(SHA256SUMS), sums).unwrap();
        let mut report = VerifyReport::default();
        check(dir.path(), &expecting(&FILES), &mut report);
        assert_eq!(report.checksummed, 2);
        let m = problems(&report);
        let on_sums = m.iter().filter(|p| p.starts_with("SHA256SUMS: ")).count();
        assert_eq!(m.len() - on_sums, MAX_PROBLEMS_PER_FILE, "{:?}", &m[..3]);
        // The repeats are one problem, reported once.
        assert_eq!(on_sums, 2, "{:?}", &m[..3]);
        assert!(m.contains(&"SHA256SUMS: lists a.txt twice".to_string()));
        assert!(m.contains(
            &"SHA256SUMS: 99900 more lines name files that are not artifacts of the build's record"
                .to_string()
        ));
    }
}
