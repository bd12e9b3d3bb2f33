//! Options of every stage, as plain values passed down from the command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::metadata::DatasetVersion;

/// `--rewrite FROM=TO`: fetch `TO...` instead of `FROM...`; artifacts keep the original URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub from: String,
    pub to: String,
}

impl Rewrite {
    /// Apply the first rewrite whose prefix matches.
    pub fn apply<'a>(rewrites: &[Rewrite], url: &'a str) -> std::borrow::Cow<'a, str> {
        for r in rewrites {
            if let Some(rest) = url.strip_prefix(r.from.as_str()) {
                return format!("{}{rest}", r.to).into();
            }
        }
        url.into()
    }
}

impl std::str::FromStr for Rewrite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (from, to) = s
            .split_once('=')
            .ok_or_else(|| format!("expected FROM=TO, got '{s}'"))?;
        if from.is_empty() || to.is_empty() {
            return Err(format!(
                "expected FROM=TO with both sides non-empty, got '{s}'"
            ));
        }
        if !(to.starts_with("http://") || to.starts_with("https://")) {
            return Err(format!(
                "rewrite target must be an http(s) URL prefix, got '{to}'"
            ));
        }
        Ok(Rewrite {
            from: from.to_string(),
            to: to.to_string(),
        })
    }
}

/// How the fetch stage talks to the IIIF servers.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub rewrites: Vec<Rewrite>,
    /// Most requests in flight to one host.
    pub per_host: usize,
    /// Most requests in flight overall.
    pub concurrency: usize,
    /// Retries of a transient failure.
    pub retries: u32,
    /// Limit for one whole request, body included.
    pub timeout: Duration,
    /// Largest accepted response body.
    pub max_body_bytes: u64,
    /// Largest accepted image edge, checked before decoding.
    pub max_image_edge: u32,
    /// Most validation decodes at once (CPU work): `--jobs`, by default the CPU count.
    pub decode_jobs: usize,
    /// First backoff delay; doubles per retry, with jitter.
    pub backoff_base: Duration,
    /// Longest single wait, whether from backoff or a server's Retry-After.
    pub backoff_max: Duration,
    pub user_agent: String,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            rewrites: Vec::new(),
            per_host: 4,
            concurrency: 32,
            retries: 5,
            timeout: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
            max_image_edge: 8192,
            decode_jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            user_agent: format!(
                "kaokore/{} (+https://crates.io/crates/kaokore)",
                env!("CARGO_PKG_VERSION")
            ),
        }
    }
}

/// Which artifacts to write: formats of the registry (see [`crate::pack::format`]).
pub use crate::pack::Formats;

/// How the CPU stages normalize, encode and pack.
#[derive(Debug, Clone)]
pub struct PackOptions {
    /// Normalized edge length S: every image becomes S x S RGB.
    pub size: u32,
    /// Several sizes packed in one pass (`--size 64,128,256`), each a complete build in
    /// `size-{S}/`; empty (or `size` alone) packs `size` into the output directory itself.
    pub sizes: Vec<u32>,
    pub formats: Formats,
    /// CPU worker threads.
    pub jobs: usize,
    /// Rows per Parquet row group.
    pub row_group_rows: usize,
    /// Write nothing if an image does not decode (`--strict`).
    pub refuse_undecodable: bool,
    /// Largest WebDataset shard in bytes (a shard holds at least one sample).
    pub webdataset_shard_bytes: u64,
}

impl PackOptions {
    /// The sizes to pack, without repeats: `sizes`, or `size` when it is empty.
    pub fn all_sizes(&self) -> Vec<u32> {
        let mut sizes: Vec<u32> = Vec::new();
        for &s in &self.sizes {
            if !sizes.contains(&s) {
                sizes.push(s);
            }
        }
        if sizes.is_empty() {
            sizes.push(self.size);
        }
        sizes
    }

    /// These options for one size alone: a build of `size` only.
    pub fn for_size(&self, size: u32) -> PackOptions {
        PackOptions {
            size,
            sizes: vec![size],
            ..self.clone()
        }
    }
}

impl Default for PackOptions {
    fn default() -> Self {
        PackOptions {
            size: 256,
            sizes: Vec::new(),
            formats: Formats::default(),
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            row_group_rows: 100,
            refuse_undecodable: false,
            webdataset_shard_bytes: crate::pack::webdataset::DEFAULT_SHARD_BYTES,
        }
    }
}

/// Everything `build`, `fetch` and `pack` need.
#[derive(Debug, Clone)]
pub struct BuildConfig {
    pub version: DatasetVersion,
    /// An upstream-layout directory to use instead of the embedded files.
    pub metadata_dir: Option<PathBuf>,
    pub out: PathBuf,
    pub cache: PathBuf,
    pub fetch: FetchOptions,
    pub pack: PackOptions,
    /// Any image that could not be fetched fails the build.
    pub strict: bool,
    /// Images that may be missing before a build counts as not delivered.
    pub max_missing: MaxMissing,
    /// Show progress on stderr.
    pub progress: bool,
    /// Also print every image that could not be fetched, as it fails.
    pub verbose: bool,
    /// Set (by a signal handler, say) to stop the run: it then cleans up and returns
    /// [`crate::Error::Interrupted`], leaving `out` and the cache as they were.
    pub stop: Arc<AtomicBool>,
}

impl BuildConfig {
    /// Where the report of a build that did not deliver goes: beside the cache, since
    /// `out` must stay exactly as it was, and the cache is kaokore's own directory.
    pub fn failed_report_path(&self) -> PathBuf {
        self.cache.join(FAILED_REPORT_FILE)
    }
}

/// The report of the last build that did not deliver, in the cache directory.
pub const FAILED_REPORT_FILE: &str = "failed-build-report.json";

/// `--max-missing`: how many images may be missing (not fetched) before a build is
/// refused: a count (`25`) or a share of the images requested (`2%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxMissing {
    Count(usize),
    Percent(f64),
}

impl Default for MaxMissing {
    /// 2%: twice the ~1% of URLs that may be gone upstream at any time, so ordinary link
    /// rot (404/410) still builds, while a systematic loss (a moved collection, a mirror
    /// or proxy missing a path: hundreds of images) fails instead of shipping a dataset
    /// that silently differs from the published one.
    fn default() -> Self {
        MaxMissing::Percent(2.0)
    }
}

impl MaxMissing {
    /// Whether `missing` of `requested` images is more than allowed.
    pub fn exceeded(self, missing: usize, requested: usize) -> bool {
        match self {
            MaxMissing::Count(n) => missing > n,
            MaxMissing::Percent(p) => missing as f64 > requested as f64 * p / 100.0,
        }
    }
}

impl std::fmt::Display for MaxMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxMissing::Count(n) => write!(f, "{n}"),
            MaxMissing::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for MaxMissing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("expected a count (25) or a percentage (2%), got '{s}'");
        match s.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad())?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(format!("a percentage from 0% to 100%, got '{s}'"));
                }
                Ok(MaxMissing::Percent(p))
            }
            None => s.parse().map(MaxMissing::Count).map_err(|_| bad()),
        }
    }
}

/// `$XDG_CACHE_HOME/kaokore`, else `~/.cache/kaokore`, else `.kaokore-cache`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(x).join("kaokore");
    }
    if let Some(home) = std::env::var_os("HOME").filter(|x| !x.is_empty()) {
        return PathBuf::from(home).join(".cache").join("kaokore");
    }
    PathBuf::from(".kaokore-cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_drop_repeats_and_default_to_size() {
        let mut o = PackOptions {
            size: 96,
            ..PackOptions::default()
        };
        assert_eq!(o.all_sizes(), [96]);
        o.sizes = vec![64, 256, 64];
        assert_eq!(o.all_sizes(), [64, 256]);
        // `--size 64,64` is one size: today's layout, no size directory.
        o.sizes = vec![64, 64];
        assert_eq!(o.all_sizes(), [64]);
    }

    #[test]
    fn rewrite_prefix() {
        let r: Rewrite = "http://codh.rois.ac.jp=http://127.0.0.1:9000/codh"
            .parse()
            .unwrap();
        let url = "http://codh.rois.ac.jp/iiif/x/0,0,1,1/256,256/0/default.jpg";
        assert_eq!(
            Rewrite::apply(&[r], url),
            "http://127.0.0.1:9000/codh/iiif/x/0,0,1,1/256,256/0/default.jpg"
        );
        assert!("nonsense".parse::<Rewrite>().is_err());
        assert!("http://a=file:///tmp".parse::<Rewrite>().is_err());
    }

    #[test]
    fn max_missing() {
        let two: MaxMissing = "2%".parse().unwrap();
        assert_eq!(two, MaxMissing::default());
        // 1% gone upstream builds; 3% does not.
        assert!(!two.exceeded(53, 5298));
        assert!(!two.exceeded(105, 5298));
        assert!(two.exceeded(106, 5298));
        assert!(two.exceeded(1, 40));
        let count: MaxMissing = "25".parse().unwrap();
        assert!(!count.exceeded(25, 30) && count.exceeded(26, 10_000));
        assert!(!"0%".parse::<MaxMissing>().unwrap().exceeded(0, 10));
        for bad in ["", "x", "-1", "101%", "-2%", "2.5.1%"] {
            assert!(bad.parse::<MaxMissing>().is_err(), "{bad}");
        }
        assert_eq!(two.to_string(), "2%");
    }
}
