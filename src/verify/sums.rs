//! SHA256SUMS against the files: every artifact the record expects is listed once and
//! matches its checksum, recomputed here, and no line names a file the build does not
//! write. The checksums computed are handed on to the croissant.json check.

use std::collections::{BTreeSet, HashMap};
use std::io::Read;
use std::path::Path;

use super::VerifyReport;
use super::expected::Expected;
use crate::layout::SHA256SUMS;
use crate::out::is_plain_relative;
use crate::pack;
use crate::pack::read::{length, open_artifact};

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
    let mut listed = BTreeSet::new();
    for (hash, path) in pack::parse_sums(&text) {
        if !is_plain_relative(&path) {
            report.problem(SHA256SUMS, None, format!("unsafe path '{path}'"));
            continue;
        }
        if !listed.insert(path.clone()) {
            report.problem(SHA256SUMS, None, format!("lists {path} twice"));
            continue;
        }
        if path == SHA256SUMS || !expected.files.contains(&path) {
            report.problem(
                &path,
                None,
                "listed in SHA256SUMS, but the build's record has no such artifact",
            );
            continue;
        }
        match open_artifact(dir, &path)
            .and_then(|f| pack::hash_reader(f).map_err(|e| format!("cannot read: {e}")))
        {
            Ok((_, actual)) => {
                if actual == hash {
                    report.checksummed += 1;
                } else {
                    report.problem(
                        &path,
                        None,
                        format!("SHA-256 is {actual}, SHA256SUMS says {hash}"),
                    );
                }
                hashes.insert(path, actual);
            }
            Err(e) => report.problem(&path, None, e),
        }
    }
    for f in expected.files.iter().filter(|f| *f != SHA256SUMS) {
        if !listed.contains(f) {
            match open_artifact(dir, f) {
                Ok(_) => report.problem(f, None, "not listed in SHA256SUMS"),
                Err(e) => report.problem(f, None, e),
            }
        }
    }
    hashes
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
}
