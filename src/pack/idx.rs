//! idx (MNIST) files: `idx/kaokore-{split}-images-idx4-ubyte.gz` (uint8 N x S x S x 3,
//! magic 0x00000804) and the gender/status `idx1` label files (magic 0x00000801).
//!
//! The image file is written as rows arrive: gzip header, the idx header in a stored
//! block, each row's deflated pixels, a final block, and the combined CRC-32
//! (see [`super::stream`]). [`IdxLayout`] is shared with the grayscale `mnist` format,
//! which differs only in names and in storing one channel.

use std::io::{BufReader, Read, Write};

use flate2::{Compression, GzBuilder};

use super::format::{CardContext, CardRow, Format, Payload, Snippet, WriterContext};
use super::read::{
    Channels, PixelSource, Problems, RowLabels, SplitAt, StreamedPixels, at_end, can_hold,
    check_holds, length, open_artifact, shape_mismatch,
};
use super::stream::{HashingFile, ImagesFile};
use super::{FinishContext, FormatWriter, PackError, PackedRow, per_split};
use crate::metadata::Split;

/// `idx/kaokore-{split}-images-idx4-ubyte.gz`
pub fn idx_images_name(split: Split) -> String {
    format!("idx/kaokore-{split}-images-idx4-ubyte.gz")
}

/// `idx/kaokore-{split}-{label}-idx1-ubyte.gz`, label `gender` or `status`.
pub fn idx_labels_name(split: Split, label: &str) -> String {
    format!("idx/kaokore-{split}-{label}-idx1-ubyte.gz")
}

/// The label files of every split, as idx1 files name them.
const LABELS: [&str; 2] = ["gender", "status"];

/// The RGB idx files.
pub(crate) struct Idx;

const IDX: IdxLayout = IdxLayout {
    images: idx_images_name,
    labels: idx_labels_name,
    channels: Channels::Rgb,
};

impl Format for Idx {
    fn name(&self) -> &'static str {
        "idx"
    }

    fn about(&self) -> &'static str {
        "idx/*-idx4-ubyte.gz: uint8 (N, S, S, 3) RGB and idx1 labels, gzipped"
    }

    fn needs(&self) -> &'static [Payload] {
        &[Payload::RgbPixels]
    }

    fn files(&self, _size: u32) -> Vec<String> {
        IDX.files()
    }

    fn card_rows(&self, size: u32) -> Vec<CardRow> {
        IDX.card_rows(size)
    }

    fn encoding_format(&self, _path: &str) -> &'static str {
        "application/gzip"
    }

    fn card_snippet(&self, _ctx: &CardContext<'_>) -> Option<Snippet> {
        Some(Snippet {
            rank: 2,
            group: "NumPy",
            preamble: "import numpy as np\n",
            code: format!(
                "import gzip\n\n\
                 def read_idx(path):\n    \
                 with gzip.open(path) as f:\n        \
                 raw = f.read()\n    \
                 ndim = raw[3]\n    \
                 shape = np.frombuffer(raw, \">u4\", count=ndim, offset=4)\n    \
                 return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)\n\n\
                 images = read_idx(\"{}\")\n\
                 gender = read_idx(\"{}\")",
                idx_images_name(Split::Train),
                idx_labels_name(Split::Train, "gender")
            ),
        })
    }

    fn create<'a>(&self, ctx: &WriterContext<'a>) -> Result<Box<dyn FormatWriter + 'a>, PackError> {
        Ok(Box::new(IdxWriter::create(&IDX, ctx)?))
    }

    fn read_labels(
        &self,
        at: &SplitAt<'_>,
        report: &mut Problems,
    ) -> Option<(String, Vec<RowLabels>)> {
        IDX.read_labels(at, report)
    }

    fn open_pixels(&self, at: &SplitAt<'_>, report: &mut Problems) -> Option<Box<dyn PixelSource>> {
        IDX.open_pixels(at, report)
    }
}

/// One idx dataset: where its files go and what its image rows hold (RGB: uint8
/// N x S x S x 3, magic 0x00000804; gray: uint8 N x S x S, magic 0x00000803).
pub(crate) struct IdxLayout {
    pub images: fn(Split) -> String,
    pub labels: fn(Split, &str) -> String,
    pub channels: Channels,
}

impl IdxLayout {
    /// The dimensions of `n` images of `size` x `size`.
    fn dims(&self, n: u64, size: u32) -> Vec<u64> {
        let s = u64::from(size);
        match self.channels {
            Channels::Rgb => vec![n, s, s, 3],
            Channels::Gray => vec![n, s, s],
        }
    }

    /// The idx header of `n` images of `size` x `size`: magic (uint8, dimension count),
    /// then each dimension as a big-endian u32.
    fn header(&self, n: u64, size: u32) -> Vec<u8> {
        let dims = self.dims(n, size);
        let mut header = vec![0, 0, 8, dims.len() as u8];
        for d in dims {
            header.extend_from_slice(&(d as u32).to_be_bytes());
        }
        header
    }

    /// The images and label files of every split.
    pub fn files(&self) -> Vec<String> {
        Split::ALL
            .into_iter()
            .flat_map(|split| {
                std::iter::once((self.images)(split))
                    .chain(LABELS.map(|label| (self.labels)(split, label)))
            })
            .collect()
    }

    pub fn card_rows(&self, size: u32) -> Vec<CardRow> {
        let (shape, magic) = match self.channels {
            Channels::Rgb => (format!("(N, {size}, {size}, 3)"), "0x00000804"),
            Channels::Gray => (format!("(N, {size}, {size}) gray"), "0x00000803"),
        };
        let mut rows = Vec::new();
        for split in Split::ALL {
            rows.push(CardRow {
                split: Some(split),
                file: (self.images)(split),
                content: format!("uint8 {shape}, magic {magic}"),
            });
            for label in LABELS {
                rows.push(CardRow {
                    split: Some(split),
                    file: (self.labels)(split, label),
                    content: "uint8 (N), magic 0x00000801".into(),
                });
            }
        }
        rows
    }

    /// The labels of a split: its two idx1 files, which carry no image ids.
    pub fn read_labels(
        &self,
        at: &SplitAt<'_>,
        report: &mut Problems,
    ) -> Option<(String, Vec<RowLabels>)> {
        let gender_name = (self.labels)(at.split, "gender");
        let status_name = (self.labels)(at.split, "status");
        let g = read_idx1(at, &gender_name, report);
        let s = read_idx1(at, &status_name, report);
        let (g, s) = (g?, s?);
        if g.len() != s.len() {
            report.problem(
                &status_name,
                None,
                format!("{} rows, the gender file has {}", s.len(), g.len()),
            );
        }
        let rows = g
            .iter()
            .zip(&s)
            .map(|(&gender, &status)| RowLabels {
                image_id: None,
                gender,
                status,
            })
            .collect();
        Some((gender_name, rows))
    }

    /// The pixel rows of a split's images file, its header checked against the record.
    pub fn open_pixels(
        &self,
        at: &SplitAt<'_>,
        report: &mut Problems,
    ) -> Option<Box<dyn PixelSource>> {
        let name = (self.images)(at.split);
        let result = (|| -> Result<StreamedPixels, String> {
            let file = open_artifact(at.dir, &name)?;
            let len = length(&file)?;
            let shape = self.dims(at.rows, at.size);
            check_holds(len, &shape)?;
            // GzDecoder checks the gzip CRC-32 and length itself at the end of the stream.
            let mut reader = flate2::CrcReader::new(flate2::read::GzDecoder::new(
                BufReader::with_capacity(1 << 20, file),
            ));
            let mut header = vec![0u8; 4 + 4 * shape.len()];
            reader
                .read_exact(&mut header)
                .map_err(|e| format!("cannot read the header: {e}"))?;
            if header[..4] != [0, 0, 8, shape.len() as u8] {
                return Err(format!(
                    "not an idx{} uint8 file (magic 0x0000080{})",
                    shape.len(),
                    shape.len()
                ));
            }
            let stated: Vec<u64> = header[4..]
                .chunks_exact(4)
                .map(|d| u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])))
                .collect();
            if stated != shape {
                return Err(shape_mismatch(&stated, &shape));
            }
            Ok(StreamedPixels {
                name: name.clone(),
                channels: self.channels,
                reader: Box::new(reader),
                expected: None,
            })
        })();
        match result {
            Ok(pixels) => Some(Box::new(pixels)),
            Err(e) => {
                report.problem(&name, None, e);
                None
            }
        }
    }
}

/// An idx1 labels file: `rows` bytes after its header, the count checked against the
/// record and the file's size before they are read.
fn read_idx1(at: &SplitAt<'_>, name: &str, report: &mut Problems) -> Option<Vec<u8>> {
    let rows = at.rows;
    let result = (|| -> Result<Vec<u8>, String> {
        let file = open_artifact(at.dir, name)?;
        let len = length(&file)?;
        if !can_hold(len, rows) {
            return Err(format!(
                "{len} bytes cannot hold the {rows} rows the build's record says"
            ));
        }
        let mut reader = flate2::read::GzDecoder::new(BufReader::new(file));
        let mut header = [0u8; 8];
        reader
            .read_exact(&mut header)
            .map_err(|e| format!("cannot read the header: {e}"))?;
        if header[..4] != [0, 0, 8, 1] {
            return Err("not an idx1 uint8 file (magic 0x00000801)".into());
        }
        let n = u64::from(u32::from_be_bytes([
            header[4], header[5], header[6], header[7],
        ]));
        if n != rows {
            return Err(format!(
                "header says {n} rows, the build's record says {rows}"
            ));
        }
        let mut labels = vec![0u8; rows as usize];
        reader
            .read_exact(&mut labels)
            .map_err(|e| format!("cannot read: {e}"))?;
        at_end(&mut reader)?;
        Ok(labels)
    })();
    result.map_err(|e| report.problem(name, None, e)).ok()
}

/// A gzip member header without name or time, so the bytes depend on the data only.
const GZIP_HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// The writer of one idx dataset.
pub(crate) struct IdxWriter {
    layout: &'static IdxLayout,
    size: u32,
    images: [ImagesFile<HashingFile>; 3],
    /// (gender, status) per split, one byte per row.
    labels: [(Vec<u8>, Vec<u8>); 3],
}

impl IdxWriter {
    /// Open the three images files; the header states the expected rows per split (and is
    /// corrected at the end if fewer arrive).
    pub fn create(
        layout: &'static IdxLayout,
        ctx: &WriterContext<'_>,
    ) -> Result<IdxWriter, PackError> {
        let size = ctx.opts.size;
        let open = |split: Split| {
            let header = layout.header(ctx.expected[split.index()], size);
            ImagesFile::create(ctx.sink, (layout.images)(split), &header, |mut out| {
                out.write_all(&GZIP_HEADER)?;
                Ok(out)
            })
        };
        Ok(IdxWriter {
            layout,
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
        let segment = match self.layout.channels {
            Channels::Rgb => row.payloads.rgb()?,
            Channels::Gray => row.payloads.gray()?,
        };
        self.images[row.split.index()].append(segment)
    }

    fn finish(self: Box<Self>, ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError> {
        let mut produced = Vec::new();
        let IdxWriter {
            layout,
            size,
            images,
            labels,
        } = *self;
        for (split, file) in Split::ALL.into_iter().zip(images) {
            let (gender, status) = &labels[split.index()];
            let n = gender.len() as u64;
            let header = layout.header(n, size);
            produced.push(file.close(n, header, ctx, |mut out, totals| {
                out.write_all(&totals.crc.to_le_bytes())?;
                out.write_all(&(totals.uncompressed as u32).to_le_bytes())?;
                Ok(out)
            })?);

            for (label, values) in LABELS.into_iter().zip([gender, status]) {
                let name = (layout.labels)(split, label);
                let file = ctx.sink.create(&name)?;
                let mut bytes = vec![0, 0, 8, 1];
                bytes.extend_from_slice(&(n as u32).to_be_bytes());
                bytes.extend_from_slice(values);
                write_gzip(file, &bytes).map_err(PackError::io(&name))?;
                produced.push(name);
            }
        }
        Ok(produced)
    }
}

/// A small gzip file with a fixed header (no name, zero mtime).
fn write_gzip(out: impl Write, bytes: &[u8]) -> std::io::Result<()> {
    let mut gz = GzBuilder::new()
        .mtime(0)
        .operating_system(0xff)
        .write(out, Compression::best());
    gz.write_all(bytes)?;
    gz.finish()?.flush()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::normalize::to_gray;
    use crate::pack::format::testing::{self, SIZE};

    /// A whole gzip file, inflated (flate2 checks its CRC-32 and length).
    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_end(&mut out)
            .unwrap();
        out
    }

    /// An idx uint8 file of shape `dims` holding `data`, as numpy's readers expect it.
    fn idx_file(dims: &[u64], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0, 0, 8, dims.len() as u8];
        for &d in dims {
            out.extend_from_slice(&u32::try_from(d).unwrap().to_be_bytes());
        }
        out.extend_from_slice(data);
        out
    }

    /// Write the test rows but `missing` through `format` (of `layout`), then check each
    /// split's files byte for byte, which were hashed while written, and that verify's
    /// readers give back the labels and pixels.
    pub(in crate::pack) fn check(format: &dyn Format, layout: &IdxLayout, missing: &[u32]) {
        let dataset = testing::dataset();
        let w = testing::write(format, &dataset, &testing::options(format.name()), missing);
        w.check_files();
        assert_eq!(w.produced, layout.files());
        let dir = w.on_disk();
        let listed = w.listed();
        for split in Split::ALL {
            let rows = testing::rows(&dataset, split, missing);
            let n = rows.len() as u64;
            let pixels: Vec<Vec<u8>> = rows
                .iter()
                .map(|r| {
                    let rgb = testing::pixels(r.id.0);
                    match layout.channels {
                        Channels::Rgb => rgb,
                        Channels::Gray => to_gray(&rgb),
                    }
                })
                .collect();
            let name = (layout.images)(split);
            let images = w.sink.bytes(&name);
            assert_eq!(images[..10], GZIP_HEADER);
            let dims = layout.dims(n, SIZE);
            assert!(
                gunzip(&images) == idx_file(&dims, &pixels.concat()),
                "{name}"
            );
            // A header corrected for missing rows leaves the hash to the commit.
            let all = testing::rows(&dataset, split, &[]).len() as u64;
            assert_eq!(w.hashed(&name), n == all, "{name}");

            let labels = |f: fn(&crate::metadata::Label) -> u8| -> Vec<u8> {
                rows.iter().map(|r| f(r.label.as_ref().unwrap())).collect()
            };
            let (gender, status) = (labels(|l| l.gender), labels(|l| l.status));
            for (label, values) in [("gender", &gender), ("status", &status)] {
                let file = w.sink.bytes(&(layout.labels)(split, label));
                // No file name, no time: the bytes depend on the labels only.
                assert_eq!((file[3], &file[4..8]), (0, &[0u8; 4][..]));
                assert_eq!(gunzip(&file), idx_file(&[n], values));
            }

            let at = testing::split_at(dir.path(), &listed, split, n, None);
            let mut problems = Problems::default();
            let (_, read) = format.read_labels(&at, &mut problems).unwrap();
            let expected: Vec<RowLabels> = (0..rows.len())
                .map(|i| RowLabels {
                    image_id: None,
                    gender: gender[i],
                    status: status[i],
                })
                .collect();
            assert_eq!(read, expected);
            let source = format.open_pixels(&at, &mut problems).unwrap();
            assert!(testing::read_all(source, rows.len()) == pixels);
            assert!(problems.is_empty(), "{:?}", &problems[..]);
        }
    }

    #[test]
    fn rows_stream_into_the_idx_files_of_their_split() {
        check(&Idx, &IDX, &[]);
    }

    #[test]
    fn missing_rows_correct_the_header_written_up_front() {
        // Image 0 of train and image 5 of dev are not packed; test is complete.
        check(&Idx, &IDX, &[0, 5]);
    }
}
