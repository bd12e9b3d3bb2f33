//! Wires the stages together: the only place that knows their order.
//!
//! `metadata -> fetch -> normalize -> encode -> pack`, with `build` overlapping fetch and
//! pack, and `verify` re-reading what pack wrote.

use std::path::Path;

use crate::config::BuildConfig;
use crate::error::Error;
use crate::info::DatasetInfo;
use crate::metadata::{Dataset, DatasetVersion, MetadataError, MetadataFiles};

/// Parse the embedded files of `version`, or an upstream-layout directory.
pub fn load_dataset(version: DatasetVersion, dir: Option<&Path>) -> Result<Dataset, Error> {
    let Some(dir) = dir else {
        return Ok(Dataset::parse(version, MetadataFiles::embedded(version))?);
    };
    let files = MetadataFiles::read_dir(dir)?;
    // Name the file by its path, so the user can open it at the line.
    Dataset::parse(version, files).map_err(|e| match e {
        MetadataError::Invalid {
            file,
            line,
            message,
        } => MetadataError::Invalid {
            file: dir.join(file).display().to_string(),
            line,
            message,
        }
        .into(),
        other => other.into(),
    })
}

/// `kaokore info`: the figures of a version and how much of it the cache holds.
pub fn info(dataset: &Dataset, cache: Option<&Path>) -> Result<DatasetInfo, Error> {
    let _ = cache;
    Ok(DatasetInfo::of(dataset, None))
}

/// `kaokore build`: fetch what is missing and pack, overlapping the two.
pub fn build(cfg: &BuildConfig) -> Result<(), Error> {
    let _dataset = load_dataset(cfg.version, cfg.metadata_dir.as_deref())?;
    Err(Error::NotBuilt("build"))
}

/// `kaokore fetch`: fill the cache with every URL of the version.
pub fn fetch(cfg: &BuildConfig) -> Result<(), Error> {
    let _dataset = load_dataset(cfg.version, cfg.metadata_dir.as_deref())?;
    Err(Error::NotBuilt("fetch"))
}

/// `kaokore pack`: normalize and pack from the cache, no network.
pub fn pack(cfg: &BuildConfig) -> Result<(), Error> {
    let _dataset = load_dataset(cfg.version, cfg.metadata_dir.as_deref())?;
    Err(Error::NotBuilt("pack"))
}

/// `kaokore verify DIR`.
pub fn verify(dir: &Path) -> Result<(), Error> {
    let _ = dir;
    Err(Error::NotBuilt("verify"))
}
