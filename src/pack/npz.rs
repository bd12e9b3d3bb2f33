//! npz files: `npz/kaokore-{split}-imgs.npz` (key `arr_0`, uint8 N x S x S x 3) and
//! `npz/kaokore-{split}-labels.npz` (keys `gender`, `status` uint8 and `image_id` int32).
//!
//! The image member is written as rows arrive: the npy header in a stored block, then each
//! row's deflated pixels (see [`super::stream`]), in a hand-written zip container whose
//! CRC-32 and sizes follow the data (see [`super::zip`]).

use std::fs::File;
use std::io::BufWriter;

use ndarray::Array1;
use ndarray_npy::WriteNpyExt;

use super::stream::{HashingFile, ImagesFile};
use super::zip::{Method, ZipWriter};
use super::{FinishContext, FormatWriter, PackError, PackedRow, Stage, per_split, staging};
use crate::encode::deflate_segment;
use crate::metadata::Split;

/// `npz/kaokore-{split}-imgs.npz`
pub fn npz_images_name(split: Split) -> String {
    format!("npz/kaokore-{split}-imgs.npz")
}

/// `npz/kaokore-{split}-labels.npz`
pub fn npz_labels_name(split: Split) -> String {
    format!("npz/kaokore-{split}-labels.npz")
}

/// The npy (format 1.0) header of a C-order uint8 array, padded to 64 bytes as numpy does.
pub fn npy_header_u8(shape: &[u64]) -> Vec<u8> {
    npy_header_u8_padded(shape, 0)
}

/// [`npy_header_u8`], padded with spaces to at least `min_len` bytes (a multiple of 64),
/// so a header written for more rows can be overwritten in place.
fn npy_header_u8_padded(shape: &[u64], min_len: usize) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(u64::to_string).collect();
    let shape = match dims.len() {
        1 => format!("({},)", dims[0]),
        _ => format!("({})", dims.join(", ")),
    };
    let mut dict = format!("{{'descr': '|u1', 'fortran_order': False, 'shape': {shape}, }}");
    let unpadded = 10 + dict.len() + 1;
    let total = unpadded.next_multiple_of(64).max(min_len);
    dict.push_str(&" ".repeat(total - unpadded));
    dict.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(dict.len() as u16).to_le_bytes());
    out.extend_from_slice(dict.as_bytes());
    out
}

pub struct NpzWriter {
    size: u64,
    images: [ImagesFile<ZipWriter<HashingFile>>; 3],
    /// (gender, status, image_id) per split.
    labels: [(Vec<u8>, Vec<u8>, Vec<i32>); 3],
}

impl NpzWriter {
    /// Open the three images archives; `expected` is the number of rows per split (the
    /// npy header is corrected at the end if fewer arrive).
    pub fn create(
        staging: &staging::Staging,
        size: u32,
        expected: [u64; 3],
    ) -> Result<NpzWriter, PackError> {
        let size = u64::from(size);
        let open = |split: Split| {
            let header = npy_header_u8(&[expected[split.index()], size, size, 3]);
            ImagesFile::create(staging, npz_images_name(split), &header, |out| {
                let mut zip = ZipWriter::new(out);
                zip.begin_streamed("arr_0.npy", Method::Deflated)?;
                Ok(zip)
            })
        };
        Ok(NpzWriter {
            size,
            images: per_split(open)?,
            labels: Default::default(),
        })
    }
}

impl FormatWriter for NpzWriter {
    fn write_row(&mut self, row: &PackedRow<'_>) -> Result<(), PackError> {
        let (g, s, ids) = &mut self.labels[row.split.index()];
        g.push(row.label.gender);
        s.push(row.label.status);
        ids.push(row.record.id.0 as i32);
        self.images[row.split.index()].append(row)
    }

    fn finish(self: Box<Self>, ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError> {
        let NpzWriter {
            size,
            images,
            labels,
        } = *self;
        let mut produced = Vec::new();
        for (split, file) in Split::ALL.into_iter().zip(images) {
            let (gender, status, ids) = &labels[split.index()];
            let n = gender.len() as u64;
            let header = npy_header_u8_padded(&[n, size, size, 3], file.header_len());
            produced.push(file.close(n, header, ctx, |mut zip, totals| {
                zip.end_streamed(totals.crc, totals.uncompressed, totals.compressed)?;
                zip.finish()
            })?);

            let name = npz_labels_name(split);
            let path = ctx.staging.path(&name)?;
            let members = [
                ("gender.npy", npy_bytes(&Array1::from(gender.clone()))),
                ("status.npy", npy_bytes(&Array1::from(status.clone()))),
                ("image_id.npy", npy_bytes(&Array1::from(ids.clone()))),
            ];
            let write = || -> std::io::Result<()> {
                let mut zip = ZipWriter::new(BufWriter::new(File::create(&path)?));
                for (member, npy) in members {
                    let npy = npy?;
                    let segment = deflate_segment(&npy, 6).map_err(std::io::Error::other)?;
                    zip.deflated_member(member, &segment)?;
                }
                let out = zip.finish()?;
                out.into_inner().map_err(|e| e.into_error()).map(drop)
            };
            write().map_err(PackError::io(&path))?;
            produced.push(name);
        }
        Ok(produced)
    }

    fn stage(&self) -> Stage {
        Stage::Npz
    }
}

fn npy_bytes<A: ndarray_npy::WritableElement>(array: &Array1<A>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    array
        .write_npy(&mut out)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_header_is_aligned_and_parsable() {
        let h = npy_header_u8(&[5298, 256, 256, 3]);
        assert_eq!(h.len() % 64, 0);
        assert_eq!(*h.last().unwrap(), b'\n');
        let text = std::str::from_utf8(&h[10..]).unwrap();
        assert!(text.starts_with(
            "{'descr': '|u1', 'fortran_order': False, 'shape': (5298, 256, 256, 3), }"
        ));
        // numpy's own layout (with the trailing ", "); ndarray-npy reads it back.
        let mut npy = npy_header_u8(&[2, 2, 2, 3]);
        npy.extend(0u8..24);
        let back: ndarray::Array4<u8> = ndarray_npy::ReadNpyExt::read_npy(&npy[..]).unwrap();
        assert_eq!(back.shape(), [2, 2, 2, 3]);
        assert_eq!(back[[1, 1, 1, 2]], 23);
    }

    #[test]
    fn a_padded_header_keeps_its_length_and_reads_back() {
        let wide = npy_header_u8_padded(&[2, 2, 2, 3], 192);
        assert_eq!(wide.len(), 192);
        assert_eq!(*wide.last().unwrap(), b'\n');
        let mut npy = wide;
        npy.extend(0u8..24);
        let back: ndarray::Array4<u8> = ndarray_npy::ReadNpyExt::read_npy(&npy[..]).unwrap();
        assert_eq!(back.shape(), [2, 2, 2, 3]);
        assert_eq!(
            npy_header_u8_padded(&[2, 2, 2, 3], 0),
            npy_header_u8(&[2, 2, 2, 3])
        );
    }
}
