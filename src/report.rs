//! `report.json`: what a build did. A log, not an artifact: it holds timings, so it is
//! not in SHA256SUMS. Also the judgement of a fetch that a build rests on: the failures
//! grouped by cause and host for the console, and the shortfalls that stop a build from
//! delivering (nothing fetched, a host given up, more missing than `--max-missing`).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::config::{BuildConfig, MaxMissing};
use crate::error::Error;
use crate::fetch::{FailureCause, FetchFailure, FetchSummary, HostGivenUp};
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
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        self.write_to(&dir.join(REPORT_FILE))
    }

    /// Write the report to `path` atomically (a temp file beside it, then a rename).
    pub fn write_to(&self, path: &Path) -> Result<(), Error> {
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::Internal(e.to_string()))?;
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
                Error::io(format!("writing {}", path.display()), e)
            })
    }
}

/// The failures of one cause at one host: one console line.
#[derive(Debug, Clone)]
pub struct FailureGroup {
    pub cause: FailureCause,
    /// The host of the original URLs.
    pub host: String,
    pub images: usize,
    /// The failure of the lowest image id, among requests actually sent if any.
    pub example: FetchFailure,
}

impl std::fmt::Display for FailureGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.example;
        write!(
            f,
            "{}: {}: {} image(s), e.g. {} {}: {}",
            self.host,
            self.cause.describe(),
            self.images,
            e.id.file_name(),
            e.url,
            e.reason
        )
    }
}

/// Group failures by host and cause, the largest groups first.
pub fn group_failures(failures: &[FetchFailure]) -> Vec<FailureGroup> {
    let mut groups: BTreeMap<(&str, FailureCause), FailureGroup> = BTreeMap::new();
    for f in failures {
        groups
            .entry((f.host.as_str(), f.cause))
            .and_modify(|g| {
                g.images += 1;
                // A request actually sent makes the better example.
                let rank = |f: &FetchFailure| (f.attempts == 0, f.id);
                if rank(f) < rank(&g.example) {
                    g.example = f.clone();
                }
            })
            .or_insert_with(|| FailureGroup {
                cause: f.cause,
                host: f.host.clone(),
                images: 1,
                example: f.clone(),
            });
    }
    let mut groups: Vec<FailureGroup> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.images));
    groups
}

/// Why a fetch does not deliver what a build needs.
#[derive(Debug, Clone)]
pub enum Shortfall {
    /// Not one of the images requested was fetched or cached.
    NothingFetched { requested: usize },
    /// A whole host was given up.
    HostGivenUp(HostGivenUp),
    /// More images missing than `--max-missing` allows.
    TooManyMissing {
        missing: usize,
        requested: usize,
        limit: MaxMissing,
    },
    /// `--strict` and images missing.
    Strict { missing: usize },
}

impl Shortfall {
    /// Whether a network hint (connection, proxy, mirror) helps with this shortfall.
    pub fn is_network(&self) -> bool {
        match self {
            Shortfall::NothingFetched { .. } => true,
            Shortfall::HostGivenUp(h) => h.cause.is_network(),
            _ => false,
        }
    }
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortfall::NothingFetched { requested } => {
                write!(f, "no image could be fetched (0 of {requested})")
            }
            Shortfall::HostGivenUp(h) => {
                let named = h.original_hosts.join(", ");
                let via = if h
                    .original_hosts
                    .iter()
                    .any(|o| h.host.starts_with(o.as_str()))
                {
                    String::new()
                } else {
                    format!(" (requested from {})", h.host)
                };
                write!(
                    f,
                    "{named}{via}: host given up, {}: {} image(s) not fetched (last error: {})",
                    h.cause.describe(),
                    h.images,
                    h.last_error
                )
            }
            Shortfall::TooManyMissing {
                missing,
                requested,
                limit,
            } => write!(
                f,
                "{missing} of {requested} image(s) missing ({:.1}%), more than --max-missing \
                 {limit} allows",
                *missing as f64 * 100.0 / (*requested).max(1) as f64
            ),
            Shortfall::Strict { missing } => {
                write!(f, "{missing} image(s) could not be fetched (--strict)")
            }
        }
    }
}

/// What keeps a fetch of `summary` from delivering a build; empty when it delivers.
pub fn shortfalls(summary: &FetchSummary, limit: MaxMissing, strict: bool) -> Vec<Shortfall> {
    let mut out = Vec::new();
    let missing = summary.failures.len();
    if summary.requested > 0 && missing == summary.requested {
        out.push(Shortfall::NothingFetched {
            requested: summary.requested,
        });
    }
    out.extend(
        summary
            .hosts_given_up
            .iter()
            .cloned()
            .map(Shortfall::HostGivenUp),
    );
    if strict && missing > 0 {
        out.push(Shortfall::Strict { missing });
    } else if limit.exceeded(missing, summary.requested) && out.is_empty() {
        out.push(Shortfall::TooManyMissing {
            missing,
            requested: summary.requested,
            limit,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::FailureCause::{Gone, Refused, Timeout};
    use crate::metadata::ImageId;

    fn failure(id: u32, host: &str, cause: FailureCause, reason: &str) -> FetchFailure {
        FetchFailure {
            id: ImageId(id),
            url: format!("https://{host}/{id}.jpg"),
            host: host.to_string(),
            status: (cause == Gone).then_some(404),
            cause,
            reason: reason.to_string(),
            attempts: 1,
        }
    }

    #[test]
    fn failures_group_by_host_and_cause() {
        let mut failures: Vec<FetchFailure> = (0..300)
            .map(|i| failure(300 - i, "a.example", Gone, "HTTP 404 Not Found"))
            .collect();
        failures.push(failure(7, "b.example", Timeout, "timed out after 30s"));
        failures.push(failure(8, "a.example", Timeout, "timed out after 30s"));
        let groups = group_failures(&failures);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].images, 300);
        assert_eq!(
            groups[0].example.id,
            ImageId(1),
            "the lowest id is the example"
        );
        let line = groups[0].to_string();
        assert!(line.starts_with("a.example: gone upstream: 300 image(s), e.g. 00000001.jpg"));
    }

    #[test]
    fn shortfalls_of_a_fetch() {
        let mut summary = FetchSummary {
            requested: 1000,
            downloaded: 990,
            ..FetchSummary::default()
        };
        summary.failures = (0..10)
            .map(|i| failure(i, "a.example", Gone, "HTTP 404 Not Found"))
            .collect();
        // 1% gone: delivers, unless --strict.
        assert!(shortfalls(&summary, MaxMissing::default(), false).is_empty());
        let strict = shortfalls(&summary, MaxMissing::default(), true);
        assert!(matches!(strict[..], [Shortfall::Strict { missing: 10 }]));
        let tight = shortfalls(&summary, MaxMissing::Count(9), false);
        assert!(
            tight[0]
                .to_string()
                .contains("10 of 1000 image(s) missing (1.0%)")
        );

        summary.downloaded = 0;
        summary.failures = (0..1000)
            .map(|i| {
                failure(
                    i,
                    "a.example",
                    Refused,
                    "connection failed: Connection refused",
                )
            })
            .collect();
        summary.hosts_given_up = vec![HostGivenUp {
            host: "127.0.0.1:9".into(),
            original_hosts: vec!["a.example".into()],
            cause: FailureCause::Refused,
            last_error: "connection failed: Connection refused".into(),
            images: 1000,
        }];
        let all = shortfalls(&summary, MaxMissing::default(), false);
        assert_eq!(all.len(), 2, "the missing count adds nothing: {all:?}");
        assert!(all.iter().all(Shortfall::is_network));
        assert_eq!(all[0].to_string(), "no image could be fetched (0 of 1000)");
        assert!(all[1].to_string().starts_with(
            "a.example (requested from 127.0.0.1:9): host given up, connection refused: \
             1000 image(s) not fetched"
        ));
    }
}
