//! The pixel spool of one split: its images' deflate segments, appended in row order to
//! a temporary file, so no split's pixels are ever held in memory.
//!
//! The number of rows is only known at the end, and both idx and npz put it in a header
//! in front of the pixels; so the pixels wait here, already compressed, and are copied
//! behind each header once the split is complete (compress once, write twice).

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::encode::{DeflateSegment, FINAL_BLOCK, deflate_segment};

/// Compressed pixel rows of one split.
pub struct PixelSpool {
    file: BufWriter<File>,
    rows: u64,
    /// Running CRC-32 (and length) of the uncompressed pixels.
    crc: crc32fast::Hasher,
    compressed: u64,
}

/// A finished deflate stream: `prefix` (a header, deflated) + the spooled segments +
/// [`FINAL_BLOCK`].
pub struct PixelStream<'a> {
    spool: &'a mut PixelSpool,
    prefix: DeflateSegment,
    crc: u32,
    uncompressed: u64,
}

impl PixelSpool {
    /// A spool backed by a new file at `path` (inside the staging directory).
    pub fn create(path: &Path) -> io::Result<PixelSpool> {
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)?;
        Ok(PixelSpool {
            file: BufWriter::with_capacity(1 << 20, file),
            rows: 0,
            crc: crc32fast::Hasher::new(),
            compressed: 0,
        })
    }

    pub fn append(&mut self, segment: &DeflateSegment) -> io::Result<()> {
        self.file.write_all(&segment.data)?;
        self.crc.combine(&crc32fast::Hasher::new_with_initial_len(
            segment.crc,
            segment.len,
        ));
        self.compressed += segment.data.len() as u64;
        self.rows += 1;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// Uncompressed bytes spooled.
    pub fn pixel_bytes(&self) -> u64 {
        self.crc.total_len()
    }

    /// Compressed bytes spooled.
    pub fn compressed_bytes(&self) -> u64 {
        self.compressed
    }

    /// The complete deflate stream of `header` followed by the spooled pixels.
    pub fn stream(&mut self, header: &[u8], level: u32) -> io::Result<PixelStream<'_>> {
        self.file.flush()?;
        let prefix = deflate_segment(header, level).map_err(io::Error::other)?;
        let mut crc = crc32fast::Hasher::new_with_initial_len(prefix.crc, prefix.len);
        crc.combine(&self.crc);
        let uncompressed = prefix.len + self.pixel_bytes();
        Ok(PixelStream {
            spool: self,
            prefix,
            crc: crc.finalize(),
            uncompressed,
        })
    }
}

impl PixelStream<'_> {
    pub fn crc(&self) -> u32 {
        self.crc
    }

    /// Length of the uncompressed data: header + pixels.
    pub fn uncompressed(&self) -> u64 {
        self.uncompressed
    }

    /// Length of the raw deflate stream.
    pub fn compressed(&self) -> u64 {
        self.prefix.data.len() as u64 + self.spool.compressed + FINAL_BLOCK.len() as u64
    }

    /// Write the raw deflate stream; returns the bytes written.
    pub fn write_to(&mut self, out: &mut dyn Write) -> io::Result<u64> {
        out.write_all(&self.prefix.data)?;
        let file = self.spool.file.get_mut();
        file.seek(SeekFrom::Start(0))?;
        let copied = io::copy(&mut file.take(self.spool.compressed), out)?;
        if copied != self.spool.compressed {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "pixel spool shorter than written",
            ));
        }
        out.write_all(&FINAL_BLOCK)?;
        Ok(self.compressed())
    }
}
