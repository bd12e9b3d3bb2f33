//! What the formats' readers share, for `kaokore verify`: where a split's files are and
//! what the build's record promises of them ([`SplitAt`]), the problems found
//! ([`Problems`]), streamed pixel rows ([`PixelSource`]), and the checks every reader makes
//! before it allocates (a stated shape against the record and the file's size). Opening
//! goes through [`crate::fs`]: no symlink is followed and no special file opened.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;

use crate::metadata::{
    CLASS_NAMES_EN_FILE, ClassNames, LABELS_FILE, MAX_METADATA_BYTES, MetadataError, Split,
    parse_labels_csv,
};

/// Stop listing row problems of one file after this many: the rest is noise.
pub const MAX_ROW_PROBLEMS_PER_FILE: usize = 20;
/// Deflate cannot expand data more than about 1032 times: a compressed file of N bytes
/// that claims more than this many times N of content is lying.
pub const MAX_DEFLATE_RATIO: u64 = 1032;
/// Slack for headers (gzip, npy, zip) in the size checks above.
pub const HEADER_SLACK: u64 = 1 << 16;
/// One disagreement, with the file (relative to the directory) and row it concerns; an
/// empty `file` concerns the directory as a whole.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
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
/// The problems found, in the order found: each reported once (a set remembers them), and
/// at most [`MAX_PROBLEMS_PER_FILE`] per file, so a hostile file cannot make the list, or
/// the work of keeping it, grow without bound.
#[derive(Debug, Clone, Default)]
pub struct Problems {
    list: Vec<Problem>,
    seen: HashSet<Problem>,
    per_file: HashMap<String, usize>,
}

/// Problems listed per file; one more line says that there were more.
pub const MAX_PROBLEMS_PER_FILE: usize = 100;

impl Problems {
    /// Record a problem; the same problem found twice (say, a missing file that two
    /// checks wanted to open) is reported once.
    pub fn problem(&mut self, file: &str, row: Option<u64>, message: impl Into<String>) {
        let count = self.per_file.entry(file.to_string()).or_default();
        if *count > MAX_PROBLEMS_PER_FILE {
            return;
        }
        let problem = if *count == MAX_PROBLEMS_PER_FILE {
            Problem {
                file: file.to_string(),
                row: None,
                message: "more problems in this file are not listed".into(),
            }
        } else {
            Problem {
                file: file.to_string(),
                row,
                message: message.into(),
            }
        };
        if self.seen.insert(problem.clone()) {
            *count += 1;
            self.list.push(problem);
        }
    }

    /// Take every problem of `other`, as found there.
    pub fn extend(&mut self, other: Problems) {
        for p in other.list {
            self.problem(&p.file, p.row, p.message);
        }
    }
}

impl std::ops::Deref for Problems {
    type Target = [Problem];

    fn deref(&self) -> &[Problem] {
        &self.list
    }
}

impl<'a> IntoIterator for &'a Problems {
    type Item = &'a Problem;
    type IntoIter = std::slice::Iter<'a, Problem>;

    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

impl serde::Serialize for Problems {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.list.serialize(s)
    }
}

/// Where a format's reader finds one split, and what the build's record says it holds:
/// `rows` rows of `size` x `size` images. Every reader checks what a header states against
/// these (and the file's own size) before it allocates anything.
#[derive(Clone, Copy)]
pub struct SplitAt<'a> {
    pub dir: &'a Path,
    /// Every file the build's record lists: a format whose file names depend on the build
    /// (webdataset's shards) finds its own here.
    pub files: &'a BTreeSet<String>,
    pub split: Split,
    pub rows: u64,
    pub size: u32,
    /// The image id of each row, in row order, when an artifact states them (npz labels,
    /// Parquet, WebDataset) or, failing that, labels.csv's order of the listed files.
    pub ids: Option<&'a [u32]>,
}

/// Where a format's reader finds a whole build, for the checks of files that are not
/// split by split, with what the split checks found.
#[derive(Clone, Copy)]
pub struct BuildAt<'a> {
    pub dir: &'a Path,
    /// Every file the build's record lists.
    pub files: &'a BTreeSet<String>,
    pub size: u32,
    /// Rows per (gender, status) class over every split, as the checked labels state
    /// them; `None` when some split's labels could not be read.
    pub class_rows: Option<&'a BTreeMap<(u8, u8), u64>>,
}

/// What a format's pixel rows hold per pixel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channels {
    Rgb,
    Gray,
}

impl Channels {
    /// Bytes of one row of an S x S image.
    pub fn row_len(self, size: u32) -> usize {
        let pixels = size as usize * size as usize;
        match self {
            Channels::Rgb => 3 * pixels,
            Channels::Gray => pixels,
        }
    }
}

/// The result of reading one pixel row.
pub enum RowRead {
    /// The row's pixels are in the buffer.
    Pixels,
    /// This row is unusable (the message says why); the following rows can still be read.
    Bad(String),
    /// The stream cannot go on (the message says why): no further row is read.
    Broken(String),
}

/// A format's pixel rows of one split, in row order (see
/// [`Format::open_pixels`](crate::pack::format::Format::open_pixels)).
pub trait PixelSource {
    /// The file the rows come from, for problems.
    fn name(&self) -> &str;
    fn channels(&self) -> Channels;
    /// Whether its rows are S x S RGB JPEG files (of any length) rather than pixels: each
    /// must decode to the RGB pixels the other formats agree on (a fetched JPEG stored
    /// unchanged) or be byte for byte the JPEG pack makes of them (a lossy re-encoding has
    /// no pixels to compare).
    fn jpeg_files(&self) -> bool {
        false
    }
    /// Read the next row into `buf`, which holds `channels().row_len(size)` bytes (a
    /// reader may replace it with a buffer of that length, or with the row's JPEG file).
    fn read_row(&mut self, buf: &mut Vec<u8>) -> RowRead;
    /// After the last row: what must hold at the end (nothing follows, checksums match).
    fn check_end(&mut self) -> Result<(), String>;
}
/// The labels of one row, as one artifact states them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowLabels {
    /// `None` where the format carries no ids (idx).
    pub image_id: Option<u32>,
    pub gender: u8,
    pub status: u8,
}
/// Open the artifact `relative` of `dir` for reading, refusing to follow a symlink (in any
/// component) or to open anything but a regular file: a link to /dev/zero or a FIFO would
/// hang a reader, and a link elsewhere would verify a file that is not the build's. The
/// opened file is checked to be the one inspected (a swap in between is refused).
pub fn open_artifact(dir: &Path, relative: &str) -> Result<File, String> {
    crate::fs::open_below(dir, relative).map_err(|e| e.to_string())
}

/// The length of an opened artifact.
pub fn length(file: &File) -> Result<u64, String> {
    file.metadata()
        .map(|m| m.len())
        .map_err(|e| format!("cannot inspect: {e}"))
}

/// Whether `compressed` bytes of deflate (or gzip, or zip) can hold `claimed` bytes.
pub fn can_hold(compressed: u64, claimed: u64) -> bool {
    claimed
        <= compressed
            .saturating_mul(MAX_DEFLATE_RATIO)
            .saturating_add(HEADER_SLACK)
}
/// Nothing may follow the announced data; reading to the end also lets the decoder check
/// its CRC-32.
pub fn at_end(reader: &mut dyn Read) -> Result<(), String> {
    let mut probe = [0u8; 1];
    match reader.read(&mut probe) {
        Ok(0) => Ok(()),
        Ok(_) => Err("data after the rows the header announces".into()),
        Err(e) => Err(format!("cannot read to the end: {e}")),
    }
}

/// A compressed file of `len` bytes must be able to hold the pixels of `shape`.
pub fn check_holds(len: u64, shape: &[u64]) -> Result<(), String> {
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

pub fn shape_mismatch(stated: &[u64], expected: &[u64]) -> String {
    format!("header states shape {stated:?}, the build's record says {expected:?}")
}

/// A stream of pixel rows behind a header (the idx images file, the npz `arr_0` member),
/// checked at its end against the CRC-32 its container records, if any.
pub struct StreamedPixels {
    pub name: String,
    pub channels: Channels,
    pub reader: Box<dyn CrcRead>,
    /// CRC-32 and length the container records for the stream.
    pub expected: Option<(u32, u64)>,
}

/// A reader that keeps the CRC-32 of what it returned.
pub trait CrcRead: Read {
    fn sum(&self) -> (u32, u64);
}

impl<R: Read> CrcRead for flate2::CrcReader<R> {
    fn sum(&self) -> (u32, u64) {
        (self.crc().sum(), u64::from(self.crc().amount()))
    }
}

impl PixelSource for StreamedPixels {
    fn name(&self) -> &str {
        &self.name
    }

    fn channels(&self) -> Channels {
        self.channels
    }

    fn read_row(&mut self, buf: &mut Vec<u8>) -> RowRead {
        match self.reader.read_exact(buf) {
            Ok(()) => RowRead::Pixels,
            Err(e) => RowRead::Broken(format!("cannot read pixels: {e}")),
        }
    }

    fn check_end(&mut self) -> Result<(), String> {
        at_end(&mut self.reader)?;
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

/// labels.csv as copied into the build: the order of its rows, and each row's labels.
/// It is read with the build's own parser ([`parse_labels_csv`], with the class names of
/// the labels.metadata.en.txt copied beside it), so whatever labels.csv the build accepted
/// (columns in any order, more columns, padded fields) reads back the same.
pub struct LabelsOrder {
    /// Image id -> (line, gender, status, split).
    pub rows: HashMap<u32, (u64, u8, u8, Split)>,
}

impl LabelsOrder {
    /// `None` when labels.csv or its class names cannot be read: a missing or unreadable
    /// file is reported with the expected files, one that does not parse here (once,
    /// with its line).
    pub fn read(dir: &Path, report: &mut Problems) -> Option<LabelsOrder> {
        let labels = metadata_text(dir, LABELS_FILE, report)?;
        let names = metadata_text(dir, CLASS_NAMES_EN_FILE, report)?;
        let parsed = ClassNames::parse(&names, CLASS_NAMES_EN_FILE)
            .and_then(|classes| parse_labels_csv(&labels, &classes));
        let rows = match parsed {
            Ok(rows) => rows,
            Err(MetadataError::Invalid {
                file,
                line,
                message,
            }) => {
                report.problem(&file, None, format!("line {line}: {message}"));
                return None;
            }
            Err(e) => {
                report.problem(LABELS_FILE, None, e.to_string());
                return None;
            }
        };
        let rows = rows
            .into_iter()
            .map(|r| {
                let l = r.label;
                (r.id.0, (r.line as u64, l.gender, l.status, l.split))
            })
            .collect();
        Some(LabelsOrder { rows })
    }
}

/// The text of a copied metadata file of the build, at most [`MAX_METADATA_BYTES`] (as
/// the build read it); `None` when it is missing (reported elsewhere) or not text.
fn metadata_text(dir: &Path, name: &str, report: &mut Problems) -> Option<String> {
    let file = open_artifact(dir, name).ok()?;
    let mut text = String::new();
    if length(&file).ok()? > MAX_METADATA_BYTES
        || file
            .take(MAX_METADATA_BYTES)
            .read_to_string(&mut text)
            .is_err()
    {
        report.problem(name, None, "too large or not UTF-8 text");
        return None;
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{DatasetVersion, MetadataFiles};

    /// A build directory holding only `labels` as labels.csv, beside the real class names.
    fn with_labels(labels: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let en = MetadataFiles::embedded(DatasetVersion::V1_3).class_names_en;
        std::fs::write(dir.path().join(CLASS_NAMES_EN_FILE), en).unwrap();
        std::fs::write(dir.path().join(LABELS_FILE), labels).unwrap();
        dir
    }

    #[test]
    fn labels_order_reads_what_the_build_accepts() {
        // Columns reordered, one more column, padded fields, CRLF and a blank line: the
        // build accepts it, so verify reads it the same.
        let dir = with_labels(
            "set , note, status,image ,gender\r\n\
             dev, x , 3 , 00000007.jpg ,1\r\n\
             \r\n\
             train,,0,00000002.jpg,0\r\n",
        );
        let mut problems = Problems::default();
        let order = LabelsOrder::read(dir.path(), &mut problems).unwrap();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(order.rows.len(), 2);
        assert_eq!(order.rows[&7], (2, 1, 3, Split::Dev));
        assert_eq!(order.rows[&2], (4, 0, 0, Split::Train));
    }

    #[test]
    fn labels_order_reports_the_first_bad_line_once() {
        let dir = with_labels(
            "image,gender,status,set\n00000001.jpg,0,1,train\n00000002.jpg,0,9,dev\nbad\n",
        );
        let mut problems = Problems::default();
        assert!(LabelsOrder::read(dir.path(), &mut problems).is_none());
        let shown: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        assert_eq!(shown, ["labels.csv: line 3: status 9 out of range (0..3)"]);
        // Its class names are the build's too.
        std::fs::write(dir.path().join(CLASS_NAMES_EN_FILE), "gender\n").unwrap();
        let mut problems = Problems::default();
        assert!(LabelsOrder::read(dir.path(), &mut problems).is_none());
        assert_eq!(
            problems[0].to_string(),
            "labels.metadata.en.txt: line 2: missing the line of class counts"
        );
    }
}
