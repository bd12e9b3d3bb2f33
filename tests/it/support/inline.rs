//! The inputs of the pack and verify tests, made in memory: a small dataset written inline,
//! image files of every kind a IIIF server may send (cut from the real label figure of the
//! upstream repository), and image sources that hand them out in any order.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use image::{ImageEncoder, RgbImage, RgbaImage};
use kaokore::config::{Formats, PackOptions};
use kaokore::metadata::{Dataset, DatasetVersion, ImageId, ImageRecord, MetadataFiles};
use kaokore::pack::{Delivered, ImageSource};

pub const CLASS_NAMES_EN: &str = "gender\tstatus\n2\t4\n\ngender\n\t0\tmale\n\t1\tfemale\n\nstatus\n\t0\tnoble\n\t1\twarrior\n\t2\tincarnation\n\t3\tcommoner\n";
pub const CLASS_NAMES_JA: &str = "性別\t身分\n2\t4\n\n性別\n\t0\t男\n\t1\t女\n\n身分\n\t0\t貴族\n\t1\t武士\n\t2\t化身\n\t3\t庶民\n";

/// What kind of file the synthetic server sends for an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// S x S RGB baseline JPEG: kept unchanged.
    RgbJpeg,
    /// S x S grayscale JPEG.
    GrayJpeg,
    /// 200 x 200 RGB JPEG (IIIF `!200,200`).
    Jpeg200,
    /// 200 x 187, clipped at the page edge.
    NonSquare,
    /// S x S RGBA PNG.
    RgbaPng,
    /// 48 x 40 16-bit RGB PNG.
    Png16,
    /// 16 x 16 CMYK JPEG (hand-made, DC only).
    CmykJpeg,
    /// S x S progressive RGB JPEG (hand-made, DC scan only): kept unchanged.
    ProgressiveJpeg,
    /// Not fetched.
    Missing,
    /// Fetched but not an image.
    Garbage,
}

pub const ALL_KINDS: [Kind; 10] = [
    Kind::RgbJpeg,
    Kind::GrayJpeg,
    Kind::Jpeg200,
    Kind::NonSquare,
    Kind::RgbaPng,
    Kind::Png16,
    Kind::CmykJpeg,
    Kind::ProgressiveJpeg,
    Kind::Missing,
    Kind::Garbage,
];

/// The RGB label figure of the upstream repository: real faces, real JPEG statistics.
pub fn figure() -> RgbImage {
    image::load_from_memory(kaokore_fixture::images::LABEL_FIGURE_PNG)
        .expect("the label figure decodes")
        .to_rgb8()
}

/// A w x h crop of the figure, different for each `seed`.
pub fn crop(fig: &RgbImage, seed: u32, w: u32, h: u32) -> RgbImage {
    let x = (seed.wrapping_mul(97)) % (fig.width() - w);
    let y = (seed.wrapping_mul(61)) % (fig.height() - h);
    image::imageops::crop_imm(fig, x, y, w, h).to_image()
}

pub fn jpeg(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .unwrap();
    out
}

pub fn gray_jpeg(img: &RgbImage) -> Vec<u8> {
    let gray = image::DynamicImage::ImageRgb8(img.clone()).to_luma8();
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
        .write_image(
            gray.as_raw(),
            gray.width(),
            gray.height(),
            image::ExtendedColorType::L8,
        )
        .unwrap();
    out
}

pub fn rgba_png(img: &RgbImage) -> Vec<u8> {
    let rgba = RgbaImage::from_fn(img.width(), img.height(), |x, y| {
        let p = img.get_pixel(x, y);
        image::Rgba([p[0], p[1], p[2], ((x * 3 + y) % 256) as u8])
    });
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            rgba.as_raw(),
            rgba.width(),
            rgba.height(),
            image::ExtendedColorType::Rgba8,
        )
        .unwrap();
    out
}

pub fn png16(img: &RgbImage) -> Vec<u8> {
    let mut raw = Vec::with_capacity(img.as_raw().len() * 2);
    for (i, &v) in img.as_raw().iter().enumerate() {
        let wide = (u16::from(v) * 257).saturating_sub((i % 7) as u16); // noise in the low byte
        raw.extend_from_slice(&wide.to_be_bytes());
    }
    let mut out = Vec::new();
    image::codecs::png::PngEncoder::new(&mut out)
        .write_image(
            &raw,
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb16,
        )
        .unwrap();
    out
}

/// A hand-made DC-only JPEG (each 8 x 8 block a flat colour): `components` 3 (YCbCr) or
/// 4 (CMYK, with an Adobe marker), baseline or progressive (a single DC scan).
pub fn flat_jpeg(width: u16, height: u16, components: u8, progressive: bool, seed: u32) -> Vec<u8> {
    let mut out = vec![0xFF, 0xD8];
    let mut segment = |marker: u8, body: &[u8]| {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((body.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(body);
    };
    if components == 4 {
        // Adobe APP14, transform 0: plain CMYK.
        segment(0xEE, b"Adobe\x00\x64\x00\x00\x00\x00\x00");
    }
    let mut dqt = vec![0u8];
    dqt.extend_from_slice(&[1u8; 64]);
    segment(0xDB, &dqt);
    let mut sof = vec![8];
    sof.extend_from_slice(&height.to_be_bytes());
    sof.extend_from_slice(&width.to_be_bytes());
    sof.push(components);
    for c in 0..components {
        sof.extend_from_slice(&[c + 1, 0x11, 0]);
    }
    segment(if progressive { 0xC2 } else { 0xC0 }, &sof);
    // DC table: categories 0..=11, all 4-bit codes (code = category).
    let mut dht = vec![0x00];
    let mut counts = [0u8; 16];
    counts[3] = 12;
    dht.extend_from_slice(&counts);
    dht.extend(0u8..12);
    segment(0xC4, &dht);
    if !progressive {
        // AC table: only EOB, code `0`.
        let mut dht = vec![0x10];
        let mut counts = [0u8; 16];
        counts[0] = 1;
        dht.extend_from_slice(&counts);
        dht.push(0);
        segment(0xC4, &dht);
    }
    let mut sos = vec![components];
    for c in 0..components {
        sos.extend_from_slice(&[c + 1, 0x00]);
    }
    sos.extend_from_slice(if progressive { &[0, 0, 0] } else { &[0, 63, 0] });
    segment(0xDA, &sos);

    let mut bits = BitWriter::default();
    let mut predictor = vec![0i32; components as usize];
    let (bw, bh) = (width.div_ceil(8) as u32, height.div_ceil(8) as u32);
    for by in 0..bh {
        for bx in 0..bw {
            for (c, predictor) in predictor.iter_mut().enumerate() {
                let level = ((bx * 37 + by * 23 + c as u32 * 71 + seed * 13) % 200) as i32 + 20;
                let dc = (level - 128) * 8;
                let diff = dc - *predictor;
                *predictor = dc;
                let category = 32 - diff.unsigned_abs().leading_zeros();
                bits.put(category, 4);
                if category > 0 {
                    let v = if diff < 0 { diff - 1 } else { diff };
                    bits.put((v as u32) & ((1 << category) - 1), category);
                }
                if !progressive {
                    bits.put(0, 1); // EOB
                }
            }
        }
    }
    out.extend_from_slice(&bits.finish());
    out.extend_from_slice(&[0xFF, 0xD9]);
    out
}

#[derive(Default)]
struct BitWriter {
    out: Vec<u8>,
    acc: u32,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, value: u32, len: u32) {
        for i in (0..len).rev() {
            self.acc = (self.acc << 1) | ((value >> i) & 1);
            self.n += 1;
            if self.n == 8 {
                self.emit();
            }
        }
    }

    fn emit(&mut self) {
        let b = self.acc as u8;
        self.out.push(b);
        if b == 0xFF {
            self.out.push(0);
        }
        self.acc = 0;
        self.n = 0;
    }

    fn finish(mut self) -> Vec<u8> {
        while self.n != 0 {
            self.put(1, 1);
        }
        self.out
    }
}

/// The file of kind `kind` for normalized size `s`.
pub fn file_of(fig: &RgbImage, kind: Kind, s: u32, seed: u32) -> Option<Vec<u8>> {
    Some(match kind {
        Kind::RgbJpeg => jpeg(&crop(fig, seed, s, s)),
        Kind::GrayJpeg => gray_jpeg(&crop(fig, seed, s, s)),
        Kind::Jpeg200 => jpeg(&crop(fig, seed, 200, 200)),
        Kind::NonSquare => jpeg(&crop(fig, seed, 200, 187)),
        Kind::RgbaPng => rgba_png(&crop(fig, seed, s, s)),
        Kind::Png16 => png16(&crop(fig, seed, 48, 40)),
        Kind::CmykJpeg => flat_jpeg(16, 16, 4, false, seed),
        Kind::ProgressiveJpeg => flat_jpeg(s as u16, s as u16, 3, true, seed),
        Kind::Missing => return None,
        Kind::Garbage => b"<html>503 Service Unavailable</html>".to_vec(),
    })
}

/// A dataset written inline and the file each image's URL serves.
pub struct InlineDataset {
    pub dataset: Dataset,
    pub files: HashMap<ImageId, Option<Vec<u8>>>,
    pub kinds: HashMap<ImageId, Kind>,
}

/// `n` images, kinds cycling through `kinds`, splits cycling train, train, dev, test;
/// image 3 unlabelled, the last urls line blank but labelled.
pub fn inline_dataset(n: u32, s: u32, kinds: &[Kind]) -> InlineDataset {
    let fig = figure();
    let hosts = [
        "http://codh.rois.ac.jp/iiif/iiif-curation-finder/x.tif",
        "http://iiif.lib.keio.ac.jp/iipsrv/NRE/y.tif",
        "https://rmda.kulib.kyoto-u.ac.jp/iiif/RB00000000/z.ptif",
        "http://127.0.0.1:9/elsewhere",
    ];
    let mut urls = String::new();
    let mut labels = String::from("image,gender,status,set\n");
    let mut tags = String::new();
    // Labels in a shuffled order (not id order), as upstream's labels.csv is.
    let mut order: Vec<u32> = (0..n).collect();
    order.sort_by_key(|i| (i * 7919) % n.max(1));
    for i in 0..n {
        let host = hosts[i as usize % hosts.len()];
        urls.push_str(&format!(
            "{host}/{},{},100,100/256,/0/default.jpg\n",
            i * 10,
            i * 3
        ));
        tags.push_str(&format!(
            "{:08}.jpg:制作年=from {};制作年=to {};制作年=江戸前期;原典=作品{i};原典ID=ID@{i};向き=横;タグ=唐のたいしやう;タグ=t{i} ;所蔵=慶應義塾大学\n",
            i,
            1500 + i,
            1600 + i
        ));
    }
    urls.push('\n'); // blank line: id n has no URL
    for &i in &order {
        if i == 3 {
            continue;
        }
        let split = ["train", "train", "dev", "test"][i as usize % 4];
        labels.push_str(&format!("{:08}.jpg,{},{},{split}\n", i, i % 2, (i / 2) % 4));
    }
    labels.push_str(&format!("{:08}.jpg,0,0,train\n", n));
    let files = MetadataFiles {
        origin: "inline test metadata".into(),
        urls,
        labels,
        original_tags: tags,
        class_names_en: CLASS_NAMES_EN.into(),
        class_names_ja: CLASS_NAMES_JA.into(),
    };
    let dataset = Dataset::parse(DatasetVersion::V1_0, files).expect("valid inline metadata");
    let mut out = HashMap::new();
    let mut kind_of = HashMap::new();
    for i in 0..n {
        let kind = kinds[i as usize % kinds.len()];
        kind_of.insert(ImageId(i), kind);
        out.insert(ImageId(i), file_of(&fig, kind, s, i));
    }
    InlineDataset {
        dataset,
        files: out,
        kinds: kind_of,
    }
}

/// Hands out prepared files, optionally after a random pause (so they arrive out of order).
pub struct MapSource {
    pub files: HashMap<ImageId, Option<Vec<u8>>>,
    pub max_delay_ms: u64,
    pub seed: Mutex<u64>,
    /// Deliver JPEGs with their pixels already decoded, as the fetcher of a build does.
    pub predecoded: bool,
}

impl MapSource {
    pub fn new(files: HashMap<ImageId, Option<Vec<u8>>>) -> Self {
        MapSource {
            files,
            max_delay_ms: 0,
            seed: Mutex::new(1),
            predecoded: false,
        }
    }

    pub fn jittery(files: HashMap<ImageId, Option<Vec<u8>>>, max_delay_ms: u64, seed: u64) -> Self {
        MapSource {
            files,
            max_delay_ms,
            seed: Mutex::new(seed | 1),
            predecoded: false,
        }
    }
}

impl ImageSource for MapSource {
    fn image(&self, record: &ImageRecord) -> Option<Delivered> {
        if self.max_delay_ms > 0 {
            let r = {
                let mut x = self.seed.lock().unwrap();
                *x ^= *x << 13;
                *x ^= *x >> 7;
                *x ^= *x << 17;
                *x
            };
            std::thread::sleep(Duration::from_millis(r % self.max_delay_ms));
        }
        let bytes = self.files.get(&record.id).cloned().flatten()?;
        // As the fetcher of a build does: hand over the pixels validation decoded.
        let decoded = self
            .predecoded
            .then(|| kaokore::decode::decode_jpeg(&bytes, 8192).ok())
            .flatten();
        Some(Delivered { bytes, decoded })
    }
}

pub fn options(size: u32, jobs: usize, formats: &str) -> PackOptions {
    PackOptions {
        size,
        formats: formats.parse::<Formats>().unwrap(),
        jobs,
        ..PackOptions::default()
    }
}

/// After `relative` was changed on purpose: give croissant.json and SHA256SUMS its new
/// SHA-256, as someone covering their tracks would, so that only verify's row-by-row
/// checks can catch the change.
pub fn update_sum(out: &Path, relative: &str) {
    let hash = kaokore::pack::sha256_hex(&std::fs::read(out.join(relative)).unwrap());
    let path = out.join(kaokore::pack::CROISSANT);
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let mut listed = false;
    for f in doc["distribution"].as_array_mut().unwrap() {
        if f["contentUrl"] == relative {
            f["sha256"] = hash.clone().into();
            listed = true;
        }
    }
    // Files of a FileSet (images_S/) have no line of their own in croissant.json.
    if listed {
        std::fs::write(&path, doc.to_string()).unwrap();
        write_sum(out, kaokore::pack::CROISSANT);
    }
    write_sum(out, relative);
}

/// Put the file's current SHA-256 on its SHA256SUMS line.
fn write_sum(out: &Path, relative: &str) {
    let sums = std::fs::read_to_string(out.join("SHA256SUMS")).unwrap();
    let hash = kaokore::pack::sha256_hex(&std::fs::read(out.join(relative)).unwrap());
    let text: String = sums
        .lines()
        .map(|l| match l.ends_with(&format!("  {relative}")) {
            true => format!("{hash}  {relative}\n"),
            false => format!("{l}\n"),
        })
        .collect();
    assert_ne!(text, sums, "{relative} is listed");
    std::fs::write(out.join("SHA256SUMS"), text).unwrap();
}

/// A dataset of 24 images of which no dev image is ever fetched: splits cycle train,
/// train, dev, test and the kinds cycle with the same period, dev's kind being `Missing`.
pub fn without_dev_images(s: u32) -> InlineDataset {
    inline_dataset(
        24,
        s,
        &[
            Kind::RgbJpeg,
            Kind::GrayJpeg,
            Kind::Missing,
            Kind::NonSquare,
        ],
    )
}

/// Pack 30 images of every kind at size `s` into `out` with `formats` and shards of at
/// most `shard_bytes`, images arriving in a shuffled order on `jobs` threads.
pub fn pack_sharded(
    out: &Path,
    s: u32,
    jobs: usize,
    formats: &str,
    shard_bytes: u64,
) -> kaokore::pack::PackSummary {
    let inline = inline_dataset(30, s, &ALL_KINDS);
    let mut opts = options(s, jobs, formats);
    opts.set_option(&kaokore::pack::format::SHARD_SIZE, shard_bytes);
    kaokore::pack::pack(
        &inline.dataset,
        &MapSource::jittery(inline.files, 3, jobs as u64),
        &kaokore::pipeline::IMAGE_CHAIN,
        &opts,
        out,
        &kaokore::progress::Progress::hidden("pack", 0),
    )
    .unwrap()
}
