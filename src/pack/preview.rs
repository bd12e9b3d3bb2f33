//! preview: `preview.jpg`, a picture of the data in every build. A contact sheet with one
//! row per gender x status class that has images, in class order (gender major), each the
//! class's first [`TILES_PER_ROW`] images (train, then dev, then test, each in labels.csv
//! order) as tiles of [`tile_edge`] pixels on a gutter of one fixed colour. No text.
//!
//! Only the tiles the sheet may still show are held, at most [`TILES_PER_ROW`] per class
//! whatever the dataset's size, and the pool makes pixels only for the rows of a class
//! and split not yet full ([`Demand`]). Tiles are reduced from the normalized pixels by an
//! integer box filter, and the sheet is encoded by the image crate's baseline JPEG encoder
//! (an integer DCT; its quantization is one IEEE f32 division per coefficient, exact on
//! every x86-64 CPU): the bytes do not depend on the CPU, the threads or the run.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;

use image::ImageEncoder;
use image::codecs::jpeg::JpegEncoder;

use super::PackError;
use super::format::{
    CardContext, CardRow, Demand, FinishContext, Format, FormatWriter, PackedRow, Payload,
    WriterContext,
};
use super::read::{BuildAt, Problems, length, open_artifact};
use crate::metadata::{Label, Split};

/// The contact sheet's file name.
pub const PREVIEW_FILE: &str = "preview.jpg";
/// Tiles in a row: the first images of a class.
pub const TILES_PER_ROW: usize = 8;
/// Pixels of gutter around and between the tiles.
pub const GUTTER: u32 = 2;
/// The gutter's colour, also that of a row's empty tiles.
const GUTTER_RGB: [u8; 3] = [48, 48, 48];
/// JPEG quality of the sheet.
const QUALITY: u8 = 90;
/// A sheet is at most a few MiB; verify reads no larger file.
const MAX_PREVIEW_BYTES: u64 = 64 << 20;

/// The edge of a tile in a build of edge `size`: half the edge, or 64 pixels below 128.
pub fn tile_edge(size: u32) -> u32 {
    if size < 128 { 64 } else { size / 2 }
}

/// Width and height of a sheet of `rows` class rows in a build of edge `size`: always
/// [`TILES_PER_ROW`] tiles wide, gutters around and between tiles.
pub fn sheet_dimensions(size: u32, rows: usize) -> (u32, u32) {
    let tile = tile_edge(size);
    let across = TILES_PER_ROW as u32;
    let rows = rows as u32;
    (
        across * tile + (across + 1) * GUTTER,
        rows * tile + (rows + 1) * GUTTER,
    )
}

/// `from` x `from` RGB pixels reduced (or enlarged) to `to` x `to` by a box filter in
/// integers: each output pixel is the area-weighted mean of the source pixels it covers,
/// rounded half up. Halving averages 2 x 2 blocks.
pub fn box_resize(pixels: &[u8], from: u32, to: u32) -> Vec<u8> {
    if to > 0 && from.is_multiple_of(to) {
        return block_mean(pixels, (from / to) as usize, to as usize);
    }
    box_resize_areas(pixels, from, to)
}

/// [`box_resize`] by a whole factor `k`: the mean of each k x k block, rounded half up
/// (the same as the general case, whose weights are then all equal), without its tables.
fn block_mean(pixels: &[u8], k: usize, to: usize) -> Vec<u8> {
    let from = k * to;
    let (total, half) = ((k * k) as u64, (k * k / 2) as u64);
    let mut sums = vec![0u64; to * 3];
    let mut out = Vec::with_capacity(to * to * 3);
    for y in 0..to {
        sums.fill(0);
        for row in pixels[y * k * from * 3..(y + 1) * k * from * 3].chunks_exact(from * 3) {
            for (x, block) in row.chunks_exact(k * 3).enumerate() {
                for (i, &v) in block.iter().enumerate() {
                    sums[x * 3 + i % 3] += u64::from(v);
                }
            }
        }
        out.extend(sums.iter().map(|&s| ((s + half) / total) as u8));
    }
    out
}

/// [`box_resize`] for any two edges, from a table of overlaps.
fn box_resize_areas(pixels: &[u8], from: u32, to: u32) -> Vec<u8> {
    let (from, to) = (from as usize, to as usize);
    // Output pixel i covers [i * from, (i + 1) * from) and source pixel j covers
    // [j * to, (j + 1) * to), in units of 1 / (from * to) of the edge: the weight of j
    // in i is their overlap, and the weights of i sum to `from`.
    let weights: Vec<Vec<(usize, u64)>> = (0..to)
        .map(|i| {
            let (start, end) = (i * from, (i + 1) * from);
            (start / to..end.div_ceil(to))
                .map(|j| {
                    let overlap = end.min((j + 1) * to) - start.max(j * to);
                    (j, overlap as u64)
                })
                .filter(|&(_, w)| w > 0)
                .collect()
        })
        .collect();
    // Across each source row, then down each output column.
    let mut across = vec![0u64; from * to * 3];
    for y in 0..from {
        let row = &pixels[y * from * 3..(y + 1) * from * 3];
        for (x, ws) in weights.iter().enumerate() {
            for c in 0..3 {
                across[(y * to + x) * 3 + c] =
                    ws.iter().map(|&(j, w)| w * u64::from(row[j * 3 + c])).sum();
            }
        }
    }
    let total = (from * from) as u64;
    let mut out = vec![0u8; to * to * 3];
    for (y, ws) in weights.iter().enumerate() {
        for x in 0..to * 3 {
            let sum: u64 = ws.iter().map(|&(j, w)| w * across[j * to * 3 + x]).sum();
            out[y * to * 3 + x] = ((sum + total / 2) / total) as u8;
        }
    }
    out
}

/// The contact sheet.
pub(crate) struct Preview;

impl Format for Preview {
    fn name(&self) -> &'static str {
        "preview"
    }

    fn opt_out(&self) -> Option<&'static str> {
        Some("no-preview")
    }

    fn about(&self) -> &'static str {
        "preview.jpg: a contact sheet of the first 8 images of each gender x status class"
    }

    fn needs(&self) -> &'static [Payload] {
        &[Payload::Pixels]
    }

    fn files(&self, _size: u32) -> Vec<String> {
        vec![PREVIEW_FILE.to_string()]
    }

    fn card_rows(&self, size: u32) -> Vec<CardRow> {
        let tile = tile_edge(size);
        vec![CardRow {
            split: None,
            file: PREVIEW_FILE.to_string(),
            content: format!(
                "contact sheet: the first {TILES_PER_ROW} images of each gender x status class \
                 (train, then dev, then test), {tile} x {tile} tiles, a row per class (JPEG)"
            ),
        }]
    }

    fn encoding_format(&self, _path: &str) -> &'static str {
        "image/jpeg"
    }

    fn card_head(&self, ctx: &CardContext<'_>) -> Option<String> {
        let names = &ctx.dataset.class_names;
        let tile = tile_edge(ctx.opts.size);
        let mut s = format!(
            "![preview]({PREVIEW_FILE})\n\n\
             `{PREVIEW_FILE}` shows the first {TILES_PER_ROW} images of each class (train, \
             then dev, then test, in `labels.csv` order), reduced to {tile} x {tile}, one row \
             per class that has images. It is a derived image of the dataset's images: the \
             request above not to redistribute applies to it as to every other file here.\n\n\
             | row | gender | status | images |\n|---:|---|---|---:|\n"
        );
        let counts = class_counts(ctx);
        let rows = counts.iter().filter(|&&(_, _, n)| n > 0);
        for (row, &(g, st, n)) in rows.enumerate() {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {n} |",
                row + 1,
                names.gender.get(usize::from(g)).map_or("?", String::as_str),
                names
                    .status
                    .get(usize::from(st))
                    .map_or("?", String::as_str),
            );
        }
        Some(s)
    }

    fn create<'a>(&self, ctx: &WriterContext<'a>) -> Result<Box<dyn FormatWriter + 'a>, PackError> {
        let names = &ctx.dataset.class_names;
        let classes = names.gender.len() * names.status.len();
        Ok(Box::new(PreviewWriter {
            size: ctx.opts.size,
            statuses: names.status.len(),
            tiles: (0..classes).map(|_| Default::default()).collect(),
            full: vec![[false; 3]; classes],
            demand: ctx.demand.clone(),
        }))
    }

    fn check_build(&self, at: &BuildAt<'_>, report: &mut Problems) {
        if !at.files.contains(PREVIEW_FILE) {
            return;
        }
        let bytes = open_artifact(at.dir, PREVIEW_FILE).and_then(|mut f| {
            if length(&f)? > MAX_PREVIEW_BYTES {
                return Err(format!("larger than {} MiB", MAX_PREVIEW_BYTES >> 20));
            }
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut f, &mut bytes)
                .map_err(|e| format!("cannot read: {e}"))?;
            Ok(bytes)
        });
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => return report.problem(PREVIEW_FILE, None, e),
        };
        let Some(class_rows) = at.class_rows else {
            return; // the labels' problems are reported; no sheet can be expected
        };
        let rows = class_rows.values().filter(|&&n| n > 0).count();
        let (width, height) = sheet_dimensions(at.size, rows);
        let image = image::load_from_memory_with_format(&bytes, image::ImageFormat::Jpeg);
        let message = match image {
            Err(e) => format!("does not decode as a JPEG: {e}"),
            Ok(image) if (image.width(), image.height()) != (width, height) => format!(
                "is {} x {} pixels; {rows} classes with images make a sheet of {width} x \
                 {height} at size {}",
                image.width(),
                image.height(),
                at.size
            ),
            Ok(image) if image.color() != image::ColorType::Rgb8 => {
                format!("is {:?}, not 8-bit RGB", image.color())
            }
            Ok(_) => return,
        };
        report.problem(PREVIEW_FILE, None, message);
    }
}

/// (gender, status, images packed) of every class, in class order: the labelled images
/// with a URL, but those that were missing or did not decode.
fn class_counts(ctx: &CardContext<'_>) -> Vec<(u8, u8, u64)> {
    let names = &ctx.dataset.class_names;
    let left_out: std::collections::HashSet<u32> = (ctx.summary.missing.iter().map(|id| id.0))
        .chain(ctx.summary.undecodable.iter().map(|u| u.id.0))
        .collect();
    let mut counts = Vec::new();
    for g in 0..names.gender.len() {
        for s in 0..names.status.len() {
            counts.push((g as u8, s as u8, 0u64));
        }
    }
    for record in ctx.dataset.packable() {
        if let Some(l) = record.label
            && !left_out.contains(&record.id.0)
        {
            let class = usize::from(l.gender) * names.status.len() + usize::from(l.status);
            if let Some(c) = counts.get_mut(class) {
                c.2 += 1;
            }
        }
    }
    counts
}

/// The tiles kept so far, as rows stream by.
struct PreviewWriter {
    size: u32,
    statuses: usize,
    /// Per class, per split, the tiles kept, in row order. With those of the splits
    /// before it, a split keeps no more than a row shows.
    tiles: Vec<[Vec<Vec<u8>>; 3]>,
    /// Per class, per split: whether it and the splits before it fill the row (the
    /// demand for its rows was withdrawn).
    full: Vec<[bool; 3]>,
    demand: Arc<Demand>,
}

impl PreviewWriter {
    /// Tiles of class `class` kept in `split` and the splits before it.
    fn kept_through(&self, class: usize, split: usize) -> usize {
        self.tiles[class][..=split].iter().map(Vec::len).sum()
    }
}

impl FormatWriter for PreviewWriter {
    fn write_row(&mut self, row: &PackedRow<'_>) -> Result<(), PackError> {
        let label = row.label;
        let class = usize::from(label.gender) * self.statuses + usize::from(label.status);
        let split = label.split.index();
        if class >= self.tiles.len() || self.full[class][split] {
            return Ok(());
        }
        let tile = box_resize(row.payloads.pixels()?, self.size, tile_edge(self.size));
        self.tiles[class][split].push(tile);
        // Later splits keep only what the earlier ones leave room for.
        for later in split + 1..Split::ALL.len() {
            let room = TILES_PER_ROW.saturating_sub(self.kept_through(class, later - 1));
            self.tiles[class][later].truncate(room);
        }
        for (s, &which) in Split::ALL.iter().enumerate() {
            if !self.full[class][s] && self.kept_through(class, s) >= TILES_PER_ROW {
                self.full[class][s] = true;
                self.demand.satisfied(Label {
                    split: which,
                    ..label
                });
            }
        }
        Ok(())
    }

    fn finish(self: Box<Self>, ctx: &mut FinishContext<'_>) -> Result<Vec<String>, PackError> {
        let tile = tile_edge(self.size);
        let rows: Vec<Vec<&Vec<u8>>> = self
            .tiles
            .iter()
            .map(|splits| splits.iter().flatten().take(TILES_PER_ROW).collect())
            .filter(|row: &Vec<&Vec<u8>>| !row.is_empty())
            .collect();
        let (width, height) = sheet_dimensions(self.size, rows.len());
        let (w, t, g) = (width as usize, tile as usize, GUTTER as usize);
        let mut sheet: Vec<u8> = GUTTER_RGB
            .iter()
            .copied()
            .cycle()
            .take(w * height as usize * 3)
            .collect();
        for (r, row) in rows.iter().enumerate() {
            for (c, pixels) in row.iter().enumerate() {
                let (left, top) = (g + c * (t + g), g + r * (t + g));
                for y in 0..t {
                    let at = ((top + y) * w + left) * 3;
                    sheet[at..at + t * 3].copy_from_slice(&pixels[y * t * 3..(y + 1) * t * 3]);
                }
            }
        }
        let mut jpeg = Vec::new();
        JpegEncoder::new_with_quality(&mut jpeg, QUALITY)
            .write_image(&sheet, width, height, image::ExtendedColorType::Rgb8)
            .map_err(|e| PackError::Io {
                path: PREVIEW_FILE.into(),
                source: std::io::Error::other(e),
            })?;
        let mut file = ctx.sink.create(PREVIEW_FILE)?;
        file.write_all(&jpeg)
            .and_then(|()| file.flush())
            .map_err(PackError::io(PREVIEW_FILE))?;
        Ok(vec![PREVIEW_FILE.to_string()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{Dataset, DatasetVersion, MetadataFiles};
    use crate::pack::format::Payloads;
    use crate::pack::format::testing::{self, MemorySink};
    use image::RgbImage;

    #[test]
    fn tiles_are_64_pixels_below_128_and_half_the_edge_from_there() {
        for (size, tile) in [
            (8, 64),
            (32, 64),
            (127, 64),
            (128, 64),
            (160, 80),
            (256, 128),
        ] {
            assert_eq!(tile_edge(size), tile, "size {size}");
        }
        assert_eq!(sheet_dimensions(256, 5), (8 * 128 + 18, 5 * 128 + 12));
        assert_eq!(sheet_dimensions(32, 0), (8 * 64 + 18, 2));
    }

    #[test]
    fn the_box_filter_averages_what_each_output_pixel_covers() {
        // Halving: each pixel the 2 x 2 mean, rounded half up.
        let (a, b, c, d) = ([0u8, 10, 255], [1u8, 11, 255], [2u8, 13, 0], [3u8, 13, 0]);
        let two: Vec<u8> = [a, b, c, d].concat();
        assert_eq!(box_resize(&two, 2, 1), [2, 12, 128]);
        // The same edge: unchanged; doubling: each pixel repeated.
        let pixels: Vec<u8> = (0..4 * 4 * 3).map(|i| (i * 37 % 256) as u8).collect();
        assert_eq!(box_resize(&pixels, 4, 4), pixels);
        let doubled = box_resize(&pixels, 4, 8);
        for y in 0..8 {
            for x in 0..8 {
                let (from, to) = (((y / 2) * 4 + x / 2) * 3, (y * 8 + x) * 3);
                assert_eq!(doubled[to..to + 3], pixels[from..from + 3], "({x}, {y})");
            }
        }
        // A whole factor takes the short way, to the same bytes.
        let pixels: Vec<u8> = (0..12 * 12 * 3).map(|i| (i * 7919 % 256) as u8).collect();
        for to in [1, 2, 3, 4, 6, 12] {
            assert_eq!(
                box_resize(&pixels, 12, to),
                box_resize_areas(&pixels, 12, to),
                "{to}"
            );
        }
        // 3 -> 2: the middle source pixel counts half to each side.
        let row = [[0u8; 3], [90; 3], [200; 3]].concat();
        let square: Vec<u8> = [&row[..], &row[..], &row[..]].concat();
        // (2 * 0 + 1 * 90) / 3 = 30, (1 * 90 + 2 * 200) / 3 = 163.3
        assert_eq!(
            box_resize(&square, 3, 2),
            [[30u8; 3], [163; 3], [30; 3], [163; 3]].concat()
        );
    }

    /// Rows of one class in every split and a few of others, in an order that mixes the
    /// splits: (id, gender, status, split).
    const ROWS: &[(u32, u8, u8, &str)] = &[
        (0, 0, 0, "dev"),
        (1, 0, 0, "train"),
        (2, 0, 0, "test"),
        (3, 1, 1, "test"),
        (4, 0, 0, "train"),
        (5, 0, 0, "dev"),
        (6, 0, 0, "train"),
        (7, 0, 0, "train"),
        (8, 0, 0, "train"),
        (9, 0, 0, "train"),
        (10, 0, 0, "dev"),
        (11, 0, 0, "train"),
        (12, 0, 0, "train"),
        (13, 1, 1, "dev"),
        (14, 0, 0, "test"),
        (15, 1, 1, "train"),
    ];

    fn dataset() -> Dataset {
        let mut files = MetadataFiles::embedded(DatasetVersion::V1_3);
        files.urls = ROWS
            .iter()
            .map(|(id, ..)| {
                format!("http://codh.rois.ac.jp/iiif/{id}.tif/full/256,/0/default.jpg\n")
            })
            .collect();
        files.labels = String::from("image,gender,status,set\n")
            + &ROWS
                .iter()
                .map(|(id, g, s, split)| format!("{id:08}.jpg,{g},{s},{split}\n"))
                .collect::<String>();
        files.original_tags = String::new();
        Dataset::parse(DatasetVersion::V1_3, files).unwrap()
    }

    /// Image `id`: one flat colour of its own, so a tile says which image it is.
    fn colour(id: u32) -> [u8; 3] {
        [(id * 15) as u8, 255 - (id * 15) as u8, 100]
    }

    const SIZE: u32 = 16;

    /// Write every row through the preview as a pack does, the pixels made only while the
    /// demand wants them; returns the sheet, decoded, and the ids whose pixels were made.
    fn write(dataset: &Dataset) -> (RgbImage, Vec<u32>) {
        let sink = MemorySink::default();
        let demand = Arc::new(Demand::new(dataset, 1));
        let opts = testing::options("idx").for_size(SIZE);
        let ctx = WriterContext {
            sink: &sink,
            dataset,
            opts: &opts,
            expected: [0; 3],
            demand: demand.clone(),
        };
        let mut writer = Preview.create(&ctx).unwrap();
        let mut made = Vec::new();
        for record in dataset.packable() {
            let label = record.label.unwrap();
            let pixels = demand.wants(label).then(|| {
                made.push(record.id.0);
                colour(record.id.0).repeat((SIZE * SIZE) as usize)
            });
            let row = PackedRow {
                split: label.split,
                record,
                label,
                payloads: Payloads {
                    pixels,
                    ..Payloads::default()
                },
            };
            writer.write_row(&row).unwrap();
        }
        let mut hashed = Vec::new();
        let mut finish = FinishContext {
            sink: &sink,
            hashed: &mut hashed,
        };
        assert_eq!(writer.finish(&mut finish).unwrap(), [PREVIEW_FILE]);
        assert_eq!(sink.names(), [PREVIEW_FILE]);
        let sheet = image::load_from_memory(&sink.bytes(PREVIEW_FILE)).unwrap();
        (sheet.to_rgb8(), made)
    }

    /// The colour at the centre of tile `col` of row `row`.
    fn tile(sheet: &RgbImage, row: u32, col: u32) -> [u8; 3] {
        let t = tile_edge(SIZE);
        let at = |i: u32| GUTTER + i * (t + GUTTER) + t / 2;
        sheet.get_pixel(at(col), at(row)).0
    }

    fn near(got: [u8; 3], want: [u8; 3]) -> bool {
        got.iter().zip(want).all(|(g, w)| g.abs_diff(w) <= 4)
    }

    #[test]
    fn a_row_takes_train_then_dev_then_test_in_labels_order() {
        let dataset = dataset();
        let (sheet, made) = write(&dataset);
        // Two classes with images: two rows, eight tiles wide.
        assert_eq!(sheet.dimensions(), sheet_dimensions(SIZE, 2));
        // Class (0, 0): its eight train images are 1, 4, 6, 7, 8, 9, 11, 12.
        for (col, id) in [1, 4, 6, 7, 8, 9, 11, 12].into_iter().enumerate() {
            let got = tile(&sheet, 0, col as u32);
            assert!(near(got, colour(id)), "tile {col}: {got:?}, image {id}");
        }
        // Class (1, 1): train 15, dev 13, test 3, then gutter-coloured tiles.
        for (col, id) in [15, 13, 3].into_iter().enumerate() {
            assert!(near(tile(&sheet, 1, col as u32), colour(id)), "tile {col}");
        }
        for col in 3..8 {
            assert!(near(tile(&sheet, 1, col), GUTTER_RGB), "tile {col}");
        }
        // Pixels were made for every row until the class's train row filled, and for no
        // row of that class after (the dev and test rows 10 and 14 came later).
        assert_eq!(made, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 15]);
    }

    #[test]
    fn the_sheet_is_the_same_bytes_whenever_the_pool_made_extra_pixels() {
        // Extra pixels (the pool ran ahead of the demand) change nothing.
        let dataset = dataset();
        let sink = |all: bool| {
            let sink = MemorySink::default();
            let opts = testing::options("idx").for_size(SIZE);
            let ctx = WriterContext {
                sink: &sink,
                dataset: &dataset,
                opts: &opts,
                expected: [0; 3],
                demand: Arc::new(Demand::new(&dataset, 1)),
            };
            let demand = ctx.demand.clone();
            let mut writer = Preview.create(&ctx).unwrap();
            for record in dataset.packable() {
                let label = record.label.unwrap();
                let pixels = (all || demand.wants(label))
                    .then(|| colour(record.id.0).repeat((SIZE * SIZE) as usize));
                let payloads = Payloads {
                    pixels,
                    ..Payloads::default()
                };
                let row = PackedRow {
                    split: label.split,
                    record,
                    label,
                    payloads,
                };
                writer.write_row(&row).unwrap();
            }
            let mut hashed = Vec::new();
            let mut finish = FinishContext {
                sink: &sink,
                hashed: &mut hashed,
            };
            writer.finish(&mut finish).unwrap();
            sink.bytes(PREVIEW_FILE)
        };
        assert_eq!(sink(true), sink(false));
    }

    #[test]
    fn the_card_shows_the_sheet_and_a_row_per_class_with_images() {
        let dataset = dataset();
        let opts = testing::options("idx").for_size(SIZE);
        let mut summary = crate::pack::PackSummary::default();
        summary.missing.push(crate::metadata::ImageId(3));
        let ctx = CardContext {
            dataset: &dataset,
            opts: &opts,
            summary: &summary,
        };
        let head = Preview.card_head(&ctx).unwrap();
        assert!(head.starts_with("![preview](preview.jpg)\n"), "{head}");
        assert!(head.contains("derived image"), "{head}");
        // Image 3 was not fetched: class (1, 1) holds two.
        assert!(
            head.ends_with(
                "| row | gender | status | images |\n|---:|---|---|---:|\n\
                 | 1 | male | noble | 13 |\n| 2 | female | warrior | 2 |\n"
            ),
            "{head}"
        );
    }
}
