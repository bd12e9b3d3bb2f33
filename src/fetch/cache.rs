//! The image cache: one file per original upstream URL, named by the URL's SHA-256, so it
//! is shared by every dataset version and run and does not depend on `--rewrite`.
//!
//! Only validated images are ever stored, and always atomically (a temp file in the same
//! directory, then a rename): a killed run leaves no partial entry under a final name.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use super::FetchError;

/// The layout version: a change of key or file format gets a new directory.
const LAYOUT: &str = "v1";
const ENTRY_EXT: &str = "img";
const TEMP_EXT: &str = "tmp";

/// Unique temp names within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A content-addressed image cache rooted at a directory (`--cache`).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

impl Cache {
    /// Open (creating it if needed) the cache under `root`, and remove the temp files of
    /// runs that died mid-write. Temp files of live processes (this one included: several
    /// `Cache`s may share a directory) are left alone.
    pub fn open(root: &Path) -> Result<Cache, FetchError> {
        let dir = root.join(LAYOUT);
        fs::create_dir_all(&dir).map_err(|source| FetchError::Cache {
            path: dir.clone(),
            source,
        })?;
        let cache = Cache { dir };
        cache.remove_stale_temps()?;
        Ok(cache)
    }

    /// The directory holding the entries.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the image of an original upstream URL is (or would be) stored:
    /// `root/v1/ab/<sha256 hex>.img`.
    pub fn path_for(&self, url: &str) -> PathBuf {
        let hex = sha256_hex(url);
        self.dir.join(&hex[..2]).join(format!("{hex}.{ENTRY_EXT}"))
    }

    /// Whether the image of `url` is cached. Entries are only ever created after
    /// validation, so presence means a decodable image.
    pub fn contains(&self, url: &str) -> bool {
        self.path_for(url).is_file()
    }

    /// The cached bytes of `url`, or `None` when it is not cached.
    pub fn read(&self, url: &str) -> io::Result<Option<Vec<u8>>> {
        match fs::read(self.path_for(url)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Store validated bytes for `url`: write a temp file beside the entry, then rename it
    /// into place, so readers see either nothing or the whole file.
    pub(crate) fn store(&self, url: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.path_for(url);
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("entry");
        let temp = parent.join(format!(
            ".{stem}.{}.{}.{TEMP_EXT}",
            std::process::id(),
            TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = fs::write(&temp, bytes).and_then(|()| fs::rename(&temp, &path));
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    /// Remove temp files whose writing process is gone (a killed or crashed run). A temp
    /// file of a live process (another run sharing the cache) is left alone.
    fn remove_stale_temps(&self) -> Result<(), FetchError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FetchError::Cache { path, source }
        };
        let shards = fs::read_dir(&self.dir).map_err(err(&self.dir))?;
        for shard in shards {
            let shard = shard.map_err(err(&self.dir))?;
            if !shard.file_type().map_err(err(&shard.path()))?.is_dir() {
                continue;
            }
            let Ok(files) = fs::read_dir(shard.path()) else {
                continue;
            };
            for file in files.flatten() {
                let name = file.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Some(pid) = temp_owner(name)
                    && !writer_alive(pid, &file.path())
                {
                    let _ = fs::remove_file(file.path());
                }
            }
        }
        Ok(())
    }
}

/// The pid in a temp file name `.<hex>.<pid>.<n>.tmp`.
fn temp_owner(name: &str) -> Option<u32> {
    let rest = name.strip_prefix('.')?.strip_suffix(TEMP_EXT)?;
    let mut parts = rest.trim_end_matches('.').split('.');
    let _hex = parts.next()?;
    let pid = parts.next()?.parse().ok()?;
    let _n: u64 = parts.next()?.parse().ok()?;
    Some(pid)
}

/// Whether the writer of a temp file may still be running. This process counts as
/// running: another `Cache` on the same directory may be storing right now. Without
/// `/proc` to ask, a temp file is presumed stale once it is an hour old.
fn writer_alive(pid: u32, temp: &Path) -> bool {
    if pid == std::process::id() {
        return true;
    }
    let proc = Path::new("/proc");
    if proc.join("self").exists() {
        return proc.join(pid.to_string()).exists();
    }
    let age = fs::metadata(temp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    age.is_none_or(|a| a < std::time::Duration::from_secs(3600))
}

fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut hex = String::with_capacity(64);
    for b in digest.iter() {
        let _ = write!(hex, "{b:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_sha256_of_url() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let p = cache.path_for("abc");
        // sha256("abc")
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            p,
            dir.path().join("v1").join("ba").join(format!("{hex}.img"))
        );
    }

    #[test]
    fn store_is_atomic_and_stale_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        assert!(!cache.contains("u"));
        assert_eq!(cache.read("u").unwrap(), None);
        cache.store("u", b"bytes").unwrap();
        assert!(cache.contains("u"));
        assert_eq!(cache.read("u").unwrap().as_deref(), Some(&b"bytes"[..]));

        // A temp file left by a dead process disappears on the next open.
        let shard = cache.path_for("u").parent().unwrap().to_path_buf();
        let dead = shard.join(format!(".{}.{}.0.tmp", "0".repeat(64), u32::MAX - 1));
        fs::write(&dead, b"half").unwrap();
        let _ = Cache::open(dir.path()).unwrap();
        assert!(!dead.exists());
        assert!(cache.contains("u"));
        let left: Vec<_> = fs::read_dir(&shard).unwrap().flatten().collect();
        assert_eq!(left.len(), 1);

        // A temp file of this (live) process is someone's write in progress: kept.
        let live = shard.join(format!(".{}.{}.7.tmp", "1".repeat(64), std::process::id()));
        fs::write(&live, b"writing").unwrap();
        let _ = Cache::open(dir.path()).unwrap();
        assert!(live.exists());
    }
}
