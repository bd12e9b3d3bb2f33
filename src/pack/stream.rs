//! The image files of idx, npz and mnist, written as rows arrive.
//!
//! Each image's pixels arrive as an independent deflate segment (see [`crate::encode`]).
//! The same segment is appended to the split's idx `.gz` file and to its npz member
//! (compress once, write twice; mnist's gray rows are their own segment), so no pixel is held in memory or copied again at the end,
//! and each file's SHA-256 is computed while it is written.
//!
//! Both formats put the row count in a header in front of the pixels. The header is
//! written with the expected count (the split's packable rows) in a *stored* deflate
//! block, so it has a fixed length and position: when images turn out missing, it is
//! overwritten in place at the end (the one seek), and the file, whose running hash no
//! longer holds, is hashed at commit instead.

use std::io::{self, BufWriter, Seek, SeekFrom, Write};

use sha2::{Digest, Sha256};

use super::format::{FileSink, WriteSeek};
use super::zip::ZipWriter;
use super::{Artifact, FinishContext, PackError};
use crate::encode::{DeflateSegment, FINAL_BLOCK};
use crate::out::checksums;

/// What holds a pixel stream: a plain file (idx `.gz`) or a zip archive (npz).
pub trait Container {
    /// The file the stream's bytes go to.
    fn file(&mut self) -> &mut HashingFile;
}

impl Container for HashingFile {
    fn file(&mut self) -> &mut HashingFile {
        self
    }
}

impl Container for ZipWriter<HashingFile> {
    fn file(&mut self) -> &mut HashingFile {
        self.sink()
    }
}

/// The images file of one split while its rows arrive.
pub struct ImagesFile<C> {
    /// Relative to the output directory.
    name: String,
    container: C,
    stream: PixelStream,
}

impl<C: Container> ImagesFile<C> {
    /// Create `name` in `sink`: `start` writes what comes before the pixel stream, which
    /// then begins with `header`.
    pub fn create(
        sink: &dyn FileSink,
        name: String,
        header: &[u8],
        start: impl FnOnce(HashingFile) -> io::Result<C>,
    ) -> Result<ImagesFile<C>, PackError> {
        let file = sink.create(&name)?;
        let open = || -> io::Result<(C, PixelStream)> {
            let mut container = start(HashingFile::new(file))?;
            let stream = PixelStream::begin(container.file(), header)?;
            Ok((container, stream))
        };
        let (container, stream) = open().map_err(PackError::io(&name))?;
        Ok(ImagesFile {
            name,
            container,
            stream,
        })
    }

    /// Append one row's deflated pixels.
    pub fn append(&mut self, segment: &DeflateSegment) -> Result<(), PackError> {
        self.stream
            .append(self.container.file(), segment)
            .map_err(PackError::io(&self.name))
    }

    /// Length of the header the stream began with (a corrected one must match it).
    pub fn header_len(&self) -> usize {
        self.stream.header.len()
    }

    /// Close the stream after `rows` rows with the true `header`; `finish` writes what
    /// follows it. The file's hash is recorded in `ctx` unless the header was corrected
    /// (the commit hashes it then); returns its name.
    pub fn close(
        self,
        rows: u64,
        header: Vec<u8>,
        ctx: &mut FinishContext<'_>,
        finish: impl FnOnce(C, StreamTotals) -> io::Result<HashingFile>,
    ) -> Result<String, PackError> {
        if self.stream.rows() != rows {
            return Err(PackError::Internal("pixel rows and label rows differ"));
        }
        let ImagesFile {
            name,
            mut container,
            stream,
        } = self;
        let close = || -> io::Result<Option<(u64, String)>> {
            let (totals, patch) = stream.end(container.file(), header)?;
            let file = finish(container, totals)?;
            match patch {
                None => file.finish().map(Some),
                Some(patch) => file.finish_patched(&patch).map(|()| None),
            }
        };
        if let Some((bytes, sha256)) = close().map_err(PackError::io(&name))? {
            ctx.hashed.push(Artifact {
                path: name.clone(),
                bytes,
                sha256,
            });
        }
        Ok(name)
    }
}

/// Bytes to overwrite in a written file: the corrected header.
pub struct Patch {
    pub at: u64,
    pub bytes: Vec<u8>,
}

/// A new file whose SHA-256 and length follow every byte written, buffered (1 MiB) in
/// front of its sink: by default a file from a [`FileSink`].
pub struct HashingFile<W: Write = Box<dyn WriteSeek>> {
    out: BufWriter<W>,
    sha: Sha256,
    written: u64,
}

impl<W: Write> HashingFile<W> {
    pub fn new(out: W) -> HashingFile<W> {
        HashingFile {
            out: BufWriter::with_capacity(1 << 20, out),
            sha: Sha256::new(),
            written: 0,
        }
    }

    /// Bytes written so far: the offset of the next byte.
    pub fn position(&self) -> u64 {
        self.written
    }

    /// Flush; returns the file's size and SHA-256.
    pub fn finish(self) -> io::Result<(u64, String)> {
        let mut out = self.out.into_inner().map_err(|e| e.into_error())?;
        out.flush()?;
        Ok((self.written, checksums::hex(&self.sha.finalize())))
    }
}

impl<W: Write + Seek> HashingFile<W> {
    /// Flush, then overwrite bytes already written (at an offset) with `patch`. The hash
    /// kept while writing no longer holds: the file must be hashed again from its bytes.
    pub fn finish_patched(self, patch: &Patch) -> io::Result<()> {
        let mut out = self.out.into_inner().map_err(|e| e.into_error())?;
        out.seek(SeekFrom::Start(patch.at))?;
        out.write_all(&patch.bytes)?;
        out.flush()
    }
}

impl<W: Write> Write for HashingFile<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out.write(buf)?;
        self.sha.update(&buf[..n]);
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// The raw deflate stream of one file: a header in a stored block, then pixel segments.
pub struct PixelStream {
    /// File offset of the header bytes (inside the stored block).
    header_at: u64,
    header: Vec<u8>,
    pixels: crc32fast::Hasher,
    /// Deflate bytes written, stored block included.
    compressed: u64,
    rows: u64,
}

/// What a closed stream holds, for the container's trailer.
#[derive(Debug, Clone, Copy)]
pub struct StreamTotals {
    /// CRC-32 of the uncompressed data (header + pixels).
    pub crc: u32,
    pub uncompressed: u64,
    /// Length of the raw deflate stream, final block included.
    pub compressed: u64,
}

impl PixelStream {
    /// Start the stream at the current position of `out` with `header` (below 64 KiB).
    pub fn begin<W: Write>(out: &mut HashingFile<W>, header: &[u8]) -> io::Result<PixelStream> {
        let len = u16::try_from(header.len()).map_err(io::Error::other)?;
        // BFINAL 0, BTYPE 00 (stored), padded to the byte, then LEN and its complement.
        let mut block = vec![0u8];
        block.extend_from_slice(&len.to_le_bytes());
        block.extend_from_slice(&(!len).to_le_bytes());
        out.write_all(&block)?;
        let header_at = out.position();
        out.write_all(header)?;
        Ok(PixelStream {
            header_at,
            header: header.to_vec(),
            pixels: crc32fast::Hasher::new(),
            compressed: (block.len() + header.len()) as u64,
            rows: 0,
        })
    }

    pub fn append<W: Write>(
        &mut self,
        out: &mut HashingFile<W>,
        segment: &DeflateSegment,
    ) -> io::Result<()> {
        out.write_all(&segment.data)?;
        self.pixels
            .combine(&crc32fast::Hasher::new_with_initial_len(
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

    /// End the stream with the final block. `header` is the true header, of the same
    /// length as the one written at the start; if it differs, the returned patch must be
    /// applied with [`HashingFile::finish_patched`].
    pub fn end<W: Write>(
        self,
        out: &mut HashingFile<W>,
        header: Vec<u8>,
    ) -> io::Result<(StreamTotals, Option<Patch>)> {
        if header.len() != self.header.len() {
            return Err(io::Error::other(format!(
                "header changed length ({} -> {} bytes)",
                self.header.len(),
                header.len()
            )));
        }
        out.write_all(&FINAL_BLOCK)?;
        let mut crc = crc32fast::Hasher::new();
        crc.update(&header);
        crc.combine(&self.pixels);
        let totals = StreamTotals {
            crc: crc.finalize(),
            uncompressed: header.len() as u64 + self.pixels.total_len(),
            compressed: self.compressed + FINAL_BLOCK.len() as u64,
        };
        let patch = (header != self.header).then_some(Patch {
            at: self.header_at,
            bytes: header,
        });
        Ok((totals, patch))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::deflate_segment;
    use std::io::{Cursor, Read};

    #[test]
    fn a_patched_header_reads_back() {
        let rows: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 1000]).collect();
        let mut bytes = Vec::new();
        let mut out = HashingFile::new(Cursor::new(&mut bytes));
        let mut stream = PixelStream::begin(&mut out, b"count=5").unwrap();
        for r in &rows {
            stream
                .append(&mut out, &deflate_segment(r, 1).unwrap())
                .unwrap();
        }
        assert_eq!(stream.rows(), 3);
        let (totals, patch) = stream.end(&mut out, b"count=3".to_vec()).unwrap();
        let patch = patch.expect("the header changed");
        let written = out.position();
        out.finish_patched(&patch).unwrap();
        assert_eq!(written, bytes.len() as u64);
        assert_eq!(totals.compressed, written);
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&bytes[..])
            .read_to_end(&mut back)
            .unwrap();
        let mut expected = b"count=3".to_vec();
        rows.iter().for_each(|r| expected.extend_from_slice(r));
        assert!(back == expected);
        assert_eq!(totals.uncompressed, expected.len() as u64);
        assert_eq!(totals.crc, crc32fast::hash(&expected));
    }

    #[test]
    fn an_unpatched_stream_is_hashed_while_written() {
        let mut bytes = Vec::new();
        let mut out = HashingFile::new(Cursor::new(&mut bytes));
        out.write_all(b"prefix").unwrap();
        let stream = PixelStream::begin(&mut out, b"h").unwrap();
        let (_, patch) = stream.end(&mut out, b"h".to_vec()).unwrap();
        assert!(patch.is_none());
        let (len, sha) = out.finish().unwrap();
        assert_eq!((len, sha), (6 + 6 + 2, checksums::sha256_hex(&bytes)));
    }

    #[test]
    fn a_header_of_another_length_is_refused() {
        let mut out = HashingFile::new(Cursor::new(Vec::new()));
        let stream = PixelStream::begin(&mut out, b"abc").unwrap();
        assert!(stream.end(&mut out, b"abcd".to_vec()).is_err());
    }
}
