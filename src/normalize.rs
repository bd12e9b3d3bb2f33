//! Normalize: decode a fetched image file and turn it into exactly S x S 8-bit RGB.
//!
//! Whatever the server sent (RGB, grayscale, RGBA, CMYK or progressive JPEG, 16-bit PNG,
//! any size) comes out as `S * S * 3` bytes, row-major, stretched (never cropped or padded)
//! with a Lanczos3 filter. Dimensions are capped before any pixel is decoded, so a hostile
//! file cannot make us allocate gigabytes. This module knows nothing about output formats.

use std::io::Cursor;

use fast_image_resize::images::Image as ResizeImage;
use fast_image_resize::{FilterType, PixelType, ResizeAlg, ResizeOptions, Resizer};
use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// Largest accepted image edge, checked from the header before decoding.
pub const MAX_IMAGE_EDGE: u32 = 8192;
/// Largest decoded pixel buffer of an accepted image, in bytes: the one pixel limit of
/// the fetcher's validation and of pack (an image the fetcher caches can be packed),
/// checked from the header before any pixel is decoded. 32 MiB is 3,344 x 3,344 8-bit RGB,
/// far above the 256-pixel crops KaoKore's URLs ask for; an 8192 x 8192 16-bit RGBA PNG
/// (512 MiB from a 522 KB file) is refused.
pub const MAX_DECODED_BYTES: u64 = 32 << 20;

/// Why an image file could not be normalized. It is then left out of the artifacts.
#[derive(Debug, thiserror::Error)]
pub enum NormalizeError {
    #[error("not a recognized image format")]
    UnknownFormat,
    #[error("cannot decode image: {0}")]
    Decode(#[from] image::ImageError),
    #[error("cannot decode JPEG: {0}")]
    Jpeg(String),
    #[error("image is larger than {max} pixels on an edge, or too large to decode")]
    TooLarge { max: u32 },
    #[error(
        "image of {width}x{height} would decode to {} MiB, more than the limit of {} MiB",
        bytes.div_ceil(1 << 20),
        MAX_DECODED_BYTES >> 20
    )]
    TooManyPixels { width: u32, height: u32, bytes: u64 },
    #[error("JPEG without its end-of-image marker (cut short)")]
    CutShort,
    #[error("image has no pixels")]
    Empty,
    #[error("resize failed: {0}")]
    Resize(String),
    #[error("size must be between 1 and {MAX_IMAGE_EDGE}, got {0}")]
    BadSize(u32),
}

/// The container a fetched file turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceFormat {
    Jpeg,
    Png,
}

/// What a fetched image was before normalization: enough to decide whether its bytes can
/// be kept unchanged and to count the conversions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceImage {
    pub format: SourceFormat,
    pub width: u32,
    pub height: u32,
    /// The pixel layout as stored in the file (for JPEG, from its frame header: a CMYK
    /// JPEG decodes to RGB but is reported here as CMYK).
    pub layout: SourceLayout,
}

/// The pixel layout of a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceLayout {
    Rgb8,
    Gray8,
    GrayAlpha8,
    Rgba8,
    Cmyk8,
    Gray16,
    GrayAlpha16,
    Rgb16,
    Rgba16,
    Other,
}

impl SourceLayout {
    /// The name used in counts (`converted_from`).
    pub fn name(self) -> &'static str {
        match self {
            SourceLayout::Rgb8 => "rgb8",
            SourceLayout::Gray8 => "gray8",
            SourceLayout::GrayAlpha8 => "gray_alpha8",
            SourceLayout::Rgba8 => "rgba8",
            SourceLayout::Cmyk8 => "cmyk8",
            SourceLayout::Gray16 => "gray16",
            SourceLayout::GrayAlpha16 => "gray_alpha16",
            SourceLayout::Rgb16 => "rgb16",
            SourceLayout::Rgba16 => "rgba16",
            SourceLayout::Other => "other",
        }
    }

    fn of(color: ColorType) -> SourceLayout {
        match color {
            ColorType::L8 => SourceLayout::Gray8,
            ColorType::La8 => SourceLayout::GrayAlpha8,
            ColorType::Rgb8 => SourceLayout::Rgb8,
            ColorType::Rgba8 => SourceLayout::Rgba8,
            ColorType::L16 => SourceLayout::Gray16,
            ColorType::La16 => SourceLayout::GrayAlpha16,
            ColorType::Rgb16 => SourceLayout::Rgb16,
            ColorType::Rgba16 => SourceLayout::Rgba16,
            _ => SourceLayout::Other,
        }
    }
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
    let decoded = decode(bytes)?;
    let (pixels, resized) = to_square_rgb(decoded.image, size)?;
    Ok(NormalizedImage {
        pixels,
        size,
        source: decoded.source,
        resized,
    })
}

/// A decoded image and what it was.
pub struct Decoded {
    pub image: DynamicImage,
    pub source: SourceImage,
}

/// Decode with dimension and allocation caps checked from the header first.
pub fn decode(bytes: &[u8]) -> Result<Decoded, NormalizeError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let image = decode_jpeg(bytes, MAX_IMAGE_EDGE)?;
        return Ok(Decoded::jpeg(bytes, image));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| NormalizeError::Decode(image::ImageError::IoError(e)))?;
    let format = match reader.format() {
        Some(ImageFormat::Jpeg) => SourceFormat::Jpeg,
        Some(ImageFormat::Png) => SourceFormat::Png,
        _ => return Err(NormalizeError::UnknownFormat),
    };
    // The caps are checked against the header before any pixel is decoded: the edges
    // when the header is read, then the decoded size (to name it in the error), and the
    // decoder holds to the same size for its own buffers.
    reader.limits(header_limits());
    let mut decoder = reader.into_decoder().map_err(limit_error)?;
    let (width, height) = decoder.dimensions();
    check_decoded_size(width, height, decoder.total_bytes())?;
    let mut limits = header_limits();
    limits.max_alloc = Some(MAX_DECODED_BYTES);
    decoder.set_limits(limits).map_err(limit_error)?;
    let image = DynamicImage::from_decoder(decoder).map_err(limit_error)?;
    if image.width() == 0 || image.height() == 0 {
        return Err(NormalizeError::Empty);
    }
    if format == SourceFormat::Jpeg {
        return Ok(Decoded::jpeg(bytes, image));
    }
    Ok(Decoded {
        source: SourceImage {
            format,
            width: image.width(),
            height: image.height(),
            layout: SourceLayout::of(image.color()),
        },
        image,
    })
}

/// Limits for reading a header: edges capped; the allocation cap is that of the largest
/// image of capped edges (an accounting figure, nothing is allocated), so that the decoded
/// size is checked by [`check_decoded_size`] with a clear error.
fn header_limits() -> Limits {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_IMAGE_EDGE);
    limits.max_image_height = Some(MAX_IMAGE_EDGE);
    limits.max_alloc = Some(u64::from(MAX_IMAGE_EDGE).pow(2) * 8);
    limits
}

fn limit_error(e: image::ImageError) -> NormalizeError {
    match e {
        image::ImageError::Limits(_) => NormalizeError::TooLarge {
            max: MAX_IMAGE_EDGE,
        },
        other => NormalizeError::Decode(other),
    }
}

/// Refuse an image whose decoded pixels would exceed [`MAX_DECODED_BYTES`].
fn check_decoded_size(width: u32, height: u32, bytes: u64) -> Result<(), NormalizeError> {
    if bytes > MAX_DECODED_BYTES {
        return Err(NormalizeError::TooManyPixels {
            width,
            height,
            bytes,
        });
    }
    Ok(())
}

/// What decoding an image would produce, read from its header alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodedSize {
    pub width: u32,
    pub height: u32,
    /// The decoded pixel buffer, in bytes.
    pub bytes: u64,
}

/// The dimensions and decoded size of a JPEG or PNG, from its header (no pixel is
/// decoded). An edge above `max_edge` or a size above [`MAX_DECODED_BYTES`] is an error.
pub fn decoded_size(bytes: &[u8], max_edge: u32) -> Result<DecodedSize, NormalizeError> {
    let (width, height, size) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let (decoder, gray) = jpeg_headers(bytes, max_edge)?;
        let (w, h) = decoder.dimensions().ok_or(NormalizeError::Empty)?;
        let channels = if gray { 1 } else { 3 };
        (w as u32, h as u32, w as u64 * h as u64 * channels)
    } else {
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| NormalizeError::Decode(image::ImageError::IoError(e)))?;
        if !matches!(reader.format(), Some(ImageFormat::Png | ImageFormat::Jpeg)) {
            return Err(NormalizeError::UnknownFormat);
        }
        reader.limits(header_limits());
        let decoder = reader.into_decoder().map_err(limit_error)?;
        let (w, h) = decoder.dimensions();
        if w > max_edge || h > max_edge {
            return Err(NormalizeError::TooLarge { max: max_edge });
        }
        (w, h, decoder.total_bytes())
    };
    if width == 0 || height == 0 {
        return Err(NormalizeError::Empty);
    }
    check_decoded_size(width, height, size)?;
    Ok(DecodedSize {
        width,
        height,
        bytes: size,
    })
}

impl Decoded {
    /// A JPEG decoded by [`decode_jpeg`] (here or while it was fetched) from `bytes`.
    pub fn jpeg(bytes: &[u8], image: DynamicImage) -> Decoded {
        // The decoder hands CMYK/YCCK out as RGB; the frame header tells the truth.
        let layout = match jpeg_components(bytes) {
            Some(4) => SourceLayout::Cmyk8,
            Some(3) | Some(1) => SourceLayout::of(image.color()),
            _ => SourceLayout::Other,
        };
        Decoded {
            source: SourceImage {
                format: SourceFormat::Jpeg,
                width: image.width(),
                height: image.height(),
                layout,
            },
            image,
        }
    }
}

/// The one JPEG decoder of kaokore: zune-jpeg in strict mode, edges capped at `max_edge`
/// from the header. A cut or garbled scan is an error (the lenient mode fills it with
/// grey); grayscale stays one channel, everything else comes out RGB. The fetcher
/// validates bodies with it and pack decodes with it, so an image decoded while it was
/// fetched can be packed without decoding it again, with the same pixels.
///
/// A JPEG must also hold its end-of-image marker after its first scan: the strict decoder
/// does not notice every cut, and nothing else tells a file cut at the end of a row of
/// blocks. Bytes after that marker (which web servers and editors do append) are ignored.
pub fn decode_jpeg(bytes: &[u8], max_edge: u32) -> Result<DynamicImage, NormalizeError> {
    let (mut decoder, gray) = jpeg_headers(bytes, max_edge)?;
    if !has_end_of_image(bytes) {
        return Err(NormalizeError::CutShort);
    }
    if let Some((w, h)) = decoder.dimensions() {
        let channels = if gray { 1 } else { 3 };
        check_decoded_size(w as u32, h as u32, w as u64 * h as u64 * channels)?;
    }
    let pixels = decoder.decode().map_err(|e| jpeg_error(e, max_edge))?;
    let (width, height) = decoder.dimensions().ok_or(NormalizeError::Empty)?;
    let (width, height) = (width as u32, height as u32);
    if width == 0 || height == 0 {
        return Err(NormalizeError::Empty);
    }
    let image = if gray {
        image::GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
    };
    image.ok_or_else(|| NormalizeError::Jpeg("decoded size does not match the header".into()))
}

type JpegDecoder<'a> = zune_jpeg::JpegDecoder<zune_core::bytestream::ZCursor<&'a [u8]>>;

/// A strict zune-jpeg decoder with its headers read (edges capped at `max_edge`) and its
/// output set to one channel for grayscale, RGB for the rest; and whether it is gray.
fn jpeg_headers(bytes: &[u8], max_edge: u32) -> Result<(JpegDecoder<'_>, bool), NormalizeError> {
    use zune_core::colorspace::ColorSpace;
    let options = zune_core::options::DecoderOptions::default()
        .set_strict_mode(true)
        .set_max_width(max_edge as usize)
        .set_max_height(max_edge as usize);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(
        zune_core::bytestream::ZCursor::new(bytes),
        options,
    );
    decoder
        .decode_headers()
        .map_err(|e| jpeg_error(e, max_edge))?;
    let gray = matches!(
        decoder.input_colorspace(),
        Some(ColorSpace::Luma | ColorSpace::LumaA)
    );
    let out = if gray {
        ColorSpace::Luma
    } else {
        ColorSpace::RGB
    };
    decoder.set_options(decoder.options().jpeg_set_out_colorspace(out));
    Ok((decoder, gray))
}

fn jpeg_error(e: zune_jpeg::errors::DecodeErrors, max_edge: u32) -> NormalizeError {
    match e {
        zune_jpeg::errors::DecodeErrors::LargeDimensions(_) => {
            NormalizeError::TooLarge { max: max_edge }
        }
        other => NormalizeError::Jpeg(format!("{other:?}")),
    }
}

/// Whether an end-of-image marker follows the start of the first scan. Inside
/// entropy-coded data a 0xFF byte is always followed by 0x00 or a restart marker, so the
/// first 0xFF 0xD9 there is the image's end, whatever bytes follow it. Markers before the
/// scan are skipped by their lengths, so that an EXIF thumbnail's own end marker does not
/// count.
fn has_end_of_image(bytes: &[u8]) -> bool {
    let Some(scan) = first_scan(bytes) else {
        return false;
    };
    bytes[scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

/// The offset of the first start-of-scan marker, found by walking the marker segments.
fn first_scan(bytes: &[u8]) -> Option<usize> {
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    let mut i = 2;
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1;
            continue;
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += 2;
            continue;
        }
        if marker == 0xDA {
            return Some(i);
        }
        i += 2 + u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
    }
    None
}

/// Convert to 8-bit RGB and resize to `size` x `size`; returns the pixels and whether
/// a resize happened.
pub fn to_square_rgb(image: DynamicImage, size: u32) -> Result<(Vec<u8>, bool), NormalizeError> {
    if size == 0 || size > MAX_IMAGE_EDGE {
        return Err(NormalizeError::BadSize(size));
    }
    let (width, height) = (image.width(), image.height());
    // to_rgb8 drops alpha (as PIL's convert("RGB") does) and scales 16-bit to 8-bit.
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    if width == size && height == size {
        return Ok((rgb.into_raw(), false));
    }
    let src = ResizeImage::from_vec_u8(width, height, rgb.into_raw(), PixelType::U8x3)
        .map_err(|e| NormalizeError::Resize(e.to_string()))?;
    let mut dst = ResizeImage::new(size, size, PixelType::U8x3);
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&src, &mut dst, &options)
        .map_err(|e| NormalizeError::Resize(e.to_string()))?;
    Ok((dst.into_vec(), true))
}

/// The component count of a JPEG's frame header (SOF0..SOF15 except DHT/JPG/DAC), or
/// `None` if no frame header is found before the scan.
pub fn jpeg_components(bytes: &[u8]) -> Option<u8> {
    let mut i = 2; // after SOI
    if bytes.get(..2)? != [0xFF, 0xD8] {
        return None;
    }
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xFF {
            return None;
        }
        let marker = bytes[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += 2;
            continue;
        }
        let len = u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize;
        let is_frame = (0xC0..=0xCF).contains(&marker) && !matches!(marker, 0xC4 | 0xC8 | 0xCC);
        if is_frame {
            return bytes.get(i + 9).copied();
        }
        if marker == 0xDA {
            return None;
        }
        i += 2 + len;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageEncoder, RgbImage};

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
    fn square_rgb_jpeg_is_kept_as_is() {
        let n = normalize(&jpeg(32, 32), 32).unwrap();
        assert_eq!(n.pixels.len(), 32 * 32 * 3);
        assert!(!n.resized);
        assert!(n.source_is_final_jpeg());
        assert_eq!(n.converted_from(), None);
        assert_eq!(jpeg_components(&jpeg(8, 8)), Some(3));
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
                    Err(NormalizeError::TooLarge { .. })
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
