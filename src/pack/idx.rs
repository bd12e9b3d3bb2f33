//! idx (MNIST) files: `idx/kaokore-{split}-images-idx4-ubyte.gz` (uint8 N x S x S x 3,
//! magic 0x00000804) and the gender/status `idx1` label files (magic 0x00000801).
//!
//! The image file is written as rows arrive: gzip header, the idx header in a stored
//! block, each row's deflated pixels, a final block, and the combined CRC-32
//! (see [`super::stream`]).

use std::fs::File;
use std::io::Write;

use flate2::{Compression, GzBuilder};

use super::stream::{HashingFile, ImagesFile};
use super::{FinishContext, FormatWriter, PackError, PackedRow, Stage, per_split, staging};
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

/// The idx header of `n` images of `size` x `size` x 3.
fn images_header(n: u64, size: u32) -> Vec<u8> {
    let mut header = vec![0, 0, 8, 4];
    for d in [n as u32, size, size, 3] {
        header.extend_from_slice(&d.to_be_bytes());
    }
    header
}

pub struct IdxWriter {
    size: u32,
    images: [ImagesFile<HashingFile>; 3],
    /// (gender, status) per split, one byte per row.
    labels: [(Vec<u8>, Vec<u8>); 3],
}

impl IdxWriter {
    /// Open the three images files; `expected` is the number of rows per split (the
    /// header is corrected at the end if fewer arrive).
    pub fn create(
        staging: &staging::Staging,
        size: u32,
        expected: [u64; 3],
    ) -> Result<IdxWriter, PackError> {
        let open = |split: Split| {
            let header = images_header(expected[split.index()], size);
            ImagesFile::create(staging, idx_images_name(split), &header, |mut out| {
                out.write_all(&GZIP_HEADER)?;
                Ok(out)
            })
        };
        Ok(IdxWriter {
            size,
            images: per_split(open)?,
            labels: Default::default(),
        })
    }
}

impl FormatWriter for IdxWriter {
    fn write_row(&mut self, row: &PackedRow<'_>) -> Result<(), PackError> {
        let (g, s) = &mut self.labels[row.split.index()];
        g.push(row.label.gender);
        s.push(row.label.status);
        self.images[row.split.index()].append(row)
    }

    fn finish(self: Box<Self>, ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError> {
        let mut produced = Vec::new();
        let IdxWriter {
            size,
            images,
            labels,
        } = *self;
        for (split, file) in Split::ALL.into_iter().zip(images) {
            let (gender, status) = &labels[split.index()];
            let n = gender.len() as u64;
            let header = images_header(n, size);
            produced.push(file.close(n, header, ctx, |mut out, totals| {
                out.write_all(&totals.crc.to_le_bytes())?;
                out.write_all(&(totals.uncompressed as u32).to_le_bytes())?;
                Ok(out)
            })?);

            for (label, values) in [("gender", gender), ("status", status)] {
                let name = idx_labels_name(split, label);
                let path = ctx.staging.path(&name)?;
                let mut bytes = vec![0, 0, 8, 1];
                bytes.extend_from_slice(&(n as u32).to_be_bytes());
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
    gz.finish().map(drop)
}
