//! How the fetch stage talks to the IIIF servers: its options as plain values, and the
//! `--rewrite` rules that send requests to a mirror while artifacts keep the original URL.

use std::time::Duration;

/// `--rewrite FROM=TO`: fetch `TO...` instead of `FROM...`; artifacts keep the original URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub from: String,
    pub to: String,
}

impl Rewrite {
    /// Apply the first rewrite whose prefix matches.
    pub fn apply<'a>(rewrites: &[Rewrite], url: &'a str) -> std::borrow::Cow<'a, str> {
        for r in rewrites {
            if let Some(rest) = url.strip_prefix(r.from.as_str()) {
                return format!("{}{rest}", r.to).into();
            }
        }
        url.into()
    }
}

impl std::str::FromStr for Rewrite {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (from, to) = s
            .split_once('=')
            .ok_or_else(|| format!("expected FROM=TO, got '{s}'"))?;
        if from.is_empty() || to.is_empty() {
            return Err(format!(
                "expected FROM=TO with both sides non-empty, got '{s}'"
            ));
        }
        if !(to.starts_with("http://") || to.starts_with("https://")) {
            return Err(format!(
                "rewrite target must be an http(s) URL prefix, got '{to}'"
            ));
        }
        Ok(Rewrite {
            from: from.to_string(),
            to: to.to_string(),
        })
    }
}

/// How the fetch stage talks to the IIIF servers.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    pub rewrites: Vec<Rewrite>,
    /// Most requests in flight to one host.
    pub per_host: usize,
    /// Most requests in flight overall.
    pub concurrency: usize,
    /// Retries of a transient failure.
    pub retries: u32,
    /// Limit for one whole request, body included.
    pub timeout: Duration,
    /// Largest accepted response body.
    pub max_body_bytes: u64,
    /// Largest accepted image edge, checked before decoding.
    pub max_image_edge: u32,
    /// Most validation decodes at once (CPU work): `--jobs`, by default the CPU count.
    pub decode_jobs: usize,
    /// First backoff delay; doubles per retry, with jitter.
    pub backoff_base: Duration,
    /// Longest single wait, whether from backoff or a server's Retry-After.
    pub backoff_max: Duration,
    pub user_agent: String,
}

impl Default for FetchOptions {
    fn default() -> Self {
        FetchOptions {
            rewrites: Vec::new(),
            per_host: 4,
            concurrency: 32,
            retries: 5,
            timeout: Duration::from_secs(30),
            max_body_bytes: 32 << 20,
            max_image_edge: 8192,
            decode_jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            backoff_base: Duration::from_millis(500),
            backoff_max: Duration::from_secs(60),
            user_agent: format!(
                "kaokore/{} (+https://crates.io/crates/kaokore)",
                env!("CARGO_PKG_VERSION")
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrite_prefix() {
        let r: Rewrite = "http://codh.rois.ac.jp=http://127.0.0.1:9000/codh"
            .parse()
            .unwrap();
        let url = "http://codh.rois.ac.jp/iiif/x/0,0,1,1/256,256/0/default.jpg";
        assert_eq!(
            Rewrite::apply(&[r], url),
            "http://127.0.0.1:9000/codh/iiif/x/0,0,1,1/256,256/0/default.jpg"
        );
        assert!("nonsense".parse::<Rewrite>().is_err());
        assert!("http://a=file:///tmp".parse::<Rewrite>().is_err());
    }
}
