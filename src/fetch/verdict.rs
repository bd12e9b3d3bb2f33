//! The verdict on a fetch that a build rests on: failures grouped by host and cause for
//! the console, and the shortfalls that stop a build from delivering (nothing fetched, a
//! host given up, more missing than `--max-missing`).

use std::collections::BTreeMap;

use super::{FailureCause, FetchFailure, FetchSummary, HostGivenUp};

/// `--max-missing`: how many images may be missing (not fetched) before a build is
/// refused: a count (`25`) or a share of the images requested (`2%`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum MaxMissing {
    Count(usize),
    Percent(f64),
}

impl Default for MaxMissing {
    /// 2%: twice the ~1% of URLs that may be gone upstream at any time, so ordinary link
    /// rot (404/410) still builds, while a systematic loss (a moved collection, a mirror
    /// or proxy missing a path: hundreds of images) fails instead of shipping a dataset
    /// that silently differs from the published one.
    fn default() -> Self {
        MaxMissing::Percent(2.0)
    }
}

impl MaxMissing {
    /// Whether `missing` of `requested` images is more than allowed.
    pub fn exceeded(self, missing: usize, requested: usize) -> bool {
        match self {
            MaxMissing::Count(n) => missing > n,
            MaxMissing::Percent(p) => missing as f64 > requested as f64 * p / 100.0,
        }
    }
}

impl std::fmt::Display for MaxMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MaxMissing::Count(n) => write!(f, "{n}"),
            MaxMissing::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl std::str::FromStr for MaxMissing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let bad = || format!("expected a count (25) or a percentage (2%), got '{s}'");
        match s.strip_suffix('%') {
            Some(p) => {
                let p: f64 = p.trim().parse().map_err(|_| bad())?;
                if !(0.0..=100.0).contains(&p) {
                    return Err(format!("a percentage from 0% to 100%, got '{s}'"));
                }
                Ok(MaxMissing::Percent(p))
            }
            None => s.parse().map(MaxMissing::Count).map_err(|_| bad()),
        }
    }
}

/// The failures of one cause at one host: one console line.
#[derive(Debug, Clone)]
pub struct FailureGroup {
    pub cause: FailureCause,
    /// The host of the original URLs.
    pub host: String,
    pub images: usize,
    /// The failure of the lowest image id, among requests actually sent if any.
    pub example: FetchFailure,
}

impl std::fmt::Display for FailureGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.example;
        write!(
            f,
            "{}: {}: {} image(s), e.g. {} {}: {}",
            self.host,
            self.cause.describe(),
            self.images,
            e.id.file_name(),
            e.url,
            e.reason
        )
    }
}

/// Group failures by host and cause, the largest groups first.
pub fn group_failures(failures: &[FetchFailure]) -> Vec<FailureGroup> {
    let mut groups: BTreeMap<(&str, FailureCause), FailureGroup> = BTreeMap::new();
    for f in failures {
        groups
            .entry((f.host.as_str(), f.cause))
            .and_modify(|g| {
                g.images += 1;
                // A request actually sent makes the better example.
                let rank = |f: &FetchFailure| (f.attempts == 0, f.id);
                if rank(f) < rank(&g.example) {
                    g.example = f.clone();
                }
            })
            .or_insert_with(|| FailureGroup {
                cause: f.cause,
                host: f.host.clone(),
                images: 1,
                example: f.clone(),
            });
    }
    let mut groups: Vec<FailureGroup> = groups.into_values().collect();
    groups.sort_by_key(|g| std::cmp::Reverse(g.images));
    groups
}

/// Why a fetch does not deliver what a build needs.
#[derive(Debug, Clone)]
pub enum Shortfall {
    /// Not one of the images requested was fetched or cached.
    NothingFetched { requested: usize },
    /// A whole host was given up.
    HostGivenUp(HostGivenUp),
    /// More images missing than `--max-missing` allows.
    TooManyMissing {
        missing: usize,
        requested: usize,
        limit: MaxMissing,
    },
    /// `--strict` and images missing.
    Strict { missing: usize },
}

impl Shortfall {
    /// Whether a network hint (connection, proxy, mirror) helps with this shortfall.
    pub fn is_network(&self) -> bool {
        match self {
            Shortfall::NothingFetched { .. } => true,
            Shortfall::HostGivenUp(h) => h.cause.is_network(),
            _ => false,
        }
    }
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Shortfall::NothingFetched { requested } => {
                write!(f, "no image could be fetched (0 of {requested})")
            }
            Shortfall::HostGivenUp(h) => {
                let named = h.original_hosts.join(", ");
                let via = if h
                    .original_hosts
                    .iter()
                    .any(|o| h.host.starts_with(o.as_str()))
                {
                    String::new()
                } else {
                    format!(" (requested from {})", h.host)
                };
                write!(
                    f,
                    "{named}{via}: host given up, {}: {} image(s) not fetched (last error: {})",
                    h.cause.describe(),
                    h.images,
                    h.last_error
                )
            }
            Shortfall::TooManyMissing {
                missing,
                requested,
                limit,
            } => write!(
                f,
                "{missing} of {requested} image(s) missing ({:.1}%), more than --max-missing \
                 {limit} allows",
                *missing as f64 * 100.0 / (*requested).max(1) as f64
            ),
            Shortfall::Strict { missing } => {
                write!(f, "{missing} image(s) could not be fetched (--strict)")
            }
        }
    }
}

/// What keeps a fetch of `summary` from delivering a build; empty when it delivers.
pub fn shortfalls(summary: &FetchSummary, limit: MaxMissing, strict: bool) -> Vec<Shortfall> {
    let mut out = Vec::new();
    let missing = summary.failures.len();
    if summary.requested > 0 && missing == summary.requested {
        out.push(Shortfall::NothingFetched {
            requested: summary.requested,
        });
    }
    out.extend(
        summary
            .hosts_given_up
            .iter()
            .cloned()
            .map(Shortfall::HostGivenUp),
    );
    if strict && missing > 0 {
        out.push(Shortfall::Strict { missing });
    } else if limit.exceeded(missing, summary.requested) && out.is_empty() {
        out.push(Shortfall::TooManyMissing {
            missing,
            requested: summary.requested,
            limit,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::FailureCause::{Gone, Refused, Timeout};
    use crate::metadata::ImageId;

    fn failure(id: u32, host: &str, cause: FailureCause, reason: &str) -> FetchFailure {
        FetchFailure {
            id: ImageId(id),
            url: format!("https://{host}/{id}.jpg"),
            host: host.to_string(),
            status: (cause == Gone).then_some(404),
            cause,
            reason: reason.to_string(),
            attempts: 1,
        }
    }

    #[test]
    fn failures_group_by_host_and_cause() {
        let mut failures: Vec<FetchFailure> = (0..300)
            .map(|i| failure(300 - i, "a.example", Gone, "HTTP 404 Not Found"))
            .collect();
        failures.push(failure(7, "b.example", Timeout, "timed out after 30s"));
        failures.push(failure(8, "a.example", Timeout, "timed out after 30s"));
        let groups = group_failures(&failures);
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].images, 300);
        assert_eq!(
            groups[0].example.id,
            ImageId(1),
            "the lowest id is the example"
        );
        let line = groups[0].to_string();
        assert!(line.starts_with("a.example: gone upstream: 300 image(s), e.g. 00000001.jpg"));
    }

    #[test]
    fn shortfalls_of_a_fetch() {
        let mut summary = FetchSummary {
            requested: 1000,
            downloaded: 990,
            ..FetchSummary::default()
        };
        summary.failures = (0..10)
            .map(|i| failure(i, "a.example", Gone, "HTTP 404 Not Found"))
            .collect();
        // 1% gone: delivers, unless --strict.
        assert!(shortfalls(&summary, MaxMissing::default(), false).is_empty());
        let strict = shortfalls(&summary, MaxMissing::default(), true);
        assert!(matches!(strict[..], [Shortfall::Strict { missing: 10 }]));
        let tight = shortfalls(&summary, MaxMissing::Count(9), false);
        assert!(
            tight[0]
                .to_string()
                .contains("10 of 1000 image(s) missing (1.0%)")
        );

        summary.downloaded = 0;
        summary.failures = (0..1000)
            .map(|i| {
                failure(
                    i,
                    "a.example",
                    Refused,
                    "connection failed: Connection refused",
                )
            })
            .collect();
        summary.hosts_given_up = vec![HostGivenUp {
            host: "127.0.0.1:9".into(),
            original_hosts: vec!["a.example".into()],
            cause: FailureCause::Refused,
            last_error: "connection failed: Connection refused".into(),
            images: 1000,
        }];
        let all = shortfalls(&summary, MaxMissing::default(), false);
        assert_eq!(all.len(), 2, "the missing count adds nothing: {all:?}");
        assert!(all.iter().all(Shortfall::is_network));
        assert_eq!(all[0].to_string(), "no image could be fetched (0 of 1000)");
        assert!(all[1].to_string().starts_with(
            "a.example (requested from 127.0.0.1:9): host given up, connection refused: \
             1000 image(s) not fetched"
        ));
    }

    #[test]
    fn max_missing() {
        let two: MaxMissing = "2%".parse().unwrap();
        assert_eq!(two, MaxMissing::default());
        // 1% gone upstream builds; 3% does not.
        assert!(!two.exceeded(53, 5298));
        assert!(!two.exceeded(105, 5298));
        assert!(two.exceeded(106, 5298));
        assert!(two.exceeded(1, 40));
        let count: MaxMissing = "25".parse().unwrap();
        assert!(!count.exceeded(25, 30) && count.exceeded(26, 10_000));
        assert!(!"0%".parse::<MaxMissing>().unwrap().exceeded(0, 10));
        for bad in ["", "x", "-1", "101%", "-2%", "2.5.1%"] {
            assert!(bad.parse::<MaxMissing>().is_err(), "{bad}");
        }
        assert_eq!(two.to_string(), "2%");
    }
}
