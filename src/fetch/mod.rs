//! Fetch: download every image URL into the content-addressed cache, politely.
//!
//! This stage is the only one that talks to the network. It keeps each host busy up to
//! `--per-host` requests (and all hosts together within `--concurrency`), retries what
//! is transient with backoff and jitter, pauses and slows down a host that says 429/503
//! (honouring `Retry-After`), gives up on a host that keeps failing, and lets nothing but
//! whole, decodable images into the [`Cache`]. It never touches artifacts: what could not
//! be fetched is returned in a [`FetchSummary`] for the pipeline to report.
//!
//! Layout: `run` schedules (per-host queues and workers, retries), `host` is the
//! politeness gate of one host, `client` makes one HTTP attempt and classifies its
//! failure, `validate` decides what may be cached, `cache` stores it atomically.

mod cache;
mod client;
mod host;
mod run;
mod validate;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::config::FetchOptions;
use crate::metadata::ImageId;

pub use cache::{Cache, Lookup};
pub use run::OnDecoded;

/// One image to fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchRequest {
    pub id: ImageId,
    /// The original upstream URL: the cache key and what reports show, whatever
    /// `--rewrite` makes of it.
    pub url: String,
}

/// An image that could not be fetched, after all retries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FetchFailure {
    pub id: ImageId,
    /// The original upstream URL.
    pub url: String,
    /// The HTTP status of the last attempt, if a response arrived.
    pub status: Option<u16>,
    pub reason: String,
    /// Attempts made (0 when the URL could not be requested at all).
    pub attempts: u32,
}

/// How one request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Already in the cache: no request was made.
    FromCache,
    /// Downloaded, validated and stored.
    Downloaded {
        attempts: u32,
    },
    Failed(FetchFailure),
}

/// What a fetch run did, for the build report.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FetchSummary {
    pub requested: usize,
    pub from_cache: usize,
    pub downloaded: usize,
    /// Cache entries that did not match their record (other bytes, truncated, empty, no
    /// record, not a regular file): removed and requested again.
    pub evicted: usize,
    /// Attempts beyond the first, over all requests.
    pub retries: u64,
    /// Sorted by image id.
    pub failures: Vec<FetchFailure>,
}

/// A failure of the run as a whole (a failure of one image is a [`FetchFailure`]).
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("image cache {}: {source}", path.display())]
    Cache {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot set up the HTTP client: {0}")]
    Client(String),
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("fetch interrupted")]
    Interrupted,
}

/// Fetch every request that is not cached yet into `cache`.
///
/// Blocking: builds its own tokio runtime, so it must not be called from async code.
/// Calls `on_done` once per request as it completes, in completion order, on the calling
/// thread: cached requests first, without any network access. Requests are started in
/// the given order within each host. Failures of single images are not errors: they end
/// up in [`FetchSummary::failures`], sorted by id.
///
/// Killing the process at any point (Ctrl-C, SIGKILL) leaves the cache consistent: an
/// entry appears only by an atomic rename of a validated file. Use [`fetch_all_until`]
/// to stop early and still get control back.
pub fn fetch_all(
    requests: &[FetchRequest],
    cache: &Cache,
    opts: &FetchOptions,
    on_done: &(dyn Fn(&FetchRequest, &FetchOutcome) + Sync),
) -> Result<FetchSummary, FetchError> {
    let never = AtomicBool::new(false);
    run::fetch_all(requests, cache, opts, on_done, None, &never)
}

/// [`fetch_all`] that also hands over the pixels of each downloaded JPEG, as decoded by
/// validation ([`crate::decode::decode_jpeg`]), before reporting it done: `build`
/// packs them without decoding the file again.
pub fn fetch_all_decoded(
    requests: &[FetchRequest],
    cache: &Cache,
    opts: &FetchOptions,
    on_done: &(dyn Fn(&FetchRequest, &FetchOutcome) + Sync),
    on_decoded: &OnDecoded<'_>,
) -> Result<FetchSummary, FetchError> {
    let never = AtomicBool::new(false);
    run::fetch_all(requests, cache, opts, on_done, Some(on_decoded), &never)
}

/// [`fetch_all`] that stops promptly once `stop` becomes true (e.g. set by a Ctrl-C
/// handler) and returns [`FetchError::Interrupted`]. Requests in flight are abandoned;
/// the cache stays consistent, since an entry appears only by an atomic rename.
pub fn fetch_all_until(
    requests: &[FetchRequest],
    cache: &Cache,
    opts: &FetchOptions,
    on_done: &(dyn Fn(&FetchRequest, &FetchOutcome) + Sync),
    stop: &AtomicBool,
) -> Result<FetchSummary, FetchError> {
    run::fetch_all(requests, cache, opts, on_done, None, stop)
}
