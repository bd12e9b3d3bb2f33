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
    /// `--strict` and some images could not be fetched.
    #[error("{failed} image(s) could not be fetched (--strict); see report.json")]
    Strict { failed: usize },
    #[error(transparent)]
    Fetch(#[from] crate::fetch::FetchError),
    #[error(transparent)]
    Pack(#[from] crate::pack::PackError),
    /// `--out` cannot take a build (checked before the fetch); nothing in it was changed.
    #[error(transparent)]
    Out(#[from] crate::record::OutError),
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    /// A bug: something that must not happen did.
    #[error("internal error: {0}")]
    Internal(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Error {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// 2 for bad usage or input, 1 for a runtime failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Metadata(_) | Error::Usage(_) | Error::Verify(_) => 2,
            Error::Out(e) => e.exit_code(),
            Error::Pack(e) => e.exit_code(),
            _ => 1,
        }
    }
}
