//! Pixel rows of one split across formats, streamed row by row: the RGB rows must agree
//! (the odd one out is named), JPEG files (WebDataset members, `images_S/`) must decode to
//! those pixels or be the JPEG pack makes of them, and gray rows must be their gray.

use super::VerifyReport;
use crate::normalize;
use crate::pack::format::Format;
use crate::pack::read::{Channels, MAX_ROW_PROBLEMS_PER_FILE, PixelSource, RowRead, SplitAt};

/// Compare the split's pixel rows across its formats, row by row: RGB rows must agree
/// (the odd one out is named), gray rows must be the gray of the agreed RGB pixels.
pub(super) fn check(at: &SplitAt<'_>, formats: &[&'static dyn Format], report: &mut VerifyReport) {
    let mut streams: Vec<Box<dyn PixelSource>> = formats
        .iter()
        .filter_map(|f| f.open_pixels(at, &mut report.problems))
        .collect();
    // The record's size was checked against the largest edge pack accepts, and every
    // stream's shape against it: a row is of a size a build can have.
    let mut rows: Vec<Vec<u8>> = if at.rows == 0 {
        Vec::new()
    } else {
        streams
            .iter()
            .map(|s| vec![0u8; s.channels().row_len(at.size)])
            .collect()
    };
    let mut broken = vec![false; streams.len()];
    let mut shown = 0;
    let mut note = |report: &mut VerifyReport, name: &str, i: u64, message: String| {
        if shown < MAX_ROW_PROBLEMS_PER_FILE {
            report.problem(name, Some(i), message);
            shown += 1;
        }
    };
    for i in 0..at.rows {
        let mut read = vec![false; streams.len()];
        for (k, s) in streams.iter_mut().enumerate() {
            if broken[k] {
                continue;
            }
            match s.read_row(&mut rows[k]) {
                RowRead::Pixels => read[k] = true,
                RowRead::Bad(message) => note(report, s.name(), i, message),
                RowRead::Broken(message) => {
                    report.problem(s.name(), Some(i), message);
                    broken[k] = true;
                }
            }
        }
        let of = |channels: Option<Channels>| -> Vec<(&str, &[u8])> {
            streams
                .iter()
                .zip(&rows)
                .zip(&read)
                .filter(|((s, _), r)| {
                    **r && if s.jpeg_files() {
                        channels.is_none()
                    } else {
                        channels == Some(s.channels())
                    }
                })
                .map(|((s, row), _)| (s.name(), row.as_slice()))
                .collect()
        };
        let rgb = of(Some(Channels::Rgb));
        for (name, message) in pixel_disagreements(&rgb) {
            note(report, name, i, message);
        }
        let agreed_rgb = agreed(&rgb);
        for (name, jpeg) in of(None) {
            if let Err(message) = check_jpeg(jpeg, at.size, agreed_rgb) {
                note(report, name, i, message);
            }
        }
        let gray = of(Some(Channels::Gray));
        if let (false, Some((reference, pixels))) = (gray.is_empty(), agreed_rgb) {
            let expected = normalize::to_gray(pixels);
            for &(name, g) in gray.iter().filter(|(_, g)| *g != expected.as_slice()) {
                let message = format!(
                    "gray pixels differ from the gray of {reference}'s pixels (first at byte {})",
                    first_difference(g, &expected)
                );
                note(report, name, i, message);
            }
        }
        report.pixel_rows_compared += 1;
    }
    for (k, s) in streams.iter_mut().enumerate() {
        if !broken[k]
            && let Err(e) = s.check_end()
        {
            report.problem(s.name(), None, e);
        }
    }
}

/// A row that is a JPEG file ([`PixelSource::jpeg_files`]): an S x S RGB JPEG that decodes to
/// `reference`'s pixels, when there are any, or is the JPEG pack makes of them.
fn check_jpeg(jpeg: &[u8], size: u32, reference: Option<(&str, &[u8])>) -> Result<(), String> {
    let image =
        normalize::normalize(jpeg, size).map_err(|e| format!("image does not decode: {e}"))?;
    if !image.source_is_final_jpeg() {
        return Err(format!(
            "image is not a {size} x {size} RGB JPEG ({} x {})",
            image.source.width, image.source.height
        ));
    }
    let Some((name, pixels)) = reference else {
        return Ok(());
    };
    if image.pixels == pixels
        || crate::encode::encode_jpeg(pixels, size).is_ok_and(|made| made == jpeg)
    {
        return Ok(());
    }
    Err(format!(
        "image pixels differ from {name}'s (first at byte {}) and it is not the JPEG of them",
        first_difference(&image.pixels, pixels)
    ))
}

/// The RGB pixels of a row that the formats agree on (all of them, or a majority), and
/// the first format that has them.
fn agreed<'a>(candidates: &[(&'a str, &'a [u8])]) -> Option<(&'a str, &'a [u8])> {
    let agreeing = |p: &[u8]| candidates.iter().filter(|(_, q)| *q == p).count();
    candidates
        .iter()
        .find(|(_, p)| agreeing(p) * 2 > candidates.len())
        .copied()
}

/// Which formats disagree on a row's pixels. With a majority (two of three), the odd one
/// out is named; otherwise every pair is.
fn pixel_disagreements<'a>(candidates: &[(&'a str, &[u8])]) -> Vec<(&'a str, String)> {
    if candidates.windows(2).all(|w| w[0].1 == w[1].1) {
        return Vec::new();
    }
    let agreeing = |k: usize| {
        candidates
            .iter()
            .filter(|(_, p)| *p == candidates[k].1)
            .count()
    };
    let majority = (0..candidates.len()).find(|&k| agreeing(k) * 2 > candidates.len());
    let mut out = Vec::new();
    match majority {
        Some(m) => {
            let (reference, pixels) = candidates[m];
            for &(name, p) in candidates.iter().filter(|(_, p)| *p != pixels) {
                out.push((
                    name,
                    format!(
                        "pixels differ from {reference} and the other formats (first at byte {})",
                        first_difference(p, pixels)
                    ),
                ));
            }
        }
        None => {
            for (k, &(name, p)) in candidates.iter().enumerate().skip(1) {
                let (other, q) = candidates[k - 1];
                if p != q {
                    out.push((
                        name,
                        format!(
                            "pixels differ from {other} (first at byte {})",
                            first_difference(p, q)
                        ),
                    ));
                }
            }
        }
    }
    out
}

fn first_difference(a: &[u8], b: &[u8]) -> usize {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_majority_names_the_odd_one_out() {
        let (a, b) = ([1u8, 2, 3], [1u8, 9, 3]);
        let three = [("idx", &a[..]), ("npz", &b[..]), ("parquet", &a[..])];
        assert_eq!(agreed(&three), Some(("idx", &a[..])));
        assert_eq!(
            pixel_disagreements(&three),
            [(
                "npz",
                "pixels differ from idx and the other formats (first at byte 1)".to_string()
            )]
        );
        // Two that differ: no majority, each pair is named.
        let two = [("idx", &a[..]), ("npz", &b[..])];
        assert_eq!(agreed(&two), None);
        assert_eq!(
            pixel_disagreements(&two),
            [(
                "npz",
                "pixels differ from idx (first at byte 1)".to_string()
            )]
        );
        assert!(pixel_disagreements(&three[..1]).is_empty());
        assert_eq!(agreed(&[]), None);
        assert_eq!(first_difference(&[1, 2], &[1, 2, 3]), 2);
    }

    #[test]
    fn a_jpeg_row_decodes_to_the_agreed_pixels_or_is_their_jpeg() {
        let size = 16;
        let pixels: Vec<u8> = (0..3 * size * size).map(|i| (i * 7 % 251) as u8).collect();
        let jpeg = crate::encode::encode_jpeg(&pixels, size).unwrap();
        // pack's JPEG of the pixels (lossy: it decodes to other pixels).
        assert_eq!(check_jpeg(&jpeg, size, Some(("idx", &pixels))), Ok(()));
        // Kept as fetched: its own decoded pixels are the reference.
        let decoded = normalize::normalize(&jpeg, size).unwrap().pixels;
        assert_eq!(check_jpeg(&jpeg, size, Some(("idx", &decoded))), Ok(()));
        assert_eq!(check_jpeg(&jpeg, size, None), Ok(()));
        let mut other = pixels.clone();
        other[5] ^= 0x80;
        let e = check_jpeg(&jpeg, size, Some(("idx", &other))).unwrap_err();
        assert!(
            e.starts_with("image pixels differ from idx's (first at byte ")
                && e.ends_with(") and it is not the JPEG of them"),
            "{e}"
        );
        assert_eq!(
            check_jpeg(&jpeg, 8, None),
            Err("image is not a 8 x 8 RGB JPEG (16 x 16)".into())
        );
        assert!(
            check_jpeg(b"not an image", size, None)
                .unwrap_err()
                .starts_with("image does not decode: ")
        );
    }
}
