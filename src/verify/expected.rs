//! What a build must hold, from its record alone: the files its formats, splits and size
//! call for (which the record must list, and only those, with report.json), its formats
//! in registry order, and the rows of each split. Without a record that can be trusted,
//! nothing says what the directory should hold, and verify stops.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::VerifyReport;
use crate::layout::{RECORD_FILE, REPORT_FILE};
use crate::metadata::Split;
use crate::out::{BuildRecord, RecordError};
use crate::pack::format::{self, Format};

/// What the build's record promises.
pub(super) struct Expected {
    /// Every file the build holds (see [`format::expected_files`]).
    pub files: BTreeSet<String>,
    /// Its formats, in registry order.
    pub formats: Vec<&'static dyn Format>,
    pub size: u32,
    pub rows: HashMap<Split, u64>,
}

impl Expected {
    /// The record of the build in `dir`, or `None` (with the problem) when there is none
    /// that can be trusted.
    pub fn read(dir: &Path, report: &mut VerifyReport) -> Option<Expected> {
        let record = match BuildRecord::read(dir) {
            Ok(Some(record)) => record,
            Ok(None) => {
                report.problem(
                    "",
                    None,
                    format!(
                        "not a kaokore build (no {RECORD_FILE}); verify checks what kaokore built"
                    ),
                );
                return None;
            }
            Err(e) => {
                let message = match e {
                    RecordError::Io { source, .. } => format!("cannot read: {source}"),
                    RecordError::Invalid { message, .. } => message,
                };
                report.problem(RECORD_FILE, None, message);
                return None;
            }
        };
        let files = match format::expected_files(&record) {
            Ok(files) => files,
            Err(message) => {
                report.problem(RECORD_FILE, None, message);
                return None;
            }
        };
        // The record lists what the build wrote: exactly the expected files and report.json.
        let listed: BTreeSet<&str> = record.files.iter().map(String::as_str).collect();
        for f in &files {
            if !listed.contains(f.as_str()) {
                report.problem(RECORD_FILE, None, format!("does not list {f}"));
            }
        }
        for f in listed {
            if !files.contains(f) && f != REPORT_FILE {
                report.problem(
                    RECORD_FILE,
                    None,
                    format!("lists {f}, which no build of its formats writes"),
                );
            }
        }
        // expected_files refused unknown formats; registry order makes the comparisons
        // stable.
        let mut formats: Vec<&'static dyn Format> = record
            .formats
            .iter()
            .filter_map(|name| format::by_name(name))
            .collect();
        formats.sort_by_key(|f| format::REGISTRY.iter().position(|g| g.name() == f.name()));
        formats.dedup_by_key(|f| f.name());
        let rows = Split::ALL
            .into_iter()
            .map(|s| (s, record.rows[s.name()]))
            .collect();
        Some(Expected {
            files,
            formats,
            size: record.size,
            rows,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::out::record::tests::record;

    fn problems(report: &VerifyReport) -> Vec<String> {
        report.problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn the_record_must_list_exactly_what_its_formats_write() {
        let dir = tempfile::tempdir().unwrap();
        // The test record lists one made-up idx file and none of the real ones.
        record().write(dir.path()).unwrap();
        let mut report = VerifyReport::default();
        let expected = Expected::read(dir.path(), &mut report).unwrap();
        let names: Vec<&str> = expected.formats.iter().map(|f| f.name()).collect();
        assert_eq!(names, ["idx", "npz"]);
        assert_eq!(expected.rows[&Split::Train], 3);
        assert!(expected.files.contains("npz/kaokore-dev-labels.npz"));
        let m = problems(&report);
        assert!(
            m.contains(&".kaokore-build.json: does not list npz/kaokore-dev-labels.npz".into()),
            "{m:?}"
        );
        assert!(
            m.contains(
                &".kaokore-build.json: lists idx/a.gz, which no build of its formats writes".into()
            ),
            "{m:?}"
        );
        assert!(!m.iter().any(|p| p.contains("report.json")), "{m:?}");
    }

    #[test]
    fn a_record_that_cannot_describe_a_build_stops_verify() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = record();
        r.formats.push("tiff".into());
        r.write(dir.path()).unwrap();
        let mut report = VerifyReport::default();
        assert!(Expected::read(dir.path(), &mut report).is_none());
        assert_eq!(
            problems(&report),
            [".kaokore-build.json: unknown format 'tiff'"]
        );
        std::fs::write(dir.path().join(RECORD_FILE), "[]").unwrap();
        let mut report = VerifyReport::default();
        assert!(Expected::read(dir.path(), &mut report).is_none());
        assert!(
            problems(&report)[0].starts_with(".kaokore-build.json: not a build record"),
            "{:?}",
            problems(&report)
        );
    }
}
