//! Normalize: turn a decoded image into exactly S x S 8-bit RGB, and RGB into the gray
//! that grayscale formats store.
//!
//! Whatever the server sent (RGB, grayscale, RGBA, CMYK or progressive JPEG, 16-bit PNG,
//! any size) comes out as `S * S * 3` bytes, row-major, stretched (never cropped or padded)
//! with a Lanczos3 filter. Decoding, with its caps, is [`crate::decode`]'s job. This
//! module knows nothing about output formats.

use std::cell::RefCell;

use fast_image_resize::images::{Image as ResizeImage, ImageRef as ResizeImageRef};
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, RgbImage};

pub use crate::decode::MAX_IMAGE_EDGE;
use crate::decode::{self, DecodeError, SourceFormat, SourceImage, SourceLayout};

/// Why an image file could not be normalized. It is then left out of the artifacts.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error("resize failed: {0}")]
    Resize(String),
    #[error("size must be between 1 and {MAX_IMAGE_EDGE}, got {0}")]
    BadSize(u32),
}

/// An image normalized to S x S RGB, with what was done to it.
#[derive(Debug, Clone)]
pub struct NormalizedImage {
    /// `size * size * 3` bytes, row-major RGB.
    pub pixels: Vec<u8>,
    pub size: u32,
    pub source: SourceImage,
    /// The source was not S x S and was resized.
    pub resized: bool,
}

impl NormalizedImage {
    /// The layout converted from, if the source was not already 8-bit RGB.
    pub fn converted_from(&self) -> Option<SourceLayout> {
        (self.source.layout != SourceLayout::Rgb8).then_some(self.source.layout)
    }

    /// True when the fetched file is already what the artifacts need: an S x S, 8-bit,
    /// three-component JPEG. Its bytes can then be stored unchanged, and decoding them
    /// gives exactly `pixels`.
    pub fn source_is_final_jpeg(&self) -> bool {
        self.source.format == SourceFormat::Jpeg
            && self.source.layout == SourceLayout::Rgb8
            && !self.resized
    }
}

/// Decode `bytes` and normalize to `size` x `size` RGB.
pub fn normalize(bytes: &[u8], size: u32) -> Result<NormalizedImage, NormalizeError> {
    let decoded = decode::decode(bytes)?;
    let (pixels, resized) = to_square_rgb(decoded.image, size)?;
    Ok(NormalizedImage {
        pixels,
        size,
        source: decoded.source,
        resized,
    })
}

/// The 8-bit gray of RGB pixels, exactly as Pillow's `convert("L")` computes it: ITU-R
/// 601-2 luma (299/1000 R + 587/1000 G + 114/1000 B) in 16-bit fixed point, rounded half
/// up (`L24` in Pillow's libImaging/Convert.c). The weights sum to 65536, so gray input
/// keeps its level.
pub fn to_gray(rgb: &[u8]) -> Vec<u8> {
    rgb.chunks_exact(3)
        .map(|p| luma(p[0], p[1], p[2]))
        .collect()
}

/// One pixel of [`to_gray`].
pub fn luma(r: u8, g: u8, b: u8) -> u8 {
    ((u32::from(r) * 19595 + u32::from(g) * 38470 + u32::from(b) * 7471 + 0x8000) >> 16) as u8
}

/// Convert to 8-bit RGB and resize to `size` x `size`; returns the pixels and whether
/// a resize happened.
pub fn to_square_rgb(image: DynamicImage, size: u32) -> Result<(Vec<u8>, bool), NormalizeError> {
    check_size(size)?;
    let rgb = to_rgb(image);
    if rgb.width() == size && rgb.height() == size {
        return Ok((rgb.into_raw(), false));
    }
    Ok((resize(&rgb, size)?, true))
}

/// 8-bit RGB: alpha dropped (as PIL's convert("RGB") does), 16-bit scaled to 8-bit.
pub fn to_rgb(image: DynamicImage) -> RgbImage {
    match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    }
}

/// `rgb` stretched to `size` x `size` with Lanczos3, without taking it: several sizes are
/// made from one decoded image.
pub fn resize(rgb: &RgbImage, size: u32) -> Result<Vec<u8>, NormalizeError> {
    check_size(size)?;
    let src = ResizeImageRef::new(rgb.width(), rgb.height(), rgb.as_raw(), PixelType::U8x3)
        .map_err(|e| NormalizeError::Resize(e.to_string()))?;
    let mut dst = ResizeImage::new(size, size, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    RESIZER
        .with_borrow_mut(|r| r.resize(&src, &mut dst, &options))
        .map_err(|e| NormalizeError::Resize(e.to_string()))?;
    Ok(dst.into_vec())
}

thread_local! {
    /// A resizer per thread: it keeps its work buffers from one image to the next.
    static RESIZER: RefCell<Resizer> = RefCell::new(Resizer::new());
}

fn check_size(size: u32) -> Result<(), NormalizeError> {
    if size == 0 || size > MAX_IMAGE_EDGE {
        return Err(NormalizeError::BadSize(size));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::ImageEncoder;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x * 7) as u8, (y * 5) as u8, ((x + y) * 3) as u8])
        });
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .write_image(img.as_raw(), width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn gray_is_pillows_convert_l() {
        // Hand values of L = R*299/1000 + G*587/1000 + B*114/1000, rounded half up.
        assert_eq!(luma(0, 0, 0), 0);
        assert_eq!(luma(255, 255, 255), 255);
        assert_eq!(luma(255, 0, 0), 76); // 76.245
        assert_eq!(luma(0, 255, 0), 150); // 149.685
        assert_eq!(luma(0, 0, 255), 29); // 29.07
        assert_eq!(luma(100, 150, 200), 141); // 29.9 + 88.05 + 22.8 = 140.75
        assert_eq!(luma(10, 20, 30), 18); // 2.99 + 11.74 + 3.42 = 18.15
        assert_eq!(luma(1, 0, 0), 0); // 0.299
        assert_eq!(luma(2, 0, 0), 1); // 0.598
        // Gray stays gray, at every level.
        assert!((0..=255u8).all(|v| luma(v, v, v) == v));
        assert_eq!(to_gray(&[255, 0, 0, 0, 255, 0, 7, 7, 7]), [76, 150, 7]);
    }

    #[test]
    fn square_rgb_jpeg_is_kept_as_is() {
        let n = normalize(&jpeg(32, 32), 32).unwrap();
        assert_eq!(n.pixels.len(), 32 * 32 * 3);
        assert!(!n.resized);
        assert!(n.source_is_final_jpeg());
        assert_eq!(n.converted_from(), None);
        assert_eq!(decode::jpeg_components(&jpeg(8, 8)), Some(3));
    }

    #[test]
    fn non_square_is_stretched() {
        let n = normalize(&jpeg(40, 23), 16).unwrap();
        assert_eq!(n.pixels.len(), 16 * 16 * 3);
        assert!(n.resized);
        assert!(!n.source_is_final_jpeg());
    }

    /// A PNG whose header claims `width` x `height` (the pixel data is a 1 x 1 image's).
    fn png_claiming(width: u32, height: u32) -> Vec<u8> {
        let mut png = Vec::new();
        image::codecs::png::PngEncoder::new(&mut png)
            .write_image(&[1, 2, 3], 1, 1, image::ExtendedColorType::Rgb8)
            .unwrap();
        // IHDR data starts at byte 16: width, height; its CRC follows the 13 data bytes.
        png[16..20].copy_from_slice(&width.to_be_bytes());
        png[20..24].copy_from_slice(&height.to_be_bytes());
        let crc = crc32fast::hash(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        png
    }

    #[test]
    fn huge_dimensions_are_refused_before_decoding() {
        for (w, h) in [(100_000, 10), (10, 9000), (50_000, 50_000)] {
            assert!(
                matches!(
                    normalize(&png_claiming(w, h), 16),
                    Err(NormalizeError::Decode(DecodeError::TooLarge { .. }))
                ),
                "{w} x {h}"
            );
        }
        // Within the edge cap but a 512 MiB 16-bit RGBA buffer: refused by the allocation cap.
        let mut png = png_claiming(8192, 8192);
        png[24] = 16; // bit depth
        png[25] = 6; // RGBA
        let crc = crc32fast::hash(&png[12..29]);
        png[29..33].copy_from_slice(&crc.to_be_bytes());
        assert!(normalize(&png, 16).is_err());
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(normalize(b"not an image at all", 16).is_err());
        assert!(normalize(&[0xFF, 0xD8, 0xFF], 16).is_err());
        let mut truncated = jpeg(32, 32);
        truncated.truncate(100);
        assert!(normalize(&truncated, 16).is_err());
        assert!(matches!(
            normalize(&jpeg(8, 8), 0),
            Err(NormalizeError::BadSize(0))
        ));
    }
}
