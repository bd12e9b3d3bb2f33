//! The fixed names of kaokore's files: those of a build directory (`--out`) and the one it
//! keeps in the cache. Every layer that writes, reads or recognises one of them takes the
//! name from here, so a name is spelled once.

/// kaokore's record of what a build wrote (see `out::record`).
pub const RECORD_FILE: &str = ".kaokore-build.json";
/// The lock a build holds on `--out` for its whole run, with its pid (see `out::lock`).
pub const LOCK_FILE: &str = ".kaokore-lock";
/// Staging directories of a pack are named `{STAGING_PREFIX}{pid}-{n}`.
pub const STAGING_PREFIX: &str = ".kaokore-staging-";
/// Every artifact's SHA-256, in `sha256sum -c` format.
pub const SHA256SUMS: &str = "SHA256SUMS";
/// Croissant metadata of the build.
pub const CROISSANT: &str = "croissant.json";
/// The dataset card.
pub const CARD: &str = "README.md";
/// The content providers and how many images each holds.
pub const CONTENT_PROVIDERS: &str = "CONTENT_PROVIDERS.txt";
/// What a run did: a log, not an artifact (it holds timings).
pub const REPORT_FILE: &str = "report.json";
/// The report of the last build that did not deliver, in the cache directory.
pub const FAILED_REPORT_FILE: &str = "failed-build-report.json";

/// The directory of size S in a build of several sizes.
pub fn size_dir_name(size: u32) -> String {
    format!("size-{size}")
}
