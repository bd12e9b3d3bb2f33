//! The gate in front of the cache: a body is stored only if it is an image of sane
//! dimensions that decodes completely. An HTML error page served with status 200, a
//! truncated or corrupt JPEG never becomes a cache entry.

use std::io::Cursor;

use image::{DynamicImage, ImageReader};

use crate::normalize;

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Invalid {
    /// Not a recognised image, or it does not decode. Worth retrying: servers under load
    /// do serve error pages and cut responses.
    Undecodable(String),
    /// An image whose dimensions are out of bounds: the server means it, so not retried.
    BadDimensions { width: u32, height: u32 },
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Invalid::Undecodable(why) => write!(f, "not a decodable image: {why}"),
            Invalid::BadDimensions { width, height } => {
                write!(f, "image dimensions {width}x{height} out of bounds")
            }
        }
    }
}

/// Check that `bytes` hold an image with both edges in `1..=max_edge` that decodes.
/// The dimensions are read from the header before any pixel is decoded. A JPEG's pixels
/// are returned: decoded by the decoder pack uses, they can be packed as they are.
pub(crate) fn check_image(bytes: &[u8], max_edge: u32) -> Result<Option<DynamicImage>, Invalid> {
    let reader = || {
        ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| Invalid::Undecodable(e.to_string()))
    };
    let r = reader()?;
    if r.format().is_none() {
        return Err(Invalid::Undecodable(describe_unknown(bytes)));
    }
    let (width, height) = r
        .into_dimensions()
        .map_err(|e| Invalid::Undecodable(e.to_string()))?;
    if width == 0 || height == 0 || width > max_edge || height > max_edge {
        return Err(Invalid::BadDimensions { width, height });
    }
    let mut decoded = None;
    if is_jpeg(bytes) {
        decoded = Some(check_jpeg(bytes, max_edge)?);
    } else {
        let mut r = reader()?;
        // The header was checked; keep the decoder's own allocation limit in line with it.
        let mut limits = image::Limits::default();
        limits.max_image_width = Some(max_edge);
        limits.max_image_height = Some(max_edge);
        r.limits(limits);
        r.decode()
            .map_err(|e| Invalid::Undecodable(e.to_string()))?;
    }
    Ok(decoded)
}

fn is_jpeg(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0xFF, 0xD8, 0xFF])
}

/// A JPEG must decode in strict mode and end with its end-of-image marker. The lenient
/// default decoder fills a cut or garbled scan with grey and reports success, which
/// would let a damaged file into the cache for good.
fn check_jpeg(bytes: &[u8], max_edge: u32) -> Result<DynamicImage, Invalid> {
    let tail = &bytes[bytes.len().saturating_sub(64)..];
    if !tail.windows(2).any(|w| w == [0xFF, 0xD9]) {
        return Err(Invalid::Undecodable(
            "JPEG without its end-of-image marker (cut short)".to_string(),
        ));
    }
    normalize::decode_jpeg(bytes, max_edge)
        .map_err(|e| Invalid::Undecodable(format!("corrupt JPEG: {e}")))
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
            normalize::decode(&good).unwrap().image.as_bytes()
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
}
