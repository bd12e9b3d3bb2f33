//! The segment deflate (src/encode/fast_deflate.rs) against two independent inflaters:
//! two segments of the input and the final block must inflate, with miniz_oxide and with
//! zlib-rs, to exactly the input, on the fuzzer's bytes as they are and made pixel-like
//! (smooth RGB rows, repeated past the 64 KiB block and the 32 KiB window).
#![no_main]

use std::io::Read;

use kaokore::encode::{FINAL_BLOCK, deflate_pixels};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let input = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        pixel_like(rest, mode)
    };
    let split = if input.is_empty() {
        0
    } else {
        (mode as usize * 7919) % (input.len() + 1)
    };
    let (a, b) = input.split_at(split);
    let seg_a = deflate_pixels(a).expect("deflate of any bytes succeeds");
    let seg_b = deflate_pixels(b).expect("deflate of any bytes succeeds");
    assert_eq!(seg_a.crc, crc32fast::hash(a));
    assert_eq!(seg_a.len, a.len() as u64);
    let mut stream = seg_a.data.clone();
    stream.extend_from_slice(&seg_b.data);
    stream.extend_from_slice(&FINAL_BLOCK);

    let miniz = miniz_oxide::inflate::decompress_to_vec(&stream).expect("miniz_oxide inflates");
    assert!(miniz == input, "miniz_oxide inflated other bytes");
    let mut zlib_rs = Vec::new();
    flate2::read::DeflateDecoder::new(&stream[..])
        .read_to_end(&mut zlib_rs)
        .expect("zlib-rs inflates");
    assert!(zlib_rs == input, "zlib-rs inflated other bytes");

    // A segment alone is a stream too once the final block follows.
    let mut alone = seg_b.data;
    alone.extend_from_slice(&FINAL_BLOCK);
    let inflated = miniz_oxide::inflate::decompress_to_vec(&alone).expect("a segment inflates");
    assert!(
        inflated == b,
        "the second segment alone inflated other bytes"
    );
});

/// RGB rows whose pixels drift by the fuzzer's small steps (as real pixel rows do), the
/// whole repeated with a changing offset up to about 200 KB.
fn pixel_like(steps: &[u8], mode: u8) -> Vec<u8> {
    if steps.is_empty() {
        return Vec::new();
    }
    let target = (steps.len() * (1 + (mode >> 1) as usize)).min(200_000);
    let mut out = Vec::with_capacity(target + 3);
    let mut pixel = [128u8; 3];
    let mut i = 0usize;
    while out.len() < target {
        let step = steps[i % steps.len()];
        let c = i % 3;
        // Mostly small drifts; a byte with the high bit set jumps anywhere.
        pixel[c] = if step & 0x80 != 0 {
            step << 1
        } else {
            pixel[c].wrapping_add((step & 0x07).wrapping_sub(3))
        };
        out.push(pixel[c]);
        i += 1;
        if i % steps.len() == 0 {
            pixel[c] = pixel[c].wrapping_add((i / steps.len()) as u8);
        }
    }
    out
}
