//! idx (MNIST) files: `idx/kaokore-{split}-images-idx4-ubyte.gz` (uint8 N x S x S x 3,
//! magic 0x00000804) and the gender/status `idx1` label files (magic 0x00000801).
//!
//! The image file's gzip stream is assembled from the spooled pixel segments: gzip header,
//! the deflated idx header, the segments, a final block, and the combined CRC-32.

use std::fs::File;
use std::io::{BufWriter, Write};

use flate2::{Compression, GzBuilder};

use super::{FinishContext, FormatWriter, PackError, PackedRow, Stage};
use crate::encode::PIXEL_DEFLATE_LEVEL;
use crate::metadata::Split;

/// `idx/kaokore-{split}-images-idx4-ubyte.gz`
pub fn idx_images_name(split: Split) -> String {
    format!("idx/kaokore-{split}-images-idx4-ubyte.gz")
}

/// `idx/kaokore-{split}-{label}-idx1-ubyte.gz`, label `gender` or `status`.
pub fn idx_labels_name(split: Split, label: &str) -> String {
    format!("idx/kaokore-{split}-{label}-idx1-ubyte.gz")
}

/// A gzip member header without name or time, so the bytes depend on the data only.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

#[derive(Default)]
pub struct IdxWriter {
    /// (gender, status) per split, one byte per row.
    labels: [(Vec<u8>, Vec<u8>); 3],
}

impl FormatWriter for IdxWriter {
    fn write_row(&mut self, row: &PackedRow<'_>) -> Result<(), PackError> {
        let (g, s) = &mut self.labels[row.split.index()];
        g.push(row.label.gender);
        s.push(row.label.status);
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError> {
        let size = ctx.opts.size;
        let mut produced = Vec::new();
        for split in Split::ALL {
            let (gender, status) = &self.labels[split.index()];
            let n = gender.len() as u32;

            let name = idx_images_name(split);
            let path = ctx.staging.path(&name)?;
            let io = PackError::io(&path);
            let spool = ctx.spools[split.index()]
                .as_mut()
                .ok_or(PackError::Internal("pixel spool missing for idx"))?;
            if spool.rows() != u64::from(n) {
                return Err(PackError::Internal("pixel rows and label rows differ"));
            }
            let mut header = vec![0, 0, 8, 4];
            for d in [n, size, size, 3] {
                header.extend_from_slice(&d.to_be_bytes());
            }
            let mut write = || -> std::io::Result<()> {
                let mut out = BufWriter::with_capacity(1 << 20, File::create(&path)?);
                let mut stream = spool.stream(&header, PIXEL_DEFLATE_LEVEL)?;
                out.write_all(&GZIP_HEADER)?;
                stream.write_to(&mut out)?;
                out.write_all(&stream.crc().to_le_bytes())?;
                out.write_all(&(stream.uncompressed() as u32).to_le_bytes())?;
                out.into_inner().map_err(|e| e.into_error())?.sync_all()
            };
            write().map_err(io)?;
            produced.push(name);

            for (label, values) in [("gender", gender), ("status", status)] {
                let name = idx_labels_name(split, label);
                let path = ctx.staging.path(&name)?;
                let mut bytes = vec![0, 0, 8, 1];
                bytes.extend_from_slice(&n.to_be_bytes());
                bytes.extend_from_slice(values);
                write_gzip(&path, &bytes).map_err(PackError::io(&path))?;
                produced.push(name);
            }
        }
        Ok(produced)
    }

    fn stage(&self) -> Stage {
        Stage::Idx
    }
}

/// A small gzip file with a fixed header (no name, zero mtime).
fn write_gzip(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let file = File::create(path)?;
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(0xff)
        .write(file, Compression::best());
    gz.write_all(bytes)?;
    gz.finish()?.sync_all()
}
