//! Wires the stages together: the only place that knows their order.
//!
//! `metadata -> fetch -> normalize -> encode -> pack`, with `build` overlapping fetch and
//! pack (pack consumes images in labels.csv order as the fetcher delivers them), and
//! `verify` re-reading what pack wrote.
//!
//! A build replaces what is in `--out` only if it delivers: a fetch with a shortfall
//! ([`crate::fetch::shortfalls`]), a failed pack or an interruption (`cfg.stop`) leaves
//! `--out` as it was, and each side stops the other within seconds.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::config::BuildConfig;
use crate::error::{Error, NotDelivered};
use image::DynamicImage;

use crate::decode::{self, DecodeError, Decoded};
use crate::fetch::{
    Cache, CheckedImage, FetchError, FetchOutcome, FetchRequest, FetchSummary, OnChecked,
};
use crate::fetch::{MaxMissing, Shortfall, group_failures, shortfalls};
use crate::info::DatasetInfo;
use crate::metadata::{
    Dataset, DatasetVersion, ImageId, ImageRecord, MetadataError, MetadataFiles,
};
use crate::normalize;
use crate::out::OutLock;
use crate::pack::{Delivered, ImageChain, ImageSource, PackError, PackSummary, Withheld};
use crate::progress::Progress;
use crate::report::{BuildReport, Stage};
use crate::verify::VerifyReport;

/// The stages each image goes through between fetch and encode, in order: decode (or
/// take the pixels the fetcher's validation decoded), convert to 8-bit RGB, resize to each
/// size. Pack runs it on its pool, then encodes what the formats need.
pub const IMAGE_CHAIN: ImageChain = ImageChain {
    decode: decode_delivered,
    to_rgb: normalize::to_rgb,
    resize: normalize::resize,
};

/// A delivered file's pixels: those the fetcher decoded when it validated the file, else
/// decoded now.
fn decode_delivered(bytes: &[u8], decoded: Option<DynamicImage>) -> Result<Decoded, DecodeError> {
    match decoded {
        Some(image) => Ok(Decoded::jpeg(bytes, image)),
        None => decode::decode(bytes),
    }
}

/// Parse the embedded files of `version`, or an upstream-layout directory.
pub fn load_dataset(version: DatasetVersion, dir: Option<&Path>) -> Result<Dataset, Error> {
    let Some(dir) = dir else {
        return Ok(Dataset::parse(version, MetadataFiles::embedded(version))?);
    };
    let files = MetadataFiles::read_dir(dir)?;
    // Name the file by its path, so the user can open it at the line.
    Dataset::parse(version, files).map_err(|e| match e {
        MetadataError::Invalid {
            file,
            line,
            message,
        } => MetadataError::Invalid {
            file: dir.join(file).display().to_string(),
            line,
            message,
        }
        .into(),
        other => other.into(),
    })
}

/// `kaokore info`: the figures of a version and how much of it the cache holds.
pub fn info(dataset: &Dataset, cache_dir: &Path) -> Result<DatasetInfo, Error> {
    // Only look at a cache that exists: `info` must not create one.
    if !cache_dir.is_dir() {
        return Ok(DatasetInfo::of(dataset, None));
    }
    // Looking only: nothing in the cache is created or removed.
    let cache = Cache::open_to_read(cache_dir);
    let shown = cache_dir.display().to_string();
    let probe = |url: &str| cache.present(url);
    Ok(DatasetInfo::of(dataset, Some((&shown, &probe))))
}

/// Files the fetcher checked (bytes and pixels) are kept for pack only for images at
/// most this many rows ahead of the last one pack asked for...
const CHECKED_AHEAD: usize = 256;
/// ... and only up to this many bytes in all. An image that comes earlier is read (and
/// checked) again from the cache, so memory stays bounded whatever the order of arrival.
const CHECKED_BUDGET: usize = 128 << 20;

/// Images the pack stage receives during `build`: it waits for the fetcher to finish each
/// one, so packing overlaps the network instead of following it.
struct Arrivals<'a> {
    cache: &'a Cache,
    /// The user's stop request: withholds the confirmation.
    stop: &'a AtomicBool,
    /// `--max-missing`: images not fetched and images fetched but not delivered to pack
    /// (a cache entry gone or replaced meanwhile) count together.
    limit: MaxMissing,
    /// Row of each packable image, in labels.csv order.
    rows: HashMap<ImageId, usize>,
    state: Mutex<ArrivalState>,
    changed: Condvar,
}

#[derive(Default)]
struct ArrivalState {
    /// Fetch outcome per image: true when it is in the cache.
    done: HashMap<ImageId, bool>,
    /// The fetcher has stopped: an image not in `done` will never come. With it, whether
    /// the fetch delivers what the build needs (the reason when not).
    finished: bool,
    verdict: Option<Result<(), Withheld>>,
    /// Pack failed: nobody waits for images any more.
    abandoned: bool,
    /// Images the fetcher did not deliver (its failures), once it has finished.
    not_fetched: usize,
    /// Images the fetcher delivered that the cache could no longer give.
    undelivered: usize,
    /// Files the fetcher checked, waiting for pack, and their size in bytes.
    checked: HashMap<ImageId, Delivered>,
    checked_bytes: usize,
    /// One past the last row pack asked for.
    asked: usize,
}

/// The memory a checked file holds: its bytes and its pixels.
fn held_bytes(d: &Delivered) -> usize {
    d.bytes.len() + d.decoded.as_ref().map_or(0, |i| i.as_bytes().len())
}

impl<'a> Arrivals<'a> {
    fn new(
        cache: &'a Cache,
        packable: &[FetchRequest],
        stop: &'a AtomicBool,
        limit: MaxMissing,
    ) -> Self {
        Arrivals {
            cache,
            stop,
            limit,
            rows: packable
                .iter()
                .enumerate()
                .map(|(i, r)| (r.id, i))
                .collect(),
            state: Mutex::new(ArrivalState::default()),
            changed: Condvar::new(),
        }
    }

    /// Keep the file the fetcher checked if pack will want it soon.
    fn checked(&self, id: ImageId, image: CheckedImage) {
        let Some(&row) = self.rows.get(&id) else {
            return;
        };
        let delivered = Delivered {
            bytes: image.bytes,
            decoded: image.pixels,
        };
        let size = held_bytes(&delivered);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if row < state.asked + CHECKED_AHEAD && state.checked_bytes + size <= CHECKED_BUDGET {
            state.checked_bytes += size;
            state.checked.insert(id, delivered);
        }
    }

    fn arrived(&self, id: ImageId, ok: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.done.insert(id, ok);
        self.changed.notify_all();
    }

    /// The fetcher has stopped, with its verdict on the build and the number of images
    /// it could not fetch; the first call counts.
    fn finish(&self, verdict: Result<(), Withheld>, not_fetched: usize) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.finished {
            state.finished = true;
            state.verdict = Some(verdict);
            state.not_fetched = not_fetched;
        }
        self.changed.notify_all();
    }

    /// Images fetched that pack could not have, because their cache entry was gone or
    /// replaced by then.
    #[cfg(test)]
    fn undelivered(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .undelivered
    }

    /// The shortfall of images not fetched and images fetched but not delivered, together
    /// held to `--max-missing`; `None` when none was lost after the fetch (the fetcher's
    /// verdict then covers the rest).
    fn lost_after_fetch(&self) -> Option<Shortfall> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let missing = state.not_fetched + state.undelivered;
        let requested = self.rows.len();
        (state.undelivered > 0 && self.limit.exceeded(missing, requested)).then_some(
            Shortfall::TooManyMissing {
                missing,
                requested,
                limit: self.limit,
            },
        )
    }
}

/// Ends the arrivals when the fetcher thread ends, even by a panic: pack must not wait
/// for images that will never come.
struct FinishOnDrop<'a, 'b>(&'b Arrivals<'a>);

impl Drop for FinishOnDrop<'_, '_> {
    fn drop(&mut self) {
        self.0.finish(
            Err(Withheld::NotDelivered(
                "the fetcher stopped unexpectedly".into(),
            )),
            0,
        );
    }
}

impl ImageSource for Arrivals<'_> {
    fn image(&self, record: &ImageRecord) -> Option<Delivered> {
        let url = record.url.as_deref()?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(&row) = self.rows.get(&record.id) {
            state.asked = state.asked.max(row + 1);
        }
        let ok = loop {
            if let Some(&ok) = state.done.get(&record.id) {
                break ok;
            }
            if state.finished || state.abandoned {
                break false;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        };
        let checked = state.checked.remove(&record.id);
        if let Some(image) = &checked {
            state.checked_bytes -= held_bytes(image);
        }
        drop(state);
        if !ok {
            return None;
        }
        if checked.is_some() {
            return checked;
        }
        // Read and checked once: what is packed is what was checked, even if another
        // process sharing the cache replaces the entry meanwhile.
        let bytes = self.cache.read(url);
        if bytes.is_none() {
            let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
            state.undelivered += 1;
        }
        Some(bytes?.into())
    }

    fn abandon(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.abandoned = true;
        self.changed.notify_all();
    }

    /// Wait for the fetcher's verdict: pack commits only a build that delivers.
    fn confirm(&self) -> Result<(), Withheld> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        while !state.finished {
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
        if self.stop.load(Ordering::Relaxed) {
            return Err(Withheld::Interrupted);
        }
        let verdict = state.verdict.clone().unwrap_or(Ok(()));
        drop(state);
        verdict?;
        match self.lost_after_fetch() {
            Some(short) => Err(Withheld::NotDelivered(short.to_string())),
            None => Ok(()),
        }
    }
}

/// Images straight from the cache (`pack`, and `build --strict` once all is fetched): no
/// network, missing ones are missing.
struct CacheSource<'a> {
    cache: &'a Cache,
    cfg: &'a BuildConfig,
    /// Images pack asks for, and how many of them the cache could not give (an entry that
    /// failed its check on reading is evicted, so it counts here).
    requested: usize,
    undelivered: AtomicUsize,
}

impl<'a> CacheSource<'a> {
    fn new(cache: &'a Cache, cfg: &'a BuildConfig, dataset: &Dataset) -> Self {
        CacheSource {
            cache,
            cfg,
            requested: dataset.packable().count(),
            undelivered: AtomicUsize::new(0),
        }
    }
}

impl ImageSource for CacheSource<'_> {
    fn image(&self, record: &ImageRecord) -> Option<Delivered> {
        if self.cfg.stop.load(Ordering::Relaxed) {
            return None;
        }
        let bytes = self.cache.read(record.url.as_deref()?);
        if bytes.is_none() {
            self.undelivered.fetch_add(1, Ordering::Relaxed);
        }
        Some(bytes?.into())
    }

    /// The up-front count of missing entries does not hash them; entries that failed
    /// their check while pack read them are held to `--strict` and `--max-missing` here,
    /// before anything is replaced.
    fn confirm(&self) -> Result<(), Withheld> {
        if self.cfg.stop.load(Ordering::Relaxed) {
            return Err(Withheld::Interrupted);
        }
        let missing = self.undelivered.load(Ordering::Relaxed);
        let limit = self.cfg.max_missing;
        if (self.cfg.strict && missing > 0) || limit.exceeded(missing, self.requested) {
            return Err(Withheld::NotDelivered(format!(
                "{missing} of {} image(s) could not be read from the cache (--max-missing {limit}{})",
                self.requested,
                if self.cfg.strict { ", --strict" } else { "" }
            )));
        }
        Ok(())
    }
}

fn requests<'a>(records: impl Iterator<Item = &'a ImageRecord>) -> Vec<FetchRequest> {
    records
        .filter_map(|r| {
            Some(FetchRequest {
                id: r.id,
                url: r.url.clone()?,
            })
        })
        .collect()
}

/// Run the fetcher over `requests`, reporting each completion to `progress` and `also`,
/// and the pixels of downloaded JPEGs to `on_decoded` when given; it stops once `stop`
/// says so. Single failures are printed only with `--verbose` (report.json has them).
fn run_fetch(
    requests: &[FetchRequest],
    cache: &Cache,
    cfg: &BuildConfig,
    progress: &Progress,
    also: &(dyn Fn(ImageId, bool) + Sync),
    on_checked: Option<&OnChecked<'_>>,
    stop: &dyn Fn() -> bool,
) -> Result<FetchSummary, FetchError> {
    let on_done = |request: &FetchRequest, outcome: &FetchOutcome| {
        let failed = matches!(outcome, FetchOutcome::Failed(_));
        if let FetchOutcome::Failed(f) = outcome
            && cfg.verbose
        {
            progress.println(&format!(
                "warning: {} {}: {}",
                f.id.file_name(),
                f.url,
                f.reason
            ));
        }
        progress.advance(failed);
        also(request.id, !failed);
    };
    crate::fetch::fetch_all_checked(requests, cache, &cfg.fetch, &on_done, on_checked, stop)
}

/// A fetch error as the pipeline reports it: a stop is the user's interruption.
fn fetch_error(e: FetchError) -> Error {
    match e {
        FetchError::Interrupted => Error::Interrupted,
        e => e.into(),
    }
}

/// `kaokore fetch`: fill the cache with every URL of the version.
pub fn fetch(cfg: &BuildConfig) -> Result<FetchSummary, Error> {
    let dataset = load_dataset(cfg.version, cfg.metadata_dir.as_deref())?;
    let cache = Cache::open(&cfg.cache)?;
    let requests = requests(dataset.with_url());
    let progress = Progress::new("fetch", requests.len() as u64, cfg.progress);
    let stop = || cfg.stop.load(Ordering::Relaxed);
    let summary = run_fetch(&requests, &cache, cfg, &progress, &|_, _| {}, None, &stop);
    progress.finish();
    let summary = summary.map_err(fetch_error)?;
    let short = shortfalls(&summary, cfg.max_missing, cfg.strict);
    if !short.is_empty() {
        return Err(Error::NotDelivered(Box::new(NotDelivered {
            command: "fetch",
            out: None,
            shortfalls: short,
            groups: group_failures(&summary.failures),
            failed: summary.failures.len(),
            report: None,
        })));
    }
    Ok(summary)
}

/// Start a timed report and load the metadata: the first stage of `build` and `pack`.
fn begin(
    command: &'static str,
    cfg: &BuildConfig,
) -> Result<(Instant, BuildReport, Dataset), Error> {
    let started = Instant::now();
    let mut report = BuildReport::start(command, cfg);
    let dataset = report.time(Stage::Metadata, || {
        load_dataset(cfg.version, cfg.metadata_dir.as_deref())
    })?;
    Ok((started, report, dataset))
}

/// Complete the counts and write report.json next to the artifacts: one per size, with
/// that size's pack summary, in each `size-{S}/` of a build of several sizes. Returns the
/// report of the first size.
fn conclude(
    mut report: BuildReport,
    started: Instant,
    dataset: &Dataset,
    cfg: &BuildConfig,
    lock: &OutLock,
    packed: Vec<PackSummary>,
) -> Result<BuildReport, Error> {
    lock.dir().check_same()?;
    report
        .seconds
        .insert(Stage::Total, started.elapsed().as_secs_f64());
    let several = packed.len() > 1;
    let mut first = None;
    for summary in packed {
        let mut r = report.clone();
        let dir = if several {
            cfg.out.join(crate::layout::size_dir_name(summary.size))
        } else {
            cfg.out.clone()
        };
        r.options.size = summary.size;
        r.pack = Some(summary);
        r.finish(dataset);
        r.write(&dir)?;
        first.get_or_insert(r);
    }
    Ok(first.unwrap_or(report))
}

/// `kaokore build`: fetch what is missing and pack, overlapping the two. A build that
/// does not deliver returns [`Error::NotDelivered`], its report written beside the cache.
pub fn build(cfg: &BuildConfig) -> Result<BuildReport, Error> {
    leave_out_as_found(cfg, build_inner)
}

/// `--out` exactly as it was when `run` fails: pack removes its staging, and an output
/// directory that did not exist before is removed again if it is empty.
fn leave_out_as_found(
    cfg: &BuildConfig,
    run: impl FnOnce(&BuildConfig) -> Result<BuildReport, Error>,
) -> Result<BuildReport, Error> {
    let existed = std::fs::symlink_metadata(&cfg.out).is_ok();
    let result = run(cfg);
    if result.is_err() && !existed {
        // Fails (harmlessly) unless the directory is empty.
        let _ = std::fs::remove_dir(&cfg.out);
    }
    result
}

fn build_inner(cfg: &BuildConfig) -> Result<BuildReport, Error> {
    let (started, mut report, dataset) = begin("build", cfg)?;
    // An --out that cannot take the build is refused before anything is fetched, and so
    // is one another run holds.
    crate::pack::check_out(&cfg.out, &cfg.pack)?;
    let lock = OutLock::acquire(&cfg.out)?;
    let cache = Cache::open(&cfg.cache)?;
    let requests = requests(dataset.packable());
    let progress = Progress::new("build", requests.len() as u64, cfg.progress);
    let interrupted = || cfg.stop.load(Ordering::Relaxed);

    if cfg.strict {
        // No partial dataset: every image must be in the cache before anything is packed.
        let fetched = report.time(Stage::Fetch, || {
            run_fetch(
                &requests,
                &cache,
                cfg,
                &progress,
                &|_, _| {},
                None,
                &interrupted,
            )
        });
        progress.finish();
        let fetched = fetched.map_err(fetch_error)?;
        let short = shortfalls(&fetched, cfg.max_missing, true);
        report.fetch = Some(fetched);
        if !short.is_empty() {
            return Err(not_delivered(report, started, &dataset, cfg, short));
        }
        let source = CacheSource::new(&cache, cfg, &dataset);
        let packed = report.time(Stage::Pack, || {
            pack_with(&dataset, &source, cfg, &lock, &Progress::hidden("pack", 0))
        });
        let packed = packed.map_err(|e| pack_error(e, cfg, &cache, &dataset))?;
        evict_undecodable(&cache, &dataset, &packed);
        return conclude(report, started, &dataset, cfg, &lock, packed);
    }

    let arrivals = Arrivals::new(&cache, &requests, &cfg.stop, cfg.max_missing);
    let pack_failed = AtomicBool::new(false);
    // The fetch stops when the user interrupts, or when pack has failed: its images
    // would be for nothing.
    let stop = || interrupted() || pack_failed.load(Ordering::Relaxed);
    let fetch_started = Instant::now();
    let (fetched, packed) = std::thread::scope(|s| {
        let fetcher = s.spawn(|| {
            let _finish = FinishOnDrop(&arrivals);
            let r = run_fetch(
                &requests,
                &cache,
                cfg,
                &Progress::hidden("fetch", 0),
                &|id, ok| arrivals.arrived(id, ok),
                Some(&|request: &FetchRequest, image| arrivals.checked(request.id, image)),
                &stop,
            );
            let verdict = match &r {
                Ok(summary) => {
                    let short = shortfalls(summary, cfg.max_missing, false);
                    match short.first() {
                        None => Ok(()),
                        Some(first) => Err(Withheld::NotDelivered(first.to_string())),
                    }
                }
                Err(e) => Err(Withheld::NotDelivered(e.to_string())),
            };
            let not_fetched = r.as_ref().map_or(0, |s| s.failures.len());
            arrivals.finish(verdict, not_fetched);
            (r, fetch_started.elapsed())
        });
        let packed = pack_with(&dataset, &arrivals, cfg, &lock, &progress);
        if packed.is_err() {
            pack_failed.store(true, Ordering::Relaxed);
        }
        (fetcher.join(), packed)
    });
    progress.finish();
    let (fetched, fetch_secs) =
        fetched.map_err(|_| Error::Internal("the fetcher panicked".into()))?;
    report
        .seconds
        .insert(Stage::Fetch, fetch_secs.as_secs_f64());
    // A stop that came after pack committed changes nothing: the build delivered.
    if interrupted() && packed.is_err() {
        return Err(Error::Interrupted);
    }
    // A pack that failed on its own (not withheld) is the error: the fetch was stopped
    // because of it.
    let packed = match packed {
        Err(e) if !matches!(e, PackError::Withheld(_)) => return Err(e.into()),
        other => other,
    };
    let fetched = fetched.map_err(fetch_error)?;
    let mut short = shortfalls(&fetched, cfg.max_missing, false);
    if short.is_empty() {
        short.extend(arrivals.lost_after_fetch());
    }
    report.fetch = Some(fetched);
    if !short.is_empty() {
        return Err(not_delivered(report, started, &dataset, cfg, short));
    }
    let packed = packed?;
    evict_undecodable(&cache, &dataset, &packed);
    conclude(report, started, &dataset, cfg, &lock, packed)
}

/// A pack error as the pipeline reports it: withheld by a stop is an interruption.
/// Undecodable images refused by `--strict` leave the cache too, so the next run fetches
/// them again.
fn pack_error(e: PackError, cfg: &BuildConfig, cache: &Cache, dataset: &Dataset) -> Error {
    match e {
        PackError::Withheld(_) if cfg.stop.load(Ordering::Relaxed) => Error::Interrupted,
        PackError::Undecodable(list) => {
            for u in &list {
                if let Some(url) = &dataset.record(u.id).url {
                    cache.evict(url);
                }
            }
            PackError::Undecodable(list).into()
        }
        e => e.into(),
    }
}

/// The error of a build that does not deliver: `--out` is untouched, and the report goes
/// beside the cache (see [`BuildConfig::failed_report_path`]).
fn not_delivered(
    mut report: BuildReport,
    started: Instant,
    dataset: &Dataset,
    cfg: &BuildConfig,
    short: Vec<Shortfall>,
) -> Error {
    report.delivered = false;
    report.shortfalls = short.iter().map(ToString::to_string).collect();
    report
        .seconds
        .insert(Stage::Total, started.elapsed().as_secs_f64());
    report.finish(dataset);
    let path = cfg.failed_report_path();
    let written = report.write_to(&path).map(|()| path);
    Error::NotDelivered(Box::new(NotDelivered {
        command: report.command,
        out: Some(cfg.out.clone()),
        shortfalls: short,
        groups: group_failures(&report.failures),
        failed: report.failures.len(),
        report: Some(written),
    }))
}

/// `kaokore pack`: normalize and pack from the cache, no network.
pub fn pack(cfg: &BuildConfig) -> Result<BuildReport, Error> {
    leave_out_as_found(cfg, pack_inner)
}

fn pack_inner(cfg: &BuildConfig) -> Result<BuildReport, Error> {
    let (started, mut report, dataset) = begin("pack", cfg)?;
    crate::pack::check_out(&cfg.out, &cfg.pack)?;
    if !cfg.cache.is_dir() {
        return Err(Error::Usage(format!(
            "no image cache at {}: run `kaokore fetch` or `kaokore build` first, or pass --cache",
            cfg.cache.display()
        )));
    }
    let cache = Cache::open(&cfg.cache)?;
    let packable: Vec<&ImageRecord> = dataset.packable().collect();
    let missing = packable
        .iter()
        .filter(|r| !cache.present(r.url.as_deref().unwrap_or_default()))
        .count();
    if missing == packable.len() && !packable.is_empty() {
        return Err(Error::Usage(format!(
            "the cache at {} holds none of the {} images of KaoKore {}: run `kaokore fetch` first",
            cfg.cache.display(),
            packable.len(),
            cfg.version
        )));
    }
    if missing > 0 {
        eprintln!(
            "{missing} of {} image(s) are not in the cache and will be left out",
            packable.len()
        );
        if cfg.strict {
            return Err(Error::Strict { failed: missing });
        }
        if cfg.max_missing.exceeded(missing, packable.len()) {
            return Err(Error::NotDelivered(Box::new(NotDelivered {
                command: "pack",
                out: Some(cfg.out.clone()),
                shortfalls: vec![Shortfall::TooManyMissing {
                    missing,
                    requested: packable.len(),
                    limit: cfg.max_missing,
                }],
                groups: Vec::new(),
                failed: missing,
                report: None,
            })));
        }
    }
    let lock = OutLock::acquire(&cfg.out)?;
    let progress = Progress::new("pack", packable.len() as u64, cfg.progress);
    let source = CacheSource::new(&cache, cfg, &dataset);
    let packed = report.time(Stage::Pack, || {
        pack_with(&dataset, &source, cfg, &lock, &progress)
    });
    progress.finish();
    let packed = packed.map_err(|e| pack_error(e, cfg, &cache, &dataset))?;
    evict_undecodable(&cache, &dataset, &packed);
    conclude(report, started, &dataset, cfg, &lock, packed)
}

/// Cache entries pack could not decode are evicted, so the next run fetches them again.
/// Every size decodes the same images: the first size's list is the list.
fn evict_undecodable(cache: &Cache, dataset: &Dataset, packed: &[PackSummary]) {
    let Some(first) = packed.first() else {
        return;
    };
    for u in &first.undecodable {
        if let Some(url) = &dataset.record(u.id).url {
            cache.evict(url);
        }
    }
}

fn pack_with(
    dataset: &Dataset,
    source: &dyn ImageSource,
    cfg: &BuildConfig,
    lock: &OutLock,
    progress: &Progress,
) -> Result<Vec<PackSummary>, PackError> {
    let out = lock.dir();
    crate::pack::pack_sizes_in(dataset, source, &IMAGE_CHAIN, &cfg.pack, out, progress)
}

/// How long `verify` waits for a build holding the directory before it refuses.
const VERIFY_WAITS: Duration = Duration::from_secs(10);

/// `kaokore verify DIR`: checksums, and that idx, npz and Parquet agree. A build in
/// progress in DIR is waited for (briefly), then refused rather than read half replaced;
/// none can start while verify reads (the lock is held shared).
pub fn verify(dir: &Path) -> Result<VerifyReport, Error> {
    let _shared = if dir.is_dir() {
        Some(crate::out::lock::share(dir, VERIFY_WAITS)?)
    } else {
        None
    };
    Ok(crate::verify::verify(dir)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: u32) -> (ImageRecord, FetchRequest) {
        let url = format!("https://example.org/{id}.jpg");
        let record = ImageRecord {
            id: ImageId(id),
            url: Some(url.clone()),
            label: None,
            tags: None,
        };
        (
            record,
            FetchRequest {
                id: ImageId(id),
                url,
            },
        )
    }

    #[test]
    fn a_failed_pack_stops_waiting_for_images() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let (r, request) = record(1);
        let stop = AtomicBool::new(false);
        let arrivals = Arrivals::new(&cache, &[request], &stop, MaxMissing::default());
        let started = Instant::now();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| arrivals.image(&r).is_none());
            std::thread::sleep(Duration::from_millis(100));
            arrivals.abandon();
            assert!(waiter.join().unwrap(), "no image after abandon");
        });
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn confirmation_waits_for_the_verdict_and_a_stop_withholds_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let stop = AtomicBool::new(false);
        let arrivals = Arrivals::new(&cache, &[], &stop, MaxMissing::default());
        std::thread::scope(|s| {
            let confirm = s.spawn(|| arrivals.confirm());
            std::thread::sleep(Duration::from_millis(50));
            let short = || Withheld::NotDelivered("no image could be fetched".into());
            arrivals.finish(Err(short()), 0);
            // The first verdict counts.
            arrivals.finish(Ok(()), 0);
            assert_eq!(confirm.join().unwrap(), Err(short()));
        });

        let arrivals = Arrivals::new(&cache, &[], &stop, MaxMissing::default());
        // A fetcher that panics still finishes the arrivals, as not delivering.
        std::thread::scope(|s| {
            let _ = s
                .spawn(|| {
                    let _finish = FinishOnDrop(&arrivals);
                    panic!("fetcher bug");
                })
                .join();
        });
        assert!(arrivals.confirm().is_err());

        let arrivals = Arrivals::new(&cache, &[], &stop, MaxMissing::default());
        arrivals.finish(Ok(()), 0);
        assert_eq!(arrivals.confirm(), Ok(()));
        stop.store(true, Ordering::Relaxed);
        assert_eq!(arrivals.confirm(), Err(Withheld::Interrupted));
    }

    /// Entries the fetcher reported cached, removed (by a cache cleaner) before pack reads
    /// them: pack gets nothing for them, and they count against `--max-missing`.
    #[test]
    fn images_gone_from_the_cache_after_the_fetch_count_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let (records, requests): (Vec<_>, Vec<_>) = (0..10).map(record).unzip();
        for r in &requests {
            cache
                .store(&r.url, format!("bytes of {}", r.id.0).as_bytes())
                .unwrap();
        }
        let stop = AtomicBool::new(false);
        for (limit, gone, delivers) in [
            (MaxMissing::Count(1), 1, true),
            (MaxMissing::Count(1), 2, false),
            (MaxMissing::Percent(2.0), 1, false),
        ] {
            let arrivals = Arrivals::new(&cache, &requests, &stop, limit);
            for r in &requests {
                arrivals.arrived(r.id, true);
            }
            arrivals.finish(Ok(()), 0);
            for r in &requests[..gone] {
                cache.evict(&r.url);
            }
            let delivered: Vec<bool> = records
                .iter()
                .map(|r| arrivals.image(r).is_some())
                .collect();
            assert_eq!(delivered.iter().filter(|d| !**d).count(), gone);
            assert_eq!(arrivals.undelivered(), gone);
            assert_eq!(arrivals.confirm().is_ok(), delivers, "{limit} {gone}");
            assert_eq!(arrivals.lost_after_fetch().is_none(), delivers);
            for r in &requests[..gone] {
                cache
                    .store(&r.url, format!("bytes of {}", r.id.0).as_bytes())
                    .unwrap();
            }
        }
    }

    /// The file the fetcher checked is what pack gets, whatever the cache holds by then
    /// (another process sharing it may have stored other bytes).
    #[test]
    fn pack_gets_the_bytes_the_fetcher_checked() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let (r, request) = record(3);
        let stop = AtomicBool::new(false);
        let arrivals = Arrivals::new(
            &cache,
            std::slice::from_ref(&request),
            &stop,
            MaxMissing::Count(0),
        );
        cache
            .store(&request.url, b"another process's bytes")
            .unwrap();
        let pixels = DynamicImage::new_rgb8(2, 2);
        arrivals.checked(
            r.id,
            CheckedImage {
                bytes: b"the bytes checked".to_vec(),
                pixels: Some(pixels.clone()),
            },
        );
        arrivals.arrived(r.id, true);
        arrivals.finish(Ok(()), 0);
        let delivered = arrivals.image(&r).unwrap();
        assert_eq!(delivered.bytes, b"the bytes checked");
        assert_eq!(delivered.decoded, Some(pixels));
        assert_eq!(arrivals.state.lock().unwrap().checked_bytes, 0);
        assert_eq!(arrivals.confirm(), Ok(()));
    }
}
