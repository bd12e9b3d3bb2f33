//! `kaokore fetch` end to end against the fixture hosts: a run killed with SIGKILL that
//! resumes with exactly the remainder (the servers' own count), and every URL of v1.3
//! (a whole-version run: `scripts/test.sh --full`). The library-level equivalents live in
//! the parent module.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kaokore::fetch::Cache;
use kaokore_fixture::{FixtureConfig, FixtureHosts};

const V1_3_URLS: usize = 9683;
/// Lines of v1.3 in the small run (none of them blank).
const SMALL_URLS: usize = 1500;

fn kaokore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaokore"))
}

/// `kaokore fetch` of v1.3 (or of the metadata in `meta`) into `cache` from the fixture.
fn fetch_args(hosts: &FixtureHosts, cache: &Path, meta: Option<&Path>) -> Vec<String> {
    let mut args: Vec<String> = [
        "fetch",
        "--dataset-version",
        "1.3",
        "--per-host",
        "8",
        "--quiet",
        "--cache",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    args.push(cache.display().to_string());
    if let Some(meta) = meta {
        args.push("--metadata".into());
        args.push(meta.display().to_string());
    }
    args.extend(hosts.rewrite_args());
    args
}

fn entries(cache: &Cache) -> usize {
    let mut n = 0;
    for shard in std::fs::read_dir(cache.dir()).unwrap() {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            assert!(!name.starts_with('.'), "temp file left: {name}");
            if name.ends_with(".json") {
                continue; // the entry's record
            }
            let bytes = std::fs::read(&path).unwrap();
            image::load_from_memory(&bytes)
                .unwrap_or_else(|e| panic!("cache entry {name} does not decode: {e}"));
            n += 1;
        }
    }
    n
}

fn check(output: Output) {
    assert!(
        output.status.success(),
        "kaokore fetch failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[ignore = "whole version: scripts/test.sh --full runs it"]
fn whole_version_1_3_every_url_is_fetched_from_the_fixture() {
    // Some served in grayscale: validation accepts any colour type.
    let hosts = FixtureHosts::start(FixtureConfig {
        gray_one_in: 50,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    check(
        kaokore()
            .args(fetch_args(&hosts, dir.path(), None))
            .output()
            .unwrap(),
    );
    assert_eq!(hosts.codh.stats().total, 5351);
    assert_eq!(hosts.keio.stats().total, 2233);
    assert_eq!(hosts.kyoto.stats().total, 2099);
    for fx in hosts.all() {
        assert!(fx.stats().max_in_flight <= 8);
    }
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(entries(&cache), V1_3_URLS);

    // A rerun asks nothing.
    check(
        kaokore()
            .args(fetch_args(&hosts, dir.path(), None))
            .output()
            .unwrap(),
    );
    assert_eq!(hosts.total_requests(), V1_3_URLS);
}

#[test]
fn a_fetch_killed_mid_way_resumes_with_exactly_the_remainder() {
    let hosts = FixtureHosts::start(FixtureConfig {
        latency: Duration::from_millis(5),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    // The first 1,500 lines of v1.3 (two of its three hosts).
    let meta = crate::support::metadata::small_metadata("1.3", dir.path(), SMALL_URLS as u32);
    let cache_dir = dir.path().join("cache");
    let mut child = kaokore()
        .args(fetch_args(&hosts, &cache_dir, Some(&meta)))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while hosts.total_requests() < 300 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let asked = hosts.total_requests();
    assert!(asked < SMALL_URLS, "killed mid-way ({asked} requests)");

    let cache = Cache::open(&cache_dir).unwrap();
    let kept = entries(&cache);
    assert!(kept > 0 && kept <= asked);
    for fx in hosts.all() {
        fx.reset_stats();
    }
    check(
        kaokore()
            .args(fetch_args(&hosts, &cache_dir, Some(&meta)))
            .output()
            .unwrap(),
    );
    assert_eq!(
        hosts.total_requests(),
        SMALL_URLS - kept,
        "the rerun requests only what was missing"
    );
    assert_eq!(entries(&cache), SMALL_URLS);
}
