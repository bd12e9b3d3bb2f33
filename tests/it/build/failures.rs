//! Builds that cannot deliver, and builds that are stopped: `--out` must stay exactly as
//! it was (checked by hashing every file), the console must stay short, and the exit
//! status must say what happened. Through the binary, against the fixture IIIF servers.

use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use kaokore_fixture::{CODH, Fault, FixtureConfig, FixtureHosts, KEIO, KYOTO};

use crate::support::tree::snapshot;
use crate::support::{Run, kaokore, path_arg, report, stderr};

/// The most stderr lines a whole build may print without --verbose.
const MAX_STDERR_LINES: usize = 40;

/// `n` distinct ports on 127.0.0.1 where nothing listens: connections are refused.
fn closed_ports(n: usize) -> Vec<String> {
    let listeners: Vec<_> = (0..n)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| format!("http://{}", l.local_addr().unwrap()))
        .collect()
}

/// `--rewrite` arguments sending every host to its fixture, except the URL prefixes of
/// `dead`, which go to the address given with them.
fn rewrites(hosts: &FixtureHosts, dead: &[(&str, &str)]) -> Vec<String> {
    hosts
        .rewrite_pairs()
        .into_iter()
        .flat_map(|(from, to)| {
            let to = match dead.iter().find(|(prefix, _)| *prefix == from) {
                Some((_, dead_to)) => dead_to.to_string(),
                None => to,
            };
            ["--rewrite".to_string(), format!("{from}={to}")]
        })
        .collect()
}

/// `kaokore build` of the first `n` images into `ROOT/out` with the cache `ROOT/CACHE`, at
/// size 16, npz only (fast), `--retries 1`; `args` and `rewrites` appended.
fn build_command(run: &Run, n: u32, cache: &str, args: &[&str], rewrites: &[String]) -> Command {
    let mut c = kaokore();
    c.args(["build", "--dataset-version", "1.0", "--size", "16"])
        .args(["--formats", "npz", "--retries", "1", "--metadata"])
        .arg(run.metadata(n))
        .arg("--cache")
        .arg(run.root.join(cache))
        .arg("--out")
        .arg(run.out())
        .args(args)
        .args(rewrites);
    c
}

fn build(run: &Run, n: u32, cache: &str, args: &[&str], rewrites: &[String]) -> Output {
    build_command(run, n, cache, args, rewrites)
        .output()
        .expect("run kaokore")
}

/// A good build of the first `n` images into `ROOT/out`; returns its snapshot.
fn good_build(run: &Run, n: u32) -> BTreeMap<String, String> {
    let o = build(run, n, "cache", &["--quiet"], &run.hosts.rewrite_args());
    assert!(o.status.success(), "the first build: {}", stderr(&o));
    let snap = snapshot(&run.out());
    assert!(snap.keys().any(|k| k.ends_with(".npz")), "{snap:?}");
    snap
}

fn failed_report(run: &Run, cache: &str) -> serde_json::Value {
    let path = run.root.join(cache).join("failed-build-report.json");
    serde_json::from_slice(&std::fs::read(&path).expect("the failed build's report")).expect("JSON")
}

fn assert_short(o: &Output) {
    let lines = stderr(o).lines().count();
    assert!(
        lines <= MAX_STDERR_LINES,
        "{lines} lines of stderr:\n{}",
        stderr(o)
    );
}

/// Issue case 2: no network (every host refuses), a new empty cache, `--out` holding a good
/// build: exit 1, one short line per cause with host, count and hints, the good build
/// intact to the byte, the report beside the cache.
#[test]
fn a_build_that_fetches_nothing_leaves_the_previous_build_intact() {
    let run = Run::new();
    let before = good_build(&run, 300);
    // One closed port per host, as each real host would be unreachable on its own.
    let dead = closed_ports(3);
    let all = [
        (CODH, dead[0].as_str()),
        (KEIO[0], dead[1].as_str()),
        (KEIO[1], dead[1].as_str()),
        (KYOTO, dead[2].as_str()),
    ];
    let o = build(&run, 300, "empty-cache", &[], &rewrites(&run.hosts, &all));
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(snapshot(&run.out()), before, "--out changed: {err}");
    assert!(err.contains("no image could be fetched"), "{err}");
    for host in [
        "iiif.lib.keio.ac.jp",
        "rmda.kulib.kyoto-u.ac.jp",
        "codh.rois.ac.jp",
    ] {
        assert!(
            err.lines()
                .any(|l| l.contains(host) && l.contains("host given up, connection refused")),
            "a line for {host}: {err}"
        );
    }
    assert!(
        err.contains("HTTPS_PROXY") && err.contains("--rewrite"),
        "{err}"
    );
    assert!(err.contains("was left as it was"), "{err}");
    assert!(!err.contains("warning: 0000"), "no line per image: {err}");
    assert_short(&o);

    let report_path = run.root.join("empty-cache/failed-build-report.json");
    assert!(err.contains(&path_arg(&report_path)), "{err}");
    let r = failed_report(&run, "empty-cache");
    assert_eq!(r["delivered"], false);
    assert_eq!(r["counts"]["fetched"], 0);
    let given_up = r["hosts_given_up"].as_array().unwrap();
    assert_eq!(given_up.len(), 3, "one per host: {given_up:?}");
    let images: u64 = given_up.iter().map(|h| h["images"].as_u64().unwrap()).sum();
    assert_eq!(images, r["counts"]["requested"].as_u64().unwrap());
    assert!(
        given_up.iter().all(|h| h["cause"] == "refused"),
        "{given_up:?}"
    );
    let failure = &r["failures"][0];
    assert_eq!(
        failure["host"], "iiif.lib.keio.ac.jp",
        "the original URL's host"
    );
    assert_eq!(failure["cause"], "refused");
}

/// A whole host unreachable fails the build even when the images it holds are within
/// --max-missing: the dataset would silently lack a provider.
#[test]
fn a_host_given_up_fails_the_build_whatever_the_tolerance() {
    let run = Run::new();
    let before = good_build(&run, 100);
    // Kyoto (ids 52-89) refuses; Keio and CODH serve. A new cache, so all is fetched.
    let o = build(
        &run,
        300,
        "cache2",
        &["--quiet", "--max-missing", "50%"],
        &rewrites(&run.hosts, &[(KYOTO, closed_ports(1)[0].as_str())]),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(snapshot(&run.out()), before, "--out changed: {err}");
    let line = err
        .lines()
        .find(|l| l.contains("host given up"))
        .unwrap_or_else(|| panic!("no host line: {err}"));
    assert!(line.contains("rmda.kulib.kyoto-u.ac.jp"), "{line}");
    assert!(line.contains("connection refused"), "{line}");
    assert!(!err.contains("no image could be fetched"), "{err}");
    assert!(!err.contains("iiif.lib.keio.ac.jp: host given up"), "{err}");
    let r = failed_report(&run, "cache2");
    let given_up = r["hosts_given_up"].as_array().unwrap();
    assert_eq!(given_up.len(), 1, "{given_up:?}");
    assert_eq!(given_up[0]["original_hosts"][0], "rmda.kulib.kyoto-u.ac.jp");
    let kyoto_labelled = r["failures"].as_array().unwrap().len() as u64;
    assert!(kyoto_labelled > 20, "{kyoto_labelled}");
    assert_eq!(given_up[0]["images"], kyoto_labelled);
    assert_short(&o);
}

/// Images gone upstream (404) are warnings up to --max-missing (2% by default: about 1% gone
/// still builds) and fail the build beyond it, leaving the previous build intact.
#[test]
fn missing_images_beyond_the_tolerance_fail_and_below_it_build() {
    let run = Run::new();
    let before = good_build(&run, 100);
    // Three of the ~290 labelled images of ids < 300 are gone: about 1%.
    for id in [
        "2_004.tif/583,812",
        "2_004.tif/691,1157",
        "2_004.tif/1468,966",
    ] {
        run.hosts.keio.add_fault(id, Fault::Status(404), 100);
    }
    let o = build(
        &run,
        300,
        "cache3",
        &["--quiet", "--max-missing", "2"],
        &run.hosts.rewrite_args(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(snapshot(&run.out()), before, "--out changed: {err}");
    assert!(
        err.contains("3 of ") && err.contains("more than --max-missing 2 allows"),
        "{err}"
    );
    assert!(err.contains("--max-missing sets how many"), "{err}");
    assert!(!err.contains("HTTPS_PROXY"), "not a network problem: {err}");

    // The same build with the default tolerance delivers, the 404s as one warning line.
    let o = build(&run, 300, "cache3", &["--quiet"], &run.hosts.rewrite_args());
    let err = stderr(&o);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("3 image(s) could not be fetched"), "{err}");
    let line = err.lines().find(|l| l.contains("gone upstream")).unwrap();
    assert!(
        line.contains("iiif.lib.keio.ac.jp: gone upstream: 3 image(s), e.g. 00000000.jpg"),
        "{line}"
    );
    let r = report(&run.out());
    assert_eq!(r["delivered"], true);
    assert_eq!(r["counts"]["failed"], 3);
    assert_eq!(r["failures"][0]["cause"], "gone");
    assert_ne!(
        snapshot(&run.out()),
        before,
        "a build that delivers replaces the old one"
    );
}

/// Hundreds of images gone: per-image lines only in report.json (and with --verbose),
/// never more than 40 lines of stderr, progress included.
#[test]
fn hundreds_of_failures_print_a_few_lines() {
    let run = Run::new();
    // Every Keio request 404s: ~200 of the ~290 labelled images of ids < 300.
    run.hosts.keio.add_fault("/", Fault::Status(404), 100_000);
    let o = build(&run, 300, "cache", &[], &run.hosts.rewrite_args());
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "too many missing: {err}");
    assert_short(&o);
    let missing = err
        .lines()
        .find_map(|l| l.strip_suffix(" image(s) could not be fetched:"))
        .unwrap_or_else(|| panic!("a count line: {err}"));
    assert!(missing.parse::<u32>().unwrap() > 150, "{err}");
    assert!(err.contains("gone upstream"), "{err}");
    assert!(!err.contains("warning: 0000"), "{err}");

    // Accepted, with progress shown (stderr is not a terminal here: plain lines).
    let o = build(
        &run,
        300,
        "cache",
        &["--max-missing", "100%"],
        &run.hosts.rewrite_args(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_short(&o);
    assert!(stderr(&o).contains("packed "), "{}", stderr(&o));

    // --verbose: one line per failing image, as it fails.
    let o = build(
        &run,
        300,
        "cache",
        &["--max-missing", "100%", "--verbose"],
        &run.hosts.rewrite_args(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let per_image = stderr(&o)
        .lines()
        .filter(|l| l.starts_with("warning: ") && l.contains("HTTP 404"))
        .count();
    assert_eq!(per_image.to_string(), missing, "{}", stderr(&o));
}

/// Issue case 9: an --out pack cannot use (a regular file) stops the fetch at once
/// instead of after the whole fetch.
#[test]
fn a_pack_failure_stops_the_fetch() {
    let run = Run::with(FixtureConfig {
        latency: Duration::from_millis(200),
        ..FixtureConfig::default()
    });
    std::fs::write(run.out(), b"a file of the user's\n").unwrap();
    let started = Instant::now();
    // 290 images, one request at a time per host, 200 ms each: about 40 s if fetched.
    let o = build(
        &run,
        300,
        "cache",
        &["--quiet", "--per-host", "1"],
        &run.hosts.rewrite_args(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code().map(|c| c != 0), Some(true), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        run.hosts.total_requests() < 60,
        "{} requests",
        run.hosts.total_requests()
    );
    assert_eq!(std::fs::read(run.out()).unwrap(), b"a file of the user's\n");
}

/// main printed each error's cause twice (in the error's text, then as "caused by").
#[test]
fn an_error_prints_its_cause_once() {
    let run = Run::new();
    std::fs::write(run.root.join("not-a-dir"), b"x").unwrap();
    let o = build(
        &run,
        100,
        "not-a-dir",
        &["--quiet"],
        &run.hosts.rewrite_args(),
    );
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
    assert!(err.contains("not-a-dir"), "{err}");
}

/// Start a build of the first 600 images (the first 300 cached by a good build) against
/// slow fixtures, and wait until it is well under way.
fn interrupted_build_setup() -> (Run, BTreeMap<String, String>, Child) {
    let run = Run::with(FixtureConfig {
        latency: Duration::from_millis(30),
        ..FixtureConfig::default()
    });
    let before = good_build(&run, 300);
    let asked = run.hosts.total_requests();
    let child = build_command(
        &run,
        600,
        "cache",
        &["--quiet", "--per-host", "2"],
        &run.hosts.rewrite_args(),
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while run.hosts.total_requests() < asked + 30 {
        assert!(Instant::now() < deadline, "the build made no requests");
        std::thread::sleep(Duration::from_millis(10));
    }
    (run, before, child)
}

/// Send `signal` to the build, then check: it stops within seconds with 128 + signal, the
/// previous build intact by hash, no staging and no temp file left; the next run fetches
/// only the rest.
fn check_interruption(signal: &str, code: i32) {
    let (run, before, mut child) = interrupted_build_setup();
    let ok = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let sent = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(sent.elapsed() < Duration::from_secs(15), "still running");
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert_eq!(status.code(), Some(code), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("resume"),
        "{err}"
    );
    assert_eq!(snapshot(&run.out()), before, "--out changed: {err}");
    let cache = snapshot(&run.root.join("cache"));
    assert!(
        !cache
            .keys()
            .any(|k| k.ends_with(".tmp") || k.contains(".tmp-")),
        "temp files left in the cache: {cache:?}"
    );
    let cached = cache.keys().filter(|k| k.ends_with(".img")).count();
    assert!(cached > 0);

    // The next run resumes: it requests only what the cache lacks, and delivers.
    for fx in run.hosts.all() {
        fx.reset_stats();
    }
    let o = build(&run, 600, "cache", &["--quiet"], &run.hosts.rewrite_args());
    assert!(o.status.success(), "{}", stderr(&o));
    let r = report(&run.out());
    assert_eq!(r["counts"]["from_cache"].as_u64().unwrap() as usize, cached);
    assert_eq!(
        run.hosts.total_requests() as u64,
        r["counts"]["fetched"].as_u64().unwrap(),
        "only the remainder is requested"
    );
}

#[test]
fn sigint_stops_a_build_cleanly_and_the_next_run_resumes() {
    check_interruption("INT", 130);
}

#[test]
fn sigterm_stops_a_build_cleanly() {
    check_interruption("TERM", 143);
}

/// Whether this system can run a command in an empty network namespace (no interface
/// up, no resolver reachable): offline, without touching any real network.
fn offline_namespace() -> bool {
    Command::new("unshare")
        .args(["-n", "-r", "true"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Offline, no host name resolves: each host is given up after a few attempts (a DNS
/// failure is retried once, and three in a row give the host up), and the console names
/// each host once, in the resolver's words, in a few lines.
#[test]
fn an_offline_build_gives_up_each_host_after_few_attempts_and_names_it_once() {
    if !offline_namespace() {
        eprintln!("skipped: `unshare -n -r` is not available to simulate an offline machine");
        return;
    }
    let run = Run::new();
    let o = Command::new("unshare")
        .args(["-n", "-r"])
        .arg(env!("CARGO_BIN_EXE_kaokore"))
        .args(["build", "--dataset-version", "1.0", "--metadata"])
        .arg(run.metadata(300))
        .args(["--cache", &path_arg(&run.cache())])
        .args(["--out", &path_arg(&run.out())])
        .output()
        .expect("run kaokore");
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(!run.out().exists(), "--out was created: {err}");
    assert!(
        err.lines().count() <= 8,
        "{} lines:\n{err}",
        err.lines().count()
    );
    let hosts = [
        "codh.rois.ac.jp",
        "iiif.lib.keio.ac.jp",
        "rmda.kulib.kyoto-u.ac.jp",
    ];
    for host in hosts {
        let lines: Vec<&str> = err.lines().filter(|l| l.contains(host)).collect();
        assert_eq!(lines.len(), 1, "{host} on {} lines:\n{err}", lines.len());
        assert!(
            lines[0].contains("host given up, host name not resolved"),
            "{}",
            lines[0]
        );
        // The resolver's words, not reqwest's layers of context around them.
        assert!(!lines[0].contains("error sending request"), "{}", lines[0]);
    }
    assert!(!err.contains("caused by"), "{err}");

    // Attempts: at most two per image, and a bounded number per host (its workers'
    // first requests and their one retry), however many images it holds.
    let r = failed_report(&run, "cache");
    let failures = r["failures"].as_array().unwrap();
    assert!(failures.len() > 250, "{}", failures.len());
    for host in hosts {
        let of_host: Vec<&serde_json::Value> =
            failures.iter().filter(|f| f["host"] == host).collect();
        assert!(of_host.len() > 30, "{host}: {}", of_host.len());
        assert!(of_host.iter().all(|f| f["cause"] == "dns"), "{host}");
        let attempts: Vec<u64> = of_host
            .iter()
            .map(|f| f["attempts"].as_u64().unwrap())
            .collect();
        assert!(attempts.iter().all(|&a| a <= 2), "{host}: {attempts:?}");
        let total: u64 = attempts.iter().sum();
        assert!((3..=24).contains(&total), "{host}: {total} attempts");
    }
}
