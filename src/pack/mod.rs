//! Pack: stream the labelled images, in labels.csv order, through normalize and encode on
//! a CPU pool and into one writer per output format (idx, npz, Parquet, image files),
//! then write the dataset card and checksums and move everything into place.
//!
//! Images are processed in fixed chunks: the pool works on a chunk (waiting for each image
//! from the [`ImageSource`], then decoding, resizing and compressing it) while the
//! previous chunk's results are written in row order. Output therefore does not depend on
//! the number of threads or on the order in which images arrive, and memory stays bounded
//! by a few chunks whatever the dataset size. Every file is written in a staging directory
//! inside the output directory and renamed into place only when all are complete.

mod card;
mod checksums;
mod croissant;
mod idx;
mod images;
mod npz;
mod parquet;
mod staging;
mod stream;
pub mod webdataset;
mod zip;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::config::PackOptions;
use crate::encode::{self, DeflateSegment, EncodeError};
use crate::metadata::{Dataset, ImageId, ImageRecord, Label, Provider, Split};
use crate::normalize::{self, NormalizeError, SourceLayout};
use crate::progress::Progress;

pub use checksums::{SHA256SUMS, hash_file, parse as parse_sums, sha256_hex};
pub use croissant::CROISSANT;
pub use idx::{idx_images_name, idx_labels_name};
pub use images::images_dir_name;
pub use npz::{npz_images_name, npz_labels_name};
pub use parquet::{arrow_schema, huggingface_features, parquet_name};

/// Images handed to the pool at once. Large enough to keep every thread busy, small
/// enough that two chunks in flight stay a few tens of MiB.
const CHUNK_ROWS: usize = 64;

/// Where pack gets image bytes. `image` blocks until the image is known (so a build can
/// overlap fetching and packing) and returns `None` if it could not be fetched.
pub trait ImageSource: Sync {
    fn image(&self, record: &ImageRecord) -> Option<Delivered>;

    /// Pack has failed: stop blocking in `image`, nothing more will be used.
    fn abandon(&self) {}

    /// Every image was asked for; the source's last word before anything in the output
    /// directory is replaced. An error abandons the pack and leaves `out` as it was (a
    /// build whose fetch cannot deliver, an interrupted run).
    fn confirm(&self) -> Result<(), String> {
        Ok(())
    }
}

/// An image file as a source delivers it.
pub struct Delivered {
    pub bytes: Vec<u8>,
    /// Its pixels, when already decoded by [`normalize::decode_jpeg`] (as the fetcher's
    /// validation does): pack then does not decode the file again.
    pub decoded: Option<image::DynamicImage>,
}

impl From<Vec<u8>> for Delivered {
    fn from(bytes: Vec<u8>) -> Delivered {
        Delivered {
            bytes,
            decoded: None,
        }
    }
}

/// Why pack failed. No artifact is left behind when it does.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("writing {path}: {message}")]
    Parquet { path: String, message: String },
    #[error("encoding image {id}: {source}")]
    Encode {
        id: ImageId,
        #[source]
        source: EncodeError,
    },
    #[error("cannot start {jobs} worker threads: {message}")]
    Pool { jobs: usize, message: String },
    #[error("size must be between 1 and {max}, got {size}", max = normalize::MAX_IMAGE_EDGE)]
    BadSize { size: u32 },
    #[error("no output format selected")]
    NoFormat,
    #[error(transparent)]
    Record(#[from] crate::record::RecordError),
    /// `--out` cannot take this build; nothing in it was changed.
    #[error(transparent)]
    Out(#[from] crate::record::OutError),
    /// The source withheld its confirmation ([`ImageSource::confirm`]): nothing written.
    #[error("not written: {0}")]
    Withheld(String),
    /// `--strict` and some images did not decode: nothing written.
    #[error(
        "{} image(s) could not be decoded (--strict), e.g. {}: {}",
        .0.len(),
        .0[0].id.file_name(),
        .0[0].reason
    )]
    Undecodable(Vec<Undecodable>),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl PackError {
    /// 2 when `--out` is the wrong place for the build (see [`OutError::exit_code`]), 1
    /// for any other failure.
    ///
    /// [`OutError::exit_code`]: crate::record::OutError::exit_code
    pub fn exit_code(&self) -> i32 {
        match self {
            PackError::Out(e) => e.exit_code(),
            _ => 1,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> PackError {
        let path = path.into();
        move |source| PackError::Io { path, source }
    }
}

/// What pack did: counts for the report, and the artifacts written.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PackSummary {
    /// Normalized edge length S.
    pub size: u32,
    pub splits: Vec<SplitSummary>,
    /// Labelled images with a URL whose bytes the source did not have, in labels.csv order.
    pub missing: Vec<ImageId>,
    /// Labelled images whose bytes could not be decoded (left out), in labels.csv order.
    pub undecodable: Vec<Undecodable>,
    /// Labelled images without a URL (blank urls.txt line): never packable.
    pub labelled_without_url: usize,
    pub normalization: NormalizationCounts,
    /// Packed images per content provider, in `Provider::ALL` order.
    pub providers: Vec<ProviderCount>,
    /// Pixel compression: raw pixel bytes and their deflate size (idx/npz).
    pub pixel_bytes: u64,
    pub pixel_deflate_bytes: u64,
    pub seconds: StageSeconds,
    /// Every artifact written, sorted by path (SHA256SUMS included, with its own hash).
    pub artifacts: Vec<Artifact>,
    /// Files of an earlier build that this build does not produce, removed.
    pub removed_stale: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SplitSummary {
    pub split: Split,
    pub packed: u64,
    pub gender: Vec<ClassCount>,
    pub status: Vec<ClassCount>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassCount {
    pub index: u8,
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Undecodable {
    pub id: ImageId,
    pub reason: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderCount {
    pub provider: String,
    pub images: u64,
}

/// What normalization had to do.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NormalizationCounts {
    pub decoded: u64,
    /// Not S x S: resized (stretched) with Lanczos3.
    pub resized: u64,
    /// Not 8-bit RGB: converted, by source layout (`gray8`, `rgba8`, `cmyk8`, `rgb16`...).
    pub converted_from: BTreeMap<String, u64>,
    /// Fetched file was an S x S RGB JPEG: its bytes are stored unchanged.
    pub stored_as_jpeg: u64,
    /// Everything else: normalized pixels stored as PNG in Parquet.
    pub stored_as_png: u64,
}

/// Time spent per stage. Worker stages (decode .. jpeg) are summed over threads, so they
/// are CPU seconds; the others are wall seconds of the writing thread.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageSeconds {
    /// Writing thread blocked waiting for the pool (and so for the source).
    pub waiting: f64,
    pub decode: f64,
    pub resize: f64,
    pub deflate: f64,
    pub png: f64,
    pub jpeg: f64,
    pub idx: f64,
    pub npz: f64,
    pub parquet: f64,
    pub images: f64,
    pub webdataset: f64,
    pub card_and_checksums: f64,
    pub total: f64,
}

impl StageSeconds {
    /// The field of a format writer's stage.
    fn of(&mut self, stage: Stage) -> &mut f64 {
        match stage {
            Stage::Idx => &mut self.idx,
            Stage::Npz => &mut self.npz,
            Stage::Parquet => &mut self.parquet,
            Stage::Images => &mut self.images,
            Stage::WebDataset => &mut self.webdataset,
        }
    }
}

/// The stage a format writer's time is counted in.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    Idx,
    Npz,
    Parquet,
    Images,
    WebDataset,
}

/// One written file, path relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
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
    /// The deflated pixel rows (when idx or npz is written).
    pub pixels: Option<DeflateSegment>,
    /// The Parquet image bytes (when Parquet is written).
    pub stored: Option<StoredImage>,
    /// The `images_S/` file and WebDataset image member (when either is written).
    pub image_file: Option<Vec<u8>>,
}

/// What the pool made of one image.
struct Encoded {
    pixels: Option<DeflateSegment>,
    stored: Option<StoredImage>,
    image_file: Option<Vec<u8>>,
    layout: SourceLayout,
    resized: bool,
    kept_jpeg: bool,
    times: WorkerTimes,
}

#[derive(Default, Clone, Copy)]
struct WorkerTimes {
    decode: Duration,
    resize: Duration,
    deflate: Duration,
    png: Duration,
    jpeg: Duration,
}

enum Outcome {
    Missing,
    Undecodable(NormalizeError),
    Packed(Box<Encoded>),
    Failed(EncodeError),
}

/// Everything the format writers get at the end of a pack.
pub(crate) struct FinishContext<'a> {
    pub staging: &'a staging::Staging,
    /// Artifacts hashed while they were written (the rest is hashed at commit).
    pub hashed: &'a mut Vec<Artifact>,
}

/// One output format: rows in, files out. Adding a format means adding one of these.
pub(crate) trait FormatWriter {
    /// Add one row; rows arrive in labels.csv order.
    fn write_row(&mut self, row: &PackedRow<'_>) -> Result<(), PackError>;
    /// Complete the files in the staging directory; returns their relative paths.
    fn finish(self: Box<Self>, ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError>;
    /// Which `StageSeconds` field the writer's time goes to.
    fn stage(&self) -> Stage;
}

/// Normalize, encode and pack every labelled image of `dataset` into `out`.
pub fn pack(
    dataset: &Dataset,
    source: &dyn ImageSource,
    opts: &PackOptions,
    out: &Path,
    progress: &Progress,
) -> Result<PackSummary, PackError> {
    let started = Instant::now();
    if opts.size == 0 || opts.size > normalize::MAX_IMAGE_EDGE {
        return Err(PackError::BadSize { size: opts.size });
    }
    let f = opts.formats;
    if !(f.idx || f.npz || f.parquet || f.images || f.webdataset) {
        return Err(PackError::NoFormat);
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .thread_name(|i| format!("kaokore-pack-{i}"))
        .build()
        .map_err(|e| PackError::Pool {
            jobs: opts.jobs,
            message: e.to_string(),
        })?;

    // Refuse a directory that is not ours before any work, and a symlinked or blocked
    // format directory before any image is packed (the commit checks every path again).
    crate::record::check_out(out)?;
    staging::check_dirs(out, &format_dirs(opts))?;

    // Dropping `staging` on any error below removes everything written so far.
    let staging = staging::Staging::create(out)?;
    let mut sink = RowSink::new(&staging, dataset, opts, progress)?;
    let packable: Vec<&ImageRecord> = dataset.packable().collect();
    sink.summary.labelled_without_url = dataset.labelled.len() - packable.len();
    run_chunks(&pool, &packable, source, opts, &mut sink)?;
    source.confirm().map_err(PackError::Withheld)?;
    let (mut summary, mut produced, hashed) = sink.finish()?;
    if opts.refuse_undecodable && !summary.undecodable.is_empty() {
        return Err(PackError::Undecodable(summary.undecodable));
    }

    let t = Instant::now();
    produced.extend(card::write(&staging, dataset, opts, &summary)?);
    let record = build_record(dataset, opts, &summary);
    let describe = |artifacts: &[Artifact]| {
        let text = croissant::render(dataset, opts, &summary, artifacts);
        vec![(CROISSANT.to_string(), text)]
    };
    let (artifacts, removed) =
        pool.install(|| staging.commit(produced, hashed, record, describe))?;
    summary.artifacts = artifacts;
    summary.removed_stale = removed;
    summary.seconds.card_and_checksums = t.elapsed().as_secs_f64();
    summary.seconds.total = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// The directories of `--out` the chosen formats write into (`idx`, `npz`...).
fn format_dirs(opts: &PackOptions) -> Vec<String> {
    let f = opts.formats;
    let split = Split::Train;
    let files = [
        (f.idx, idx_images_name(split)),
        (f.npz, npz_images_name(split)),
        (f.parquet, parquet_name(split)),
    ];
    let mut dirs: Vec<String> = files
        .iter()
        .filter(|(on, _)| *on)
        .filter_map(|(_, name)| Some(name.rsplit_once('/')?.0.to_string()))
        .collect();
    if f.images {
        dirs.push(images_dir_name(opts.size));
    }
    if f.webdataset {
        dirs.push(webdataset::WEBDATASET_DIR.to_string());
    }
    dirs
}

/// The record of this build (see [`crate::record`]); the commit fills in its files.
fn build_record(
    dataset: &Dataset,
    opts: &PackOptions,
    summary: &PackSummary,
) -> crate::record::BuildRecord {
    crate::record::BuildRecord {
        kaokore_build: crate::record::RECORD_LAYOUT,
        dataset_version: dataset.version.to_string(),
        size: opts.size,
        formats: opts.formats.names().iter().map(|n| n.to_string()).collect(),
        rows: summary
            .splits
            .iter()
            .map(|s| (s.split.name().to_string(), s.packed))
            .collect(),
        files: Vec::new(),
    }
}

/// Chunks in flight at once: the pool works on the next while the current one is written.
const CHUNKS_IN_FLIGHT: usize = 2;

/// Feed `records` to the pool chunk by chunk and hand the outcomes to `sink` in order.
fn run_chunks(
    pool: &rayon::ThreadPool,
    records: &[&ImageRecord],
    source: &dyn ImageSource,
    opts: &PackOptions,
    sink: &mut RowSink<'_>,
) -> Result<(), PackError> {
    let abort = AtomicBool::new(false);
    let work = |record: &&ImageRecord| -> Outcome {
        if abort.load(Ordering::Relaxed) {
            return Outcome::Missing; // the pack failed; nothing will be written
        }
        match source.image(record) {
            None => Outcome::Missing,
            Some(delivered) => encode_image(delivered, opts),
        }
    };
    let work = &work;
    pool.in_place_scope(|scope| {
        let mut chunks = records.chunks(CHUNK_ROWS);
        let mut pending = VecDeque::new();
        let mut write_all = || -> Result<(), PackError> {
            loop {
                while pending.len() < CHUNKS_IN_FLIGHT {
                    let Some(chunk) = chunks.next() else { break };
                    let (tx, rx) = mpsc::sync_channel::<Vec<Outcome>>(1);
                    scope.spawn(move |_| {
                        let _ = tx.send(chunk.par_iter().map(work).collect());
                    });
                    pending.push_back((chunk, rx));
                }
                let Some((chunk, rx)) = pending.pop_front() else {
                    return Ok(());
                };
                let waited = Instant::now();
                let outcomes = rx.recv().map_err(|_| PackError::Pool {
                    jobs: opts.jobs,
                    message: "a worker stopped without a result".into(),
                })?;
                sink.summary.seconds.waiting += waited.elapsed().as_secs_f64();
                for (record, outcome) in chunk.iter().zip(outcomes) {
                    sink.accept(record, outcome)?;
                }
            }
        };
        let result = write_all();
        if result.is_err() {
            abort.store(true, Ordering::Relaxed);
            // Chunks in flight may wait for images: let them return at once.
            source.abandon();
        }
        result
    })
}

/// The writing side of a pack: format writers and counts, fed in row order.
struct RowSink<'a> {
    staging: &'a staging::Staging,
    writers: Vec<Box<dyn FormatWriter>>,
    counts: Counts,
    summary: PackSummary,
    progress: &'a Progress,
}

impl<'a> RowSink<'a> {
    fn new(
        staging: &'a staging::Staging,
        dataset: &Dataset,
        opts: &PackOptions,
        progress: &'a Progress,
    ) -> Result<RowSink<'a>, PackError> {
        let f = opts.formats;
        // Rows per split if every image packs; the headers are corrected when some do not.
        let mut expected = [0u64; 3];
        for label in dataset.packable().filter_map(|r| r.label) {
            expected[label.split.index()] += 1;
        }
        let mut writers: Vec<Box<dyn FormatWriter>> = Vec::new();
        if f.idx {
            writers.push(Box::new(idx::IdxWriter::create(
                staging, opts.size, expected,
            )?));
        }
        if f.npz {
            writers.push(Box::new(npz::NpzWriter::create(
                staging, opts.size, expected,
            )?));
        }
        if f.parquet {
            writers.push(Box::new(parquet::ParquetWriter::create(
                staging, dataset, opts,
            )?));
        }
        if f.images {
            writers.push(Box::new(images::ImageFilesWriter::create(staging, opts)?));
        }
        if f.webdataset {
            writers.push(Box::new(webdataset::WebDatasetWriter::create(
                staging,
                &dataset.class_names,
                opts.webdataset_shard_bytes,
            )?));
        }
        Ok(RowSink {
            staging,
            writers,
            counts: Counts::new(dataset),
            summary: PackSummary {
                size: opts.size,
                ..PackSummary::default()
            },
            progress,
        })
    }

    /// Take the outcome of one record, the next in labels.csv order.
    fn accept(&mut self, record: &ImageRecord, outcome: Outcome) -> Result<(), PackError> {
        let Some(label) = record.label else {
            return Ok(()); // packable records are labelled
        };
        let encoded = match outcome {
            Outcome::Missing => {
                self.summary.missing.push(record.id);
                self.progress.advance(true);
                return Ok(());
            }
            Outcome::Undecodable(e) => {
                self.summary.undecodable.push(Undecodable {
                    id: record.id,
                    reason: e.to_string(),
                });
                self.progress.advance(true);
                return Ok(());
            }
            Outcome::Failed(source) => {
                return Err(PackError::Encode {
                    id: record.id,
                    source,
                });
            }
            Outcome::Packed(encoded) => *encoded,
        };
        self.counts.add(record, label, &encoded, &mut self.summary);
        let row = PackedRow {
            split: label.split,
            record,
            label,
            pixels: encoded.pixels,
            stored: encoded.stored,
            image_file: encoded.image_file,
        };
        if let Some(segment) = row.pixels.as_ref() {
            self.summary.pixel_bytes += segment.len;
            self.summary.pixel_deflate_bytes += segment.data.len() as u64;
        }
        for w in self.writers.iter_mut() {
            let t = Instant::now();
            w.write_row(&row)?;
            *self.summary.seconds.of(w.stage()) += t.elapsed().as_secs_f64();
        }
        self.progress.advance(false);
        Ok(())
    }

    /// Complete every format's files; returns the summary so far, the files written and
    /// those of them already hashed.
    fn finish(mut self) -> Result<(PackSummary, Vec<String>, Vec<Artifact>), PackError> {
        let mut produced = Vec::new();
        let mut hashed = Vec::new();
        let mut ctx = FinishContext {
            staging: self.staging,
            hashed: &mut hashed,
        };
        for w in self.writers {
            let stage = w.stage();
            let t = Instant::now();
            produced.extend(w.finish(&mut ctx)?);
            *self.summary.seconds.of(stage) += t.elapsed().as_secs_f64();
        }
        self.counts.finish(&mut self.summary);
        Ok((self.summary, produced, hashed))
    }
}

/// Decode, normalize and encode one fetched image into what the formats need.
fn encode_image(delivered: Delivered, opts: &PackOptions) -> Outcome {
    let f = opts.formats;
    let mut times = WorkerTimes::default();
    let t = Instant::now();
    let bytes = &delivered.bytes[..];
    let decoded = match delivered.decoded {
        Some(image) => normalize::Decoded::jpeg(bytes, image),
        None => match normalize::decode(bytes) {
            Ok(d) => d,
            Err(e) => return Outcome::Undecodable(e),
        },
    };
    times.decode = t.elapsed();
    let t = Instant::now();
    let source = decoded.source;
    let (pixels, resized) = match normalize::to_square_rgb(decoded.image, opts.size) {
        Ok(p) => p,
        Err(e) => return Outcome::Undecodable(e),
    };
    times.resize = t.elapsed();
    let image = normalize::NormalizedImage {
        pixels,
        size: opts.size,
        source,
        resized,
    };
    let keep = image.source_is_final_jpeg();
    let run = || -> Result<Encoded, EncodeError> {
        let mut e = Encoded {
            pixels: None,
            stored: None,
            image_file: None,
            layout: source.layout,
            resized,
            kept_jpeg: keep,
            times,
        };
        if f.idx || f.npz {
            let t = Instant::now();
            e.pixels = Some(encode::deflate_pixels(&image.pixels)?);
            e.times.deflate = t.elapsed();
        }
        if f.parquet {
            e.stored = Some(if keep {
                StoredImage {
                    bytes: bytes.to_vec(),
                    extension: "jpg",
                }
            } else {
                let t = Instant::now();
                let png = encode::encode_png(&image.pixels, opts.size)?;
                e.times.png = t.elapsed();
                StoredImage {
                    bytes: png,
                    extension: "png",
                }
            });
        }
        // The `images` files and the WebDataset image members are the same bytes.
        if f.images || f.webdataset {
            e.image_file = Some(if keep {
                bytes.to_vec()
            } else {
                let t = Instant::now();
                let jpeg = encode::encode_jpeg(&image.pixels, opts.size)?;
                e.times.jpeg = t.elapsed();
                jpeg
            });
        }
        Ok(e)
    };
    match run() {
        Ok(e) => Outcome::Packed(Box::new(e)),
        Err(e) => Outcome::Failed(e),
    }
}

/// One value per split, in `Split::ALL` order.
fn per_split<T>(mut make: impl FnMut(Split) -> Result<T, PackError>) -> Result<[T; 3], PackError> {
    let [a, b, c] = Split::ALL;
    Ok([make(a)?, make(b)?, make(c)?])
}

/// Running counts per split, label and provider.
struct Counts {
    per_split: [(u64, Vec<u64>, Vec<u64>); 3],
    providers: BTreeMap<Provider, u64>,
    gender_names: Vec<String>,
    status_names: Vec<String>,
}

impl Counts {
    fn new(dataset: &Dataset) -> Counts {
        let g = dataset.class_names.gender.len();
        let s = dataset.class_names.status.len();
        Counts {
            per_split: std::array::from_fn(|_| (0, vec![0; g], vec![0; s])),
            providers: BTreeMap::new(),
            gender_names: dataset.class_names.gender.clone(),
            status_names: dataset.class_names.status.clone(),
        }
    }

    fn add(&mut self, record: &ImageRecord, label: Label, e: &Encoded, summary: &mut PackSummary) {
        let split = &mut self.per_split[label.split.index()];
        split.0 += 1;
        split.1[label.gender as usize] += 1;
        split.2[label.status as usize] += 1;
        if let Some(p) = record.provider() {
            *self.providers.entry(p).or_default() += 1;
        }
        let n = &mut summary.normalization;
        n.decoded += 1;
        n.resized += u64::from(e.resized);
        if e.layout != SourceLayout::Rgb8 {
            *n.converted_from
                .entry(e.layout.name().to_string())
                .or_default() += 1;
        }
        if e.kept_jpeg {
            n.stored_as_jpeg += 1;
        } else {
            n.stored_as_png += 1;
        }
        let s = &mut summary.seconds;
        s.decode += e.times.decode.as_secs_f64();
        s.resize += e.times.resize.as_secs_f64();
        s.deflate += e.times.deflate.as_secs_f64();
        s.png += e.times.png.as_secs_f64();
        s.jpeg += e.times.jpeg.as_secs_f64();
    }

    fn finish(self, summary: &mut PackSummary) {
        let classes = |names: &[String], counts: &[u64]| {
            names
                .iter()
                .zip(counts)
                .enumerate()
                .map(|(i, (name, &count))| ClassCount {
                    index: i as u8,
                    name: name.clone(),
                    count,
                })
                .collect()
        };
        summary.splits = Split::ALL
            .iter()
            .map(|&split| {
                let (packed, g, s) = &self.per_split[split.index()];
                SplitSummary {
                    split,
                    packed: *packed,
                    gender: classes(&self.gender_names, g),
                    status: classes(&self.status_names, s),
                }
            })
            .collect();
        summary.providers = Provider::ALL
            .iter()
            .map(|p| ProviderCount {
                provider: p.name().to_string(),
                images: self.providers.get(p).copied().unwrap_or(0),
            })
            .collect();
    }
}
