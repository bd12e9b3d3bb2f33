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
//! politeness gate of one host, `client` makes one HTTP attempt and decides the cause of
//! its failure from the typed error, `validate` decides what may be cached, `cache`
//! stores it atomically.

mod cache;
mod client;
mod host;
mod options;
mod run;
#[cfg(test)]
mod test_server;
mod validate;
mod verdict;

use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

use crate::metadata::ImageId;

pub use cache::{Cache, Lookup, Untrusted};
pub(crate) use client::BODY_MEMORY;
pub use options::{FetchOptions, Rewrite};
pub use run::{CheckedImage, OnChecked};
pub use verdict::{FailureGroup, MaxMissing, Shortfall, group_failures, shortfalls};

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
    /// The host of the original URL (lower case, no port): what a user finds in urls.txt.
    pub host: String,
    /// What kind of failure the last attempt was, for grouping and for the verdict; for a
    /// request never sent because its host was given up, the host's last cause.
    pub cause: FailureCause,
    /// The HTTP status of the last attempt, if a response arrived.
    pub status: Option<u16>,
    /// In words, for the report; nothing is decided on it.
    pub reason: String,
    /// Attempts made (0 when the URL could not be requested at all).
    pub attempts: u32,
}

/// The kind of a failure, decided where it happened from the typed error (reqwest's
/// kinds, the I/O and TLS errors beneath them, the status, the validation), never from
/// its wording. A host counts as unreachable for the network kinds (DNS, refused, TLS,
/// timeouts, other connection errors); the others are about single images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureCause {
    /// HTTP 404 or 410: the image is gone upstream.
    Gone,
    /// Another HTTP error status.
    HttpStatus,
    /// The host name did not resolve.
    Dns,
    /// The connection was refused or reset.
    Refused,
    /// The TLS handshake or certificate failed.
    Tls,
    Timeout,
    /// Any other failure to connect (proxy errors included).
    Connection,
    /// The body arrived cut short.
    Cut,
    /// The body was not an acceptable image.
    Invalid,
    /// The URL cannot be requested (scheme, syntax) or a redirect was refused.
    BadUrl,
    Other,
}

impl FailureCause {
    /// A few words for the console.
    pub fn describe(self) -> &'static str {
        match self {
            FailureCause::Gone => "gone upstream",
            FailureCause::HttpStatus => "HTTP error",
            FailureCause::Dns => "host name not resolved",
            FailureCause::Refused => "connection refused",
            FailureCause::Tls => "TLS failure",
            FailureCause::Timeout => "timed out",
            FailureCause::Connection => "connection failed",
            FailureCause::Cut => "body cut short",
            FailureCause::Invalid => "not a valid image",
            FailureCause::BadUrl => "URL not requestable",
            FailureCause::Other => "request failed",
        }
    }

    /// Whether this kind says the host could not be reached at all.
    pub fn is_network(self) -> bool {
        matches!(
            self,
            FailureCause::Dns
                | FailureCause::Refused
                | FailureCause::Tls
                | FailureCause::Timeout
                | FailureCause::Connection
        )
    }
}

/// A host the run gave up on: its remaining requests were not sent.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostGivenUp {
    /// The host requested, `host:port` (after `--rewrite`).
    pub host: String,
    /// The hosts of the original URLs routed to it (differs with `--rewrite`).
    pub original_hosts: Vec<String>,
    pub cause: FailureCause,
    /// The last error before the run gave up.
    pub last_error: String,
    /// Images of this host not fetched (those that failed and those never attempted).
    pub images: usize,
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
    /// record, not a regular file): requested again, and replaced.
    pub evicted: usize,
    /// Attempts beyond the first, over all requests.
    pub retries: u64,
    /// Sorted by image id.
    pub failures: Vec<FetchFailure>,
    /// Hosts that failed request after request (see `GIVE_UP_AFTER`) or never answered at
    /// all, sorted by host: a build from such a fetch does not deliver.
    pub hosts_given_up: Vec<HostGivenUp>,
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
    Client(#[source] reqwest::Error),
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
    run::fetch_all(requests, cache, opts, on_done, None, &|| false)
}

/// [`fetch_all_until`] that also hands over each downloaded file as validation checked it
/// ([`CheckedImage`]: its bytes, and a JPEG's pixels as decoded by
/// [`crate::decode::decode_jpeg`]) before reporting it done: `build` packs those bytes and
/// pixels, without reading the cache or decoding the file again. `stop` is polled:
/// `build` stops the fetch when the user interrupts it or when pack has failed.
pub fn fetch_all_checked(
    requests: &[FetchRequest],
    cache: &Cache,
    opts: &FetchOptions,
    on_done: &(dyn Fn(&FetchRequest, &FetchOutcome) + Sync),
    on_checked: Option<&OnChecked<'_>>,
    stop: &dyn Fn() -> bool,
) -> Result<FetchSummary, FetchError> {
    run::fetch_all(requests, cache, opts, on_done, on_checked, stop)
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
    run::fetch_all(requests, cache, opts, on_done, None, &|| {
        stop.load(std::sync::atomic::Ordering::Relaxed)
    })
}
