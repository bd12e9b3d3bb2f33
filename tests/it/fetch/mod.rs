//! The fetch stage against the fixture IIIF server: faults recovered from or reported,
//! politeness measured on the server side, and a cache that never holds a bad entry.
//! `kaokore fetch` through the binary is in `cli`, what the fetcher trusts in `trust`, a
//! cache shared by several processes in `shared`.

mod cli;
mod shared;
mod trust;

use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use kaokore::fetch::{
    Cache, FetchError, FetchOutcome, FetchRequest, FetchSummary, fetch_all, fetch_all_until,
};
use kaokore::{FetchOptions, ImageId, Rewrite};
use kaokore_fixture::{CODH, Fault, Fixture, FixtureConfig, FixtureHosts, KEIO, KYOTO};

/// An upstream-looking URL on the first KaoKore host.
fn url(name: &str) -> String {
    format!("{CODH}/iiif/test/{name}/10,20,100,100/256,256/0/default.jpg")
}

fn requests(names: &[&str]) -> Vec<FetchRequest> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| FetchRequest {
            id: ImageId(i as u32),
            url: url(n),
        })
        .collect()
}

fn numbered(n: usize) -> Vec<FetchRequest> {
    (0..n)
        .map(|i| FetchRequest {
            id: ImageId(i as u32),
            url: url(&format!("img{i:05}")),
        })
        .collect()
}

/// Small timeouts and backoffs, so that the suite stays fast.
fn opts(fixture: &Fixture) -> FetchOptions {
    FetchOptions {
        rewrites: vec![Rewrite {
            from: CODH.to_string(),
            to: fixture.base_url(),
        }],
        per_host: 4,
        concurrency: 16,
        retries: 3,
        // Generous: the first request of each rendition waits for the fixture's encode.
        timeout: Duration::from_secs(10),
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_secs(2),
        ..FetchOptions::default()
    }
}

/// Run a fetch, collecting every callback.
fn run(
    reqs: &[FetchRequest],
    cache: &Cache,
    opts: &FetchOptions,
) -> (FetchSummary, Vec<(FetchRequest, FetchOutcome)>) {
    let seen = Mutex::new(Vec::new());
    let summary = fetch_all(reqs, cache, opts, &|r, o| {
        seen.lock().unwrap().push((r.clone(), o.clone()));
    })
    .expect("fetch run");
    let seen = seen.into_inner().unwrap();
    assert_eq!(seen.len(), reqs.len(), "one callback per request");
    (summary, seen)
}

fn outcome_of(seen: &[(FetchRequest, FetchOutcome)], id: u32) -> FetchOutcome {
    seen.iter()
        .find(|(r, _)| r.id == ImageId(id))
        .map(|(_, o)| o.clone())
        .expect("a callback for every id")
}

/// Every entry under the cache decodes as an image and has its record; returns how many
/// entries there are. Temp files (dot-names) are allowed only when `allow_temps`.
fn valid_entries(cache: &Cache, allow_temps: bool) -> usize {
    let mut n = 0;
    for shard in std::fs::read_dir(cache.dir()).unwrap() {
        let shard = shard.unwrap().path();
        for file in std::fs::read_dir(&shard).unwrap() {
            let path = file.unwrap().path();
            let name = path.file_name().unwrap().to_str().unwrap().to_string();
            if name.starts_with('.') {
                assert!(allow_temps, "temp file left in the cache: {name}");
                continue;
            }
            if name.ends_with(".json") {
                continue;
            }
            assert!(name.ends_with(".img"), "unexpected cache file {name}");
            assert!(
                path.with_extension("json").is_file(),
                "cache entry {name} without its record"
            );
            let bytes = std::fs::read(&path).unwrap();
            image::load_from_memory(&bytes)
                .unwrap_or_else(|e| panic!("cache entry {name} does not decode: {e}"));
            n += 1;
        }
    }
    n
}

/// The fixture's `--rewrite` pairs as fetch options take them.
fn rewrites(hosts: &FixtureHosts) -> Vec<Rewrite> {
    hosts
        .rewrite_pairs()
        .into_iter()
        .map(|(from, to)| Rewrite { from, to })
        .collect()
}

/// The ignored test `name` of this module, run alone in a child process of this binary.
fn child_test(name: &str) -> std::process::Command {
    // libtest names a test by its module path without the crate's name.
    let module = module_path!().split_once("::").map_or("", |(_, m)| m);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap());
    child.args([
        "--exact",
        &format!("{module}::{name}"),
        "--ignored",
        "--test-threads=1",
    ]);
    child
}

fn temp_cache() -> (tempfile::TempDir, Cache) {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    (dir, cache)
}

#[test]
fn downloads_validates_and_caches_every_image() {
    let fx = Fixture::start(FixtureConfig {
        gray_one_in: 3,
        ..Default::default()
    });
    fx.add_fault("gray-one", Fault::Gray, u32::MAX);
    let (_dir, cache) = temp_cache();
    let mut reqs = numbered(20);
    reqs.push(FetchRequest {
        id: ImageId(20),
        url: url("gray-one"),
    });
    // The same URL twice is downloaded once and reported for both ids.
    reqs.push(FetchRequest {
        id: ImageId(21),
        url: reqs[0].url.clone(),
    });
    let (summary, seen) = run(&reqs, &cache, &opts(&fx));
    assert_eq!(summary.requested, 22);
    assert_eq!(summary.downloaded, 22);
    assert_eq!(summary.from_cache, 0);
    assert!(summary.failures.is_empty());
    assert_eq!(fx.stats().total, 21);
    assert_eq!(
        outcome_of(&seen, 21),
        FetchOutcome::Downloaded { attempts: 1 }
    );
    assert_eq!(valid_entries(&cache, false), 21);

    // The cached bytes are the served image; the gray one stays gray.
    let bytes = cache.read(&url("gray-one")).expect("cached");
    let img = image::load_from_memory(&bytes).unwrap();
    assert_eq!((img.width(), img.height()), (256, 256));
    assert_eq!(img.color(), image::ColorType::L8);
    assert!(cache.contains(&reqs[3].url));
    assert_eq!(
        cache.path_for(&reqs[3].url).parent().unwrap().parent(),
        Some(cache.dir())
    );
}

#[test]
fn transient_faults_are_retried_until_success() {
    let fx = Fixture::start(FixtureConfig::default());
    let faults = [
        (
            "f-429",
            Fault::RetryAfter {
                status: 429,
                secs: 0,
            },
        ),
        (
            "f-503",
            Fault::RetryAfter {
                status: 503,
                secs: 0,
            },
        ),
        ("f-500", Fault::Status(500)),
        ("f-502", Fault::Status(502)),
        ("f-408", Fault::Status(408)),
        ("f-trunc", Fault::Truncated),
        ("f-html", Fault::Html200),
        ("f-corrupt", Fault::CorruptJpeg),
    ];
    for (name, fault) in faults {
        fx.add_fault(&format!("/{name}/"), fault, 2);
    }
    let names: Vec<&str> = faults.iter().map(|(n, _)| *n).collect();
    let reqs = requests(&names);
    let (_dir, cache) = temp_cache();
    let (summary, seen) = run(&reqs, &cache, &opts(&fx));
    assert!(summary.failures.is_empty(), "{:#?}", summary.failures);
    assert_eq!(summary.downloaded, names.len());
    assert_eq!(summary.retries, 2 * names.len() as u64);
    for (i, name) in names.iter().enumerate() {
        assert_eq!(
            outcome_of(&seen, i as u32),
            FetchOutcome::Downloaded { attempts: 3 },
            "{name}"
        );
        let log = fx.requests_matching(&format!("/{name}/"));
        assert_eq!(log.len(), 3, "{name}: two faults, then the image");
        assert!(log[..2].iter().all(|e| e.fault.is_some()));
        assert_eq!(log[2].fault, None);
    }
    assert_eq!(valid_entries(&cache, false), names.len());
}

#[test]
fn permanent_failures_are_reported_once_with_the_original_url() {
    let fx = Fixture::start(FixtureConfig::default());
    fx.add_fault("/p-404/", Fault::Status(404), u32::MAX);
    fx.add_fault("/p-410/", Fault::Status(410), u32::MAX);
    fx.add_fault("/p-403/", Fault::Status(403), u32::MAX);
    let reqs = requests(&["p-404", "ok", "p-410", "p-403"]);
    let (_dir, cache) = temp_cache();
    let (summary, _) = run(&reqs, &cache, &opts(&fx));
    assert_eq!(summary.downloaded, 1);
    assert_eq!(summary.retries, 0);
    let got: Vec<(u32, Option<u16>, u32)> = summary
        .failures
        .iter()
        .map(|f| (f.id.0, f.status, f.attempts))
        .collect();
    assert_eq!(
        got,
        vec![(0, Some(404), 1), (2, Some(410), 1), (3, Some(403), 1)],
        "sorted by id, one attempt each"
    );
    for f in &summary.failures {
        assert!(f.url.starts_with(CODH), "original URL kept: {}", f.url);
        assert_eq!(f.url, reqs[f.id.0 as usize].url);
        assert!(!cache.contains(&f.url));
    }
    assert_eq!(summary.failures[0].reason, "HTTP 404 Not Found");
    assert_eq!(fx.stats().total, 4, "no permanent failure is retried");
}

#[test]
fn invalid_bodies_are_never_cached_and_failures_are_retried_next_run() {
    let fx = Fixture::start(FixtureConfig::default());
    fx.add_fault("/always-html/", Fault::Html200, u32::MAX);
    fx.add_fault("/always-corrupt/", Fault::CorruptJpeg, u32::MAX);
    fx.add_fault("/always-trunc/", Fault::Truncated, u32::MAX);
    fx.add_fault("/always-503/", Fault::Status(503), u32::MAX);
    let reqs = requests(&[
        "always-html",
        "always-corrupt",
        "always-trunc",
        "always-503",
        "ok",
    ]);
    let (_dir, cache) = temp_cache();
    let mut o = opts(&fx);
    o.retries = 2;
    let (summary, _) = run(&reqs, &cache, &o);
    assert_eq!(summary.downloaded, 1);
    assert_eq!(summary.failures.len(), 4);
    for f in &summary.failures {
        assert_eq!(f.attempts, 3, "{f:?}");
        assert!(!cache.contains(&f.url), "{f:?}");
    }
    assert_eq!(summary.failures[0].status, Some(200));
    assert!(
        summary.failures[0].reason.contains("HTML"),
        "{}",
        summary.failures[0].reason
    );
    assert!(summary.failures[1].reason.contains("not a decodable image"));
    assert!(summary.failures[2].reason.contains("bytes"));
    assert_eq!(summary.failures[3].status, Some(503));
    assert_eq!(valid_entries(&cache, false), 1);
    assert_eq!(fx.stats().total, 4 * 3 + 1);

    // The server recovers: the next run asks only for what failed.
    fx.clear_faults();
    fx.reset_stats();
    let (summary, _) = run(&reqs, &cache, &o);
    assert_eq!(summary.from_cache, 1);
    assert_eq!(summary.downloaded, 4);
    assert!(summary.failures.is_empty());
    assert_eq!(fx.stats().total, 4);
    assert_eq!(valid_entries(&cache, false), 5);
}

#[test]
fn oversized_bodies_and_images_are_refused_without_retry() {
    let fx = Fixture::start(FixtureConfig::default());
    let reqs = requests(&["big"]);
    let (_dir, cache) = temp_cache();
    let mut o = opts(&fx);
    o.max_body_bytes = 1000;
    let (summary, _) = run(&reqs, &cache, &o);
    assert_eq!(summary.failures.len(), 1);
    assert_eq!(summary.failures[0].attempts, 1);
    assert!(summary.failures[0].reason.contains("exceeds the limit"));

    let mut o = opts(&fx);
    o.max_image_edge = 100;
    let (summary, _) = run(&reqs, &cache, &o);
    assert_eq!(summary.failures.len(), 1);
    assert_eq!(summary.failures[0].attempts, 1);
    assert!(
        summary.failures[0].reason.contains("256x256"),
        "{}",
        summary.failures[0].reason
    );
    assert_eq!(valid_entries(&cache, false), 0);
}

#[test]
fn retry_after_pauses_the_whole_host() {
    let fx = Fixture::start(FixtureConfig::default());
    fx.add_fault(
        "/busy/",
        Fault::RetryAfter {
            status: 429,
            secs: 1,
        },
        1,
    );
    let mut names = vec!["busy"];
    let others: Vec<String> = (0..5).map(|i| format!("after{i}")).collect();
    names.extend(others.iter().map(String::as_str));
    let reqs = requests(&names);
    let (_dir, cache) = temp_cache();
    let mut o = opts(&fx);
    // One request at a time: everything after the 429 must wait for its Retry-After.
    o.per_host = 1;
    let (summary, seen) = run(&reqs, &cache, &o);
    assert!(summary.failures.is_empty());
    assert_eq!(
        outcome_of(&seen, 0),
        FetchOutcome::Downloaded { attempts: 2 }
    );
    let log = fx.log();
    assert_eq!(log[0].status, 429, "requests start in the given order");
    let throttled = log[0].arrived;
    for e in &log[1..] {
        let gap = e.arrived - throttled;
        assert!(
            gap >= Duration::from_secs(1),
            "{} arrived {gap:?} after the 429 with Retry-After: 1",
            e.path
        );
    }
}

#[test]
fn retry_after_of_a_503_is_honoured_and_capped_by_backoff_max() {
    let fx = Fixture::start(FixtureConfig::default());
    fx.add_fault(
        "/unavail/",
        Fault::RetryAfter {
            status: 503,
            secs: 1,
        },
        1,
    );
    fx.add_fault(
        "/hour/",
        Fault::RetryAfter {
            status: 429,
            secs: 3600,
        },
        1,
    );
    let (_dir, cache) = temp_cache();
    let mut o = opts(&fx);
    o.backoff_max = Duration::from_millis(1500);
    let (summary, _) = run(&requests(&["unavail"]), &cache, &o);
    assert!(summary.failures.is_empty());
    let log = fx.requests_matching("/unavail/");
    assert_eq!(log.len(), 2);
    assert!(log[1].arrived - log[0].arrived >= Duration::from_secs(1));

    // A Retry-After of an hour is cut to backoff_max: the run waits, but finishes.
    let (summary, _) = run(&requests(&["hour"]), &cache, &o);
    assert!(summary.failures.is_empty());
    let log = fx.requests_matching("/hour/");
    assert_eq!(log.len(), 2);
    let gap = log[1].arrived - log[0].arrived;
    assert!(gap >= Duration::from_millis(1500), "{gap:?}");
    assert!(gap < Duration::from_secs(3600));
}

#[test]
fn a_stalled_body_is_cut_by_the_timeout_and_retried() {
    let fx = Fixture::start(FixtureConfig::default());
    let stall = Duration::from_secs(60);
    fx.add_fault("/stall/", Fault::Stall(stall), 1);
    let (_dir, cache) = temp_cache();
    let mut o = opts(&fx);
    o.timeout = Duration::from_millis(500);
    let (summary, seen) = run(&requests(&["stall"]), &cache, &o);
    assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    assert_eq!(
        outcome_of(&seen, 0),
        FetchOutcome::Downloaded { attempts: 2 }
    );
    let log = fx.requests_matching("/stall/");
    assert_eq!(log.len(), 2);
    let gap = log[1].arrived - log[0].arrived;
    // The timeout runs from when the client sent the request; the server logs it when it
    // has read it, which on a loaded machine can be tens of milliseconds later.
    assert!(
        gap >= Duration::from_millis(400) && gap < stall,
        "the retry came {gap:?} after the stalled request"
    );
    assert_eq!(valid_entries(&cache, false), 1);
}

#[test]
fn a_body_that_stalls_every_time_is_reported_as_a_timeout() {
    let fx = Fixture::start(FixtureConfig::default());
    fx.add_fault("/stall/", Fault::Stall(Duration::from_secs(60)), u32::MAX);
    let (_dir, cache) = temp_cache();
    let mut o = opts(&fx);
    o.timeout = Duration::from_millis(300);
    o.retries = 1;
    let (summary, _) = run(&requests(&["stall"]), &cache, &o);
    assert_eq!(summary.failures.len(), 1);
    let f = &summary.failures[0];
    assert_eq!(f.attempts, 2);
    assert!(f.reason.contains("timed out"), "{}", f.reason);
    assert_eq!(valid_entries(&cache, false), 0);
}

#[test]
fn per_host_limit_is_reached_and_never_exceeded() {
    let hosts = FixtureHosts::start(FixtureConfig {
        latency: Duration::from_millis(15),
        ..Default::default()
    });
    let mut reqs = Vec::new();
    for (h, prefix) in [CODH, KEIO[0], KYOTO].into_iter().enumerate() {
        for i in 0..40 {
            reqs.push(FetchRequest {
                id: ImageId((h * 100 + i) as u32),
                url: format!("{prefix}/iiif/h{h}/img{i}/0,0,80,80/256,256/0/default.jpg"),
            });
        }
    }
    let (_dir, cache) = temp_cache();
    let o = FetchOptions {
        rewrites: rewrites(&hosts),
        per_host: 3,
        concurrency: 32,
        ..opts(&hosts.codh)
    };
    let (summary, _) = run(&reqs, &cache, &o);
    assert_eq!(summary.downloaded, 120);
    for fx in hosts.all() {
        let s = fx.stats();
        assert_eq!(s.total, 40);
        assert_eq!(s.max_in_flight, 3, "per-host limit reached, never exceeded");
    }
}

#[test]
fn concurrency_bounds_requests_overall() {
    let fx = Fixture::start(FixtureConfig {
        latency: Duration::from_millis(15),
        ..Default::default()
    });
    let (_dir, cache) = temp_cache();
    let mut o = opts(&fx);
    o.per_host = 8;
    o.concurrency = 3;
    let (summary, _) = run(&numbered(40), &cache, &o);
    assert_eq!(summary.downloaded, 40);
    assert_eq!(fx.stats().max_in_flight, 3);
}

#[test]
fn a_rerun_makes_no_request_and_the_key_ignores_the_rewrite() {
    let fx = Fixture::start(FixtureConfig::default());
    let reqs = numbered(15);
    let (_dir, cache) = temp_cache();
    let (summary, _) = run(&reqs, &cache, &opts(&fx));
    assert_eq!(summary.downloaded, 15);
    assert_eq!(fx.stats().total, 15);

    // Same cache, another mirror: everything is already there under the original URL.
    let mirror = Fixture::start(FixtureConfig::default());
    let (summary, seen) = run(&reqs, &cache, &opts(&mirror));
    assert_eq!(summary.from_cache, 15);
    assert_eq!(summary.downloaded, 0);
    assert!(seen.iter().all(|(_, o)| *o == FetchOutcome::FromCache));
    assert_eq!(mirror.stats().total, 0);
    assert_eq!(fx.stats().total, 15);

    // And a cache opened afresh on the same directory agrees.
    let reopened = Cache::open(cache.dir().parent().unwrap()).unwrap();
    assert!(reqs.iter().all(|r| reopened.contains(&r.url)));
}

#[test]
fn urls_that_are_not_http_are_refused_without_a_request() {
    let fx = Fixture::start(FixtureConfig::default());
    let reqs = vec![
        FetchRequest {
            id: ImageId(0),
            url: "file:///etc/passwd".into(),
        },
        FetchRequest {
            id: ImageId(1),
            url: url("fine"),
        },
    ];
    let (_dir, cache) = temp_cache();
    let (summary, _) = run(&reqs, &cache, &opts(&fx));
    assert_eq!(summary.downloaded, 1);
    assert_eq!(summary.failures.len(), 1);
    assert_eq!(summary.failures[0].attempts, 0);
    assert!(summary.failures[0].reason.contains("scheme"));
    assert_eq!(fx.stats().total, 1);
}

#[test]
fn a_stopped_fetch_leaves_only_valid_entries_and_the_rerun_fetches_the_rest() {
    let fx = Fixture::start(FixtureConfig {
        latency: Duration::from_millis(20),
        ..Default::default()
    });
    let reqs = numbered(200);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let stop = AtomicBool::new(false);
    let done = AtomicUsize::new(0);
    let result = fetch_all_until(
        &reqs,
        &cache,
        &opts(&fx),
        &|_, _| {
            if done.fetch_add(1, Ordering::SeqCst) + 1 == 30 {
                stop.store(true, Ordering::SeqCst);
            }
        },
        &stop,
    );
    assert!(matches!(result, Err(FetchError::Interrupted)), "{result:?}");
    let asked = fx.stats().total;
    assert!(asked < 200, "stopped early ({asked} requests)");

    let cache = Cache::open(dir.path()).unwrap();
    let kept = valid_entries(&cache, false);
    assert!(kept >= 30, "{kept} entries");
    fx.reset_stats();
    let (summary, _) = run(&reqs, &cache, &opts(&fx));
    assert_eq!(summary.from_cache, kept);
    assert_eq!(summary.downloaded, 200 - kept);
    assert_eq!(
        fx.stats().total,
        200 - kept,
        "only the remainder is requested"
    );
    assert_eq!(valid_entries(&cache, false), 200);
}

/// The child half of `a_killed_fetch_leaves_no_bad_entry`: fetches into the cache named
/// by the environment until the parent kills it.
#[test]
#[ignore = "run as a child process by a_killed_fetch_leaves_no_bad_entry"]
fn killed_fetch_child() {
    let (Ok(cache_dir), Ok(base)) = (
        std::env::var("KAOKORE_TEST_CACHE"),
        std::env::var("KAOKORE_TEST_FIXTURE"),
    ) else {
        return;
    };
    let cache = Cache::open(Path::new(&cache_dir)).unwrap();
    let o = FetchOptions {
        rewrites: vec![Rewrite {
            from: CODH.to_string(),
            to: base,
        }],
        per_host: 4,
        ..FetchOptions::default()
    };
    let _ = fetch_all(&numbered(300), &cache, &o, &|_, _| {});
}

#[test]
fn a_killed_fetch_leaves_no_bad_entry_and_the_rerun_fetches_only_the_rest() {
    let fx = Fixture::start(FixtureConfig {
        latency: Duration::from_millis(20),
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mut child = child_test("killed_fetch_child")
        .env("KAOKORE_TEST_CACHE", dir.path())
        .env("KAOKORE_TEST_FIXTURE", fx.base_url())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Let it get some way, then SIGKILL it.
    let started = std::time::Instant::now();
    while fx.stats().total < 60 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "child made no progress"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let asked = fx.stats().total;
    assert!(asked < 300, "killed mid-way ({asked} requests)");

    // A temp file the kill cut short may stay (for an hour: its writer could be a live
    // process this one cannot see); no entry is bad.
    let cache = Cache::open(dir.path()).unwrap();
    let kept = valid_entries(&cache, true);
    assert!(
        kept > 0 && kept <= asked,
        "{kept} entries of {asked} requests"
    );
    fx.reset_stats();
    let o = FetchOptions {
        rewrites: vec![Rewrite {
            from: CODH.to_string(),
            to: fx.base_url(),
        }],
        ..FetchOptions::default()
    };
    let (summary, _) = run(&numbered(300), &cache, &o);
    assert_eq!(summary.from_cache, kept);
    assert_eq!(summary.downloaded, 300 - kept);
    assert_eq!(
        fx.stats().total,
        300 - kept,
        "only the remainder is requested"
    );
}

#[test]
fn requests_start_in_the_given_order_within_a_host() {
    let fx = Fixture::start(FixtureConfig::default());
    let (_dir, cache) = temp_cache();
    let mut o = opts(&fx);
    o.per_host = 1;
    // Reversed ids: the order is the order given, not the id order.
    let mut reqs = numbered(12);
    reqs.reverse();
    let (summary, seen) = run(&reqs, &cache, &o);
    assert_eq!(summary.downloaded, 12);
    let served: Vec<String> = fx.log().into_iter().map(|e| e.path).collect();
    let asked: Vec<String> = reqs.iter().map(|r| r.url.replacen(CODH, "", 1)).collect();
    assert_eq!(served, asked);
    assert_eq!(seen.len(), 12);
}

/// A host name that never resolves: if the proxy were ignored, nothing could be fetched.
const UNRESOLVABLE: &str = "http://kaokore-images.invalid";

/// The child half of `standard_proxy_variables_are_honoured`: fetches without any
/// rewrite, so only `HTTP_PROXY` from its environment can reach the fixture.
#[test]
#[ignore = "run as a child process by standard_proxy_variables_are_honoured"]
fn proxied_fetch_child() {
    let Ok(cache_dir) = std::env::var("KAOKORE_TEST_CACHE") else {
        return;
    };
    let cache = Cache::open(Path::new(&cache_dir)).unwrap();
    let reqs: Vec<FetchRequest> = (0..5)
        .map(|i| FetchRequest {
            id: ImageId(i),
            url: format!("{UNRESOLVABLE}/iiif/p{i}/0,0,50,50/256,/0/default.jpg"),
        })
        .collect();
    let o = FetchOptions {
        retries: 0,
        ..FetchOptions::default()
    };
    let summary = fetch_all(&reqs, &cache, &o, &|_, _| {}).unwrap();
    assert!(summary.failures.is_empty(), "{:?}", summary.failures);
    assert_eq!(summary.downloaded, 5);
}

#[test]
fn standard_proxy_variables_are_honoured() {
    // The fixture parses the absolute-form request a proxy receives like any other path.
    let proxy = Fixture::start(FixtureConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let status = child_test("proxied_fetch_child")
        .env("KAOKORE_TEST_CACHE", dir.path())
        .env("HTTP_PROXY", proxy.base_url())
        .env("http_proxy", proxy.base_url())
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "the proxied fetch failed");
    let log = proxy.log();
    assert_eq!(log.len(), 5);
    assert!(
        log.iter().all(|e| e.path.starts_with(UNRESOLVABLE)),
        "{log:?}"
    );
    let cache = Cache::open(dir.path()).unwrap();
    assert_eq!(valid_entries(&cache, false), 5);
    assert!(cache.contains(&format!(
        "{UNRESOLVABLE}/iiif/p0/0,0,50,50/256,/0/default.jpg"
    )));
}

#[test]
fn a_throttled_host_gets_fewer_parallel_requests_for_a_while() {
    let fx = Fixture::start(FixtureConfig {
        latency: Duration::from_millis(20),
        ..Default::default()
    });
    fx.add_fault(
        "/img00000/",
        Fault::RetryAfter {
            status: 429,
            secs: 1,
        },
        1,
    );
    let (_dir, cache) = temp_cache();
    let o = opts(&fx);
    assert_eq!(o.per_host, 4);
    let (summary, _) = run(&numbered(80), &cache, &o);
    assert!(summary.failures.is_empty());
    let log = fx.log();
    let throttled = log.iter().find(|e| e.status == 429).unwrap().arrived;
    let after: Vec<usize> = log
        .iter()
        .filter(|e| e.arrived >= throttled + Duration::from_secs(1))
        .map(|e| e.in_flight)
        .collect();
    assert!(after.len() >= 70);
    assert!(
        after[..12].iter().all(|&n| n <= 2),
        "halved after the 429: {:?}",
        &after[..12]
    );
    assert!(
        after.iter().any(|&n| n >= 3),
        "and regained slowly: {after:?}"
    );
    assert!(after.iter().all(|&n| n <= 4));
}

#[test]
fn a_host_that_keeps_failing_is_given_up_on_and_retried_next_run() {
    let fx = Fixture::start(FixtureConfig::default());
    fx.add_fault("/img", Fault::Status(500), u32::MAX);
    let (_dir, cache) = temp_cache();
    let mut o = opts(&fx);
    o.per_host = 2;
    o.retries = 2;
    let reqs = numbered(100);
    let (summary, _) = run(&reqs, &cache, &o);
    assert_eq!(summary.failures.len(), 100);
    let asked = fx.stats().total;
    assert!(
        asked < 100,
        "gave up early: {asked} requests for 100 images"
    );
    let skipped: Vec<_> = summary
        .failures
        .iter()
        .filter(|f| f.attempts == 0)
        .collect();
    assert!(skipped.len() >= 80, "{} skipped", skipped.len());
    assert!(
        skipped[0].reason.contains("HTTP 500"),
        "{}",
        skipped[0].reason
    );
    assert!(summary.failures.iter().all(|f| f.attempts <= 3));

    // The next run tries again, and the host is back.
    fx.clear_faults();
    fx.reset_stats();
    let (summary, _) = run(&reqs, &cache, &o);
    assert!(summary.failures.is_empty());
    assert_eq!(fx.stats().total, 100);
}
