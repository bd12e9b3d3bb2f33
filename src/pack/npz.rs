//! npz files: `npz/kaokore-{split}-imgs.npz` (key `arr_0`, uint8 N x S x S x 3) and
//! `npz/kaokore-{split}-labels.npz` (keys `gender`, `status` uint8 and `image_id` int32).
//!
//! The image member is written as rows arrive: the npy header in a stored block, then each
//! row's deflated pixels (see [`super::stream`]), in a hand-written zip container whose
//! CRC-32 and sizes follow the data (see [`super::zip`]).

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use ndarray::Array1;
use ndarray_npy::WriteNpyExt;

use super::format::{CardContext, CardRow, Format, Payload, Snippet, WriterContext};
use super::read::{
    Channels, HEADER_SLACK, PixelSource, Problems, RowLabels, SplitAt, StreamedPixels, at_end,
    can_hold, check_holds, length, open_artifact, shape_mismatch,
};
use super::stream::{HashingFile, ImagesFile};
use super::zip::{Method, ZipWriter};
use super::{FinishContext, FormatWriter, PackError, PackedRow, per_split};
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

/// The npz files.
pub(crate) struct Npz;

impl Format for Npz {
    fn name(&self) -> &'static str {
        "npz"
    }

    fn about(&self) -> &'static str {
        "npz/*.npz: arr_0 uint8 (N, S, S, 3) RGB; gender, status, image_id"
    }

    fn needs(&self) -> &'static [Payload] {
        &[Payload::RgbPixels]
    }

    fn files(&self, _size: u32) -> Vec<String> {
        Split::ALL
            .into_iter()
            .flat_map(|split| [npz_images_name(split), npz_labels_name(split)])
            .collect()
    }

    fn card_rows(&self, size: u32) -> Vec<CardRow> {
        Split::ALL
            .into_iter()
            .flat_map(|split| {
                [
                    CardRow {
                        split: Some(split),
                        file: npz_images_name(split),
                        content: format!("`arr_0`: uint8 (N, {size}, {size}, 3)"),
                    },
                    CardRow {
                        split: Some(split),
                        file: npz_labels_name(split),
                        content: "`gender`, `status`: uint8 (N); `image_id`: int32 (N)".into(),
                    },
                ]
            })
            .collect()
    }

    fn encoding_format(&self, _path: &str) -> &'static str {
        "application/zip" // an npz is a zip archive of .npy members
    }

    fn card_snippet(&self, ctx: &CardContext<'_>) -> Option<Snippet> {
        let size = ctx.opts.size;
        Some(Snippet {
            rank: 1,
            group: "NumPy",
            preamble: "import numpy as np\n",
            code: format!(
                "images = np.load(\"{}\")[\"arr_0\"]  # (N, {size}, {size}, 3) uint8\n\
                 labels = np.load(\"{}\")\n\
                 gender, status, image_id = labels[\"gender\"], labels[\"status\"], labels[\"image_id\"]\n",
                npz_images_name(Split::Train),
                npz_labels_name(Split::Train)
            ),
        })
    }

    fn create<'a>(&self, ctx: &WriterContext<'a>) -> Result<Box<dyn FormatWriter + 'a>, PackError> {
        Ok(Box::new(NpzWriter::create(ctx)?))
    }

    fn read_labels(
        &self,
        at: &SplitAt<'_>,
        report: &mut Problems,
    ) -> Option<(String, Vec<RowLabels>)> {
        read_npz_labels(at, report).map(|rows| (npz_labels_name(at.split), rows))
    }

    fn open_pixels(&self, at: &SplitAt<'_>, report: &mut Problems) -> Option<Box<dyn PixelSource>> {
        match npz_pixels(at) {
            Ok(pixels) => Some(Box::new(pixels)),
            Err(e) => {
                report.problem(&npz_images_name(at.split), None, e);
                None
            }
        }
    }
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

pub(crate) struct NpzWriter {
    size: u64,
    images: [ImagesFile<ZipWriter<HashingFile>>; 3],
    /// (gender, status, image_id) per split.
    labels: [(Vec<u8>, Vec<u8>, Vec<i32>); 3],
}

impl NpzWriter {
    /// Open the three images archives; `expected` is the number of rows per split (the
    /// npy header is corrected at the end if fewer arrive).
    pub fn create(ctx: &WriterContext<'_>) -> Result<NpzWriter, PackError> {
        let size = u64::from(ctx.opts.size);
        let open = |split: Split| {
            let header = npy_header_u8(&[ctx.expected[split.index()], size, size, 3]);
            ImagesFile::create(ctx.sink, npz_images_name(split), &header, |out| {
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
        self.images[row.split.index()].append(row.payloads.rgb()?)
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
            let file = ctx.sink.create(&name)?;
            let members = [
                ("gender.npy", npy_bytes(&Array1::from(gender.clone()))),
                ("status.npy", npy_bytes(&Array1::from(status.clone()))),
                ("image_id.npy", npy_bytes(&Array1::from(ids.clone()))),
            ];
            let write = || -> std::io::Result<()> {
                let mut zip = ZipWriter::new(BufWriter::new(file));
                for (member, npy) in members {
                    let npy = npy?;
                    let segment = deflate_segment(&npy, 6).map_err(std::io::Error::other)?;
                    zip.deflated_member(member, &segment)?;
                }
                let out = zip.finish()?;
                out.into_inner().map_err(|e| e.into_error())?.flush()
            };
            write().map_err(PackError::io(&name))?;
            produced.push(name);
        }
        Ok(produced)
    }
}

fn npy_bytes<A: ndarray_npy::WritableElement>(array: &Array1<A>) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    array
        .write_npy(&mut out)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(out)
}

// Reading, for verify: the npz readers check every count a zip directory or an npy
// header states against the record and the file's size before reading.

/// The entries an npz's zip directory claims, read from its end records before the zip
/// crate sees it: that crate reserves memory for as many entries as a directory claims.
/// kaokore writes no archive comment, so the end record is the file's last 22 bytes.
fn zip_entries(file: &mut File, len: u64) -> Result<u64, String> {
    let read_at = |file: &mut File, at: u64, buf: &mut [u8]| {
        file.seek(SeekFrom::Start(at))
            .and_then(|_| file.read_exact(buf))
            .map_err(|e| format!("cannot read the zip directory: {e}"))
    };
    let not_zip =
        || "not a zip archive as kaokore writes it (no end record at its end)".to_string();
    if len < 22 {
        return Err(not_zip());
    }
    let mut end = [0u8; 22];
    read_at(file, len - 22, &mut end)?;
    if end[..4] != [0x50, 0x4b, 0x05, 0x06] {
        return Err(not_zip());
    }
    let entries = u64::from(u16::from_le_bytes([end[10], end[11]]));
    if entries != 0xffff {
        return Ok(entries);
    }
    // ZIP64: the locator precedes the end record and points at the ZIP64 end record.
    let mut locator = [0u8; 20];
    if len < 42 {
        return Err(not_zip());
    }
    read_at(file, len - 42, &mut locator)?;
    if locator[..4] != [0x50, 0x4b, 0x06, 0x07] {
        return Err(not_zip());
    }
    let at = u64::from_le_bytes(locator[8..16].try_into().expect("8 bytes"));
    let mut record = [0u8; 40];
    if at.saturating_add(40) > len {
        return Err(not_zip());
    }
    read_at(file, at, &mut record)?;
    if record[..4] != [0x50, 0x4b, 0x06, 0x06] {
        return Err(not_zip());
    }
    Ok(u64::from_le_bytes(
        record[32..40].try_into().expect("8 bytes"),
    ))
}

/// Open an npz with exactly `members` entries, checked before the zip crate reads its
/// directory.
fn open_npz(
    dir: &Path,
    name: &str,
    members: u64,
) -> Result<(zip::ZipArchive<BufReader<File>>, u64), String> {
    let mut file = open_artifact(dir, name)?;
    let len = length(&file)?;
    let entries = zip_entries(&mut file, len)?;
    if entries != members {
        return Err(format!("{entries} members, expected {members}"));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| format!("cannot read: {e}"))?;
    let archive = zip::ZipArchive::new(BufReader::new(file)).map_err(|e| e.to_string())?;
    Ok((archive, len))
}

/// One 1-D array of an npz labels file: `rows` items of `item` bytes, descr one of `descrs`.
fn read_npz_array(
    archive: &mut zip::ZipArchive<BufReader<File>>,
    file_len: u64,
    key: &str,
    descrs: &[&str],
    item: u64,
    rows: u64,
) -> Result<Vec<u8>, String> {
    let mut member = archive
        .by_name(&format!("{key}.npy"))
        .map_err(|e| format!("{key}: {e}"))?;
    let data = rows * item;
    if member.compressed_size() > file_len
        || member.size() > data + HEADER_SLACK
        || !can_hold(member.compressed_size(), member.size())
    {
        return Err(format!(
            "{key}: member sizes ({} bytes, {} compressed) do not fit {rows} rows in a {file_len}-byte file",
            member.size(),
            member.compressed_size()
        ));
    }
    let header = read_npy_header(&mut member, key)?;
    if !descrs.contains(&header.descr.as_str()) {
        return Err(format!(
            "{key} has dtype '{}', expected '{}'",
            header.descr, descrs[0]
        ));
    }
    if header.shape != [rows] {
        return Err(format!(
            "{key} has shape {:?}, the build's record says [{rows}]",
            header.shape
        ));
    }
    let mut bytes = vec![0u8; data as usize];
    member
        .read_exact(&mut bytes)
        .map_err(|e| format!("{key}: cannot read: {e}"))?;
    at_end(&mut member).map_err(|e| format!("{key}: {e}"))?;
    Ok(bytes)
}

fn read_npz_labels(at: &SplitAt<'_>, report: &mut Problems) -> Option<Vec<RowLabels>> {
    let (name, rows) = (npz_labels_name(at.split), at.rows);
    let result = (|| -> Result<Vec<RowLabels>, String> {
        let (mut archive, len) = open_npz(at.dir, &name, 3)?;
        if !can_hold(len, rows * 6) {
            return Err(format!(
                "{len} bytes cannot hold the {rows} rows the build's record says"
            ));
        }
        let g = read_npz_array(&mut archive, len, "gender", &["|u1", "<u1"], 1, rows)?;
        let s = read_npz_array(&mut archive, len, "status", &["|u1", "<u1"], 1, rows)?;
        let ids = read_npz_array(&mut archive, len, "image_id", &["<i4"], 4, rows)?;
        Ok(g.iter()
            .zip(&s)
            .zip(ids.chunks_exact(4))
            .map(|((&gender, &status), id)| RowLabels {
                image_id: u32::try_from(i32::from_le_bytes([id[0], id[1], id[2], id[3]])).ok(),
                gender,
                status,
            })
            .collect())
    })();
    result.map_err(|e| report.problem(&name, None, e)).ok()
}

/// The `arr_0` member of a split's images npz, its header checked against the record.
fn npz_pixels(at: &SplitAt<'_>) -> Result<StreamedPixels, String> {
    let name = npz_images_name(at.split);
    let s = u64::from(at.size);
    let shape = [at.rows, s, s, 3];
    let (mut archive, len) = open_npz(at.dir, &name, 1)?;
    check_holds(len, &shape)?;
    // The zip crate's member reader borrows the archive; read where it says the data is
    // instead, so the member streams through an owned decoder.
    let (start, compressed, method, crc, uncompressed) = {
        let member = archive.by_name("arr_0.npy").map_err(|e| e.to_string())?;
        (
            member.data_start(),
            member.compressed_size(),
            member.compression(),
            member.crc32(),
            member.size(),
        )
    };
    let pixels = shape.iter().product::<u64>();
    if start.saturating_add(compressed) > len
        || !can_hold(compressed, uncompressed)
        || uncompressed < pixels
        || uncompressed > pixels + HEADER_SLACK
    {
        return Err(format!(
            "arr_0.npy: member sizes ({uncompressed} bytes, {compressed} compressed) do not fit {pixels} bytes of pixels in a {len}-byte file"
        ));
    }
    let mut file = archive.into_inner().into_inner();
    file.seek(SeekFrom::Start(start))
        .map_err(|e| e.to_string())?;
    let data = BufReader::with_capacity(1 << 20, file).take(compressed);
    let inner: Box<dyn Read> = match method {
        zip::CompressionMethod::Deflated => Box::new(flate2::read::DeflateDecoder::new(data)),
        zip::CompressionMethod::Stored => Box::new(data),
        other => return Err(format!("arr_0.npy compressed with unsupported {other:?}")),
    };
    let mut reader = flate2::CrcReader::new(inner);
    let header = read_npy_header(&mut reader, "arr_0")?;
    if header.descr != "|u1" && header.descr != "<u1" {
        return Err(format!("arr_0 is not uint8: dtype '{}'", header.descr));
    }
    let stated: [u64; 4] = header
        .shape
        .as_slice()
        .try_into()
        .map_err(|_| format!("arr_0 has {} dimensions, expected 4", header.shape.len()))?;
    if stated != shape {
        return Err(shape_mismatch(&stated, &shape));
    }
    Ok(StreamedPixels {
        name,
        channels: Channels::Rgb,
        reader: Box::new(reader),
        expected: Some((crc, uncompressed)),
    })
}

/// What an npy header states.
struct NpyHeader {
    descr: String,
    shape: Vec<u64>,
}

/// Parse the npy header of array `key` from `reader` (C order required). Only the header
/// is read: at most 64 KiB, whatever it claims.
fn read_npy_header(reader: &mut dyn Read, key: &str) -> Result<NpyHeader, String> {
    let mut magic = [0u8; 10];
    reader
        .read_exact(&mut magic)
        .map_err(|e| format!("{key}.npy: {e}"))?;
    if &magic[..6] != b"\x93NUMPY" {
        return Err(format!("{key}.npy is not an npy array"));
    }
    let len = match magic[6] {
        1 => u16::from_le_bytes([magic[8], magic[9]]) as usize,
        2 | 3 => {
            let mut more = [0u8; 2];
            reader.read_exact(&mut more).map_err(|e| e.to_string())?;
            u32::from_le_bytes([magic[8], magic[9], more[0], more[1]]) as usize
        }
        v => return Err(format!("{key}.npy: npy format version {v} unknown")),
    };
    if len > 1 << 16 {
        return Err(format!("{key}.npy: header too long"));
    }
    let mut dict = vec![0u8; len];
    reader.read_exact(&mut dict).map_err(|e| e.to_string())?;
    let dict = String::from_utf8_lossy(&dict);
    let descr = dict
        .split("'descr': '")
        .nth(1)
        .and_then(|s| s.split('\'').next())
        .ok_or_else(|| format!("{key} has no dtype"))?
        .to_string();
    if !dict.contains("'fortran_order': False") {
        return Err(format!("{key} is not in C order"));
    }
    let shape = dict
        .split("'shape': (")
        .nth(1)
        .and_then(|s| s.split(')').next())
        .ok_or_else(|| format!("{key} has no shape"))?;
    let shape = shape
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<u64>())
        .collect::<Result<_, _>>()
        .map_err(|_| format!("{key} shape '({shape})' unreadable"))?;
    Ok(NpyHeader { descr, shape })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::format::testing::{self, SIZE};
    use ndarray::{Array1, Array4};
    use ndarray_npy::NpzReader;
    use std::io::Cursor;

    /// The member names of a zip archive, in order.
    fn members(bytes: &[u8]) -> Vec<String> {
        let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).unwrap();
        (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().name().to_string())
            .collect()
    }

    /// Write the test rows but `missing` through the npz writer, then read each split's
    /// archives back as numpy would (through the zip crate, which checks each member's
    /// CRC-32, and ndarray-npy), and with verify's readers.
    fn check(missing: &[u32]) {
        let dataset = testing::dataset();
        let w = testing::write(&Npz, &dataset, &testing::options("npz"), missing);
        w.check_files();
        assert_eq!(w.produced, Npz.files(SIZE));
        let dir = w.on_disk();
        let listed = w.listed();
        let s = SIZE as usize;
        for split in Split::ALL {
            let rows = testing::rows(&dataset, split, missing);
            let n = rows.len();
            let pixels: Vec<Vec<u8>> = rows.iter().map(|r| testing::pixels(r.id.0)).collect();

            let name = npz_images_name(split);
            let bytes = w.sink.bytes(&name);
            assert_eq!(members(&bytes), ["arr_0.npy"]);
            let mut npz = NpzReader::new(Cursor::new(&bytes)).unwrap();
            let images: Array4<u8> = npz.by_name("arr_0").unwrap();
            assert_eq!(images.shape(), [n, s, s, 3], "{name}");
            assert!(images.as_slice().unwrap() == pixels.concat(), "{name}");
            let all = testing::rows(&dataset, split, &[]).len();
            assert_eq!(w.hashed(&name), n == all, "{name}");

            let bytes = w.sink.bytes(&npz_labels_name(split));
            let keys = ["gender.npy", "status.npy", "image_id.npy"];
            assert_eq!(members(&bytes), keys);
            let mut npz = NpzReader::new(Cursor::new(&bytes)).unwrap();
            let gender: Array1<u8> = npz.by_name("gender").unwrap();
            let status: Array1<u8> = npz.by_name("status").unwrap();
            let ids: Array1<i32> = npz.by_name("image_id").unwrap();
            let label = |r: &&crate::metadata::ImageRecord| r.label.unwrap();
            assert_eq!(
                gender.to_vec(),
                rows.iter().map(|r| label(r).gender).collect::<Vec<_>>()
            );
            assert_eq!(
                status.to_vec(),
                rows.iter().map(|r| label(r).status).collect::<Vec<_>>()
            );
            assert_eq!(
                ids.to_vec(),
                rows.iter().map(|r| r.id.0 as i32).collect::<Vec<_>>()
            );

            let at = testing::split_at(dir.path(), &listed, split, n as u64, None);
            let mut problems = Problems::default();
            let (_, read) = Npz.read_labels(&at, &mut problems).unwrap();
            let expected: Vec<RowLabels> = rows
                .iter()
                .map(|r| RowLabels {
                    image_id: Some(r.id.0),
                    gender: label(r).gender,
                    status: label(r).status,
                })
                .collect();
            assert_eq!(read, expected);
            let source = Npz.open_pixels(&at, &mut problems).unwrap();
            assert!(testing::read_all(source, n) == pixels);
            assert!(problems.is_empty(), "{:?}", &problems[..]);
        }
    }

    #[test]
    fn rows_stream_into_the_npz_archives_of_their_split() {
        check(&[]);
    }

    #[test]
    fn missing_rows_correct_the_npy_header_written_up_front() {
        // Two of train's three rows and the only row of test are not packed.
        check(&[0, 4, 2]);
    }

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
