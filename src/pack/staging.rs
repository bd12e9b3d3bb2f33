//! Atomic output: every artifact is written under `OUT/.kaokore-staging-<pid>-<n>/` and only
//! renamed to its final name once all artifacts and their checksums are complete.
//!
//! A killed or failed pack therefore never leaves a half-written file under a final name.
//! On failure (or drop) the staging directory is removed; a staging directory left by a
//! killed process is removed by the next pack in that directory. SHA256SUMS is removed
//! first and renamed last, so an interrupted commit is visible to `verify`. The commit
//! replaces or removes only files the previous build record lists, never through a symlink.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

use super::checksums::{self, SHA256SUMS};
use super::{Artifact, PackError};
use crate::record::{self, BuildRecord, OutError, PathState, STAGING_PREFIX};
use crate::report::REPORT_FILE;

pub struct Staging {
    out: PathBuf,
    root: PathBuf,
    committed: bool,
}

impl Staging {
    /// Create `out` (if needed) and a fresh staging directory inside it. `out` must have
    /// passed [`record::check_out`].
    pub fn create(out: &Path) -> Result<Staging, PackError> {
        fs::create_dir_all(out).map_err(PackError::io(out))?;
        remove_abandoned(out);
        // The counter keeps two packs of one process (library use, tests) apart.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = out.join(format!("{STAGING_PREFIX}{}-{n}", std::process::id()));
        if root.exists() {
            fs::remove_dir_all(&root).map_err(PackError::io(&root))?;
        }
        fs::create_dir_all(&root).map_err(PackError::io(&root))?;
        Ok(Staging {
            out: out.to_path_buf(),
            root,
            committed: false,
        })
    }

    /// Where the artifact `relative` is staged; its parent directory is created.
    pub fn path(&self, relative: &str) -> Result<PathBuf, PackError> {
        let path = self.root.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(PackError::io(parent))?;
        }
        Ok(path)
    }

    /// Hash every staged artifact (but those in `hashed`, hashed while written), write
    /// SHA256SUMS, remove the files of the previous build that this one does not produce,
    /// rename everything into place and write `record` (its `files` filled in here).
    /// `describe` is given every artifact hashed so far and returns files that list them
    /// (croissant.json: path and content), written and hashed before SHA256SUMS.
    /// Returns the artifacts (SHA256SUMS last) and the stale paths removed.
    ///
    /// Only paths the previous record lists are replaced or removed, only when they are
    /// regular files reached through real directories: a file of the user's where an
    /// artifact goes, or a symlink on its way, fails the commit before anything changed; a
    /// stale recorded path that became a symlink (or sits behind one) is left alone.
    pub fn commit(
        mut self,
        produced: Vec<String>,
        hashed: Vec<Artifact>,
        mut record: BuildRecord,
        describe: impl FnOnce(&[Artifact]) -> Vec<(String, String)>,
    ) -> Result<(Vec<Artifact>, Vec<String>), PackError> {
        // The other files are hashed in parallel (on the caller's rayon pool): this runs
        // after the last image, so it is wall time nothing else overlaps.
        let mut artifacts = produced
            .par_iter()
            .filter(|relative| !hashed.iter().any(|a| &a.path == *relative))
            .map(|relative| {
                let path = self.root.join(relative);
                let (bytes, sha256) = checksums::hash_file(&path).map_err(PackError::io(&path))?;
                Ok(Artifact {
                    path: relative.clone(),
                    bytes,
                    sha256,
                })
            })
            .collect::<Result<Vec<_>, PackError>>()?;
        artifacts.extend(hashed);
        artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        for (relative, text) in describe(&artifacts) {
            let path = self.path(&relative)?;
            fs::write(&path, &text).map_err(PackError::io(&path))?;
            artifacts.push(Artifact {
                path: relative,
                bytes: text.len() as u64,
                sha256: checksums::sha256_hex(text.as_bytes()),
            });
        }
        artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        let sums = checksums::render(&artifacts);
        let sums_path = self.root.join(SHA256SUMS);
        fs::write(&sums_path, &sums).map_err(PackError::io(&sums_path))?;

        // What this build writes: the artifacts, SHA256SUMS, and the report.json the
        // pipeline writes right after the commit.
        let mut files: Vec<String> = artifacts.iter().map(|a| a.path.clone()).collect();
        files.extend([SHA256SUMS.to_string(), REPORT_FILE.to_string()]);
        files.sort();
        files.dedup();

        // The record is read again (the directory may have changed since the check at
        // the start): it alone says what may be replaced.
        let previous = BuildRecord::read(&self.out).map_err(|source| OutError::BadRecord {
            out: self.out.clone(),
            source,
        })?;
        let recorded: BTreeSet<String> = previous
            .map(|r| r.files)
            .unwrap_or_default()
            .into_iter()
            .collect();
        for relative in &files {
            self.check_writable(relative, &recorded)?;
        }
        let new: BTreeSet<&str> = files.iter().map(String::as_str).collect();
        let stale: Vec<&String> = recorded
            .iter()
            .filter(|f| !new.contains(f.as_str()))
            .collect();

        // Make sure every destination directory can exist before anything is replaced, so
        // the usual failures (no permission, a full disk) happen while the old build is
        // still intact. The checks above saw only real directories on the way.
        for a in &artifacts {
            if let Some(parent) = self.out.join(&a.path).parent() {
                fs::create_dir_all(parent).map_err(PackError::io(parent))?;
            }
        }

        // While files are replaced, the record lists both builds' files: a commit killed
        // half-way leaves nothing of kaokore's that the next build would take for the
        // user's.
        record.files = recorded
            .iter()
            .cloned()
            .chain(files.iter().cloned())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        record.write(&self.out)?;

        // From here on the old build is replaced: SHA256SUMS goes first, so an interrupted
        // commit leaves a directory that verify rejects rather than a silent mix.
        let old_sums = self.out.join(SHA256SUMS);
        match fs::remove_file(&old_sums) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(PackError::io(&old_sums)(e)),
        }
        let mut removed = Vec::new();
        for relative in stale {
            // Looked at again just before: only a regular file reached through real
            // directories is removed.
            let path = self.out.join(relative);
            if record::inspect(&self.out, relative).map_err(PackError::io(&path))?
                != PathState::File
            {
                continue;
            }
            match fs::remove_file(&path) {
                Ok(()) => {
                    removed.push(relative.clone());
                    remove_empty_parents(&self.out, &path);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(PackError::io(&path)(e)),
            }
        }
        for a in &artifacts {
            let from = self.root.join(&a.path);
            let to = self.out.join(&a.path);
            fs::rename(&from, &to).map_err(PackError::io(&to))?;
        }
        fs::rename(&sums_path, &old_sums).map_err(PackError::io(&old_sums))?;
        record.files = files;
        record.write(&self.out)?;
        artifacts.push(Artifact {
            path: SHA256SUMS.to_string(),
            bytes: sums.len() as u64,
            sha256: checksums::sha256_hex(sums.as_bytes()),
        });
        self.committed = true;
        let _ = fs::remove_dir_all(&self.root);
        Ok((artifacts, removed))
    }

    /// `relative` may be written: nothing is there, or a regular file the previous build
    /// recorded, and no symlink or file is on the way.
    fn check_writable(&self, relative: &str, recorded: &BTreeSet<String>) -> Result<(), OutError> {
        let in_the_way = |at: String, why| OutError::InTheWay {
            out: self.out.clone(),
            at,
            why,
        };
        let state = record::inspect(&self.out, relative).map_err(|source| OutError::Io {
            path: self.out.join(relative),
            source,
        })?;
        match state {
            PathState::Absent => Ok(()),
            PathState::File if recorded.contains(relative) => Ok(()),
            PathState::File => Err(in_the_way(
                relative.to_string(),
                "exists and was not written by kaokore's previous build here",
            )),
            PathState::Dir => Err(in_the_way(relative.to_string(), "is a directory")),
            PathState::Blocked { at, why } => Err(in_the_way(at, why)),
        }
    }
}

/// Complete a build of several sizes, each already committed in its `size-{S}/`: write
/// `out`'s record of them (`record.sizes` set; its `files` filled in here with every file
/// the size builds recorded, their records included) and remove the files of the previous
/// build of `out` that this one does not hold (a one-size build's artifacts, a size no
/// longer built), as a commit does: only recorded regular files, never through a symlink.
/// Returns the stale paths removed.
pub fn commit_sizes(out: &Path, mut record: BuildRecord) -> Result<Vec<String>, PackError> {
    let bad = |source| OutError::BadRecord {
        out: out.to_path_buf(),
        source,
    };
    let mut files = BTreeSet::new();
    for &size in &record.sizes {
        let dir_name = super::size_dir_name(size);
        let dir = out.join(&dir_name);
        let sub = BuildRecord::read(&dir)
            .map_err(bad)?
            .ok_or(PackError::Internal("a size build wrote no record"))?;
        files.insert(format!("{dir_name}/{}", record::RECORD_FILE));
        files.extend(sub.files.iter().map(|f| format!("{dir_name}/{f}")));
    }
    let previous = BuildRecord::read(out).map_err(bad)?;
    let recorded: BTreeSet<String> = previous
        .map(|r| r.files)
        .unwrap_or_default()
        .into_iter()
        .collect();
    // As in a commit: while stale files go, the record lists both builds' files.
    record.files = recorded.union(&files).cloned().collect();
    record.write(out)?;
    let mut removed = Vec::new();
    for relative in recorded.difference(&files) {
        let path = out.join(relative);
        if record::inspect(out, relative).map_err(PackError::io(&path))? != PathState::File {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                removed.push(relative.clone());
                remove_empty_parents(out, &path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(PackError::io(&path)(e)),
        }
    }
    record.files = files.into_iter().collect();
    record.write(out)?;
    Ok(removed)
}

/// Refuse early, before any image is packed, when a directory the build writes into
/// (`idx`, `npz`...) is a symlink or a file: the commit would refuse it anyway.
pub fn check_dirs(out: &Path, dirs: &[String]) -> Result<(), OutError> {
    for dir in dirs {
        let state = record::inspect(out, dir).map_err(|source| OutError::Io {
            path: out.join(dir),
            source,
        })?;
        match state {
            PathState::Absent | PathState::Dir => {}
            PathState::File => {
                return Err(OutError::InTheWay {
                    out: out.to_path_buf(),
                    at: dir.clone(),
                    why: "is not a directory",
                });
            }
            PathState::Blocked { at, why } => {
                return Err(OutError::InTheWay {
                    out: out.to_path_buf(),
                    at,
                    why,
                });
            }
        }
    }
    Ok(())
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Remove now-empty directories between `path` and `out` (e.g. `npz/` when npz is dropped).
fn remove_empty_parents(out: &Path, path: &Path) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == out || !d.starts_with(out) || fs::remove_dir(d).is_err() {
            break;
        }
        dir = d.parent();
    }
}

/// Remove what killed runs left in `out` (staging directories, temp files of the record
/// and report), when the process that left it no longer runs.
fn remove_abandoned(out: &Path) {
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| record::leftover_pid(n, kind)) else {
            continue;
        };
        // Without a cheap check of the process, keep it: it is only disk space.
        if pid != std::process::id() && crate::process::process_alive(pid) == Some(false) {
            // `kind` is not a symlink: remove_dir_all stays inside the directory.
            let _ = if kind.is_dir() {
                fs::remove_dir_all(entry.path())
            } else {
                fs::remove_file(entry.path())
            };
        }
    }
}
