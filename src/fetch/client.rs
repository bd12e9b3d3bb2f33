//! One HTTP attempt: GET a URL, bounded in time and size, and classify what went wrong as
//! transient (worth a retry) or permanent.
//!
//! Redirects: followed (up to 5) only while they stay on the host:port of the original
//! request, or upgrade it from http to https on the same host; any other is refused
//! before it is requested, so a server cannot send kaokore to another host (a cloud
//! metadata address, a private network) or around that host's `--per-host` limit.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::fetch::FetchOptions;

use super::FetchError;

/// Why one attempt failed.
#[derive(Debug, Clone)]
pub(crate) struct AttemptError {
    pub status: Option<u16>,
    pub reason: String,
    /// Worth retrying (timeouts, connection errors, 408, 429, 5xx, cut or bad bodies).
    pub transient: bool,
    /// The server asked for a pause (429 or 503).
    pub throttle: bool,
    /// The server's `Retry-After`, if it sent one.
    pub retry_after: Option<Duration>,
}

impl AttemptError {
    fn transient(reason: impl Into<String>) -> Self {
        AttemptError {
            status: None,
            reason: reason.into(),
            transient: true,
            throttle: false,
            retry_after: None,
        }
    }

    fn permanent(reason: impl Into<String>) -> Self {
        AttemptError {
            transient: false,
            ..Self::transient(reason)
        }
    }

    /// A request that was never sent (its host counts as down).
    pub(crate) fn not_attempted(reason: String) -> Self {
        Self::transient(reason)
    }

    fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
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
        .map_err(|e| FetchError::Client(error_chain(&e)))
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
                .map_err(|_| AttemptError::transient("the fetch is shutting down"))?;
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
        Err(_) => Err(AttemptError::transient(format!(
            "timed out after {}",
            seconds(opts.timeout)
        ))),
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
        .map_err(|e| from_reqwest(e, opts))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(status_error(status, response.headers()));
    }
    let expected = response.content_length();
    if let Some(len) = expected
        && len > opts.max_body_bytes
    {
        return Err(AttemptError::permanent(format!(
            "body of {len} bytes exceeds the limit of {} bytes",
            opts.max_body_bytes
        ))
        .with_status(status));
    }
    let mut body = Body::new();
    let first = expected.unwrap_or(64 * 1024).min(1 << 20) as usize;
    body.reserve(first, opts.max_body_bytes, budget).await?;
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if (body.bytes.len() + chunk.len()) as u64 > opts.max_body_bytes {
                    return Err(AttemptError::permanent(format!(
                        "body exceeds the limit of {} bytes",
                        opts.max_body_bytes
                    ))
                    .with_status(status));
                }
                body.reserve(chunk.len(), opts.max_body_bytes, budget)
                    .await?;
                body.bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => {
                let mut err = from_reqwest(e, opts).with_status(status);
                if !err.reason.starts_with("timed out") {
                    err.reason = format!(
                        "body cut after {} of {} bytes: {}",
                        body.bytes.len(),
                        expected.map_or("?".to_string(), |n| n.to_string()),
                        err.reason
                    );
                }
                return Err(err);
            }
        }
    }
    if let Some(len) = expected
        && body.bytes.len() as u64 != len
    {
        return Err(AttemptError::transient(format!(
            "body truncated: {} of {len} bytes",
            body.bytes.len()
        ))
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
    AttemptError {
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

fn from_reqwest(e: reqwest::Error, opts: &FetchOptions) -> AttemptError {
    let e = e.without_url();
    if e.is_timeout() {
        return AttemptError::transient(format!("timed out after {}", seconds(opts.timeout)));
    }
    if e.is_builder() {
        return AttemptError::permanent(format!("invalid request: {}", error_chain(&e)));
    }
    if e.is_redirect() {
        return AttemptError::permanent(format!("redirect refused: {}", error_chain(&e)));
    }
    let what = if e.is_connect() {
        "connection failed"
    } else if e.is_body() || e.is_decode() {
        "body interrupted"
    } else {
        "request failed"
    };
    AttemptError::transient(format!("{what}: {}", error_chain(&e)))
}

/// An error and its causes on one line, without repeats.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
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
}
