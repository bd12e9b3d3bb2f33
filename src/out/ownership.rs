//! Whether `--out` may take a build at all, decided before anything is fetched or written:
//! a missing or empty directory, one of kaokore's own builds, or the leftovers of a killed
//! kaokore run. Anything else is refused with nothing touched.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::record::{BuildRecord, RecordError};
use crate::layout::{LOCK_FILE, RECORD_FILE, REPORT_FILE, SHA256SUMS, STAGING_PREFIX};

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
    /// Another kaokore run holds `--out` (see [`crate::out::lock`]).
    #[error("{}", busy_message(out, *pid))]
    Busy { out: PathBuf, pid: Option<u32> },
    /// `--out` no longer leads to the directory the run started in (moved, or replaced by
    /// a symlink): nothing more is written.
    #[error(
        "--out {}: replaced by another directory or a symlink while kaokore ran; it wrote \
         nothing there. Run the command again",
        out.display()
    )]
    Replaced { out: PathBuf },
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
            | OutError::Busy { .. }
            | OutError::Replaced { .. }
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

fn busy_message(out: &Path, pid: Option<u32>) -> String {
    let who = match pid {
        Some(pid) => format!("another kaokore process (pid {pid})"),
        None => "another kaokore process".to_string(),
    };
    format!(
        "--out {}: in use by {who}, which holds {LOCK_FILE}; kaokore changed nothing. One \
         build at a time per directory: wait for it to finish, or pass another --out",
        out.display()
    )
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
        // The lock file of a run (this one's, or one killed) is kaokore's too.
        let lock = name == LOCK_FILE && kind.is_file();
        if name == RECORD_FILE || lock || leftover_pid(&name, kind).is_some() {
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
        let has_sums = entries.iter().any(|e| e == SHA256SUMS);
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

/// Whether the size directory `dir_name` (`size-{S}`) of `out` may take that size's
/// build: one that `out`'s record lists (the record of a build of several sizes, or one in
/// progress that a run stopped mid-commit left) is kaokore's whatever it holds, as long as
/// its own record, if any, can be trusted; any other must pass [`check_out`] itself.
pub fn check_size_dir(
    out: &Path,
    top: Option<&BuildRecord>,
    dir_name: &str,
) -> Result<(), OutError> {
    let dir = out.join(dir_name);
    let prefix = format!("{dir_name}/");
    let listed = top.is_some_and(|r| {
        r.dirs.iter().any(|d| d == dir_name) || r.files.iter().any(|f| f.starts_with(&prefix))
    });
    if !listed {
        return check_out(&dir).map(|_| ());
    }
    if !dir.is_dir() {
        return Ok(());
    }
    BuildRecord::read(&dir)
        .map(|_| ())
        .map_err(|source| OutError::BadRecord { out: dir, source })
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
        let report_temp = format!(".{}.tmp-", REPORT_FILE);
        name.strip_prefix(&record_temp)
            .or_else(|| name.strip_prefix(&report_temp))?
    } else {
        return None;
    };
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::out::record::tests::record;

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
}
