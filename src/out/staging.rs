//! Atomic output: every artifact is written under `OUT/.kaokore-staging-<pid>-<n>/` and only
//! renamed to its final name once all artifacts and their checksums are complete.
//!
//! A killed or failed pack therefore never leaves a half-written file under a final name.
//! On failure (or drop) the staging directory is removed; a staging directory left by a
//! killed process is removed by the next pack in that directory. Staging directories live
//! in `--out` itself, also for the `size-{S}/` builds of several sizes, so nothing is made
//! below `--out` before the commit.
//!
//! A commit ([`commit`]) first checks every path (only files a record lists are replaced
//! or removed, never through a symlink), then writes, durably, `--out`'s record marked in
//! progress listing every path of both the previous build and the new one, directories
//! included. Only then is a directory made or a file renamed, and the record of the new
//! build alone is written last. A run stopped at any instant leaves either the previous
//! build untouched or a record that owns everything kaokore put there, which the next
//! build or pack simply replaces; `verify` refuses a build whose record is in progress.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

use super::checksums;
use super::lock::{FileId, OutDir};
use super::ownership::{OutError, leftover_pid};
use super::record::{BuildRecord, RECORD_FILE, sync_dir, write_durably};
use super::{Artifact, CommitError};
use crate::fs::{PathState, inspect};
use crate::layout::{REPORT_FILE, SHA256SUMS, STAGING_PREFIX};

pub struct Staging {
    /// `--out`, where the staging directory is.
    out: PathBuf,
    /// The build directory the staged files go to, relative to `out`: `""` for `out`
    /// itself, `size-{S}` for one size of several.
    dir: String,
    root: PathBuf,
    /// The staging directory's identity: nothing is made or removed through a path that
    /// no longer leads to it (`out` moved and replaced by a symlink, say).
    root_id: FileId,
    committed: bool,
}

impl Staging {
    /// Create `out` (if needed) and a fresh staging directory inside it, for a build
    /// written into `out` itself. `out` must have passed [`check_out`](super::check_out).
    pub fn create(out: &Path) -> Result<Staging, CommitError> {
        Staging::create_for(out, "")
    }

    /// A fresh staging directory in `out` for the build directory `dir` (relative to
    /// `out`, `""` for `out` itself), which is not made here: the commit makes it.
    pub fn create_for(out: &Path, dir: &str) -> Result<Staging, CommitError> {
        fs::create_dir_all(out).map_err(CommitError::io(out))?;
        remove_abandoned(out);
        if !dir.is_empty() && inspect(out, dir).ok() == Some(PathState::Dir) {
            // The report's temp file of a killed run is in the size directory.
            remove_abandoned(&out.join(dir));
        }
        // The counter keeps two packs of one process (library use, tests) apart.
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let root = out.join(format!("{STAGING_PREFIX}{}-{n}", std::process::id()));
        if fs::symlink_metadata(&root).is_ok() {
            fs::remove_dir_all(&root).map_err(CommitError::io(&root))?;
        }
        fs::create_dir(&root).map_err(CommitError::io(&root))?;
        let root_id = fs::symlink_metadata(&root)
            .map(|m| FileId::of(&m))
            .map_err(CommitError::io(&root))?;
        Ok(Staging {
            out: out.to_path_buf(),
            dir: dir.to_string(),
            root,
            root_id,
            committed: false,
        })
    }

    /// Whether the staging path still leads to the staging directory made.
    fn still_there(&self) -> bool {
        FileId::at(&self.root).ok() == Some(self.root_id)
    }

    /// Where the artifact `relative` is staged; its parent directory is created.
    pub fn path(&self, relative: &str) -> Result<PathBuf, CommitError> {
        if !self.still_there() {
            return Err(OutError::Replaced {
                out: self.out.clone(),
            }
            .into());
        }
        let path = self.root.join(relative);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(CommitError::io(parent))?;
        }
        Ok(path)
    }

    /// Hash every staged artifact (but those in `hashed`, hashed while written) and write
    /// SHA256SUMS: everything a build needs before its commit. Nothing outside the staging
    /// directory changes; dropping the result removes the staging. [`commit`] then checks
    /// every destination and puts the build in place. `describe` is given every artifact
    /// hashed so far and returns files that list them (croissant.json: path and content),
    /// written and hashed before SHA256SUMS.
    pub fn prepare(
        self,
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
        let sums_path = self.path(SHA256SUMS)?;
        fs::write(&sums_path, &sums).map_err(CommitError::io(&sums_path))?;

        // What this build writes: the artifacts, SHA256SUMS, and the report.json the
        // pipeline writes right after the commit.
        let mut files: Vec<String> = artifacts.iter().map(|a| a.path.clone()).collect();
        files.extend([SHA256SUMS.to_string(), REPORT_FILE.to_string()]);
        files.sort();
        files.dedup();
        Ok(Prepared {
            staging: self,
            artifacts,
            sums,
            files,
            record,
        })
    }
}

/// A staged build, hashed and listed: [`commit`] puts it in place.
pub struct Prepared {
    staging: Staging,
    artifacts: Vec<Artifact>,
    sums: String,
    files: Vec<String>,
    record: BuildRecord,
}

impl Prepared {
    /// Every file the build will have written, relative to its directory, sorted.
    pub fn files(&self) -> &[String] {
        &self.files
    }
}

/// What a commit did for one build directory: its artifacts (SHA256SUMS last) and the
/// files of the previous build it removed, relative to that directory.
pub type Committed = (Vec<Artifact>, Vec<String>);

/// Put the prepared builds in place in `out`: one build in `out` itself, or the builds of
/// several sizes, each in its `size-{S}/`, committed together. `top` is `out`'s record
/// (for several sizes, with `sizes` set); its `files` and `dirs` are filled in here, as
/// are those of each size's record.
///
/// Everything that can fail while the previous build is intact happens first: `out` must
/// still be the directory opened, and every destination must be absent or a regular file
/// a record lists, reached through real directories (a file of the user's in the way, or
/// a symlink on the way, fails here with nothing changed). Then the record in progress is
/// written durably, the directories are made (a failure there undoes them and restores the
/// previous record), the previous build's files that this one does not produce are
/// removed (only regular files it recorded; recorded paths behind a symlink stay), the
/// files are renamed into place (each SHA256SUMS last) and the final record is written.
pub fn commit(
    out: &OutDir,
    mut top: BuildRecord,
    builds: Vec<Prepared>,
) -> Result<Vec<Committed>, CommitError> {
    let root = out.path();
    out.check_same()?;
    let several = builds.iter().any(|b| !b.staging.dir.is_empty());

    // What may be replaced or removed: what the records say kaokore wrote, read again now
    // (the directory may have changed since the checks at the start).
    let previous_text = read_raw_record(root)?;
    let previous = read_record(root)?;
    let mut recorded: BTreeSet<String> = previous.iter().flat_map(|r| r.files.clone()).collect();
    let mut old_dirs: BTreeSet<String> = previous.iter().flat_map(|r| r.dirs.clone()).collect();
    for build in builds.iter().filter(|b| !b.staging.dir.is_empty()) {
        let dir = &build.staging.dir;
        if inspect(root, dir).map_err(CommitError::io(root.join(dir)))? != PathState::Dir {
            continue;
        }
        if let Some(sub) = read_record(&root.join(dir))? {
            recorded.insert(format!("{dir}/{RECORD_FILE}"));
            recorded.extend(sub.files.iter().map(|f| format!("{dir}/{f}")));
            old_dirs.extend(sub.dirs.iter().map(|d| format!("{dir}/{d}")));
            old_dirs.insert(dir.clone());
        }
    }

    let mut new_files = BTreeSet::new();
    for build in &builds {
        let dir = &build.staging.dir;
        new_files.extend(build.files.iter().map(|f| joined(dir, f)));
        if several {
            new_files.insert(joined(dir, RECORD_FILE));
        }
    }
    let new_dirs = parents(&new_files);
    for relative in &new_files {
        check_writable(root, relative, &recorded)?;
    }
    for dir in &new_dirs {
        check_dir(root, dir)?;
    }
    let stale: Vec<String> = recorded.difference(&new_files).cloned().collect();
    let stale_dirs: Vec<String> = old_dirs.difference(&new_dirs).cloned().collect();

    if several {
        // Each size's own record, final, renamed into place with its files.
        for build in &builds {
            let mut record = build.record.clone();
            record.files = build.files.clone();
            record.dirs = parents(&build.files).into_iter().collect();
            let path = build.staging.path(RECORD_FILE)?;
            let mut text = serde_json::to_string_pretty(&record).expect("a record serializes");
            text.push('\n');
            fs::write(&path, text).map_err(CommitError::io(&path))?;
        }
    }

    // The record in progress: from here on, every path of both builds is kaokore's.
    out.check_same()?;
    let mut claim = top.clone();
    claim.files = recorded.union(&new_files).cloned().collect();
    claim.dirs = old_dirs.union(&new_dirs).cloned().collect();
    claim.in_progress = true;
    claim.write(root)?;

    let mut made: Vec<PathBuf> = Vec::new();
    for dir in &new_dirs {
        let path = root.join(dir);
        if fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        if let Err(e) = fs::create_dir(&path) {
            // Nothing of the previous build was touched yet: undo, as if never begun.
            for d in made.iter().rev() {
                let _ = fs::remove_dir(d);
            }
            restore_record(root, previous_text.as_deref());
            return Err(CommitError::io(&path)(e));
        }
        made.push(path);
    }

    // The previous build is replaced from here on. SHA256SUMS goes first and comes back
    // last, so even without the record a half-replaced build fails verify.
    for sums in new_files.iter().filter(|f| is_sums(f)) {
        if inspect(root, sums).map_err(CommitError::io(root.join(sums)))? == PathState::File {
            let path = root.join(sums);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(CommitError::io(&path)(e)),
            }
        }
    }
    let removed = remove_recorded(root, &stale)?;
    for build in &builds {
        let dir = &build.staging.dir;
        let mut moves: Vec<&str> = build.artifacts.iter().map(|a| a.path.as_str()).collect();
        if several {
            moves.push(RECORD_FILE);
        }
        for relative in moves {
            let from = build.staging.root.join(relative);
            let to = root.join(joined(dir, relative));
            fs::rename(&from, &to).map_err(CommitError::io(&to))?;
        }
    }
    for build in &builds {
        let to = root.join(joined(&build.staging.dir, SHA256SUMS));
        fs::rename(build.staging.root.join(SHA256SUMS), &to).map_err(CommitError::io(&to))?;
    }
    // Directories of the previous build that this one does not use go once empty,
    // deepest first: those its record lists, and those that held its removed files.
    let mut emptied: BTreeSet<String> = stale_dirs.into_iter().collect();
    emptied.extend(parents(&removed));
    for dir in emptied.iter().rev().filter(|d| !new_dirs.contains(*d)) {
        if inspect(root, dir).ok() == Some(PathState::Dir) {
            let _ = fs::remove_dir(root.join(dir));
        }
    }

    top.files = new_files.iter().cloned().collect();
    top.dirs = new_dirs.iter().cloned().collect();
    top.in_progress = false;
    out.check_same()?;
    top.write(root)?;

    let mut committed = Vec::new();
    for mut build in builds {
        build.staging.committed = true;
        let _ = fs::remove_dir_all(&build.staging.root);
        let dir = &build.staging.dir;
        let mut artifacts = std::mem::take(&mut build.artifacts);
        artifacts.push(Artifact {
            path: SHA256SUMS.to_string(),
            bytes: build.sums.len() as u64,
            sha256: checksums::sha256_hex(build.sums.as_bytes()),
        });
        let mine: Vec<String> = removed
            .iter()
            .filter_map(|f| {
                if dir.is_empty() {
                    Some(f.clone())
                } else {
                    f.strip_prefix(&format!("{dir}/")).map(String::from)
                }
            })
            .collect();
        committed.push((artifacts, mine));
    }
    Ok(committed)
}

/// `relative` below the build directory `dir` (`""`: `out` itself).
fn joined(dir: &str, relative: &str) -> String {
    if dir.is_empty() {
        relative.to_string()
    } else {
        format!("{dir}/{relative}")
    }
}

fn is_sums(relative: &str) -> bool {
    relative.rsplit('/').next() == Some(SHA256SUMS)
}

/// Every directory that holds one of `files` (relative paths), outermost first.
fn parents(files: impl IntoIterator<Item = impl AsRef<str>>) -> BTreeSet<String> {
    let mut dirs = BTreeSet::new();
    for f in files {
        let f = f.as_ref();
        let mut end = f.len();
        while let Some(i) = f[..end].rfind('/') {
            dirs.insert(f[..i].to_string());
            end = i;
        }
    }
    dirs
}

/// `relative` may be written: nothing is there, or a regular file a record lists, and no
/// symlink or file is on the way.
fn check_writable(out: &Path, relative: &str, recorded: &BTreeSet<String>) -> Result<(), OutError> {
    let in_the_way = |at: String, why| OutError::InTheWay {
        out: out.to_path_buf(),
        at,
        why,
    };
    let state = inspect(out, relative).map_err(|source| OutError::Io {
        path: out.join(relative),
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

/// `relative` can be a directory of the build: absent, or a real directory.
fn check_dir(out: &Path, relative: &str) -> Result<(), OutError> {
    let state = inspect(out, relative).map_err(|source| OutError::Io {
        path: out.join(relative),
        source,
    })?;
    match state {
        PathState::Absent | PathState::Dir => Ok(()),
        PathState::File => Err(OutError::InTheWay {
            out: out.to_path_buf(),
            at: relative.to_string(),
            why: "is not a directory",
        }),
        PathState::Blocked { at, why } => Err(OutError::InTheWay {
            out: out.to_path_buf(),
            at,
            why,
        }),
    }
}

/// The record's bytes as they are, to put back if the commit is undone before it
/// replaced anything.
fn read_raw_record(out: &Path) -> Result<Option<Vec<u8>>, CommitError> {
    use std::io::Read;
    let path = out.join(RECORD_FILE);
    match crate::fs::open_regular(&path) {
        Ok(f) => {
            let mut bytes = Vec::new();
            f.take(super::record::MAX_RECORD_BYTES)
                .read_to_end(&mut bytes)
                .map_err(CommitError::io(&path))?;
            Ok(Some(bytes))
        }
        Err(crate::fs::OpenError::Missing { .. }) => Ok(None),
        Err(crate::fs::OpenError::Io(e)) => Err(CommitError::io(&path)(e)),
        // read_record refuses it with the reason.
        Err(_) => Ok(None),
    }
}

/// Put the record read before the commit back (none: remove the record in progress).
fn restore_record(out: &Path, previous: Option<&[u8]>) {
    let _ = match previous {
        Some(bytes) => write_durably(out, RECORD_FILE, bytes),
        None => fs::remove_file(out.join(RECORD_FILE)).and_then(|()| sync_dir(out)),
    };
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
            Ok(()) => removed.push(relative.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(CommitError::io(&path)(e)),
        }
    }
    Ok(removed)
}

/// The record in `out`, if any; one that cannot be trusted refuses the commit.
fn read_record(out: &Path) -> Result<Option<BuildRecord>, CommitError> {
    BuildRecord::read(out).map_err(|source| {
        OutError::BadRecord {
            out: out.to_path_buf(),
            source,
        }
        .into()
    })
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
        // Never through a path that no longer leads to the staging directory made.
        if !self.committed && self.still_there() {
            let _ = fs::remove_dir_all(&self.root);
        }
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
            sizes: Vec::new(),
            dirs: Vec::new(),
            in_progress: false,
        }
    }

    fn staged(out: &Path, dir: &str, files: &[&str]) -> Prepared {
        let staging = Staging::create_for(out, dir).unwrap();
        for f in files {
            fs::write(staging.path(f).unwrap(), f.as_bytes()).unwrap();
        }
        let produced = files.iter().map(|f| f.to_string()).collect();
        staging
            .prepare(produced, Vec::new(), record(&[]), |_| Vec::new())
            .unwrap()
    }

    #[test]
    fn nothing_is_made_in_out_before_the_commit() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let prepared = staged(&out, "size-48", &["a/b/c.txt"]);
        let names = |dir: &Path| -> Vec<String> {
            fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names(&out).len(), 1, "only the staging directory");
        assert!(names(&out)[0].starts_with(STAGING_PREFIX));
        drop(prepared);
        assert!(names(&out).is_empty());
    }

    #[test]
    fn a_commit_records_every_path_and_a_rerun_owns_what_a_stopped_one_left() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let dir = OutDir::create(&out).unwrap();
        let mut top = record(&[]);
        top.sizes = vec![32, 48];
        let builds = vec![
            staged(&out, "size-32", &["idx/a.gz"]),
            staged(&out, "size-48", &["idx/a.gz", "npz/b.npz"]),
        ];
        let committed = commit(&dir, top.clone(), builds).unwrap();
        assert_eq!(committed.len(), 2);
        let r = BuildRecord::read(&out).unwrap().unwrap();
        assert!(!r.in_progress);
        assert_eq!(
            r.dirs,
            [
                "size-32",
                "size-32/idx",
                "size-48",
                "size-48/idx",
                "size-48/npz"
            ]
        );
        assert!(r.files.contains(&"size-48/.kaokore-build.json".to_string()));
        let sub = BuildRecord::read(&out.join("size-48")).unwrap().unwrap();
        assert_eq!(sub.dirs, ["idx", "npz"]);
        assert_eq!(
            sub.files,
            ["SHA256SUMS", "idx/a.gz", "npz/b.npz", "report.json"]
        );

        // A record in progress, as a run stopped mid-commit leaves it: a directory and a
        // file it made but never recorded as done are kaokore's to replace.
        let mut claim = r.clone();
        claim.files.push("idx/x.gz".into());
        claim.dirs.push("idx".into());
        claim.in_progress = true;
        claim.write(&out).unwrap();
        fs::create_dir(out.join("idx")).unwrap();
        fs::write(out.join("idx/x.gz"), "half").unwrap();
        let committed = commit(&dir, record(&[]), vec![staged(&out, "", &["idx/a.gz"])]).unwrap();
        let r = BuildRecord::read(&out).unwrap().unwrap();
        assert!(!r.in_progress);
        assert_eq!(r.files, ["SHA256SUMS", "idx/a.gz", "report.json"]);
        assert_eq!(r.dirs, ["idx"]);
        assert!(!out.join("size-32").exists() && !out.join("size-48").exists());
        assert!(!out.join("idx/x.gz").exists());
        assert!(committed[0].1.contains(&"idx/x.gz".to_string()));
    }

    #[test]
    fn a_file_in_the_way_fails_before_the_record_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("out");
        let dir = OutDir::create(&out).unwrap();
        commit(&dir, record(&[]), vec![staged(&out, "", &["idx/a.gz"])]).unwrap();
        let before = fs::read(out.join(RECORD_FILE)).unwrap();
        fs::write(out.join("mine.txt"), "x").unwrap();
        let e = commit(&dir, record(&[]), vec![staged(&out, "", &["mine.txt"])]).unwrap_err();
        assert!(e.to_string().contains("mine.txt"), "{e}");
        assert_eq!(fs::read(out.join(RECORD_FILE)).unwrap(), before);
    }
}
