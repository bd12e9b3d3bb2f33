//! Decode: the one image decoder of kaokore, shared by the fetcher's validation (a body
//! is cached only if it decodes) and by pack (which decodes what it packs), so that what
//! is cached can be packed and a JPEG decoded while fetched need not be decoded again.
//!
//! Dimensions and the decoded size are capped from the header before any pixel is
//! decoded, so a hostile file cannot make us allocate gigabytes. Nothing here resizes or
//! knows about output formats (see [`crate::normalize`]).

use std::io::Cursor;

use image::{ColorType, DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits};

/// Largest accepted image edge, checked from the header before decoding.
pub const MAX_IMAGE_EDGE: u32 = 8192;
/// Largest decoded pixel buffer of an accepted image, in bytes: the one pixel limit of
/// the fetcher's validation and of pack (an image the fetcher caches can be packed),
/// checked from the header before any pixel is decoded. 32 MiB is 3,344 x 3,344 8-bit RGB,
/// far above the 256-pixel crops KaoKore's URLs ask for; an 8192 x 8192 16-bit RGBA PNG
/// (512 MiB from a 522 KB file) is refused.
pub const MAX_DECODED_BYTES: u64 = 32 << 20;

/// Why an image file could not be decoded. It is then refused by the fetcher, or left
/// out of the artifacts by pack.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
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

    pub(crate) fn of(color: ColorType) -> SourceLayout {
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

/// A decoded image and what it was.
pub struct Decoded {
    pub image: DynamicImage,
    pub source: SourceImage,
}

/// Decode with dimension and allocation caps checked from the header first.
pub fn decode(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let image = decode_jpeg(bytes, MAX_IMAGE_EDGE)?;
        return Ok(Decoded::jpeg(bytes, image));
    }
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| DecodeError::Decode(image::ImageError::IoError(e)))?;
    let format = match reader.format() {
        Some(ImageFormat::Jpeg) => SourceFormat::Jpeg,
        Some(ImageFormat::Png) => SourceFormat::Png,
        _ => return Err(DecodeError::UnknownFormat),
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
        return Err(DecodeError::Empty);
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

fn limit_error(e: image::ImageError) -> DecodeError {
    match e {
        image::ImageError::Limits(_) => DecodeError::TooLarge {
            max: MAX_IMAGE_EDGE,
        },
        other => DecodeError::Decode(other),
    }
}

/// Refuse an image whose decoded pixels would exceed [`MAX_DECODED_BYTES`].
fn check_decoded_size(width: u32, height: u32, bytes: u64) -> Result<(), DecodeError> {
    if bytes > MAX_DECODED_BYTES {
        return Err(DecodeError::TooManyPixels {
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
pub fn decoded_size(bytes: &[u8], max_edge: u32) -> Result<DecodedSize, DecodeError> {
    let (width, height, size) = if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        let (decoder, gray) = jpeg_headers(bytes, max_edge)?;
        let (w, h) = decoder.dimensions().ok_or(DecodeError::Empty)?;
        let channels = if gray { 1 } else { 3 };
        (w as u32, h as u32, w as u64 * h as u64 * channels)
    } else {
        let mut reader = ImageReader::new(Cursor::new(bytes))
            .with_guessed_format()
            .map_err(|e| DecodeError::Decode(image::ImageError::IoError(e)))?;
        if !matches!(reader.format(), Some(ImageFormat::Png | ImageFormat::Jpeg)) {
            return Err(DecodeError::UnknownFormat);
        }
        reader.limits(header_limits());
        let decoder = reader.into_decoder().map_err(limit_error)?;
        let (w, h) = decoder.dimensions();
        if w > max_edge || h > max_edge {
            return Err(DecodeError::TooLarge { max: max_edge });
        }
        (w, h, decoder.total_bytes())
    };
    if width == 0 || height == 0 {
        return Err(DecodeError::Empty);
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
pub fn decode_jpeg(bytes: &[u8], max_edge: u32) -> Result<DynamicImage, DecodeError> {
    let (mut decoder, gray) = jpeg_headers(bytes, max_edge)?;
    if !has_end_of_image(bytes) {
        return Err(DecodeError::CutShort);
    }
    if let Some((w, h)) = decoder.dimensions() {
        let channels = if gray { 1 } else { 3 };
        check_decoded_size(w as u32, h as u32, w as u64 * h as u64 * channels)?;
    }
    let pixels = decoder.decode().map_err(|e| jpeg_error(e, max_edge))?;
    let (width, height) = decoder.dimensions().ok_or(DecodeError::Empty)?;
    let (width, height) = (width as u32, height as u32);
    if width == 0 || height == 0 {
        return Err(DecodeError::Empty);
    }
    let image = if gray {
        image::GrayImage::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8)
    } else {
        image::RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
    };
    image.ok_or_else(|| DecodeError::Jpeg("decoded size does not match the header".into()))
}

type JpegDecoder<'a> = zune_jpeg::JpegDecoder<zune_core::bytestream::ZCursor<&'a [u8]>>;

/// A strict zune-jpeg decoder with its headers read (edges capped at `max_edge`) and its
/// output set to one channel for grayscale, RGB for the rest; and whether it is gray.
fn jpeg_headers(bytes: &[u8], max_edge: u32) -> Result<(JpegDecoder<'_>, bool), DecodeError> {
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

fn jpeg_error(e: zune_jpeg::errors::DecodeErrors, max_edge: u32) -> DecodeError {
    match e {
        zune_jpeg::errors::DecodeErrors::LargeDimensions(_) => {
            DecodeError::TooLarge { max: max_edge }
        }
        other => DecodeError::Jpeg(format!("{other:?}")),
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
