//! Measurements behind the pack design, not correctness tests (ignored by default):
//! `cargo test --release --test it -- --ignored --nocapture deflate_level_bench`.

use std::time::Instant;

use kaokore::encode::{PIXEL_DEFLATE, deflate_pixels, deflate_segment};
use kaokore::normalize::normalize;

use crate::support::inline::*;

/// Deflate speed and ratio per level on normalized 256 x 256 crops of real faces.
#[test]
#[ignore]
fn deflate_level_bench() {
    // KAOKORE_BENCH_NPZ: the rows of a build's images npz (the data scripts/bench_deflate.py
    // measures the C backends on); else 200 crops of the label figure.
    let rows: Vec<Vec<u8>> = match std::env::var_os("KAOKORE_BENCH_NPZ") {
        Some(path) => {
            let mut npz = ndarray_npy::NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
            let images: ndarray::Array4<u8> = npz.by_name("arr_0").unwrap();
            images
                .outer_iter()
                .take(300)
                .map(|row| row.iter().copied().collect())
                .collect()
        }
        None => {
            let fig = figure();
            (0..200)
                .map(|i| {
                    normalize(&jpeg(&crop(&fig, i * 13 + 1, 256, 256)), 256)
                        .unwrap()
                        .pixels
                })
                .collect()
        }
    };
    let raw: usize = rows.iter().map(Vec::len).sum();
    let measure = |name: &str, deflate: &dyn Fn(&[u8]) -> usize| -> f64 {
        let t = Instant::now();
        let packed: usize = rows.iter().map(|r| deflate(r)).sum();
        let speed = raw as f64 / t.elapsed().as_secs_f64() / 1e6;
        eprintln!(
            "{name}: {speed:.1} MB/s, ratio {:.4}",
            packed as f64 / raw as f64
        );
        speed
    };
    // The pixel deflate against miniz_oxide level 1, side by side, three times alternating.
    for _ in 0..3 {
        let pixels = measure(&format!("pixels ({PIXEL_DEFLATE})"), &|r| {
            deflate_pixels(r).unwrap().data.len()
        });
        let miniz = measure("miniz_oxide 1", &|r| {
            deflate_segment(r, 1).unwrap().data.len()
        });
        eprintln!("speed-up: {:.2}x", pixels / miniz);
    }
    for level in [2, 3, 6] {
        measure(&format!("miniz_oxide {level}"), &|r| {
            deflate_segment(r, level).unwrap().data.len()
        });
    }
    for level in [1, 2] {
        measure(&format!("zlib-rs {level}"), &|r| {
            let mut z = flate2::Compress::new(flate2::Compression::new(level), false);
            let mut out = Vec::with_capacity(r.len() + 1024);
            z.compress_vec(r, &mut out, flate2::FlushCompress::Full)
                .unwrap();
            out.len()
        });
    }
}
