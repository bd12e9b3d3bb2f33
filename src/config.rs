//! What `build`, `fetch` and `pack` run with: each stage's own options (declared by the
//! stage: [`FetchOptions`], [`PackOptions`]) and the run's own settings, as plain values
//! passed down from the command line.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

pub use crate::fetch::{FetchOptions, MaxMissing, Rewrite};
pub use crate::layout::FAILED_REPORT_FILE;
use crate::metadata::DatasetVersion;
pub use crate::pack::{Formats, PackOptions};

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
