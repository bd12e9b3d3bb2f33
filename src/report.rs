//! `report.json`: what a build did. A log, not an artifact: it holds timings, so it is
//! not in SHA256SUMS.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::config::BuildConfig;
use crate::error::Error;
use crate::fetch::{FetchFailure, FetchSummary};
use crate::metadata::{Dataset, WarningKind};
use crate::pack::{NormalizationCounts, PackSummary};

pub const REPORT_FILE: &str = "report.json";

/// The timed stages of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Metadata,
    Fetch,
    Pack,
    Total,
}

#[derive(Debug, Serialize)]
pub struct BuildReport {
    pub tool: String,
    pub command: &'static str,
    pub dataset_version: String,
    pub options: ReportOptions,
    pub counts: Counts,
    /// Images that could not be fetched, with the last status and reason.
    pub failures: Vec<FetchFailure>,
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

#[derive(Debug, Serialize)]
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
}

#[derive(Debug, Default, Serialize)]
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

#[derive(Debug, Serialize)]
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
            },
            counts: Counts::default(),
            failures: Vec::new(),
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
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
        let tmp = dir.join(format!(".{REPORT_FILE}.tmp-{}", std::process::id()));
        let path = dir.join(REPORT_FILE);
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| Error::io(format!("writing {}", path.display()), e))
    }
}
