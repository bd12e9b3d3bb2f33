//! The output directory: what makes `--out` a kaokore build and how a build changes it.
//! [`ownership`] decides whether `--out` may take a build at all, [`record`] is kaokore's
//! account of what a build wrote, and [`staging`] writes a build aside and commits it so
//! that only files the previous build recorded are replaced, never through a symlink, and
//! [`lock`] keeps it to one build at a time.
//! It knows file names and paths, not formats: pack decides what the files are.

pub mod checksums;
pub mod lock;
pub mod ownership;
pub mod record;
pub mod staging;

use std::path::PathBuf;

pub use lock::{OutDir, OutLock, SharedLock};
pub use ownership::{OutError, check_out, check_size_dir};
pub use record::{BuildRecord, RECORD_FILE, RecordError, is_plain_relative};
pub use staging::{Committed, Prepared, Staging, check_dirs, commit};

/// One written file, path relative to the output directory.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Artifact {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
}

/// Why a staged build could not be written or committed. Until [`commit`] has written
/// its record in progress, the previous build is untouched.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Record(#[from] RecordError),
    /// `--out` cannot take this build; nothing in it was changed.
    #[error(transparent)]
    Out(#[from] OutError),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

impl CommitError {
    /// 2 when `--out` is the wrong place for the build, 1 for any other failure.
    pub fn exit_code(&self) -> i32 {
        match self {
            CommitError::Out(e) => e.exit_code(),
            _ => 1,
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> CommitError {
        let path = path.into();
        move |source| CommitError::Io { path, source }
    }
}
