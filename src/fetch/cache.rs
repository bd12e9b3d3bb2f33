//! The image cache: one file per original upstream URL, named by the URL's SHA-256, so it
//! is shared by every dataset version and run and does not depend on `--rewrite`.
//!
//! Each entry is a plain file of the fetched bytes (`<key>.img`) with a record beside it
//! (`<key>.json`: the URL, the length and the SHA-256 of those bytes), both written
//! atomically (a temp file in the same directory, then a rename). An entry is trusted only
//! while it matches its record: one that does not (other bytes, truncated, empty after a
//! power loss), has no record, or is not a regular file (a symlink is never followed) is
//! evicted the moment it is looked at, and the fetcher downloads it again.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use sha2::{Digest, Sha256};

use crate::digest::{hex, sha256_hex};

use super::FetchError;

/// The layout version: a change of key or file format gets a new directory. Entries of
/// this layout written before records existed have none: they are not trusted, and are
/// evicted and fetched again once.
const LAYOUT: &str = "v1";
const ENTRY_EXT: &str = "img";
const RECORD_EXT: &str = "json";
const TEMP_EXT: &str = "tmp";
/// A record is a URL and two numbers: anything larger is not one of ours.
const MAX_RECORD_BYTES: u64 = 64 << 10;

/// Unique temp names within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A content-addressed image cache rooted at a directory (`--cache`).
#[derive(Debug, Clone)]
pub struct Cache {
    dir: PathBuf,
}

/// What is recorded of an entry when it is written.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct EntryRecord {
    url: String,
    length: u64,
    sha256: String,
}

/// What a look at one entry found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    /// Present and matching its record.
    Cached,
    /// No entry.
    Missing,
    /// The entry did not match its record and has been removed.
    Evicted(Untrusted),
}

/// Why an entry is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Untrusted {
    /// A symlink, directory or special file, or replaced while it was opened.
    #[error("the entry is {0}")]
    EntryNotRegular(&'static str),
    #[error("the entry cannot be read: {0}")]
    EntryUnreadable(io::ErrorKind),
    #[error("the entry holds {actual} bytes, its record says {recorded}")]
    Length { actual: u64, recorded: u64 },
    #[error("the entry's bytes differ from those recorded (SHA-256)")]
    Digest,
    #[error("the entry has no record (written by an older kaokore, or its write was interrupted)")]
    NoRecord,
    #[error("its record is {0}")]
    RecordNotRegular(&'static str),
    #[error("its record cannot be read: {0}")]
    RecordUnreadable(io::ErrorKind),
    /// Not the JSON of a record (the parser's words).
    #[error("its record is not valid: {0}")]
    RecordInvalid(String),
    /// The record of another URL (the URL it names).
    #[error("its record names another URL ({0})")]
    OtherUrl(String),
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
        let hex = sha256_hex(url.as_bytes());
        self.dir.join(&hex[..2]).join(format!("{hex}.{ENTRY_EXT}"))
    }

    /// Where the record of `url`'s entry is: beside it, `<sha256 hex>.json`.
    pub fn record_path_for(&self, url: &str) -> PathBuf {
        self.path_for(url).with_extension(RECORD_EXT)
    }

    /// Whether a trustworthy image of `url` is cached. Reads and hashes the entry; one
    /// that fails the check is evicted (see [`Cache::lookup`]).
    pub fn contains(&self, url: &str) -> bool {
        self.lookup(url) == Lookup::Cached
    }

    /// A cheap look, for counting: the entry is a regular file whose length is the one its
    /// record gives. Its bytes are not hashed (so nothing is evicted here): [`Cache::read`]
    /// checks them when the entry is used.
    pub fn present(&self, url: &str) -> bool {
        let Ok(entry) = open_regular(&self.path_for(url)) else {
            return false;
        };
        match (self.read_record(url), entry.metadata()) {
            (Ok(record), Ok(meta)) => meta.len() == record.length,
            _ => false,
        }
    }

    /// Check the entry of `url` against its record, evicting it if it does not match.
    pub fn lookup(&self, url: &str) -> Lookup {
        match self.checked(url, false) {
            Ok(Some(_)) => Lookup::Cached,
            Ok(None) => Lookup::Missing,
            Err(why) => {
                self.evict(url);
                Lookup::Evicted(why)
            }
        }
    }

    /// The cached bytes of `url`, or `None` when it is not cached. An entry that does not
    /// match its record is evicted and reported as not cached.
    pub fn read(&self, url: &str) -> io::Result<Option<Vec<u8>>> {
        match self.checked(url, true) {
            Ok(bytes) => Ok(bytes),
            Err(_) => {
                self.evict(url);
                Ok(None)
            }
        }
    }

    /// Remove the entry of `url` and its record (a symlink is removed, not followed), so
    /// that the next `build` or `fetch` downloads it again. Used for entries that fail
    /// their check and for entries pack found undecodable. Missing files are fine.
    pub fn evict(&self, url: &str) {
        // The entry goes first: a record without an entry only reads as missing.
        for path in [self.path_for(url), self.record_path_for(url)] {
            let _ = match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
                Ok(_) => fs::remove_file(&path),
                Err(_) => Ok(()),
            };
        }
    }

    /// The entry of `url` if it matches its record: `Ok(None)` when there is no entry,
    /// `Err(why)` when there is one that must not be trusted. The bytes are returned only
    /// when `keep` (else they are hashed as they are read, in small pieces).
    fn checked(&self, url: &str, keep: bool) -> Result<Option<Vec<u8>>, Untrusted> {
        let path = self.path_for(url);
        let unreadable = |e: io::Error| Untrusted::EntryUnreadable(e.kind());
        let mut entry = match open_regular(&path) {
            Ok(file) => file,
            Err(OpenError::NotFound) => return Ok(None),
            Err(OpenError::NotRegular(kind)) => return Err(Untrusted::EntryNotRegular(kind)),
            Err(OpenError::Io(e)) => return Err(unreadable(e)),
        };
        let record = self.read_record(url)?;
        let length = entry.metadata().map_err(unreadable)?.len();
        if length != record.length {
            return Err(Untrusted::Length {
                actual: length,
                recorded: record.length,
            });
        }
        let mut hasher = Sha256::new();
        let mut kept = Vec::new();
        if keep {
            kept.reserve_exact(length as usize);
            (&mut entry)
                .take(length)
                .read_to_end(&mut kept)
                .map_err(unreadable)?;
            hasher.update(&kept);
        } else {
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match entry.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => hasher.update(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(unreadable(e)),
                }
            }
        }
        if hex(&hasher.finalize()) != record.sha256 {
            return Err(Untrusted::Digest);
        }
        Ok(Some(kept))
    }

    /// The record of `url`'s entry, if it is one and names `url`.
    fn read_record(&self, url: &str) -> Result<EntryRecord, Untrusted> {
        let path = self.record_path_for(url);
        let file = match open_regular(&path) {
            Ok(file) => file,
            Err(OpenError::NotFound) => return Err(Untrusted::NoRecord),
            Err(OpenError::NotRegular(kind)) => return Err(Untrusted::RecordNotRegular(kind)),
            Err(OpenError::Io(e)) => return Err(Untrusted::RecordUnreadable(e.kind())),
        };
        let mut text = Vec::new();
        file.take(MAX_RECORD_BYTES)
            .read_to_end(&mut text)
            .map_err(|e| Untrusted::RecordUnreadable(e.kind()))?;
        let record: EntryRecord =
            serde_json::from_slice(&text).map_err(|e| Untrusted::RecordInvalid(e.to_string()))?;
        if record.url != url {
            return Err(Untrusted::OtherUrl(record.url));
        }
        Ok(record)
    }

    /// Store validated bytes for `url`: the entry and its record are each written to a
    /// temp file beside their final name and renamed into place, the record first. A
    /// reader therefore sees a whole entry and a whole record; an entry without a record
    /// (a write interrupted between the two renames cannot leave one: the record is
    /// renamed first) or with another's record fails its check and is fetched again.
    pub(crate) fn store(&self, url: &str, bytes: &[u8]) -> io::Result<()> {
        let path = self.path_for(url);
        let parent = path.parent().unwrap_or(&self.dir);
        fs::create_dir_all(parent)?;
        let record = EntryRecord {
            url: url.to_string(),
            length: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        };
        let record = serde_json::to_vec(&record).map_err(io::Error::other)?;
        let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("entry");
        let entry_temp = write_temp(parent, stem, bytes)?;
        let record_temp = match write_temp(parent, stem, &record) {
            Ok(t) => t,
            Err(e) => {
                let _ = fs::remove_file(&entry_temp);
                return Err(e);
            }
        };
        let result = fs::rename(&record_temp, self.record_path_for(url))
            .and_then(|()| fs::rename(&entry_temp, &path));
        if result.is_err() {
            let _ = fs::remove_file(&record_temp);
            let _ = fs::remove_file(&entry_temp);
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

/// Write `bytes` to a new temp file `.<stem>.<pid>.<n>.tmp` in `dir`; its name on success.
fn write_temp(dir: &Path, stem: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let temp = dir.join(format!(
        ".{stem}.{}.{}.{TEMP_EXT}",
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    // No fsync: a power loss can leave an entry torn or empty, but then it no longer
    // matches its record and is fetched again, which costs one download. An fsync of
    // both files costs every entry about 6.6 ms more on ext4 (1.2 -> 7.8 ms; `fsync_cost`
    // below), over a minute for the 9,683 images of v1.3.
    match fs::write(&temp, bytes) {
        Ok(()) => Ok(temp),
        Err(e) => {
            let _ = fs::remove_file(&temp);
            Err(e)
        }
    }
}

/// Why a cache file could not be opened as a regular file.
enum OpenError {
    NotFound,
    /// A symlink, directory or special file: never followed or read.
    NotRegular(&'static str),
    Io(io::Error),
}

/// Open `path` for reading only if it is a regular file, never through a symlink and never
/// blocking on a FIFO ([`crate::fs::open_regular`]), in the cache's own words.
fn open_regular(path: &Path) -> Result<File, OpenError> {
    use crate::fs::OpenError as Fs;
    crate::fs::open_regular(path).map_err(|e| match e {
        Fs::Missing { .. } => OpenError::NotFound,
        Fs::Symlink { .. } => OpenError::NotRegular("a symlink"),
        Fs::NotRegular {
            kind: "a directory",
        } => OpenError::NotRegular("a directory"),
        Fs::NotRegular { .. } | Fs::NotADirectory { .. } => OpenError::NotRegular("a special file"),
        Fs::Changed => OpenError::NotRegular("replaced while it was opened"),
        Fs::Io(e) => OpenError::Io(e),
    })
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
    if let Some(alive) = crate::process::process_alive(pid) {
        return alive;
    }
    let age = fs::metadata(temp)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    age.is_none_or(|a| a < std::time::Duration::from_secs(3600))
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
        let mut left: Vec<_> = fs::read_dir(&shard)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        left.sort();
        assert_eq!(left, [cache.path_for("u"), cache.record_path_for("u")]);

        // A temp file of this (live) process is someone's write in progress: kept.
        let live = shard.join(format!(".{}.{}.7.tmp", "1".repeat(64), std::process::id()));
        fs::write(&live, b"writing").unwrap();
        let _ = Cache::open(dir.path()).unwrap();
        assert!(live.exists());
    }

    /// Store `u`, let `damage` do something to the cache, and return what a look finds.
    fn after(damage: impl FnOnce(&Cache)) -> (Lookup, Cache, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        cache.store("u", b"the fetched bytes").unwrap();
        damage(&cache);
        (cache.lookup("u"), cache, dir)
    }

    fn evicted(lookup: &Lookup) -> &Untrusted {
        match lookup {
            Lookup::Evicted(why) => why,
            other => panic!("expected an eviction, got {other:?}"),
        }
    }

    #[test]
    fn an_entry_is_trusted_only_while_it_matches_its_record() {
        let (found, cache, _dir) = after(|_| {});
        assert_eq!(found, Lookup::Cached);
        assert_eq!(
            cache.read("u").unwrap().as_deref(),
            Some(&b"the fetched bytes"[..])
        );
        let record: EntryRecord =
            serde_json::from_slice(&fs::read(cache.record_path_for("u")).unwrap()).unwrap();
        assert_eq!(record.length, 17);
        assert_eq!(record.sha256, sha256_hex(b"the fetched bytes"));

        type Damage = fn(&Cache);
        let length = |actual| Untrusted::Length {
            actual,
            recorded: 17,
        };
        let cases: [(Untrusted, Damage); 5] = [
            (Untrusted::Digest, |c| {
                fs::write(c.path_for("u"), b"the fetched bytez").unwrap()
            }),
            (Untrusted::Digest, |c| {
                fs::write(c.path_for("u"), b"THE FETCHED BYTES").unwrap()
            }),
            (length(5), |c| fs::write(c.path_for("u"), b"the f").unwrap()),
            (length(0), |c| fs::write(c.path_for("u"), b"").unwrap()),
            (Untrusted::NoRecord, |c| {
                fs::remove_file(c.record_path_for("u")).unwrap()
            }),
        ];
        let not_json: Damage = |c| fs::write(c.record_path_for("u"), b"").unwrap();
        let (found, cache, _dir) = after(not_json);
        assert!(matches!(evicted(&found), Untrusted::RecordInvalid(_)));
        assert_eq!(cache.lookup("u"), Lookup::Missing);
        for (why, damage) in cases {
            let (found, cache, _dir) = after(damage);
            assert_eq!(evicted(&found), &why);
            assert!(!cache.path_for("u").exists() && !cache.record_path_for("u").exists());
            assert_eq!(cache.lookup("u"), Lookup::Missing);
        }
        // A valid entry and record copied under another URL's key.
        let (found, cache, _dir) = after(|c| {
            c.store("v", b"another image").unwrap();
            fs::copy(c.path_for("v"), c.path_for("u")).unwrap();
            fs::copy(c.record_path_for("v"), c.record_path_for("u")).unwrap();
        });
        assert_eq!(evicted(&found), &Untrusted::OtherUrl("v".into()));
        assert!(cache.contains("v"));
    }

    #[test]
    fn read_evicts_a_bad_entry_instead_of_returning_it() {
        let (_, cache, _dir) = after(|_| {});
        fs::write(cache.path_for("u"), b"garbage of the same len").unwrap();
        assert_eq!(cache.read("u").unwrap(), None);
        assert!(!cache.path_for("u").exists());
        // Stored again, it is trusted again.
        cache.store("u", b"the fetched bytes").unwrap();
        assert!(cache.contains("u"));
        cache.evict("u");
        assert_eq!(cache.lookup("u"), Lookup::Missing);
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_and_special_files_are_never_followed() {
        let outside = tempfile::tempdir().unwrap();
        let target = outside.path().join("secret");
        fs::write(&target, b"the fetched bytes").unwrap();
        // A symlink to a file with exactly the recorded bytes is still not trusted.
        let (found, cache, _dir) = after(|c| {
            fs::remove_file(c.path_for("u")).unwrap();
            std::os::unix::fs::symlink(&target, c.path_for("u")).unwrap();
        });
        assert_eq!(evicted(&found), &Untrusted::EntryNotRegular("a symlink"));
        assert!(fs::symlink_metadata(cache.path_for("u")).is_err());
        assert_eq!(
            fs::read(&target).unwrap(),
            b"the fetched bytes",
            "target untouched"
        );

        // A symlinked record, a directory and a FIFO in place of the entry.
        let (found, _c, _d) = after(|c| {
            fs::remove_file(c.record_path_for("u")).unwrap();
            std::os::unix::fs::symlink(&target, c.record_path_for("u")).unwrap();
        });
        assert_eq!(evicted(&found), &Untrusted::RecordNotRegular("a symlink"));
        let (found, cache, _d) = after(|c| {
            fs::remove_file(c.path_for("u")).unwrap();
            fs::create_dir(c.path_for("u")).unwrap();
        });
        assert_eq!(evicted(&found), &Untrusted::EntryNotRegular("a directory"));
        assert!(!cache.path_for("u").exists());
        let fifo = std::process::Command::new("mkfifo")
            .arg(outside.path().join("probe"))
            .status();
        if fifo.is_ok_and(|s| s.success()) {
            let (found, _c, _d) = after(|c| {
                fs::remove_file(c.path_for("u")).unwrap();
                let ok = std::process::Command::new("mkfifo")
                    .arg(c.path_for("u"))
                    .status()
                    .unwrap();
                assert!(ok.success());
            });
            assert_eq!(
                evicted(&found),
                &Untrusted::EntryNotRegular("a special file")
            );
        }
    }

    /// What an fsync per entry would cost: stores `KAOKORE_FSYNC_N` (default 300) entries
    /// of 20 KB (a KaoKore image) in `KAOKORE_FSYNC_DIR` (default: a temp dir, which may
    /// be a RAM disk) with and without an fsync of each file before its rename.
    /// `KAOKORE_FSYNC_DIR=$HOME/x cargo test --lib fsync_cost -- --ignored --nocapture`
    #[test]
    #[ignore = "a measurement, not a check"]
    fn fsync_cost() {
        use std::io::Write as _;
        let n: usize = std::env::var("KAOKORE_FSYNC_N")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let base = std::env::var_os("KAOKORE_FSYNC_DIR").map(PathBuf::from);
        let dir = match &base {
            Some(b) => tempfile::tempdir_in(b).unwrap(),
            None => tempfile::tempdir().unwrap(),
        };
        let body = vec![7u8; 20_000];
        for sync in [false, true] {
            let started = std::time::Instant::now();
            for i in 0..n {
                for part in ["img", "json"] {
                    let temp = dir.path().join(format!(".{i}.{part}.tmp"));
                    let mut f = File::create(&temp).unwrap();
                    f.write_all(if part == "img" { &body } else { b"{}" })
                        .unwrap();
                    if sync {
                        f.sync_all().unwrap();
                    }
                    fs::rename(&temp, dir.path().join(format!("{sync}-{i}.{part}"))).unwrap();
                }
            }
            let per = started.elapsed() / n as u32;
            println!("fsync {sync}: {per:?} per entry ({n} entries)");
        }
    }
}
