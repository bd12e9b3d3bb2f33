//! What a pack did, for the report and the card: the summary of a build of one size, and
//! the running tallies (per split, label and provider, normalization, time per step) it is
//! made from as rows are written.

use std::collections::BTreeMap;

use super::produce::Encoded;
use crate::decode::SourceLayout;
use crate::metadata::{Dataset, ImageId, ImageRecord, Label, Provider, Split};
use crate::out::Artifact;

/// What pack did: counts for the report, and the artifacts written.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct PackSummary {
    /// Normalized edge length S.
    pub size: u32,
    pub splits: Vec<SplitSummary>,
    /// Labelled images with a URL whose bytes the source did not have, in labels.csv order.
    pub missing: Vec<ImageId>,
    /// Labelled images whose bytes could not be decoded (left out), in labels.csv order.
    pub undecodable: Vec<Undecodable>,
    /// Labelled images without a URL (blank urls.txt line): never packable.
    pub labelled_without_url: usize,
    pub normalization: NormalizationCounts,
    /// Packed images per content provider, in `Provider::ALL` order.
    pub providers: Vec<ProviderCount>,
    /// Pixel compression: raw pixel bytes and their deflate size (idx/npz).
    pub pixel_bytes: u64,
    pub pixel_deflate_bytes: u64,
    pub seconds: StageSeconds,
    /// Every artifact written, sorted by path (SHA256SUMS included, with its own hash).
    pub artifacts: Vec<Artifact>,
    /// Files of an earlier build that this build does not produce, removed.
    pub removed_stale: Vec<String>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct SplitSummary {
    pub split: Split,
    pub packed: u64,
    pub gender: Vec<ClassCount>,
    pub status: Vec<ClassCount>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ClassCount {
    pub index: u8,
    pub name: String,
    pub count: u64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Undecodable {
    pub id: ImageId,
    pub reason: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct ProviderCount {
    pub provider: String,
    pub images: u64,
}

/// What normalization had to do.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NormalizationCounts {
    pub decoded: u64,
    /// Not S x S: resized (stretched) with Lanczos3.
    pub resized: u64,
    /// Not 8-bit RGB: converted, by source layout (`gray8`, `rgba8`, `cmyk8`, `rgb16`...).
    pub converted_from: BTreeMap<String, u64>,
    /// Fetched file was an S x S RGB JPEG: its bytes are stored unchanged.
    pub stored_as_jpeg: u64,
    /// Everything else: normalized pixels stored as PNG in Parquet.
    pub stored_as_png: u64,
}

/// Time spent per step. Worker steps (decode .. jpeg) are summed over threads, so they
/// are CPU seconds; the others are wall seconds of the writing thread.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct StageSeconds {
    /// Writing thread blocked waiting for the pool (and so for the source).
    pub waiting: f64,
    /// CPU seconds of each step on the pool, by name: `decode`, `resize`, and the
    /// payloads' `deflate` (RGB rows), `gray`, `png`, `jpeg` (listed beside the other
    /// fields in report.json).
    #[serde(flatten)]
    pub steps: BTreeMap<String, f64>,
    /// Writing each format's files, by its `--formats` name (listed beside the other
    /// fields in report.json).
    #[serde(flatten)]
    pub formats: BTreeMap<String, f64>,
    pub card_and_checksums: f64,
    pub total: f64,
}

/// Running counts per split, label and provider.
pub(crate) struct Tally {
    per_split: [(u64, Vec<u64>, Vec<u64>); 3],
    providers: BTreeMap<Provider, u64>,
    gender_names: Vec<String>,
    status_names: Vec<String>,
}

impl Tally {
    pub fn new(dataset: &Dataset) -> Tally {
        let g = dataset.class_names.gender.len();
        let s = dataset.class_names.status.len();
        Tally {
            per_split: std::array::from_fn(|_| (0, vec![0; g], vec![0; s])),
            providers: BTreeMap::new(),
            gender_names: dataset.class_names.gender.clone(),
            status_names: dataset.class_names.status.clone(),
        }
    }

    pub fn add(
        &mut self,
        record: &ImageRecord,
        label: Label,
        e: &Encoded,
        summary: &mut PackSummary,
    ) {
        let split = &mut self.per_split[label.split.index()];
        split.0 += 1;
        split.1[label.gender as usize] += 1;
        split.2[label.status as usize] += 1;
        if let Some(p) = record.provider() {
            *self.providers.entry(p).or_default() += 1;
        }
        let n = &mut summary.normalization;
        n.decoded += 1;
        n.resized += u64::from(e.resized);
        if e.layout != SourceLayout::Rgb8 {
            *n.converted_from
                .entry(e.layout.name().to_string())
                .or_default() += 1;
        }
        if e.kept_jpeg {
            n.stored_as_jpeg += 1;
        } else {
            n.stored_as_png += 1;
        }
        let steps = &mut summary.seconds.steps;
        for (&step, time) in &e.times {
            *steps.entry(step.to_string()).or_default() += time.as_secs_f64();
        }
    }

    pub fn finish(self, summary: &mut PackSummary) {
        let classes = |names: &[String], counts: &[u64]| {
            names
                .iter()
                .zip(counts)
                .enumerate()
                .map(|(i, (name, &count))| ClassCount {
                    index: i as u8,
                    name: name.clone(),
                    count,
                })
                .collect()
        };
        summary.splits = Split::ALL
            .iter()
            .map(|&split| {
                let (packed, g, s) = &self.per_split[split.index()];
                SplitSummary {
                    split,
                    packed: *packed,
                    gender: classes(&self.gender_names, g),
                    status: classes(&self.status_names, s),
                }
            })
            .collect();
        summary.providers = Provider::ALL
            .iter()
            .map(|p| ProviderCount {
                provider: p.name().to_string(),
                images: self.providers.get(p).copied().unwrap_or(0),
            })
            .collect();
    }
}
