//! Atomic output: every artifact is written under `OUT/.kaokore-staging-<pid>-<n>/` and only
//! renamed to its final name once all artifacts and their checksums are complete.
//!
//! A killed or failed pack therefore never leaves a half-written file under a final name.
//! On failure (or drop) the staging directory is removed; a staging directory left by a
//! killed process is removed by the next pack in that directory. SHA256SUMS is removed
//! first and renamed last, so an interrupted commit is visible to `verify`. The commit
//! replaces or removes only files the previous build record lists, never through a symlink.
//!
//! A commit has two halves: [`Staging::prepare`] does all that can fail while the previous
//! build is intact, [`Prepared::apply`] replaces it. A build of several sizes prepares every
//! size before applying any, and claims their files in `out`'s record first
//! ([`claim_sizes`]), so a size that cannot be committed leaves every size as it was.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

use super::checksums;
use super::ownership::{OutError, leftover_pid};
use super::record::{BuildRecord, RECORD_FILE};
use super::{Artifact, CommitError};
use crate::fs::{PathState, inspect};
use crate::layout::{REPORT_FILE, SHA256SUMS, STAGING_PREFIX, size_dir_name};

pub struct Staging {
    out: PathBuf,
    root: PathBuf,
    committed: bool,
    /// Directories made in `out` for the artifacts, outermost first: removed again (when
    /// still empty) if the build is not committed.
    created: Vec<PathBuf>,
}

impl Staging {
    /// Create `out` (if needed) and a fresh staging directory inside it. `out` must have
    /// passed [`record::check_out`].
    pub fn create(out: &Path) -> Result<Staging, CommitError> {
        fs::create_dir_all(out).map_err(CommitError::io(out))?;
        remove_abandoned(out);
        // The counter keeps two packs of one process (library use, tests) apart.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = out.join(format!("{STAGING_PREFIX}{}-{n}", std::process::id()));
        if root.exists() {
            fs::remove_dir_all(&root).map_err(CommitError::io(&root))?;
        }
        fs::create_dir_all(&root).map_err(CommitError::io(&root))?;
        Ok(Staging {
            out: out.to_path_buf(),
            root,
            committed: false,
            created: Vec::new(),
        })
    }

    /// Where the artifact `relative` is staged; its parent directory is created.
    pub fn path(&self, relative: &str) -> Result<PathBuf, CommitError> {
        let path = self.root.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(CommitError::io(parent))?;
        }
        Ok(path)
    }

    /// Hash every staged artifact (but those in `hashed`, hashed while written), write
    /// SHA256SUMS and check every destination: everything that can fail before the
    /// previous build is touched. Nothing outside the staging directory changes; dropping
    /// the result removes the staging. [`Prepared::apply`] then puts the build in place.
    /// `describe` is given every artifact hashed so far and returns files that list them
    /// (croissant.json: path and content), written and hashed before SHA256SUMS.
    ///
    /// Only paths the previous record lists are replaced or removed, only when they are
    /// regular files reached through real directories: a file of the user's where an
    /// artifact goes, or a symlink on its way, fails here; a stale recorded path that
    /// became a symlink (or sits behind one) is left alone.
    pub fn prepare(
        mut self,
        produced: Vec<String>,
        hashed: Vec<Artifact>,
        record: BuildRecord,
        describe: impl FnOnce(&[Artifact]) -> Vec<(String, String)>,
    ) -> Result<Prepared, CommitError> {
        // The other files are hashed in parallel (on the caller's rayon pool): this runs
        // after the last image, so it is wall time nothing else overlaps.
        let mut artifacts = produced
            .par_iter()
            .filter(|relative| !hashed.iter().any(|a| &a.path == *relative))
            .map(|relative| {
                let path = self.root.join(relative);
                let (bytes, sha256) =
                    checksums::hash_file(&path).map_err(CommitError::io(&path))?;
                Ok(Artifact {
                    path: relative.clone(),
                    bytes,
                    sha256,
                })
            })
            .collect::<Result<Vec<_>, CommitError>>()?;
        artifacts.extend(hashed);
        artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        for (relative, text) in describe(&artifacts) {
            let path = self.path(&relative)?;
            fs::write(&path, &text).map_err(CommitError::io(&path))?;
            artifacts.push(Artifact {
                path: relative,
                bytes: text.len() as u64,
                sha256: checksums::sha256_hex(text.as_bytes()),
            });
        }
        artifacts.sort_by(|a, b| a.path.cmp(&b.path));
        let sums = checksums::render(&artifacts);
        let sums_path = self.root.join(SHA256SUMS);
        fs::write(&sums_path, &sums).map_err(CommitError::io(&sums_path))?;

        // What this build writes: the artifacts, SHA256SUMS, and the report.json the
        // pipeline writes right after the commit.
        let mut files: Vec<String> = artifacts.iter().map(|a| a.path.clone()).collect();
        files.extend([SHA256SUMS.to_string(), REPORT_FILE.to_string()]);
        files.sort();
        files.dedup();

        // The record is read again (the directory may have changed since the check at
        // the start): it alone says what may be replaced.
        let recorded = recorded_files(&self.out)?;
        for relative in &files {
            self.check_writable(relative, &recorded)?;
        }
        let new: BTreeSet<&str> = files.iter().map(String::as_str).collect();
        let stale: Vec<String> = recorded
            .iter()
            .filter(|f| !new.contains(f.as_str()))
            .cloned()
            .collect();

        // Make sure every destination directory can exist before anything is replaced, so
        // the usual failures (no permission, a full disk) happen while the old build is
        // still intact. The checks above saw only real directories on the way.
        for a in &artifacts {
            if let Some(parent) = self.out.join(&a.path).parent() {
                self.create_dir(parent)?;
            }
        }
        Ok(Prepared {
            staging: self,
            artifacts,
            sums,
            files,
            recorded,
            stale,
            record,
        })
    }

    /// Create `dir` and its missing parents, remembering which were made.
    fn create_dir(&mut self, dir: &Path) -> Result<(), CommitError> {
        let mut missing = Vec::new();
        let mut at = Some(dir);
        while let Some(d) = at {
            if fs::symlink_metadata(d).is_ok() {
                break;
            }
            missing.push(d.to_path_buf());
            at = d.parent();
        }
        for d in missing.into_iter().rev() {
            match fs::create_dir(&d) {
                Ok(()) => self.created.push(d),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(CommitError::io(&d)(e)),
            }
        }
        Ok(())
    }

    /// `relative` may be written: nothing is there, or a regular file the previous build
    /// recorded, and no symlink or file is on the way.
    fn check_writable(&self, relative: &str, recorded: &BTreeSet<String>) -> Result<(), OutError> {
        let in_the_way = |at: String, why| OutError::InTheWay {
            out: self.out.clone(),
            at,
            why,
        };
        let state = inspect(&self.out, relative).map_err(|source| OutError::Io {
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

/// A staged build whose every check passed: [`Prepared::apply`] puts it in place.
pub struct Prepared {
    staging: Staging,
    artifacts: Vec<Artifact>,
    sums: String,
    files: Vec<String>,
    recorded: BTreeSet<String>,
    stale: Vec<String>,
    record: BuildRecord,
}

impl Prepared {
    /// Every file the build will have written, relative to its directory, sorted.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Replace the previous build: remove the files of it that this one does not produce,
    /// rename everything into place and write the record (its `files` filled in here).
    /// Returns the artifacts (SHA256SUMS last) and the stale paths removed.
    pub fn apply(self) -> Result<(Vec<Artifact>, Vec<String>), CommitError> {
        let Prepared {
            mut staging,
            mut artifacts,
            sums,
            files,
            recorded,
            stale,
            mut record,
        } = self;
        let out = staging.out.clone();
        // While files are replaced, the record lists both builds' files: a commit killed
        // half-way leaves nothing of kaokore's that the next build would take for the
        // user's.
        record.files = recorded
            .union(&files.iter().cloned().collect())
            .cloned()
            .collect();
        record.write(&out)?;

        // From here on the old build is replaced: SHA256SUMS goes first, so an interrupted
        // commit leaves a directory that verify rejects rather than a silent mix.
        let old_sums = out.join(SHA256SUMS);
        match fs::remove_file(&old_sums) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CommitError::io(&old_sums)(e)),
        }
        let removed = remove_recorded(&out, &stale)?;
        for a in &artifacts {
            let from = staging.root.join(&a.path);
            let to = out.join(&a.path);
            fs::rename(&from, &to).map_err(CommitError::io(&to))?;
        }
        let sums_path = staging.root.join(SHA256SUMS);
        fs::rename(&sums_path, &old_sums).map_err(CommitError::io(&old_sums))?;
        record.files = files;
        record.write(&out)?;
        artifacts.push(Artifact {
            path: SHA256SUMS.to_string(),
            bytes: sums.len() as u64,
            sha256: checksums::sha256_hex(sums.as_bytes()),
        });
        staging.committed = true;
        let _ = fs::remove_dir_all(&staging.root);
        Ok((artifacts, removed))
    }
}

/// Remove the `stale` files of a previous build, each looked at again just before: only a
/// regular file reached through real directories goes. Returns those removed.
fn remove_recorded(out: &Path, stale: &[String]) -> Result<Vec<String>, CommitError> {
    let mut removed = Vec::new();
    for relative in stale {
        let path = out.join(relative);
        if inspect(out, relative).map_err(CommitError::io(&path))? != PathState::File {
            continue;
        }
        match fs::remove_file(&path) {
            Ok(()) => {
                removed.push(relative.clone());
                remove_empty_parents(out, &path);
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CommitError::io(&path)(e)),
        }
    }
    Ok(removed)
}

/// Before the size builds of `out` are put in place one after another: make `out`'s
/// record list, besides what it listed, every file they will write (`planned`: each size's
/// files, relative to its `size-{S}/`). A run stopped or failing between two sizes then
/// leaves only files the next build knows as kaokore's.
pub fn claim_sizes(
    out: &Path,
    record: &BuildRecord,
    planned: &[(u32, &[String])],
) -> Result<(), CommitError> {
    let mut claim = record.clone();
    claim.files = recorded_files(out)?
        .into_iter()
        .chain(planned.iter().flat_map(|(size, files)| {
            let dir_name = size_dir_name(*size);
            std::iter::once(RECORD_FILE)
                .chain(files.iter().map(String::as_str))
                .map(move |f| format!("{dir_name}/{f}"))
        }))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    claim.write(out)?;
    Ok(())
}

/// Complete a build of several sizes, each already committed in its `size-{S}/`: write
/// `out`'s record of them (`record.sizes` set; its `files` filled in here with every file
/// the size builds recorded, their records included) and remove the files of the previous
/// build of `out` that this one does not hold (a one-size build's artifacts, a size no
/// longer built), as a commit does: only recorded regular files, never through a symlink.
/// Returns the stale paths removed.
pub fn commit_sizes(out: &Path, mut record: BuildRecord) -> Result<Vec<String>, CommitError> {
    let mut files = BTreeSet::new();
    for &size in &record.sizes {
        let dir_name = size_dir_name(size);
        let dir = out.join(&dir_name);
        let sub = BuildRecord::read(&dir)
            .map_err(|source| OutError::BadRecord {
                out: dir.clone(),
                source,
            })?
            .ok_or(CommitError::Internal("a size build wrote no record"))?;
        files.insert(format!("{dir_name}/{}", RECORD_FILE));
        files.extend(sub.files.iter().map(|f| format!("{dir_name}/{f}")));
    }
    let recorded = recorded_files(out)?;
    // As in a commit: while stale files go, the record lists both builds' files.
    record.files = recorded.union(&files).cloned().collect();
    record.write(out)?;
    let stale: Vec<String> = recorded.difference(&files).cloned().collect();
    let removed = remove_recorded(out, &stale)?;
    record.files = files.into_iter().collect();
    record.write(out)?;
    Ok(removed)
}

/// The files `out`'s record lists (none without a record).
fn recorded_files(out: &Path) -> Result<BTreeSet<String>, CommitError> {
    let previous = BuildRecord::read(out).map_err(|source| OutError::BadRecord {
        out: out.to_path_buf(),
        source,
    })?;
    Ok(previous
        .map(|r| r.files)
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// Refuse early, before any image is packed, when a directory the build writes into
/// (`idx`, `npz`...) is a symlink or a file: the commit would refuse it anyway.
pub fn check_dirs(out: &Path, dirs: &[String]) -> Result<(), OutError> {
    for dir in dirs {
        let state = inspect(out, dir).map_err(|source| OutError::Io {
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
            for dir in self.created.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
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
        let Some(pid) = name.to_str().and_then(|n| leftover_pid(n, kind)) else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn record(files: &[&str]) -> BuildRecord {
        BuildRecord {
            kaokore_build: crate::out::record::RECORD_LAYOUT,
            dataset_version: "1.0".into(),
            size: 32,
            formats: vec!["idx".into()],
            rows: Default::default(),
            files: files.iter().map(|f| f.to_string()).collect(),
            sizes: vec![32, 48],
        }
    }

    #[test]
    fn sizes_are_claimed_before_any_is_put_in_place() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path();
        record(&["idx/old.gz", "size-48/report.json"])
            .write(out)
            .unwrap();
        let files = ["SHA256SUMS".to_string(), "idx/a.gz".to_string()];
        claim_sizes(out, &record(&[]), &[(32, &files[..]), (48, &files[..1])]).unwrap();
        // Stopped here, every file of the previous build and of each size is kaokore's.
        let claimed = BuildRecord::read(out).unwrap().unwrap();
        assert_eq!(
            claimed.files,
            [
                "idx/old.gz",
                "size-32/.kaokore-build.json",
                "size-32/SHA256SUMS",
                "size-32/idx/a.gz",
                "size-48/.kaokore-build.json",
                "size-48/SHA256SUMS",
                "size-48/report.json",
            ]
        );
    }

    #[test]
    fn directories_made_for_a_build_that_is_not_committed_go_again() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let staging = Staging::create(&out).unwrap();
        let path = staging.path("a/b/c.txt").unwrap();
        fs::write(&path, "x").unwrap();
        let prepared = staging
            .prepare(vec!["a/b/c.txt".into()], Vec::new(), record(&[]), |_| {
                Vec::new()
            })
            .unwrap();
        assert!(out.join("a/b").is_dir(), "made before anything is replaced");
        drop(prepared);
        let left: Vec<_> = fs::read_dir(&out).unwrap().collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
