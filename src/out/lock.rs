//! One build at a time per `--out`, and never a write through a directory swapped in
//! meanwhile. A build or pack holds an advisory lock (flock) on `--out/.kaokore-lock`, with
//! its pid in it, for the whole run; a second one is refused at once, naming the first.
//! `verify` takes the lock shared when a build holds it, so it never reads a build half
//! replaced. [`OutDir`] keeps a handle on `--out` from the start, so each write phase can
//! check that the path still leads to that very directory.

use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::ownership::OutError;
pub use crate::layout::LOCK_FILE;

/// `--out`, held open: the directory a build checked is the one it writes into.
#[derive(Debug)]
pub struct OutDir {
    path: PathBuf,
    /// Keeps the directory (and so its device and inode) from being reused while held.
    _handle: File,
    id: FileId,
}

/// Device and inode: what tells one directory from another whatever its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId(u64, u64);

impl FileId {
    pub(crate) fn of(meta: &fs::Metadata) -> FileId {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            FileId(meta.dev(), meta.ino())
        }
        #[cfg(not(unix))]
        {
            let _ = meta;
            FileId(0, 0)
        }
    }

    /// The identity of what `path` leads to now (following a symlink, as a user's
    /// `--out` that is a link to a directory is followed from the start).
    pub(crate) fn at(path: &Path) -> io::Result<FileId> {
        fs::metadata(path).map(|m| FileId::of(&m))
    }
}

impl OutDir {
    /// Open the existing directory `path`.
    pub fn open(path: &Path) -> Result<OutDir, OutError> {
        let io = |source| OutError::Io {
            path: path.to_path_buf(),
            source,
        };
        let handle = File::open(path).map_err(io)?;
        let meta = handle.metadata().map_err(io)?;
        if !meta.is_dir() {
            return Err(OutError::NotADirectory {
                out: path.to_path_buf(),
                at: path.to_path_buf(),
            });
        }
        Ok(OutDir {
            path: path.to_path_buf(),
            _handle: handle,
            id: FileId::of(&meta),
        })
    }

    /// Create `path` (and its parents) if missing, then open it.
    pub fn create(path: &Path) -> Result<OutDir, OutError> {
        fs::create_dir_all(path).map_err(|source| OutError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        OutDir::open(path)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `Ok` when the path still leads to the directory opened: checked before every write
    /// phase, so that a directory moved away and replaced (by a symlink to elsewhere, say)
    /// is never written into.
    pub fn check_same(&self) -> Result<(), OutError> {
        match FileId::at(&self.path) {
            Ok(id) if id == self.id => Ok(()),
            _ => Err(OutError::Replaced {
                out: self.path.clone(),
            }),
        }
    }
}

/// The lock of a build on its `--out`, held until dropped; then the lock file is removed.
#[derive(Debug)]
pub struct OutLock {
    dir: OutDir,
    file: File,
}

impl OutLock {
    /// Take `out` for this run: create it if missing (it passed the ownership check),
    /// then lock `out/.kaokore-lock` and write this process's id into it. Another run
    /// holding it makes this fail at once with [`OutError::Busy`].
    pub fn acquire(out: &Path) -> Result<OutLock, OutError> {
        let dir = OutDir::create(out)?;
        let path = out.join(LOCK_FILE);
        let io = |source| OutError::Io {
            path: path.clone(),
            source,
        };
        // A lock file removed by its holder between our open and our lock is a stale
        // one: try again on the new file (twice is plenty; a third means a busy loop).
        for _ in 0..3 {
            let mut file = open_lock_file(out, &path, true)?;
            if !flock(&file, Mode::Exclusive).map_err(io)? {
                return Err(OutError::Busy {
                    out: out.to_path_buf(),
                    pid: holder(&mut file),
                });
            }
            let held = FileId::of(&file.metadata().map_err(io)?);
            match fs::symlink_metadata(&path) {
                Ok(m) if FileId::of(&m) == held => {}
                _ => continue,
            }
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
            return Ok(OutLock { dir, file });
        }
        Err(OutError::Busy {
            out: out.to_path_buf(),
            pid: None,
        })
    }

    /// The directory locked, held open.
    pub fn dir(&self) -> &OutDir {
        &self.dir
    }
}

impl Drop for OutLock {
    /// Remove the lock file (still locked, so a run waiting on it sees it go) unless
    /// `--out` is no longer the directory locked: nothing is removed through a swap.
    fn drop(&mut self) {
        if self.dir.check_same().is_err() {
            return;
        }
        let path = self.dir.path.join(LOCK_FILE);
        let ours = self.file.metadata().ok().map(|m| FileId::of(&m));
        let there = fs::symlink_metadata(&path).ok().map(|m| FileId::of(&m));
        if ours.is_some() && ours == there {
            let _ = fs::remove_file(&path);
        }
    }
}

/// A shared hold on a build directory's lock, for reading it (`verify`).
#[derive(Debug)]
pub struct SharedLock {
    _file: Option<File>,
}

/// Wait up to `wait` for a build holding `dir`'s lock to finish, then hold the lock
/// shared (so no build starts replacing files while `dir` is read). Without a lock file no
/// build runs there: nothing is created, `dir` is only read. Still held after `wait`:
/// [`OutError::Busy`], naming the build.
pub fn share(dir: &Path, wait: Duration) -> Result<SharedLock, OutError> {
    let path = dir.join(LOCK_FILE);
    let started = Instant::now();
    loop {
        let mut file = match open_lock_file(dir, &path, false) {
            Ok(f) => f,
            Err(OutError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(SharedLock { _file: None });
            }
            Err(e) => return Err(e),
        };
        let locked = flock(&file, Mode::Shared).map_err(|source| OutError::Io {
            path: path.clone(),
            source,
        })?;
        if locked {
            return Ok(SharedLock { _file: Some(file) });
        }
        if started.elapsed() >= wait {
            return Err(OutError::Busy {
                out: dir.to_path_buf(),
                pid: holder(&mut file),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Open the lock file, never through a symlink and never blocking on a FIFO; `create`
/// makes it when missing.
fn open_lock_file(out: &Path, path: &Path, create: bool) -> Result<File, OutError> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    if create {
        options.write(true).create(true);
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
            .mode(0o644);
    }
    let in_the_way = || OutError::InTheWay {
        out: out.to_path_buf(),
        at: LOCK_FILE.to_string(),
        why: "is not a regular file",
    };
    let file = match options.open(path) {
        Ok(f) => f,
        // O_NOFOLLOW on a symlink.
        #[cfg(unix)]
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(in_the_way()),
        Err(source) => {
            return Err(OutError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let meta = file.metadata().map_err(|source| OutError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    if !meta.is_file() {
        return Err(in_the_way());
    }
    Ok(file)
}

/// The process id the lock's holder wrote, if it still runs.
fn holder(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(64).read_to_string(&mut text).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    (crate::process::process_alive(pid) != Some(false)).then_some(pid)
}

enum Mode {
    Exclusive,
    Shared,
}

/// Try to take the lock without waiting: `Ok(false)` when someone else holds it.
#[cfg(unix)]
fn flock(file: &File, mode: Mode) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let op = match mode {
        Mode::Exclusive => libc::LOCK_EX,
        Mode::Shared => libc::LOCK_SH,
    } | libc::LOCK_NB;
    loop {
        // SAFETY: flock on a file descriptor this File owns and keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(true);
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EWOULDBLOCK) => return Ok(false),
            Some(libc::EINTR) => continue,
            _ => return Err(e),
        }
    }
}

/// No advisory locks here: one build at a time is the user's to keep.
#[cfg(not(unix))]
fn flock(_file: &File, _mode: Mode) -> io::Result<bool> {
    Ok(true)
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_naming_the_holder_and_the_file_goes_at_drop() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let lock = OutLock::acquire(&out).unwrap();
        let text = fs::read_to_string(out.join(LOCK_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", std::process::id()));
        match OutLock::acquire(&out).unwrap_err() {
            OutError::Busy { pid, .. } => assert_eq!(pid, Some(std::process::id())),
            e => panic!("{e}"),
        }
        let e = share(&out, Duration::from_millis(150)).unwrap_err();
        assert!(
            e.to_string().contains(&std::process::id().to_string()),
            "{e}"
        );
        assert_eq!(e.exit_code(), 1);
        drop(lock);
        assert!(!out.join(LOCK_FILE).exists(), "removed at exit");
        let shared = share(&out, Duration::ZERO).unwrap();
        assert!(!out.join(LOCK_FILE).exists(), "verify creates nothing");
        drop(shared);
        // A lock file left by a killed run is taken over.
        fs::write(out.join(LOCK_FILE), "999999999\n").unwrap();
        let shared = share(&out, Duration::ZERO).unwrap();
        let lock = OutLock::acquire(&out);
        assert!(
            matches!(&lock, Err(OutError::Busy { pid: None, .. })),
            "a reader holds it: {lock:?}"
        );
        drop(shared);
        let _lock = OutLock::acquire(&out).unwrap();
    }

    #[test]
    fn a_symlinked_lock_file_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        fs::create_dir(&out).unwrap();
        let target = dir.path().join("target");
        std::os::unix::fs::symlink(&target, out.join(LOCK_FILE)).unwrap();
        let e = OutLock::acquire(&out).unwrap_err();
        assert!(matches!(e, OutError::InTheWay { .. }), "{e}");
        assert!(!target.exists());
    }

    #[test]
    fn a_replaced_directory_is_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let handle = OutDir::create(&out).unwrap();
        handle.check_same().unwrap();
        fs::rename(&out, dir.path().join("moved")).unwrap();
        let elsewhere = dir.path().join("elsewhere");
        fs::create_dir(&elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &out).unwrap();
        let e = handle.check_same().unwrap_err();
        assert!(matches!(e, OutError::Replaced { .. }), "{e}");
    }
}
