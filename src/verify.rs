//! Verify: re-check a built output directory without trusting anything pack remembered.
//!
//! The build's record (`.kaokore-build.json`) says what must be there: its formats, splits
//! and size give the artifacts, and its row counts how many rows each holds. Every one of
//! them must exist and be listed in SHA256SUMS, whose entries are all recomputed; a
//! SHA256SUMS line for a file no such build writes is a problem too. Files of the user's
//! in the directory are listed, not judged. Then every idx, npz and Parquet file is re-read
//! with independent readers (flate2, the zip crate, the parquet crate) and checked row by
//! row: the same image ids and labels in the same order (and in labels.csv's order), and
//! the same pixels (each Parquet image is decoded and normalized exactly as pack did).
//!
//! Nothing is trusted before it is checked: no symlink is followed and no special file
//! opened, and every size or shape a header states is checked against the record and the
//! file's own size before anything is allocated for it. Rows are streamed, so memory does
//! not grow with a split. Problems are collected, with file and row, rather than stopping
//! at the first.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::fs::{self, File};
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, BinaryArray, RecordBatch};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::ParquetMetaData;

use crate::metadata::{MAX_METADATA_BYTES, Split, without_bom};
use crate::normalize;
use crate::pack::{
    self, SHA256SUMS, idx_images_name, idx_labels_name, npz_images_name, npz_labels_name,
    parquet_name,
};
use crate::record::{BuildRecord, RECORD_FILE, RecordError, is_plain_relative};
use crate::report::REPORT_FILE;

/// Stop listing row problems of one file after this many: the rest is noise.
const MAX_ROW_PROBLEMS_PER_FILE: usize = 20;
/// Deflate cannot expand data more than about 1032 times: a compressed file of N bytes
/// that claims more than this many times N of content is lying.
const MAX_DEFLATE_RATIO: u64 = 1032;
/// Slack for headers (gzip, npy, zip) in the size checks above.
const HEADER_SLACK: u64 = 1 << 16;
/// A SHA256SUMS is about 100 bytes a line; with `images`, a line per image.
const MAX_SUMS_BYTES: u64 = 64 << 20;
/// The directories pack stages a build in (see pack's staging): one left behind is a
/// killed run's, which the next build removes.
const STAGING_PREFIX: &str = ".kaokore-staging-";
/// Files of the user's listed by name; beyond that only counted.
const MAX_EXTRA_LISTED: usize = 20;
/// Directory entries looked at when searching for files of the user's.
const MAX_ENTRIES_WALKED: usize = 200_000;

/// Why verify could not run at all (a disagreement is a [`Problem`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
}

/// One disagreement, with the file (relative to the directory) and row it concerns; an
/// empty `file` concerns the directory as a whole.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    pub row: Option<u64>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file.is_empty(), self.row) {
            (true, _) => f.write_str(&self.message),
            (false, Some(row)) => write!(f, "{}: row {row}: {}", self.file, self.message),
            (false, None) => write!(f, "{}: {}", self.file, self.message),
        }
    }
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
    pub problems: Vec<Problem>,
    /// Files in the directory that no build writes (the user's own, or a killed run's
    /// staging directory, named with a trailing `/`): reported, left alone, not a
    /// problem. At most [`MAX_EXTRA_LISTED`], sorted.
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
    fn problem(&mut self, file: &str, row: Option<u64>, message: impl Into<String>) {
        let problem = Problem {
            file: file.to_string(),
            row,
            message: message.into(),
        };
        if !self.problems.contains(&problem) {
            self.problems.push(problem);
        }
    }
}

/// What the build's record promises.
struct Expected {
    /// Every file the build holds (see [`BuildRecord::expected_files`]).
    files: BTreeSet<String>,
    formats: (bool, bool, bool),
    webdataset: bool,
    size: u32,
    rows: HashMap<Split, u64>,
}

/// Re-check the output directory `dir`.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    if !dir.is_dir() {
        return Err(VerifyError::NotADirectory(dir.to_path_buf()));
    }
    let mut report = VerifyReport::default();
    let Some(expected) = read_record(dir, &mut report) else {
        return Ok(report);
    };
    let hashes = check_sums(dir, &expected, &mut report);
    check_croissant(dir, &expected, &hashes, &mut report);
    find_extra_files(dir, &expected.files, &mut report);
    let order = LabelsCsv::read(dir, &mut report);
    for split in Split::ALL {
        let rows = check_split(dir, split, &expected, order.as_ref(), &mut report);
        report.rows.push((split, rows));
    }
    Ok(report)
}

/// The record of the build in `dir`, or `None` (with the problem) when there is none that
/// can be trusted: without one, nothing says what the directory should hold.
fn read_record(dir: &Path, report: &mut VerifyReport) -> Option<Expected> {
    let record = match BuildRecord::read(dir) {
        Ok(Some(record)) => record,
        Ok(None) => {
            report.problem(
                "",
                None,
                format!("not a kaokore build (no {RECORD_FILE}); verify checks what kaokore built"),
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
    let files = match record.expected_files() {
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
    let has = |name: &str| record.formats.iter().any(|f| f == name);
    let rows = Split::ALL
        .into_iter()
        .map(|s| (s, record.rows[s.name()]))
        .collect();
    Some(Expected {
        files,
        formats: (has("idx"), has("npz"), has("parquet")),
        webdataset: has("webdataset"),
        size: record.size,
        rows,
    })
}

/// Open the artifact `relative` of `dir` for reading, refusing to follow a symlink (in any
/// component) or to open anything but a regular file: a link to /dev/zero or a FIFO would
/// hang a reader, and a link elsewhere would verify a file that is not the build's. The
/// opened file is checked to be the one inspected (a swap in between is refused).
fn open_artifact(dir: &Path, relative: &str) -> Result<File, String> {
    let parts: Vec<&str> = relative.split('/').collect();
    let mut path = dir.to_path_buf();
    let mut inspected = None;
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let last = i + 1 == parts.len();
        let shown = parts[..=i].join("/");
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(if last {
                    "missing".to_string()
                } else {
                    format!("missing ({shown}/ does not exist)")
                });
            }
            Err(e) => return Err(format!("cannot inspect {shown}: {e}")),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(if last {
                "is a symbolic link: not followed".to_string()
            } else {
                format!("{shown}/ is a symbolic link: not followed")
            });
        }
        if last && !kind.is_file() {
            return Err(format!(
                "is {}, not a regular file: not opened",
                kind_name(&kind)
            ));
        }
        if !last && !kind.is_dir() {
            return Err(format!("{shown} is not a directory"));
        }
        inspected = Some(meta);
    }
    let file = File::open(&path).map_err(|e| format!("cannot open: {e}"))?;
    let opened = file
        .metadata()
        .map_err(|e| format!("cannot inspect: {e}"))?;
    if !opened.is_file() || !same_file(inspected.as_ref(), &opened) {
        return Err("changed while being verified".into());
    }
    Ok(file)
}

#[cfg(unix)]
fn same_file(inspected: Option<&fs::Metadata>, opened: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    inspected.is_some_and(|m| (m.dev(), m.ino()) == (opened.dev(), opened.ino()))
}

#[cfg(not(unix))]
fn same_file(inspected: Option<&fs::Metadata>, _opened: &fs::Metadata) -> bool {
    inspected.is_some()
}

fn kind_name(kind: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// The length of an opened artifact.
fn length(file: &File) -> Result<u64, String> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| format!("cannot inspect: {e}"))
}

/// Whether `compressed` bytes of deflate (or gzip, or zip) can hold `claimed` bytes.
fn can_hold(compressed: u64, claimed: u64) -> bool {
    claimed
        <= compressed
            .saturating_mul(MAX_DEFLATE_RATIO)
            .saturating_add(HEADER_SLACK)
}

/// Check SHA256SUMS against the expected files: every expected artifact listed and
/// matching, no line for a file the build does not write. Returns the SHA-256 computed
/// of each file it could read.
fn check_sums(
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
            .and_then(|f| hash_open(f).map_err(|e| format!("cannot read: {e}")))
        {
            Ok(actual) => {
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

/// croissant.json is about 1 KiB per file it describes.
const MAX_CROISSANT_BYTES: u64 = 16 << 20;

/// Check croissant.json's FileObjects against the files (their SHA-256s as `hashes`
/// holds them, computed by [`check_sums`]): each names an artifact of the build with its
/// true SHA-256, and every artifact but the per-image files (one FileSet) has one. A
/// file changed together with its SHA256SUMS line is caught here.
fn check_croissant(
    dir: &Path,
    expected: &Expected,
    hashes: &HashMap<String, String>,
    report: &mut VerifyReport,
) {
    let name = pack::CROISSANT;
    if !expected.files.contains(name) {
        return;
    }
    let doc = open_artifact(dir, name).and_then(|f| {
        if length(&f)? > MAX_CROISSANT_BYTES {
            return Err(format!("larger than {} MiB", MAX_CROISSANT_BYTES >> 20));
        }
        serde_json::from_reader::<_, serde_json::Value>(BufReader::new(f))
            .map_err(|e| format!("not JSON: {e}"))
    });
    let doc = match doc {
        Ok(doc) => doc,
        Err(e) => return report.problem(name, None, e),
    };
    let Some(distribution) = doc["distribution"].as_array() else {
        return report.problem(name, None, "has no distribution list");
    };
    let mut described = BTreeSet::new();
    for entry in distribution
        .iter()
        .filter(|e| e["@type"] == "cr:FileObject")
    {
        let (Some(path), Some(sha256)) = (entry["contentUrl"].as_str(), entry["sha256"].as_str())
        else {
            report.problem(name, None, "a FileObject has no contentUrl or sha256");
            continue;
        };
        if !expected.files.contains(path) || path == name || path == SHA256SUMS {
            report.problem(
                name,
                None,
                format!("describes {path}, not an artifact it can list"),
            );
            continue;
        }
        described.insert(path);
        if let Some(actual) = hashes.get(path).filter(|actual| *actual != sha256) {
            report.problem(
                path,
                None,
                format!("SHA-256 is {actual}, {name} says {sha256}"),
            );
        }
    }
    let per_image = format!("{}/", pack::images_dir_name(expected.size));
    for f in &expected.files {
        if f != name
            && f != SHA256SUMS
            && !f.starts_with(&per_image)
            && !described.contains(f.as_str())
        {
            report.problem(f, None, format!("not described in {name}"));
        }
    }
}

/// The SHA-256 of an opened file, in hex.
fn hash_open(mut file: File) -> std::io::Result<String> {
    use sha2::{Digest, Sha256};
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

/// List the files no build writes (without following symlinks): the user's own files,
/// which a build directory may hold. Reported, never a problem.
fn find_extra_files(dir: &Path, expected: &BTreeSet<String>, report: &mut VerifyReport) {
    let mut extra = Vec::new();
    let mut pending = vec![(dir.to_path_buf(), String::new())];
    let mut walked = 0;
    while let Some((path, relative)) = pending.pop() {
        let Ok(entries) = fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            walked += 1;
            if walked > MAX_ENTRIES_WALKED {
                break;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let inside = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            // `file_type` of a directory entry does not follow a symlink.
            match entry.file_type() {
                Ok(kind)
                    if kind.is_dir()
                        && relative.is_empty()
                        && inside.starts_with(STAGING_PREFIX) =>
                {
                    extra.push(format!("{inside}/"));
                }
                Ok(kind) if kind.is_dir() => pending.push((entry.path(), inside)),
                _ if expected.contains(&inside)
                    || inside == RECORD_FILE
                    || inside == REPORT_FILE => {}
                _ => extra.push(inside),
            }
        }
    }
    extra.sort();
    report.extra_files_count = extra.len();
    extra.truncate(MAX_EXTRA_LISTED);
    report.extra_files = extra;
}

/// labels.csv as copied into the directory: id -> (line, gender, status, split).
struct LabelsCsv {
    rows: HashMap<u32, (u64, u8, u8, Split)>,
}

impl LabelsCsv {
    fn read(dir: &Path, report: &mut VerifyReport) -> Option<LabelsCsv> {
        // A missing or unreadable labels.csv is reported with the expected files.
        let file = open_artifact(dir, "labels.csv").ok()?;
        let mut text = String::new();
        if length(&file).ok()? > MAX_METADATA_BYTES
            || file
                .take(MAX_METADATA_BYTES)
                .read_to_string(&mut text)
                .is_err()
        {
            report.problem("labels.csv", None, "too large or not UTF-8 text");
            return None;
        }
        let mut rows = HashMap::new();
        for (i, line) in without_bom(&text).lines().enumerate().skip(1) {
            let fields: Vec<&str> = line.trim_end_matches('\r').split(',').collect();
            let [image, gender, status, set] = fields[..] else {
                continue;
            };
            let id = image
                .strip_suffix(".jpg")
                .and_then(|d| d.parse::<u32>().ok());
            let split = match set.trim() {
                "train" => Split::Train,
                "dev" => Split::Dev,
                "test" => Split::Test,
                _ => continue,
            };
            match (id, gender.trim().parse::<u8>(), status.trim().parse::<u8>()) {
                (Some(id), Ok(g), Ok(s)) => {
                    rows.insert(id, (i as u64 + 1, g, s, split));
                }
                _ => report.problem(
                    "labels.csv",
                    Some(i as u64 + 1),
                    format!("unreadable line '{line}'"),
                ),
            }
        }
        Some(LabelsCsv { rows })
    }
}

/// The labels of one row, as one artifact states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowLabels {
    image_id: Option<u32>,
    gender: u8,
    status: u8,
}

/// Check one split across formats; returns its row count (the record's, once each format
/// was checked to hold that many).
fn check_split(
    dir: &Path,
    split: Split,
    expected: &Expected,
    order: Option<&LabelsCsv>,
    report: &mut VerifyReport,
) -> u64 {
    let (idx, npz, parquet) = expected.formats;
    let (rows, size) = (expected.rows[&split], expected.size);
    // Labels from each format, in full (they are one or a few bytes per row, and each
    // reader checked the count against the record and the file size first).
    let mut sources: Vec<(String, Vec<RowLabels>)> = Vec::new();
    if idx {
        let g = read_idx1(dir, &idx_labels_name(split, "gender"), rows, report);
        let s = read_idx1(dir, &idx_labels_name(split, "status"), rows, report);
        if let (Some(g), Some(s)) = (g, s) {
            if g.len() != s.len() {
                report.problem(
                    &idx_labels_name(split, "status"),
                    None,
                    format!("{} rows, the gender file has {}", s.len(), g.len()),
                );
            }
            let rows = g
                .iter()
                .zip(&s)
                .map(|(&gender, &status)| RowLabels {
                    image_id: None,
                    gender,
                    status,
                })
                .collect();
            sources.push((idx_labels_name(split, "gender"), rows));
        }
    }
    if npz && let Some(labels) = read_npz_labels(dir, split, rows, report) {
        sources.push((npz_labels_name(split), labels));
    }
    let mut parquet_reader = None;
    if parquet {
        match ParquetRows::open(dir, split, rows, size, false) {
            Ok(mut reader) => {
                let labels = reader.labels(report);
                if labels.len() as u64 != rows {
                    report.problem(
                        &parquet_name(split),
                        None,
                        format!("{} rows, the build's record says {rows}", labels.len()),
                    );
                }
                sources.push((parquet_name(split), labels));
                parquet_reader = ParquetRows::open(dir, split, rows, size, true).ok();
            }
            Err(message) => report.problem(&parquet_name(split), None, message),
        }
    }
    if expected.webdataset {
        sources.push(check_webdataset(dir, split, expected, report));
    }
    if let Some((first_name, first)) = sources.first().cloned() {
        // Ids: from the npz labels or Parquet (idx carries none).
        let ids: Option<Vec<u32>> = sources
            .iter()
            .find(|(_, rows)| rows.iter().all(|r| r.image_id.is_some()) && !rows.is_empty())
            .map(|(_, rows)| rows.iter().filter_map(|r| r.image_id).collect());
        for (name, rows) in &sources[1..] {
            if rows.len() != first.len() {
                report.problem(
                    name,
                    None,
                    format!("{} rows, {first_name} has {}", rows.len(), first.len()),
                );
            }
            let mut shown = 0;
            for (i, (a, b)) in first.iter().zip(rows).enumerate() {
                // idx carries no ids: compare with those of the first format that has them.
                let id = a.image_id.or_else(|| ids.as_ref()?.get(i).copied());
                let ids_differ = matches!((id, b.image_id), (Some(x), Some(y)) if x != y);
                if (a.gender, a.status) != (b.gender, b.status) || ids_differ {
                    report.problem(
                        name,
                        Some(i as u64),
                        format!("labels {b:?} disagree with {first_name}: {a:?}"),
                    );
                    shown += 1;
                    if shown == MAX_ROW_PROBLEMS_PER_FILE {
                        break;
                    }
                }
            }
        }
        if let (Some(order), Some(ids)) = (order, &ids) {
            check_against_labels_csv(order, split, ids, &first, &first_name, report);
        }
    }
    check_pixels(dir, split, (rows, size), (idx, npz), parquet_reader, report);
    rows
}

/// Read a split's WebDataset shards back with their format's reader, each image against
/// the npz (else idx) row; returns the samples' labels for the cross-check of formats.
fn check_webdataset(
    dir: &Path,
    split: Split,
    expected: &Expected,
    report: &mut VerifyReport,
) -> (String, Vec<RowLabels>) {
    let (idx, npz, _) = expected.formats;
    let (rows, size) = (expected.rows[&split], expected.size);
    let prefix = format!("{}/{split}-", pack::webdataset::WEBDATASET_DIR);
    let shards: Vec<String> = expected
        .files
        .iter()
        .filter(|f| f.starts_with(&prefix))
        .cloned()
        .collect();
    let mut pixels = match (npz, idx) {
        (true, _) => PixelRows::npz(dir, split, rows, size).ok(),
        (_, true) => PixelRows::idx(dir, split, rows, size).ok(),
        _ => None,
    };
    let row_len = 3 * size as usize * size as usize;
    let mut reference = |_row: u64| {
        let mut row = vec![0u8; row_len];
        pixels.as_mut()?.read_row(&mut row).ok().map(|_| row)
    };
    let check = pack::webdataset::verify_shards(
        &shards,
        split,
        rows,
        size,
        &mut |name| open_artifact(dir, name),
        &mut reference,
    );
    for p in check.problems {
        report.problem(&p.file, p.row, p.message);
    }
    let labels = check
        .labels
        .iter()
        .map(|l| RowLabels {
            image_id: Some(l.image_id),
            gender: l.gender,
            status: l.status,
        })
        .collect();
    (format!("{prefix}*.tar"), labels)
}

fn check_against_labels_csv(
    order: &LabelsCsv,
    split: Split,
    ids: &[u32],
    labels: &[RowLabels],
    name: &str,
    report: &mut VerifyReport,
) {
    let mut previous_line = 0;
    let mut shown = 0;
    for (i, (&id, l)) in ids.iter().zip(labels).enumerate() {
        let problem = match order.rows.get(&id) {
            None => Some(format!("image {id:08} is not in labels.csv")),
            Some(&(_, _, _, s)) if s != split => {
                Some(format!("image {id:08} belongs to split {s} in labels.csv"))
            }
            Some(&(_, g, s, _)) if (g, s) != (l.gender, l.status) => Some(format!(
                "image {id:08}: gender {} status {}, labels.csv says gender {g} status {s}",
                l.gender, l.status
            )),
            Some(&(line, ..)) if line <= previous_line => Some(format!(
                "image {id:08} (labels.csv line {line}) is out of labels.csv order"
            )),
            Some(&(line, ..)) => {
                previous_line = line;
                None
            }
        };
        if let Some(message) = problem {
            report.problem(name, Some(i as u64), message);
            shown += 1;
            if shown == MAX_ROW_PROBLEMS_PER_FILE {
                return;
            }
        }
    }
}

/// An idx1 labels file: `rows` bytes after its header, the count checked against the
/// record and the file's size before they are read.
fn read_idx1(dir: &Path, name: &str, rows: u64, report: &mut VerifyReport) -> Option<Vec<u8>> {
    let result = (|| -> Result<Vec<u8>, String> {
        let file = open_artifact(dir, name)?;
        let len = length(&file)?;
        if !can_hold(len, rows) {
            return Err(format!(
                "{len} bytes cannot hold the {rows} rows the build's record says"
            ));
        }
        let mut reader = flate2::read::GzDecoder::new(BufReader::new(file));
        let mut header = [0u8; 8];
        reader
            .read_exact(&mut header)
            .map_err(|e| format!("cannot read the header: {e}"))?;
        if header[..4] != [0, 0, 8, 1] {
            return Err("not an idx1 uint8 file (magic 0x00000801)".into());
        }
        let n = u64::from(u32::from_be_bytes([
            header[4], header[5], header[6], header[7],
        ]));
        if n != rows {
            return Err(format!(
                "header says {n} rows, the build's record says {rows}"
            ));
        }
        let mut labels = vec![0u8; rows as usize];
        reader
            .read_exact(&mut labels)
            .map_err(|e| format!("cannot read: {e}"))?;
        at_end(&mut reader)?;
        Ok(labels)
    })();
    result.map_err(|e| report.problem(name, None, e)).ok()
}

/// Nothing may follow the announced data; reading to the end also lets the decoder check
/// its CRC-32.
fn at_end(reader: &mut dyn Read) -> Result<(), String> {
    let mut probe = [0u8; 1];
    match reader.read(&mut probe) {
        Ok(0) => Ok(()),
        Ok(_) => Err("data after the rows the header announces".into()),
        Err(e) => Err(format!("cannot read to the end: {e}")),
    }
}

/// The entries an npz's zip directory claims, read from its end records before the zip
/// crate sees it: that crate reserves memory for as many entries as a directory claims.
/// kaokore writes no archive comment, so the end record is the file's last 22 bytes.
fn zip_entries(file: &mut File, len: u64) -> Result<u64, String> {
    let read_at = |file: &mut File, at: u64, buf: &mut [u8]| {
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(buf))
            .map_err(|e| format!("cannot read the zip directory: {e}"))
    };
    let not_zip =
        || "not a zip archive as kaokore writes it (no end record at its end)".to_string();
    if len < 22 {
        return Err(not_zip());
    }
    let mut end = [0u8; 22];
    read_at(file, len - 22, &mut end)?;
    if end[..4] != [0x50, 0x4b, 0x05, 0x06] {
        return Err(not_zip());
    }
    let entries = u64::from(u16::from_le_bytes([end[10], end[11]]));
    if entries != 0xffff {
        return Ok(entries);
    }
    // ZIP64: the locator precedes the end record and points at the ZIP64 end record.
    let mut locator = [0u8; 20];
    if len < 42 {
        return Err(not_zip());
    }
    read_at(file, len - 42, &mut locator)?;
    if locator[..4] != [0x50, 0x4b, 0x06, 0x07] {
        return Err(not_zip());
    }
    let at = u64::from_le_bytes(locator[8..16].try_into().expect("8 bytes"));
    let mut record = [0u8; 40];
    if at.saturating_add(40) > len {
        return Err(not_zip());
    }
    read_at(file, at, &mut record)?;
    if record[..4] != [0x50, 0x4b, 0x06, 0x06] {
        return Err(not_zip());
    }
    Ok(u64::from_le_bytes(
        record[32..40].try_into().expect("8 bytes"),
    ))
}

/// Open an npz with exactly `members` entries, checked before the zip crate reads its
/// directory.
fn open_npz(
    dir: &Path,
    name: &str,
    members: u64,
) -> Result<(zip::ZipArchive<BufReader<File>>, u64), String> {
    let mut file = open_artifact(dir, name)?;
    let len = length(&file)?;
    let entries = zip_entries(&mut file, len)?;
    if entries != members {
        return Err(format!("{entries} members, expected {members}"));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read: {e}"))?;
    let archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| e.to_string())?;
    Ok((archive, len))
}

/// One 1-D array of an npz labels file: `rows` items of `item` bytes, descr one of `descrs`.
fn read_npz_array(
    archive: &mut zip::ZipArchive<BufReader<File>>,
    file_len: u64,
    key: &str,
    descrs: &[&str],
    item: u64,
    rows: u64,
) -> Result<Vec<u8>, String> {
    let mut member = archive
        .by_name(&format!("{key}.npy"))
        .map_err(|e| format!("{key}: {e}"))?;
    let data = rows * item;
    if member.compressed_size() > file_len
        || member.size() > data + HEADER_SLACK
        || !can_hold(member.compressed_size(), member.size())
    {
        return Err(format!(
            "{key}: member sizes ({} bytes, {} compressed) do not fit {rows} rows in a {file_len}-byte file",
            member.size(),
            member.compressed_size()
        ));
    }
    let header = read_npy_header(&mut member, key)?;
    if !descrs.contains(&header.descr.as_str()) {
        return Err(format!(
            "{key} has dtype '{}', expected '{}'",
            header.descr, descrs[0]
        ));
    }
    if header.shape != [rows] {
        return Err(format!(
            "{key} has shape {:?}, the build's record says [{rows}]",
            header.shape
        ));
    }
    let mut bytes = vec![0u8; data as usize];
    member
        .read_exact(&mut bytes)
        .map_err(|e| format!("{key}: cannot read: {e}"))?;
    at_end(&mut member).map_err(|e| format!("{key}: {e}"))?;
    Ok(bytes)
}

fn read_npz_labels(
    dir: &Path,
    split: Split,
    rows: u64,
    report: &mut VerifyReport,
) -> Option<Vec<RowLabels>> {
    let name = npz_labels_name(split);
    let result = (|| -> Result<Vec<RowLabels>, String> {
        let (mut archive, len) = open_npz(dir, &name, 3)?;
        if !can_hold(len, rows * 6) {
            return Err(format!(
                "{len} bytes cannot hold the {rows} rows the build's record says"
            ));
        }
        let g = read_npz_array(&mut archive, len, "gender", &["|u1", "<u1"], 1, rows)?;
        let s = read_npz_array(&mut archive, len, "status", &["|u1", "<u1"], 1, rows)?;
        let ids = read_npz_array(&mut archive, len, "image_id", &["<i4"], 4, rows)?;
        Ok(g.iter()
            .zip(&s)
            .zip(ids.chunks_exact(4))
            .map(|((&gender, &status), id)| RowLabels {
                image_id: u32::try_from(i32::from_le_bytes([id[0], id[1], id[2], id[3]])).ok(),
                gender,
                status,
            })
            .collect())
    })();
    result.map_err(|e| report.problem(&name, None, e)).ok()
}

/// Rows of a Parquet split, streamed one record batch at a time.
struct ParquetRows {
    name: String,
    reader: ParquetRecordBatchReader,
    batch: Option<RecordBatch>,
    next: usize,
}

/// What a Parquet file's metadata states, checked before a row is read: the record's row
/// count and size, column chunks inside the file, and no more decompressed bytes per row
/// group than its rows can need (an image is at most twice its raw pixels, whatever its
/// encoding, plus a generous allowance for the text columns), so the reader allocates no
/// more than that.
fn check_parquet_metadata(
    meta: &ParquetMetaData,
    file_len: u64,
    rows: u64,
    size: u32,
) -> Result<(), String> {
    let stated = meta.file_metadata().num_rows();
    if u64::try_from(stated).ok() != Some(rows) {
        return Err(format!(
            "metadata says {stated} rows, the build's record says {rows}"
        ));
    }
    let kaokore_size = meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == "kaokore"))
        .and_then(|e| e.value.as_deref())
        .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
        .and_then(|v| v["size"].as_u64());
    if kaokore_size != Some(u64::from(size)) {
        return Err(format!(
            "kaokore metadata says size {kaokore_size:?}, the build's record says {size}"
        ));
    }
    let per_row = 2 * 3 * u64::from(size) * u64::from(size) + (1 << 20);
    for (i, group) in meta.row_groups().iter().enumerate() {
        let group_rows = u64::try_from(group.num_rows()).unwrap_or(u64::MAX);
        let mut decompressed: u64 = 0;
        for column in group.columns() {
            let (start, length) = column.byte_range();
            if start.saturating_add(length) > file_len {
                return Err(format!(
                    "row group {i}: a column chunk lies beyond the file's {file_len} bytes"
                ));
            }
            decompressed = decompressed
                .saturating_add(u64::try_from(column.uncompressed_size()).unwrap_or(u64::MAX));
        }
        if decompressed
            > group_rows
                .saturating_mul(per_row)
                .saturating_add(HEADER_SLACK)
        {
            return Err(format!(
                "row group {i}: {decompressed} bytes decompressed for {group_rows} rows is more than rows of size {size} can need"
            ));
        }
    }
    Ok(())
}

/// One Parquet row: the image bytes and its labels.
struct ParquetRow {
    image: Option<Vec<u8>>,
    labels: RowLabels,
}

impl ParquetRows {
    /// Open a split; without `with_image`, only the label columns are read. The file's
    /// metadata is checked against the record and the file's size first.
    fn open(
        dir: &Path,
        split: Split,
        rows: u64,
        size: u32,
        with_image: bool,
    ) -> Result<ParquetRows, String> {
        let file = open_artifact(dir, &parquet_name(split))?;
        let len = length(&file)?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
        check_parquet_metadata(builder.metadata(), len, rows, size)?;
        let schema = builder.schema().clone();
        for column in ["image", "image_id", "gender", "status"] {
            if schema.index_of(column).is_err() {
                return Err(format!("no column '{column}'"));
            }
        }
        let builder = if with_image {
            builder
        } else {
            let mask =
                ProjectionMask::columns(builder.parquet_schema(), ["image_id", "gender", "status"]);
            builder.with_projection(mask)
        };
        let reader = builder
            .with_batch_size(64)
            .build()
            .map_err(|e| e.to_string())?;
        Ok(ParquetRows {
            name: parquet_name(split),
            reader,
            batch: None,
            next: 0,
        })
    }

    fn next_row(&mut self, with_image: bool) -> Option<Result<ParquetRow, String>> {
        loop {
            if let Some(batch) = &self.batch
                && self.next < batch.num_rows()
            {
                let r = self.next;
                self.next += 1;
                return Some(Self::row(batch, r, with_image));
            }
            match self.reader.next()? {
                Ok(batch) => {
                    self.batch = Some(batch);
                    self.next = 0;
                }
                Err(e) => return Some(Err(e.to_string())),
            }
        }
    }

    fn row(batch: &RecordBatch, r: usize, with_image: bool) -> Result<ParquetRow, String> {
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .ok_or_else(|| format!("no column '{name}'"))
        };
        let id = column("image_id")?
            .as_primitive_opt::<Int32Type>()
            .ok_or("image_id is not int32")?;
        let gender = column("gender")?
            .as_primitive_opt::<Int64Type>()
            .ok_or("gender is not int64")?;
        let status = column("status")?
            .as_primitive_opt::<Int64Type>()
            .ok_or("status is not int64")?;
        let image = if with_image {
            let bytes = column("image")?
                .as_struct_opt()
                .ok_or("column 'image' is not a struct")?
                .column_by_name("bytes")
                .and_then(|c| c.as_any().downcast_ref::<BinaryArray>())
                .ok_or("image.bytes is not binary")?;
            bytes.is_valid(r).then(|| bytes.value(r).to_vec())
        } else {
            None
        };
        Ok(ParquetRow {
            image,
            labels: RowLabels {
                image_id: id
                    .is_valid(r)
                    .then(|| u32::try_from(id.value(r)).ok())
                    .flatten(),
                gender: u8::try_from(gender.value(r)).unwrap_or(u8::MAX),
                status: u8::try_from(status.value(r)).unwrap_or(u8::MAX),
            },
        })
    }

    /// All rows' labels (reads the file once, without keeping images).
    fn labels(&mut self, report: &mut VerifyReport) -> Vec<RowLabels> {
        let mut out = Vec::new();
        while let Some(row) = self.next_row(false) {
            match row {
                Ok(row) => out.push(row.labels),
                Err(e) => {
                    report.problem(&self.name, Some(out.len() as u64), e);
                    break;
                }
            }
        }
        out
    }
}

/// A stream of pixel rows: the npz `arr_0` member or the idx images file, after its header.
struct PixelRows {
    name: String,
    reader: Box<dyn CrcRead>,
    /// CRC-32 and length the zip directory records for the member.
    expected: Option<(u32, u64)>,
}

/// A reader that keeps the CRC-32 of what it returned.
trait CrcRead: Read {
    fn sum(&self) -> (u32, u64);
}

impl<R: Read> CrcRead for flate2::CrcReader<R> {
    fn sum(&self) -> (u32, u64) {
        (self.crc().sum(), u64::from(self.crc().amount()))
    }
}

impl PixelRows {
    /// The shape every pixel stream of a split must have: (rows, S, S, 3).
    fn expected_shape(rows: u64, size: u32) -> [u64; 4] {
        [rows, u64::from(size), u64::from(size), 3]
    }

    fn idx(dir: &Path, split: Split, rows: u64, size: u32) -> Result<PixelRows, String> {
        let name = idx_images_name(split);
        let file = open_artifact(dir, &name)?;
        let len = length(&file)?;
        let shape = Self::expected_shape(rows, size);
        check_holds(len, shape)?;
        // GzDecoder checks the gzip CRC-32 and length itself at the end of the stream.
        let mut reader = flate2::CrcReader::new(flate2::read::GzDecoder::new(
            BufReader::with_capacity(1 << 20, file),
        ));
        let mut header = [0u8; 20];
        reader
            .read_exact(&mut header)
            .map_err(|e| format!("cannot read the header: {e}"))?;
        if header[..4] != [0, 0, 8, 4] {
            return Err("not an idx4 uint8 file (magic 0x00000804)".into());
        }
        let dim = |i: usize| {
            u64::from(u32::from_be_bytes([
                header[4 + 4 * i],
                header[5 + 4 * i],
                header[6 + 4 * i],
                header[7 + 4 * i],
            ]))
        };
        let stated = [dim(0), dim(1), dim(2), dim(3)];
        if stated != shape {
            return Err(shape_mismatch(stated, shape));
        }
        Ok(PixelRows {
            name,
            reader: Box::new(reader),
            expected: None,
        })
    }

    fn npz(dir: &Path, split: Split, rows: u64, size: u32) -> Result<PixelRows, String> {
        let name = npz_images_name(split);
        let shape = Self::expected_shape(rows, size);
        let (mut archive, len) = open_npz(dir, &name, 1)?;
        check_holds(len, shape)?;
        // The zip crate's member reader borrows the archive; read where it says the data is
        // instead, so the member streams through an owned decoder.
        let (start, compressed, method, crc, uncompressed) = {
            let member = archive.by_name("arr_0.npy").map_err(|e| e.to_string())?;
            (
                member.data_start(),
                member.compressed_size(),
                member.compression(),
                member.crc32(),
                member.size(),
            )
        };
        let pixels = shape.iter().product::<u64>();
        if start.saturating_add(compressed) > len
            || !can_hold(compressed, uncompressed)
            || uncompressed < pixels
            || uncompressed > pixels + HEADER_SLACK
        {
            return Err(format!(
                "arr_0.npy: member sizes ({uncompressed} bytes, {compressed} compressed) do not fit {pixels} bytes of pixels in a {len}-byte file"
            ));
        }
        let mut file = archive.into_inner().into_inner();
        file.seek(SeekFrom::Start(start))
            .map_err(|e| e.to_string())?;
        let data = BufReader::with_capacity(1 << 20, file).take(compressed);
        let inner: Box<dyn Read> = match method {
            zip::CompressionMethod::Deflated => Box::new(flate2::read::DeflateDecoder::new(data)),
            zip::CompressionMethod::Stored => Box::new(data),
            other => return Err(format!("arr_0.npy compressed with unsupported {other:?}")),
        };
        let mut reader = flate2::CrcReader::new(inner);
        let header = read_npy_header(&mut reader, "arr_0")?;
        if header.descr != "|u1" && header.descr != "<u1" {
            return Err(format!("arr_0 is not uint8: dtype '{}'", header.descr));
        }
        let stated: [u64; 4] = header
            .shape
            .as_slice()
            .try_into()
            .map_err(|_| format!("arr_0 has {} dimensions, expected 4", header.shape.len()))?;
        if stated != shape {
            return Err(shape_mismatch(stated, shape));
        }
        Ok(PixelRows {
            name,
            reader: Box::new(reader),
            expected: Some((crc, uncompressed)),
        })
    }

    fn read_row(&mut self, buf: &mut [u8]) -> Result<(), String> {
        self.reader
            .read_exact(buf)
            .map_err(|e| format!("cannot read pixels: {e}"))
    }

    /// After the last row: nothing may follow, and the member CRC must match.
    fn check_end(&mut self) -> Result<(), String> {
        let mut probe = [0u8; 1];
        match self.reader.read(&mut probe) {
            Ok(0) => {}
            Ok(_) => return Err("data after the rows the header announces".into()),
            Err(e) => return Err(format!("cannot read to the end: {e}")),
        }
        if let Some((crc, len)) = self.expected {
            let (actual, read) = self.reader.sum();
            // CrcReader's amount is 32-bit; compare it modulo 2^32.
            if actual != crc || read != len % (1 << 32) {
                return Err(format!(
                    "CRC-32 {actual:08x} over {read} bytes, the zip directory says {crc:08x} over {len}"
                ));
            }
        }
        Ok(())
    }
}

/// What an npy header states.
struct NpyHeader {
    descr: String,
    shape: Vec<u64>,
}

/// Parse the npy header of array `key` from `reader` (C order required). Only the header
/// is read: at most 64 KiB, whatever it claims.
fn read_npy_header(reader: &mut dyn Read, key: &str) -> Result<NpyHeader, String> {
    let mut magic = [0u8; 10];
    reader
        .read_exact(&mut magic)
        .map_err(|e| format!("{key}.npy: {e}"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(format!("{key}.npy is not an npy array"));
    }
    let len = match magic[6] {
        1 => u16::from_le_bytes([magic[8], magic[9]]) as usize,
        2 | 3 => {
            let mut more = [0u8; 2];
            reader.read_exact(&mut more).map_err(|e| e.to_string())?;
            u32::from_le_bytes([magic[8], magic[9], more[0], more[1]]) as usize
        }
        v => return Err(format!("{key}.npy: npy format version {v} unknown")),
    };
    if len > 1 << 16 {
        return Err(format!("{key}.npy: header too long"));
    }
    let mut dict = vec![0u8; len];
    reader.read_exact(&mut dict).map_err(|e| e.to_string())?;
    let dict = String::from_utf8_lossy(&dict);
    let descr = dict
        .split("'descr': '")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| format!("{key} has no dtype"))?
        .to_string();
    if !dict.contains("'fortran_order': False") {
        return Err(format!("{key} is not in C order"));
    }
    let shape = dict
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| format!("{key} has no shape"))?;
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{key} shape '({shape})' unreadable"))?;
    Ok(NpyHeader { descr, shape })
}

/// A compressed file of `len` bytes must be able to hold the pixels of `shape`.
fn check_holds(len: u64, shape: [u64; 4]) -> Result<(), String> {
    let pixels = shape
        .iter()
        .try_fold(1u64, |a, &d| a.checked_mul(d))
        .unwrap_or(u64::MAX);
    if can_hold(len, pixels) {
        Ok(())
    } else {
        Err(format!(
            "{len} bytes cannot hold the pixels of shape {shape:?} the build's record says"
        ))
    }
}

fn shape_mismatch(stated: [u64; 4], expected: [u64; 4]) -> String {
    format!("header states shape {stated:?}, the build's record says {expected:?}")
}

fn check_pixels(
    dir: &Path,
    split: Split,
    (n, size): (u64, u32),
    (idx, npz): (bool, bool),
    mut parquet: Option<ParquetRows>,
    report: &mut VerifyReport,
) {
    type Open = fn(&Path, Split, u64, u32) -> Result<PixelRows, String>;
    let mut streams: Vec<PixelRows> = Vec::new();
    for (present, open, name) in [
        (npz, PixelRows::npz as Open, npz_images_name(split)),
        (idx, PixelRows::idx as Open, idx_images_name(split)),
    ] {
        if !present {
            continue;
        }
        match open(dir, split, n, size) {
            Ok(s) => streams.push(s),
            Err(e) => report.problem(&name, None, e),
        }
    }
    // The record's size was checked against the largest edge pack accepts, and every
    // stream's shape against it: this is one row, of a size a build can have.
    let row_len = 3 * size as usize * size as usize;
    let mut rows: Vec<Vec<u8>> = if n == 0 {
        Vec::new()
    } else {
        streams.iter().map(|_| vec![0u8; row_len]).collect()
    };
    let mut shown = 0;
    let mut broken = vec![false; streams.len()];
    for i in 0..n {
        for (k, s) in streams.iter_mut().enumerate() {
            if broken[k] {
                continue;
            }
            if let Err(e) = s.read_row(&mut rows[k]) {
                report.problem(&s.name, Some(i), e);
                broken[k] = true;
            }
        }
        // This row's pixels as each readable format has them.
        let mut candidates: Vec<(&str, &[u8])> = streams
            .iter()
            .zip(&rows)
            .zip(&broken)
            .filter(|(_, b)| !**b)
            .map(|((s, row), _)| (s.name.as_str(), row.as_slice()))
            .collect();
        let parquet_name = parquet_name(split);
        let mut decoded = None;
        if let Some(p) = parquet.as_mut() {
            match p.next_row(true) {
                None => {
                    report.problem(&parquet_name, Some(i), "fewer rows than the other formats");
                    parquet = None;
                }
                Some(Err(e)) => {
                    report.problem(&parquet_name, Some(i), e);
                    parquet = None;
                }
                Some(Ok(row)) => {
                    let problem = match &row.image {
                        None => Some("no image bytes".to_string()),
                        Some(bytes) => match normalize::normalize(bytes, size) {
                            Err(e) => Some(format!("image does not decode: {e}")),
                            Ok(img) if img.resized => Some(format!(
                                "image is {} x {}, not {size} x {size}",
                                img.source.width, img.source.height
                            )),
                            Ok(img) => {
                                decoded = Some(img.pixels);
                                None
                            }
                        },
                    };
                    if let Some(message) = problem
                        && shown < MAX_ROW_PROBLEMS_PER_FILE
                    {
                        report.problem(&parquet_name, Some(i), message);
                        shown += 1;
                    }
                }
            }
        }
        if let Some(pixels) = &decoded {
            candidates.push((parquet_name.as_str(), pixels));
        }
        for (name, message) in pixel_disagreements(&candidates) {
            if shown < MAX_ROW_PROBLEMS_PER_FILE {
                report.problem(name, Some(i), message);
                shown += 1;
            }
        }
        report.pixel_rows_compared += 1;
    }
    for (k, s) in streams.iter_mut().enumerate() {
        if !broken[k]
            && let Err(e) = s.check_end()
        {
            report.problem(&s.name, None, e);
        }
    }
}

/// Which formats disagree on a row's pixels. With a majority (two of three), the odd one
/// out is named; otherwise every pair is.
fn pixel_disagreements<'a>(candidates: &[(&'a str, &[u8])]) -> Vec<(&'a str, String)> {
    if candidates.windows(2).all(|w| w[0].1 == w[1].1) {
        return Vec::new();
    }
    let agreeing = |k: usize| {
        candidates
            .iter()
            .filter(|(_, p)| *p == candidates[k].1)
            .count()
    };
    let majority = (0..candidates.len()).find(|&k| agreeing(k) * 2 > candidates.len());
    let mut out = Vec::new();
    match majority {
        Some(m) => {
            let (reference, pixels) = candidates[m];
            for &(name, p) in candidates.iter().filter(|(_, p)| *p != pixels) {
                out.push((
                    name,
                    format!(
                        "pixels differ from {reference} and the other formats (first at byte {})",
                        first_difference(p, pixels)
                    ),
                ));
            }
        }
        None => {
            for (k, &(name, p)) in candidates.iter().enumerate().skip(1) {
                let (other, q) = candidates[k - 1];
                if p != q {
                    out.push((
                        name,
                        format!(
                            "pixels differ from {other} (first at byte {})",
                            first_difference(p, q)
                        ),
                    ));
                }
            }
        }
    }
    out
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}
