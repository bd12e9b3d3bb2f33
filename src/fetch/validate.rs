//! The gate in front of the cache: a body is stored only if it is an image of sane
//! dimensions that decodes completely. An HTML error page served with status 200, a
//! truncated or corrupt JPEG never becomes a cache entry. Why a body was refused is a
//! value ([`Invalid`]), and so is the [`FailureCause`] it makes.
//!
//! Validation decodes with pack's decoder and pack's pixel limit
//! ([`decode::MAX_DECODED_BYTES`]), so what is cached can be packed; and a
//! [`DecodeGate`] bounds the decodes running at once, in number and in memory, so that
//! no server can make the fetcher hold more pixels than its budget.

use std::sync::Arc;

use image::DynamicImage;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::decode::{self, DecodeError, DecodedSize};

use super::FailureCause;

/// Memory for the pixels of the validation decodes running at once: two images at the
/// pixel limit, or many ordinary ones (a 256 x 256 JPEG needs 192 KiB).
pub(crate) const DECODE_MEMORY: u64 = 2 * decode::MAX_DECODED_BYTES;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not a recognised image, or it does not decode. Worth retrying: servers under load
    /// do serve error pages and cut responses.
    Undecodable(String),
    /// An image whose dimensions are out of bounds: the server means it, so not retried.
    BadDimensions { width: u32, height: u32 },
    /// An image whose pixels exceed the limit (from its header): not retried either.
    TooLarge(String),
    /// A JPEG without its end-of-image marker: its body was cut short (or its server
    /// holds a cut file). Retried, as a cut transfer is.
    Cut,
}

impl Invalid {
    /// The kind of failure this refusal makes.
    pub(crate) fn cause(&self) -> FailureCause {
        match self {
            Invalid::Cut => FailureCause::Cut,
            Invalid::Undecodable(_) | Invalid::BadDimensions { .. } | Invalid::TooLarge(_) => {
                FailureCause::Invalid
            }
        }
    }

    /// Worth another attempt: servers under load do serve error pages and cut responses.
    pub(crate) fn is_transient(&self) -> bool {
        matches!(self, Invalid::Undecodable(_) | Invalid::Cut)
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Undecodable(why) => write!(f, "not a decodable image: {why}"),
            Invalid::BadDimensions { width, height } => {
                write!(f, "image dimensions {width}x{height} out of bounds")
            }
            Invalid::TooLarge(why) => write!(f, "refused: {why}"),
            Invalid::Cut => write!(f, "not a decodable image: {}", DecodeError::CutShort),
        }
    }
}

/// Read the header of `bytes`: an image with both edges in `1..=max_edge` whose pixels
/// fit the limit, or why not. No pixel is decoded.
pub(crate) fn check_header(bytes: &[u8], max_edge: u32) -> Result<DecodedSize, Invalid> {
    let size =
        decode::decoded_size(bytes, decode::MAX_IMAGE_EDGE.max(max_edge)).map_err(|e| match e {
            DecodeError::UnknownFormat => Invalid::Undecodable(describe_unknown(bytes)),
            DecodeError::TooManyPixels { .. } | DecodeError::TooLarge { .. } => {
                Invalid::TooLarge(e.to_string())
            }
            other => Invalid::Undecodable(other.to_string()),
        })?;
    if size.width > max_edge || size.height > max_edge {
        return Err(Invalid::BadDimensions {
            width: size.width,
            height: size.height,
        });
    }
    Ok(size)
}

/// Check that `bytes` hold an image with both edges in `1..=max_edge`, within the pixel
/// limit, that decodes completely. The header is checked before any pixel is decoded. A
/// JPEG's pixels are returned: decoded by the decoder pack uses, they can be packed as
/// they are.
pub(crate) fn check_image(bytes: &[u8], max_edge: u32) -> Result<Option<DynamicImage>, Invalid> {
    check_header(bytes, max_edge)?;
    let decoded = decode::decode(bytes).map_err(|e| match e {
        DecodeError::TooManyPixels { .. } | DecodeError::TooLarge { .. } => {
            Invalid::TooLarge(e.to_string())
        }
        DecodeError::Jpeg(why) => Invalid::Undecodable(format!("corrupt JPEG: {why}")),
        DecodeError::CutShort => Invalid::Cut,
        other => Invalid::Undecodable(other.to_string()),
    })?;
    Ok((decoded.source.format == decode::SourceFormat::Jpeg).then_some(decoded.image))
}

/// Bounds the validation decodes running at once: at most `jobs` of them (they are CPU
/// work, beside pack's), and pixels of at most [`DECODE_MEMORY`] in all, reserved from
/// each header before decoding.
#[derive(Debug, Clone)]
pub(crate) struct DecodeGate {
    decodes: Arc<Semaphore>,
    /// In KiB.
    memory: Arc<Semaphore>,
}

/// The right to decode one body; its reservations end when it is dropped.
#[derive(Debug)]
pub(crate) struct DecodePermit {
    _memory: OwnedSemaphorePermit,
    _decode: OwnedSemaphorePermit,
}

impl DecodeGate {
    pub(crate) fn new(jobs: usize) -> DecodeGate {
        DecodeGate {
            decodes: Arc::new(Semaphore::new(jobs.max(1))),
            memory: Arc::new(Semaphore::new(kib(DECODE_MEMORY) as usize)),
        }
    }

    /// Check the header of `bytes` and wait for room to decode it. Refused at once (no
    /// waiting) when the header is bad or the image is over the limits.
    pub(crate) async fn admit(&self, bytes: &[u8], max_edge: u32) -> Result<DecodePermit, Invalid> {
        let size = check_header(bytes, max_edge)?;
        let need = kib(size.bytes).clamp(1, kib(DECODE_MEMORY));
        let closed = |_| Invalid::Undecodable("the fetch is shutting down".into());
        let memory = self
            .memory
            .clone()
            .acquire_many_owned(need)
            .await
            .map_err(closed)?;
        let decode = self.decodes.clone().acquire_owned().await.map_err(closed)?;
        Ok(DecodePermit {
            _memory: memory,
            _decode: decode,
        })
    }
}

fn kib(bytes: u64) -> u32 {
    bytes.div_ceil(1024).min(u32::MAX as u64) as u32
}

/// A short hint at what an unrecognised body is, for the failure report.
fn describe_unknown(bytes: &[u8]) -> String {
    let head = &bytes[..bytes.len().min(256)];
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    if text.contains("<html") || text.contains("<!doctype") {
        "an HTML page".to_string()
    } else if bytes.is_empty() {
        "an empty body".to_string()
    } else {
        format!("unrecognised format ({} bytes)", bytes.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8, y as u8, 7]));
        let mut out = Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn accepts_a_jpeg_and_refuses_the_rest() {
        let good = jpeg(40, 30);
        let pixels = check_image(&good, 100).unwrap().expect("a JPEG is decoded");
        assert_eq!((pixels.width(), pixels.height()), (40, 30));
        assert_eq!(
            pixels.as_bytes(),
            decode::decode(&good).unwrap().image.as_bytes()
        );
        assert_eq!(
            check_image(&good, 35).err(),
            Some(Invalid::BadDimensions {
                width: 40,
                height: 30
            })
        );
        let html = b"<!DOCTYPE html><html><body>busy</body></html>";
        assert!(
            matches!(check_image(html, 100), Err(Invalid::Undecodable(m)) if m.contains("HTML"))
        );
        // What the body is decides the cause: an HTML page is not an image, a JPEG without
        // its end is a cut one.
        assert_eq!(
            check_image(html, 100).unwrap_err().cause(),
            FailureCause::Invalid
        );
        assert_eq!(
            check_image(&good, 35).unwrap_err().cause(),
            FailureCause::Invalid
        );
        assert!(check_image(&good[..good.len() / 2], 100).is_err());
        // Cut after the header: the default decoder would fill the rest with grey.
        let sos = good.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        // (A scan cut short and then closed by an end marker still passes: nothing in
        // the file tells it from a valid one.)
        let cut = good[..sos + 30].to_vec();
        assert!(check_image(&cut, 100).is_err());
        // Garbage scan data of the right length, end marker kept.
        let mut garbled = good.clone();
        let n = garbled.len();
        for (i, b) in garbled[sos + 20..n - 2].iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(97).wrapping_add(13);
        }
        assert!(check_image(&garbled, 100).is_err());
        assert!(check_image(b"", 100).is_err());
    }

    #[test]
    fn bytes_after_the_end_of_image_are_accepted_a_cut_is_not() {
        let good = jpeg(40, 30);
        let mut trailing = good.clone();
        // 4 KiB of what editors and servers append, end-of-image markers included.
        trailing.extend((0..4096u32).map(|i| [0xFF, 0xD9, 0x00, 0x41][i as usize % 4]));
        let pixels = check_image(&trailing, 100).unwrap().expect("decoded");
        assert_eq!(
            pixels.as_bytes(),
            check_image(&good, 100).unwrap().unwrap().as_bytes()
        );
        let mut zeros = good.clone();
        zeros.extend(std::iter::repeat_n(0u8, 4096));
        assert!(check_image(&zeros, 100).is_ok());
        // Cut anywhere in the scan, even with 4 KiB appended after the cut: refused.
        let sos = good.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        for cut in [sos + 30, (sos + good.len()) / 2, good.len() - 2] {
            let mut cut_short = good[..cut].to_vec();
            let refused = check_image(&cut_short, 100).unwrap_err();
            assert_eq!(refused, Invalid::Cut, "cut at {cut}");
            assert_eq!(refused.cause(), FailureCause::Cut);
            cut_short.extend(std::iter::repeat_n(0u8, 4096));
            assert!(
                check_image(&cut_short, 100).is_err(),
                "cut at {cut}, padded"
            );
        }
    }

    /// A 1 x 1 PNG whose header claims `width` x `height` 16-bit RGBA: the header alone
    /// must decide.
    fn png_header(width: u32, height: u32) -> Vec<u8> {
        let mut png = Vec::new();
        image::RgbImage::new(1, 1)
            .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png[16..20].copy_from_slice(&width.to_be_bytes());
        png[20..24].copy_from_slice(&height.to_be_bytes());
        png[24] = 16; // bit depth
        png[25] = 6; // RGBA
        let crc = crc32fast::hash(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    #[test]
    fn one_pixel_limit_refuses_bombs_from_the_header() {
        let err = check_image(&png_header(8192, 8192), 8192).unwrap_err();
        assert!(matches!(&err, Invalid::TooLarge(_)), "{err:?}");
        assert!(err.to_string().contains("8192x8192"), "{err}");
        assert!(err.to_string().contains("512 MiB"), "{err}");
        // Within the limit, the header passes (the data is then decoded).
        let size = check_header(&png_header(1024, 1024), 8192).unwrap();
        assert_eq!(size.bytes, 8 << 20);
        // Pack's decoder refuses the same image with the same limit.
        assert!(matches!(
            decode::decode(&png_header(8192, 8192)),
            Err(DecodeError::TooManyPixels { .. })
        ));
    }

    #[tokio::test]
    async fn the_gate_bounds_decodes_in_number_and_memory() {
        let gate = DecodeGate::new(3);
        let small = jpeg(16, 16);
        let a = gate.admit(&small, 100).await.unwrap();
        let _b = gate.admit(&small, 100).await.unwrap();
        let _c = gate.admit(&small, 100).await.unwrap();
        let waiting = tokio::time::timeout(
            std::time::Duration::from_millis(50),
            gate.admit(&small, 100),
        );
        assert!(waiting.await.is_err(), "a fourth decode must wait");
        drop(a);
        let _d = gate.admit(&small, 100).await.unwrap();
        // Memory: at most DECODE_MEMORY of pixels at once, however many jobs.
        let gate = DecodeGate::new(64);
        let big = png_header(2048, 1024); // 16 MiB of 16-bit RGBA
        let mut held = Vec::new();
        for _ in 0..(DECODE_MEMORY / (16 << 20)) {
            held.push(gate.admit(&big, 8192).await.unwrap());
        }
        let waiting =
            tokio::time::timeout(std::time::Duration::from_millis(50), gate.admit(&big, 8192));
        assert!(waiting.await.is_err(), "over the memory budget must wait");
        held.pop();
        assert!(gate.admit(&big, 8192).await.is_ok());
    }
}
