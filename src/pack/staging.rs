//! Atomic output: every artifact is written under `OUT/.kaokore-staging-<pid>-<n>/` and only
//! renamed to its final name once all artifacts and their checksums are complete.
//!
//! A killed or failed pack therefore never leaves a half-written file under a final name.
//! On failure (or drop) the staging directory is removed; a staging directory left by a
//! killed process is removed by the next pack in that directory. SHA256SUMS is removed
//! first and renamed last, so an interrupted commit is visible to `verify`.

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use rayon::prelude::*;

use super::checksums::{self, SHA256SUMS};
use super::{Artifact, PackError};

const STAGING_PREFIX: &str = ".kaokore-staging-";

pub struct Staging {
    out: PathBuf,
    root: PathBuf,
    committed: bool,
}

impl Staging {
    /// Create `out` (if needed) and a fresh staging directory inside it.
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
    /// SHA256SUMS, remove the artifacts of an earlier build that this one does not
    /// produce, and rename everything into place. Returns the artifacts (SHA256SUMS last)
    /// and the stale paths removed.
    pub fn commit(
        mut self,
        produced: Vec<String>,
        hashed: Vec<Artifact>,
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
        let sums = checksums::render(&artifacts);
        let sums_path = self.root.join(SHA256SUMS);
        fs::write(&sums_path, &sums).map_err(PackError::io(&sums_path))?;

        // Make sure every destination directory can exist before anything is replaced, so
        // the usual failures (a file in the way, no permission) happen while the old build
        // is still intact.
        for a in &artifacts {
            if let Some(parent) = self.out.join(&a.path).parent() {
                fs::create_dir_all(parent).map_err(PackError::io(parent))?;
            }
        }

        // From here on the old build is replaced: SHA256SUMS goes first, so an interrupted
        // commit leaves a directory that verify rejects rather than a silent mix.
        let old_sums = self.out.join(SHA256SUMS);
        let stale = stale_paths(&old_sums, &artifacts);
        match fs::remove_file(&old_sums) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(PackError::io(&old_sums)(e)),
        }
        for relative in &stale {
            let path = self.out.join(relative);
            match fs::remove_file(&path) {
                Ok(()) => remove_empty_parents(&self.out, &path),
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
        artifacts.push(Artifact {
            path: SHA256SUMS.to_string(),
            bytes: sums.len() as u64,
            sha256: checksums::sha256_hex(sums.as_bytes()),
        });
        self.committed = true;
        let _ = fs::remove_dir_all(&self.root);
        Ok((artifacts, stale))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

/// Paths listed in an earlier SHA256SUMS that this build does not write. Only plain
/// relative paths are taken: a tampered list cannot make us delete outside `out`.
fn stale_paths(old_sums: &Path, artifacts: &[Artifact]) -> Vec<String> {
    let mut text = String::new();
    let Ok(mut file) = fs::File::open(old_sums) else {
        return Vec::new();
    };
    if file.read_to_string(&mut text).is_err() {
        return Vec::new();
    }
    let new: BTreeSet<&str> = artifacts.iter().map(|a| a.path.as_str()).collect();
    let mut stale: Vec<String> = checksums::parse(&text)
        .into_iter()
        .filter_map(|(_, path)| {
            let safe = Path::new(&path)
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
            (safe && path != SHA256SUMS && !new.contains(path.as_str())).then_some(path)
        })
        .collect();
    stale.sort();
    stale.dedup();
    stale
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

/// Remove staging directories of processes that no longer run (a killed pack).
fn remove_abandoned(out: &Path) {
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(STAGING_PREFIX))
            .and_then(|p| p.split('-').next())
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !process_alive(pid) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

fn process_alive(pid: u32) -> bool {
    if cfg!(target_os = "linux") {
        Path::new("/proc").join(pid.to_string()).exists()
    } else {
        // Without a cheap portable check, keep it: it is only disk space.
        true
    }
}
