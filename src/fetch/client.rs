//! One HTTP attempt: GET a URL, bounded in time and size, and decide what went wrong: its
//! [`FailureCause`] and whether it is transient (worth a retry) or permanent. The cause is
//! decided here, where the typed information is (reqwest's error kinds, the I/O, TLS and
//! HTTP errors beneath them, the status), and travels as a value; the reason beside it is
//! text for people only.
//!
//! Redirects: followed (up to 5) only while they stay on the host:port of the original
//! request, or upgrade it from http to https on the same host; any other is refused
//! before it is requested, so a server cannot send kaokore to another host (a cloud
//! metadata address, a private network) or around that host's `--per-host` limit.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::fetch::FetchOptions;

use super::{FailureCause, FetchError};

/// Why one attempt failed.
#[derive(Debug, Clone)]
pub(crate) struct AttemptError {
    /// What kind of failure, decided from the typed error where it happened.
    pub cause: FailureCause,
    pub status: Option<u16>,
    /// In words, for the report; nothing is decided on it.
    pub reason: String,
    /// Worth retrying (timeouts, connection errors, 408, 429, 5xx, cut or bad bodies).
    pub transient: bool,
    /// The server asked for a pause (429 or 503).
    pub throttle: bool,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

impl AttemptError {
    pub(crate) fn transient(cause: FailureCause, reason: impl Into<String>) -> Self {
        AttemptError {
            cause,
            status: None,
            reason: reason.into(),
            transient: true,
            throttle: false,
            retry_after: None,
        }
    }

    pub(crate) fn permanent(cause: FailureCause, reason: impl Into<String>) -> Self {
        AttemptError {
            transient: false,
            ..Self::transient(cause, reason)
        }
    }

    fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    fn timed_out(opts: &FetchOptions) -> Self {
        Self::transient(
            FailureCause::Timeout,
            format!("timed out after {}", seconds(opts.timeout)),
        )
    }
}

/// The one client of a fetch run. Proxies from the standard environment variables
/// (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`) apply, as reqwest does by default.
pub(crate) fn build_client(opts: &FetchOptions) -> Result<reqwest::Client, FetchError> {
    // rustls needs one crypto provider per process; ring builds with a C compiler alone.
    // An error only says one is installed already (an earlier client, or the embedding
    // program's choice), which is then used.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout.min(Duration::from_secs(15)))
        .user_agent(opts.user_agent.clone())
        .pool_max_idle_per_host(opts.per_host.max(1))
        .pool_idle_timeout(Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::custom(same_host_redirects))
        .tcp_nodelay(true)
        .build()
        .map_err(FetchError::Client)
}

/// Most redirects followed for one request.
const MAX_REDIRECTS: usize = 5;

/// The redirect policy: see the module documentation.
fn same_host_redirects(attempt: reqwest::redirect::Attempt<'_>) -> reqwest::redirect::Action {
    let Some(original) = attempt.previous().first() else {
        return attempt.stop();
    };
    if attempt.previous().len() > MAX_REDIRECTS {
        return attempt.error(format!("more than {MAX_REDIRECTS} redirects"));
    }
    let next = attempt.url();
    if same_origin_or_upgrade(original, next) {
        return attempt.follow();
    }
    let shown = |u: &reqwest::Url| {
        format!(
            "{}://{}:{}",
            u.scheme(),
            u.host_str().unwrap_or("?"),
            u.port_or_known_default().unwrap_or(0)
        )
    };
    let message = format!(
        "redirect from {} to another host ({}) refused",
        shown(original),
        shown(next)
    );
    attempt.error(message)
}

/// Whether `next` is on the host:port of `original`, or its https upgrade (same host,
/// both on their default port).
fn same_origin_or_upgrade(original: &reqwest::Url, next: &reqwest::Url) -> bool {
    let host = |u: &reqwest::Url| u.host_str().map(str::to_ascii_lowercase);
    if host(original).is_none() || host(original) != host(next) {
        return false;
    }
    let (from, to) = (original.scheme(), next.scheme());
    if from == to {
        return original.port_or_known_default() == next.port_or_known_default();
    }
    from == "http" && to == "https" && original.port().is_none() && next.port().is_none()
}

/// Memory for response bodies held at once, whether still arriving or waiting for
/// validation: a body's buffer is reserved as it grows and released when the body is
/// dropped. Ordinary bodies (tens of KB) never wait; huge ones take turns.
pub(crate) const BODY_MEMORY: u64 = 64 << 20;

/// The body budget of one fetch run, in KiB.
#[derive(Debug, Clone)]
pub(crate) struct BodyBudget(Arc<Semaphore>);

impl BodyBudget {
    pub(crate) fn new() -> BodyBudget {
        BodyBudget(Arc::new(Semaphore::new((BODY_MEMORY >> 10) as usize)))
    }
}

/// A whole response body and its share of the [`BodyBudget`].
#[derive(Debug)]
pub(crate) struct Body {
    pub bytes: Vec<u8>,
    reserved: Option<OwnedSemaphorePermit>,
}

impl Body {
    fn new() -> Body {
        Body {
            bytes: Vec::new(),
            reserved: None,
        }
    }

    /// Make room for `more` bytes, waiting for the budget when the buffer must grow.
    /// The buffer never grows beyond `limit` (the body limit) unless `more` needs it.
    async fn reserve(
        &mut self,
        more: usize,
        limit: u64,
        budget: &BodyBudget,
    ) -> Result<(), AttemptError> {
        let needed = self.bytes.len() + more;
        let capacity = self.bytes.capacity();
        if needed <= capacity {
            return Ok(());
        }
        let target = needed.max((capacity * 2).min(limit as usize));
        let held = self.reserved.as_ref().map_or(0, |p| p.num_permits());
        let total = (BODY_MEMORY >> 10) as usize;
        let kib = (target.div_ceil(1024).min(total)).saturating_sub(held);
        if kib > 0 {
            let permit = budget
                .0
                .clone()
                .acquire_many_owned(kib as u32)
                .await
                .map_err(|_| {
                    AttemptError::transient(FailureCause::Other, "the fetch is shutting down")
                })?;
            match &mut self.reserved {
                Some(p) => p.merge(permit),
                None => self.reserved = Some(permit),
            }
        }
        self.bytes.reserve_exact(target - self.bytes.len());
        Ok(())
    }
}

/// GET `url` and return its body if the status is 200 and the body arrived whole within
/// `opts.timeout` and `opts.max_body_bytes`, its buffer counted against `budget`.
pub(crate) async fn download(
    client: &reqwest::Client,
    url: &str,
    opts: &FetchOptions,
    budget: &BodyBudget,
) -> Result<Body, AttemptError> {
    // reqwest's timeout covers the body too; this outer bound is a second line of
    // defence so that nothing in the attempt can outlive `--timeout`.
    match tokio::time::timeout(opts.timeout, download_inner(client, url, opts, budget)).await {
        Ok(result) => result,
        Err(_) => Err(AttemptError::timed_out(opts)),
    }
}

async fn download_inner(
    client: &reqwest::Client,
    url: &str,
    opts: &FetchOptions,
    budget: &BodyBudget,
) -> Result<Body, AttemptError> {
    let mut response = client
        .get(url)
        .send()
        .await
        .map_err(|e| send_error(e, opts))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(status_error(status, response.headers()));
    }
    let expected = response.content_length();
    if let Some(len) = expected
        && len > opts.max_body_bytes
    {
        return Err(AttemptError::permanent(
            FailureCause::Invalid,
            format!(
                "body of {len} bytes exceeds the limit of {} bytes",
                opts.max_body_bytes
            ),
        )
        .with_status(status));
    }
    let mut body = Body::new();
    let first = expected.unwrap_or(64 * 1024).min(1 << 20) as usize;
    body.reserve(first, opts.max_body_bytes, budget).await?;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (body.bytes.len() + chunk.len()) as u64 > opts.max_body_bytes {
                    return Err(AttemptError::permanent(
                        FailureCause::Invalid,
                        format!("body exceeds the limit of {} bytes", opts.max_body_bytes),
                    )
                    .with_status(status));
                }
                body.reserve(chunk.len(), opts.max_body_bytes, budget)
                    .await?;
                body.bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                let e = e.without_url();
                let err = if e.is_timeout() {
                    AttemptError::timed_out(opts)
                } else {
                    AttemptError::transient(
                        FailureCause::Cut,
                        format!(
                            "body cut after {} of {} bytes: {}",
                            body.bytes.len(),
                            expected.map_or("?".to_string(), |n| n.to_string()),
                            error_chain(&e)
                        ),
                    )
                };
                return Err(err.with_status(status));
            }
        }
    }
    if let Some(len) = expected
        && body.bytes.len() as u64 != len
    {
        return Err(AttemptError::transient(
            FailureCause::Cut,
            format!("body truncated: {} of {len} bytes", body.bytes.len()),
        )
        .with_status(status));
    }
    Ok(body)
}

/// A non-200 status: 408, 429 and 5xx are transient, the rest permanent.
fn status_error(status: u16, headers: &reqwest::header::HeaderMap) -> AttemptError {
    let reason = match reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        Some(r) => format!("HTTP {status} {r}"),
        None => format!("HTTP {status}"),
    };
    let transient = status == 408 || status == 429 || (500..600).contains(&status);
    let retry_after = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| parse_retry_after(v, SystemTime::now()));
    let cause = match status {
        404 | 410 => FailureCause::Gone,
        _ => FailureCause::HttpStatus,
    };
    AttemptError {
        cause,
        status: Some(status),
        reason,
        transient,
        throttle: status == 429 || status == 503,
        retry_after,
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(when.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A request that got no response.
fn send_error(e: reqwest::Error, opts: &FetchOptions) -> AttemptError {
    let e = e.without_url();
    let cause = send_cause(&e);
    let what = match cause {
        FailureCause::Timeout => return AttemptError::timed_out(opts),
        FailureCause::BadUrl if e.is_redirect() => "redirect refused",
        FailureCause::BadUrl => "invalid request",
        FailureCause::Cut => "body interrupted",
        _ if e.is_connect() => "connection failed",
        _ => "request failed",
    };
    // A network failure in the words of its innermost cause (the resolver's, the OS's):
    // the cause itself travels as a value, and reqwest's layers above it add nothing.
    let reason = if cause.is_network() {
        innermost(&e)
    } else {
        format!("{what}: {}", error_chain(&e))
    };
    if cause == FailureCause::BadUrl {
        AttemptError::permanent(cause, reason)
    } else {
        AttemptError::transient(cause, reason)
    }
}

/// The cause of a request that got no response, from reqwest's kinds and the typed
/// errors beneath them.
fn send_cause(e: &reqwest::Error) -> FailureCause {
    if e.is_timeout() {
        return FailureCause::Timeout;
    }
    if e.is_builder() || e.is_redirect() {
        return FailureCause::BadUrl;
    }
    // Resolver failures are tagged by reqwest (its `DnsError`, around the resolver's own
    // error), whatever the resolver says.
    if e.is_dns() {
        return FailureCause::Dns;
    }
    if e.is_body() || e.is_decode() {
        return FailureCause::Cut;
    }
    for source in causes(e) {
        // tokio-rustls hands the handshake's and the certificate verifier's errors up
        // inside an I/O error (InvalidData), found here by `causes`.
        if source.is::<rustls::Error>() {
            return FailureCause::Tls;
        }
        if let Some(io) = source.downcast_ref::<io::Error>() {
            use io::ErrorKind::*;
            match io.kind() {
                ConnectionRefused | ConnectionReset | ConnectionAborted => {
                    return FailureCause::Refused;
                }
                TimedOut => return FailureCause::Timeout,
                BrokenPipe | UnexpectedEof | NotConnected | NetworkUnreachable
                | HostUnreachable | NetworkDown | AddrNotAvailable => {
                    return FailureCause::Connection;
                }
                _ => {}
            }
        }
        // The host accepted the connection, then closed it without a whole response.
        if let Some(h) = source.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_closed() || h.is_canceled())
        {
            return FailureCause::Connection;
        }
    }
    if e.is_connect() {
        FailureCause::Connection
    } else {
        FailureCause::Other
    }
}

/// `e` and its causes. An I/O error's `source` is that of the error it wraps, skipping
/// the wrapped error itself (a `rustls::Error`, say): it is visited here.
fn causes<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |&e: &&'a (dyn StdError + 'static)| {
        match e.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            Some(inner) => Some(inner as &(dyn StdError + 'static)),
            None => e.source(),
        }
    })
}

/// An error and its causes on one line, without repeats.
/// The text of the innermost error beneath `e` (`e`'s own when it has no source).
fn innermost(e: &(dyn StdError + 'static)) -> String {
    let mut last = e;
    while let Some(s) = last.source() {
        last = s;
    }
    last.to_string()
}

fn error_chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    parts.join(": ")
}

fn seconds(d: Duration) -> String {
    format!("{d:?}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::test_server::{Reply, closed_port, serve};

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("7", now), Some(Duration::from_secs(7)));
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:27 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn statuses() {
        let h = reqwest::header::HeaderMap::new();
        for s in [408, 429, 500, 502, 503, 504] {
            assert!(status_error(s, &h).transient, "{s}");
        }
        for s in [400, 401, 403, 404, 410, 451] {
            assert!(!status_error(s, &h).transient, "{s}");
        }
        assert!(status_error(429, &h).throttle && status_error(503, &h).throttle);
        assert_eq!(status_error(404, &h).reason, "HTTP 404 Not Found");
    }

    /// One attempt at `url` with a client of its own, as a fetch run makes it.
    async fn attempt(url: &str, timeout: Duration) -> Result<Body, AttemptError> {
        let opts = FetchOptions {
            timeout,
            ..FetchOptions::default()
        };
        let client = build_client(&opts).unwrap();
        download(&client, url, &opts, &BodyBudget::new()).await
    }

    async fn failed(url: &str, timeout: Duration) -> AttemptError {
        match attempt(url, timeout).await {
            Ok(body) => panic!(
                "{url}: {} bytes arrived, expected a failure",
                body.bytes.len()
            ),
            Err(e) => e,
        }
    }

    const LONG: Duration = Duration::from_secs(20);

    #[tokio::test]
    async fn a_closed_port_is_refused() {
        let e = failed(&format!("http://127.0.0.1:{}/a.jpg", closed_port()), LONG).await;
        assert_eq!(e.cause, FailureCause::Refused, "{e:?}");
        assert_eq!(e.status, None);
        assert!(e.transient);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        // Nothing after the request; then a body that stops halfway: both are timeouts,
        // not connection failures or cut bodies.
        let silent = Reply {
            bytes: Vec::new(),
            hold: LONG,
        };
        let url = serve(silent);
        let e = failed(&format!("{url}/a.jpg"), Duration::from_millis(300)).await;
        assert_eq!(e.cause, FailureCause::Timeout, "{e:?}");
        assert_eq!(e.status, None);
        assert!(e.transient);
        let stalled = serve(Reply::cut(1000, &[0xFF; 10]).then_hold(LONG));
        let e = failed(&format!("{stalled}/a.jpg"), Duration::from_millis(300)).await;
        assert_eq!(e.cause, FailureCause::Timeout, "{e:?}");
    }

    #[tokio::test]
    async fn a_name_that_does_not_resolve_is_dns() {
        // RFC 2606: `.invalid` never resolves, and needs no network to fail.
        let e = failed("http://kaokore-test.invalid/a.jpg", LONG).await;
        assert_eq!(e.cause, FailureCause::Dns, "{e:?}");
        assert!(e.transient);
    }

    #[tokio::test]
    async fn statuses_decide_gone_and_http_errors() {
        for (status, cause, transient) in [
            (404, FailureCause::Gone, false),
            (410, FailureCause::Gone, false),
            (503, FailureCause::HttpStatus, true),
            (403, FailureCause::HttpStatus, false),
        ] {
            let url = serve(Reply::status(status, b"no"));
            let e = failed(&format!("{url}/a.jpg"), LONG).await;
            assert_eq!(
                (e.cause, e.status, e.transient),
                (cause, Some(status), transient),
                "{e:?}"
            );
        }
    }

    #[tokio::test]
    async fn a_body_shorter_than_announced_is_cut() {
        let url = serve(Reply::cut(1000, &[0xFF; 10]));
        let e = failed(&format!("{url}/a.jpg"), LONG).await;
        assert_eq!(e.cause, FailureCause::Cut, "{e:?}");
        assert_eq!(e.status, Some(200));
        assert!(e.transient);
        // Whole bodies arrive.
        let url = serve(Reply::status(200, b"0123456789"));
        assert_eq!(attempt(&url, LONG).await.unwrap().bytes, b"0123456789");
    }

    #[tokio::test]
    async fn a_peer_that_closes_without_answering_is_a_connection_failure() {
        let url = serve(Reply {
            bytes: Vec::new(),
            hold: Duration::ZERO,
        });
        let e = failed(&format!("{url}/a.jpg"), LONG).await;
        assert_eq!(e.cause, FailureCause::Connection, "{e:?}");
        assert!(e.transient);
    }

    #[tokio::test]
    async fn a_peer_that_speaks_no_tls_is_a_tls_failure() {
        let url = serve(Reply::status(400, b"plain HTTP").then_hold(LONG));
        let url = url.replacen("http://", "https://", 1);
        let e = failed(&format!("{url}/a.jpg"), LONG).await;
        assert_eq!(e.cause, FailureCause::Tls, "{e:?}");
    }

    #[tokio::test]
    async fn urls_that_cannot_be_requested_and_redirects_elsewhere_are_bad_urls() {
        let e = failed("http://", LONG).await;
        assert_eq!(e.cause, FailureCause::BadUrl, "{e:?}");
        assert!(!e.transient);
        let elsewhere = format!(
            "HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:{}/b.jpg\r\n\
             Content-Length: 0\r\n\r\n",
            closed_port()
        );
        let url = serve(Reply {
            bytes: elsewhere.into_bytes(),
            hold: Duration::ZERO,
        });
        let e = failed(&format!("{url}/a.jpg"), LONG).await;
        assert_eq!(e.cause, FailureCause::BadUrl, "{e:?}");
        assert!(!e.transient);
    }
}
