//! Output formats as plug-ins. A format is one file implementing [`Format`] (its name, the
//! payload it needs per row, its writer, its rows in the dataset card, its entries in
//! croissant.json and its reader for `verify`) and one line in [`REGISTRY`].
//!
//! Everything that depends on the set of formats asks the registry: `--formats` parsing and
//! help, the work done per image on the pool, the build record's expected files, the card's
//! file table, croissant.json, report.json's per-format timings and verify's row-by-row
//! cross-check.

use std::fmt;

use super::staging::Staging;
use super::{FormatWriter, PackError, StoredImage};
use crate::config::PackOptions;
use crate::encode::DeflateSegment;
use crate::metadata::{Dataset, Split};
use crate::verify::{PixelSource, RowLabels, SplitAt, VerifyReport};

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
];

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
}

/// The payloads of one image (those the chosen formats need).
#[derive(Default)]
pub(crate) struct Payloads {
    pub rgb: Option<DeflateSegment>,
    pub gray: Option<DeflateSegment>,
    pub lossless: Option<StoredImage>,
    pub jpeg: Option<Vec<u8>>,
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
}

fn missing(payload: Payload) -> PackError {
    PackError::Internal(match payload {
        Payload::RgbPixels => "a row without its RGB pixels",
        Payload::GrayPixels => "a row without its gray pixels",
        Payload::LosslessFile => "a row without its lossless image file",
        Payload::JpegFile => "a row without its JPEG file",
    })
}

/// What a format's writer is created with.
pub(crate) struct WriterContext<'a> {
    pub staging: &'a Staging,
    pub dataset: &'a Dataset,
    pub opts: &'a PackOptions,
    /// Rows per split if every packable image packs; headers written up front are
    /// corrected when fewer arrive.
    pub expected: [u64; 3],
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

/// One output format.
pub(crate) trait Format: Sync {
    /// Its name in `--formats`, the build record and report.json's timings.
    fn name(&self) -> &'static str;
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
    /// Open its files in the staging directory for rows in labels.csv order.
    fn create(&self, ctx: &WriterContext<'_>) -> Result<Box<dyn FormatWriter>, PackError>;
    /// For `verify`: the labels of a split's rows as this format states them, and the
    /// file that states them; problems go to `report`. `None` when it holds no labels
    /// (or they could not be read).
    fn read_labels(
        &self,
        _at: &SplitAt<'_>,
        _report: &mut VerifyReport,
    ) -> Option<(String, Vec<RowLabels>)> {
        None
    }
    /// For `verify`: the split's pixel rows, streamed. `None` when it holds no pixels
    /// verify can compare (or they could not be opened: the problem is in `report`).
    fn open_pixels(
        &self,
        _at: &SplitAt<'_>,
        _report: &mut VerifyReport,
    ) -> Option<Box<dyn PixelSource>> {
        None
    }
}

/// The registered format called `name`.
pub(crate) fn by_name(name: &str) -> Option<&'static dyn Format> {
    REGISTRY.iter().copied().find(|f| f.name() == name)
}

/// The `--formats` help: every registered format with what it writes.
pub fn help() -> String {
    let mut s = String::from("Artifacts to write, comma-separated, any of:");
    // Names in one column, as wide as the longest.
    let width = REGISTRY.iter().map(|f| f.name().len()).max().unwrap_or(0);
    for f in REGISTRY {
        s.push_str(&format!("\n  {:<width$} {}", f.name(), f.about()));
    }
    s
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
}

impl Default for Formats {
    fn default() -> Self {
        DEFAULT
            .join(",")
            .parse()
            .expect("the default formats are registered")
    }
}

impl fmt::Display for Formats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(","))
    }
}

impl fmt::Debug for Formats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.names()).finish()
    }
}

impl std::str::FromStr for Formats {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut chosen = Vec::new();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let Some(i) = REGISTRY.iter().position(|f| f.name() == name) else {
                let known: Vec<&str> = REGISTRY.iter().map(|f| f.name()).collect();
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
        chosen.sort_unstable();
        chosen.dedup();
        Ok(Formats { chosen })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_in_registry_order() {
        let f: Formats = "mnist, npz,images,npz".parse().unwrap();
        assert_eq!(f.names(), ["npz", "images", "mnist"]);
        assert!(f.contains("images") && !f.contains("idx"));
        assert!(f.need(Payload::GrayPixels) && f.need(Payload::RgbPixels));
        assert!(!f.need(Payload::LosslessFile));
        // The images files and the WebDataset image members are one payload.
        let f: Formats = "webdataset,images".parse().unwrap();
        assert_eq!(f.names(), ["images", "webdataset"]);
        assert!(f.need(Payload::JpegFile) && !f.need(Payload::RgbPixels));
        assert_eq!(
            "npz,tiff".parse::<Formats>().unwrap_err(),
            "unknown format 'tiff' (expected idx, npz, parquet, images, webdataset, mnist)"
        );
        assert!("".parse::<Formats>().is_err());
        assert_eq!(Formats::default().to_string(), "idx,npz,parquet");
    }

    #[test]
    fn every_format_is_registered_once_with_files_and_help() {
        for (i, f) in REGISTRY.iter().enumerate() {
            assert_eq!(by_name(f.name()).map(|g| g.name()), Some(f.name()));
            assert!(REGISTRY[..i].iter().all(|g| g.name() != f.name()));
            assert!(!f.needs().is_empty(), "{}", f.name());
            assert!(!f.dirs(64).is_empty(), "{}", f.name());
            assert!(help().contains(f.name()));
        }
    }
}
