//! What the fetcher trusts: cache entries only while they match their record, bodies only
//! within one pixel limit and a bounded memory, redirects only on the same host, JPEGs
//! with bytes after their end (as they come from real servers).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kaokore::fetch::{Cache, FetchOutcome, FetchRequest, FetchSummary, Lookup, fetch_all};
use kaokore::{FetchOptions, ImageId, Rewrite};
use kaokore_fixture::{CODH, Fault, Fixture, FixtureConfig};
use sha2::Digest;

use crate::support::{Run, report, stderr};

fn url(name: &str) -> String {
    format!("{CODH}/iiif/trust/{name}/10,20,100,100/256,256/0/default.jpg")
}

fn numbered(n: usize) -> Vec<FetchRequest> {
    (0..n)
        .map(|i| FetchRequest {
            id: ImageId(i as u32),
            url: url(&format!("img{i:03}")),
        })
        .collect()
}

fn opts(fixture: &Fixture) -> FetchOptions {
    FetchOptions {
        rewrites: vec![Rewrite {
            from: CODH.to_string(),
            to: fixture.base_url(),
        }],
        per_host: 4,
        retries: 2,
        timeout: Duration::from_secs(10),
        backoff_base: Duration::from_millis(5),
        backoff_max: Duration::from_millis(50),
        ..FetchOptions::default()
    }
}

fn run(reqs: &[FetchRequest], cache: &Cache, opts: &FetchOptions) -> FetchSummary {
    let seen = Mutex::new(0usize);
    let summary = fetch_all(reqs, cache, opts, &|_, _: &FetchOutcome| {
        *seen.lock().unwrap() += 1;
    })
    .expect("fetch run");
    assert_eq!(seen.into_inner().unwrap(), reqs.len());
    summary
}

/// The `.img` entries of a cache directory, sorted.
fn entries(cache_dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(shards) = std::fs::read_dir(cache_dir) else {
        return out;
    };
    for shard in shards {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let path = file.unwrap().path();
            if path.extension().is_some_and(|e| e == "img") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

// ---------------------------------------------------------------------------------------
// Cache integrity

/// Damage five entries in five ways; return the URLs damaged.
fn damage_entries(cache: &Cache, reqs: &[FetchRequest]) -> Vec<String> {
    let other = std::fs::read(cache.path_for(&reqs[9].url)).unwrap();
    // Another valid image in place of the right one.
    std::fs::write(cache.path_for(&reqs[0].url), &other).unwrap();
    // Truncated.
    let p = cache.path_for(&reqs[1].url);
    let bytes = std::fs::read(&p).unwrap();
    std::fs::write(&p, &bytes[..bytes.len() / 2]).unwrap();
    // Empty, as a power loss can leave a file that was renamed but never written.
    std::fs::write(cache.path_for(&reqs[2].url), b"").unwrap();
    // A symlink to a valid image outside the cache, with its exact bytes.
    let p = cache.path_for(&reqs[3].url);
    let outside = cache.dir().parent().unwrap().join("outside.jpg");
    std::fs::copy(&p, &outside).unwrap();
    std::fs::remove_file(&p).unwrap();
    std::os::unix::fs::symlink(&outside, &p).unwrap();
    // An entry of the older layout: no record.
    std::fs::remove_file(cache.record_path_for(&reqs[4].url)).unwrap();
    reqs[..5].iter().map(|r| r.url.clone()).collect()
}

#[test]
fn damaged_entries_are_evicted_and_fetched_again_and_counted() {
    let fx = Fixture::start(FixtureConfig::default());
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(&dir.path().join("cache")).unwrap();
    let reqs = numbered(10);
    let first = run(&reqs, &cache, &opts(&fx));
    assert_eq!((first.downloaded, first.evicted), (10, 0));
    let originals: Vec<Vec<u8>> = reqs
        .iter()
        .map(|r| std::fs::read(cache.path_for(&r.url)).unwrap())
        .collect();

    let damaged = damage_entries(&cache, &reqs);
    fx.reset_stats();
    let second = run(&reqs, &cache, &opts(&fx));
    assert_eq!(second.evicted, 5, "{second:?}");
    assert_eq!(second.downloaded, 5);
    assert_eq!(second.from_cache, 5);
    assert!(second.failures.is_empty());
    let asked: Vec<String> = fx.log().into_iter().map(|e| e.path).collect();
    let mut expected: Vec<String> = damaged.iter().map(|u| u.replacen(CODH, "", 1)).collect();
    let mut asked_sorted = asked.clone();
    asked_sorted.sort();
    expected.sort();
    assert_eq!(
        asked_sorted, expected,
        "exactly the damaged entries are requested"
    );
    for (r, original) in reqs.iter().zip(&originals) {
        let p = cache.path_for(&r.url);
        assert!(!p.is_symlink(), "{}", p.display());
        assert_eq!(&std::fs::read(&p).unwrap(), original, "{}", r.url);
        assert_eq!(cache.lookup(&r.url), Lookup::Cached);
    }
    // The symlink's target outside the cache was not touched.
    assert_eq!(
        std::fs::read(dir.path().join("cache/outside.jpg")).unwrap(),
        originals[3]
    );
    // A third run trusts everything again.
    fx.reset_stats();
    let third = run(&reqs, &cache, &opts(&fx));
    assert_eq!((third.from_cache, third.evicted), (10, 0));
    assert_eq!(fx.stats().total, 0);
}

/// The URLs of a metadata directory, in order.
fn urls_of(meta: &Path) -> Vec<String> {
    std::fs::read_to_string(meta.join("urls.txt"))
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// `kaokore CMD --dataset-version 1.0 --metadata META --cache ROOT/cache [--out OUT] --quiet
/// ARGS...` on the first `n` images of v1.0.
fn cli(run: &Run, cmd: &str, n: u32, out: Option<&Path>, args: &[&str]) -> Command {
    let mut c = run.kaokore(cmd);
    c.args(["--dataset-version", "1.0", "--metadata"])
        .arg(run.metadata(n))
        .arg("--cache")
        .arg(run.cache())
        .arg("--quiet");
    if let Some(out) = out {
        c.arg("--out").arg(out);
    }
    c.args(args);
    c
}

#[test]
fn build_refetches_damaged_entries_and_never_packs_a_substituted_image() {
    let run = Run::new();
    let meta = run.metadata(24);
    let cache_dir = run.cache();
    let out1 = run.root.join("first");
    let o = cli(&run, "build", 24, Some(&out1), &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let sums = std::fs::read_to_string(out1.join("SHA256SUMS")).unwrap();

    let cache = Cache::open(&cache_dir).unwrap();
    let reqs: Vec<FetchRequest> = urls_of(&meta)
        .into_iter()
        .enumerate()
        .map(|(i, url)| FetchRequest {
            id: ImageId(i as u32),
            url,
        })
        .collect();
    let damaged = damage_entries(&cache, &reqs);
    for fx in run.hosts.all() {
        fx.reset_stats();
    }
    let out2 = run.root.join("second");
    let o = cli(&run, "build", 24, Some(&out2), &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let counts = &report(&out2)["counts"];
    assert_eq!(counts["evicted"], 5, "{counts}");
    assert_eq!(counts["fetched"], 5, "{counts}");
    assert_eq!(run.hosts.total_requests(), damaged.len());
    // Byte-identical artifacts: the substituted image was not packed.
    assert_eq!(
        std::fs::read_to_string(out2.join("SHA256SUMS")).unwrap(),
        sums
    );
}

#[test]
fn pack_evicts_an_entry_it_cannot_decode_and_the_next_fetch_gets_it_again() {
    let run = Run::new();
    let meta = run.metadata(12);
    let cache_dir = run.cache();
    let fetch = || cli(&run, "fetch", 12, None, &[]).output().unwrap();
    let o = fetch();
    assert!(o.status.success(), "{}", stderr(&o));

    // An entry whose record matches but whose bytes do not decode (as a cache written by
    // another decoder could hold): the record alone cannot tell.
    let cache = Cache::open(&cache_dir).unwrap();
    let bad_url = urls_of(&meta)[0].clone();
    let garbage = b"\xFF\xD8\xFF not a JPEG after all".to_vec();
    std::fs::write(cache.path_for(&bad_url), &garbage).unwrap();
    let record = serde_json::json!({
        "url": bad_url, "length": garbage.len(), "sha256": sha256_hex(&garbage)
    });
    std::fs::write(cache.record_path_for(&bad_url), record.to_string()).unwrap();
    assert_eq!(cache.lookup(&bad_url), Lookup::Cached);

    let out = run.root.join("out");
    let o = cli(&run, "pack", 12, Some(&out), &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let not_packed = &report(&out)["not_packed"];
    assert_eq!(not_packed.as_array().map(Vec::len), Some(1), "{not_packed}");
    assert_eq!(not_packed[0]["image_id"], 0, "{not_packed}");
    assert!(
        not_packed[0]["reason"]
            .as_str()
            .is_some_and(|r| r.starts_with("undecodable")),
        "{not_packed}"
    );
    assert_eq!(cache.lookup(&bad_url), Lookup::Missing, "evicted by pack");

    for fx in run.hosts.all() {
        fx.reset_stats();
    }
    let o = fetch();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        run.hosts.total_requests(),
        1,
        "only the evicted image is fetched"
    );
    assert_eq!(cache.lookup(&bad_url), Lookup::Cached);
}

#[test]
fn strict_refuses_an_undecodable_image_and_keeps_the_previous_build() {
    let run = Run::new();
    let meta = run.metadata(12);
    let cache_dir = run.cache();
    let out = run.root.join("out");
    let build = || {
        cli(&run, "build", 12, Some(&out), &["--strict"])
            .output()
            .unwrap()
    };
    let o = build();
    assert!(o.status.success(), "{}", stderr(&o));
    let before = crate::support::tree::snapshot(&out);

    // A recorded entry that does not decode: only pack can tell.
    let cache = Cache::open(&cache_dir).unwrap();
    let bad_url = urls_of(&meta)[3].clone();
    let garbage = b"\xFF\xD8\xFF not a JPEG after all".to_vec();
    std::fs::write(cache.path_for(&bad_url), &garbage).unwrap();
    let record = serde_json::json!({
        "url": bad_url, "length": garbage.len(), "sha256": sha256_hex(&garbage)
    });
    std::fs::write(cache.record_path_for(&bad_url), record.to_string()).unwrap();

    let o = cli(&run, "pack", 12, Some(&out), &["--strict"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("1 image(s) could not be decoded (--strict), e.g. 00000003.jpg"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        crate::support::tree::snapshot(&out),
        before,
        "the previous build is untouched"
    );
    assert_eq!(cache.lookup(&bad_url), Lookup::Missing, "evicted");

    // The next strict build fetches it again and delivers.
    let o = build();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(cache.lookup(&bad_url), Lookup::Cached);
}

#[test]
fn pack_holds_entries_that_fail_their_check_to_the_tolerance() {
    let run = Run::new();
    let meta = run.metadata(12);
    let cache_dir = run.cache();
    let out = run.root.join("out");
    let o = cli(&run, "build", 12, Some(&out), &[]).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let before = crate::support::tree::snapshot(&out);

    // Same length, other bytes: the up-front count sees them, reading does not.
    let cache = Cache::open(&cache_dir).unwrap();
    let urls = urls_of(&meta);
    for url in &urls[..3] {
        let path = cache.path_for(url);
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
        std::fs::write(&path, bytes).unwrap();
    }
    let o = cli(&run, "pack", 12, Some(&out), &["--max-missing", "2"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("3 of 12 image(s) could not be read from the cache"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        crate::support::tree::snapshot(&out),
        before,
        "the previous build is untouched"
    );
    // Left in place (a writer sharing the cache may be mid-way), and never trusted.
    for url in &urls[..3] {
        assert_eq!(
            cache.lookup(url),
            Lookup::Untrusted(kaokore::fetch::Untrusted::Digest)
        );
    }
}

// ---------------------------------------------------------------------------------------
// Memory bounded whatever the servers send

/// Run `kaokore ARGS`, polling its peak resident set (VmHWM); returns the output and the
/// peak in MiB.
fn peak_rss_of(mut kaokore: Command) -> (Output, u64) {
    let mut child = kaokore
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    let started = Instant::now();
    loop {
        if let Ok(status) = std::fs::read_to_string(&status_file)
            && let Some(line) = status.lines().find(|l| l.starts_with("VmHWM:"))
        {
            let kib: u64 = line
                .split_whitespace()
                .nth(1)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            peak_kib = peak_kib.max(kib);
        }
        if child.try_wait().unwrap().is_some() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "kaokore did not finish"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let output = child.wait_with_output().unwrap();
    (output, peak_kib / 1024)
}

const RSS_LIMIT_MIB: u64 = 512;

#[test]
fn pixel_bombs_are_refused_from_the_header_with_a_bounded_memory() {
    // Every image is an 8192 x 8192 16-bit RGBA PNG: 512 MiB of pixels in ~520 KB.
    let bomb = kaokore_fixture::images::pixel_bomb(8192, 8192);
    assert!(bomb.len() < 1 << 20, "{} bytes", bomb.len());
    let run = Run::new();
    for fx in run.hosts.all() {
        fx.add_fault(
            "/",
            Fault::PixelBomb {
                width: 8192,
                height: 8192,
            },
            u32::MAX,
        );
    }
    let cache_dir = run.cache();
    let command = cli(
        &run,
        "fetch",
        48,
        None,
        &["--per-host", "64", "--concurrency", "64", "--retries", "0"],
    );
    let (o, peak) = peak_rss_of(command);
    eprintln!("peak RSS: {peak} MiB");
    let err = stderr(&o);
    assert!(peak < RSS_LIMIT_MIB, "peak RSS {peak} MiB\n{err}");
    assert!(
        err.contains("8192x8192") && err.contains("more than the limit of 32 MiB"),
        "{err}"
    );
    assert_eq!(run.hosts.total_requests(), 48, "one request each, no retry");
    assert!(entries(&cache_dir.join("v1")).is_empty(), "nothing cached");
}

#[test]
fn images_at_the_pixel_limit_are_fetched_and_packed_with_a_bounded_memory() {
    // 2048 x 2048 16-bit RGBA: exactly the 32 MiB limit, accepted, and decoded in full by
    // validation and by pack. Without bounds, 24 requests at once would decode 768 MiB (and
    // convert it again).
    const IMAGES: usize = 24;
    kaokore_fixture::images::pixel_bomb(2048, 2048);
    let run = Run::new();
    for fx in run.hosts.all() {
        fx.add_fault(
            "/",
            Fault::PixelBomb {
                width: 2048,
                height: 2048,
            },
            u32::MAX,
        );
    }
    let cache_dir = run.cache();
    let out = run.root.join("out");
    let command = cli(
        &run,
        "build",
        IMAGES as u32,
        Some(&out),
        &[
            "--per-host",
            "64",
            "--concurrency",
            "64",
            "--formats",
            "npz",
        ],
    );
    let (o, peak) = peak_rss_of(command);
    eprintln!("peak RSS: {peak} MiB");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(peak < RSS_LIMIT_MIB, "peak RSS {peak} MiB\n{}", stderr(&o));
    assert_eq!(entries(&cache_dir.join("v1")).len(), IMAGES);
    let r = report(&out);
    assert_eq!(r["counts"]["fetched"], IMAGES, "{}", r["counts"]);
    assert_eq!(r["counts"]["packed_total"], IMAGES, "{}", r["counts"]);
}

// ---------------------------------------------------------------------------------------
// Redirects

#[test]
fn a_redirect_to_another_host_is_refused_and_that_host_gets_no_request() {
    let fx = Fixture::start(FixtureConfig::default());
    let other = Fixture::start(FixtureConfig::default());
    fx.add_fault("/away/", Fault::RedirectToPort(other.port()), u32::MAX);
    fx.add_fault(
        "/metadata/",
        Fault::RedirectToUrl("http://169.254.169.254/latest/meta-data/"),
        u32::MAX,
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let reqs = vec![
        FetchRequest {
            id: ImageId(0),
            url: url("away"),
        },
        FetchRequest {
            id: ImageId(1),
            url: url("metadata"),
        },
    ];
    let started = Instant::now();
    let summary = run(&reqs, &cache, &opts(&fx));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused at once"
    );
    assert_eq!(summary.failures.len(), 2, "{summary:?}");
    let other_origin = format!("127.0.0.1:{}", other.port());
    for (f, target) in summary
        .failures
        .iter()
        .zip([other_origin.as_str(), "169.254.169.254:80"])
    {
        assert!(
            f.reason.contains("to another host") && f.reason.contains(target),
            "{}",
            f.reason
        );
        assert_eq!(f.attempts, 1, "not retried: {f:?}");
        assert!(!cache.contains(&f.url));
    }
    assert_eq!(other.stats().total, 0, "the other host got no request");
    assert_eq!(fx.stats().total, 2);
}

#[test]
fn a_redirect_on_the_same_host_is_followed_up_to_five_times() {
    let fx = Fixture::start(FixtureConfig::default());
    fx.add_fault("/moved/", Fault::RedirectSameHost, 1);
    fx.add_fault("/loop/", Fault::RedirectSameHost, u32::MAX);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let moved = FetchRequest {
        id: ImageId(0),
        url: url("moved"),
    };
    let summary = run(std::slice::from_ref(&moved), &cache, &opts(&fx));
    assert_eq!(summary.downloaded, 1, "{summary:?}");
    assert!(cache.contains(&moved.url));
    let log = fx.requests_matching("/moved/");
    assert_eq!(log.len(), 2);
    assert!(log[1].path.ends_with("?moved"), "{:?}", log[1].path);

    fx.reset_stats();
    let looping = FetchRequest {
        id: ImageId(1),
        url: url("loop"),
    };
    let summary = run(std::slice::from_ref(&looping), &cache, &opts(&fx));
    assert_eq!(summary.failures.len(), 1);
    assert!(
        summary.failures[0].reason.contains("more than 5 redirects"),
        "{}",
        summary.failures[0].reason
    );
    assert_eq!(summary.failures[0].attempts, 1);
    assert_eq!(fx.stats().total, 6, "the request and five redirects");
}

// ---------------------------------------------------------------------------------------
// JPEGs with bytes after their end

#[test]
fn a_jpeg_with_bytes_after_its_end_is_cached_a_truncated_one_is_not() {
    let fx = Fixture::start(FixtureConfig::default());
    fx.add_fault("/trailing/", Fault::TrailingBytes(4096), u32::MAX);
    fx.add_fault("/cut/", Fault::Truncated, u32::MAX);
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::open(dir.path()).unwrap();
    let reqs = vec![
        FetchRequest {
            id: ImageId(0),
            url: url("trailing"),
        },
        FetchRequest {
            id: ImageId(1),
            url: url("cut"),
        },
    ];
    let summary = run(&reqs, &cache, &opts(&fx));
    assert_eq!(summary.downloaded, 1, "{summary:?}");
    assert_eq!(
        fx.requests_matching("/trailing/").len(),
        1,
        "accepted at once"
    );
    let kept = cache.read(&reqs[0].url).expect("cached");
    assert!(
        kept.ends_with(&kaokore_fixture::trailer(4096)),
        "kept as served"
    );
    assert!(kept.starts_with(&[0xFF, 0xD8, 0xFF]));
    assert_eq!(summary.failures.len(), 1);
    assert_eq!(summary.failures[0].id, ImageId(1));
    assert!(!cache.contains(&reqs[1].url));
}
