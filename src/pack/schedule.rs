//! The pack scheduler: it hands the labelled images to the pool in chunks and takes the
//! outcomes back in labels.csv order, feeding each row to every format's writer. Output
//! therefore does not depend on the number of threads or the order images arrive in, and
//! memory stays bounded by the chunks in flight, whose rows are bounded by their pixels.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use rayon::prelude::*;

use super::format::Payload;
use super::format::{Demand, FinishContext, FormatWriter, PackedRow, WriterContext};
use super::produce::{self, ImageChain, Outcome};
use super::summary::{PackSummary, Tally, Undecodable};
use super::{Artifact, ImageSource, PackError, PackOptions};
use crate::metadata::{Dataset, ImageRecord};
use crate::out::Staging;
use crate::progress::Progress;

/// Images handed to the pool at once, at most. Large enough to keep every thread busy,
/// small enough that two chunks in flight at 256 x 256 stay a few tens of MiB.
const CHUNK_ROWS: usize = 64;

/// Chunks in flight at once: the pool works on the next while the current one is written.
const CHUNKS_IN_FLIGHT: usize = 2;

/// Normalized pixels of all the rows in flight, at most: at 4096 x 4096 a row is 48 MiB
/// (and more again in payloads), so 128 rows in flight would be gigabytes.
const PIXELS_IN_FLIGHT: usize = 256 << 20;

/// Rows per chunk for `sizes`: [`CHUNK_ROWS`], or fewer when the rows in flight would hold
/// more than [`PIXELS_IN_FLIGHT`] bytes of normalized pixels (one row per chunk at least).
pub(crate) fn chunk_rows(sizes: &[u32]) -> usize {
    let row: usize = sizes.iter().map(|&s| s as usize * s as usize * 3).sum();
    (PIXELS_IN_FLIGHT / CHUNKS_IN_FLIGHT / row.max(1)).clamp(1, CHUNK_ROWS)
}

/// Feed `records` to the pool chunk by chunk and hand the outcomes to `sink` in order.
pub(crate) fn run_chunks(
    pool: &rayon::ThreadPool,
    records: &[&ImageRecord],
    source: &dyn ImageSource,
    chain: &ImageChain,
    opts: &PackOptions,
    sinks: &mut [RowSink<'_>],
) -> Result<(), PackError> {
    let abort = AtomicBool::new(false);
    let needs = produce::needs(&opts.formats);
    let needs = &needs[..];
    let sizes: Vec<u32> = sinks.iter().map(|s| s.summary.size).collect();
    let sizes = &sizes[..];
    let demands: Vec<Arc<Demand>> = sinks.iter().map(|s| s.demand.clone()).collect();
    let demands = &demands[..];
    // One outcome per size, in `sinks` order.
    let work = |record: &&ImageRecord| -> Vec<Outcome> {
        if abort.load(Ordering::Relaxed) {
            // The pack failed; nothing will be written.
            return sizes.iter().map(|_| Outcome::Missing).collect();
        }
        // Per size, the payloads needed: sampled ones only while a writer wants them.
        let per_size: Vec<Vec<Payload>> = demands
            .iter()
            .map(|demand| {
                let wanted = record.label.is_some_and(|l| demand.wants(l));
                needs
                    .iter()
                    .copied()
                    .filter(|p| wanted || !p.sampled())
                    .collect()
            })
            .collect();
        match source.image(record) {
            None => sizes.iter().map(|_| Outcome::Missing).collect(),
            Some(delivered) => produce::produce(chain, delivered, sizes, &per_size),
        }
    };
    let work = &work;
    pool.in_place_scope(|scope| {
        let mut chunks = records.chunks(chunk_rows(sizes));
        let mut pending = VecDeque::new();
        let mut write_all = || -> Result<(), PackError> {
            loop {
                while pending.len() < CHUNKS_IN_FLIGHT {
                    let Some(chunk) = chunks.next() else { break };
                    let (tx, rx) = mpsc::sync_channel::<Vec<Vec<Outcome>>>(1);
                    scope.spawn(move |_| {
                        let _ = tx.send(chunk.par_iter().map(work).collect());
                    });
                    pending.push_back((chunk, rx));
                }
                let Some((chunk, rx)) = pending.pop_front() else {
                    return Ok(());
                };
                let waited = Instant::now();
                let outcomes = rx.recv().map_err(|_| PackError::Pool {
                    jobs: opts.jobs,
                    message: "a worker stopped without a result".into(),
                })?;
                sinks[0].summary.seconds.waiting += waited.elapsed().as_secs_f64();
                for (record, per_size) in chunk.iter().zip(outcomes) {
                    for (sink, outcome) in sinks.iter_mut().zip(per_size) {
                        sink.accept(record, outcome)?;
                    }
                }
            }
        };
        let result = write_all();
        if result.is_err() {
            abort.store(true, Ordering::Relaxed);
            // Chunks in flight may wait for images: let them return at once.
            source.abandon();
        }
        result
    })
}

/// The writing side of a pack: format writers and counts, fed in row order.
pub(crate) struct RowSink<'a> {
    staging: &'a Staging,
    /// Each chosen format's writer, with its name (its timer in the summary).
    writers: Vec<(&'static str, Box<dyn FormatWriter + 'a>)>,
    tally: Tally,
    pub summary: PackSummary,
    /// Which rows the writers still want sampled payloads of.
    demand: Arc<Demand>,
    progress: &'a Progress,
}

impl<'a> RowSink<'a> {
    pub fn new(
        staging: &'a Staging,
        dataset: &'a Dataset,
        opts: &'a PackOptions,
        progress: &'a Progress,
    ) -> Result<RowSink<'a>, PackError> {
        let mut expected = [0u64; 3];
        for label in dataset.packable().filter_map(|r| r.label) {
            expected[label.split.index()] += 1;
        }
        let sampling = opts
            .formats
            .iter()
            .filter(|f| f.needs().iter().any(|p| p.sampled()))
            .count();
        let demand = Arc::new(Demand::new(dataset, sampling));
        let ctx = WriterContext {
            sink: staging,
            dataset,
            opts,
            expected,
            demand: demand.clone(),
        };
        let writers = opts
            .formats
            .iter()
            .map(|f| Ok((f.name(), f.create(&ctx)?)))
            .collect::<Result<_, PackError>>()?;
        Ok(RowSink {
            staging,
            writers,
            tally: Tally::new(dataset),
            summary: PackSummary {
                size: opts.size,
                ..PackSummary::default()
            },
            demand,
            progress,
        })
    }

    /// Add `t`'s time since it started to format `name`'s timer.
    fn time(&mut self, name: &str, t: Instant) {
        *self
            .summary
            .seconds
            .formats
            .entry(name.to_string())
            .or_default() += t.elapsed().as_secs_f64();
    }

    /// Take the outcome of one record, the next in labels.csv order.
    fn accept(&mut self, record: &ImageRecord, outcome: Outcome) -> Result<(), PackError> {
        let Some(label) = record.label else {
            return Ok(()); // packable records are labelled
        };
        let encoded = match outcome {
            Outcome::Missing => {
                self.summary.missing.push(record.id);
                self.progress.advance(true);
                return Ok(());
            }
            Outcome::Undecodable(e) => {
                self.summary.undecodable.push(Undecodable {
                    id: record.id,
                    reason: e,
                });
                self.progress.advance(true);
                return Ok(());
            }
            Outcome::Failed(source) => {
                return Err(PackError::Encode {
                    id: record.id,
                    source,
                });
            }
            Outcome::Packed(encoded) => *encoded,
        };
        self.tally.add(record, label, &encoded, &mut self.summary);
        let row = PackedRow {
            split: label.split,
            record,
            label,
            payloads: encoded.payloads,
        };
        if let Some(segment) = row.payloads.rgb.as_ref() {
            self.summary.pixel_bytes += segment.len;
            self.summary.pixel_deflate_bytes += segment.data.len() as u64;
        }
        for k in 0..self.writers.len() {
            let t = Instant::now();
            self.writers[k].1.write_row(&row)?;
            self.time(self.writers[k].0, t);
        }
        self.progress.advance(false);
        Ok(())
    }

    /// Complete every format's files; returns the summary so far, the files written and
    /// those of them already hashed.
    pub fn finish(mut self) -> Result<(PackSummary, Vec<String>, Vec<Artifact>), PackError> {
        let mut produced = Vec::new();
        let mut hashed = Vec::new();
        let mut ctx = FinishContext {
            sink: self.staging,
            hashed: &mut hashed,
        };
        for (name, w) in self.writers {
            let t = Instant::now();
            produced.extend(w.finish(&mut ctx)?);
            *self
                .summary
                .seconds
                .formats
                .entry(name.to_string())
                .or_default() += t.elapsed().as_secs_f64();
        }
        self.tally.finish(&mut self.summary);
        Ok((self.summary, produced, hashed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows in flight: the chunk size times the chunks in flight.
    fn in_flight(sizes: &[u32]) -> usize {
        chunk_rows(sizes) * CHUNKS_IN_FLIGHT
    }

    #[test]
    fn rows_in_flight_are_bounded_by_their_pixels() {
        // Small rows: as many as the pool can use.
        assert_eq!(in_flight(&[256]), 128);
        assert_eq!(in_flight(&[64, 256]), 128);
        assert_eq!(in_flight(&[1024]), 84);
        // 48 MiB rows: four in flight; two sizes together count both.
        assert_eq!(in_flight(&[4096]), 4);
        assert_eq!(in_flight(&[256, 4096]), 4);
        assert_eq!(in_flight(&[2048, 4096]), 4);
        // Whatever the size, one row per chunk at least.
        assert_eq!(in_flight(&[16384]), CHUNKS_IN_FLIGHT);
        for sizes in [&[256][..], &[1024], &[2048], &[4096], &[256, 2048, 4096]] {
            let row: usize = sizes.iter().map(|&s| s as usize * s as usize * 3).sum();
            assert!(in_flight(sizes) * row <= PIXELS_IN_FLIGHT, "{sizes:?}");
        }
    }
}
