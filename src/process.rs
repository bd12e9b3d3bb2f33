//! Whether the process that left a file behind (a cache temp file, a staging directory of
//! `--out`) still runs: the one liveness probe of kaokore.

/// `Some(true)` if process `pid` runs, `Some(false)` if it does not, `None` where the
/// system offers no cheap way to tell (no `/proc`): the caller then decides.
pub(crate) fn process_alive(pid: u32) -> Option<bool> {
    let proc = std::path::Path::new("/proc");
    proc.join("self")
        .exists()
        .then(|| proc.join(pid.to_string()).exists())
}

#[cfg(test)]
mod tests {
    #[test]
    fn this_process_runs() {
        if let Some(alive) = super::process_alive(std::process::id()) {
            assert!(alive);
            // Linux pids stay below 2^22.
            assert_eq!(super::process_alive(u32::MAX - 1), Some(false));
        }
    }
}
