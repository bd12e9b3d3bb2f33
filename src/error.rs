//! The library's error type, and the exit status each kind of error maps to.

use crate::metadata::MetadataError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad metadata input: exit 2, nothing written.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// A bad combination of options: exit 2.
    #[error("{0}")]
    Usage(String),
    /// A stage that is not available in this build of the tool.
    #[error("`kaokore {0}` is not built yet")]
    NotBuilt(&'static str),
    /// `--strict` and some images could not be fetched.
    #[error("{failed} image(s) could not be fetched (--strict); see report.json")]
    Strict { failed: usize },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// 2 for bad usage or input, 1 for a runtime failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Metadata(_) | Error::Usage(_) => 2,
            _ => 1,
        }
    }
}
