//! Measurements behind the pack design, not correctness tests (ignored by default):
//! `cargo test --release --test pack_bench -- --ignored --nocapture`.

mod pack_common;

use std::time::Instant;

use kaokore::encode::{PIXEL_DEFLATE, deflate_pixels, deflate_segment, fast_deflate_segment};
use kaokore::normalize::normalize;
use pack_common::*;

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
    let measure = |name: &str, deflate: &dyn Fn(&[u8]) -> usize| {
        let t = Instant::now();
        let packed: usize = rows.iter().map(|r| deflate(r)).sum();
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "{name}: {:.1} MB/s, ratio {:.3}",
            raw as f64 / secs / 1e6,
            packed as f64 / raw as f64
        );
    };
    measure(&format!("pixels ({PIXEL_DEFLATE})"), &|r| {
        deflate_pixels(r).unwrap().data.len()
    });
    for level in [1, 2, 3, 6] {
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

/// The pure-Rust pixel compressor against miniz_oxide level 1, one thread, on the first 300
/// rows of a gzip idx4 file of real normalized pixels (`KAOKORE_BENCH_IDX=FILE.gz`; the
/// test does nothing without it). Each is run three times, alternating.
#[test]
#[ignore]
fn fast_deflate_bench() {
    use std::io::Read;
    let Some(path) = std::env::var_os("KAOKORE_BENCH_IDX") else {
        eprintln!("KAOKORE_BENCH_IDX is not set: nothing measured");
        return;
    };
    let mut idx = flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap());
    // Magic (its last byte: the number of dimensions), then each dimension, big-endian.
    let mut magic = [0u8; 4];
    idx.read_exact(&mut magic).unwrap();
    let mut dims = vec![0u8; 4 * magic[3] as usize];
    idx.read_exact(&mut dims).unwrap();
    let dims: Vec<usize> = dims
        .chunks(4)
        .map(|d| u32::from_be_bytes(d.try_into().unwrap()) as usize)
        .collect();
    let row_len: usize = dims[1..].iter().product();
    let rows: Vec<Vec<u8>> = (0..dims[0].min(300))
        .map(|_| {
            let mut row = vec![0; row_len];
            idx.read_exact(&mut row).unwrap();
            row
        })
        .collect();
    let raw: usize = rows.iter().map(Vec::len).sum();
    eprintln!("{} rows of {row_len} bytes", rows.len());
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
    for _ in 0..3 {
        let fast = measure("kaokore fast deflate", &|r| fast_deflate_segment(r).len());
        let miniz = measure("miniz_oxide 1", &|r| {
            deflate_segment(r, 1).unwrap().data.len()
        });
        eprintln!("speed-up: {:.2}x", fast / miniz);
    }
}
