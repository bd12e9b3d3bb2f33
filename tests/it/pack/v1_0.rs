//! Pack the real v1.0 metadata (5,298 labelled images) with a synthetic source that serves,
//! for each URL, a crop of the upstream label figure of the size the URL requests. Checks
//! the counts against the metadata and verifies the build; prints timings and the pixel
//! compression ratio (run with `--nocapture` to see them; `--release` for real timings).
//! `KAOKORE_TEST_SIZE=64` exercises the resize path on every image. A whole-version run,
//! ignored by default: `scripts/test.sh --full` (and CI) runs it.

use std::collections::HashMap;
use std::time::Instant;

use image::RgbImage;
use kaokore::metadata::{Dataset, DatasetVersion, ImageId, SizeRequest};
use kaokore::pack;
use kaokore::progress::Progress;
use kaokore::verify::verify;
use rayon::prelude::*;

use crate::support::inline::*;

/// The edge a IIIF size request gives for a square region.
fn served_edge(url: &str) -> u32 {
    match SizeRequest::of(url).map(|s| s.0) {
        Some(s) if s.starts_with('!') => s[1..]
            .split(',')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        Some(s) => s
            .split(',')
            .next()
            .and_then(|v| v.parse().ok())
            .unwrap_or(256),
        None => 256,
    }
}

/// Distinct files per served edge; images share them round-robin, which keeps the test's
/// own (unoptimized) encoding work small.
const DISTINCT: u32 = 97;

fn files_for(dataset: &Dataset, fig: &RgbImage) -> HashMap<ImageId, Option<Vec<u8>>> {
    let mut edges: Vec<u32> = dataset
        .packable()
        .map(|r| served_edge(r.url.as_deref().unwrap_or_default()))
        .collect();
    edges.sort();
    edges.dedup();
    let pool: HashMap<(u32, u32), Vec<u8>> = edges
        .iter()
        .flat_map(|&e| (0..DISTINCT).map(move |k| (e, k)))
        .collect::<Vec<_>>()
        .par_iter()
        .map(|&(e, k)| ((e, k), jpeg(&crop(fig, k * 31 + 5, e, e))))
        .collect();
    dataset
        .packable()
        .map(|r| {
            let edge = served_edge(r.url.as_deref().unwrap_or_default());
            (r.id, Some(pool[&(edge, r.id.0 % DISTINCT)].clone()))
        })
        .collect()
}

#[test]
#[ignore = "whole version: scripts/test.sh --full runs it"]
fn whole_version_1_0_real_metadata_packs_and_verifies() {
    let size: u32 = std::env::var("KAOKORE_TEST_SIZE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let dataset = Dataset::embedded(DatasetVersion::V1_0).unwrap();
    let files = files_for(&dataset, &figure());
    let source = MapSource::new(files);
    let dir = tempfile::tempdir().unwrap();
    // KAOKORE_TEST_OUT keeps the build for inspection (e.g. comparing two builds' SHA256SUMS).
    let out = std::env::var_os("KAOKORE_TEST_OUT")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| dir.path().join("out"));
    let started = Instant::now();
    let progress = Progress::hidden("pack", dataset.labelled.len() as u64);
    let summary = pack::pack(
        &dataset,
        &source,
        &kaokore::pipeline::IMAGE_CHAIN,
        &options(size, 2, "idx,npz,parquet"),
        &out,
        &progress,
    )
    .unwrap();
    let elapsed = started.elapsed().as_secs_f64();

    let packable = dataset.packable().count() as u64;
    assert_eq!(dataset.labelled.len(), 5298);
    assert_eq!(
        summary.splits.iter().map(|s| s.packed).sum::<u64>(),
        packable
    );
    assert!(summary.missing.is_empty() && summary.undecodable.is_empty());
    for s in &summary.splits {
        let want = dataset
            .packable()
            .filter(|r| r.label.unwrap().split == s.split)
            .count() as u64;
        assert_eq!(s.packed, want, "{}", s.split);
        assert_eq!(s.gender.iter().map(|c| c.count).sum::<u64>(), want);
    }
    assert_eq!(
        summary.providers.iter().map(|p| p.images).sum::<u64>(),
        packable,
        "every real URL belongs to a known provider"
    );

    let t = Instant::now();
    let report = verify(&out).unwrap();
    let verify_secs = t.elapsed().as_secs_f64();
    assert!(report.is_ok(), "{:?}", report.problems);

    eprintln!(
        "v1.0 at {size}: {packable} images packed in {elapsed:.1}s (jobs 2), verify {verify_secs:.1}s\n\
         pixels {} B -> deflate {} B (ratio {:.3}); artifacts {} B\n\
         normalization {:?}\nseconds {:?}",
        summary.pixel_bytes,
        summary.pixel_deflate_bytes,
        summary.pixel_deflate_bytes as f64 / summary.pixel_bytes as f64,
        summary.artifacts.iter().map(|a| a.bytes).sum::<u64>(),
        summary.normalization,
        summary.seconds,
    );
}
