//! The build record: kaokore's own account of a build in `--out`, `.kaokore-build.json`.
//!
//! It is what makes a directory a kaokore build. A rebuild replaces or removes only the
//! files a record lists (never a file of the user's, and never through a symlink), and
//! `verify` takes the artifacts it expects from it rather than from SHA256SUMS alone.
//! It holds relative paths and counts only: no timings, no path of `--out`, so it is as
//! deterministic as the artifacts. It is not listed in SHA256SUMS (it lists SHA256SUMS).
//!
//! [`check_out`] decides, before anything is fetched or written, whether `--out` may take a
//! build at all; [`inspect`] is how the commit looks at a path without following symlinks.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};

/// The record's file name inside `--out`.
pub const RECORD_FILE: &str = ".kaokore-build.json";
/// The record layout written by this version; a record of another layout is not trusted.
pub const RECORD_LAYOUT: u32 = 1;
/// Staging directories of a pack are named `{STAGING_PREFIX}{pid}-{n}`.
pub(crate) const STAGING_PREFIX: &str = ".kaokore-staging-";
/// A record is a few KiB (a few MiB with `--formats images`); a larger file is not one.
const MAX_RECORD_BYTES: u64 = 64 << 20;

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
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(RecordError::Io { path, source }),
        };
        if !meta.file_type().is_file() {
            return Err(invalid("not a regular file".into()));
        }
        if meta.len() > MAX_RECORD_BYTES {
            return Err(invalid(format!("{} bytes is too large", meta.len())));
        }
        let mut text = String::new();
        fs::File::open(&path)
            .and_then(|f| f.take(MAX_RECORD_BYTES).read_to_string(&mut text))
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
        if let Some(bad) = record.files.iter().find(|f| !is_plain_relative(f)) {
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
                    .any(|&s| **f == format!("{}/{RECORD_FILE}", crate::pack::size_dir_name(s)))
        };
        if let Some(bad) = record.files.iter().find(working) {
            return Err(invalid(format!(
                "names {bad:?}, one of kaokore's working files"
            )));
        }
        Ok(Some(record))
    }

    /// Write the record into `out` atomically (temp file, then rename).
    pub fn write(&self, out: &Path) -> Result<(), RecordError> {
        let path = out.join(RECORD_FILE);
        let temp = out.join(format!("{RECORD_FILE}.tmp-{}", std::process::id()));
        let mut text = serde_json::to_string_pretty(self).expect("a record serializes");
        text.push('\n');
        let io_err = |source| RecordError::Io {
            path: path.clone(),
            source,
        };
        fs::write(&temp, text).map_err(io_err)?;
        fs::rename(&temp, &path).map_err(|source| {
            let _ = fs::remove_file(&temp);
            RecordError::Io {
                path: path.clone(),
                source,
            }
        })
    }
}

/// Why `--out` cannot take this build. Returned before anything in it was changed.
#[derive(Debug, thiserror::Error)]
pub enum OutError {
    /// `--out`, or a directory above it, is a file.
    #[error("--out {}: {} is not a directory", out.display(), at.display())]
    NotADirectory { out: PathBuf, at: PathBuf },
    /// A non-empty directory without a build record: not kaokore's to write into.
    #[error("{}", foreign_message(out, entries, *has_sums))]
    Foreign {
        out: PathBuf,
        /// Its entries (a directory with a trailing `/`), sorted.
        entries: Vec<String>,
        has_sums: bool,
    },
    /// A record that cannot be trusted: nothing it lists may be replaced.
    #[error(
        "--out {}: its build record cannot be trusted ({source}); kaokore changed nothing. \
         If this is a kaokore build, delete the directory and build again; otherwise pass \
         --out a new or empty directory",
        out.display()
    )]
    BadRecord {
        out: PathBuf,
        #[source]
        source: RecordError,
    },
    /// Where the build must write, something kaokore did not write (or a symlink) is.
    #[error(
        "--out {}: {at} {why}; kaokore replaces only files its previous build wrote, never \
         through a symlink, and changed nothing. Move {at} away, or pass --out a new or \
         empty directory",
        out.display()
    )]
    InTheWay {
        out: PathBuf,
        /// Relative to `out`, `/`-separated.
        at: String,
        why: &'static str,
    },
    #[error("--out {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl OutError {
    /// 2 when `--out` is the wrong place for a build (a file, someone else's directory),
    /// 1 when it is the right place but cannot be used (permissions, I/O).
    pub fn exit_code(&self) -> i32 {
        match self {
            OutError::Io { .. }
            | OutError::BadRecord {
                source: RecordError::Io { .. },
                ..
            } => 1,
            _ => 2,
        }
    }

    fn io(path: &Path) -> impl FnOnce(io::Error) -> OutError {
        let path = path.to_path_buf();
        move |source| OutError::Io { path, source }
    }
}

/// How many entries a refusal names before "and N more".
const ENTRIES_SHOWN: usize = 5;

fn foreign_message(out: &Path, entries: &[String], has_sums: bool) -> String {
    let mut shown = entries
        .iter()
        .take(ENTRIES_SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if entries.len() > ENTRIES_SHOWN {
        shown.push_str(&format!(" and {} more", entries.len() - ENTRIES_SHOWN));
    }
    let mut message = format!(
        "--out {out}: not empty and not a kaokore build (no {RECORD_FILE}): it holds {shown}. \
         kaokore writes only into a new or empty directory or into one of its own builds, \
         and changed nothing. Pass --out a new or empty directory, or move those files away",
        out = out.display()
    );
    if has_sums {
        message.push_str(
            ". A SHA256SUMS does not make a kaokore build: if this is a build of an older \
             kaokore, delete the directory and build again",
        );
    }
    message
}

/// Whether `out` may take a build, checked before anything is fetched or written: a
/// missing or empty directory, a kaokore build (a valid record) and the leftovers of a
/// killed kaokore run are accepted; anything else is refused, with nothing touched.
/// Returns the previous build's record. A missing `out` is created (to see that it can
/// be) and removed again; an existing one gets a probe directory, removed at once.
pub fn check_out(out: &Path) -> Result<Option<BuildRecord>, OutError> {
    match fs::metadata(out) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(OutError::NotADirectory {
                out: out.to_path_buf(),
                at: out.to_path_buf(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return probe_missing(out).map(|()| None),
        Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
            return Err(OutError::NotADirectory {
                out: out.to_path_buf(),
                at: existing_ancestor(out).unwrap_or_else(|| out.to_path_buf()),
            });
        }
        Err(e) => return Err(OutError::io(out)(e)),
    }
    let mut entries = Vec::new();
    for entry in fs::read_dir(out).map_err(OutError::io(out))? {
        let entry = entry.map_err(OutError::io(out))?;
        let kind = entry.file_type().map_err(OutError::io(&entry.path()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == RECORD_FILE || leftover_pid(&name, kind).is_some() {
            continue;
        }
        entries.push(if kind.is_dir() { name + "/" } else { name });
    }
    let record = BuildRecord::read(out).map_err(|source| OutError::BadRecord {
        out: out.to_path_buf(),
        source,
    })?;
    if record.is_none() && !entries.is_empty() {
        entries.sort();
        let has_sums = entries.iter().any(|e| e == "SHA256SUMS");
        return Err(OutError::Foreign {
            out: out.to_path_buf(),
            entries,
            has_sums,
        });
    }
    // Read-only directories and file systems show here, not after the fetch.
    let probe = out.join(format!("{STAGING_PREFIX}{}-probe", std::process::id()));
    match fs::create_dir(&probe) {
        Ok(()) => {
            let _ = fs::remove_dir(&probe);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(OutError::io(out)(e)),
    }
    Ok(record)
}

/// `out` does not exist: create it, so that a file in the way or a missing permission
/// shows now, then remove what was created (the build creates it again when it commits).
fn probe_missing(out: &Path) -> Result<(), OutError> {
    let created: Vec<&Path> = out
        .ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .take_while(|a| fs::symlink_metadata(a).is_err())
        .collect();
    if let Some(at) = existing_ancestor(out).filter(|a| !a.is_dir()) {
        return Err(OutError::NotADirectory {
            out: out.to_path_buf(),
            at,
        });
    }
    fs::create_dir_all(out).map_err(|e| match e.kind() {
        io::ErrorKind::NotADirectory => OutError::NotADirectory {
            out: out.to_path_buf(),
            at: existing_ancestor(out).unwrap_or_else(|| out.to_path_buf()),
        },
        _ => OutError::io(out)(e),
    })?;
    for dir in created {
        let _ = fs::remove_dir(dir);
    }
    Ok(())
}

/// The nearest of `path` and its ancestors that exists.
fn existing_ancestor(path: &Path) -> Option<PathBuf> {
    path.ancestors()
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| fs::symlink_metadata(a).is_ok())
        .map(Path::to_path_buf)
}

/// The process id in the name of something a kaokore run leaves behind only when it is
/// killed: a staging directory (a real one, not a symlink), or the temp file of the record
/// or of report.json (a regular file). `None` for anything else.
pub(crate) fn leftover_pid(name: &str, kind: fs::FileType) -> Option<u32> {
    let pid = if kind.is_dir() {
        name.strip_prefix(STAGING_PREFIX)?.split('-').next()?
    } else if kind.is_file() {
        let record_temp = format!("{RECORD_FILE}.tmp-");
        let report_temp = format!(".{}.tmp-", crate::report::REPORT_FILE);
        name.strip_prefix(&record_temp)
            .or_else(|| name.strip_prefix(&report_temp))?
    } else {
        return None;
    };
    pid.parse().ok()
}

/// What is at `out/relative`, looked at one component at a time without following any
/// symlink below `out`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathState {
    Absent,
    /// A regular file, reached through real directories only.
    File,
    /// A real directory, reached through real directories only.
    Dir,
    /// Something kaokore neither replaces nor writes through: `at` (relative to `out`)
    /// is a symlink, a file where a directory goes, or a special file.
    Blocked {
        at: String,
        why: &'static str,
    },
}

/// Look at `out/relative` (a plain relative path) without following symlinks.
pub(crate) fn inspect(out: &Path, relative: &str) -> io::Result<PathState> {
    let parts: Vec<&str> = relative.split('/').collect();
    let mut path = out.to_path_buf();
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(PathState::Absent),
            Err(e) => return Err(e),
        };
        let kind = meta.file_type();
        let last = i + 1 == parts.len();
        let why = if kind.is_symlink() {
            "is a symlink"
        } else if kind.is_dir() {
            if last {
                return Ok(PathState::Dir);
            }
            continue;
        } else if last && kind.is_file() {
            return Ok(PathState::File);
        } else if last {
            "is not a regular file"
        } else {
            "is not a directory"
        };
        return Ok(PathState::Blocked {
            at: parts[..=i].join("/"),
            why,
        });
    }
    Ok(PathState::Absent)
}

impl BuildRecord {
    /// The files a build of this record's formats and size holds: the fixed names each
    /// format writes for every split, the card, the provider list, the copied metadata,
    /// SHA256SUMS, and for `images` the image files the record lists (which depend on what
    /// was fetched) and for `webdataset` the shards it lists (which depend on the shard
    /// size). Not report.json (a log) nor the record itself. An error says why the
    /// record cannot describe a build (unknown format or split, size out of range, an
    /// image file that is not `images_S/NNNNNNNN.jpg`).
    pub fn expected_files(&self) -> Result<BTreeSet<String>, String> {
        use crate::metadata::Split;
        use crate::pack::{CROISSANT, SHA256SUMS};
        if self.size == 0 || self.size > crate::normalize::MAX_IMAGE_EDGE {
            return Err(format!(
                "size {} is not between 1 and {}",
                self.size,
                crate::normalize::MAX_IMAGE_EDGE
            ));
        }
        let splits: Vec<&str> = Split::ALL.iter().map(|s| s.name()).collect();
        if let Some(other) = self.rows.keys().find(|k| !splits.contains(&k.as_str())) {
            return Err(format!("unknown split '{other}' in rows"));
        }
        if let Some(missing) = splits.iter().find(|s| !self.rows.contains_key(**s)) {
            return Err(format!("no row count for split '{missing}'"));
        }
        // As pack's card writes them (the copied metadata keeps its upstream names).
        let mut files: BTreeSet<String> = [
            SHA256SUMS,
            CROISSANT,
            "README.md",
            "CONTENT_PROVIDERS.txt",
            crate::metadata::LABELS_FILE,
            crate::metadata::TAGS_FILE,
            crate::metadata::CLASS_NAMES_EN_FILE,
            crate::metadata::CLASS_NAMES_JA_FILE,
        ]
        .into_iter()
        .map(String::from)
        .collect();
        if self.formats.is_empty() {
            return Err("no formats".into());
        }
        for name in &self.formats {
            let format = crate::pack::format::by_name(name)
                .ok_or_else(|| format!("unknown format '{name}'"))?;
            files.extend(format.files(self.size));
            files.extend(format.listed_files(self.size, &self.files)?);
        }
        Ok(files)
    }
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
mod tests {
    use super::*;

    fn record() -> BuildRecord {
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
        r.files.push("size-48/.kaokore-staging-1-0/x".into());
        r.write(dir.path()).unwrap();
        assert!(BuildRecord::read(dir.path()).is_err(), "a staging file");
        fs::write(dir.path().join(RECORD_FILE), "{\"files\": []}").unwrap();
        let e = BuildRecord::read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a build record"), "{e}");
    }

    #[test]
    fn check_out_takes_missing_empty_own_and_leftover_dirs_only() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new/out");
        assert_eq!(check_out(&out).unwrap(), None);
        assert!(!dir.path().join("new").exists(), "the probe leaves nothing");

        fs::create_dir_all(out.join(".kaokore-staging-999999999-0/npz")).unwrap();
        fs::write(out.join(format!("{RECORD_FILE}.tmp-999999999")), "{").unwrap();
        assert_eq!(check_out(&out).unwrap(), None, "leftovers of a killed run");

        fs::write(out.join("notes.txt"), "x").unwrap();
        let e = check_out(&out).unwrap_err();
        assert!(matches!(&e, OutError::Foreign { entries, .. } if entries == &["notes.txt"]));
        assert_eq!(e.exit_code(), 2);

        record().write(&out).unwrap();
        assert_eq!(
            check_out(&out).unwrap(),
            Some(record()),
            "a build with a user file"
        );

        let file = dir.path().join("file");
        fs::write(&file, "x").unwrap();
        for bad in [file.clone(), file.join("below")] {
            let e = check_out(&bad).unwrap_err();
            assert!(matches!(e, OutError::NotADirectory { .. }), "{e}");
            assert_eq!(e.exit_code(), 2);
        }
    }

    #[test]
    fn leftovers_are_staging_dirs_and_temp_files_with_a_pid() {
        let dir = tempfile::tempdir().unwrap();
        let kind = |name: &str, is_dir: bool| {
            let p = dir.path().join(name);
            if is_dir {
                fs::create_dir(&p).unwrap();
            } else {
                fs::write(&p, "").unwrap();
            }
            fs::symlink_metadata(&p).unwrap().file_type()
        };
        assert_eq!(
            leftover_pid(".kaokore-staging-12-0", kind("a", true)),
            Some(12)
        );
        assert_eq!(
            leftover_pid(".kaokore-staging-12-0", kind("b", false)),
            None
        );
        assert_eq!(
            leftover_pid(".kaokore-build.json.tmp-7", kind("c", false)),
            Some(7)
        );
        assert_eq!(
            leftover_pid(".report.json.tmp-7", kind("d", false)),
            Some(7)
        );
        assert_eq!(leftover_pid(".report.json.tmp-x", kind("e", false)), None);
        assert_eq!(leftover_pid("SHA256SUMS", kind("f", false)), None);
    }

    #[cfg(unix)]
    #[test]
    fn inspect_never_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir_all(out.join("npz")).unwrap();
        fs::create_dir_all(&elsewhere).unwrap();
        fs::write(out.join("npz/a.npz"), "x").unwrap();
        fs::write(elsewhere.join("a.gz"), "x").unwrap();
        std::os::unix::fs::symlink(&elsewhere, out.join("idx")).unwrap();
        std::os::unix::fs::symlink(elsewhere.join("a.gz"), out.join("b.gz")).unwrap();
        assert_eq!(inspect(&out, "npz/a.npz").unwrap(), PathState::File);
        assert_eq!(inspect(&out, "npz").unwrap(), PathState::Dir);
        assert_eq!(inspect(&out, "npz/b.npz").unwrap(), PathState::Absent);
        let blocked = |at: &str, why| PathState::Blocked { at: at.into(), why };
        assert_eq!(
            inspect(&out, "idx/a.gz").unwrap(),
            blocked("idx", "is a symlink")
        );
        assert_eq!(
            inspect(&out, "b.gz").unwrap(),
            blocked("b.gz", "is a symlink")
        );
        assert_eq!(
            inspect(&out, "npz/a.npz/x").unwrap(),
            blocked("npz/a.npz", "is not a directory")
        );
    }

    #[test]
    fn expected_files_follow_formats_and_splits() {
        let mut r = record();
        let files = r.expected_files().unwrap();
        assert!(files.contains("idx/kaokore-dev-images-idx4-ubyte.gz"));
        assert!(files.contains("npz/kaokore-test-labels.npz"));
        assert!(files.contains("labels.csv") && files.contains("SHA256SUMS"));
        assert!(!files.iter().any(|f| f.starts_with("parquet/")));
        // card, providers, SHA256SUMS, croissant.json + 4 metadata + 3 x (3 idx + 2 npz)
        assert!(files.contains("croissant.json"));
        assert_eq!(files.len(), 8 + 15);

        r.formats.push("images".into());
        r.files.push("images_256/00000042.jpg".into());
        assert!(
            r.expected_files()
                .unwrap()
                .contains("images_256/00000042.jpg")
        );
        r.files.push("images_256/notes.txt".into());
        assert!(r.expected_files().unwrap_err().contains("notes.txt"));

        let mut r = record();
        r.formats.push("tiff".into());
        assert_eq!(r.expected_files().unwrap_err(), "unknown format 'tiff'");
        let mut r = record();
        r.rows.remove("dev");
        assert_eq!(
            r.expected_files().unwrap_err(),
            "no row count for split 'dev'"
        );
        let mut r = record();
        r.size = 0;
        assert!(r.expected_files().unwrap_err().starts_with("size 0"));
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
