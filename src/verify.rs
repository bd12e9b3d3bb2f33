//! Verify: re-check a built output directory without trusting anything pack remembered.
//!
//! Recomputes every SHA256SUMS entry, re-reads every idx, npz and Parquet file with
//! independent readers (flate2, the zip crate, the parquet crate), and checks that they
//! agree row by row: the same image ids and labels in the same order (and in labels.csv's
//! order), and the same pixels (each Parquet image is decoded and normalized exactly as pack
//! did). Rows are streamed, so memory does not grow with a split. Problems are collected,
//! with file and row, rather than stopping at the first.

use std::collections::HashMap;
use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type};
use arrow_array::{Array, BinaryArray, RecordBatch};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use crate::metadata::Split;
use crate::normalize;
use crate::pack::{
    self, SHA256SUMS, idx_images_name, idx_labels_name, npz_images_name, npz_labels_name,
    parquet_name,
};

/// Stop listing row problems of one file after this many: the rest is noise.
const MAX_ROW_PROBLEMS_PER_FILE: usize = 20;

/// Why verify could not run at all (a disagreement is a [`Problem`], not an error).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0}: not a directory")]
    NotADirectory(PathBuf),
}

/// One disagreement, with the file (relative to the directory) and row it concerns.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub file: String,
    pub row: Option<u64>,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(row) => write!(f, "{}: row {row}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
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
}

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn problem(&mut self, file: &str, row: Option<u64>, message: impl Into<String>) {
        self.problems.push(Problem {
            file: file.to_string(),
            row,
            message: message.into(),
        });
    }
}

/// Re-check the output directory `dir`.
pub fn verify(dir: &Path) -> Result<VerifyReport, VerifyError> {
    if !dir.is_dir() {
        return Err(VerifyError::NotADirectory(dir.to_path_buf()));
    }
    let mut report = VerifyReport::default();
    let listed = check_sums(dir, &mut report);
    let has =
        |prefix: &str| listed.iter().any(|p| p.starts_with(prefix)) || dir.join(prefix).is_dir();
    let formats = (has("idx/"), has("npz/"), has("parquet/"));
    if !(formats.0 || formats.1 || formats.2) {
        report.problem(".", None, "no idx/, npz/ or parquet/ artifacts found");
    }
    let order = LabelsCsv::read(dir, &mut report);
    for split in Split::ALL {
        let rows = check_split(dir, split, formats, order.as_ref(), &mut report);
        report.rows.push((split, rows));
    }
    Ok(report)
}

/// Recompute every SHA256SUMS entry; returns the listed paths.
fn check_sums(dir: &Path, report: &mut VerifyReport) -> Vec<String> {
    let text = match std::fs::read_to_string(dir.join(SHA256SUMS)) {
        Ok(t) => t,
        Err(e) => {
            report.problem(SHA256SUMS, None, format!("cannot read: {e}"));
            return Vec::new();
        }
    };
    let entries = pack::parse_sums(&text);
    if entries.is_empty() {
        report.problem(SHA256SUMS, None, "no entries");
    }
    let mut listed = Vec::new();
    for (hash, path) in entries {
        let safe = Path::new(&path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if !safe {
            report.problem(SHA256SUMS, None, format!("unsafe path '{path}'"));
            continue;
        }
        match pack::hash_file(&dir.join(&path)) {
            Ok((_, actual)) if actual == hash => report.checksummed += 1,
            Ok((_, actual)) => report.problem(
                &path,
                None,
                format!("SHA-256 is {actual}, SHA256SUMS says {hash}"),
            ),
            Err(e) => report.problem(&path, None, format!("listed in SHA256SUMS but {e}")),
        }
        listed.push(path);
    }
    listed
}

/// labels.csv as copied into the directory: id -> (line, gender, status, split).
struct LabelsCsv {
    rows: HashMap<u32, (u64, u8, u8, Split)>,
}

impl LabelsCsv {
    fn read(dir: &Path, report: &mut VerifyReport) -> Option<LabelsCsv> {
        let text = std::fs::read_to_string(dir.join("labels.csv")).ok()?;
        let mut rows = HashMap::new();
        for (i, line) in text.lines().enumerate().skip(1) {
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

/// Check one split across formats; returns its row count.
fn check_split(
    dir: &Path,
    split: Split,
    (idx, npz, parquet): (bool, bool, bool),
    order: Option<&LabelsCsv>,
    report: &mut VerifyReport,
) -> u64 {
    // Labels from each format, in full (they are one or a few bytes per row).
    let mut sources: Vec<(String, Vec<RowLabels>)> = Vec::new();
    if idx {
        let g = read_idx1(dir, &idx_labels_name(split, "gender"), report);
        let s = read_idx1(dir, &idx_labels_name(split, "status"), report);
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
    if npz && let Some(rows) = read_npz_labels(dir, split, report) {
        sources.push((npz_labels_name(split), rows));
    }
    let mut parquet_reader = None;
    if parquet {
        match ParquetRows::open(dir, split, false) {
            Ok(mut rows) => {
                let labels = rows.labels(report);
                sources.push((parquet_name(split), labels));
                parquet_reader = ParquetRows::open(dir, split, true).ok();
            }
            Err(message) => report.problem(&parquet_name(split), None, message),
        }
    }
    let Some((first_name, first)) = sources.first().cloned() else {
        return 0;
    };
    let n = first.len() as u64;
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
            let ids_differ = matches!((a.image_id, b.image_id), (Some(x), Some(y)) if x != y);
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

    check_pixels(dir, split, n, (idx, npz), parquet_reader, report);
    n
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

fn read_idx1(dir: &Path, name: &str, report: &mut VerifyReport) -> Option<Vec<u8>> {
    let mut raw = Vec::new();
    let read = File::open(dir.join(name))
        .and_then(|f| flate2::read::GzDecoder::new(f).read_to_end(&mut raw));
    if let Err(e) = read {
        report.problem(name, None, format!("cannot read: {e}"));
        return None;
    }
    if raw.len() < 8 || raw[..4] != [0, 0, 8, 1] {
        report.problem(name, None, "not an idx1 uint8 file (magic 0x00000801)");
        return None;
    }
    let n = u32::from_be_bytes([raw[4], raw[5], raw[6], raw[7]]) as usize;
    if raw.len() != 8 + n {
        report.problem(
            name,
            None,
            format!("header says {n} rows, the file has {}", raw.len() - 8),
        );
        return None;
    }
    Some(raw.split_off(8))
}

fn read_npz_labels(dir: &Path, split: Split, report: &mut VerifyReport) -> Option<Vec<RowLabels>> {
    use ndarray::Array1;
    use ndarray_npy::NpzReader;
    let name = npz_labels_name(split);
    let result = (|| -> Result<Vec<RowLabels>, String> {
        let file = File::open(dir.join(&name)).map_err(|e| e.to_string())?;
        let mut npz = NpzReader::new(file).map_err(|e| e.to_string())?;
        let g: Array1<u8> = npz.by_name("gender").map_err(|e| format!("gender: {e}"))?;
        let s: Array1<u8> = npz.by_name("status").map_err(|e| format!("status: {e}"))?;
        let ids: Array1<i32> = npz
            .by_name("image_id")
            .map_err(|e| format!("image_id: {e}"))?;
        if g.len() != s.len() || g.len() != ids.len() {
            return Err(format!(
                "arrays differ in length: gender {}, status {}, image_id {}",
                g.len(),
                s.len(),
                ids.len()
            ));
        }
        Ok(g.iter()
            .zip(&s)
            .zip(&ids)
            .map(|((&gender, &status), &id)| RowLabels {
                image_id: u32::try_from(id).ok(),
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
    /// `size` from the file's `kaokore` metadata.
    size: Option<u32>,
}

/// One Parquet row: the image bytes and its labels.
struct ParquetRow {
    image: Option<Vec<u8>>,
    labels: RowLabels,
}

impl ParquetRows {
    /// Open a split; without `with_image`, only the label columns are read.
    fn open(dir: &Path, split: Split, with_image: bool) -> Result<ParquetRows, String> {
        let file = File::open(dir.join(parquet_name(split))).map_err(|e| e.to_string())?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| e.to_string())?;
        let size = builder
            .metadata()
            .file_metadata()
            .key_value_metadata()
            .and_then(|kv| kv.iter().find(|e| e.key == "kaokore"))
            .and_then(|e| e.value.as_deref())
            .and_then(|v| serde_json::from_str::<serde_json::Value>(v).ok())
            .and_then(|v| v["size"].as_u64())
            .and_then(|s| u32::try_from(s).ok());
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
            size,
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
    shape: [u64; 4],
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
    fn idx(dir: &Path, split: Split) -> Result<PixelRows, String> {
        let name = idx_images_name(split);
        let file = File::open(dir.join(&name)).map_err(|e| e.to_string())?;
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
        Ok(PixelRows {
            name,
            reader: Box::new(reader),
            shape: [dim(0), dim(1), dim(2), dim(3)],
            expected: None,
        })
    }

    fn npz(dir: &Path, split: Split) -> Result<PixelRows, String> {
        let name = npz_images_name(split);
        let path = dir.join(&name);
        let file = File::open(&path).map_err(|e| e.to_string())?;
        let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| e.to_string())?;
        if archive.len() != 1 {
            return Err(format!(
                "{} members, expected only arr_0.npy",
                archive.len()
            ));
        }
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
        let mut file = File::open(&path).map_err(|e| e.to_string())?;
        file.seek(SeekFrom::Start(start))
            .map_err(|e| e.to_string())?;
        let data = BufReader::with_capacity(1 << 20, file).take(compressed);
        let inner: Box<dyn Read> = match method {
            zip::CompressionMethod::Deflated => Box::new(flate2::read::DeflateDecoder::new(data)),
            zip::CompressionMethod::Stored => Box::new(data),
            other => return Err(format!("arr_0.npy compressed with unsupported {other:?}")),
        };
        let mut reader = flate2::CrcReader::new(inner);
        let shape = read_npy_header(&mut reader)?;
        Ok(PixelRows {
            name,
            reader: Box::new(reader),
            shape,
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

/// Parse an npy header from `reader`: uint8, C order, 4 dimensions.
fn read_npy_header(reader: &mut dyn Read) -> Result<[u64; 4], String> {
    let mut magic = [0u8; 10];
    reader
        .read_exact(&mut magic)
        .map_err(|e| format!("arr_0.npy: {e}"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err("arr_0.npy is not an npy array".into());
    }
    let len = match magic[6] {
        1 => u16::from_le_bytes([magic[8], magic[9]]) as usize,
        2 | 3 => {
            let mut more = [0u8; 2];
            reader.read_exact(&mut more).map_err(|e| e.to_string())?;
            u32::from_le_bytes([magic[8], magic[9], more[0], more[1]]) as usize
        }
        v => return Err(format!("npy format version {v} unknown")),
    };
    if len > 1 << 16 {
        return Err("npy header too long".into());
    }
    let mut dict = vec![0u8; len];
    reader.read_exact(&mut dict).map_err(|e| e.to_string())?;
    let dict = String::from_utf8_lossy(&dict);
    if !dict.contains("'descr': '|u1'") && !dict.contains("'descr': '<u1'") {
        return Err(format!("arr_0 is not uint8: {}", dict.trim()));
    }
    if !dict.contains("'fortran_order': False") {
        return Err("arr_0 is not in C order".into());
    }
    let shape = dict
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or("arr_0 has no shape")?;
    let dims: Vec<u64> = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("arr_0 shape '({shape})' unreadable"))?;
    <[u64; 4]>::try_from(dims).map_err(|d| format!("arr_0 has {} dimensions, expected 4", d.len()))
}

fn check_pixels(
    dir: &Path,
    split: Split,
    n: u64,
    (idx, npz): (bool, bool),
    mut parquet: Option<ParquetRows>,
    report: &mut VerifyReport,
) {
    let mut streams: Vec<PixelRows> = Vec::new();
    for (present, open, name) in [
        (
            npz,
            PixelRows::npz as fn(&Path, Split) -> Result<PixelRows, String>,
            npz_images_name(split),
        ),
        (idx, PixelRows::idx, idx_images_name(split)),
    ] {
        if !present {
            continue;
        }
        match open(dir, split) {
            Ok(s) => streams.push(s),
            Err(e) => report.problem(&name, None, e),
        }
    }
    let size = streams
        .first()
        .map(|s| s.shape[1])
        .or_else(|| parquet.as_ref().and_then(|p| p.size).map(u64::from));
    let Some(size) = size else {
        if parquet.is_some() {
            report.problem(
                &parquet_name(split),
                None,
                "no 'size' in the kaokore metadata",
            );
        }
        return;
    };
    for s in &streams {
        if s.shape != [n, size, size, 3] {
            report.problem(
                &s.name,
                None,
                format!("shape {:?}, expected [{n}, {size}, {size}, 3]", s.shape),
            );
            return;
        }
    }
    let row_len = (size * size * 3) as usize;
    let mut rows: Vec<Vec<u8>> = streams.iter().map(|_| vec![0u8; row_len]).collect();
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
                        Some(bytes) => match normalize::normalize(bytes, size as u32) {
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
