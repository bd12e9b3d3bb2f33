//! Wires the stages together: the only place that knows their order.
//!
//! `metadata -> fetch -> normalize -> encode -> pack`, with `build` overlapping fetch and
//! pack (pack consumes images in labels.csv order as the fetcher delivers them), and
//! `verify` re-reading what pack wrote.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Condvar, Mutex};
use std::time::Instant;

use crate::config::BuildConfig;
use crate::error::Error;
use image::DynamicImage;

use crate::fetch::{Cache, FetchFailure, FetchOutcome, FetchRequest, FetchSummary, OnDecoded};
use crate::info::DatasetInfo;
use crate::metadata::{
    Dataset, DatasetVersion, ImageId, ImageRecord, MetadataError, MetadataFiles,
};
use crate::pack::{Delivered, ImageSource, PackSummary};
use crate::progress::Progress;
use crate::report::{BuildReport, Stage};
use crate::verify::VerifyReport;

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
    let cache = Cache::open(cache_dir)?;
    let shown = cache_dir.display().to_string();
    let probe = |url: &str| cache.contains(url);
    Ok(DatasetInfo::of(dataset, Some((&shown, &probe))))
}

/// Pixels decoded by the fetcher's validation are kept for pack only for images at most
/// this many rows ahead of the last one pack asked for...
const DECODED_AHEAD: usize = 256;
/// ... and only up to this many bytes in all. An image that comes earlier is decoded
/// again from the cache, so memory stays bounded whatever the order of arrival.
const DECODED_BUDGET: usize = 128 << 20;

/// Images the pack stage receives during `build`: it waits for the fetcher to finish each
/// one, so packing overlaps the network instead of following it.
struct Arrivals<'a> {
    cache: &'a Cache,
    /// Row of each packable image, in labels.csv order.
    rows: HashMap<ImageId, usize>,
    state: Mutex<ArrivalState>,
    changed: Condvar,
}

#[derive(Default)]
struct ArrivalState {
    /// Fetch outcome per image: true when it is in the cache.
    done: HashMap<ImageId, bool>,
    /// The fetcher has stopped: an image not in `done` will never come.
    finished: bool,
    /// Pixels the fetcher decoded, waiting for pack, and their size in bytes.
    decoded: HashMap<ImageId, DynamicImage>,
    decoded_bytes: usize,
    /// One past the last row pack asked for.
    asked: usize,
}

impl<'a> Arrivals<'a> {
    fn new(cache: &'a Cache, packable: &[FetchRequest]) -> Self {
        Arrivals {
            cache,
            rows: packable
                .iter()
                .enumerate()
                .map(|(i, r)| (r.id, i))
                .collect(),
            state: Mutex::new(ArrivalState::default()),
            changed: Condvar::new(),
        }
    }

    /// Keep the pixels the fetcher decoded if pack will want them soon.
    fn decoded(&self, id: ImageId, image: DynamicImage) {
        let Some(&row) = self.rows.get(&id) else {
            return;
        };
        let size = image.as_bytes().len();
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if row < state.asked + DECODED_AHEAD && state.decoded_bytes + size <= DECODED_BUDGET {
            state.decoded_bytes += size;
            state.decoded.insert(id, image);
        }
    }

    fn arrived(&self, id: ImageId, ok: bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.done.insert(id, ok);
        self.changed.notify_all();
    }

    fn finish(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.finished = true;
        self.changed.notify_all();
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
            if state.finished {
                break false;
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        };
        let decoded = state.decoded.remove(&record.id);
        if let Some(image) = &decoded {
            state.decoded_bytes -= image.as_bytes().len();
        }
        drop(state);
        if !ok {
            return None;
        }
        let bytes = self.cache.read(url).ok().flatten()?;
        Some(Delivered { bytes, decoded })
    }
}

/// Images straight from the cache (`pack`): no network, missing ones are missing.
struct CacheSource<'a>(&'a Cache);

impl ImageSource for CacheSource<'_> {
    fn image(&self, record: &ImageRecord) -> Option<Delivered> {
        let bytes = self.0.read(record.url.as_deref()?).ok().flatten()?;
        Some(bytes.into())
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
/// and the pixels of downloaded JPEGs to `on_decoded` when given.
fn run_fetch(
    requests: &[FetchRequest],
    cache: &Cache,
    cfg: &BuildConfig,
    progress: &Progress,
    also: &(dyn Fn(ImageId, bool) + Sync),
    on_decoded: Option<&OnDecoded<'_>>,
) -> Result<FetchSummary, Error> {
    let on_done = |request: &FetchRequest, outcome: &FetchOutcome| {
        let failed = matches!(outcome, FetchOutcome::Failed(_));
        if let FetchOutcome::Failed(f) = outcome {
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
    Ok(match on_decoded {
        Some(hook) => crate::fetch::fetch_all_decoded(requests, cache, &cfg.fetch, &on_done, hook)?,
        None => crate::fetch::fetch_all(requests, cache, &cfg.fetch, &on_done)?,
    })
}

fn summarize_failures(failures: &[FetchFailure]) {
    if failures.is_empty() {
        return;
    }
    eprintln!("{} image(s) could not be fetched:", failures.len());
    for f in failures.iter().take(10) {
        let status = f.status.map(|s| format!(" (HTTP {s})")).unwrap_or_default();
        eprintln!("  {} {}{status}: {}", f.id.file_name(), f.url, f.reason);
    }
    if failures.len() > 10 {
        eprintln!("  ... and {} more (see report.json)", failures.len() - 10);
    }
}

/// `kaokore fetch`: fill the cache with every URL of the version.
pub fn fetch(cfg: &BuildConfig) -> Result<FetchSummary, Error> {
    let dataset = load_dataset(cfg.version, cfg.metadata_dir.as_deref())?;
    let cache = Cache::open(&cfg.cache)?;
    let requests = requests(dataset.with_url());
    let progress = Progress::new("fetch", requests.len() as u64, cfg.progress);
    let summary = run_fetch(&requests, &cache, cfg, &progress, &|_, _| {}, None)?;
    progress.finish();
    summarize_failures(&summary.failures);
    if cfg.strict && !summary.failures.is_empty() {
        return Err(Error::Strict {
            failed: summary.failures.len(),
        });
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

/// Complete the counts and write report.json next to the artifacts.
fn conclude(
    mut report: BuildReport,
    started: Instant,
    dataset: &Dataset,
    cfg: &BuildConfig,
) -> Result<BuildReport, Error> {
    report
        .seconds
        .insert(Stage::Total, started.elapsed().as_secs_f64());
    report.finish(dataset);
    report.write(&cfg.out)?;
    Ok(report)
}

/// `kaokore build`: fetch what is missing and pack, overlapping the two.
pub fn build(cfg: &BuildConfig) -> Result<BuildReport, Error> {
    let (started, mut report, dataset) = begin("build", cfg)?;
    // An --out that cannot take the build is refused before anything is fetched.
    crate::record::check_out(&cfg.out)?;
    let cache = Cache::open(&cfg.cache)?;
    let requests = requests(dataset.packable());
    let progress = Progress::new("build", requests.len() as u64, cfg.progress);

    if cfg.strict {
        // No partial dataset: every image must be in the cache before anything is packed.
        let fetched = report.time(Stage::Fetch, || {
            run_fetch(&requests, &cache, cfg, &progress, &|_, _| {}, None)
        })?;
        progress.finish();
        summarize_failures(&fetched.failures);
        if !fetched.failures.is_empty() {
            return Err(Error::Strict {
                failed: fetched.failures.len(),
            });
        }
        report.fetch = Some(fetched);
        let packed = report.time(Stage::Pack, || {
            pack_with(
                &dataset,
                &CacheSource(&cache),
                cfg,
                &Progress::hidden("pack", 0),
            )
        })?;
        evict_undecodable(&cache, &dataset, &packed);
        report.pack = Some(packed);
    } else {
        let arrivals = Arrivals::new(&cache, &requests);
        let fetch_started = Instant::now();
        let (fetched, packed) = std::thread::scope(|s| {
            let fetcher = s.spawn(|| {
                let r = run_fetch(
                    &requests,
                    &cache,
                    cfg,
                    &Progress::hidden("fetch", 0),
                    &|id, ok| arrivals.arrived(id, ok),
                    Some(&|request: &FetchRequest, image| arrivals.decoded(request.id, image)),
                );
                arrivals.finish();
                (r, fetch_started.elapsed())
            });
            let packed = pack_with(&dataset, &arrivals, cfg, &progress);
            (fetcher.join(), packed)
        });
        let (fetched, fetch_secs) =
            fetched.map_err(|_| Error::Internal("the fetcher panicked".into()))?;
        report
            .seconds
            .insert(Stage::Fetch, fetch_secs.as_secs_f64());
        let fetched = fetched?;
        progress.finish();
        summarize_failures(&fetched.failures);
        report.fetch = Some(fetched);
        let packed = packed?;
        evict_undecodable(&cache, &dataset, &packed);
        report.pack = Some(packed);
    }
    conclude(report, started, &dataset, cfg)
}

/// `kaokore pack`: normalize and pack from the cache, no network.
pub fn pack(cfg: &BuildConfig) -> Result<BuildReport, Error> {
    let (started, mut report, dataset) = begin("pack", cfg)?;
    crate::record::check_out(&cfg.out)?;
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
        .filter(|r| !cache.contains(r.url.as_deref().unwrap_or_default()))
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
    }
    let progress = Progress::new("pack", packable.len() as u64, cfg.progress);
    let packed = report.time(Stage::Pack, || {
        pack_with(&dataset, &CacheSource(&cache), cfg, &progress)
    })?;
    progress.finish();
    evict_undecodable(&cache, &dataset, &packed);
    report.pack = Some(packed);
    conclude(report, started, &dataset, cfg)
}

/// Cache entries pack could not decode are evicted, so the next run fetches them again.
fn evict_undecodable(cache: &Cache, dataset: &Dataset, packed: &PackSummary) {
    for u in &packed.undecodable {
        if let Some(url) = &dataset.record(u.id).url {
            cache.evict(url);
        }
    }
}

fn pack_with(
    dataset: &Dataset,
    source: &dyn ImageSource,
    cfg: &BuildConfig,
    progress: &Progress,
) -> Result<PackSummary, Error> {
    Ok(crate::pack::pack(
        dataset, source, &cfg.pack, &cfg.out, progress,
    )?)
}

/// `kaokore verify DIR`: checksums, and that idx, npz and Parquet agree.
pub fn verify(dir: &Path) -> Result<VerifyReport, Error> {
    Ok(crate::verify::verify(dir)?)
}
