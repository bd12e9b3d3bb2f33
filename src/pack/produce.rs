//! The per-image producer, run on the pool: it takes one delivered image through the chain
//! of stages that `pipeline.rs` hands it ([`ImageChain`]: decode, then normalize to each
//! size) and encodes the payloads the chosen formats need. It knows payloads, not formats.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use image::{DynamicImage, RgbImage};

use super::format::{Payload, Payloads};
use super::{Delivered, StoredImage};
use crate::decode::{DecodeError, Decoded, SourceImage, SourceLayout};
use crate::encode::{self, EncodeError};
use crate::normalize::{self, NormalizeError};

/// The stages an image goes through before it is encoded, in the order they run. The
/// pipeline builds it (it alone knows the order of the stages); pack only runs it.
#[derive(Clone, Copy)]
pub struct ImageChain {
    /// Decode a fetched file, or take the pixels its source already decoded.
    pub decode: fn(&[u8], Option<DynamicImage>) -> Result<Decoded, DecodeError>,
    /// Decoded pixels to 8-bit RGB, once per image.
    pub to_rgb: fn(DynamicImage) -> RgbImage,
    /// RGB pixels to S x S, once per size.
    pub resize: fn(&RgbImage, u32) -> Result<Vec<u8>, NormalizeError>,
}

/// Worker time per step, by its name in report.json (`decode`, `resize`, and each
/// payload's: `deflate`, `gray`, `png`, `jpeg`).
pub(crate) type StepTimes = BTreeMap<&'static str, Duration>;

/// The step of report.json that a payload's encoding is timed as.
fn step_name(payload: Payload) -> &'static str {
    match payload {
        Payload::RgbPixels => "deflate",
        Payload::GrayPixels => "gray",
        Payload::LosslessFile => "png",
        Payload::JpegFile => "jpeg",
        Payload::Pixels => "pixels",
    }
}

/// What the pool made of one image at one size.
pub(crate) struct Encoded {
    pub payloads: Payloads,
    pub layout: SourceLayout,
    pub resized: bool,
    pub kept_jpeg: bool,
    pub times: StepTimes,
}

/// What became of one image at one size.
pub(crate) enum Outcome {
    Missing,
    Undecodable(String),
    Packed(Box<Encoded>),
    Failed(EncodeError),
}

/// Run `delivered` through `chain` once, then encode it for each of `sizes` into the
/// payloads in `needs` of that size: one outcome per size.
pub(crate) fn produce(
    chain: &ImageChain,
    delivered: Delivered,
    sizes: &[u32],
    needs: &[Vec<Payload>],
) -> Vec<Outcome> {
    let t = Instant::now();
    let bytes = &delivered.bytes[..];
    let decoded = match (chain.decode)(bytes, delivered.decoded) {
        Ok(d) => d,
        Err(e) => {
            let reason = NormalizeError::from(e).to_string();
            return sizes
                .iter()
                .map(|_| Outcome::Undecodable(reason.clone()))
                .collect();
        }
    };
    let decode_time = t.elapsed();
    let source = decoded.source;
    let t = Instant::now();
    let rgb = (chain.to_rgb)(decoded.image);
    let convert_time = t.elapsed();
    let (width, height) = rgb.dimensions();
    let unresized = |size: u32| width == size && height == size;
    // Each size is resized from the same pixels, borrowed; the size the image already
    // has (sizes are distinct: at most one) comes last and takes them without a copy.
    let mut order: Vec<usize> = (0..sizes.len()).collect();
    order.sort_by_key(|&i| unresized(sizes[i]));
    let mut rgb = Some(rgb);
    let mut outcomes: Vec<Option<Outcome>> = sizes.iter().map(|_| None).collect();
    for (n, i) in order.into_iter().enumerate() {
        let size = sizes[i];
        let t = Instant::now();
        let normalized = match (unresized(size), &rgb) {
            (true, _) => rgb.take().map(|image| Ok((image.into_raw(), false))),
            (false, Some(image)) => Some((chain.resize)(image, size).map(|p| (p, true))),
            (false, None) => None,
        };
        // The decode and the conversion to RGB are counted once, with the first size.
        let (decode, convert) = if n == 0 {
            (decode_time, convert_time)
        } else {
            (Duration::ZERO, Duration::ZERO)
        };
        let times = StepTimes::from([("decode", decode), ("resize", t.elapsed() + convert)]);
        outcomes[i] = Some(match normalized {
            Some(Ok((pixels, resized))) => {
                let image = normalize::NormalizedImage {
                    pixels,
                    size,
                    source,
                    resized,
                };
                encode_size(bytes, &image, source, &needs[i], times)
            }
            Some(Err(e)) => Outcome::Undecodable(e.to_string()),
            None => Outcome::Failed(EncodeError::Internal("the pixels of a size were taken")),
        });
    }
    outcomes.into_iter().flatten().collect()
}

/// Encode the payloads in `needs` from `image`, normalized to S x S; `bytes` is the fetched
/// file, kept as it is where it already is an S x S RGB JPEG.
fn encode_size(
    bytes: &[u8],
    image: &normalize::NormalizedImage,
    source: SourceImage,
    needs: &[Payload],
    times: StepTimes,
) -> Outcome {
    let keep = image.source_is_final_jpeg();
    let size = image.size;
    let mut e = Encoded {
        payloads: Payloads::default(),
        layout: source.layout,
        resized: image.resized,
        kept_jpeg: keep,
        times,
    };
    for &payload in needs {
        let t = Instant::now();
        let p = &mut e.payloads;
        let made = match payload {
            Payload::RgbPixels => encode::deflate_pixels(&image.pixels).map(|d| p.rgb = Some(d)),
            Payload::GrayPixels => {
                encode::deflate_pixels(&normalize::to_gray(&image.pixels)).map(|d| p.gray = Some(d))
            }
            Payload::LosslessFile => {
                let stored = if keep {
                    Ok(StoredImage {
                        bytes: bytes.to_vec(),
                        extension: "jpg",
                    })
                } else {
                    encode::encode_png(&image.pixels, size).map(|png| StoredImage {
                        bytes: png,
                        extension: "png",
                    })
                };
                stored.map(|s| p.lossless = Some(s))
            }
            Payload::JpegFile => {
                let jpeg = if keep {
                    Ok(bytes.to_vec())
                } else {
                    encode::encode_jpeg(&image.pixels, size)
                };
                jpeg.map(|j| p.jpeg = Some(j))
            }
            Payload::Pixels => {
                p.pixels = Some(image.pixels.clone());
                Ok(())
            }
        };
        if let Err(err) = made {
            return Outcome::Failed(err);
        }
        // A file kept as it was took no encoding time: as before, it is not counted.
        let kept = keep && matches!(payload, Payload::LosslessFile | Payload::JpegFile);
        if !kept {
            *e.times.entry(step_name(payload)).or_default() += t.elapsed();
        }
    }
    Outcome::Packed(Box::new(e))
}

/// The payloads the chosen formats need, each once, in a fixed order.
pub(crate) fn needs(formats: &super::Formats) -> Vec<Payload> {
    [
        Payload::RgbPixels,
        Payload::GrayPixels,
        Payload::LosslessFile,
        Payload::JpegFile,
        Payload::Pixels,
    ]
    .into_iter()
    .filter(|&p| formats.need(p))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAIN: ImageChain = ImageChain {
        decode: |bytes, _| crate::decode::decode(bytes),
        to_rgb: normalize::to_rgb,
        resize: normalize::resize,
    };

    fn jpeg(size: u32) -> Vec<u8> {
        let pixels: Vec<u8> = (0..size * size * 3).map(|i| (i * 7 % 251) as u8).collect();
        encode::encode_jpeg(&pixels, size).unwrap()
    }

    fn file_pixels(file: &[u8]) -> Vec<u8> {
        let decoded = crate::decode::decode(file).unwrap();
        normalize::to_rgb(decoded.image).into_raw()
    }

    #[test]
    fn one_decode_every_size_and_only_the_payloads_needed() {
        let file = jpeg(16);
        let needs = [Payload::RgbPixels, Payload::LosslessFile];
        let needs = [needs.to_vec(), [&needs[..], &[Payload::Pixels]].concat()];
        let outcomes = produce(&CHAIN, Delivered::from(file.clone()), &[8, 16], &needs);
        let [Outcome::Packed(small), Outcome::Packed(same)] = &outcomes[..] else {
            panic!("both sizes pack");
        };
        // The size the image already has keeps the fetched JPEG; the other is a PNG.
        assert!(same.kept_jpeg && !same.resized);
        assert_eq!(same.payloads.lossless().unwrap().bytes, file);
        assert!(small.resized && !small.kept_jpeg);
        assert_eq!(small.payloads.lossless().unwrap().extension, "png");
        assert_eq!(small.payloads.rgb().unwrap().len, 8 * 8 * 3);
        assert!(small.payloads.gray.is_none() && small.payloads.jpeg.is_none());
        // Pixels only for the size whose needs asked for them.
        assert!(small.payloads.pixels.is_none());
        assert_eq!(same.payloads.pixels().unwrap(), file_pixels(&file));
        // Steps are timed by name; the decode counts once, with the first size done.
        let steps: Vec<&str> = small.times.keys().copied().collect();
        assert_eq!(steps, ["decode", "deflate", "png", "resize"]);
        assert!(
            !same.times.contains_key("png"),
            "a kept file took no encoding"
        );
    }

    #[test]
    fn an_undecodable_file_is_undecodable_at_every_size() {
        let outcomes = produce(
            &CHAIN,
            Delivered::from(b"<html>".to_vec()),
            &[8, 16],
            &[vec![Payload::RgbPixels], vec![Payload::RgbPixels]],
        );
        assert_eq!(outcomes.len(), 2);
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, Outcome::Undecodable(_)))
        );
    }
}
