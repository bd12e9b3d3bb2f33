//! `kaokore info`: what a dataset version holds, before anything is fetched.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Serialize;

use crate::metadata::{Dataset, Provider, SizeRequest, Split, WarningKind};

/// Figures of one dataset version. Serialized as-is by `info --json`.
#[derive(Debug, Serialize)]
pub struct DatasetInfo {
    pub version: String,
    pub source: String,
    /// Lines of urls.txt (= image ids).
    pub lines: usize,
    pub urls: usize,
    pub blank_lines: usize,
    pub labelled: usize,
    pub labelled_without_url: usize,
    pub unlabelled_urls: usize,
    pub splits: BTreeMap<String, SplitInfo>,
    /// URLs per host.
    pub hosts: BTreeMap<String, usize>,
    /// URLs per content provider (hosts of no known provider under `unknown`).
    pub providers: BTreeMap<String, usize>,
    /// URLs per IIIF size request (`256,256`, `!200,200`, ...).
    pub size_requests: BTreeMap<String, usize>,
    /// Tolerated quirks of the metadata, by kind.
    pub warnings: BTreeMap<String, usize>,
    /// How many of the URLs (and of the packable images) the cache holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheCoverage>,
}

#[derive(Debug, Default, Serialize)]
pub struct SplitInfo {
    pub images: usize,
    /// Labelled images of the split that have a URL.
    pub with_url: usize,
    pub gender: BTreeMap<String, usize>,
    pub status: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct CacheCoverage {
    pub dir: String,
    pub urls_cached: usize,
    pub packable_cached: usize,
    pub packable: usize,
}

/// A cache to report coverage of: its directory, and whether it holds a URL.
pub type CacheProbe<'a> = (&'a str, &'a dyn Fn(&str) -> bool);

impl DatasetInfo {
    /// Count everything; with a cache, also how much of the version it holds.
    pub fn of(dataset: &Dataset, cache: Option<CacheProbe<'_>>) -> DatasetInfo {
        let mut splits: BTreeMap<String, SplitInfo> = BTreeMap::new();
        for split in Split::ALL {
            splits.insert(split.name().into(), SplitInfo::default());
        }
        let names = &dataset.class_names;
        for &id in &dataset.labelled {
            let record = dataset.record(id);
            let Some(label) = record.label else { continue };
            let s = splits.entry(label.split.name().into()).or_default();
            s.images += 1;
            s.with_url += usize::from(record.url.is_some());
            *s.gender
                .entry(names.gender[label.gender as usize].clone())
                .or_default() += 1;
            *s.status
                .entry(names.status[label.status as usize].clone())
                .or_default() += 1;
        }

        let mut hosts = BTreeMap::new();
        let mut providers = BTreeMap::new();
        let mut size_requests = BTreeMap::new();
        let mut unlabelled_urls = 0;
        for record in dataset.with_url() {
            let url = record.url.as_deref().unwrap_or_default();
            let host = crate::metadata::host_of(url).unwrap_or_default();
            *hosts.entry(host).or_default() += 1;
            let provider = Provider::from_url(url).map_or("unknown", Provider::name);
            *providers.entry(provider.to_string()).or_default() += 1;
            let size = SizeRequest::of(url).map_or_else(|| "?".to_string(), |s| s.0);
            *size_requests.entry(size).or_default() += 1;
            unlabelled_urls += usize::from(record.label.is_none());
        }

        let counts = dataset.warning_counts();
        let count = |k: WarningKind| counts.get(&k).copied().unwrap_or(0);
        let warnings = counts
            .iter()
            .map(|(k, n)| (k.describe().to_string(), *n))
            .collect();

        let cache = cache.map(|(dir, cached)| {
            let urls_cached = dataset
                .with_url()
                .filter(|r| cached(r.url.as_deref().unwrap_or_default()))
                .count();
            let packable: Vec<_> = dataset.packable().collect();
            CacheCoverage {
                dir: dir.to_string(),
                urls_cached,
                packable_cached: packable
                    .iter()
                    .filter(|r| cached(r.url.as_deref().unwrap_or_default()))
                    .count(),
                packable: packable.len(),
            }
        });

        DatasetInfo {
            version: dataset.version.to_string(),
            source: dataset.files.origin.clone(),
            lines: dataset.files.urls.lines().count(),
            urls: dataset.with_url().count(),
            blank_lines: count(WarningKind::BlankUrlLine),
            labelled: dataset.labelled.len(),
            labelled_without_url: count(WarningKind::LabelledWithoutUrl),
            unlabelled_urls,
            splits,
            hosts,
            providers,
            size_requests,
            warnings,
            cache,
        }
    }

    /// The figures as aligned text for a terminal.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "KaoKore {} ({})", self.version, self.source);
        let _ = writeln!(
            s,
            "  urls.txt: {} lines, {} URLs, {} blank",
            self.lines, self.urls, self.blank_lines
        );
        let _ = writeln!(
            s,
            "  labelled: {} ({} without a URL); unlabelled URLs: {}",
            self.labelled, self.labelled_without_url, self.unlabelled_urls
        );
        let _ = writeln!(s, "\nsplits:");
        for split in Split::ALL {
            if let Some(info) = self.splits.get(split.name()) {
                let join = |m: &BTreeMap<String, usize>| {
                    m.iter()
                        .map(|(k, v)| format!("{k} {v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                let _ = writeln!(
                    s,
                    "  {:<5} {:>5} images ({} with URL)  gender: {}  status: {}",
                    split.name(),
                    info.images,
                    info.with_url,
                    join(&info.gender),
                    join(&info.status)
                );
            }
        }
        let _ = writeln!(s, "\nhosts:");
        for (host, n) in &self.hosts {
            let _ = writeln!(s, "  {n:>5}  {host}");
        }
        let _ = writeln!(s, "\nproviders:");
        for (p, n) in &self.providers {
            let _ = writeln!(s, "  {n:>5}  {p}");
        }
        let _ = writeln!(s, "\nIIIF size requests:");
        for (size, n) in &self.size_requests {
            let _ = writeln!(s, "  {n:>5}  {size}");
        }
        if !self.warnings.is_empty() {
            let _ = writeln!(s, "\nmetadata warnings (tolerated):");
            for (w, n) in &self.warnings {
                let _ = writeln!(s, "  {n:>5}  {w}");
            }
        }
        if let Some(c) = &self.cache {
            let _ = writeln!(
                s,
                "\ncache {}: {}/{} URLs, {}/{} packable images",
                c.dir, c.urls_cached, self.urls, c.packable_cached, c.packable
            );
        }
        s
    }
}
