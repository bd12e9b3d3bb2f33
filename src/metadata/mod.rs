//! The upstream metadata of a KaoKore version, parsed into typed records.
//!
//! The four upstream versions are embedded in the binary (see `embedded`), so nothing
//! has to be downloaded to know what to fetch. Parsing is tolerant of the quirks the
//! real files carry (they become `Warning`s) and strict about anything that would make
//! an artifact wrong (it becomes a `MetadataError` naming the file and line).

mod embedded;
mod labels;
mod tags;
mod urls;

use std::fmt;
use std::io::Read;
use std::path::Path;

pub use embedded::DatasetVersion;
pub use labels::{ClassNames, Label, LabelRow, MAX_CLASSES, parse_labels_csv};
pub use tags::Tags;
pub use urls::{Provider, SizeRequest, host_of};

/// The 0-based line number of an image's URL in `urls.txt`; its file name is `%08d.jpg`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct ImageId(pub u32);

impl ImageId {
    /// The upstream file name, `NNNNNNNN.jpg`.
    pub fn file_name(self) -> String {
        format!("{:08}.jpg", self.0)
    }

    /// The file name with another extension, `NNNNNNNN.{ext}`.
    pub fn file_name_with(self, ext: &str) -> String {
        format!("{:08}.{ext}", self.0)
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08}", self.0)
    }
}

/// The train/dev/test split an image belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Dev,
    Test,
}

impl Split {
    pub const ALL: [Split; 3] = [Split::Train, Split::Dev, Split::Test];

    pub fn name(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Dev => "dev",
            Split::Test => "test",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One image of the dataset: one line of `urls.txt`, or an id that only `labels.csv` or
/// `original_tags.txt` mentions.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub id: ImageId,
    /// The original upstream URL; `None` for a blank line.
    pub url: Option<String>,
    pub label: Option<Label>,
    /// Boxed: most of a record's size, and a blank urls.txt line has none.
    pub tags: Option<Box<Tags>>,
}

impl ImageRecord {
    /// The content provider holding the work, known from the URL's host.
    pub fn provider(&self) -> Option<Provider> {
        self.url.as_deref().and_then(Provider::from_url)
    }
}

/// A real-data quirk that parsing tolerated. Counted and reported, never fatal.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    pub file: &'static str,
    pub line: usize,
    pub kind: WarningKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarningKind {
    /// A blank line in urls.txt: the id exists but has no image.
    BlankUrlLine,
    /// labels.csv labels an image whose urls.txt line is blank.
    LabelledWithoutUrl,
    /// An `=`-only or key-less entry in original_tags.txt.
    StrayTagEntry,
    /// A tag value with leading or trailing white space (kept trimmed).
    PaddedTagValue,
}

impl WarningKind {
    pub fn describe(self) -> &'static str {
        match self {
            WarningKind::BlankUrlLine => "blank line in urls.txt (id kept, no image)",
            WarningKind::LabelledWithoutUrl => "labelled image with a blank URL line (not packed)",
            WarningKind::StrayTagEntry => "stray entry without a key in original_tags.txt",
            WarningKind::PaddedTagValue => "tag value with surrounding white space (trimmed)",
        }
    }
}

/// Input that would make an artifact wrong: always names the file and the line.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("{file}:{line}: {message}")]
    Invalid {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {source}")]
    Read {
        file: String,
        #[source]
        source: std::io::Error,
    },
    /// A FIFO, device, socket or directory where a metadata file should be: reading it
    /// could block forever or never end, so it is not read.
    #[error("{file}: not a regular file ({kind})")]
    NotRegularFile { file: String, kind: &'static str },
    #[error("{file}: not valid UTF-8 (line {line})")]
    NotUtf8 { file: String, line: usize },
    #[error(
        "{file}: {bytes} bytes, more than the {} MiB a metadata file may have (upstream's largest is under 2 MB)",
        MAX_METADATA_BYTES >> 20
    )]
    TooLarge { file: String, bytes: u64 },
}

impl MetadataError {
    pub(crate) fn invalid(file: &str, line: usize, message: impl Into<String>) -> Self {
        MetadataError::Invalid {
            file: file.to_string(),
            line,
            message: message.into(),
        }
    }
}

/// The five upstream files of one version, as text.
#[derive(Debug, Clone)]
pub struct MetadataFiles {
    /// Where the files came from: `embedded v1.3` or a directory path, for messages.
    pub origin: String,
    pub urls: String,
    pub labels: String,
    pub original_tags: String,
    pub class_names_en: String,
    pub class_names_ja: String,
}

/// A metadata file larger than this is refused unread. Upstream's largest file
/// (v1.3 original_tags.txt) is 1.8 MB; parsing keeps a bounded amount per line, so this
/// also bounds the memory any metadata directory can make the tool use.
pub const MAX_METADATA_BYTES: u64 = 16 << 20;

/// The most lines urls.txt may have, so the highest image id: a hundred times the largest
/// version (v1.3: 9,683). Only blank lines could reach it within [`MAX_METADATA_BYTES`],
/// and each costs a record (about 100 bytes with its warning), so it caps that too.
pub const MAX_IMAGES: usize = 1_000_000;

/// The text of a file without the UTF-8 byte order mark some editors put first.
pub(crate) fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The names of the upstream files, as they are copied into an output directory.
pub const URLS_FILE: &str = "urls.txt";
pub const LABELS_FILE: &str = "labels.csv";
pub const TAGS_FILE: &str = "original_tags.txt";
pub const CLASS_NAMES_EN_FILE: &str = "labels.metadata.en.txt";
pub const CLASS_NAMES_JA_FILE: &str = "labels.metadata.ja.txt";

impl MetadataFiles {
    /// The embedded files of a version.
    pub fn embedded(version: DatasetVersion) -> Self {
        embedded::files(version)
    }

    /// Read an upstream-layout directory. Every file must exist, be a regular file (a
    /// symbolic link to one is followed), be UTF-8 and no larger than
    /// [`MAX_METADATA_BYTES`] (checked before reading, and again while reading, for a
    /// file that grows).
    pub fn read_dir(dir: &Path) -> Result<Self, MetadataError> {
        let read = |name: &str| -> Result<String, MetadataError> {
            let path = dir.join(name);
            let shown = path.display().to_string();
            let io_err = |source| MetadataError::Read {
                file: shown.clone(),
                source,
            };
            let not_regular = |kind: &'static str| MetadataError::NotRegularFile {
                file: shown.clone(),
                kind,
            };
            // Opening a FIFO blocks until a writer comes, and a device may never end.
            let file = crate::fs::open_input(&path).map_err(|e| match e {
                crate::fs::OpenError::NotRegular { kind } => not_regular(kind),
                crate::fs::OpenError::Io(e) => io_err(e),
                other => io_err(std::io::Error::other(other.to_string())),
            })?;
            let declared = file.metadata().map_err(io_err)?.len();
            let too_large = |bytes| MetadataError::TooLarge {
                file: shown.clone(),
                bytes,
            };
            if declared > MAX_METADATA_BYTES {
                return Err(too_large(declared));
            }
            let mut bytes = Vec::with_capacity(declared as usize);
            file.take(MAX_METADATA_BYTES + 1)
                .read_to_end(&mut bytes)
                .map_err(io_err)?;
            if bytes.len() as u64 > MAX_METADATA_BYTES {
                return Err(too_large(bytes.len() as u64));
            }
            String::from_utf8(bytes).map_err(|e| {
                let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
                MetadataError::NotUtf8 {
                    file: shown,
                    line: good.iter().filter(|&&b| b == b'\n').count() + 1,
                }
            })
        };
        Ok(MetadataFiles {
            origin: dir.display().to_string(),
            urls: read(URLS_FILE)?,
            labels: read(LABELS_FILE)?,
            original_tags: read(TAGS_FILE)?,
            class_names_en: read(CLASS_NAMES_EN_FILE)?,
            class_names_ja: read(CLASS_NAMES_JA_FILE)?,
        })
    }

    /// The files in the order they are copied to an output directory, with their names.
    pub fn copied(&self) -> [(&'static str, &str); 4] {
        [
            (LABELS_FILE, &self.labels),
            (TAGS_FILE, &self.original_tags),
            (CLASS_NAMES_EN_FILE, &self.class_names_en),
            (CLASS_NAMES_JA_FILE, &self.class_names_ja),
        ]
    }
}

/// A parsed, validated dataset version.
#[derive(Debug, Clone)]
pub struct Dataset {
    pub version: DatasetVersion,
    pub files: MetadataFiles,
    /// One record per line of urls.txt: index = image id. labels.csv and
    /// original_tags.txt may only name these ids.
    pub records: Vec<ImageRecord>,
    /// Labelled images in labels.csv order: the row order of every artifact.
    pub labelled: Vec<ImageId>,
    pub class_names: ClassNames,
    pub warnings: Vec<Warning>,
}

impl Dataset {
    /// Parse and validate the files of a version.
    pub fn parse(version: DatasetVersion, files: MetadataFiles) -> Result<Self, MetadataError> {
        let (urls, mut warnings) = urls::parse(&files.urls)?;
        let lines = urls.len();
        let class_names = ClassNames::parse(&files.class_names_en, CLASS_NAMES_EN_FILE)?;
        let labelled = labels::parse(&files.labels, &class_names, lines)?;
        let (tags, tag_warnings) = tags::parse(&files.original_tags, lines)?;
        warnings.extend(tag_warnings);

        let mut records: Vec<ImageRecord> = urls
            .into_iter()
            .enumerate()
            .map(|(i, url)| ImageRecord {
                id: ImageId(i as u32),
                url,
                label: None,
                tags: None,
            })
            .collect();
        // Both parsers checked every id against the number of lines.
        let mut order = Vec::with_capacity(labelled.len());
        for labels::LabelRow { line, id, label } in labelled {
            let record = &mut records[id.0 as usize];
            if record.url.is_none() {
                warnings.push(Warning {
                    file: LABELS_FILE,
                    line,
                    kind: WarningKind::LabelledWithoutUrl,
                });
            }
            record.label = Some(label);
            order.push(id);
        }
        // Nothing to pack is never what a user meant: say so rather than build nothing.
        if !order.iter().any(|id| records[id.0 as usize].url.is_some()) {
            return Err(MetadataError::invalid(
                LABELS_FILE,
                1,
                format!(
                    "no labelled image has a URL in {URLS_FILE} ({} labelled): the build would be empty",
                    order.len()
                ),
            ));
        }
        for (id, (_, t)) in tags {
            records[id.0 as usize].tags = Some(Box::new(t));
        }
        warnings.sort_by_key(|w| (w.file, w.line, w.kind));
        Ok(Dataset {
            version,
            files,
            records,
            labelled: order,
            class_names,
            warnings,
        })
    }

    /// Parse the embedded files of a version.
    pub fn embedded(version: DatasetVersion) -> Result<Self, MetadataError> {
        Self::parse(version, MetadataFiles::embedded(version))
    }

    pub fn record(&self, id: ImageId) -> &ImageRecord {
        &self.records[id.0 as usize]
    }

    /// Images with a URL, in id order: what `fetch` downloads.
    pub fn with_url(&self) -> impl Iterator<Item = &ImageRecord> {
        self.records.iter().filter(|r| r.url.is_some())
    }

    /// Labelled images with a URL, in labels.csv order: what `build` packs.
    pub fn packable(&self) -> impl Iterator<Item = &ImageRecord> {
        self.labelled
            .iter()
            .map(|&id| self.record(id))
            .filter(|r| r.url.is_some())
    }

    /// How many warnings of each kind, in kind order.
    pub fn warning_counts(&self) -> std::collections::BTreeMap<WarningKind, usize> {
        let mut counts = std::collections::BTreeMap::new();
        for w in &self.warnings {
            *counts.entry(w.kind).or_insert(0) += 1;
        }
        counts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A directory holding the embedded v1.3 files, to be spoiled one file at a time.
    fn upstream_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let files = MetadataFiles::embedded(DatasetVersion::V1_3);
        for (name, text) in [
            (URLS_FILE, &files.urls),
            (LABELS_FILE, &files.labels),
            (TAGS_FILE, &files.original_tags),
            (CLASS_NAMES_EN_FILE, &files.class_names_en),
            (CLASS_NAMES_JA_FILE, &files.class_names_ja),
        ] {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    #[test]
    fn the_published_versions_load_with_their_counts() {
        let d = Dataset::embedded(DatasetVersion::V1_0).unwrap();
        assert_eq!(d.with_url().count(), 5552);
        assert_eq!(d.warning_counts()[&WarningKind::BlankUrlLine], 272);
        assert_eq!(d.labelled.len(), 5298);
        let d = Dataset::embedded(DatasetVersion::V1_3).unwrap();
        assert_eq!(d.with_url().count(), 9683);
        assert_eq!(d.labelled.len(), 9257);
        for v in DatasetVersion::ALL {
            let d = Dataset::embedded(v).unwrap();
            // Every URL is of one of the three providers, named from its parsed host.
            assert!(d.with_url().all(|r| r.provider().is_some()), "v{v}");
        }
    }

    fn tiny(urls: &str, labels: &str) -> Result<Dataset, MetadataError> {
        let mut files = MetadataFiles::embedded(DatasetVersion::V1_3);
        files.urls = urls.to_string();
        files.labels = labels.to_string();
        files.original_tags = String::new();
        Dataset::parse(DatasetVersion::V1_3, files)
    }

    #[test]
    fn a_version_with_no_labelled_url_is_refused() {
        let urls = "http://codh.rois.ac.jp/a.jpg\n\nhttp://codh.rois.ac.jp/c.jpg\n";
        let labelled = |ids: &[u32]| {
            let rows: String = ids
                .iter()
                .map(|i| format!("{i:08}.jpg,0,0,train\n"))
                .collect();
            format!("image,gender,status,set\n{rows}")
        };
        assert_eq!(
            tiny(urls, &labelled(&[1, 2])).unwrap().packable().count(),
            1
        );
        for ids in [&[][..], &[1]] {
            let err = tiny(urls, &labelled(ids)).unwrap_err();
            assert!(matches!(err, MetadataError::Invalid { .. }));
            assert_eq!(
                err.to_string(),
                format!(
                    "labels.csv:1: no labelled image has a URL in urls.txt ({} labelled): the build would be empty",
                    ids.len()
                )
            );
        }
        // All-blank urls.txt is refused by urls.txt itself.
        let err = tiny("\n\n", &labelled(&[0])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "urls.txt:2: no URL in the file: it would build an empty dataset"
        );
    }

    #[test]
    fn a_directory_of_regular_files_reads() {
        let dir = upstream_dir();
        let files = MetadataFiles::read_dir(dir.path()).unwrap();
        assert_eq!(
            files.urls,
            MetadataFiles::embedded(DatasetVersion::V1_3).urls
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_fifo_is_refused_at_once_without_waiting_for_a_writer() {
        let dir = upstream_dir();
        let fifo = dir.path().join(URLS_FILE);
        std::fs::remove_file(&fifo).unwrap();
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let (tx, rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        std::thread::spawn(move || tx.send(MetadataFiles::read_dir(&path)).unwrap());
        let Ok(result) = rx.recv_timeout(Duration::from_secs(10)) else {
            // Let the blocked reader go before failing.
            let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
            panic!("reading a FIFO blocked");
        };
        let err = result.unwrap_err();
        assert!(matches!(err, MetadataError::NotRegularFile { .. }), "{err}");
        assert_eq!(
            err.to_string(),
            format!("{}: not a regular file (a FIFO)", fifo.display())
        );
    }

    #[test]
    fn a_directory_in_place_of_a_file_is_refused() {
        let dir = upstream_dir();
        let labels = dir.path().join(LABELS_FILE);
        std::fs::remove_file(&labels).unwrap();
        std::fs::create_dir(&labels).unwrap();
        let err = MetadataFiles::read_dir(dir.path()).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("{}: not a regular file (a directory)", labels.display())
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_symbolic_link_to_a_regular_file_is_followed() {
        let dir = upstream_dir();
        let elsewhere = tempfile::tempdir().unwrap();
        let target = elsewhere.path().join("urls");
        std::fs::rename(dir.path().join(URLS_FILE), &target).unwrap();
        std::os::unix::fs::symlink(&target, dir.path().join(URLS_FILE)).unwrap();
        assert!(MetadataFiles::read_dir(dir.path()).is_ok());
    }
}
