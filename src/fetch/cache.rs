//! The image cache: one file per original upstream URL, named by the URL's SHA-256, so it
//! is shared by every dataset version and run and does not depend on `--rewrite`.
//!
//! Each entry is a plain file of the fetched bytes (`<key>.img`) with a record beside it
//! (`<key>.json`: the URL, the length and the SHA-256 of those bytes), each written to a
//! temp file of a random name and renamed into place, the record first. Several processes
//! (containers, hosts on a network file system) may share a cache: an entry is trusted only
//! while it matches its record, and one that does not is treated as absent, not removed,
//! since another writer may be between its two renames; the next store replaces it. Only an
//! entry that is not a regular file (a symlink is never followed) is removed on sight.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

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

/// Part of what makes temp names unique within one process.
static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
/// A temp file this old is a write that died: no store takes an hour.
const STALE_TEMP_AGE: Duration = Duration::from_secs(3600);
/// Looks at an entry that does not match its record, a moment apart, before it counts as
/// untrusted: another process may be between the renames of its record and its bytes.
const CHECK_ATTEMPTS: u32 = 3;
const CHECK_PAUSE: Duration = Duration::from_millis(5);

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
    /// An entry that does not match its record: absent for this reader, replaced by the
    /// next store (one that is not a regular file has been removed).
    Untrusted(Untrusted),
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
    /// Open (creating it if needed) the cache under `root` to write to it, and remove the
    /// temp files of writes that died (those older than an hour: a temp file's writer
    /// may be a process this one cannot see, in another PID namespace or on another host).
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

    /// The cache under `root` for looking only (`info`): nothing is created or removed.
    pub fn open_to_read(root: &Path) -> Cache {
        Cache {
            dir: root.join(LAYOUT),
        }
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

    /// Check the entry of `url` against its record. An entry or record that is not a
    /// regular file is removed (a store could not rename over a directory); bytes that do
    /// not match their record are left for the next store to replace.
    pub fn lookup(&self, url: &str) -> Lookup {
        match self.checked(url, false) {
            Ok(Some(_)) => Lookup::Cached,
            Ok(None) => Lookup::Missing,
            Err(why) => {
                if matches!(
                    why,
                    Untrusted::EntryNotRegular(_) | Untrusted::RecordNotRegular(_)
                ) {
                    self.evict(url);
                }
                Lookup::Untrusted(why)
            }
        }
    }

    /// The cached bytes of `url`, checked against its record, or `None` when it is not
    /// cached or does not match its record. The bytes returned are those checked: read
    /// once from one open file, never from a path opened again.
    pub fn read(&self, url: &str) -> Option<Vec<u8>> {
        self.checked(url, true).ok().flatten()
    }

    /// Remove the entry of `url` and its record (a symlink is removed, not followed), so
    /// that the next `build` or `fetch` downloads it again. Used for entries that are not
    /// regular files and for entries pack found undecodable. Missing files are fine.
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
    /// when `keep` (else they are hashed as they are read, in small pieces). A mismatch is
    /// looked at again a moment later: a writer renames the record, then the bytes.
    fn checked(&self, url: &str, keep: bool) -> Result<Option<Vec<u8>>, Untrusted> {
        let mut attempt = 1;
        loop {
            match self.checked_once(url, keep) {
                // Only other bytes can be a writer mid-way: bytes never lack a record
                // (it is renamed first), and a key's record always names its URL.
                Err(Untrusted::Length { .. } | Untrusted::Digest) if attempt < CHECK_ATTEMPTS => {
                    attempt += 1;
                    std::thread::sleep(CHECK_PAUSE);
                }
                other => return other,
            }
        }
    }

    fn checked_once(&self, url: &str, keep: bool) -> Result<Option<Vec<u8>>, Untrusted> {
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
    /// reader therefore sees a whole entry and a whole record, and bytes it can trust only
    /// once their own record is in place; bytes beside another store's record (a writer
    /// between its renames, or one killed there) read as untrusted until replaced.
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
    /// Remove the temp files of writes that died: those older than [`STALE_TEMP_AGE`].
    /// Whether their writer still runs cannot be asked (it may be in another PID
    /// namespace, or on another host of a shared file system), so age alone decides.
    fn remove_stale_temps(&self) -> Result<(), FetchError> {
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| FetchError::Cache { path, source }
        };
        let shards = fs::read_dir(&self.dir).map_err(err(&self.dir))?;
        let now = SystemTime::now();
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
                if !name.to_str().is_some_and(is_temp_name) {
                    continue;
                }
                // Not followed: a temp name is ours whatever it points to.
                let age = fs::symlink_metadata(file.path())
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| now.duration_since(t).ok());
                if age.is_some_and(|a| a >= STALE_TEMP_AGE) {
                    let _ = fs::remove_file(file.path());
                }
            }
        }
        Ok(())
    }
}

/// Write `bytes` to a new temp file `.<stem>.<random>.tmp` in `dir`; its name on success.
fn write_temp(dir: &Path, stem: &str, bytes: &[u8]) -> io::Result<PathBuf> {
    let temp = dir.join(format!(".{stem}.{}.{TEMP_EXT}", temp_suffix()));
    // No fsync: a power loss can leave an entry torn or empty, but then it no longer
    // matches its record and is fetched again, which costs one download. An fsync of
    // both files costs every entry about 6.6 ms more on ext4 (1.2 -> 7.8 ms; `fsync_cost`
    // below), over a minute for the 9,683 images of v1.3.
    let written = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&temp)
        .and_then(|mut f| io::Write::write_all(&mut f, bytes));
    match written {
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

/// 16 hex digits unlikely to be chosen by any other writer, in this process or another
/// (a pid is not unique across PID namespaces or hosts): the process's random hash keys
/// (std seeds them from the system's randomness) over the pid, the time and a counter.
fn temp_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(TEMP_COUNTER.fetch_add(1, Ordering::Relaxed));
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    format!("{:016x}", h.finish())
}

/// Whether `name` is a cache temp file: `.<64 hex>.<anything>.tmp` (older kaokores put
/// a pid and a counter where the random part now is).
fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|r| r.strip_suffix(TEMP_EXT))
        .and_then(|r| r.strip_suffix('.'))
    else {
        return false;
    };
    let (stem, tail) = rest.split_once('.').unwrap_or((rest, ""));
    stem.len() == 64 && stem.bytes().all(|b| b.is_ascii_hexdigit()) && !tail.is_empty()
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
    fn store_is_atomic_and_only_old_temps_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        assert!(!cache.contains("u"));
        assert_eq!(cache.read("u"), None);
        cache.store("u", b"bytes").unwrap();
        assert!(cache.contains("u"));
        assert_eq!(cache.read("u").as_deref(), Some(&b"bytes"[..]));

        // Temp files of both name patterns: one two hours old (a write that died), one
        // just made (a write in progress, maybe by a process this one cannot see).
        let shard = cache.path_for("u").parent().unwrap().to_path_buf();
        let old = shard.join(format!(".{}.{}.0.tmp", "0".repeat(64), u32::MAX - 1));
        let fresh = shard.join(format!(".{}.0123456789abcdef.tmp", "1".repeat(64)));
        for path in [&old, &fresh] {
            fs::write(path, b"half").unwrap();
        }
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(two_hours_ago)
            .unwrap();
        // Looking does not clean up.
        let _ = Cache::open_to_read(dir.path());
        assert!(old.exists());
        let _ = Cache::open(dir.path()).unwrap();
        assert!(!old.exists(), "an hour-old temp file is removed");
        assert!(fresh.exists(), "a fresh temp file is kept");
        assert!(cache.contains("u"));
    }

    #[test]
    fn temp_names_are_random_and_recognized() {
        let dir = tempfile::tempdir().unwrap();
        let stem = "a".repeat(64);
        let names: std::collections::BTreeSet<String> = (0..100)
            .map(|_| {
                let path = write_temp(dir.path(), &stem, b"x").unwrap();
                path.file_name().unwrap().to_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(names.len(), 100);
        assert!(names.iter().all(|n| is_temp_name(n)), "{names:?}");
        assert!(
            !names
                .iter()
                .any(|n| n.contains(&std::process::id().to_string()) && n.len() < 64 + 10)
        );
        for other in [
            format!("{stem}.img"),
            format!(".{stem}.tmp"),
            ".short.1.tmp".to_string(),
            format!(".{}.1.tmp", "g".repeat(64)),
        ] {
            assert!(!is_temp_name(&other), "{other}");
        }
    }

    #[test]
    fn bytes_beside_another_stores_record_are_left_for_the_next_store() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        cache.store("u", b"first bytes").unwrap();
        // A writer of other bytes killed between its two renames: its record, old bytes.
        let record = EntryRecord {
            url: "u".into(),
            length: 12,
            sha256: sha256_hex(b"second bytes"),
        };
        fs::write(
            cache.record_path_for("u"),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        assert_eq!(
            cache.lookup("u"),
            Lookup::Untrusted(Untrusted::Length {
                actual: 11,
                recorded: 12
            })
        );
        assert_eq!(cache.read("u"), None);
        assert!(
            cache.path_for("u").exists(),
            "not removed: it may be mid-way"
        );
        cache.store("u", b"second bytes").unwrap();
        assert_eq!(cache.read("u").as_deref(), Some(&b"second bytes"[..]));
    }

    /// Store `u`, let `damage` do something to the cache, and return what a look finds.
    fn after(damage: impl FnOnce(&Cache)) -> (Lookup, Cache, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        cache.store("u", b"the fetched bytes").unwrap();
        damage(&cache);
        (cache.lookup("u"), cache, dir)
    }

    fn untrusted(lookup: &Lookup) -> &Untrusted {
        match lookup {
            Lookup::Untrusted(why) => why,
            other => panic!("expected an untrusted entry, got {other:?}"),
        }
    }

    #[test]
    fn an_entry_is_trusted_only_while_it_matches_its_record() {
        let (found, cache, _dir) = after(|_| {});
        assert_eq!(found, Lookup::Cached);
        assert_eq!(cache.read("u").as_deref(), Some(&b"the fetched bytes"[..]));
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
        assert!(matches!(untrusted(&found), Untrusted::RecordInvalid(_)));
        assert_eq!(cache.read("u"), None);
        for (why, damage) in cases {
            let (found, cache, _dir) = after(damage);
            assert_eq!(untrusted(&found), &why);
            // Not removed (another writer may be between its renames): still untrusted,
            // until a store replaces it.
            assert!(cache.path_for("u").exists());
            assert_eq!(cache.lookup("u"), Lookup::Untrusted(why));
            assert_eq!(cache.read("u"), None);
            cache.store("u", b"the fetched bytes").unwrap();
            assert_eq!(cache.lookup("u"), Lookup::Cached);
        }
        // A valid entry and record copied under another URL's key.
        let (found, cache, _dir) = after(|c| {
            c.store("v", b"another image").unwrap();
            fs::copy(c.path_for("v"), c.path_for("u")).unwrap();
            fs::copy(c.record_path_for("v"), c.record_path_for("u")).unwrap();
        });
        assert_eq!(untrusted(&found), &Untrusted::OtherUrl("v".into()));
        assert!(cache.contains("v"));
    }

    #[test]
    fn read_never_returns_a_bad_entry_and_evict_removes_one() {
        let (_, cache, _dir) = after(|_| {});
        fs::write(cache.path_for("u"), b"garbage of the same len").unwrap();
        assert_eq!(cache.read("u"), None);
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
        assert_eq!(untrusted(&found), &Untrusted::EntryNotRegular("a symlink"));
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
        assert_eq!(untrusted(&found), &Untrusted::RecordNotRegular("a symlink"));
        let (found, cache, _d) = after(|c| {
            fs::remove_file(c.path_for("u")).unwrap();
            fs::create_dir(c.path_for("u")).unwrap();
        });
        assert_eq!(
            untrusted(&found),
            &Untrusted::EntryNotRegular("a directory")
        );
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
                untrusted(&found),
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
