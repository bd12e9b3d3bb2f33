//! Verify: re-check a built output directory without trusting anything pack remembered.
//!
//! The build's record (`.kaokore-build.json`) says what must be there: its formats, splits
//! and size give the artifacts, and its row counts how many rows each holds. Every one of
//! them must exist and be listed in SHA256SUMS, whose entries are all recomputed; a
//! SHA256SUMS line for a file no such build writes is a problem too. Files of the user's
//! in the directory are listed, not judged. Then each format of the build re-reads its
//! files with its own reader (see the `read_labels` and `open_pixels` of
//! [`crate::pack::format::Format`]: flate2, the zip crate, the parquet crate) and they are
//! checked against each other row by row: the same image ids and labels in the same order
//! (and in labels.csv's order), the same RGB pixels (each Parquet image is decoded and
//! normalized exactly as pack did), and gray rows equal to the gray of those pixels.
//!
//! Nothing is trusted before it is checked: no symlink is followed and no special file
//! opened, and every size or shape a header states is checked against the record and the
//! file's own size before anything is allocated for it. Rows are streamed, so memory does
//! not grow with a split. Problems are collected, with file and row, rather than stopping
//! at the first.

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use crate::layout::{RECORD_FILE, REPORT_FILE, SHA256SUMS, STAGING_PREFIX, size_dir_name};
use crate::metadata::Split;
use crate::normalize;
use crate::out::{BuildRecord, RecordError, is_plain_relative};
use crate::pack;
use crate::pack::format::{self, Format};
use crate::pack::read::{
    Channels, LabelsOrder, MAX_ROW_PROBLEMS_PER_FILE, PixelSource, Problems, RowLabels, RowRead,
    SplitAt, length, open_artifact,
};

/// A SHA256SUMS is about 100 bytes a line; with `images`, a line per image.
const MAX_SUMS_BYTES: u64 = 64 << 20;
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
    pub(crate) fn problem(&mut self, file: &str, row: Option<u64>, message: impl Into<String>) {
        self.problems.problem(file, row, message);
    }
}

/// What the build's record promises.
struct Expected {
    /// Every file the build holds (see [`BuildRecord::expected_files`]).
    files: BTreeSet<String>,
    /// Its formats, in registry order.
    formats: Vec<&'static dyn Format>,
    size: u32,
    rows: HashMap<Split, u64>,
}

/// Re-check the output directory `dir`.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    if !dir.is_dir() {
        return Err(VerifyError::NotADirectory(dir.to_path_buf()));
    }
    let mut report = VerifyReport::default();
    if let Ok(Some(record)) = BuildRecord::read(dir)
        && !record.sizes.is_empty()
    {
        verify_sizes(dir, &record, &mut report);
        return Ok(report);
    }
    let Some(expected) = read_record(dir, &mut report) else {
        return Ok(report);
    };
    let hashes = check_sums(dir, &expected, &mut report);
    check_croissant(dir, &expected, &hashes, &mut report);
    find_extra_files(dir, &expected.files, &mut report);
    let order = LabelsOrder::read(dir, &mut report.problems);
    for split in Split::ALL {
        let rows = check_split(dir, split, &expected, order.as_ref(), &mut report);
        report.rows.push((split, rows));
    }
    Ok(report)
}

/// Check a build of several sizes: each `size-{S}/` is a build of its own, verified as
/// one (its problems and extra files named by their path from `dir`), whose record says
/// it is of size S; `dir`'s record lists exactly their files. Rows are the first size's
/// (every size packs the same rows); checksums and pixel rows compared add up.
fn verify_sizes(dir: &Path, record: &BuildRecord, report: &mut VerifyReport) {
    let mut listed = BTreeSet::new();
    for &size in &record.sizes {
        let name = size_dir_name(size);
        let sub_dir = dir.join(&name);
        let sub_record = match BuildRecord::read(&sub_dir) {
            Ok(Some(r)) if r.sizes.is_empty() => r,
            Ok(Some(_)) => {
                report.problem(&name, None, "holds a build of several sizes itself");
                continue;
            }
            Ok(None) => {
                report.problem(
                    &name,
                    None,
                    format!("no {RECORD_FILE}: the size's build is missing"),
                );
                continue;
            }
            Err(e) => {
                report.problem(&format!("{name}/{RECORD_FILE}"), None, e.to_string());
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
    for f in recorded.difference(&listed) {
        report.problem(
            RECORD_FILE,
            None,
            format!("lists {f}, which none of its size builds holds"),
        );
    }
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
    // expected_files refused unknown formats; registry order makes the comparisons stable.
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
    // Formats with a file per image describe them with one FileSet.
    let per_image: Vec<String> = expected
        .formats
        .iter()
        .filter(|f| !f.file_objects())
        .flat_map(|f| f.dirs(expected.size))
        .map(|d| format!("{d}/"))
        .collect();
    for f in &expected.files {
        if f != name
            && f != SHA256SUMS
            && !per_image.iter().any(|p| f.starts_with(p))
            && !described.contains(f.as_str())
        {
            report.problem(f, None, format!("not described in {name}"));
        }
    }
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

/// Check one split across formats; returns its row count (the record's, once each format
/// was checked to hold that many).
fn check_split(
    dir: &Path,
    split: Split,
    expected: &Expected,
    order: Option<&LabelsOrder>,
    report: &mut VerifyReport,
) -> u64 {
    let at = SplitAt {
        dir,
        files: &expected.files,
        split,
        rows: expected.rows[&split],
        size: expected.size,
        ids: None,
    };
    // Labels from each format, in full (they are one or a few bytes per row, and each
    // reader checked the count against the record and the file size first).
    let sources: Vec<(String, Vec<RowLabels>)> = expected
        .formats
        .iter()
        .filter_map(|f| f.read_labels(&at, &mut report.problems))
        .collect();
    // Ids: from the npz labels, Parquet or WebDataset (idx carries none).
    let ids: Option<Vec<u32>> = sources
        .iter()
        .find(|(_, rows)| rows.iter().all(|r| r.image_id.is_some()) && !rows.is_empty())
        .map(|(_, rows)| rows.iter().filter_map(|r| r.image_id).collect());
    if let Some((first_name, first)) = sources.first().cloned() {
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
    // A build whose formats state no ids: a format may know them from its files' names.
    let ids = ids.or_else(|| {
        let order = order?;
        let listed = expected
            .formats
            .iter()
            .find_map(|f| f.listed_ids(&at, order));
        Some(listed.unwrap_or_default())
    });
    let at = SplitAt {
        ids: ids.as_deref(),
        ..at
    };
    check_pixels(&at, &expected.formats, report);
    at.rows
}

fn check_against_labels_csv(
    order: &LabelsOrder,
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

/// Compare the split's pixel rows across its formats, row by row: RGB rows must agree
/// (the odd one out is named), gray rows must be the gray of the agreed RGB pixels.
fn check_pixels(at: &SplitAt<'_>, formats: &[&'static dyn Format], report: &mut VerifyReport) {
    let mut streams: Vec<Box<dyn PixelSource>> = formats
        .iter()
        .filter_map(|f| f.open_pixels(at, &mut report.problems))
        .collect();
    // The record's size was checked against the largest edge pack accepts, and every
    // stream's shape against it: a row is of a size a build can have.
    let mut rows: Vec<Vec<u8>> = if at.rows == 0 {
        Vec::new()
    } else {
        streams
            .iter()
            .map(|s| vec![0u8; s.channels().row_len(at.size)])
            .collect()
    };
    let mut broken = vec![false; streams.len()];
    let mut shown = 0;
    let mut note = |report: &mut VerifyReport, name: &str, i: u64, message: String| {
        if shown < MAX_ROW_PROBLEMS_PER_FILE {
            report.problem(name, Some(i), message);
            shown += 1;
        }
    };
    for i in 0..at.rows {
        let mut read = vec![false; streams.len()];
        for (k, s) in streams.iter_mut().enumerate() {
            if broken[k] {
                continue;
            }
            match s.read_row(&mut rows[k]) {
                RowRead::Pixels => read[k] = true,
                RowRead::Bad(message) => note(report, s.name(), i, message),
                RowRead::Broken(message) => {
                    report.problem(s.name(), Some(i), message);
                    broken[k] = true;
                }
            }
        }
        let of = |channels: Option<Channels>| -> Vec<(&str, &[u8])> {
            streams
                .iter()
                .zip(&rows)
                .zip(&read)
                .filter(|((s, _), r)| {
                    **r && if s.jpeg_files() {
                        channels.is_none()
                    } else {
                        channels == Some(s.channels())
                    }
                })
                .map(|((s, row), _)| (s.name(), row.as_slice()))
                .collect()
        };
        let rgb = of(Some(Channels::Rgb));
        for (name, message) in pixel_disagreements(&rgb) {
            note(report, name, i, message);
        }
        let agreed_rgb = agreed(&rgb);
        for (name, jpeg) in of(None) {
            if let Err(message) = check_jpeg(jpeg, at.size, agreed_rgb) {
                note(report, name, i, message);
            }
        }
        let gray = of(Some(Channels::Gray));
        if let (false, Some((reference, pixels))) = (gray.is_empty(), agreed_rgb) {
            let expected = normalize::to_gray(pixels);
            for &(name, g) in gray.iter().filter(|(_, g)| *g != expected.as_slice()) {
                let message = format!(
                    "gray pixels differ from the gray of {reference}'s pixels (first at byte {})",
                    first_difference(g, &expected)
                );
                note(report, name, i, message);
            }
        }
        report.pixel_rows_compared += 1;
    }
    for (k, s) in streams.iter_mut().enumerate() {
        if !broken[k]
            && let Err(e) = s.check_end()
        {
            report.problem(s.name(), None, e);
        }
    }
}

/// A row that is a JPEG file ([`PixelSource::jpeg_files`]): an S x S RGB JPEG that decodes to
/// `reference`'s pixels, when there are any, or is the JPEG pack makes of them.
fn check_jpeg(jpeg: &[u8], size: u32, reference: Option<(&str, &[u8])>) -> Result<(), String> {
    let image =
        normalize::normalize(jpeg, size).map_err(|e| format!("image does not decode: {e}"))?;
    if !image.source_is_final_jpeg() {
        return Err(format!(
            "image is not a {size} x {size} RGB JPEG ({} x {})",
            image.source.width, image.source.height
        ));
    }
    let Some((name, pixels)) = reference else {
        return Ok(());
    };
    if image.pixels == pixels
        || crate::encode::encode_jpeg(pixels, size).is_ok_and(|made| made == jpeg)
    {
        return Ok(());
    }
    Err(format!(
        "image pixels differ from {name}'s (first at byte {}) and it is not the JPEG of them",
        first_difference(&image.pixels, pixels)
    ))
}

/// The RGB pixels of a row that the formats agree on (all of them, or a majority), and
/// the first format that has them.
fn agreed<'a>(candidates: &[(&'a str, &'a [u8])]) -> Option<(&'a str, &'a [u8])> {
    let agreeing = |p: &[u8]| candidates.iter().filter(|(_, q)| *q == p).count();
    candidates
        .iter()
        .find(|(_, p)| agreeing(p) * 2 > candidates.len())
        .copied()
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
