//! Progress on stderr: a live bar on a terminal, plain periodic lines otherwise, nothing
//! with `--quiet`. Stages report counts; this module decides how they are shown. Plain
//! lines are few whatever the run's length, so a log of a whole build stays readable.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Plain lines (stderr not a terminal) come at most this often...
const PLAIN_EVERY: Duration = Duration::from_secs(5);
/// ... each after another tenth of the work at least, so a stage prints at most this many,
/// its last line included.
const PLAIN_MAX_LINES: u64 = 10;

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
    Plain(Mutex<PlainState>),
}

struct PlainState {
    /// When the last line was printed, and at which count.
    at: Instant,
    done: u64,
    lines: u64,
}

impl PlainState {
    /// Whether a line is due at `done` of `total`.
    fn due(&self, done: u64, total: u64) -> bool {
        if done >= total {
            return self.done < total;
        }
        let step = (total / PLAIN_MAX_LINES).max(1);
        // One line is kept for the end.
        self.lines + 1 < PLAIN_MAX_LINES
            && done >= self.done + step
            && self.at.elapsed() >= PLAIN_EVERY
    }
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
            Display::Plain(Mutex::new(PlainState {
                at: Instant::now(),
                done: 0,
                lines: 0,
            }))
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
            Display::Plain(state) => {
                let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
                if state.due(done, self.total) {
                    *state = PlainState {
                        at: Instant::now(),
                        done,
                        lines: state.lines + 1,
                    };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Plain lines of a stage of `total` items, each taking `every` of (simulated) time.
    fn lines(total: u64, every: Duration) -> u64 {
        let mut state = PlainState {
            at: Instant::now(),
            done: 0,
            lines: 0,
        };
        let mut clock = Duration::ZERO;
        for done in 1..=total {
            clock += every;
            // Pretend the last line was printed `clock` ago.
            let shifted = PlainState {
                at: Instant::now()
                    .checked_sub(clock)
                    .unwrap_or_else(Instant::now),
                ..state
            };
            if shifted.due(done, total) {
                state = PlainState {
                    at: Instant::now(),
                    done,
                    lines: state.lines + 1,
                };
                clock = Duration::ZERO;
            }
        }
        state.lines
    }

    #[test]
    fn plain_lines_are_bounded_however_long_the_run() {
        // A slow run of many items: many 5 s periods, still at most 10 lines.
        assert_eq!(lines(20_000, Duration::from_millis(10)), PLAIN_MAX_LINES);
        // A fast run: only the final line.
        assert_eq!(lines(5_000, Duration::ZERO), 1);
        assert_eq!(lines(3, Duration::from_secs(60)), 3);
    }
}
