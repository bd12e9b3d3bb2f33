//! `kaokore fetch` end to end against the fixture hosts: a run killed with SIGKILL that
//! resumes with exactly the remainder (the servers' own count), and every URL of v1.3
//! (a whole-version run: `scripts/test.sh --full`). The library-level equivalents live in
//! the parent module.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kaokore::fetch::Cache;
use kaokore_fixture::FixtureConfig;

use super::valid_entries;
use crate::support::{Run, stderr};

const V1_3_URLS: usize = 9683;
/// Lines of v1.3 in the small run (none of them blank).
const SMALL_URLS: usize = 1500;

/// `kaokore fetch` of v1.3 (or of the metadata in `meta`) into `cache` from the fixture.
fn fetch(run: &Run, cache: &Path, meta: Option<&Path>) -> Command {
    let mut c = run.kaokore("fetch");
    c.args([
        "--dataset-version",
        "1.3",
        "--per-host",
        "8",
        "--quiet",
        "--cache",
    ])
    .arg(cache);
    if let Some(meta) = meta {
        c.arg("--metadata").arg(meta);
    }
    c
}

fn check(output: Output) {
    assert!(
        output.status.success(),
        "kaokore fetch failed: {}",
        stderr(&output)
    );
}

#[test]
#[ignore = "whole version: scripts/test.sh --full runs it"]
fn whole_version_1_3_every_url_is_fetched_from_the_fixture() {
    // Some served in grayscale: validation accepts any colour type.
    let run = Run::with(FixtureConfig {
        gray_one_in: 50,
        ..Default::default()
    });
    let cache_dir = run.cache();
    check(fetch(&run, &cache_dir, None).output().unwrap());
    assert_eq!(run.hosts.codh.stats().total, 5351);
    assert_eq!(run.hosts.keio.stats().total, 2233);
    assert_eq!(run.hosts.kyoto.stats().total, 2099);
    for fx in run.hosts.all() {
        assert!(fx.stats().max_in_flight <= 8);
    }
    let cache = Cache::open(&cache_dir).unwrap();
    assert_eq!(valid_entries(&cache, false), V1_3_URLS);

    // A rerun asks nothing.
    check(fetch(&run, &cache_dir, None).output().unwrap());
    assert_eq!(run.hosts.total_requests(), V1_3_URLS);
}

#[test]
fn a_fetch_killed_mid_way_resumes_with_exactly_the_remainder() {
    let run = Run::with(FixtureConfig {
        latency: Duration::from_millis(5),
        ..Default::default()
    });
    // The first 1,500 lines of v1.3 (two of its three hosts).
    let meta =
        crate::support::metadata::small_metadata("1.3", &run.root.join("meta"), SMALL_URLS as u32);
    let cache_dir = run.cache();
    let mut child = fetch(&run, &cache_dir, Some(&meta))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while run.hosts.total_requests() < 300 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let asked = run.hosts.total_requests();
    assert!(asked < SMALL_URLS, "killed mid-way ({asked} requests)");

    // Temp files the kill cut short may stay, for an hour (see the cache).
    let cache = Cache::open(&cache_dir).unwrap();
    let kept = valid_entries(&cache, true);
    assert!(kept > 0 && kept <= asked);
    for fx in run.hosts.all() {
        fx.reset_stats();
    }
    check(fetch(&run, &cache_dir, Some(&meta)).output().unwrap());
    assert_eq!(
        run.hosts.total_requests(),
        SMALL_URLS - kept,
        "the rerun requests only what was missing"
    );
    assert_eq!(valid_entries(&cache, true), SMALL_URLS);
}
