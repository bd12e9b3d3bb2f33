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
mod preview;
mod produce;
pub mod read;
mod schedule;
mod stream;
mod summary;
pub mod tfds;
pub mod webdataset;
mod zip;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::encode::EncodeError;
use crate::layout::size_dir_name;
use crate::metadata::{Dataset, ImageId, ImageRecord, Split};
use crate::normalize;
use crate::progress::Progress;

pub use crate::layout::{CROISSANT, SHA256SUMS};
pub use crate::out::Artifact;
pub use crate::out::checksums::{hash_file, hash_reader, parse as parse_sums, sha256_hex};
use crate::out::{BuildRecord, CommitError, staging};
pub(crate) use format::{FinishContext, FormatWriter, PackedRow, StoredImage};
pub use format::{Formats, help as format_help};
pub use idx::{idx_images_name, idx_labels_name};
pub use images::images_dir_name;
pub use mnist::{mnist_images_name, mnist_labels_name};
pub use npz::{npz_images_name, npz_labels_name};
pub use options::PackOptions;
pub use parquet::{arrow_schema, huggingface_features, parquet_name};
pub use produce::ImageChain;
pub use summary::{
    ClassCount, NormalizationCounts, PackSummary, ProviderCount, SplitSummary, StageSeconds,
    Undecodable,
};

/// Where pack gets image bytes. `image` blocks until the image is known (so a build can
/// overlap fetching and packing) and returns `None` if it could not be fetched.
pub trait ImageSource: Sync {
    fn image(&self, record: &ImageRecord) -> Option<Delivered>;

    /// Pack has failed: stop blocking in `image`, nothing more will be used.
    fn abandon(&self) {}

    /// Every image was asked for; the source's last word before anything in the output
    /// directory is replaced. An error abandons the pack and leaves `out` as it was (a
    /// build whose fetch cannot deliver, an interrupted run).
    fn confirm(&self) -> Result<(), Withheld> {
        Ok(())
    }
}

/// Why a source withheld its confirmation ([`ImageSource::confirm`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Withheld {
    #[error("interrupted")]
    Interrupted,
    /// The source cannot deliver the build; in the words of whoever decided it (a fetch
    /// short of images, a cache that could not give them).
    #[error("{0}")]
    NotDelivered(String),
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
    Withheld(Withheld),
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

/// Run every labelled image of `dataset` through `chain` (decode, normalize), encode it
/// and pack it into `out`. With several sizes (`opts.sizes`), see [`pack_sizes`]; this
/// returns the first size's summary.
pub fn pack(
    dataset: &Dataset,
    source: &dyn ImageSource,
    chain: &ImageChain,
    opts: &PackOptions,
    out: &Path,
    progress: &Progress,
) -> Result<PackSummary, PackError> {
    let mut summaries = pack_sizes(dataset, source, chain, opts, out, progress)?;
    Ok(summaries.swap_remove(0))
}

/// Pack every size of `opts` (its `sizes`, or `size` alone) from one pass over the
/// images: each is fetched and decoded once, then normalized and encoded per size on the
/// same pool. One size is written into `out` itself; several each get a complete build in
/// `out/size-{S}/` (see [`size_dir_name`]), committed together with `out`'s record of them.
/// Returns one summary per size, in `opts.sizes` order. `out` is opened here; a run that
/// holds it locked passes its handle to [`pack_sizes_in`] instead.
pub fn pack_sizes(
    dataset: &Dataset,
    source: &dyn ImageSource,
    chain: &ImageChain,
    opts: &PackOptions,
    out: &Path,
    progress: &Progress,
) -> Result<Vec<PackSummary>, PackError> {
    check_out(out, opts)?;
    let dir = crate::out::OutDir::create(out)?;
    pack_sizes_in(dataset, source, chain, opts, &dir, progress)
}

/// [`pack_sizes`] into `out`, held open since the run began: every write phase first
/// checks that the path still leads to it.
pub fn pack_sizes_in(
    dataset: &Dataset,
    source: &dyn ImageSource,
    chain: &ImageChain,
    opts: &PackOptions,
    out_dir: &crate::out::OutDir,
    progress: &Progress,
) -> Result<Vec<PackSummary>, PackError> {
    let out = out_dir.path();
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
    out_dir.check_same()?;
    let several = sizes.len() > 1;
    // One build per size: its options and its directory, relative to `out`.
    let builds: Vec<(PackOptions, String)> = sizes
        .iter()
        .map(|&size| {
            let dir = if several {
                size_dir_name(size)
            } else {
                String::new()
            };
            (opts.for_size(size), dir)
        })
        .collect();
    // Any failure while `out` was moved away is that move: a file written through the
    // old path, say, is now missing.
    let replaced = |e: PackError| match out_dir.check_same() {
        Err(moved) => PackError::Out(moved),
        Ok(()) => e,
    };
    let prepared =
        pack_builds(dataset, source, chain, out, &builds, &pool, progress).map_err(replaced)?;
    // Every size passed every check of its staging: the commit checks every destination,
    // then replaces the previous build.
    let mut record = build_record(dataset, &builds[0].0, &prepared[0].1);
    if several {
        record.sizes = sizes;
    }
    let (prepared, mut summaries): (Vec<_>, Vec<_>) = prepared
        .into_iter()
        .map(|(p, summary, t)| (p, (summary, t)))
        .unzip();
    let committed = staging::commit(out_dir, record, prepared).map_err(|e| replaced(e.into()))?;
    let mut result = Vec::new();
    for ((mut summary, t), (artifacts, removed)) in summaries.drain(..).zip(committed) {
        summary.artifacts = artifacts;
        summary.removed_stale = removed;
        summary.seconds.card_and_checksums = t.elapsed().as_secs_f64();
        summary.seconds.total = started.elapsed().as_secs_f64();
        result.push(summary);
    }
    Ok(result)
}

/// Refuse, before anything is fetched or packed, an `out` a pack with `opts` could not
/// commit into: one that is not kaokore's (see [`crate::out::check_out`]), a format
/// directory that is a symlink or a file, and with several sizes the same for each
/// `size-{S}/` (unless `out`'s record lists it: see [`crate::out::check_size_dir`]).
pub fn check_out(out: &Path, opts: &PackOptions) -> Result<(), PackError> {
    let top = crate::out::check_out(out)?;
    let sizes = opts.all_sizes();
    if let [size] = sizes[..] {
        staging::check_dirs(out, &format_dirs(&opts.for_size(size)))?;
        return Ok(());
    }
    let dirs: Vec<String> = sizes.iter().map(|&s| size_dir_name(s)).collect();
    staging::check_dirs(out, &dirs)?;
    for (&size, dir_name) in sizes.iter().zip(&dirs) {
        crate::out::check_size_dir(out, top.as_ref(), dir_name)?;
        staging::check_dirs(&out.join(dir_name), &format_dirs(&opts.for_size(size)))?;
    }
    Ok(())
}

/// Stage every build, run the images through all of them, then prepare each commit:
/// one prepared commit per build, with its summary and when its commit began.
fn pack_builds(
    dataset: &Dataset,
    source: &dyn ImageSource,
    chain: &ImageChain,
    out: &Path,
    builds: &[(PackOptions, String)],
    pool: &rayon::ThreadPool,
    progress: &Progress,
) -> Result<Vec<(staging::Prepared, PackSummary, Instant)>, PackError> {
    let mut stagings = Vec::new();
    for (_, dir) in builds {
        // Dropping a staging on any error below removes everything written so far.
        stagings.push(staging::Staging::create_for(out, dir)?);
    }
    // Only the first build reports progress: every build sees the same rows.
    let hidden = Progress::hidden("pack", 0);
    let mut sinks = builds
        .iter()
        .zip(&stagings)
        .enumerate()
        .map(|(i, ((o, _), staging))| {
            schedule::RowSink::new(staging, dataset, o, if i == 0 { progress } else { &hidden })
        })
        .collect::<Result<Vec<_>, PackError>>()?;
    let packable: Vec<&ImageRecord> = dataset.packable().collect();
    for sink in &mut sinks {
        sink.summary.labelled_without_url = dataset.labelled.len() - packable.len();
    }
    let opts = &builds[0].0;
    schedule::run_chunks(pool, &packable, source, chain, opts, &mut sinks)?;
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
        dirs: Vec::new(),
        in_progress: false,
    }
}

/// One value per split, in `Split::ALL` order.
fn per_split<T>(mut make: impl FnMut(Split) -> Result<T, PackError>) -> Result<[T; 3], PackError> {
    let [a, b, c] = Split::ALL;
    Ok([make(a)?, make(b)?, make(c)?])
}
