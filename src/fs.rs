//! The file-system access that kaokore's safety rests on, in one place: looking at a path
//! below a directory one component at a time without following a symlink, opening only
//! regular files (never through a symlink, never blocking on a FIFO), and walking a tree
//! without leaving it. The build record, the commit, verify and the cache all use these.

use std::fs::{self, File};
use std::io;
use std::path::Path;

/// What is at `root/relative`, looked at one component at a time without following any
/// symlink below `root`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathState {
    Absent,
    /// A regular file, reached through real directories only.
    File,
    /// A real directory, reached through real directories only.
    Dir,
    /// Something kaokore neither replaces nor writes through: `at` (relative to `root`)
    /// is a symlink, a file where a directory goes, or a special file.
    Blocked {
        at: String,
        why: &'static str,
    },
}

/// Look at `root/relative` (a plain relative `/`-separated path) without following symlinks.
pub fn inspect(root: &Path, relative: &str) -> io::Result<PathState> {
    let parts: Vec<&str> = relative.split('/').collect();
    let mut path = root.to_path_buf();
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

/// Why a file was not opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Nothing there; `at` names the missing directory on the way, if it was one.
    #[error("{}", match at { Some(at) => format!("missing ({at}/ does not exist)"), None => "missing".into() })]
    Missing { at: Option<String> },
    /// A symlink, at the file itself (`at` is `None`) or at a directory on the way.
    #[error("{}", match at { Some(at) => format!("{at}/ is a symbolic link: not followed"), None => "is a symbolic link: not followed".into() })]
    Symlink { at: Option<String> },
    /// A file where a directory must be.
    #[error("{at} is not a directory")]
    NotADirectory { at: String },
    /// A directory, FIFO, device or socket where a regular file must be.
    #[error("is {kind}, not a regular file: not opened")]
    NotRegular { kind: &'static str },
    /// What was opened is not what was looked at (swapped in between).
    #[error("changed while being opened")]
    Changed,
    #[error("cannot open: {0}")]
    Io(#[from] io::Error),
}

/// Open `root/relative` for reading, refusing to follow a symlink (in any component) or to
/// open anything but a regular file: a link to /dev/zero or a FIFO would hang a reader,
/// and a link elsewhere would read a file that is not ours. The opened file is checked to
/// be the one inspected (a swap in between is refused).
pub fn open_below(root: &Path, relative: &str) -> Result<File, OpenError> {
    let parts: Vec<&str> = relative.split('/').collect();
    let mut path = root.to_path_buf();
    let mut inspected = None;
    for (i, part) in parts.iter().enumerate() {
        path.push(part);
        let last = i + 1 == parts.len();
        let shown = || (!last).then(|| parts[..=i].join("/"));
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(OpenError::Missing { at: shown() });
            }
            Err(e) => return Err(OpenError::Io(e)),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(OpenError::Symlink { at: shown() });
        }
        if last && !kind.is_file() {
            return Err(OpenError::NotRegular {
                kind: kind_name(&kind),
            });
        }
        if !last && !kind.is_dir() {
            return Err(OpenError::NotADirectory {
                at: parts[..=i].join("/"),
            });
        }
        inspected = Some(meta);
    }
    open_checked(&path, inspected.as_ref())
}

/// Open `path` for reading only if it is a regular file, without following a symlink at
/// its last component (the directories above it are the caller's).
pub fn open_regular(path: &Path) -> Result<File, OpenError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(OpenError::Missing { at: None });
        }
        Err(e) => return Err(OpenError::Io(e)),
    };
    let kind = meta.file_type();
    if kind.is_symlink() {
        return Err(OpenError::Symlink { at: None });
    }
    if !kind.is_file() {
        return Err(OpenError::NotRegular {
            kind: kind_name(&kind),
        });
    }
    open_checked(path, Some(&meta))
}

/// Open `path` for reading if it is a regular file, following symlinks (it is the user's
/// input, not a directory kaokore owns), without blocking on a FIFO swapped in since it
/// was looked at.
pub fn open_input(path: &Path) -> Result<File, OpenError> {
    let meta = fs::metadata(path)?;
    if !meta.is_file() {
        return Err(OpenError::NotRegular {
            kind: kind_name(&meta.file_type()),
        });
    }
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    let opened = file.metadata()?;
    if !opened.is_file() {
        return Err(OpenError::NotRegular {
            kind: kind_name(&opened.file_type()),
        });
    }
    Ok(file)
}

/// Open without following a final symlink and without blocking (a FIFO swapped in would
/// otherwise block `open` forever), then check it is the file `inspected` described.
fn open_checked(path: &Path, inspected: Option<&fs::Metadata>) -> Result<File, OpenError> {
    let mut options = fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
    }
    let file = options.open(path).map_err(|e| {
        #[cfg(unix)]
        if e.raw_os_error() == Some(libc::ELOOP) {
            return OpenError::Symlink { at: None };
        }
        OpenError::Io(e)
    })?;
    let opened = file.metadata()?;
    match inspected {
        Some(m) if opened.is_file() && same_file(m, &opened) => Ok(file),
        _ => Err(OpenError::Changed),
    }
}

/// Whether two metadata describe one file (device and inode; on other systems, trusted).
pub fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        (a.dev(), a.ino()) == (b.dev(), b.ino())
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        true
    }
}

/// A few words for a kind of file that is not a regular one.
pub fn kind_name(kind: &fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_fifo() {
            return "a FIFO";
        }
        if kind.is_char_device() || kind.is_block_device() {
            return "a device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else {
        "a special file"
    }
}

/// An entry met by [`walk`]: its path relative to the root (`/`-separated) and its kind
/// (never followed: a symlink is a symlink).
pub struct WalkEntry {
    pub relative: String,
    pub kind: fs::FileType,
}

/// Visit the entries below `root` without following symlinks, at most `max_entries` of
/// them. `visit` returns whether to descend into a directory entry. Unreadable
/// directories are skipped.
pub fn walk(root: &Path, max_entries: usize, mut visit: impl FnMut(&WalkEntry) -> bool) {
    let mut pending = vec![(root.to_path_buf(), String::new())];
    let mut walked = 0;
    while let Some((path, relative)) = pending.pop() {
        let Ok(entries) = fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            walked += 1;
            if walked > max_entries {
                return;
            }
            // `file_type` of a directory entry does not follow a symlink.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let name = entry.file_name().to_string_lossy().into_owned();
            let inside = if relative.is_empty() {
                name
            } else {
                format!("{relative}/{name}")
            };
            let e = WalkEntry {
                relative: inside,
                kind,
            };
            if visit(&e) && kind.is_dir() {
                pending.push((entry.path(), e.relative));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inspect_never_follows_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/f"), b"x").unwrap();
        assert_eq!(inspect(root, "d/f").unwrap(), PathState::File);
        assert_eq!(inspect(root, "d").unwrap(), PathState::Dir);
        assert_eq!(inspect(root, "d/g").unwrap(), PathState::Absent);
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(root.join("d"), root.join("l")).unwrap();
            assert_eq!(
                inspect(root, "l/f").unwrap(),
                PathState::Blocked {
                    at: "l".into(),
                    why: "is a symlink"
                }
            );
        }
        assert_eq!(
            inspect(root, "d/f/x").unwrap(),
            PathState::Blocked {
                at: "d/f".into(),
                why: "is not a directory"
            }
        );
    }

    #[cfg(unix)]
    #[test]
    fn opens_only_regular_files_and_never_blocks_on_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("d")).unwrap();
        fs::write(root.join("d/f"), b"x").unwrap();
        assert!(open_below(root, "d/f").is_ok());
        assert!(open_regular(&root.join("d/f")).is_ok());
        std::os::unix::fs::symlink(root.join("d"), root.join("l")).unwrap();
        std::os::unix::fs::symlink(root.join("d/f"), root.join("d/s")).unwrap();
        let msg = |r: Result<File, OpenError>| r.unwrap_err().to_string();
        assert_eq!(
            msg(open_below(root, "l/f")),
            "l/ is a symbolic link: not followed"
        );
        assert_eq!(
            msg(open_below(root, "d/s")),
            "is a symbolic link: not followed"
        );
        assert_eq!(
            msg(open_regular(&root.join("d/s"))),
            "is a symbolic link: not followed"
        );
        assert_eq!(msg(open_below(root, "x/f")), "missing (x/ does not exist)");
        assert_eq!(msg(open_below(root, "d/f/g")), "d/f is not a directory");
        let fifo = root.join("d/fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if made.is_ok_and(|s| s.success()) {
            assert_eq!(
                msg(open_below(root, "d/fifo")),
                "is a FIFO, not a regular file: not opened"
            );
            assert_eq!(
                msg(open_regular(&fifo)),
                "is a FIFO, not a regular file: not opened"
            );
        }
    }

    #[cfg(unix)]
    #[test]
    fn walk_stays_inside_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::write(root.join("a/b/f"), b"x").unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret"), b"x").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.join("a/link")).unwrap();
        let mut seen = Vec::new();
        walk(root, 100, |e| {
            seen.push(e.relative.clone());
            true
        });
        seen.sort();
        assert_eq!(seen, ["a", "a/b", "a/b/f", "a/link"]);
        let mut count = 0;
        walk(root, 2, |_| {
            count += 1;
            true
        });
        assert_eq!(count, 2);
    }
}
