//! The pictures the fixture serves: crops of the committed label figure (real KaoKore
//! faces), resized as the IIIF size parameter asks, JPEG-encoded once and memoized so that
//! thousands of requests cost a few hundred encodes at most.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::{Arc, Mutex, OnceLock};

use image::{DynamicImage, ImageFormat, imageops::FilterType};

const SOURCE_PNG: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/label_example.png"
));

/// How many distinct crop positions the fixture cuts from the source picture.
pub const POOL: u64 = 64;
/// Edge of a square source crop before resizing.
const CROP_EDGE: u32 = 160;
/// Largest edge the fixture ever renders (for `full` / `max` on a huge region).
const MAX_EDGE: u32 = 2048;

/// What a parsed IIIF image request asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rendition {
    /// Which of the `POOL` crops.
    pub crop: u64,
    pub width: u32,
    pub height: u32,
    pub gray: bool,
    pub png: bool,
}

/// Parse `{identifier...}/{region}/{size}/{rotation}/{quality}.{format}` (the path without
/// its leading slash). `None` for anything that is not an IIIF image request.
pub fn parse_iiif(path: &str) -> Option<(String, Rendition)> {
    let path = path.split(['?', '#']).next()?;
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    if parts.len() < 5 {
        return None;
    }
    let n = parts.len();
    let identifier = parts[..n - 4].join("/");
    let (region, size, _rotation, qf) = (parts[n - 4], parts[n - 3], parts[n - 2], parts[n - 1]);
    let (quality, format) = qf.rsplit_once('.')?;
    let png = match format {
        "jpg" | "jpeg" => false,
        "png" => true,
        _ => return None,
    };
    let gray = match quality {
        "default" | "color" | "native" => false,
        "gray" | "grey" | "bitonal" => true,
        _ => return None,
    };
    // A `full` region is treated as a 1000 x 1000 page. Real URLs have regions starting
    // at negative offsets (a face at the page edge): real servers clip, so do we.
    let (rw, rh) = if region == "full" || region == "square" {
        (1000u32, 1000u32)
    } else {
        let v: Vec<i64> = region
            .split(',')
            .map(|s| s.parse().ok())
            .collect::<Option<_>>()?;
        if v.len() != 4 || v[2] <= 0 || v[3] <= 0 {
            return None;
        }
        let w = (v[2] + v[0].min(0)).max(1);
        let h = (v[3] + v[1].min(0)).max(1);
        (w as u32, h as u32)
    };
    let (width, height) = parse_size(size, rw, rh)?;
    if width == 0 || height == 0 || width > MAX_EDGE || height > MAX_EDGE {
        return None;
    }
    let crop = fnv1a(format!("{identifier}/{region}").as_bytes()) % POOL;
    Some((
        identifier,
        Rendition {
            crop,
            width,
            height,
            gray,
            png,
        },
    ))
}

/// The IIIF size parameter applied to a region of `rw` x `rh`.
fn parse_size(size: &str, rw: u32, rh: u32) -> Option<(u32, u32)> {
    let scale = |num: u64, mul: u64, den: u64| ((num * mul + den / 2) / den).max(1) as u32;
    if size == "full" || size == "max" {
        let m = rw.max(rh);
        if m <= MAX_EDGE {
            return Some((rw, rh));
        }
        return Some((
            scale(rw as u64, MAX_EDGE as u64, m as u64),
            scale(rh as u64, MAX_EDGE as u64, m as u64),
        ));
    }
    if let Some(pct) = size.strip_prefix("pct:") {
        let p: f64 = pct.parse().ok()?;
        return Some((
            ((rw as f64 * p / 100.0).round() as u32).max(1),
            ((rh as f64 * p / 100.0).round() as u32).max(1),
        ));
    }
    let (fit, wh) = match size.strip_prefix('!') {
        Some(rest) => (true, rest),
        None => (false, size),
    };
    let (w, h) = wh.split_once(',')?;
    let w: Option<u32> = if w.is_empty() {
        None
    } else {
        Some(w.parse().ok()?)
    };
    let h: Option<u32> = if h.is_empty() {
        None
    } else {
        Some(h.parse().ok()?)
    };
    match (fit, w, h) {
        (true, Some(w), Some(h)) => {
            // Fit inside w x h, keeping the region's aspect ratio.
            if (rw as u64) * (h as u64) >= (rh as u64) * (w as u64) {
                Some((w, scale(rh as u64, w as u64, rw as u64)))
            } else {
                Some((scale(rw as u64, h as u64, rh as u64), h))
            }
        }
        (false, Some(w), Some(h)) => Some((w, h)),
        (false, Some(w), None) => Some((w, scale(rh as u64, w as u64, rw as u64))),
        (false, None, Some(h)) => Some((scale(rw as u64, h as u64, rh as u64), h)),
        _ => None,
    }
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn source() -> &'static DynamicImage {
    static SOURCE: OnceLock<DynamicImage> = OnceLock::new();
    SOURCE.get_or_init(|| {
        let img = image::load_from_memory_with_format(SOURCE_PNG, ImageFormat::Png)
            .expect("the committed fixture PNG decodes");
        DynamicImage::ImageRgb8(img.to_rgb8())
    })
}

/// Memoized encodes, keyed by rendition, shared by every fixture of the process.
/// Concurrent requests for the same rendition wait for one encode.
pub struct Renderer {
    done: Mutex<HashMap<Rendition, Arc<EncodeOnce>>>,
}

/// One rendition's bytes, encoded by whichever request asks first.
type EncodeOnce = OnceLock<Arc<Vec<u8>>>;

impl Renderer {
    pub fn shared() -> &'static Renderer {
        static SHARED: OnceLock<Renderer> = OnceLock::new();
        SHARED.get_or_init(|| Renderer {
            done: Mutex::new(HashMap::new()),
        })
    }

    /// The bytes of a rendition if they are already encoded.
    pub fn get(&self, r: Rendition) -> Option<Arc<Vec<u8>>> {
        let done = self.done.lock().unwrap();
        done.get(&r).and_then(|cell| cell.get().cloned())
    }

    pub fn render(&self, r: Rendition) -> Arc<Vec<u8>> {
        let cell = self.done.lock().unwrap().entry(r).or_default().clone();
        cell.get_or_init(|| Arc::new(encode(r))).clone()
    }
}

/// Uses only the non-generic methods of `DynamicImage`, which the optimized image
/// crate already holds compiled: a fixture in a debug test build stays fast.
fn encode(r: Rendition) -> Vec<u8> {
    let src = source();
    // Crop positions derived from the crop index, inside the picture.
    let (sw, sh) = (src.width(), src.height());
    let (cw, ch) = if r.width >= r.height {
        (
            CROP_EDGE,
            ((CROP_EDGE as u64 * r.height as u64) / r.width as u64).max(1) as u32,
        )
    } else {
        (
            ((CROP_EDGE as u64 * r.width as u64) / r.height as u64).max(1) as u32,
            CROP_EDGE,
        )
    };
    let h = fnv1a(&r.crop.to_le_bytes());
    let x = (h % (sw - cw) as u64) as u32;
    let y = ((h >> 32) % (sh - ch) as u64) as u32;
    let mut img = src
        .crop_imm(x, y, cw, ch)
        .resize_exact(r.width, r.height, FilterType::Triangle);
    if r.gray {
        img = DynamicImage::ImageLuma8(img.to_luma8());
    }
    let mut out = Cursor::new(Vec::new());
    let format = if r.png {
        ImageFormat::Png
    } else {
        ImageFormat::Jpeg
    };
    img.write_to(&mut out, format)
        .expect("encoding to memory cannot fail");
    out.into_inner()
}

/// A JPEG whose header is intact (it sniffs as a JPEG and has the right dimensions and
/// length) but whose entropy-coded data is garbage, as a flipped or overwritten disk
/// block would leave it. The end-of-image marker is kept.
pub fn corrupt_jpeg(good: &[u8]) -> Vec<u8> {
    let mut out = good.to_vec();
    let sos = good
        .windows(2)
        .position(|w| w == [0xFF, 0xDA])
        .unwrap_or(good.len().min(64));
    let start = (sos + 20).min(out.len());
    let end = out.len().saturating_sub(2).max(start);
    let mut h: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in &mut out[start..end] {
        h = h
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = (h >> 56) as u8;
    }
    out
}

/// A valid PNG of `width` x `height` 16-bit RGBA, every pixel zero: 8192 x 8192 is 512 MiB
/// of pixels in a file of about 520 KB. Compressed row by row (never held decoded) and
/// memoized per size (made once: concurrent callers wait for it).
pub fn pixel_bomb(width: u32, height: u32) -> Arc<Vec<u8>> {
    type Made = HashMap<(u32, u32), Arc<Vec<u8>>>;
    static DONE: OnceLock<Mutex<Made>> = OnceLock::new();
    let mut done = DONE.get_or_init(Default::default).lock().unwrap();
    if let Some(png) = done.get(&(width, height)) {
        return png.clone();
    }
    use std::io::Write as _;
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    let row = vec![0u8; 1 + width as usize * 8]; // filter byte "none", then the pixels
    for _ in 0..height {
        z.write_all(&row).unwrap();
    }
    let idat = z.finish().unwrap();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut chunk = |kind: &[u8], data: &[u8]| {
        png.extend((data.len() as u32).to_be_bytes());
        let start = png.len();
        png.extend_from_slice(kind);
        png.extend_from_slice(data);
        let crc = crc32fast::hash(&png[start..]);
        png.extend(crc.to_be_bytes());
    };
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([16, 6, 0, 0, 0]); // 16-bit, RGBA, deflate, adaptive filter, no interlace
    chunk(b"IHDR", &ihdr);
    chunk(b"IDAT", &idat);
    chunk(b"IEND", &[]);
    let png = Arc::new(png);
    done.insert((width, height), png.clone());
    png
}
