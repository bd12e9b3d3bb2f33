//! Pack: stream the labelled images, in labels.csv order, through normalize and encode on
//! a CPU pool and into one writer per chosen output format (see [`format`]: each format is
//! a plug-in of the registry), then write the dataset card and checksums and move
//! everything into place.
//!
//! Images are processed in fixed chunks: the pool works on a chunk (waiting for each image
//! from the [`ImageSource`], then decoding, resizing and compressing it) while the
//! previous chunk's results are written in row order. Output therefore does not depend on
//! the number of threads or on the order in which images arrive, and memory stays bounded
//! by a few chunks whatever the dataset size. Every file is written in a staging directory
//! inside the output directory and renamed into place only when all are complete.

mod card;
mod croissant;
pub mod format;
mod idx;
mod images;
mod mnist;
mod npz;
mod options;
mod parquet;
pub mod read;
mod stream;
pub mod webdataset;
mod zip;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rayon::prelude::*;

use crate::decode::{self, SourceLayout};
use crate::encode::{self, EncodeError};
use crate::layout::size_dir_name;
use crate::metadata::{Dataset, ImageId, ImageRecord, Label, Provider, Split};
use crate::normalize::{self, NormalizeError};
use crate::progress::Progress;

pub use crate::layout::{CROISSANT, SHA256SUMS};
pub use crate::out::Artifact;
pub use crate::out::checksums::{hash_file, hash_reader, parse as parse_sums, sha256_hex};
use crate::out::{BuildRecord, CommitError, staging};
pub(crate) use format::{FinishContext, FormatWriter, PackedRow, StoredImage};
pub use format::{Formats, help as format_help};
use format::{Payload, Payloads, WriterContext};
pub use idx::{idx_images_name, idx_labels_name};
pub use images::images_dir_name;
pub use mnist::{mnist_images_name, mnist_labels_name};
pub use npz::{npz_images_name, npz_labels_name};
pub use options::PackOptions;
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
    /// Its pixels, when already decoded by [`decode::decode_jpeg`] (as the fetcher's
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
    Record(#[from] crate::out::RecordError),
    /// `--out` cannot take this build; nothing in it was changed.
    #[error(transparent)]
    Out(#[from] crate::out::OutError),
    /// Staging or committing the build failed; the previous build is as it was unless
    /// the commit had begun.
    #[error(transparent)]
    Commit(#[from] CommitError),
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
            PackError::Commit(e) => e.exit_code(),
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

/// Time spent per step. Worker steps (decode .. jpeg) are summed over threads, so they
/// are CPU seconds; the others are wall seconds of the writing thread.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageSeconds {
    /// Writing thread blocked waiting for the pool (and so for the source).
    pub waiting: f64,
    pub decode: f64,
    pub resize: f64,
    /// RGB pixel rows deflated (idx, npz).
    pub deflate: f64,
    /// Gray conversion and deflate of the gray rows (mnist).
    pub gray: f64,
    pub png: f64,
    pub jpeg: f64,
    /// Writing each format's files, by its `--formats` name (listed beside the other
    /// fields in report.json).
    #[serde(flatten)]
    pub formats: BTreeMap<String, f64>,
    pub card_and_checksums: f64,
    pub total: f64,
}

/// What the pool made of one image.
struct Encoded {
    payloads: Payloads,
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
    gray: Duration,
    png: Duration,
    jpeg: Duration,
}

enum Outcome {
    Missing,
    Undecodable(String),
    Packed(Box<Encoded>),
    Failed(EncodeError),
}

/// Normalize, encode and pack every labelled image of `dataset` into `out`. With several
/// sizes (`opts.sizes`), see [`pack_sizes`]; this returns the first size's summary.
pub fn pack(
    dataset: &Dataset,
    source: &dyn ImageSource,
    opts: &PackOptions,
    out: &Path,
    progress: &Progress,
) -> Result<PackSummary, PackError> {
    let mut summaries = pack_sizes(dataset, source, opts, out, progress)?;
    Ok(summaries.swap_remove(0))
}

/// Pack every size of `opts` (its `sizes`, or `size` alone) from one pass over the
/// images: each is fetched and decoded once, then normalized and encoded per size on the
/// same pool. One size is written into `out` itself; several each get a complete build in
/// `out/size-{S}/` (see [`size_dir_name`]), and `out` a record of them written last.
/// Returns one summary per size, in `opts.sizes` order.
pub fn pack_sizes(
    dataset: &Dataset,
    source: &dyn ImageSource,
    opts: &PackOptions,
    out: &Path,
    progress: &Progress,
) -> Result<Vec<PackSummary>, PackError> {
    let started = Instant::now();
    let sizes = opts.all_sizes();
    if let Some(&size) = sizes
        .iter()
        .find(|&&s| s == 0 || s > normalize::MAX_IMAGE_EDGE)
    {
        return Err(PackError::BadSize { size });
    }
    if opts.formats.is_empty() {
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

    // Refuse a directory that is not ours before any work (the pipeline did so before
    // fetching; the directory may have changed since), and a symlinked or blocked format
    // directory before any image is packed (the commit checks every path again).
    check_out(out, opts)?;
    let several = sizes.len() > 1;
    // One build per size: its options and its directory.
    let builds: Vec<(PackOptions, PathBuf)> = sizes
        .iter()
        .map(|&size| {
            let dir = if several {
                out.join(size_dir_name(size))
            } else {
                out.to_path_buf()
            };
            (opts.for_size(size), dir)
        })
        .collect();
    let created: Vec<bool> = builds.iter().map(|(_, dir)| !dir.exists()).collect();
    let remove_created = || {
        // A size directory this run created and left empty goes again.
        for ((_, dir), &created) in builds.iter().zip(&created) {
            if created && several {
                let _ = std::fs::remove_dir(dir);
            }
        }
    };
    let prepared = match pack_builds(dataset, source, &builds, &pool, progress) {
        Ok(p) => p,
        Err(e) => {
            remove_created();
            return Err(e);
        }
    };
    // Every size passed every check of its commit: only now is anything replaced.
    let mut record = build_record(dataset, &builds[0].0, &prepared[0].1);
    if several {
        record.sizes = sizes;
        let planned: Vec<(u32, &[String])> = builds
            .iter()
            .zip(&prepared)
            .map(|((o, _), (p, _, _))| (o.size, p.files()))
            .collect();
        staging::claim_sizes(out, &record, &planned)?;
    }
    let mut summaries = Vec::new();
    for (prepared, mut summary, t) in prepared {
        let (artifacts, removed) = prepared.apply()?;
        summary.artifacts = artifacts;
        summary.removed_stale = removed;
        summary.seconds.card_and_checksums = t.elapsed().as_secs_f64();
        summary.seconds.total = started.elapsed().as_secs_f64();
        summaries.push(summary);
    }
    if several {
        staging::commit_sizes(out, record)?;
    }
    Ok(summaries)
}

/// Refuse, before anything is fetched or packed, an `out` a pack with `opts` could not
/// commit into: one that is not kaokore's (see [`crate::record::check_out`]), a format
/// directory that is a symlink or a file, and with several sizes the same for each
/// `size-{S}/`.
pub fn check_out(out: &Path, opts: &PackOptions) -> Result<(), PackError> {
    crate::out::check_out(out)?;
    let sizes = opts.all_sizes();
    if let [size] = sizes[..] {
        staging::check_dirs(out, &format_dirs(&opts.for_size(size)))?;
        return Ok(());
    }
    let dirs: Vec<String> = sizes.iter().map(|&s| size_dir_name(s)).collect();
    staging::check_dirs(out, &dirs)?;
    for (&size, dir) in sizes.iter().zip(&dirs) {
        let dir = out.join(dir);
        crate::out::check_out(&dir)?;
        staging::check_dirs(&dir, &format_dirs(&opts.for_size(size)))?;
    }
    Ok(())
}

/// Stage every build, run the images through all of them, then prepare each commit:
/// one prepared commit per build, with its summary and when its commit began.
fn pack_builds(
    dataset: &Dataset,
    source: &dyn ImageSource,
    builds: &[(PackOptions, PathBuf)],
    pool: &rayon::ThreadPool,
    progress: &Progress,
) -> Result<Vec<(staging::Prepared, PackSummary, Instant)>, PackError> {
    let mut stagings = Vec::new();
    for (_, dir) in builds {
        // Dropping a staging on any error below removes everything written so far.
        stagings.push(staging::Staging::create(dir)?);
    }
    // Only the first build reports progress: every build sees the same rows.
    let hidden = Progress::hidden("pack", 0);
    let mut sinks = builds
        .iter()
        .zip(&stagings)
        .enumerate()
        .map(|(i, ((o, _), staging))| {
            RowSink::new(staging, dataset, o, if i == 0 { progress } else { &hidden })
        })
        .collect::<Result<Vec<_>, PackError>>()?;
    let packable: Vec<&ImageRecord> = dataset.packable().collect();
    for sink in &mut sinks {
        sink.summary.labelled_without_url = dataset.labelled.len() - packable.len();
    }
    let opts = &builds[0].0;
    run_chunks(pool, &packable, source, opts, &mut sinks)?;
    source.confirm().map_err(PackError::Withheld)?;
    let mut finished = Vec::new();
    for sink in sinks {
        let (summary, produced, hashed) = sink.finish()?;
        if opts.refuse_undecodable && !summary.undecodable.is_empty() {
            return Err(PackError::Undecodable(summary.undecodable));
        }
        finished.push((summary, produced, hashed));
    }

    let mut prepared = Vec::new();
    for ((staging, (summary, mut produced, hashed)), (o, _)) in
        stagings.into_iter().zip(finished).zip(builds)
    {
        let t = Instant::now();
        produced.extend(card::write(&staging, dataset, o, &summary)?);
        let record = build_record(dataset, o, &summary);
        let describe = |artifacts: &[Artifact]| {
            let text = croissant::render(dataset, o, &summary, artifacts);
            vec![(CROISSANT.to_string(), text)]
        };
        let p = pool.install(|| staging.prepare(produced, hashed, record, describe))?;
        prepared.push((p, summary, t));
    }
    Ok(prepared)
}

/// The directories of `--out` the chosen formats write into (`idx`, `npz`...).
fn format_dirs(opts: &PackOptions) -> Vec<String> {
    opts.formats
        .iter()
        .flat_map(|f| f.dirs(opts.size))
        .collect()
}

/// The record of this build (see [`crate::record`]); the commit fills in its files.
fn build_record(dataset: &Dataset, opts: &PackOptions, summary: &PackSummary) -> BuildRecord {
    BuildRecord {
        kaokore_build: crate::out::record::RECORD_LAYOUT,
        dataset_version: dataset.version.to_string(),
        size: opts.size,
        formats: opts.formats.names().into_iter().map(String::from).collect(),
        rows: summary
            .splits
            .iter()
            .map(|s| (s.split.name().to_string(), s.packed))
            .collect(),
        files: Vec::new(),
        sizes: Vec::new(),
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
    sinks: &mut [RowSink<'_>],
) -> Result<(), PackError> {
    let abort = AtomicBool::new(false);
    let needs = Needs::of(opts);
    let sizes: Vec<u32> = sinks.iter().map(|s| s.summary.size).collect();
    let sizes = &sizes[..];
    // One outcome per size, in `sinks` order.
    let work = |record: &&ImageRecord| -> Vec<Outcome> {
        if abort.load(Ordering::Relaxed) {
            // The pack failed; nothing will be written.
            return sizes.iter().map(|_| Outcome::Missing).collect();
        }
        match source.image(record) {
            None => sizes.iter().map(|_| Outcome::Missing).collect(),
            Some(delivered) => encode_image(delivered, sizes, needs),
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
                    let (tx, rx) = mpsc::sync_channel::<Vec<Vec<Outcome>>>(1);
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
                sinks[0].summary.seconds.waiting += waited.elapsed().as_secs_f64();
                for (record, per_size) in chunk.iter().zip(outcomes) {
                    for (sink, outcome) in sinks.iter_mut().zip(per_size) {
                        sink.accept(record, outcome)?;
                    }
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
    /// Each chosen format's writer, with its name (its timer in the summary).
    writers: Vec<(&'static str, Box<dyn FormatWriter + 'a>)>,
    tally: Tally,
    summary: PackSummary,
    progress: &'a Progress,
}

impl<'a> RowSink<'a> {
    fn new(
        staging: &'a staging::Staging,
        dataset: &'a Dataset,
        opts: &'a PackOptions,
        progress: &'a Progress,
    ) -> Result<RowSink<'a>, PackError> {
        let mut expected = [0u64; 3];
        for label in dataset.packable().filter_map(|r| r.label) {
            expected[label.split.index()] += 1;
        }
        let ctx = WriterContext {
            sink: staging,
            dataset,
            opts,
            expected,
        };
        let writers = opts
            .formats
            .iter()
            .map(|f| Ok((f.name(), f.create(&ctx)?)))
            .collect::<Result<_, PackError>>()?;
        Ok(RowSink {
            staging,
            writers,
            tally: Tally::new(dataset),
            summary: PackSummary {
                size: opts.size,
                ..PackSummary::default()
            },
            progress,
        })
    }

    /// Add `t`'s time since it started to format `name`'s timer.
    fn time(&mut self, name: &str, t: Instant) {
        *self
            .summary
            .seconds
            .formats
            .entry(name.to_string())
            .or_default() += t.elapsed().as_secs_f64();
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
                    reason: e,
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
        self.tally.add(record, label, &encoded, &mut self.summary);
        let row = PackedRow {
            split: label.split,
            record,
            label,
            payloads: encoded.payloads,
        };
        if let Some(segment) = row.payloads.rgb.as_ref() {
            self.summary.pixel_bytes += segment.len;
            self.summary.pixel_deflate_bytes += segment.data.len() as u64;
        }
        for k in 0..self.writers.len() {
            let t = Instant::now();
            self.writers[k].1.write_row(&row)?;
            self.time(self.writers[k].0, t);
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
            sink: self.staging,
            hashed: &mut hashed,
        };
        for (name, w) in self.writers {
            let t = Instant::now();
            produced.extend(w.finish(&mut ctx)?);
            *self
                .summary
                .seconds
                .formats
                .entry(name.to_string())
                .or_default() += t.elapsed().as_secs_f64();
        }
        self.tally.finish(&mut self.summary);
        Ok((self.summary, produced, hashed))
    }
}

/// The payloads the chosen formats need, decided once per pack.
#[derive(Clone, Copy)]
struct Needs {
    rgb: bool,
    gray: bool,
    lossless: bool,
    jpeg: bool,
}

impl Needs {
    fn of(opts: &PackOptions) -> Needs {
        let f = &opts.formats;
        Needs {
            rgb: f.need(Payload::RgbPixels),
            gray: f.need(Payload::GrayPixels),
            lossless: f.need(Payload::LosslessFile),
            jpeg: f.need(Payload::JpegFile),
        }
    }
}

/// Decode one fetched image once, then normalize and encode it for each of `sizes` into
/// the payloads the formats need: one outcome per size.
fn encode_image(delivered: Delivered, sizes: &[u32], needs: Needs) -> Vec<Outcome> {
    let t = Instant::now();
    let bytes = &delivered.bytes[..];
    let decoded = match delivered.decoded {
        Some(image) => decode::Decoded::jpeg(bytes, image),
        None => match decode::decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                let reason = NormalizeError::from(e).to_string();
                return sizes
                    .iter()
                    .map(|_| Outcome::Undecodable(reason.clone()))
                    .collect();
            }
        },
    };
    let decode_time = t.elapsed();
    let source = decoded.source;
    let t = Instant::now();
    let rgb = normalize::to_rgb(decoded.image);
    let convert_time = t.elapsed();
    let (width, height) = rgb.dimensions();
    let unresized = |size: u32| width == size && height == size;
    // Each size is resized from the same pixels, borrowed; the size the image already
    // has (sizes are distinct: at most one) comes last and takes them without a copy.
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| unresized(sizes[i]));
    let mut rgb = Some(rgb);
    let mut outcomes: Vec<Option<Outcome>> = sizes.iter().map(|_| None).collect();
    for (n, i) in order.into_iter().enumerate() {
        let size = sizes[i];
        let t = Instant::now();
        let normalized = match (unresized(size), &rgb) {
            (true, _) => rgb.take().map(|image| Ok((image.into_raw(), false))),
            (false, Some(image)) => Some(normalize::resize(image, size).map(|p| (p, true))),
            (false, None) => None,
        };
        let times = WorkerTimes {
            // The decode and the conversion to RGB are counted once, with the first size.
            decode: if n == 0 { decode_time } else { Duration::ZERO },
            resize: t.elapsed() + if n == 0 { convert_time } else { Duration::ZERO },
            ..WorkerTimes::default()
        };
        outcomes[i] = Some(match normalized {
            Some(Ok((pixels, resized))) => {
                encode_size(bytes, pixels, resized, source, size, needs, times)
            }
            Some(Err(e)) => Outcome::Undecodable(e.to_string()),
            None => Outcome::Failed(EncodeError::Internal("the pixels of a size were taken")),
        });
    }
    outcomes.into_iter().flatten().collect()
}

/// Encode the payloads the formats need from `pixels`, normalized to S x S.
fn encode_size(
    bytes: &[u8],
    pixels: Vec<u8>,
    resized: bool,
    source: decode::SourceImage,
    size: u32,
    needs: Needs,
    times: WorkerTimes,
) -> Outcome {
    let image = normalize::NormalizedImage {
        pixels,
        size,
        source,
        resized,
    };
    let keep = image.source_is_final_jpeg();
    let run = || -> Result<Encoded, EncodeError> {
        let mut e = Encoded {
            payloads: Payloads::default(),
            layout: source.layout,
            resized,
            kept_jpeg: keep,
            times,
        };
        let p = &mut e.payloads;
        if needs.rgb {
            let t = Instant::now();
            p.rgb = Some(encode::deflate_pixels(&image.pixels)?);
            e.times.deflate = t.elapsed();
        }
        if needs.gray {
            let t = Instant::now();
            p.gray = Some(encode::deflate_pixels(&normalize::to_gray(&image.pixels))?);
            e.times.gray = t.elapsed();
        }
        if needs.lossless {
            p.lossless = Some(if keep {
                StoredImage {
                    bytes: bytes.to_vec(),
                    extension: "jpg",
                }
            } else {
                let t = Instant::now();
                let png = encode::encode_png(&image.pixels, size)?;
                e.times.png = t.elapsed();
                StoredImage {
                    bytes: png,
                    extension: "png",
                }
            });
        }
        if needs.jpeg {
            p.jpeg = Some(if keep {
                bytes.to_vec()
            } else {
                let t = Instant::now();
                let jpeg = encode::encode_jpeg(&image.pixels, size)?;
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
struct Tally {
    per_split: [(u64, Vec<u64>, Vec<u64>); 3],
    providers: BTreeMap<Provider, u64>,
    gender_names: Vec<String>,
    status_names: Vec<String>,
}

impl Tally {
    fn new(dataset: &Dataset) -> Tally {
        let g = dataset.class_names.gender.len();
        let s = dataset.class_names.status.len();
        Tally {
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
        s.gray += e.times.gray.as_secs_f64();
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
