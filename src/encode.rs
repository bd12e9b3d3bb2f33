//! Encode: the bytes each artifact needs from one normalized image, made on the CPU pool.
//!
//! The expensive part of idx and npz is deflating 1.8 GB of pixels. Each image's pixel rows
//! are deflated here as an independent, byte-aligned, full-flushed raw-deflate segment with
//! its CRC-32, so the pack writers only concatenate: the same segments become both the
//! gzip stream of the idx file and the zip member of the npz file (compress once, write
//! twice), and the work spreads over all cores while the output stays deterministic.

use image::ImageEncoder;
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};

/// How the pixel segments are deflated, the dominant cost of a pack: kaokore's own
/// pure-Rust compressor by default (`fast_deflate`: greedy LZ77 tuned for RGB rows,
/// dynamic Huffman), ISA-L (igzip) level 2 with the opt-in `isal` feature (it needs nasm
/// and autotools to build). Measured on 300 rows of a v1.3 build, one thread, full-flushed
/// raw deflate (`KAOKORE_BENCH_NPZ=OUT/npz/kaokore-train-imgs.npz cargo test --release
/// --test it -- --ignored --nocapture deflate_level_bench`; C backends by
/// `scripts/bench_deflate.py`):
///
/// | backend, level              | MB/s | ratio |
/// |-----------------------------|------|-------|
/// | kaokore fast deflate (default) | 390 | 0.518 |
/// | miniz_oxide 1               | 219  | 0.493 |
/// | miniz_oxide 2 / 6           | 92 / 54 | 0.462 / 0.453 |
/// | zlib-rs 1 (quick) / 2       | 220 / 125 | 0.569 / 0.492 |
/// | C zlib 1 / 6                | 96 / 60 | 0.463 / 0.454 |
/// | libdeflate 1 (whole streams only) | 190 | 0.487 |
/// | ISA-L 1 / 2, portable C only (cc, no nasm) | 258 / 202 | 0.514 / 0.509 |
/// | ISA-L 2 (`isal`, assembly)  | 640  | 0.500 |
///
/// The default is 1.8 times as fast as miniz_oxide level 1, the fastest stock option that
/// builds with a Rust toolchain alone, for 4-5% more bytes; ISA-L's assembly is faster
/// still; slower levels save 6% at 2.4x the CPU or more.
pub const PIXEL_DEFLATE: &str = if cfg!(feature = "isal") {
    "ISA-L level 2"
} else {
    "kaokore fast deflate"
};

/// The default pixel deflate; the `isal` feature replaces it.
#[cfg(not(feature = "isal"))]
mod fast_deflate;
#[cfg(feature = "isal")]
mod isal;

/// Deflate one image's pixel rows into a segment with [`PIXEL_DEFLATE`].
pub fn deflate_pixels(pixels: &[u8]) -> Result<DeflateSegment, EncodeError> {
    #[cfg(feature = "isal")]
    return isal::deflate_segment(pixels);
    #[cfg(not(feature = "isal"))]
    return Ok(DeflateSegment {
        data: fast_deflate::deflate_segment(pixels),
        crc: crc32fast::hash(pixels),
        len: pixels.len() as u64,
    });
}
/// Quality of JPEGs made from normalized pixels (`images_S/` rows that needed changes).
pub const JPEG_QUALITY: u8 = 95;

/// Failure to encode (only on internal inconsistencies: encoders of valid pixels do not fail).
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("deflate failed: {0}")]
    Deflate(String),
    #[error("image encoding failed: {0}")]
    Image(#[from] image::ImageError),
    #[error("internal error: {0}")]
    Internal(&'static str),
}

/// A piece of a raw deflate stream that starts and ends on a byte boundary, contains no
/// final block and refers to nothing before it: any sequence of segments followed by
/// [`FINAL_BLOCK`] is a valid deflate stream of the concatenated inputs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeflateSegment {
    pub data: Vec<u8>,
    /// CRC-32 of the uncompressed input.
    pub crc: u32,
    /// Length of the uncompressed input.
    pub len: u64,
}

/// An empty final fixed-Huffman block: ends a stream made of [`DeflateSegment`]s.
pub const FINAL_BLOCK: [u8; 2] = [0x03, 0x00];

/// Deflate `input` into an independent, full-flushed segment (miniz_oxide, `level` 0-10).
pub fn deflate_segment(input: &[u8], level: u32) -> Result<DeflateSegment, EncodeError> {
    use miniz_oxide::deflate::core::{
        CompressorOxide, TDEFLFlush, TDEFLStatus, compress_to_output,
        create_comp_flags_from_zip_params,
    };
    // Negative window bits: raw deflate, no zlib header or trailer.
    let flags = create_comp_flags_from_zip_params(level.min(10) as i32, -15, 0);
    let mut z = CompressorOxide::new(flags);
    let mut out = Vec::with_capacity(input.len() * 5 / 8 + 1024);
    // A full flush ends on a byte boundary with an empty stored block and no final block.
    let (status, consumed) = compress_to_output(&mut z, input, TDEFLFlush::Full, |chunk| {
        out.extend_from_slice(chunk);
        true
    });
    if status != TDEFLStatus::Okay || consumed != input.len() {
        return Err(EncodeError::Deflate(format!(
            "{status:?} after {consumed} of {} bytes",
            input.len()
        )));
    }
    Ok(DeflateSegment {
        data: out,
        crc: crc32fast::hash(input),
        len: input.len() as u64,
    })
}

/// Lossless PNG of S x S RGB pixels. Fast filter + fast deflate: deterministic and cheap.
pub fn encode_png(pixels: &[u8], size: u32) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(pixels.len() / 2);
    PngEncoder::new_with_quality(&mut out, CompressionType::Fast, FilterType::Adaptive)
        .write_image(pixels, size, size, image::ExtendedColorType::Rgb8)?;
    Ok(out)
}

/// JPEG (quality [`JPEG_QUALITY`]) of S x S RGB pixels.
pub fn encode_jpeg(pixels: &[u8], size: u32) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(pixels.len() / 4);
    JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).write_image(
        pixels,
        size,
        size,
        image::ExtendedColorType::Rgb8,
    )?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn segments_concatenate_into_one_stream() {
        let a: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let b: Vec<u8> = (0..70_000u32).map(|i| (i / 300) as u8).collect();
        // Segments of the pixel deflate and of miniz_oxide mix freely.
        let sa = deflate_pixels(&a).unwrap();
        let sb = deflate_segment(&b, 6).unwrap();
        let empty = deflate_segment(&[], 1).unwrap();
        let empty_pixels = deflate_pixels(&[]).unwrap();
        let mut stream = sa.data.clone();
        stream.extend_from_slice(&empty.data);
        stream.extend_from_slice(&empty_pixels.data);
        stream.extend_from_slice(&sb.data);
        stream.extend_from_slice(&FINAL_BLOCK);
        let mut back = Vec::new();
        flate2::read::DeflateDecoder::new(&stream[..])
            .read_to_end(&mut back)
            .unwrap();
        assert_eq!(back, [a.clone(), b.clone()].concat());
        let mut crc = crc32fast::Hasher::new_with_initial_len(sa.crc, sa.len);
        crc.combine(&crc32fast::Hasher::new_with_initial_len(sb.crc, sb.len));
        assert_eq!(crc.finalize(), crc32fast::hash(&[a, b].concat()));
    }

    #[test]
    fn incompressible_input_still_fits() {
        // A xorshift stream: deflate output is a little larger than the input.
        let mut x = 0x9E37_79B9u32;
        let noise: Vec<u8> = (0..300_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        for s in [deflate_segment(&noise, 1), deflate_pixels(&noise)] {
            let s = s.unwrap();
            assert_eq!(
                (s.len, s.crc),
                (noise.len() as u64, crc32fast::hash(&noise))
            );
            let mut stream = s.data;
            stream.extend_from_slice(&FINAL_BLOCK);
            let mut back = Vec::new();
            flate2::read::DeflateDecoder::new(&stream[..])
                .read_to_end(&mut back)
                .unwrap();
            assert!(back == noise);
        }
    }
}
