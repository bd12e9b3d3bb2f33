//! Output formats as plug-ins. A format is one file implementing [`Format`] (its name, the
//! payload it needs per row, its writer, its rows in the dataset card, its entries in
//! croissant.json and its reader for `verify`) and one line in [`REGISTRY`].
//!
//! Everything that depends on the set of formats asks the registry: `--formats` parsing and
//! help, the work done per image on the pool, the build record's expected files, the card's
//! file table, croissant.json, report.json's per-format timings and verify's row-by-row
//! cross-check.
//!
//! Writers create their files through a `FileSink`, by name relative to the build: a
//! pack gives them its staging directory, a unit test an in-memory sink, so each format's
//! bytes can be checked without a disk.

use std::collections::BTreeSet;
use std::fmt;
use std::fs::File;
use std::io::{Seek, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::PackError;
use super::PackOptions;
use super::read::{BuildAt, LabelsOrder, PixelSource, Problems, RowLabels, SplitAt};
use crate::encode::DeflateSegment;
use crate::metadata::{Dataset, Split};
use crate::metadata::{ImageRecord, Label};
use crate::out::Artifact;
use crate::out::BuildRecord;
use crate::out::Staging;

/// Every format kaokore can write, in canonical order (the order of `--formats` help, the
/// build record, report.json and verify's comparisons). Adding a format: its file, and
/// one line here.
pub(crate) const REGISTRY: &[&dyn Format] = &[
    &super::idx::Idx,
    &super::npz::Npz,
    &super::parquet::Parquet,
    &super::images::Images,
    &super::webdataset::WebDataset,
    &super::mnist::Mnist,
    &super::tfds::Tfds,
    &super::preview::Preview,
];

/// An option a format declares: its command-line flag, help and default, and how its value
/// is read. The command line offers every option of the registry (one flag however many
/// formats share it); the value reaches the format through [`PackOptions::option`].
#[derive(Debug)]
pub struct FormatOption {
    /// The long flag without dashes (`shard-size`), also the option's key.
    pub flag: &'static str,
    pub value_name: &'static str,
    pub help: &'static str,
    pub default: &'static str,
    pub parse: fn(&str) -> Result<u64, String>,
}

impl FormatOption {
    /// The default value, parsed.
    pub fn default_value(&self) -> u64 {
        (self.parse)(self.default).expect("a format option's default parses")
    }
}

/// `--shard-size`: shared by the formats that split a split into shards.
pub const SHARD_SIZE: FormatOption = FormatOption {
    flag: "shard-size",
    value_name: "SIZE",
    help: "Largest shard: bytes, or a number with KB, MB or GB (powers of 1000). A split's \
           next shard starts before the sample that would pass it",
    default: "1GB",
    parse: parse_byte_size,
};

/// Every option the registered formats declare, each once, in registry order.
pub fn options() -> Vec<&'static FormatOption> {
    let mut all: Vec<&'static FormatOption> = Vec::new();
    for f in REGISTRY {
        for &o in f.options() {
            if !all.iter().any(|a| a.flag == o.flag) {
                all.push(o);
            }
        }
    }
    all
}

/// An option's help, with the formats that read it (from the registry).
pub fn option_help(option: &FormatOption) -> String {
    let users: Vec<&str> = REGISTRY
        .iter()
        .filter(|f| f.options().iter().any(|o| o.flag == option.flag))
        .map(|f| f.name())
        .collect();
    format!("{} [read by: {}]", option.help, users.join(", "))
}

/// Parse a size in bytes: a number, or a number with `KB`, `MB` or `GB` (powers of 1000;
/// `K`, `M`, `G` alike). At least 1.
pub fn parse_byte_size(text: &str) -> Result<u64, String> {
    let t = text.trim().to_ascii_uppercase();
    let t = t.strip_suffix('B').unwrap_or(&t);
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let factor: u64 = match unit {
        "" => 1,
        "K" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        _ => {
            return Err(format!(
                "expected bytes or a number with KB, MB or GB, got '{text}'"
            ));
        }
    };
    digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(factor))
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("expected a size of at least 1 byte, got '{text}'"))
}

/// Parse a count of at least 1.
pub fn parse_count(text: &str) -> Result<u64, String> {
    text.trim()
        .parse::<u64>()
        .ok()
        .filter(|&n| n >= 1)
        .ok_or_else(|| format!("expected a whole number of at least 1, got '{text}'"))
}

/// What the dataset card tells of a format beyond its file table rows.
pub(crate) struct CardContext<'a> {
    pub dataset: &'a Dataset,
    pub opts: &'a PackOptions,
    pub summary: &'a super::PackSummary,
}

/// A format's part of the card's "Changes made to the images" section.
pub(crate) enum CardChange {
    /// One more item of the list of changes.
    Item(String),
    /// A paragraph after the list.
    Note(String),
}

/// A format's loading example in the card. Snippets of one `group` share one code block,
/// opened by the group's `preamble` (the import they all need).
pub(crate) struct Snippet {
    /// Where it goes among the card's examples (lower first).
    pub rank: u8,
    /// Its code block's title (`NumPy`), or empty for text with code blocks of its own.
    pub group: &'static str,
    pub preamble: &'static str,
    pub code: String,
}

/// The formats a build writes when `--formats` is not given.
const DEFAULT: &[&str] = &["idx", "npz", "parquet"];

/// What the CPU pool makes of each image for the formats that need it. Each is made once
/// per image, whatever number of formats needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Payload {
    /// The normalized S x S RGB pixels, deflated as one independent segment.
    RgbPixels,
    /// The same pixels as 8-bit gray (Pillow's `convert("L")`), deflated likewise.
    GrayPixels,
    /// The image as a lossless file: the fetched JPEG unchanged when it already is S x S
    /// RGB, else a PNG of the normalized pixels.
    LosslessFile,
    /// The image as a JPEG file: the fetched JPEG unchanged when it already is S x S RGB,
    /// else a JPEG of the normalized pixels.
    JpegFile,
    /// The normalized S x S RGB pixels as they are, for a format that samples a few rows
    /// of each class: made only for the rows still in [`Demand`].
    Pixels,
}

impl Payload {
    /// Whether the pool makes it only for the rows still in [`Demand`].
    pub fn sampled(self) -> bool {
        matches!(self, Payload::Pixels)
    }
}

/// Which rows, by class (gender x status) and split, a format that samples rows still
/// wants the sampled payloads of ([`Payload::sampled`]). Its writer marks a class and
/// split satisfied once it holds all it will keep of them, and the pool stops making
/// those payloads for the rows of it that follow: a few rows of each class are kept, not
/// every row's pixels. Output never depends on when the pool sees the mark: a row made
/// before it is ignored, and no row after it is one the writer would keep.
pub(crate) struct Demand {
    /// Per class and split (`class * 3 + split`), how many writers still want its rows.
    wanting: Vec<AtomicUsize>,
    statuses: usize,
}

impl Demand {
    /// Every row wanted by each of the `writers` formats that need a sampled payload,
    /// for classes of `dataset`'s class names.
    pub fn new(dataset: &Dataset, writers: usize) -> Demand {
        let names = &dataset.class_names;
        let cells = names.gender.len() * names.status.len() * Split::ALL.len();
        Demand {
            wanting: (0..cells).map(|_| AtomicUsize::new(writers)).collect(),
            statuses: names.status.len(),
        }
    }

    fn cell(&self, label: Label) -> Option<&AtomicUsize> {
        let class = usize::from(label.gender) * self.statuses + usize::from(label.status);
        self.wanting
            .get(class * Split::ALL.len() + label.split.index())
    }

    /// Whether some writer still wants the sampled payloads of a row labelled `label`.
    pub fn wants(&self, label: Label) -> bool {
        self.cell(label)
            .is_none_or(|c| c.load(Ordering::Relaxed) > 0)
    }

    /// One writer wants no more rows of `label`'s class and split; a writer says so once
    /// per class and split.
    pub fn satisfied(&self, label: Label) {
        if let Some(c) = self.cell(label) {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        }
    }
}

/// The payloads of one image (those the chosen formats need).
#[derive(Default)]
pub(crate) struct Payloads {
    pub rgb: Option<DeflateSegment>,
    pub gray: Option<DeflateSegment>,
    pub lossless: Option<StoredImage>,
    pub jpeg: Option<Vec<u8>>,
    pub pixels: Option<Vec<u8>>,
}

impl Payloads {
    pub fn rgb(&self) -> Result<&DeflateSegment, PackError> {
        self.rgb.as_ref().ok_or(missing(Payload::RgbPixels))
    }

    pub fn gray(&self) -> Result<&DeflateSegment, PackError> {
        self.gray.as_ref().ok_or(missing(Payload::GrayPixels))
    }

    pub fn lossless(&self) -> Result<&StoredImage, PackError> {
        self.lossless.as_ref().ok_or(missing(Payload::LosslessFile))
    }

    pub fn jpeg(&self) -> Result<&[u8], PackError> {
        self.jpeg.as_deref().ok_or(missing(Payload::JpegFile))
    }

    pub fn pixels(&self) -> Result<&[u8], PackError> {
        self.pixels.as_deref().ok_or(missing(Payload::Pixels))
    }
}

fn missing(payload: Payload) -> PackError {
    PackError::Internal(match payload {
        Payload::RgbPixels => "a row without its RGB pixels",
        Payload::GrayPixels => "a row without its gray pixels",
        Payload::LosslessFile => "a row without its lossless image file",
        Payload::JpegFile => "a row without its JPEG file",
        Payload::Pixels => "a sampled row without its pixels",
    })
}

/// A file a writer writes: any seekable byte sink (a staged file, a buffer in tests).
pub(crate) trait WriteSeek: Write + Seek + Send {}

impl<T: Write + Seek + Send> WriteSeek for T {}

/// Where format writers and the card create their files, named relative to the build
/// directory (`idx/kaokore-train-images-idx4-ubyte.gz`). Writers never see a filesystem
/// path, so a writer is the same code over the staging directory and over memory.
pub(crate) trait FileSink {
    /// A new, empty file `relative`, replacing any file of that name; its directories are
    /// made as needed. Unbuffered: a writer buffers as its writes need.
    fn create(&self, relative: &str) -> Result<Box<dyn WriteSeek>, PackError>;
    /// Rename a file created earlier, for a name known only once its file is written
    /// (a shard named with the number of shards).
    fn rename(&self, from: &str, to: &str) -> Result<(), PackError>;
}

/// A pack writes into its staging directory: each file is created under the staging
/// root, renamed into place at commit.
impl FileSink for Staging {
    fn create(&self, relative: &str) -> Result<Box<dyn WriteSeek>, PackError> {
        let path = self.path(relative)?;
        let file = File::create(&path).map_err(PackError::io(&path))?;
        Ok(Box::new(file))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), PackError> {
        let (from, to) = (self.path(from)?, self.path(to)?);
        std::fs::rename(&from, &to).map_err(PackError::io(&from))
    }
}

/// What a format's writer is created with.
pub(crate) struct WriterContext<'a> {
    /// Where its files go; a writer that creates files as rows arrive keeps it.
    pub sink: &'a dyn FileSink,
    pub dataset: &'a Dataset,
    pub opts: &'a PackOptions,
    /// Rows per split if every packable image packs; headers written up front are
    /// corrected when fewer arrive.
    pub expected: [u64; 3],
    /// Which rows the writers of this build still want sampled payloads of.
    pub demand: Arc<Demand>,
}

/// One row of the dataset card's file table.
pub(crate) struct CardRow {
    /// The split the file belongs to (`None`: the format's files of every split).
    pub split: Option<Split>,
    pub file: String,
    pub content: String,
}

/// A format's entries in croissant.json besides the FileObject (path, size, SHA-256) that
/// every artifact gets.
#[derive(Default)]
pub(crate) struct CroissantEntries {
    /// FileSets over its files (a record set reads them through one source).
    pub file_sets: Vec<serde_json::Value>,
    /// Record sets read from its files.
    pub record_sets: Vec<serde_json::Value>,
}

/// Image bytes as stored in Parquet (or as an image file): the fetched JPEG unchanged, or
/// the normalized pixels re-encoded.
#[derive(Debug, Clone)]
pub(crate) struct StoredImage {
    pub bytes: Vec<u8>,
    /// `jpg` or `png`.
    pub extension: &'static str,
}

/// One packed row, handed to every format writer in labels.csv order.
pub(crate) struct PackedRow<'a> {
    pub split: Split,
    pub record: &'a ImageRecord,
    pub label: Label,
    /// What the pool made of the image: the payloads the chosen formats need.
    pub payloads: Payloads,
}

/// Everything the format writers get at the end of a pack.
pub(crate) struct FinishContext<'a> {
    /// Where files written at the end go (the label files of idx and npz).
    pub sink: &'a dyn FileSink,
    /// Artifacts hashed while they were written (the rest is hashed at commit).
    pub hashed: &'a mut Vec<Artifact>,
}

/// The writer of one output format (see [`Format::create`]): rows in, files out.
pub(crate) trait FormatWriter {
    /// Add one row; rows arrive in labels.csv order.
    fn write_row(&mut self, row: &PackedRow<'_>) -> Result<(), PackError>;
    /// Complete its files in the sink; returns their relative paths.
    fn finish(self: Box<Self>, ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError>;
}

/// One output format.
pub(crate) trait Format: Sync {
    /// Its name in `--formats`, the build record and report.json's timings.
    fn name(&self) -> &'static str;
    /// For a format every build makes without `--formats` naming it: the flag that
    /// leaves it out (`no-preview`, without dashes).
    fn opt_out(&self) -> Option<&'static str> {
        None
    }
    /// Whether every build makes it (see [`Format::opt_out`]).
    fn in_every_build(&self) -> bool {
        self.opt_out().is_some()
    }
    /// What it writes, in a few words, for `--formats` help.
    fn about(&self) -> &'static str;
    /// What the pool must make of each image for it (labels and metadata come with
    /// every row).
    fn needs(&self) -> &'static [Payload];
    /// The files it writes in every build of edge `size` (relative to `--out`).
    fn files(&self, size: u32) -> Vec<String>;
    /// The directories of `--out` it writes into; by default those of [`Format::files`].
    fn dirs(&self, size: u32) -> Vec<String> {
        let mut dirs: Vec<String> = self
            .files(size)
            .iter()
            .filter_map(|f| Some(f.rsplit_once('/')?.0.to_string()))
            .collect();
        dirs.dedup();
        dirs
    }
    /// Of the files a build record lists, those this format wrote that [`Format::files`]
    /// cannot name (they depend on what was fetched); an error names a listed file inside
    /// its directories that it never writes.
    fn listed_files(&self, _size: u32, _listed: &[String]) -> Result<Vec<String>, String> {
        Ok(Vec::new())
    }
    /// Its rows in the dataset card's file table.
    fn card_rows(&self, size: u32) -> Vec<CardRow>;
    /// Its entries in croissant.json beyond a FileObject per file: by default none.
    fn croissant(&self, _size: u32) -> CroissantEntries {
        CroissantEntries::default()
    }
    /// Whether croissant.json gives each of its files a FileObject; `false` for a file per
    /// image, which one of its FileSets stands for (SHA256SUMS still lists each).
    fn file_objects(&self) -> bool {
        true
    }
    /// The options it reads (see [`FormatOption`]); shared ones are declared once, above.
    fn options(&self) -> &'static [&'static FormatOption] {
        &[]
    }
    /// The MIME type of its file `path` in croissant.json.
    fn encoding_format(&self, _path: &str) -> &'static str {
        "application/octet-stream"
    }
    /// What it shows at the top of the card, under the title and the request not to
    /// redistribute.
    fn card_head(&self, _ctx: &CardContext<'_>) -> Option<String> {
        None
    }
    /// Its part of the card's list of changes made to the images.
    fn card_changes(&self, _ctx: &CardContext<'_>) -> Vec<CardChange> {
        Vec::new()
    }
    /// How to load it, for the card's "Loading" section.
    fn card_snippet(&self, _ctx: &CardContext<'_>) -> Option<Snippet> {
        None
    }
    /// The Hub YAML it adds to the card's front matter (`configs` and `dataset_info`), so
    /// that `datasets.load_dataset(OUT)` loads it.
    fn hub_yaml(&self, _ctx: &CardContext<'_>) -> Option<String> {
        None
    }
    /// For `verify`, when no other format states the split's image ids: its row ids in
    /// row order, from the files the record lists and labels.csv's order.
    fn listed_ids(&self, _at: &SplitAt<'_>, _order: &LabelsOrder) -> Option<Vec<u32>> {
        None
    }
    /// For `verify`, after every split was checked: its files that are not split by split,
    /// against the build's checked rows.
    fn check_build(&self, _at: &BuildAt<'_>, _report: &mut Problems) {}
    /// Open its files in the context's sink for rows in labels.csv order. The writer may
    /// keep the sink, to create files as rows arrive.
    fn create<'a>(&self, ctx: &WriterContext<'a>) -> Result<Box<dyn FormatWriter + 'a>, PackError>;
    /// For `verify`: the labels of a split's rows as this format states them, and the
    /// file that states them; problems go to `report`. `None` when it holds no labels
    /// (or they could not be read).
    fn read_labels(
        &self,
        _at: &SplitAt<'_>,
        _report: &mut Problems,
    ) -> Option<(String, Vec<RowLabels>)> {
        None
    }
    /// For `verify`: the split's pixel rows, streamed. `None` when it holds no pixels
    /// verify can compare (or they could not be opened: the problem is in `report`).
    fn open_pixels(
        &self,
        _at: &SplitAt<'_>,
        _report: &mut Problems,
    ) -> Option<Box<dyn PixelSource>> {
        None
    }
}

/// The registered format called `name`.
pub(crate) fn by_name(name: &str) -> Option<&'static dyn Format> {
    REGISTRY.iter().copied().find(|f| f.name() == name)
}

/// The `--formats` help: every format it can name with what it writes.
pub fn help() -> String {
    let mut s = String::from("Artifacts to write, comma-separated, any of:");
    let listed: Vec<&dyn Format> = REGISTRY
        .iter()
        .copied()
        .filter(|f| !f.in_every_build())
        .collect();
    // Names in one column, as wide as the longest.
    let width = listed.iter().map(|f| f.name().len()).max().unwrap_or(0);
    for f in listed {
        s.push_str(&format!("\n  {:<width$} {}", f.name(), f.about()));
    }
    s
}

/// The formats every build makes unless left out ([`Format::opt_out`]): each one's flag
/// and its help.
pub fn opt_outs() -> Vec<(&'static str, String)> {
    REGISTRY
        .iter()
        .filter_map(|f| Some((f.opt_out()?, format!("Leave out {}", f.about()))))
        .collect()
}

/// The formats a build writes: registered formats, in registry order.
#[derive(Clone, PartialEq, Eq)]
pub struct Formats {
    /// Indices into [`REGISTRY`], ascending.
    chosen: Vec<usize>,
}

impl Formats {
    /// Their `--formats` names, in canonical order.
    pub fn names(&self) -> Vec<&'static str> {
        self.iter().map(|f| f.name()).collect()
    }

    /// Whether the format `name` is chosen.
    pub fn contains(&self, name: &str) -> bool {
        self.iter().any(|f| f.name() == name)
    }

    pub fn is_empty(&self) -> bool {
        self.chosen.is_empty()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &'static dyn Format> + '_ {
        self.chosen.iter().map(|&i| REGISTRY[i])
    }

    /// Whether any chosen format needs `payload`.
    pub(crate) fn need(&self, payload: Payload) -> bool {
        self.iter().any(|f| f.needs().contains(&payload))
    }

    /// Leave out the format every build makes that `flag` opts out of (see
    /// [`opt_outs`]); `false` when no such format is chosen.
    pub fn leave_out(&mut self, flag: &str) -> bool {
        let before = self.chosen.len();
        self.chosen.retain(|&i| REGISTRY[i].opt_out() != Some(flag));
        self.chosen.len() < before
    }
}

impl Default for Formats {
    fn default() -> Self {
        DEFAULT
            .join(",")
            .parse()
            .expect("the default formats are registered")
    }
}

/// As `--formats` lists them: without the formats every build makes.
impl fmt::Display for Formats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let listed: Vec<&str> = self
            .iter()
            .filter(|f| !f.in_every_build())
            .map(|f| f.name())
            .collect();
        f.write_str(&listed.join(","))
    }
}

impl fmt::Debug for Formats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl std::str::FromStr for Formats {
    type Err = String;

    /// A `--formats` list; the formats every build makes come with it.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chosen = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(i) = REGISTRY
                .iter()
                .position(|f| f.name() == name && !f.in_every_build())
            else {
                let known: Vec<&str> = REGISTRY
                    .iter()
                    .filter(|f| !f.in_every_build())
                    .map(|f| f.name())
                    .collect();
                return Err(format!(
                    "unknown format '{name}' (expected {})",
                    known.join(", ")
                ));
            };
            chosen.push(i);
        }
        if chosen.is_empty() {
            return Err("no format given".into());
        }
        chosen.extend((0..REGISTRY.len()).filter(|&i| REGISTRY[i].in_every_build()));
        chosen.sort_unstable();
        chosen.dedup();
        Ok(Formats { chosen })
    }
}

/// The files a build of `record`'s formats and size holds: the fixed names each
/// format writes for every split, the card, croissant.json, the provider list, the copied metadata,
/// SHA256SUMS, and for `images` the image files the record lists (which depend on what
/// was fetched) and for `webdataset` the shards it lists (which depend on the shard
/// size). Not report.json (a log) nor the record itrecord. An error says why the
/// record cannot describe a build (unknown format or split, size out of range, an
/// image file that is not `images_S/NNNNNNNN.jpg`).
pub fn expected_files(record: &BuildRecord) -> Result<BTreeSet<String>, String> {
    use crate::layout::{CARD, CONTENT_PROVIDERS, CROISSANT, SHA256SUMS};
    use crate::metadata::Split;
    if record.size == 0 || record.size > crate::normalize::MAX_IMAGE_EDGE {
        return Err(format!(
            "size {} is not between 1 and {}",
            record.size,
            crate::normalize::MAX_IMAGE_EDGE
        ));
    }
    let splits: Vec<&str> = Split::ALL.iter().map(|s| s.name()).collect();
    if let Some(other) = record.rows.keys().find(|k| !splits.contains(&k.as_str())) {
        return Err(format!("unknown split '{other}' in rows"));
    }
    if let Some(missing) = splits.iter().find(|s| !record.rows.contains_key(**s)) {
        return Err(format!("no row count for split '{missing}'"));
    }
    // As pack's card writes them (the copied metadata keeps its upstream names).
    let mut files: BTreeSet<String> = [
        SHA256SUMS,
        CROISSANT,
        CARD,
        CONTENT_PROVIDERS,
        crate::metadata::LABELS_FILE,
        crate::metadata::TAGS_FILE,
        crate::metadata::CLASS_NAMES_EN_FILE,
        crate::metadata::CLASS_NAMES_JA_FILE,
    ]
    .into_iter()
    .map(String::from)
    .collect();
    if record.formats.is_empty() {
        return Err("no formats".into());
    }
    for name in &record.formats {
        let format = by_name(name).ok_or_else(|| format!("unknown format '{name}'"))?;
        files.extend(format.files(record.size));
        files.extend(format.listed_files(record.size, &record.files)?);
    }
    Ok(files)
}

#[cfg(test)]
pub(crate) mod testing;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::out::record::tests::record;

    #[test]
    fn names_parse_in_registry_order() {
        let f: Formats = "mnist, npz,images,npz".parse().unwrap();
        assert_eq!(f.names(), ["npz", "images", "mnist", "preview"]);
        assert_eq!(f.to_string(), "npz,images,mnist");
        assert!(f.contains("images") && !f.contains("idx"));
        assert!(f.need(Payload::GrayPixels) && f.need(Payload::RgbPixels));
        assert!(!f.need(Payload::LosslessFile));
        // The images files and the WebDataset image members are one payload.
        let f: Formats = "webdataset,images".parse().unwrap();
        assert_eq!(f.to_string(), "images,webdataset");
        assert!(f.need(Payload::JpegFile) && !f.need(Payload::RgbPixels));
        let known: Vec<&str> = REGISTRY
            .iter()
            .filter(|f| !f.in_every_build())
            .map(|f| f.name())
            .collect();
        assert_eq!(
            &known[..6],
            ["idx", "npz", "parquet", "images", "webdataset", "mnist"]
        );
        assert_eq!(
            "npz,tiff".parse::<Formats>().unwrap_err(),
            format!("unknown format 'tiff' (expected {})", known.join(", "))
        );
        // A shared option's help names the formats that read it.
        let help = option_help(&SHARD_SIZE);
        assert!(
            help.starts_with(SHARD_SIZE.help) && help.contains("webdataset"),
            "{help}"
        );
        assert!(!option_help(&crate::pack::parquet::ROW_GROUP_ROWS).contains("webdataset"));
        assert!("".parse::<Formats>().is_err());
        assert_eq!(Formats::default().to_string(), "idx,npz,parquet");
    }

    #[test]
    fn every_format_is_registered_once_with_files_and_help() {
        for (i, f) in REGISTRY.iter().enumerate() {
            assert_eq!(by_name(f.name()).map(|g| g.name()), Some(f.name()));
            assert!(REGISTRY[..i].iter().all(|g| g.name() != f.name()));
            assert!(!f.needs().is_empty(), "{}", f.name());
            // Files of fixed names, or directories of its own (files that depend on the build).
            assert!(
                !f.files(64).is_empty() || !f.dirs(64).is_empty(),
                "{}",
                f.name()
            );
            // `--formats` names a format, or its own flag leaves it out of every build.
            let named = help().contains(&format!("\n  {} ", f.name()));
            let flag = opt_outs()
                .iter()
                .any(|(flag, _)| Some(*flag) == f.opt_out());
            assert!(named != flag, "{}", f.name());
        }
    }

    #[test]
    fn a_format_of_every_build_comes_with_any_list_until_left_out() {
        let mut f: Formats = "npz".parse().unwrap();
        assert_eq!(f.names(), ["npz", "preview"]);
        assert_eq!(f.to_string(), "npz", "as --formats lists them");
        assert!(f.need(Payload::Pixels) && Payload::Pixels.sampled());
        assert!(!f.leave_out("no-npz") && !f.leave_out("preview"));
        assert!(f.leave_out("no-preview"));
        assert_eq!(f.names(), ["npz"]);
        assert!(!f.need(Payload::Pixels));
        assert!(!f.leave_out("no-preview"));
        assert_eq!(
            Formats::default().names(),
            ["idx", "npz", "parquet", "preview"]
        );
        // `--formats` does not name it.
        assert!(
            "npz,preview"
                .parse::<Formats>()
                .unwrap_err()
                .starts_with("unknown format 'preview'")
        );
        assert_eq!(
            opt_outs().iter().map(|(flag, _)| *flag).collect::<Vec<_>>(),
            ["no-preview"]
        );
    }

    #[test]
    fn demand_is_withdrawn_per_class_and_split_once_every_writer_is_satisfied() {
        let dataset = testing::dataset();
        let label = |gender, status, split| Label {
            gender,
            status,
            split,
        };
        let demand = Demand::new(&dataset, 2);
        let train = label(1, 3, Split::Train);
        assert!(demand.wants(train));
        demand.satisfied(train);
        assert!(demand.wants(train), "one writer still wants it");
        demand.satisfied(train);
        assert!(!demand.wants(train));
        // Other splits and classes are still wanted; a third mark changes nothing.
        assert!(demand.wants(label(1, 3, Split::Dev)) && demand.wants(label(1, 2, Split::Train)));
        demand.satisfied(train);
        assert!(!demand.wants(train));
        // A class the names do not have is wanted (the writer decides).
        assert!(demand.wants(label(9, 9, Split::Test)));
        // No writer that samples: nothing is wanted.
        assert!(!Demand::new(&dataset, 0).wants(train));
    }

    #[test]
    fn expected_files_follow_formats_and_splits() {
        let mut r = record();
        let files = expected_files(&r).unwrap();
        assert!(files.contains("idx/kaokore-dev-images-idx4-ubyte.gz"));
        assert!(files.contains("npz/kaokore-test-labels.npz"));
        assert!(files.contains("labels.csv") && files.contains("SHA256SUMS"));
        assert!(!files.iter().any(|f| f.starts_with("parquet/")));
        // card, providers, SHA256SUMS, croissant.json + 4 metadata + 3 x (3 idx + 2 npz)
        assert!(files.contains("croissant.json"));
        assert_eq!(files.len(), 8 + 15);

        r.formats.push("images".into());
        r.files.push("images_256/00000042.jpg".into());
        assert!(
            expected_files(&r)
                .unwrap()
                .contains("images_256/00000042.jpg")
        );
        r.files.push("images_256/notes.txt".into());
        assert!(expected_files(&r).unwrap_err().contains("notes.txt"));

        let mut r = record();
        r.formats.push("tiff".into());
        assert_eq!(expected_files(&r).unwrap_err(), "unknown format 'tiff'");
        let mut r = record();
        r.rows.remove("dev");
        assert_eq!(
            expected_files(&r).unwrap_err(),
            "no row count for split 'dev'"
        );
        let mut r = record();
        r.size = 0;
        assert!(expected_files(&r).unwrap_err().starts_with("size 0"));
    }

    /// Write `text` to a new file `name` of `sink`, in two pieces with a seek back between.
    fn put(sink: &dyn FileSink, name: &str, text: &str) {
        let (head, tail) = text.as_bytes().split_at(2);
        let mut file = sink.create(name).unwrap();
        file.write_all(b"??").unwrap();
        file.write_all(tail).unwrap();
        file.seek(std::io::SeekFrom::Start(0)).unwrap();
        file.write_all(head).unwrap();
        file.flush().unwrap();
    }

    #[test]
    fn the_staging_sink_creates_files_and_their_directories_under_its_root() {
        let out = tempfile::tempdir().unwrap();
        let staging = Staging::create(out.path()).unwrap();
        put(&staging, "a/b/c.txt", "hello");
        let path = staging.path("a/b/c.txt").unwrap();
        assert!(path.starts_with(out.path()) && path.parent().unwrap() != out.path());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "hello");
        // Created again: replaced, not appended to.
        put(&staging, "a/b/c.txt", "bye");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "bye");
        staging.rename("a/b/c.txt", "d/e.txt").unwrap();
        assert!(!path.exists());
        let moved = staging.path("d/e.txt").unwrap();
        assert_eq!(std::fs::read_to_string(moved).unwrap(), "bye");
        assert!(matches!(
            staging.rename("a/b/c.txt", "f.txt"),
            Err(PackError::Io { .. })
        ));
    }

    #[test]
    fn the_memory_sink_holds_what_was_written() {
        let sink = testing::MemorySink::default();
        put(&sink, "a/b.txt", "hello");
        put(&sink, "c.txt", "world");
        assert_eq!(sink.bytes("a/b.txt"), b"hello");
        put(&sink, "a/b.txt", "bye");
        assert_eq!(sink.bytes("a/b.txt"), b"bye");
        sink.rename("a/b.txt", "d.txt").unwrap();
        assert_eq!(sink.names(), ["c.txt", "d.txt"]);
        assert_eq!(sink.bytes("d.txt"), b"bye");
        assert!(sink.rename("a/b.txt", "e.txt").is_err());
    }

    #[test]
    fn byte_sizes_parse() {
        assert_eq!(parse_byte_size("1GB"), Ok(1_000_000_000));
        assert_eq!(parse_byte_size("500mb"), Ok(500_000_000));
        assert_eq!(parse_byte_size("64K"), Ok(64_000));
        assert_eq!(parse_byte_size("1"), Ok(1));
        assert!(parse_byte_size("0").is_err());
        assert!(parse_byte_size("1TB").is_err());
        assert!(parse_byte_size("MB").is_err());
        assert!(parse_byte_size("-1").is_err());
    }
}
