//! The scheduling of one fetch run: a queue and a set of workers per host, so that every
//! host is kept busy at its own limit independently of the others; a global semaphore
//! for `--concurrency`; retries with exponential backoff and jitter.
//!
//! The async side owns its data; results travel over a channel to the calling thread,
//! which runs the caller's callback and keeps the tally.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use image::DynamicImage;
use tokio::sync::Semaphore;

use crate::fetch::{FetchOptions, Rewrite};

use super::client::{self, AttemptError, Body, BodyBudget};
use super::host::{Down, HostGate, Slot};

/// Retries of a request whose host name did not resolve (at most `--retries`): one, for
/// a resolver's hiccup; a name that does not resolve twice will not, minutes later.
const DNS_RETRIES: u32 = 1;
use super::validate::{self, DecodeGate, Invalid};
use super::{
    Cache, FailureCause, FetchError, FetchFailure, FetchOutcome, FetchRequest, FetchSummary,
    HostGivenUp, Lookup,
};

/// How often the calling thread looks at the stop flag.
const STOP_POLL: Duration = Duration::from_millis(50);

/// One distinct URL to download (several requests may share it).
struct Job {
    /// The original URL: the cache key.
    url: String,
    /// What is actually requested, after `--rewrite`.
    target: String,
    /// Indices into the caller's requests.
    requests: Vec<usize>,
    /// Index of its host queue.
    host: usize,
}

/// How a job ended.
enum JobResult {
    /// `checked`: the body as validated and stored, when the caller wants it.
    Downloaded {
        attempts: u32,
        checked: Option<CheckedImage>,
    },
    Failed(AttemptError, u32),
}

enum Message {
    Done(usize, JobResult),
    /// The cache cannot be written: no point in downloading anything else.
    CacheBroken(std::path::PathBuf, std::io::Error),
}

struct HostQueue {
    gate: HostGate,
    jobs: Mutex<VecDeque<usize>>,
}

impl HostQueue {
    fn next(&self) -> Option<usize> {
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }
}

struct Shared {
    client: reqwest::Client,
    opts: FetchOptions,
    cache: Cache,
    jobs: Vec<Job>,
    /// `--concurrency`: taken after the host's own slot, so that waiting for a busy host
    /// never holds a global slot another host could use.
    global: Semaphore,
    /// Hand each body validated and stored to the caller (else it is dropped).
    keep_checked: bool,
    /// Bound the memory of bodies held and of validation decodes, whatever the servers
    /// send and however many requests are in flight.
    bodies: BodyBudget,
    decodes: DecodeGate,
}

/// A downloaded file exactly as validation checked it and the cache stored it: the bytes,
/// and for a JPEG the pixels validation decoded. A build packs these, never the cache
/// entry read again (another process sharing the cache may have replaced it since).
pub struct CheckedImage {
    pub bytes: Vec<u8>,
    pub pixels: Option<DynamicImage>,
}

/// Called on the calling thread with each downloaded file, before its requests are
/// reported done.
pub type OnChecked<'a> = dyn Fn(&FetchRequest, CheckedImage) + Sync + 'a;

pub(super) fn fetch_all(
    requests: &[FetchRequest],
    cache: &Cache,
    opts: &FetchOptions,
    on_done: &(dyn Fn(&FetchRequest, &FetchOutcome) + Sync),
    on_checked: Option<&OnChecked<'_>>,
    stop: &dyn Fn() -> bool,
) -> Result<FetchSummary, FetchError> {
    let mut summary = FetchSummary {
        requested: requests.len(),
        ..FetchSummary::default()
    };
    let tally = |summary: &mut FetchSummary, i: usize, outcome: FetchOutcome| {
        match &outcome {
            FetchOutcome::FromCache => summary.from_cache += 1,
            FetchOutcome::Downloaded { .. } => summary.downloaded += 1,
            FetchOutcome::Failed(f) => summary.failures.push(f.clone()),
        }
        on_done(&requests[i], &outcome);
    };

    // Cached requests complete at once; the rest become one job per distinct URL, queued
    // per host in the given order.
    let mut jobs: Vec<Job> = Vec::new();
    let mut job_of_url: HashMap<&str, usize> = HashMap::new();
    let mut host_order: Vec<String> = Vec::new();
    let mut host_jobs: HashMap<String, VecDeque<usize>> = HashMap::new();
    for (i, req) in requests.iter().enumerate() {
        if let Some(&j) = job_of_url.get(req.url.as_str()) {
            jobs[j].requests.push(i);
            continue;
        }
        match cache.lookup(&req.url) {
            Lookup::Cached => {
                tally(&mut summary, i, FetchOutcome::FromCache);
                continue;
            }
            Lookup::Untrusted(_) => summary.evicted += 1,
            Lookup::Missing => {}
        }
        let target = Rewrite::apply(&opts.rewrites, &req.url).into_owned();
        let host = match host_key(&target) {
            Ok(h) => h,
            Err(e) => {
                let failure = FetchFailure {
                    id: req.id,
                    url: req.url.clone(),
                    host: original_host(&req.url),
                    status: None,
                    cause: FailureCause::BadUrl,
                    reason: e.to_string(),
                    attempts: 0,
                };
                tally(&mut summary, i, FetchOutcome::Failed(failure));
                continue;
            }
        };
        let j = jobs.len();
        job_of_url.insert(&req.url, j);
        let queue = host_jobs.entry(host.clone()).or_insert_with(|| {
            host_order.push(host.clone());
            VecDeque::new()
        });
        queue.push_back(j);
        jobs.push(Job {
            url: req.url.clone(),
            target,
            requests: vec![i],
            host: host_order.iter().position(|h| *h == host).unwrap_or(0),
        });
    }

    if !jobs.is_empty() {
        let queues = host_order
            .iter()
            .map(|host| host_jobs.remove(host).unwrap_or_default())
            .collect();
        let mut tallies = vec![HostTally::default(); host_order.len()];
        let down = download_jobs(
            jobs,
            queues,
            cache,
            opts,
            stop,
            on_checked.is_some(),
            |jobs, j, mut result| {
                let job: &Job = &jobs[j];
                let host = &mut tallies[job.host];
                if let (Some(hook), JobResult::Downloaded { checked, .. }) =
                    (on_checked, &mut result)
                    && let Some(image) = checked.take()
                {
                    hook(&requests[job.requests[0]], image);
                }
                for &i in &job.requests {
                    let outcome = match &result {
                        JobResult::Downloaded { attempts, .. } => {
                            host.fetched += 1;
                            FetchOutcome::Downloaded {
                                attempts: *attempts,
                            }
                        }
                        JobResult::Failed(e, attempts) => {
                            let failure = FetchFailure {
                                id: requests[i].id,
                                url: requests[i].url.clone(),
                                host: original_host(&requests[i].url),
                                status: e.status,
                                cause: e.cause,
                                reason: e.reason.clone(),
                                attempts: *attempts,
                            };
                            host.failed(&failure);
                            FetchOutcome::Failed(failure)
                        }
                    };
                    tally(&mut summary, i, outcome);
                }
                let attempts = match result {
                    JobResult::Downloaded { attempts, .. } | JobResult::Failed(_, attempts) => {
                        attempts
                    }
                };
                summary.retries += u64::from(attempts.saturating_sub(1));
            },
        )?;
        summary.hosts_given_up = given_up(&host_order, &tallies, &down);
    }
    summary.failures.sort_by_key(|f| f.id);
    Ok(summary)
}

/// What one host's requests came to, for the verdict on the host.
#[derive(Debug, Clone, Default)]
struct HostTally {
    fetched: usize,
    /// Requests not fetched, and whether every one of them failed for a network reason.
    failed: usize,
    all_network: bool,
    /// The hosts of the original URLs that failed.
    original_hosts: Vec<String>,
    /// The last failure of a request actually sent: its cause and reason.
    last: Option<(FailureCause, String)>,
}

impl HostTally {
    fn failed(&mut self, f: &FetchFailure) {
        self.all_network = (self.failed == 0 || self.all_network) && f.cause.is_network();
        self.failed += 1;
        if !self.original_hosts.contains(&f.host) {
            self.original_hosts.push(f.host.clone());
        }
        if f.attempts > 0 {
            self.last = Some((f.cause, f.reason.clone()));
        }
    }
}

/// The hosts given up: those the gate declared down, and those that never delivered a
/// single image because they could not be reached (too few requests for the gate's count,
/// but as unreachable).
fn given_up(hosts: &[String], tallies: &[HostTally], down: &[Option<Down>]) -> Vec<HostGivenUp> {
    let mut out: Vec<HostGivenUp> = hosts
        .iter()
        .zip(tallies)
        .zip(down)
        .filter_map(|((host, t), down)| {
            let unreachable = t.fetched == 0 && t.failed > 0 && t.all_network;
            if down.is_none() && !unreachable {
                return None;
            }
            let (cause, last_error) = match (down, &t.last) {
                (Some(down), _) => (down.cause, down.reason.clone()),
                (None, Some((cause, reason))) => (*cause, reason.clone()),
                (None, None) => (FailureCause::Other, String::new()),
            };
            let mut original_hosts = t.original_hosts.clone();
            original_hosts.sort();
            Some(HostGivenUp {
                host: host.clone(),
                original_hosts,
                cause,
                last_error,
                images: t.failed,
            })
        })
        .collect();
    out.sort_by(|a, b| a.host.cmp(&b.host));
    out
}

/// The host of an original URL, lower case, as urls.txt names it.
fn original_host(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
        .unwrap_or_default()
}

/// Run the downloads on a runtime of their own; `done` is called on this thread. Returns,
/// per host queue, why the host counts as down (if it does).
fn download_jobs(
    jobs: Vec<Job>,
    queues: Vec<VecDeque<usize>>,
    cache: &Cache,
    opts: &FetchOptions,
    stop: &dyn Fn() -> bool,
    keep_checked: bool,
    mut done: impl FnMut(&[Job], usize, JobResult),
) -> Result<Vec<Option<Down>>, FetchError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("kaokore-fetch")
        .build()
        .map_err(FetchError::Runtime)?;
    // The client's connection pool belongs to the runtime it is created in.
    let client = {
        let _guard = runtime.enter();
        client::build_client(opts)?
    };
    let shared = Arc::new(Shared {
        client,
        opts: opts.clone(),
        cache: cache.clone(),
        jobs,
        global: Semaphore::new(opts.concurrency.max(1)),
        keep_checked,
        bodies: BodyBudget::new(),
        decodes: DecodeGate::new(opts.decode_jobs),
    });
    let (tx, rx) = mpsc::channel::<Message>();
    let per_host = opts.per_host.max(1);
    let mut gates = Vec::new();
    for queue in queues {
        // Twice the host's slots: while one worker validates and stores a body, another
        // already holds the next request, so the host never idles at its limit.
        let workers = (per_host * 2).min(queue.len());
        let queue = Arc::new(HostQueue {
            gate: HostGate::new(per_host),
            jobs: Mutex::new(queue),
        });
        gates.push(queue.clone());
        for _ in 0..workers {
            let (shared, queue, tx) = (shared.clone(), queue.clone(), tx.clone());
            runtime.spawn(async move {
                loop {
                    // Take the host's slot first and the job second: first attempts then
                    // start in the given order (the slots are handed out fairly).
                    let slot = queue.gate.acquire().await;
                    let Some(j) = queue.next() else { break };
                    if let Some(down) = queue.gate.down() {
                        drop(slot);
                        let result = JobResult::Failed(not_attempted(&down), 0);
                        if tx.send(Message::Done(j, result)).is_err() {
                            break;
                        }
                        continue;
                    }
                    let message = match fetch_job(&shared, &queue.gate, j, slot).await {
                        Ok(result) => Message::Done(j, result),
                        Err((path, e)) => Message::CacheBroken(path, e),
                    };
                    if tx.send(message).is_err() {
                        break;
                    }
                }
            });
        }
    }
    drop(tx);

    let result = loop {
        if stop() {
            break Err(FetchError::Interrupted);
        }
        match rx.recv_timeout(STOP_POLL) {
            Ok(Message::Done(j, r)) => done(&shared.jobs, j, r),
            Ok(Message::CacheBroken(path, source)) => {
                break Err(FetchError::Cache { path, source });
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                break Ok(gates.iter().map(|q| q.gate.down()).collect());
            }
        }
    };
    // Abandon whatever is still in flight; a store already under way finishes its
    // rename or leaves only a temp file, which a `Cache::open` an hour later removes.
    runtime.shutdown_timeout(Duration::from_secs(2));
    result
}

/// Download one job with retries. `Err` only when the cache itself cannot be written.
async fn fetch_job<'g>(
    shared: &Shared,
    gate: &'g HostGate,
    j: usize,
    first_slot: Slot<'g>,
) -> Result<JobResult, (std::path::PathBuf, std::io::Error)> {
    let opts = &shared.opts;
    let job = &shared.jobs[j];
    let mut backoff = ExponentialBuilder::default()
        .with_min_delay(opts.backoff_base)
        .with_max_delay(opts.backoff_max)
        .with_factor(2.0)
        .with_jitter()
        .with_jitter_seed(jitter_seed(&job.url))
        .without_max_times()
        .build();
    let mut attempts = 0u32;
    let mut first_slot = Some(first_slot);
    loop {
        attempts += 1;
        let result = {
            let _slot = match first_slot.take() {
                Some(slot) => slot,
                None => gate.acquire().await,
            };
            let Ok(_global) = shared.global.acquire().await else {
                unreachable!("the global semaphore is never closed")
            };
            client::download(&shared.client, &job.target, opts, &shared.bodies).await
        };
        let result = match result {
            Ok(body) => store_validated(shared, &job.url, body).await?,
            Err(e) => Err(e),
        };
        let e = match result {
            Ok(checked) => {
                gate.success();
                return Ok(JobResult::Downloaded { attempts, checked });
            }
            Err(e) => e,
        };
        let wait = e
            .retry_after
            .or_else(|| backoff.next())
            .unwrap_or(opts.backoff_max)
            .min(opts.backoff_max);
        // Slow the host down even when this request has no retry left.
        if e.throttle {
            gate.throttle(wait);
        }
        if !e.transient {
            return Ok(JobResult::Failed(e, attempts));
        }
        let retries = match e.cause {
            FailureCause::Dns => opts.retries.min(DNS_RETRIES),
            _ => opts.retries,
        };
        if attempts > retries || gate.down().is_some() {
            gate.gave_up(e.cause, &e.reason);
            return Ok(JobResult::Failed(e, attempts));
        }
        tokio::time::sleep(wait).await;
        // The host may have been given up while this request waited.
        if gate.down().is_some() {
            return Ok(JobResult::Failed(e, attempts));
        }
    }
}

/// Validate a body off the async threads and store it if it is a sane image; the body
/// and a JPEG's pixels come back when the caller wants them. The outer `Err` is a cache
/// that cannot be written. The decode waits for room at the [`DecodeGate`].
async fn store_validated(
    shared: &Shared,
    url: &str,
    body: Body,
) -> Result<Result<Option<CheckedImage>, AttemptError>, (std::path::PathBuf, std::io::Error)> {
    let cache = shared.cache.clone();
    let url = url.to_string();
    let max_edge = shared.opts.max_image_edge;
    let keep = shared.keep_checked;
    let admitted = shared.decodes.admit(&body.bytes, max_edge).await;
    let joined = tokio::task::spawn_blocking(move || {
        let _permit = match admitted {
            Ok(permit) => permit,
            Err(invalid) => return Ok(Err(invalid)),
        };
        let body = body.bytes;
        let decoded = match validate::check_image(&body, max_edge) {
            Ok(decoded) => decoded,
            Err(invalid) => return Ok(Err(invalid)),
        };
        match cache.store(&url, &body) {
            Ok(()) => Ok(Ok(keep.then_some(CheckedImage {
                bytes: body,
                pixels: decoded,
            }))),
            Err(e) => Err((cache.path_for(&url), e)),
        }
    })
    .await;
    let invalid = match joined {
        Ok(Ok(Ok(decoded))) => return Ok(Ok(decoded)),
        Ok(Ok(Err(invalid))) => invalid,
        Ok(Err(broken)) => return Err(broken),
        Err(e) => Invalid::Undecodable(format!("validation did not finish: {e}")),
    };
    Ok(Err(AttemptError {
        cause: invalid.cause(),
        status: Some(200),
        reason: invalid.to_string(),
        transient: invalid.is_transient(),
        throttle: false,
        retry_after: None,
    }))
}

/// A request not sent because its host is down: it fails with the host's last cause.
fn not_attempted(down: &Down) -> AttemptError {
    AttemptError::transient(
        down.cause,
        format!(
            "not attempted: the host failed request after request (last: {})",
            down.reason
        ),
    )
}

/// Why a URL cannot be requested at all (a [`FailureCause::BadUrl`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum Unrequestable {
    #[error("invalid URL: {0}")]
    Syntax(<reqwest::Url as std::str::FromStr>::Err),
    #[error("unsupported URL scheme '{0}'")]
    Scheme(String),
    #[error("URL without a host")]
    NoHost,
}

/// `scheme://host:port` of an http(s) URL: the unit of politeness.
fn host_key(url: &str) -> Result<String, Unrequestable> {
    let parsed = reqwest::Url::parse(url).map_err(Unrequestable::Syntax)?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(Unrequestable::Scheme(parsed.scheme().to_string()));
    }
    let host = parsed.host_str().ok_or(Unrequestable::NoHost)?;
    let port = parsed.port_or_known_default().unwrap_or(0);
    Ok(format!("{host}:{port}").to_ascii_lowercase())
}

/// Different jitter for every URL and run, so that retries of many requests spread out.
fn jitter_seed(url: &str) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write(url.as_bytes());
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::super::host::GIVE_UP_AFTER;
    use super::*;
    use crate::fetch::test_server::{Reply, closed_port, serve};
    use crate::metadata::ImageId;

    #[test]
    fn host_keys() {
        assert_eq!(
            host_key("https://IIIF.lib.keio.ac.jp/a/b").unwrap(),
            "iiif.lib.keio.ac.jp:443"
        );
        assert_eq!(
            host_key("http://iiif.lib.keio.ac.jp/a").unwrap(),
            "iiif.lib.keio.ac.jp:80"
        );
        assert_eq!(
            host_key("http://127.0.0.1:8080/x").unwrap(),
            "127.0.0.1:8080"
        );
        assert_eq!(
            host_key("file:///etc/passwd"),
            Err(Unrequestable::Scheme("file".into()))
        );
        assert_eq!(
            host_key("ftp://example.org/x"),
            Err(Unrequestable::Scheme("ftp".into()))
        );
        assert!(matches!(host_key("http://"), Err(Unrequestable::Syntax(_))));
        assert!(matches!(
            host_key("not a url"),
            Err(Unrequestable::Syntax(_))
        ));
    }

    /// Fetch `urls` once each (no retries) into a cache of their own.
    fn fetch(urls: &[String]) -> FetchSummary {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::open(dir.path()).unwrap();
        let requests: Vec<FetchRequest> = urls
            .iter()
            .enumerate()
            .map(|(i, url)| FetchRequest {
                id: ImageId(i as u32),
                url: url.clone(),
            })
            .collect();
        let opts = FetchOptions {
            retries: 0,
            per_host: 1,
            ..FetchOptions::default()
        };
        fetch_all(&requests, &cache, &opts, &|_, _| {}, None, &|| false).unwrap()
    }

    fn jpeg() -> Vec<u8> {
        let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8, y as u8, 9]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Jpeg).unwrap();
        out.into_inner()
    }

    #[test]
    fn validation_decides_invalid_and_cut_bodies() {
        let html = serve(Reply::status(200, b"<!DOCTYPE html><html>busy</html>"));
        let good = jpeg();
        // Cut in its scan, and sent whole as its server has it: only the JPEG itself
        // shows the cut.
        let sos = good.windows(2).position(|w| w == [0xFF, 0xDA]).unwrap();
        let cut = serve(Reply::status(200, &good[..(sos + good.len()) / 2]));
        let whole = serve(Reply::status(200, &good));
        let s = fetch(&[format!("{html}/a.jpg"), format!("{cut}/b.jpg"), whole]);
        assert_eq!(s.downloaded, 1, "{s:?}");
        let causes: Vec<_> = s.failures.iter().map(|f| (f.cause, f.status)).collect();
        assert_eq!(
            causes,
            [
                (FailureCause::Invalid, Some(200)),
                (FailureCause::Cut, Some(200))
            ]
        );
    }

    #[test]
    fn requests_skipped_for_a_host_given_up_carry_its_last_cause() {
        let erring = serve(Reply::status(500, b"busy"));
        let refusing = format!("http://127.0.0.1:{}", closed_port());
        for (base, cause) in [
            (erring, FailureCause::HttpStatus),
            (refusing, FailureCause::Refused),
        ] {
            let urls: Vec<String> = (0..40).map(|i| format!("{base}/{i}.jpg")).collect();
            let s = fetch(&urls);
            assert_eq!(s.failures.len(), 40);
            let (skipped, sent): (Vec<_>, Vec<_>) =
                s.failures.iter().partition(|f| f.attempts == 0);
            assert!(sent.len() >= GIVE_UP_AFTER as usize, "{}", sent.len());
            assert!(skipped.len() >= 20, "{} skipped", skipped.len());
            assert!(sent.iter().all(|f| f.cause == cause), "{sent:?}");
            assert!(
                skipped
                    .iter()
                    .all(|f| f.cause == cause && f.status.is_none()),
                "{skipped:?}"
            );
            assert_eq!(s.hosts_given_up.len(), 1);
            assert_eq!(s.hosts_given_up[0].cause, cause);
            assert_eq!(s.hosts_given_up[0].images, 40);
        }
    }
}
