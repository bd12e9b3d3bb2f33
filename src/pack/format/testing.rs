//! Test support for the format writers: an in-memory [`FileSink`], whose files a test
//! reads back as bytes.

use std::collections::BTreeMap;
use std::io::{self, Cursor, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

use super::{FileSink, WriteSeek};
use crate::pack::PackError;

/// Files held in memory, by name: what a writer wrote can be read back at once.
#[derive(Default)]
pub(crate) struct MemorySink {
    files: Mutex<BTreeMap<String, Shared>>,
}

/// The bytes of one file, shared by the sink and the file's handle.
type Shared = Arc<Mutex<Cursor<Vec<u8>>>>;

impl MemorySink {
    /// The names of its files, sorted.
    pub fn names(&self) -> Vec<String> {
        self.files.lock().unwrap().keys().cloned().collect()
    }

    /// The bytes of the file `relative`; panics when there is none.
    pub fn bytes(&self, relative: &str) -> Vec<u8> {
        let files = self.files.lock().unwrap();
        let file = files
            .get(relative)
            .unwrap_or_else(|| panic!("no file {relative} in {:?}", files.keys()));
        file.lock().unwrap().get_ref().clone()
    }
}

impl FileSink for MemorySink {
    fn create(&self, relative: &str) -> Result<Box<dyn WriteSeek>, PackError> {
        let file = Arc::new(Mutex::new(Cursor::new(Vec::new())));
        self.files
            .lock()
            .unwrap()
            .insert(relative.to_string(), file.clone());
        Ok(Box::new(MemoryFile(file)))
    }

    fn rename(&self, from: &str, to: &str) -> Result<(), PackError> {
        let mut files = self.files.lock().unwrap();
        let file = files.remove(from).ok_or_else(|| PackError::Io {
            path: from.into(),
            source: io::ErrorKind::NotFound.into(),
        })?;
        files.insert(to.to_string(), file);
        Ok(())
    }
}

/// A file of a [`MemorySink`], written through its handle.
struct MemoryFile(Shared);

impl Write for MemoryFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Seek for MemoryFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.lock().unwrap().seek(pos)
    }
}
