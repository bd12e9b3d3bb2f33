//! `kaokore fetch` end to end against the fixture hosts: all of v1.3, and a run killed
//! with SIGKILL that resumes with exactly the remainder (the servers' own count).
//!
//! Until the binary has a working `fetch` command these tests say so and pass; the
//! library-level equivalents live in tests/fetch.rs.

mod support;

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use kaokore::fetch::Cache;
use support::{FixtureConfig, FixtureHosts};

const V1_3_URLS: usize = 9683;

fn kaokore() -> Command {
    Command::new(env!("CARGO_BIN_EXE_kaokore"))
}

/// Whether this build of the binary can fetch; prints why not otherwise.
fn fetch_command_available() -> bool {
    let help = kaokore().args(["fetch", "--help"]).output();
    let has_rewrite = help
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("--rewrite"))
        .unwrap_or(false);
    if !has_rewrite {
        eprintln!("skipped: this kaokore binary has no `fetch --rewrite`");
        return false;
    }
    // A one-URL dataset, fetched from a local fixture: does the command do anything?
    let fixture = support::Fixture::start(FixtureConfig::default());
    let meta = tempfile::tempdir().unwrap();
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/data/kaokore-metadata/v1.3");
    for name in ["labels.metadata.en.txt", "labels.metadata.ja.txt"] {
        std::fs::copy(format!("{data}/{name}"), meta.path().join(name)).unwrap();
    }
    let url = format!("{}/iiif/probe/0,0,64,64/64,64/0/default.jpg", support::CODH);
    std::fs::write(meta.path().join("urls.txt"), format!("{url}\n")).unwrap();
    std::fs::write(meta.path().join("labels.csv"), "image,gender,status,set\n").unwrap();
    std::fs::write(meta.path().join("original_tags.txt"), "").unwrap();
    let cache = tempfile::tempdir().unwrap();
    let probe = kaokore()
        .arg("fetch")
        .arg("--metadata")
        .arg(meta.path())
        .arg("--cache")
        .arg(cache.path())
        .arg("--quiet")
        .arg("--rewrite")
        .arg(format!("{}={}", support::CODH, fixture.base_url()))
        .output();
    let not_built = probe
        .map(|o| String::from_utf8_lossy(&o.stderr).contains("not built"))
        .unwrap_or(true);
    if not_built {
        eprintln!("skipped: `kaokore fetch` is not built yet");
        return false;
    }
    true
}

fn fetch_args(hosts: &FixtureHosts, cache: &std::path::Path) -> Vec<String> {
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
fn fetch_gets_every_v1_3_url_from_the_fixture() {
    if !fetch_command_available() {
        return;
    }
    let hosts = FixtureHosts::start(FixtureConfig::default());
    let dir = tempfile::tempdir().unwrap();
    check(
        kaokore()
            .args(fetch_args(&hosts, dir.path()))
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
            .args(fetch_args(&hosts, dir.path()))
            .output()
            .unwrap(),
    );
    assert_eq!(hosts.total_requests(), V1_3_URLS);
}

#[test]
fn a_fetch_killed_mid_way_resumes_with_exactly_the_remainder() {
    if !fetch_command_available() {
        return;
    }
    let hosts = FixtureHosts::start(FixtureConfig {
        latency: Duration::from_millis(5),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut child = kaokore()
        .args(fetch_args(&hosts, dir.path()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while hosts.total_requests() < 1500 {
        assert!(started.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let asked = hosts.total_requests();
    assert!(asked < V1_3_URLS, "killed mid-way ({asked} requests)");

    let cache = Cache::open(dir.path()).unwrap();
    let kept = entries(&cache);
    assert!(kept > 0 && kept <= asked);
    for fx in hosts.all() {
        fx.reset_stats();
    }
    check(
        kaokore()
            .args(fetch_args(&hosts, dir.path()))
            .output()
            .unwrap(),
    );
    assert_eq!(
        hosts.total_requests(),
        V1_3_URLS - kept,
        "the rerun requests only what was missing"
    );
    assert_eq!(entries(&cache), V1_3_URLS);
}
