//! Test support for the format writers: an in-memory [`FileSink`], whose files a test
//! reads back as bytes, and a few synthetic rows with every payload, written through a
//! format as a pack writes them.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Cursor, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::{
    FileSink, FinishContext, Format, PackedRow, Payloads, StoredImage, WriteSeek, WriterContext,
};
use crate::encode::{deflate_pixels, encode_jpeg, encode_png};
use crate::metadata::{Dataset, DatasetVersion, ImageRecord, MetadataFiles, Split};
use crate::normalize::to_gray;
use crate::out::Artifact;
use crate::out::checksums::sha256_hex;
use crate::pack::read::{PixelSource, RowRead, SplitAt};
use crate::pack::{PackError, PackOptions};

/// Files held in memory, by name: what a writer wrote can be read back at once.
#[derive(Default)]
pub(crate) struct MemorySink {
    files: Mutex<BTreeMap<String, Shared>>,
}

/// The bytes of one file, shared by the sink and the file's handle.
type Shared = Arc<Mutex<Cursor<Vec<u8>>>>;

impl MemorySink {
    /// The names of its files, sorted.
    pub fn names(&self) -> Vec<String> {
        self.files.lock().unwrap().keys().cloned().collect()
    }

    /// The bytes of the file `relative`; panics when there is none.
    pub fn bytes(&self, relative: &str) -> Vec<u8> {
        let files = self.files.lock().unwrap();
        let file = files
            .get(relative)
            .unwrap_or_else(|| panic!("no file {relative} in {:?}", files.keys()));
        file.lock().unwrap().get_ref().clone()
    }

    /// Write every file under `dir`, for readers that take a directory (verify's).
    pub fn write_to(&self, dir: &Path) {
        for name in self.names() {
            let path = dir.join(&name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, self.bytes(&name)).unwrap();
        }
    }
}

impl FileSink for MemorySink {
    fn create(&self, relative: &str) -> Result<Box<dyn WriteSeek>, PackError> {
        let file = Arc::new(Mutex::new(Cursor::new(Vec::new())));
        self.files
            .lock()
            .unwrap()
            .insert(relative.to_string(), file.clone());
        Ok(Box::new(MemoryFile(file)))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), PackError> {
        let mut files = self.files.lock().unwrap();
        let file = files.remove(from).ok_or_else(|| PackError::Io {
            path: from.into(),
            source: io::ErrorKind::NotFound.into(),
        })?;
        files.insert(to.to_string(), file);
        Ok(())
    }
}

/// A file of a [`MemorySink`], written through its handle.
struct MemoryFile(Shared);

impl Write for MemoryFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for MemoryFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.lock().unwrap().seek(pos)
    }
}

/// The edge of the synthetic images: small, so that a test's files are a few KiB.
pub(crate) const SIZE: u32 = 4;

/// A dataset of seven images from the three hosts: three rows in train, two in dev, one
/// in test (labels.csv order differs from id order), image 3 unlabelled, image 4 with
/// every kind of expert metadata.
pub(crate) fn dataset() -> Dataset {
    const HOSTS: [&str; 3] = [
        "http://codh.rois.ac.jp/iiif/iiif-curation-viewer",
        "http://iiif.lib.keio.ac.jp/iipsrv/NRE",
        "http://rmda.kulib.kyoto-u.ac.jp/iiif",
    ];
    let mut files = MetadataFiles::embedded(DatasetVersion::V1_3);
    files.urls = (0..7)
        .map(|i| format!("{}/{i}.tif/0,0,100,100/256,/0/default.jpg\n", HOSTS[i % 3]))
        .collect();
    files.labels = "image,gender,status,set\n\
                    00000004.jpg,1,3,train\n\
                    00000000.jpg,0,0,train\n\
                    00000005.jpg,0,1,dev\n\
                    00000002.jpg,1,2,test\n\
                    00000006.jpg,0,2,train\n\
                    00000001.jpg,1,0,dev\n"
        .into();
    files.original_tags = "00000004.jpg:原典=絵巻;DOI=10.20730/100;向き=右;制作年=江戸前期;\
                           制作年=from 1600;制作年=to 1650;所蔵=文庫;タグ=烏帽子;タグ=扇\n"
        .into();
    Dataset::parse(DatasetVersion::V1_3, files).unwrap()
}

/// Pack options for `formats` at [`SIZE`].
pub(crate) fn options(formats: &str) -> PackOptions {
    PackOptions {
        size: SIZE,
        formats: formats.parse().unwrap(),
        jobs: 1,
        ..PackOptions::default()
    }
}

/// The synthetic S x S RGB pixels of image `id`: each image its own.
pub(crate) fn pixels(id: u32) -> Vec<u8> {
    (0..SIZE * SIZE * 3)
        .map(|i| (i * 7 + id * 31) as u8)
        .collect()
}

/// Every payload of image `id`, as the pool makes them (the lossless file a PNG).
pub(crate) fn payloads(id: u32) -> Payloads {
    let rgb = pixels(id);
    Payloads {
        rgb: Some(deflate_pixels(&rgb).unwrap()),
        gray: Some(deflate_pixels(&to_gray(&rgb)).unwrap()),
        lossless: Some(StoredImage {
            bytes: encode_png(&rgb, SIZE).unwrap(),
            extension: "png",
        }),
        jpeg: Some(encode_jpeg(&rgb, SIZE).unwrap()),
        pixels: Some(rgb),
    }
}

/// The records `write` packs into `split` when the images `missing` are missing, in
/// row order.
pub(crate) fn rows<'d>(
    dataset: &'d Dataset,
    split: Split,
    missing: &[u32],
) -> Vec<&'d ImageRecord> {
    dataset
        .packable()
        .filter(|r| r.label.unwrap().split == split && !missing.contains(&r.id.0))
        .collect()
}

/// What a format wrote.
pub(crate) struct Written {
    pub sink: MemorySink,
    /// The names its writer returned.
    pub produced: Vec<String>,
    /// The artifacts hashed while written.
    pub hashed: Vec<Artifact>,
}

/// Write the packable rows of `dataset` through `format` as a pack does, but for the
/// images `missing` (which the expected row counts still include).
pub(crate) fn write(
    format: &dyn Format,
    dataset: &Dataset,
    opts: &PackOptions,
    missing: &[u32],
) -> Written {
    let sink = MemorySink::default();
    let mut expected = [0u64; 3];
    for r in dataset.packable() {
        expected[r.label.unwrap().split.index()] += 1;
    }
    let ctx = WriterContext {
        sink: &sink,
        dataset,
        opts,
        expected,
        demand: std::sync::Arc::new(super::Demand::new(dataset, 1)),
    };
    let mut writer = format.create(&ctx).unwrap();
    for record in dataset.packable().filter(|r| !missing.contains(&r.id.0)) {
        let label = record.label.unwrap();
        let row = PackedRow {
            split: label.split,
            record,
            label,
            payloads: payloads(record.id.0),
        };
        writer.write_row(&row).unwrap();
    }
    let mut hashed = Vec::new();
    let mut finish = FinishContext {
        sink: &sink,
        hashed: &mut hashed,
    };
    let produced = writer.finish(&mut finish).unwrap();
    Written {
        sink,
        produced,
        hashed,
    }
}

impl Written {
    /// The writer named every file it wrote, once, and each artifact it hashed has the
    /// length and SHA-256 of the bytes written.
    pub fn check_files(&self) {
        let mut produced = self.produced.clone();
        produced.sort();
        let count = produced.len();
        produced.dedup();
        assert_eq!(produced.len(), count, "a file named twice");
        assert_eq!(produced, self.sink.names());
        for a in &self.hashed {
            let bytes = self.sink.bytes(&a.path);
            assert_eq!(a.bytes, bytes.len() as u64, "{}", a.path);
            assert_eq!(a.sha256, sha256_hex(&bytes), "{}", a.path);
        }
    }

    /// Whether `name` was hashed while written.
    pub fn hashed(&self, name: &str) -> bool {
        self.hashed.iter().any(|a| a.path == name)
    }

    /// The files in a new directory, for verify's readers, which read a directory.
    pub fn on_disk(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        self.sink.write_to(dir.path());
        dir
    }

    /// The produced names, as a build record lists them.
    pub fn listed(&self) -> BTreeSet<String> {
        self.produced.iter().cloned().collect()
    }
}

/// Where verify's readers find `split` of a build of `rows` rows, with their `ids` if known.
pub(crate) fn split_at<'a>(
    dir: &'a Path,
    files: &'a BTreeSet<String>,
    split: Split,
    rows: u64,
    ids: Option<&'a [u32]>,
) -> SplitAt<'a> {
    SplitAt {
        dir,
        files,
        split,
        rows,
        size: SIZE,
        ids,
    }
}

/// Every row of a pixel source, then its end checked.
pub(crate) fn read_all(mut source: Box<dyn PixelSource>, rows: usize) -> Vec<Vec<u8>> {
    let len = source.channels().row_len(SIZE);
    let mut out = Vec::new();
    for i in 0..rows {
        let mut buf = vec![0u8; len];
        match source.read_row(&mut buf) {
            RowRead::Pixels => out.push(buf),
            RowRead::Bad(e) | RowRead::Broken(e) => panic!("{}: row {i}: {e}", source.name()),
        }
    }
    source.check_end().unwrap();
    out
}
