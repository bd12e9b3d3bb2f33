//! What a build must hold, from its record alone: the files its formats, splits and size
//! call for (which the record must list, and only those), the rows of each split (at most
//! [`MAX_IMAGES`] in all) and the most bytes a file of it can have. Without a record that
//! can be trusted, nothing says what the directory should hold, and verify stops.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::VerifyReport;
use crate::layout::{RECORD_FILE, REPORT_FILE};
use crate::metadata::{MAX_IMAGES, MAX_METADATA_BYTES, Split};
use crate::out::{BuildRecord, RecordError};
use crate::pack::format::{self, Format, Payload};

/// Bytes of one row in any artifact, beyond its image: labels, ids, a tar header, a zip
/// entry, a Parquet page header.
const ROW_SLACK: u64 = 64 << 10;
/// Bytes of an artifact that do not grow with its rows: the metadata text it may carry
/// (the four copied files, each at most [`MAX_METADATA_BYTES`], escaped at most six
/// times as JSON) and its headers, footers and directories.
const FILE_SLACK: u64 = 4 * 6 * MAX_METADATA_BYTES + (64 << 20);

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
        // Image ids are urls.txt's line numbers: no build has more rows than it has lines.
        let total = record
            .rows
            .values()
            .fold(0u64, |total, &n| total.saturating_add(n));
        if total > MAX_IMAGES as u64 {
            report.problem(
                RECORD_FILE,
                None,
                format!("{total} rows in all: more than the {MAX_IMAGES} images of any metadata"),
            );
            return None;
        }
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

impl Expected {
    /// The directories (with a trailing `/`) of the formats that write a file per image.
    pub fn per_image_dirs(&self) -> Vec<String> {
        self.formats
            .iter()
            .filter(|f| !f.file_objects())
            .flat_map(|f| f.dirs(self.size))
            .map(|d| format!("{d}/"))
            .collect()
    }

    /// The most bytes the file `path` of this build can have, generously: a file of a
    /// format holds at most every row of the build (a file per image, one), each of the
    /// size its payload can have, and any file the metadata text it may carry. A larger
    /// file cannot be right, and is reported without being read.
    pub fn largest_file(&self, path: &str) -> u64 {
        let owner = self.formats.iter().find(|f| {
            f.dirs(self.size).iter().any(|d| {
                path.strip_prefix(d.as_str())
                    .is_some_and(|rest| rest.starts_with('/'))
            })
        });
        // The card, croissant.json, the copied metadata: text of their own.
        let Some(format) = owner else {
            return FILE_SLACK;
        };
        let row = row_bytes(format.needs(), self.size);
        if !format.file_objects() {
            return row;
        }
        let rows = self
            .rows
            .values()
            .fold(0u64, |total, &n| total.saturating_add(n));
        rows.saturating_mul(row).saturating_add(FILE_SLACK)
    }
}

/// The most bytes one row of an artifact made of `needs` can take at edge `size`. Pixels
/// (RGB or gray) are deflated, which never doubles them; an image file is the fetched
/// file kept as it is (fetch never holds a larger body) or its pixels encoded (PNG,
/// JPEG: never eight times larger).
fn row_bytes(needs: &[Payload], size: u32) -> u64 {
    let pixels = 3 * u64::from(size) * u64::from(size);
    let files = needs
        .iter()
        .any(|p| matches!(p, Payload::LosslessFile | Payload::JpegFile));
    let image = if files {
        crate::fetch::BODY_MEMORY.max(8 * pixels)
    } else {
        2 * pixels
    };
    image.saturating_add(ROW_SLACK)
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
        // Counts no metadata can have are refused before anything counts through them.
        r = record();
        r.rows.insert("dev".into(), u64::MAX);
        r.write(dir.path()).unwrap();
        let mut report = VerifyReport::default();
        assert!(Expected::read(dir.path(), &mut report).is_none());
        assert_eq!(
            problems(&report),
            [format!(
                ".kaokore-build.json: {} rows in all: more than the 1000000 images of any metadata",
                u64::MAX
            )]
        );
        // Four rows in the other splits: a million in all is the most.
        let mut r = record();
        r.rows.insert("dev".into(), 1_000_000 - 4);
        r.write(dir.path()).unwrap();
        assert!(Expected::read(dir.path(), &mut VerifyReport::default()).is_some());
        r.rows.insert("dev".into(), 1_000_000 - 3);
        r.write(dir.path()).unwrap();
        assert!(Expected::read(dir.path(), &mut VerifyReport::default()).is_none());
        std::fs::write(dir.path().join(RECORD_FILE), "[]").unwrap();
        let mut report = VerifyReport::default();
        assert!(Expected::read(dir.path(), &mut report).is_none());
        assert!(
            problems(&report)[0].starts_with(".kaokore-build.json: not a build record"),
            "{:?}",
            problems(&report)
        );
    }

    #[test]
    fn files_are_bounded_by_rows_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = record();
        r.formats = vec!["npz".into(), "images".into()];
        r.size = 64;
        r.files.push("images_64/00000001.jpg".into());
        r.write(dir.path()).unwrap();
        let expected = Expected::read(dir.path(), &mut VerifyReport::default()).unwrap();
        assert_eq!(expected.per_image_dirs(), ["images_64/"]);
        // A file per image: one fetched file at most.
        let image = crate::fetch::BODY_MEMORY + ROW_SLACK;
        assert_eq!(expected.largest_file("images_64/00000001.jpg"), image);
        // Pixels only, deflated: five rows in all.
        let pixels = 2 * 3 * 64 * 64 + ROW_SLACK;
        assert_eq!(
            expected.largest_file("npz/kaokore-train-imgs.npz"),
            5 * pixels + FILE_SLACK
        );
        assert_eq!(expected.largest_file("labels.csv"), FILE_SLACK);
        // A large size: its pixels, not a fetched file, bound an image.
        r.size = 8192;
        r.files.retain(|f| !f.starts_with("images_"));
        r.files.push("images_8192/00000001.jpg".into());
        r.write(dir.path()).unwrap();
        let expected = Expected::read(dir.path(), &mut VerifyReport::default()).unwrap();
        assert_eq!(
            expected.largest_file("images_8192/00000001.jpg"),
            8 * 3 * 8192 * 8192 + ROW_SLACK
        );
    }
}
