//! `report.json`: what a build did, gathered from the summaries of fetch and pack. A log,
//! not an artifact: it holds timings, so it is not in SHA256SUMS.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::config::BuildConfig;
use crate::fetch::{FetchFailure, FetchSummary, HostGivenUp};
pub use crate::layout::REPORT_FILE;
use crate::metadata::{Dataset, WarningKind};
use crate::pack::{NormalizationCounts, PackSummary};

/// The timed stages of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Metadata,
    Fetch,
    Pack,
    Total,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildReport {
    pub tool: String,
    pub command: &'static str,
    pub dataset_version: String,
    pub options: ReportOptions,
    /// False when the build did not deliver: nothing in `--out` was replaced, and this
    /// report was written beside the cache instead.
    pub delivered: bool,
    /// Why it did not deliver, one line per cause.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub shortfalls: Vec<String>,
    pub counts: Counts,
    /// Images that could not be fetched, with the last status and reason.
    pub failures: Vec<FetchFailure>,
    /// Hosts the fetch gave up on, with the cause and the images not fetched.
    pub hosts_given_up: Vec<HostGivenUp>,
    /// Labelled images that were not packed, with why.
    pub not_packed: Vec<NotPacked>,
    /// Files of the previous build in `--out` that this build does not produce, removed.
    pub removed_stale: Vec<String>,
    /// Tolerated metadata quirks, by kind.
    pub warnings: BTreeMap<String, usize>,
    pub normalization: NormalizationCounts,
    /// Wall seconds per stage (fetch and pack overlap in `build`).
    pub seconds: BTreeMap<Stage, f64>,
    /// Seconds per pack step; worker steps are CPU seconds summed over threads.
    pub pack_seconds: Option<crate::pack::StageSeconds>,
    #[serde(skip)]
    pub fetch: Option<FetchSummary>,
    #[serde(skip)]
    pub pack: Option<PackSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReportOptions {
    pub size: u32,
    pub formats: Vec<&'static str>,
    pub jobs: usize,
    pub per_host: usize,
    pub concurrency: usize,
    pub retries: u32,
    pub timeout_secs: f64,
    pub rewrites: Vec<String>,
    pub strict: bool,
    pub max_missing: String,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Counts {
    pub urls: usize,
    pub blank_lines: usize,
    pub labelled: usize,
    pub unlabelled: usize,
    pub labelled_without_url: usize,
    /// Images the run needed (labelled, with a URL).
    pub requested: usize,
    /// Downloaded in this run.
    pub fetched: usize,
    pub from_cache: usize,
    /// Cache entries that did not match their record: removed and fetched again.
    pub evicted: usize,
    pub failed: usize,
    pub retries: u64,
    pub packed: BTreeMap<String, u64>,
    pub packed_total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct NotPacked {
    pub image_id: crate::ImageId,
    pub reason: String,
}

impl BuildReport {
    pub fn start(command: &'static str, cfg: &BuildConfig) -> BuildReport {
        let formats = cfg.pack.formats.names();
        BuildReport {
            tool: format!("kaokore {}", env!("CARGO_PKG_VERSION")),
            command,
            dataset_version: cfg.version.to_string(),
            options: ReportOptions {
                size: cfg.pack.size,
                formats,
                jobs: cfg.pack.jobs,
                per_host: cfg.fetch.per_host,
                concurrency: cfg.fetch.concurrency,
                retries: cfg.fetch.retries,
                timeout_secs: cfg.fetch.timeout.as_secs_f64(),
                rewrites: cfg
                    .fetch
                    .rewrites
                    .iter()
                    .map(|r| format!("{}={}", r.from, r.to))
                    .collect(),
                strict: cfg.strict,
                max_missing: cfg.max_missing.to_string(),
            },
            delivered: true,
            shortfalls: Vec::new(),
            counts: Counts::default(),
            failures: Vec::new(),
            hosts_given_up: Vec::new(),
            not_packed: Vec::new(),
            removed_stale: Vec::new(),
            warnings: BTreeMap::new(),
            normalization: NormalizationCounts::default(),
            seconds: BTreeMap::new(),
            pack_seconds: None,
            fetch: None,
            pack: None,
        }
    }

    /// Run `f`, adding its wall time to `stage`.
    pub fn time<T>(&mut self, stage: Stage, f: impl FnOnce() -> T) -> T {
        let t = Instant::now();
        let out = f();
        *self.seconds.entry(stage).or_insert(0.0) += t.elapsed().as_secs_f64();
        out
    }

    /// Fill the counts from the dataset and the stage summaries.
    pub fn finish(&mut self, dataset: &Dataset) {
        let warnings = dataset.warning_counts();
        let count = |k| warnings.get(&k).copied().unwrap_or(0);
        let c = &mut self.counts;
        c.urls = dataset.with_url().count();
        c.blank_lines = count(WarningKind::BlankUrlLine);
        c.labelled = dataset.labelled.len();
        c.unlabelled = dataset.with_url().filter(|r| r.label.is_none()).count();
        c.labelled_without_url = count(WarningKind::LabelledWithoutUrl);
        c.requested = dataset.packable().count();
        self.warnings = warnings
            .iter()
            .map(|(k, n)| (k.describe().to_string(), *n))
            .collect();
        if let Some(f) = &self.fetch {
            c.fetched = f.downloaded;
            c.from_cache = f.from_cache;
            c.evicted = f.evicted;
            c.failed = f.failures.len();
            c.retries = f.retries;
            self.failures = f.failures.clone();
            self.hosts_given_up = f.hosts_given_up.clone();
        }
        if let Some(p) = &self.pack {
            for s in &p.splits {
                c.packed.insert(s.split.name().to_string(), s.packed);
            }
            c.packed_total = p.splits.iter().map(|s| s.packed).sum();
            self.normalization = p.normalization.clone();
            self.pack_seconds = Some(p.seconds.clone());
            self.removed_stale = p.removed_stale.clone();
            let failed: std::collections::HashMap<_, _> = self
                .failures
                .iter()
                .map(|f| (f.id, f.reason.as_str()))
                .collect();
            self.not_packed = p
                .missing
                .iter()
                .map(|&id| NotPacked {
                    image_id: id,
                    reason: failed.get(&id).map_or("not in the cache".to_string(), |r| {
                        format!("not fetched: {r}")
                    }),
                })
                .chain(p.undecodable.iter().map(|u| NotPacked {
                    image_id: u.id,
                    reason: format!("undecodable: {}", u.reason),
                }))
                .collect();
        }
    }

    /// Write `report.json` into `dir` atomically.
    pub fn write(&self, dir: &Path) -> Result<(), ReportError> {
        self.write_to(&dir.join(REPORT_FILE))
    }

    /// Write the report to `path` atomically (a temp file beside it, then a rename).
    pub fn write_to(&self, path: &Path) -> Result<(), ReportError> {
        let json = serde_json::to_vec_pretty(self).expect("a report serializes");
        let dir = path.parent().unwrap_or(Path::new("."));
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or(REPORT_FILE);
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&tmp, json))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| {
                let _ = std::fs::remove_file(&tmp);
                ReportError {
                    path: path.to_path_buf(),
                    source: e,
                }
            })
    }
}

/// report.json could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {}: {source}", path.display())]
pub struct ReportError {
    pub path: std::path::PathBuf,
    #[source]
    pub source: std::io::Error,
}
