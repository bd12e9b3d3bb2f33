//! A minimal zip container writer for npz files.
//!
//! Written by hand because the image member's deflate data is assembled from segments
//! compressed in parallel, and written as they arrive (sizes and CRC-32 then follow the
//! data in a data descriptor), which no zip library accepts. Every entry carries
//! ZIP64 fields and the archive always ends with ZIP64 records, so a split larger than
//! 4 GiB needs no other code path; timestamps are fixed (1980-01-01 00:00) so the bytes
//! depend on the contents only.

use std::io::{self, Write};

/// How a member's data is stored (npz members are always deflated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Deflated = 8,
}

const VERSION: u16 = 45; // ZIP64
const DOS_TIME: u16 = 0;
const DOS_DATE: u16 = (1 << 5) | 1; // 1980-01-01
const MAX32: u32 = u32::MAX;
/// General purpose flag bit 3: CRC-32 and sizes are in a data descriptor after the data.
const FLAG_DESCRIPTOR: u16 = 1 << 3;

struct Entry {
    name: String,
    method: Method,
    flags: u16,
    crc: u32,
    compressed: u64,
    uncompressed: u64,
    offset: u64,
}

/// Writes members one after another, then the central directory.
pub struct ZipWriter<W: Write> {
    out: W,
    position: u64,
    entries: Vec<Entry>,
    /// A streamed member begun and not yet ended: (name, method, offset).
    open: Option<(String, Method, u64)>,
}

impl<W: Write> ZipWriter<W> {
    pub fn new(out: W) -> Self {
        ZipWriter {
            out,
            position: 0,
            entries: Vec::new(),
            open: None,
        }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.position += bytes.len() as u64;
        Ok(())
    }

    /// Add a member holding one whole deflate segment, closed with the final empty block:
    /// a small member compressed in memory.
    pub fn deflated_member(
        &mut self,
        name: &str,
        segment: &crate::encode::DeflateSegment,
    ) -> io::Result<()> {
        use crate::encode::FINAL_BLOCK;
        let packed = (segment.data.len() + FINAL_BLOCK.len()) as u64;
        self.member(
            name,
            Method::Deflated,
            segment.crc,
            segment.len,
            packed,
            |w| {
                w.write_all(&segment.data)?;
                w.write_all(&FINAL_BLOCK)?;
                Ok(packed)
            },
        )
    }

    /// Add a member whose sizes and CRC are known up front; `write_data` must write exactly
    /// `compressed` bytes.
    pub fn member(
        &mut self,
        name: &str,
        method: Method,
        crc: u32,
        uncompressed: u64,
        compressed: u64,
        write_data: impl FnOnce(&mut dyn Write) -> io::Result<u64>,
    ) -> io::Result<()> {
        let offset = self.position;
        self.put(&local_header(
            name,
            method,
            0,
            crc,
            uncompressed,
            compressed,
        ))?;
        let written = write_data(&mut self.out)?;
        if written != compressed {
            return Err(io::Error::other(format!(
                "zip member {name}: wrote {written} bytes, announced {compressed}"
            )));
        }
        self.position += written;
        self.entries.push(Entry {
            name: name.to_string(),
            method,
            flags: 0,
            crc,
            compressed,
            uncompressed,
            offset,
        });
        Ok(())
    }

    /// Begin a member whose data is then written to [`ZipWriter::sink`] as it comes, and
    /// whose CRC-32 and sizes follow it (see [`ZipWriter::end_streamed`]).
    pub fn begin_streamed(&mut self, name: &str, method: Method) -> io::Result<()> {
        if self.open.is_some() {
            return Err(io::Error::other("zip: a streamed member is already open"));
        }
        let offset = self.position;
        self.put(&local_header(name, method, FLAG_DESCRIPTOR, 0, 0, 0))?;
        self.open = Some((name.to_string(), method, offset));
        Ok(())
    }

    /// Where a streamed member's data goes.
    pub fn sink(&mut self) -> &mut W {
        &mut self.out
    }

    /// End the streamed member after `compressed` bytes were written to the sink: writes
    /// the ZIP64 data descriptor.
    pub fn end_streamed(&mut self, crc: u32, uncompressed: u64, compressed: u64) -> io::Result<()> {
        let (name, method, offset) = self
            .open
            .take()
            .ok_or_else(|| io::Error::other("zip: no streamed member is open"))?;
        self.position += compressed;
        let mut d = Vec::with_capacity(24);
        d.extend_from_slice(&0x0807_4b50u32.to_le_bytes());
        d.extend_from_slice(&crc.to_le_bytes());
        d.extend_from_slice(&compressed.to_le_bytes());
        d.extend_from_slice(&uncompressed.to_le_bytes());
        self.put(&d)?;
        self.entries.push(Entry {
            name,
            method,
            flags: FLAG_DESCRIPTOR,
            crc,
            compressed,
            uncompressed,
            offset,
        });
        Ok(())
    }

    /// Write the central directory and the (ZIP64) end records; returns the sink.
    pub fn finish(mut self) -> io::Result<W> {
        if self.open.is_some() {
            return Err(io::Error::other("zip: a streamed member was not ended"));
        }
        let directory_offset = self.position;
        let mut d = Vec::new();
        for e in &self.entries {
            d.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
            d.extend_from_slice(&VERSION.to_le_bytes()); // made by (MS-DOS host)
            d.extend_from_slice(&VERSION.to_le_bytes()); // needed
            d.extend_from_slice(&e.flags.to_le_bytes());
            d.extend_from_slice(&(e.method as u16).to_le_bytes());
            d.extend_from_slice(&DOS_TIME.to_le_bytes());
            d.extend_from_slice(&DOS_DATE.to_le_bytes());
            d.extend_from_slice(&e.crc.to_le_bytes());
            d.extend_from_slice(&MAX32.to_le_bytes());
            d.extend_from_slice(&MAX32.to_le_bytes());
            d.extend_from_slice(&(e.name.len() as u16).to_le_bytes());
            d.extend_from_slice(&28u16.to_le_bytes()); // extra
            d.extend_from_slice(&0u16.to_le_bytes()); // comment
            d.extend_from_slice(&0u16.to_le_bytes()); // disk
            d.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
            d.extend_from_slice(&0u32.to_le_bytes()); // external attributes
            d.extend_from_slice(&MAX32.to_le_bytes()); // offset: in the ZIP64 field
            d.extend_from_slice(e.name.as_bytes());
            d.extend_from_slice(&1u16.to_le_bytes());
            d.extend_from_slice(&24u16.to_le_bytes());
            d.extend_from_slice(&e.uncompressed.to_le_bytes());
            d.extend_from_slice(&e.compressed.to_le_bytes());
            d.extend_from_slice(&e.offset.to_le_bytes());
        }
        let directory_size = d.len() as u64;
        let count = self.entries.len() as u64;
        let end64_offset = directory_offset + directory_size;
        // ZIP64 end of central directory record.
        d.extend_from_slice(&0x0606_4b50u32.to_le_bytes());
        d.extend_from_slice(&44u64.to_le_bytes());
        d.extend_from_slice(&VERSION.to_le_bytes());
        d.extend_from_slice(&VERSION.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        d.extend_from_slice(&count.to_le_bytes());
        d.extend_from_slice(&count.to_le_bytes());
        d.extend_from_slice(&directory_size.to_le_bytes());
        d.extend_from_slice(&directory_offset.to_le_bytes());
        // ZIP64 end of central directory locator.
        d.extend_from_slice(&0x0706_4b50u32.to_le_bytes());
        d.extend_from_slice(&0u32.to_le_bytes());
        d.extend_from_slice(&end64_offset.to_le_bytes());
        d.extend_from_slice(&1u32.to_le_bytes());
        // End of central directory record, pointing at the ZIP64 values.
        d.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        d.extend_from_slice(&0u16.to_le_bytes());
        d.extend_from_slice(&0u16.to_le_bytes());
        d.extend_from_slice(&u16::MAX.to_le_bytes());
        d.extend_from_slice(&u16::MAX.to_le_bytes());
        d.extend_from_slice(&MAX32.to_le_bytes());
        d.extend_from_slice(&MAX32.to_le_bytes());
        d.extend_from_slice(&0u16.to_le_bytes());
        self.put(&d)?;
        self.out.flush()?;
        Ok(self.out)
    }
}

/// A local file header with ZIP64 sizes (zero when they follow in a data descriptor).
fn local_header(
    name: &str,
    method: Method,
    flags: u16,
    crc: u32,
    uncompressed: u64,
    compressed: u64,
) -> Vec<u8> {
    let mut h = Vec::with_capacity(30 + name.len() + 20);
    h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    h.extend_from_slice(&(method as u16).to_le_bytes());
    h.extend_from_slice(&DOS_TIME.to_le_bytes());
    h.extend_from_slice(&DOS_DATE.to_le_bytes());
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&MAX32.to_le_bytes());
    h.extend_from_slice(&MAX32.to_le_bytes());
    h.extend_from_slice(&(name.len() as u16).to_le_bytes());
    h.extend_from_slice(&20u16.to_le_bytes());
    h.extend_from_slice(name.as_bytes());
    h.extend_from_slice(&1u16.to_le_bytes()); // ZIP64 extended information
    h.extend_from_slice(&16u16.to_le_bytes());
    h.extend_from_slice(&uncompressed.to_le_bytes());
    h.extend_from_slice(&compressed.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::deflate_segment;
    use std::io::Read;

    #[test]
    fn the_zip_crate_reads_what_we_write() {
        let data: Vec<u8> = (0..50_000u32).map(|i| (i % 13) as u8).collect();
        let segment = deflate_segment(&data, 1).unwrap();
        let mut zip = ZipWriter::new(Vec::new());
        for name in ["a.npy", "b.npy"] {
            zip.deflated_member(name, &segment).unwrap();
        }
        let bytes = zip.finish().unwrap();
        let mut archive = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        assert_eq!(archive.len(), 2);
        for name in ["a.npy", "b.npy"] {
            let mut back = Vec::new();
            archive
                .by_name(name)
                .unwrap()
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == data);
        }
        // A streamed member (CRC-32 and sizes in a data descriptor) next to a plain one.
        let mut zip = ZipWriter::new(Vec::new());
        zip.deflated_member("a.npy", &segment).unwrap();
        zip.begin_streamed("s.npy", Method::Deflated).unwrap();
        zip.sink().write_all(&segment.data).unwrap();
        zip.sink().write_all(&crate::encode::FINAL_BLOCK).unwrap();
        let packed = segment.data.len() as u64 + 2;
        zip.end_streamed(segment.crc, segment.len, packed).unwrap();
        let bytes = zip.finish().unwrap();
        let mut archive = ::zip::ZipArchive::new(std::io::Cursor::new(bytes)).unwrap();
        let mut back = Vec::new();
        let mut member = archive.by_name("s.npy").unwrap();
        assert_eq!((member.size(), member.crc32()), (segment.len, segment.crc));
        member.read_to_end(&mut back).unwrap();
        assert!(back == data);
        drop(member);
        // An archive cannot be closed over an open member.
        let mut zip = ZipWriter::new(Vec::new());
        zip.begin_streamed("s.npy", Method::Deflated).unwrap();
        assert!(zip.finish().is_err());

        // A wrong announced size is an error, not a corrupt archive.
        let mut zip = ZipWriter::new(Vec::new());
        let err = zip.member("c.npy", Method::Deflated, 0, 0, 10, |w| {
            w.write_all(&[1, 2, 3])?;
            Ok(3)
        });
        assert!(err.is_err());
    }
}
