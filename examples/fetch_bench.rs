//! Fetch every URL of a dataset version through the library, and print how long it took.
//! Used by `scripts/bench_fetch.sh` against the fixture server.
//!
//!     cargo run --release --example fetch_bench -- --cache DIR --per-host 8 \
//!         --rewrite http://codh.rois.ac.jp=http://127.0.0.1:PORT ...

use std::path::PathBuf;
use std::time::Instant;

use kaokore::fetch::{Cache, FetchRequest, fetch_all};
use kaokore::{Dataset, DatasetVersion, FetchOptions, Rewrite};

fn main() {
    if let Err(e) = run() {
        eprintln!("fetch_bench: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut opts = FetchOptions::default();
    let mut cache_dir: Option<PathBuf> = None;
    let mut version = DatasetVersion::V1_3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--cache" => cache_dir = Some(PathBuf::from(value()?)),
            "--per-host" => opts.per_host = value()?.parse().map_err(|e| format!("{e}"))?,
            "--concurrency" => opts.concurrency = value()?.parse().map_err(|e| format!("{e}"))?,
            "--rewrite" => opts.rewrites.push(value()?.parse::<Rewrite>()?),
            "--dataset-version" => {
                version = match value()?.as_str() {
                    "1.0" => DatasetVersion::V1_0,
                    "1.1" => DatasetVersion::V1_1,
                    "1.2" => DatasetVersion::V1_2,
                    "1.3" => DatasetVersion::V1_3,
                    v => return Err(format!("unknown dataset version {v}")),
                }
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let cache_dir = cache_dir.ok_or("--cache DIR is required")?;
    let dataset = Dataset::embedded(version).map_err(|e| e.to_string())?;
    let requests: Vec<FetchRequest> = dataset
        .with_url()
        .filter_map(|r| r.url.clone().map(|url| FetchRequest { id: r.id, url }))
        .collect();
    let cache = Cache::open(&cache_dir).map_err(|e| e.to_string())?;
    let started = Instant::now();
    let summary = fetch_all(&requests, &cache, &opts, &|_, _| {}).map_err(|e| e.to_string())?;
    let wall = started.elapsed().as_secs_f64();
    println!(
        "requested={} downloaded={} from_cache={} failed={} retries={} wall_seconds={wall:.3}",
        summary.requested,
        summary.downloaded,
        summary.from_cache,
        summary.failures.len(),
        summary.retries
    );
    Ok(())
}
