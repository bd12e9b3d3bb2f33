//! The library's error type, and the exit status each kind of error maps to.

use std::path::PathBuf;

use crate::fetch::{FailureGroup, Shortfall};
use crate::metadata::MetadataError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad metadata input: exit 2, nothing written.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A bad combination of options: exit 2.
    #[error("{0}")]
    Usage(String),
    /// `--strict` and some images could not be fetched.
    #[error("{failed} image(s) could not be fetched (--strict)")]
    Strict { failed: usize },
    /// The run could not deliver what it was asked for; nothing in `--out` was replaced.
    #[error("{}", .0.headline())]
    NotDelivered(Box<NotDelivered>),
    /// Stopped on request (`BuildConfig::stop`, set on SIGINT/SIGTERM): staging removed,
    /// `--out` and the cache as they were.
    #[error("interrupted")]
    Interrupted,
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error(transparent)]
    Pack(#[from] crate::pack::PackError),
    /// `--out` cannot take a build (checked before the fetch); nothing in it was changed.
    #[error(transparent)]
    Out(#[from] crate::out::OutError),
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    #[error(transparent)]
    Report(#[from] crate::report::ReportError),
    /// A bug: something that must not happen did.
    #[error("internal error: {0}")]
    Internal(String),
}

/// A `build`, `fetch` or `pack` that could not deliver, and why.
#[derive(Debug)]
pub struct NotDelivered {
    pub command: &'static str,
    /// The output directory left as it was (`None` for `fetch`).
    pub out: Option<PathBuf>,
    /// One per cause, each one line.
    pub shortfalls: Vec<Shortfall>,
    /// The images not fetched, by host and cause.
    pub groups: Vec<FailureGroup>,
    pub failed: usize,
    /// Where the report of the run was written, or why it could not be (`None`: no
    /// report for this command).
    pub report: Option<Result<PathBuf, crate::report::ReportError>>,
}

impl NotDelivered {
    /// One line: what did not deliver and that `--out` is untouched.
    pub fn headline(&self) -> String {
        match &self.out {
            Some(out) => format!(
                "{} did not deliver; {} was left as it was",
                self.command,
                out.display()
            ),
            None => format!("{} did not deliver", self.command),
        }
    }

    /// Whether a hint about the network, proxies and mirrors helps.
    pub fn network_related(&self) -> bool {
        self.shortfalls.iter().any(Shortfall::is_network)
    }
}

impl Error {
    /// 2 for bad usage or input, 130 when interrupted (the caller may know the signal
    /// better), 1 for a runtime failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Metadata(_) | Error::Usage(_) | Error::Verify(_) => 2,
            Error::Out(e) => e.exit_code(),
            Error::Pack(e) => e.exit_code(),
            Error::Interrupted => 130,
            _ => 1,
        }
    }
}
