//! The build record: kaokore's own account of a build in `--out`, `.kaokore-build.json`.
//!
//! It is what makes a directory a kaokore build. A rebuild replaces or removes only the
//! files a record lists (never a file of the user's, and never through a symlink), and
//! `verify` takes the artifacts it expects from it rather than from SHA256SUMS alone.
//! It holds relative paths and counts only: no timings, no path of `--out`, so it is as
//! deterministic as the artifacts. It is not listed in SHA256SUMS (it lists SHA256SUMS).

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Component, Path, PathBuf};

pub use crate::layout::RECORD_FILE;
use crate::layout::size_dir_name;

/// The record layout written by this version; a record of another layout is not trusted.
pub const RECORD_LAYOUT: u32 = 1;
/// A record is a few KiB (a few MiB with `--formats images`); a larger file is not one.
pub(crate) const MAX_RECORD_BYTES: u64 = 64 << 20;

/// What one build wrote.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BuildRecord {
    /// Always [`RECORD_LAYOUT`]; the key also tells the file apart from other JSON.
    pub kaokore_build: u32,
    /// `1.0` .. `1.3`.
    pub dataset_version: String,
    /// Normalized edge length S.
    pub size: u32,
    /// The `--formats` names built, in the order `--formats` lists them canonically.
    pub formats: Vec<String>,
    /// Rows packed per split (`train`, `dev`, `test`).
    pub rows: BTreeMap<String, u64>,
    /// Every file the build wrote in `--out`, relative, `/`-separated, sorted: the
    /// artifacts, SHA256SUMS and report.json (not the record itself).
    pub files: Vec<String>,
    /// A build of several sizes (`--size 64,256`): the sizes, each a complete build with
    /// its own record in `size-{S}/`. `files` then lists every file of those builds
    /// (their records too) and `size`, `formats` and `rows` are the first size's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sizes: Vec<u32>,
    /// The directories below `--out` that hold `files` (`idx`, `size-64`, `size-64/idx`),
    /// relative, sorted: kaokore made them, and removes them once empty and no longer
    /// needed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<String>,
    /// Written before a commit changes anything in `--out`, and cleared when it is done:
    /// while set, `files` and `dirs` list every path of both the previous build and the
    /// one being put in place, so a run stopped at any point leaves nothing of kaokore's
    /// that the next run would take for the user's. `verify` refuses such a build; the
    /// next build or pack replaces it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_progress: bool,
}

/// A record that exists but cannot be trusted.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
}

impl BuildRecord {
    /// The record in `out`, `None` when there is none. A record that is a symlink or
    /// special file, too large, not valid JSON of this layout, or that names a path that
    /// is not a plain relative one, is an error: nothing it says is acted on.
    pub fn read(out: &Path) -> Result<Option<BuildRecord>, RecordError> {
        let path = out.join(RECORD_FILE);
        let invalid = |message: String| RecordError::Invalid {
            path: path.clone(),
            message,
        };
        // Never through a symlink, never blocking on a FIFO (crate::fs).
        let file = match crate::fs::open_regular(&path) {
            Ok(f) => f,
            Err(crate::fs::OpenError::Missing { .. }) => return Ok(None),
            Err(crate::fs::OpenError::Io(source)) => return Err(RecordError::Io { path, source }),
            Err(_) => return Err(invalid("not a regular file".into())),
        };
        let len = file
            .metadata()
            .map_err(|source| RecordError::Io {
                path: path.clone(),
                source,
            })?
            .len();
        if len > MAX_RECORD_BYTES {
            return Err(invalid(format!("{len} bytes is too large")));
        }
        let mut text = String::new();
        file.take(MAX_RECORD_BYTES)
            .read_to_string(&mut text)
            .map_err(|source| RecordError::Io {
                path: path.clone(),
                source,
            })?;
        let record: BuildRecord =
            serde_json::from_str(&text).map_err(|e| invalid(format!("not a build record: {e}")))?;
        if record.kaokore_build != RECORD_LAYOUT {
            return Err(invalid(format!(
                "record layout {} is not {RECORD_LAYOUT}",
                record.kaokore_build
            )));
        }
        if let Some(bad) = record
            .files
            .iter()
            .chain(&record.dirs)
            .find(|f| !is_plain_relative(f))
        {
            return Err(invalid(format!("names {bad:?}, not a plain relative path")));
        }
        // The record, staging and temp files are never artifacts: a record naming them
        // could make a commit remove its own staged files. The one exception is the
        // record of a size directory, listed by the record of several sizes.
        let working = |f: &&String| {
            f.split('/').any(|c| c.starts_with(".kaokore-"))
                && !record
                    .sizes
                    .iter()
                    .any(|&s| **f == format!("{}/{RECORD_FILE}", size_dir_name(s)))
                && !(record.in_progress && is_size_record(f))
        };
        if let Some(bad) = record.files.iter().chain(&record.dirs).find(working) {
            return Err(invalid(format!(
                "names {bad:?}, one of kaokore's working files"
            )));
        }
        Ok(Some(record))
    }

    /// Write the record into `out` atomically and durably (see [`write_durably`]).
    pub fn write(&self, out: &Path) -> Result<(), RecordError> {
        let mut text = serde_json::to_string_pretty(self).expect("a record serializes");
        text.push('\n');
        write_durably(out, RECORD_FILE, text.as_bytes()).map_err(|source| RecordError::Io {
            path: out.join(RECORD_FILE),
            source,
        })
    }
}

/// Write `dir/name` so that a crash or a kill at any instant leaves either the old file or
/// the new one, and once this returns the new one survives a power loss: a temp file
/// (`{name}.tmp-{pid}`, a leftover the next run removes), fsynced, renamed over `name`,
/// then the directory fsynced. A few milliseconds, done twice per commit.
pub(crate) fn write_durably(dir: &Path, name: &str, bytes: &[u8]) -> io::Result<()> {
    let path = dir.join(name);
    let temp = dir.join(format!("{name}.tmp-{}", std::process::id()));
    let written = (|| {
        let mut file = fs::File::create(&temp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temp, &path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&temp);
        return Err(e);
    }
    sync_dir(dir)
}

/// fsync a directory, so that the renames in it survive a power loss (a no-op where
/// directories cannot be opened).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// Whether `path` is the record of a size directory (`size-{S}/.kaokore-build.json`): a
/// record in progress lists those of the previous build too, whatever its sizes.
fn is_size_record(path: &str) -> bool {
    path.split_once('/').is_some_and(|(dir, name)| {
        name == RECORD_FILE
            && dir
                .strip_prefix("size-")
                .and_then(|s| s.parse::<u32>().ok())
                .is_some_and(|s| size_dir_name(s) == dir)
    })
}

/// Whether `path` is relative and made only of plain names (no `..`, `.`, root or
/// prefix, no empty component): the only paths a record may name.
pub fn is_plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|c| !c.is_empty() && c != "." && c != "..")
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn record() -> BuildRecord {
        BuildRecord {
            kaokore_build: RECORD_LAYOUT,
            dataset_version: "1.3".into(),
            size: 256,
            formats: vec!["idx".into(), "npz".into()],
            rows: [
                ("train".to_string(), 3),
                ("dev".into(), 1),
                ("test".into(), 1),
            ]
            .into_iter()
            .collect(),
            files: vec!["SHA256SUMS".into(), "idx/a.gz".into(), "report.json".into()],
            sizes: Vec::new(),
            dirs: vec!["idx".into()],
            in_progress: false,
        }
    }

    #[test]
    fn round_trips_and_is_absent_when_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert!(BuildRecord::read(dir.path()).unwrap().is_none());
        record().write(dir.path()).unwrap();
        assert_eq!(BuildRecord::read(dir.path()).unwrap(), Some(record()));
        // Only the record is left: no temp file.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().flatten().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn refuses_unsafe_paths_and_other_json() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["../x", "/etc/passwd", "a//b", "a/./b", "", "a\\b"] {
            let mut r = record();
            r.files.push(bad.into());
            r.write(dir.path()).unwrap();
            let e = BuildRecord::read(dir.path()).unwrap_err().to_string();
            assert!(e.contains("not a plain relative path"), "{bad:?}: {e}");
        }
        let mut r = record();
        r.files.push(".kaokore-staging-1-0/idx/a.gz".into());
        r.write(dir.path()).unwrap();
        let e = BuildRecord::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("kaokore's working files"), "{e}");
        // A record of several sizes lists its size builds' records, and only those.
        let mut r = record();
        r.files.push("size-32/.kaokore-build.json".into());
        r.write(dir.path()).unwrap();
        assert!(
            BuildRecord::read(dir.path()).is_err(),
            "not a build of sizes"
        );
        r.sizes = vec![32, 48];
        r.write(dir.path()).unwrap();
        assert_eq!(BuildRecord::read(dir.path()).unwrap(), Some(r.clone()));
        // A record in progress lists the size records of the build it replaces.
        let mut claim = record();
        claim.files.push("size-64/.kaokore-build.json".into());
        claim.in_progress = true;
        claim.write(dir.path()).unwrap();
        assert_eq!(BuildRecord::read(dir.path()).unwrap(), Some(claim.clone()));
        claim.files.push("size-64/.kaokore-staging-1-0/x".into());
        claim.write(dir.path()).unwrap();
        assert!(BuildRecord::read(dir.path()).is_err(), "a staging file");
        r.files.push("size-48/.kaokore-staging-1-0/x".into());
        r.write(dir.path()).unwrap();
        assert!(BuildRecord::read(dir.path()).is_err(), "a staging file");
        fs::write(dir.path().join(RECORD_FILE), "{\"files\": []}").unwrap();
        let e = BuildRecord::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a build record"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_symlinked_record() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere.json");
        record().write(dir.path()).unwrap();
        fs::rename(dir.path().join(RECORD_FILE), &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, dir.path().join(RECORD_FILE)).unwrap();
        let e = BuildRecord::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }
}
