//! Politeness towards one host (host:port of the URL actually requested): at most
//! `--per-host` requests in flight, a pause of the whole host after a 429/503 (for its
//! `Retry-After`), fewer parallel requests for a while after being throttled, and the
//! verdict that a host is down once it fails request after request, with the cause of
//! its last failure.

use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

use super::FailureCause;

/// Successful responses that win back one parallel slot after a throttle.
const SUCCESSES_PER_SLOT: u32 = 16;
/// Requests in a row that failed even after their retries, after which a host counts as
/// down: its remaining requests are reported at once instead of each waiting out its own
/// retries (hours, for a host that swallows connections).
pub(crate) const GIVE_UP_AFTER: u32 = 10;
/// The same for requests whose host name did not resolve: a resolver's "no such host" is
/// not worth waiting out (an offline build gives up in seconds).
pub(crate) const GIVE_UP_AFTER_DNS: u32 = 3;

/// The gate every request to one host passes.
#[derive(Debug)]
pub(crate) struct HostGate {
    /// Request slots; never more than `per_host` exist.
    slots: Semaphore,
    per_host: usize,
    state: Mutex<GateState>,
}

#[derive(Debug)]
struct GateState {
    /// New requests wait until then.
    paused_until: Option<Instant>,
    /// Slots currently allowed (halved on each throttle, regained slowly).
    limit: usize,
    /// Slots to retire as they are released, to bring the semaphore down to `limit`.
    debt: usize,
    successes: u32,
    /// Requests failed in a row after all retries, for transient reasons.
    failed_in_a_row: u32,
    /// Set once the host counts as down.
    down: Option<Down>,
}

/// Why a host counts as down: its last failure, the one that made it so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Down {
    pub cause: FailureCause,
    /// In words, for the report.
    pub reason: String,
}

/// A request slot of a host; releasing it honours a pending slow-down.
pub(crate) struct Slot<'a> {
    gate: &'a HostGate,
    permit: Option<SemaphorePermit<'a>>,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if let Some(permit) = self.permit.take() {
            let mut st = self.gate.lock();
            if st.debt > 0 {
                st.debt -= 1;
                permit.forget();
            }
        }
    }
}

impl HostGate {
    pub(crate) fn new(per_host: usize) -> HostGate {
        let per_host = per_host.max(1);
        HostGate {
            slots: Semaphore::new(per_host),
            per_host,
            state: Mutex::new(GateState {
                paused_until: None,
                limit: per_host,
                debt: 0,
                successes: 0,
                failed_in_a_row: 0,
                down: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        // The state stays consistent even if a holder panicked: every update is one step.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wait until the host is not paused and a slot is free. Requests are served in the
    /// order they asked (the semaphore is fair).
    pub(crate) async fn acquire(&self) -> Slot<'_> {
        loop {
            self.wait_unpaused().await;
            let Ok(permit) = self.slots.acquire().await else {
                // The semaphore is never closed; wait as if paused briefly.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            // A pause may have started while this request waited for its slot.
            if self.paused_until().is_some() {
                drop(Slot {
                    gate: self,
                    permit: Some(permit),
                });
                continue;
            }
            return Slot {
                gate: self,
                permit: Some(permit),
            };
        }
    }

    async fn wait_unpaused(&self) {
        while let Some(until) = self.paused_until() {
            tokio::time::sleep_until(until).await;
        }
    }

    /// The end of the current pause, if the host is paused now.
    fn paused_until(&self) -> Option<Instant> {
        let st = self.lock();
        st.paused_until.filter(|&t| t > Instant::now())
    }

    /// The host said "too many requests" or "unavailable": pause it for `wait` (or
    /// longer, if a pause is already running) and halve its parallelism.
    pub(crate) fn throttle(&self, wait: Duration) {
        let mut st = self.lock();
        let until = Instant::now() + wait;
        st.paused_until = Some(st.paused_until.map_or(until, |t| t.max(until)));
        let new_limit = (st.limit / 2).max(1);
        st.debt += st.limit - new_limit;
        st.limit = new_limit;
        // Retire free slots now; busy ones are retired as they are released.
        st.debt -= self.slots.forget_permits(st.debt);
        st.successes = 0;
    }

    /// A request succeeded: after enough of them, allow one more parallel request again.
    pub(crate) fn success(&self) {
        let mut st = self.lock();
        st.failed_in_a_row = 0;
        if st.limit >= self.per_host {
            return;
        }
        st.successes += 1;
        if st.successes >= SUCCESSES_PER_SLOT {
            st.successes = 0;
            st.limit += 1;
            if st.debt > 0 {
                st.debt -= 1;
            } else {
                self.slots.add_permits(1);
            }
        }
    }

    /// A request failed for a transient reason even after its retries.
    pub(crate) fn gave_up(&self, cause: FailureCause, reason: &str) {
        let mut st = self.lock();
        st.failed_in_a_row += 1;
        let limit = if cause == FailureCause::Dns {
            GIVE_UP_AFTER_DNS
        } else {
            GIVE_UP_AFTER
        };
        if st.failed_in_a_row >= limit && st.down.is_none() {
            st.down = Some(Down {
                cause,
                reason: reason.to_string(),
            });
        }
    }

    /// Why the host counts as down, if it does.
    pub(crate) fn down(&self) -> Option<Down> {
        self.lock().down.clone()
    }

    #[cfg(test)]
    fn available(&self) -> usize {
        self.slots.available_permits()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn throttle_pauses_and_halves_then_recovers() {
        let gate = HostGate::new(4);
        let a = gate.acquire().await;
        let b = gate.acquire().await;
        gate.throttle(Duration::from_millis(200));
        drop(a);
        drop(b);
        // Limit 2: the two released slots were retired.
        assert_eq!(gate.available(), 2);
        let start = Instant::now();
        let _c = gate.acquire().await;
        assert!(start.elapsed() >= Duration::from_millis(190));
        for _ in 0..SUCCESSES_PER_SLOT * 2 {
            gate.success();
        }
        assert_eq!(gate.available(), 3);
        assert_eq!(gate.lock().limit, 4);
    }
}
