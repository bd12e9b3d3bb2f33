//! The user's own files: whatever a build directory holds that no build writes is listed
//! (by name, up to a few, then counted), never read and never a problem. A killed run's
//! staging directory is named once, not walked.

use std::collections::BTreeSet;
use std::path::Path;

use super::VerifyReport;
use crate::layout::{LOCK_FILE, RECORD_FILE, REPORT_FILE, STAGING_PREFIX};

/// Files of the user's listed by name; beyond that only counted.
pub(super) const MAX_EXTRA_LISTED: usize = 20;
/// Directory entries looked at when searching for files of the user's.
const MAX_ENTRIES_WALKED: usize = 200_000;

/// List the files no build writes (without following symlinks: a symlink is named, as a
/// file of the user's) into `report`.
pub(super) fn find(dir: &Path, expected: &BTreeSet<String>, report: &mut VerifyReport) {
    let mut extra = Vec::new();
    crate::fs::walk(dir, MAX_ENTRIES_WALKED, |entry| {
        let inside = &entry.relative;
        if entry.kind.is_dir() {
            let staging = !inside.contains('/') && inside.starts_with(STAGING_PREFIX);
            if staging {
                extra.push(format!("{inside}/"));
            }
            return !staging;
        }
        // The lock of a build (running, or killed: the next build takes it over).
        let kaokores = [RECORD_FILE, REPORT_FILE, LOCK_FILE];
        if !expected.contains(inside) && !kaokores.contains(&inside.as_str()) {
            extra.push(inside.clone());
        }
        false
    });
    extra.sort();
    report.extra_files_count = extra.len();
    extra.truncate(MAX_EXTRA_LISTED);
    report.extra_files = extra;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn expected() -> BTreeSet<String> {
        ["SHA256SUMS", "idx/a.gz"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn lists_what_no_build_writes() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("idx")).unwrap();
        fs::create_dir_all(root.join(".kaokore-staging-9-0/npz")).unwrap();
        for f in [
            "SHA256SUMS",
            "idx/a.gz",
            "idx/mine.csv",
            RECORD_FILE,
            REPORT_FILE,
            "notes.txt",
            ".kaokore-staging-9-0/npz/half.npz",
        ] {
            fs::write(root.join(f), "x").unwrap();
        }
        let mut report = VerifyReport::default();
        find(root, &expected(), &mut report);
        assert_eq!(
            report.extra_files,
            [".kaokore-staging-9-0/", "idx/mine.csv", "notes.txt"]
        );
        assert_eq!(report.extra_files_count, 3);
        assert!(report.is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn names_a_symlink_without_following_it_and_counts_beyond_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), "x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("idx")).unwrap();
        for i in 0..MAX_EXTRA_LISTED + 5 {
            fs::write(root.join(format!("mine-{i:02}")), "x").unwrap();
        }
        let mut report = VerifyReport::default();
        find(root, &expected(), &mut report);
        assert_eq!(report.extra_files_count, MAX_EXTRA_LISTED + 6);
        assert_eq!(report.extra_files.len(), MAX_EXTRA_LISTED);
        assert_eq!(report.extra_files[0], "idx");
        assert!(!report.extra_files.iter().any(|f| f.contains("secret")));
    }
}
