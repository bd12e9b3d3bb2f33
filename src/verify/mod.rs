//! Verify: re-check a built output directory without trusting anything pack remembered.
//! [`verify`] runs the checks in order, a file each: what the record promises
//! (`expected.rs`), SHA256SUMS (`sums.rs`), croissant.json (`croissant.rs`), the user's own
//! files (`extra.rs`), then split by split the labels (`labels.rs`) and pixels (`pixels.rs`)
//! that every format re-reads with its own reader, and last each format's check of its
//! files that are not split by split, against the rows the labels hold; a build of several
//! sizes, size by size.
//!
//! Nothing is trusted before it is checked: no symlink is followed and no special file
//! opened, every size a header or the record states is checked before it is acted on, and
//! rows are streamed. Problems are collected, with file and row, rather than stopping at
//! the first.

mod croissant;
mod expected;
mod extra;
mod labels;
mod pixels;
mod sums;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::fs::PathState;
use crate::layout::{RECORD_FILE, STAGING_PREFIX, size_dir_name};
use crate::metadata::Split;
use crate::normalize::MAX_IMAGE_EDGE;
use crate::out::BuildRecord;
use crate::pack::read::{BuildAt, LabelsOrder, Problems, SplitAt};

use expected::Expected;

/// Why verify could not run at all (a disagreement is a [`Problem`], not an error).
///
/// [`Problem`]: crate::pack::read::Problem
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
}

/// What verify checked and what it found; no problems means the directory is good.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct VerifyReport {
    /// Files whose checksum was recomputed.
    pub checksummed: usize,
    /// Rows checked per split (train, dev, test).
    pub rows: Vec<(Split, u64)>,
    /// Pixel rows compared between formats.
    pub pixel_rows_compared: u64,
    pub problems: Problems,
    /// Files in the directory that no build writes (the user's own, or a killed run's
    /// staging directory, named with a trailing `/`): reported, left alone, not a
    /// problem. At most `extra::MAX_EXTRA_LISTED`, sorted.
    pub extra_files: Vec<String>,
    /// How many such files there are in all.
    pub extra_files_count: usize,
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// Lines for the user about what is not a problem (the files of theirs found).
    pub fn notes(&self) -> Vec<String> {
        let mut notes: Vec<String> = self
            .extra_files
            .iter()
            .map(|f| {
                if f.starts_with(STAGING_PREFIX) {
                    format!("{f}: left by an interrupted kaokore run (the next build removes it)")
                } else {
                    format!("{f}: not written by kaokore (left alone, not checked)")
                }
            })
            .collect();
        if self.extra_files_count > self.extra_files.len() {
            notes.push(format!(
                "and {} more files not written by kaokore",
                self.extra_files_count - self.extra_files.len()
            ));
        }
        notes
    }

    /// Record a problem; the same problem found twice (say, a missing file that two checks
    /// wanted to open) is reported once.
    pub(crate) fn problem(&mut self, file: &str, row: Option<u64>, message: impl Into<String>) {
        self.problems.problem(file, row, message);
    }
}

/// Re-check the output directory `dir`.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    if !dir.is_dir() {
        return Err(VerifyError::NotADirectory(dir.to_path_buf()));
    }
    let mut report = VerifyReport::default();
    let record_before = record_identity(dir);
    verify_build(dir, &mut report);
    // A build that replaced files while they were read (one that took no lock) shows in
    // its record, which every commit rewrites twice.
    if record_identity(dir) != record_before {
        report.problem(
            RECORD_FILE,
            None,
            "changed while verify read the build (a build ran meanwhile): verify again",
        );
    }
    Ok(report)
}

/// What tells one record file from another: device, inode, length and modification time.
fn record_identity(dir: &Path) -> Option<(u64, u64, u64, Option<std::time::SystemTime>)> {
    let meta = std::fs::symlink_metadata(dir.join(RECORD_FILE)).ok()?;
    #[cfg(unix)]
    let (dev, ino) = {
        use std::os::unix::fs::MetadataExt;
        (meta.dev(), meta.ino())
    };
    #[cfg(not(unix))]
    let (dev, ino) = (0, 0);
    Some((dev, ino, meta.len(), meta.modified().ok()))
}

fn verify_build(dir: &Path, report: &mut VerifyReport) {
    let record = BuildRecord::read(dir).ok().flatten();
    if record.as_ref().is_some_and(|r| r.in_progress) {
        // Its files are partly the previous build's, partly the next one's.
        return report.problem(
            RECORD_FILE,
            None,
            "a build was being put in place here and did not finish (stopped, or still \
             running): run the same kaokore command again to complete it",
        );
    }
    if let Some(record) = record.filter(|r| !r.sizes.is_empty()) {
        return verify_sizes(dir, &record, report);
    }
    let Some(expected) = Expected::read(dir, report) else {
        return;
    };
    let hashes = sums::check(dir, &expected, report);
    croissant::check(dir, &expected, &hashes, report);
    extra::find(dir, &expected.files, report);
    let order = LabelsOrder::read(dir, &mut report.problems);
    // Rows per class over every split, while every split's labels could be read.
    let mut class_rows = Some(BTreeMap::new());
    for split in Split::ALL {
        let (rows, classes) = check_split(dir, split, &expected, order.as_ref(), report);
        report.rows.push((split, rows));
        match (classes, &mut class_rows) {
            (Some(classes), Some(counts)) => {
                for class in classes {
                    *counts.entry(class).or_insert(0u64) += 1;
                }
            }
            _ => class_rows = None,
        }
    }
    let at = BuildAt {
        dir,
        files: &expected.files,
        size: expected.size,
        class_rows: class_rows.as_ref(),
    };
    for format in &expected.formats {
        format.check_build(&at, &mut report.problems);
    }
}

/// Check a build of several sizes: each `size-{S}/` is a build of its own, verified as
/// one (its problems and extra files named by their path from `dir`), whose record says
/// it is of size S; `dir`'s record lists exactly their files. A size directory that is a
/// symlink is not followed (it would verify another build). Rows are the first size's
/// (every size packs the same rows); checksums and pixel rows compared add up.
fn verify_sizes(dir: &Path, record: &BuildRecord, report: &mut VerifyReport) {
    // Sizes a build can have, each once: the work below is a build per size.
    let mut sizes = BTreeSet::new();
    for &size in &record.sizes {
        let message = if size == 0 || size > MAX_IMAGE_EDGE {
            format!("size {size} is not between 1 and {MAX_IMAGE_EDGE}")
        } else if !sizes.insert(size) {
            format!("lists size {size} twice")
        } else {
            continue;
        };
        return report.problem(RECORD_FILE, None, message);
    }
    let mut listed = BTreeSet::new();
    // Size directories whose build could not be read: the problem with each says why,
    // and the files the record lists in them are not compared one by one.
    let mut unread = Vec::new();
    for &size in &record.sizes {
        let name = size_dir_name(size);
        let sub_dir = dir.join(&name);
        let blocked = match crate::fs::inspect(dir, &name) {
            Ok(PathState::Dir | PathState::Absent) => None,
            Ok(PathState::File) => Some("is a file, not a directory".to_string()),
            Ok(PathState::Blocked { why, .. }) => Some(format!("{why}: not followed")),
            Err(e) => Some(format!("cannot inspect: {e}")),
        };
        if let Some(message) = blocked {
            report.problem(&name, None, message);
            unread.push(format!("{name}/"));
            continue;
        }
        let sub_record = match BuildRecord::read(&sub_dir) {
            Ok(Some(r)) if r.sizes.is_empty() => r,
            Ok(Some(_)) => {
                report.problem(&name, None, "holds a build of several sizes itself");
                unread.push(format!("{name}/"));
                continue;
            }
            Ok(None) => {
                report.problem(
                    &name,
                    None,
                    format!("no {RECORD_FILE}: the size's build is missing"),
                );
                unread.push(format!("{name}/"));
                continue;
            }
            Err(e) => {
                report.problem(&format!("{name}/{RECORD_FILE}"), None, e.to_string());
                unread.push(format!("{name}/"));
                continue;
            }
        };
        if sub_record.size != size {
            report.problem(
                &format!("{name}/{RECORD_FILE}"),
                None,
                format!("is a build of size {}, not {size}", sub_record.size),
            );
        }
        listed.insert(format!("{name}/{RECORD_FILE}"));
        listed.extend(sub_record.files.iter().map(|f| format!("{name}/{f}")));
        let sub = match verify(&sub_dir) {
            Ok(sub) => sub,
            Err(e) => {
                report.problem(&name, None, e.to_string());
                continue;
            }
        };
        report.checksummed += sub.checksummed;
        report.pixel_rows_compared += sub.pixel_rows_compared;
        if report.rows.is_empty() {
            report.rows = sub.rows;
        }
        for p in sub.problems.iter() {
            let file = if p.file.is_empty() {
                name.clone()
            } else {
                format!("{name}/{}", p.file)
            };
            report.problem(&file, p.row, p.message.clone());
        }
        report.extra_files_count += sub.extra_files_count;
        report
            .extra_files
            .extend(sub.extra_files.iter().map(|f| format!("{name}/{f}")));
    }
    let recorded: BTreeSet<String> = record.files.iter().cloned().collect();
    for f in listed.difference(&recorded) {
        report.problem(RECORD_FILE, None, format!("does not list {f}"));
    }
    for f in recorded
        .difference(&listed)
        .filter(|f| !unread.iter().any(|d| f.starts_with(d.as_str())))
    {
        report.problem(
            RECORD_FILE,
            None,
            format!("lists {f}, which none of its size builds holds"),
        );
    }
}

/// Check one split across formats, labels first (they give the rows' image ids), then
/// pixels; returns its row count (the record's, once each format was checked to hold
/// that many) and the class of each row, when its labels could be read.
fn check_split(
    dir: &Path,
    split: Split,
    expected: &Expected,
    order: Option<&LabelsOrder>,
    report: &mut VerifyReport,
) -> (u64, Option<Vec<(u8, u8)>>) {
    let at = SplitAt {
        dir,
        files: &expected.files,
        split,
        rows: expected.rows[&split],
        size: expected.size,
        ids: None,
    };
    let rows = labels::check(&at, &expected.formats, order, report);
    let at = SplitAt {
        ids: rows.ids.as_deref(),
        ..at
    };
    pixels::check(&at, &expected.formats, report);
    (at.rows, rows.classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_name_the_users_files_and_a_killed_runs_staging() {
        let report = VerifyReport {
            extra_files: vec![".kaokore-staging-7-0/".into(), "notes.txt".into()],
            extra_files_count: 5,
            ..VerifyReport::default()
        };
        assert!(report.is_ok());
        assert_eq!(
            report.notes(),
            [
                ".kaokore-staging-7-0/: left by an interrupted kaokore run (the next build removes it)",
                "notes.txt: not written by kaokore (left alone, not checked)",
                "and 3 more files not written by kaokore",
            ]
        );
    }

    #[test]
    fn a_file_or_nothing_is_not_a_directory_to_verify() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, "x").unwrap();
        for path in [file, dir.path().join("absent")] {
            let e = verify(&path).unwrap_err();
            assert_eq!(
                e.to_string(),
                format!("{}: not a directory", path.display())
            );
        }
        // An empty directory is one, but not a build.
        let report = verify(dir.path()).unwrap();
        assert_eq!(
            report.problems[0].to_string(),
            "not a kaokore build (no .kaokore-build.json); verify checks what kaokore built"
        );
    }

    #[test]
    fn a_record_of_sizes_no_build_has_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut record = crate::out::record::tests::record();
        for (sizes, problem) in [
            (vec![32, 48, 32], "lists size 32 twice"),
            (vec![32, 0], "size 0 is not between 1 and 8192"),
            (vec![8193], "size 8193 is not between 1 and 8192"),
        ] {
            record.sizes = sizes;
            record.write(dir.path()).unwrap();
            let report = verify(dir.path()).unwrap();
            let shown: Vec<String> = report.problems.iter().map(|p| p.to_string()).collect();
            assert_eq!(shown, [format!(".kaokore-build.json: {problem}")]);
        }
    }
}
