//! A standalone IIIF-like image server for benchmarks and manual runs: one fixture per
//! KaoKore host on 127.0.0.1, each with its own port.
//!
//!     cargo run --release --example iiif_fixture -- --latency-ms 30 --hosts 3
//!
//! Prints the `--rewrite FROM=TO` arguments that send the real hosts' URLs to it (one
//! per line, then `ready`), and serves until killed.

use std::io::Write;
use std::time::Duration;

use kaokore_fixture::{CODH, Fixture, FixtureConfig, FixtureHosts, KEIO, KYOTO};

fn main() {
    let mut latency_ms = 0u64;
    let mut hosts = 3usize;
    let mut gray_one_in = 0u64;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| -> u64 {
            args.next()
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| usage(&format!("{name} needs a number")))
        };
        match arg.as_str() {
            "--latency-ms" => latency_ms = value("--latency-ms"),
            "--hosts" => hosts = value("--hosts") as usize,
            "--gray-one-in" => gray_one_in = value("--gray-one-in"),
            "-h" | "--help" => usage(""),
            other => usage(&format!("unknown argument '{other}'")),
        }
    }
    let config = FixtureConfig {
        latency: Duration::from_millis(latency_ms),
        gray_one_in,
        ..FixtureConfig::default()
    };
    // Kept alive until the process is killed.
    let (_fixtures, pairs): (Vec<Fixture>, Vec<(String, String)>) = match hosts {
        1 => {
            let f = Fixture::start(config);
            let base = f.base_url();
            let pairs = [CODH, KEIO[0], KEIO[1], KYOTO]
                .into_iter()
                .map(|from| (from.to_string(), base.clone()))
                .collect();
            (vec![f], pairs)
        }
        3 => {
            let h = FixtureHosts::start(config);
            let pairs = h.rewrite_pairs();
            (vec![h.codh, h.keio, h.kyoto], pairs)
        }
        _ => usage("--hosts must be 1 or 3"),
    };
    let mut out = std::io::stdout().lock();
    for (from, to) in pairs {
        let _ = writeln!(out, "--rewrite {from}={to}");
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    drop(out);
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

fn usage(problem: &str) -> ! {
    if !problem.is_empty() {
        eprintln!("iiif_fixture: {problem}");
    }
    eprintln!("usage: iiif_fixture [--latency-ms MS] [--hosts 1|3] [--gray-one-in N]");
    std::process::exit(2)
}
