//! Progress on stderr: a live bar on a terminal, plain periodic lines otherwise, nothing
//! with `--quiet`. Stages report counts; this module decides how they are shown.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a plain line is printed when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The progress of one stage: `done` of `total` items, with failures counted apart.
pub struct Progress {
    stage: &'static str,
    total: u64,
    done: AtomicU64,
    failed: AtomicU64,
    started: Instant,
    display: Display,
}

enum Display {
    Hidden,
    Bar(ProgressBar),
    Plain { last: Mutex<Instant> },
}

impl Progress {
    /// A display for `total` items; `visible` false shows nothing.
    pub fn new(stage: &'static str, total: u64, visible: bool) -> Progress {
        let display = if !visible {
            Display::Hidden
        } else if std::io::stderr().is_terminal() {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>6} [{bar:30}] {pos}/{len} {rate} ETA {eta} {msg}",
                )
                .expect("static template")
                .with_key(
                    "rate",
                    |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                        let _ = write!(w, "{:.0}/s", state.per_sec());
                    },
                )
                .progress_chars("=> "),
            );
            bar.set_prefix(stage);
            bar.enable_steady_tick(Duration::from_millis(200));
            Display::Bar(bar)
        } else {
            Display::Plain {
                last: Mutex::new(Instant::now()),
            }
        };
        Progress {
            stage,
            total,
            done: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            started: Instant::now(),
            display,
        }
    }

    /// A display that shows nothing (library use, tests).
    pub fn hidden(stage: &'static str, total: u64) -> Progress {
        Progress::new(stage, total, false)
    }

    /// One item finished; `failed` counts it as a failure too.
    pub fn advance(&self, failed: bool) {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        let failures = if failed {
            self.failed.fetch_add(1, Ordering::Relaxed) + 1
        } else {
            self.failed.load(Ordering::Relaxed)
        };
        match &self.display {
            Display::Hidden => {}
            Display::Bar(bar) => {
                bar.set_position(done);
                if failed {
                    bar.set_message(format!("{failures} failed"));
                }
            }
            Display::Plain { last } => {
                let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
                if last.elapsed() >= PLAIN_EVERY || done == self.total {
                    *last = Instant::now();
                    eprintln!("{}", self.line(done, failures));
                }
            }
        }
    }

    /// Print a message without breaking the bar.
    pub fn println(&self, message: &str) {
        match &self.display {
            Display::Bar(bar) => bar.println(message),
            _ => eprintln!("{message}"),
        }
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }

    /// End the display.
    pub fn finish(&self) {
        if let Display::Bar(bar) = &self.display {
            bar.finish_and_clear();
            eprintln!("{}", self.line(self.done(), self.failed()));
        }
    }

    fn line(&self, done: u64, failed: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = done as f64 / secs;
        let eta = if rate > 0.0 && self.total > done {
            format!(", ETA {:.0}s", (self.total - done) as f64 / rate)
        } else {
            String::new()
        };
        format!(
            "{}: {done}/{} ({:.0}/s{eta}), {failed} failed",
            self.stage, self.total, rate
        )
    }
}
