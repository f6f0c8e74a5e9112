//! Progress of long steps, through `tracing` (the libraries print nothing
//! themselves): a line when a step starts, one every few seconds while it
//! runs, one when it ends.

use std::time::{Duration, Instant};

/// How often a running step says where it is.
const EVERY: Duration = Duration::from_secs(10);

/// One long step.
#[derive(Debug)]
pub struct Progress {
    what: String,
    started: Instant,
    last: Instant,
    every: Duration,
}

impl Progress {
    /// Start a step called `what` (logged).
    pub fn start(what: impl Into<String>) -> Progress {
        let what = what.into();
        tracing::info!("{what}…");
        let now = Instant::now();
        Progress {
            what,
            started: now,
            last: now,
            every: EVERY,
        }
    }

    /// Say where the step is, if the last line is old enough; `status` is
    /// only called then.
    pub fn tick(&mut self, status: impl FnOnce() -> String) {
        if self.last.elapsed() >= self.every {
            self.last = Instant::now();
            tracing::info!(
                "{}: {} ({}s)",
                self.what,
                status(),
                self.started.elapsed().as_secs()
            );
        }
    }

    /// Say something now (a new phase of the step).
    pub fn note(&mut self, status: &str) {
        self.last = Instant::now();
        tracing::info!(
            "{}: {status} ({}s)",
            self.what,
            self.started.elapsed().as_secs()
        );
    }

    /// Time since the step started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// End the step with a summary (logged with the time it took).
    pub fn done(self, summary: &str) -> Duration {
        let took = self.started.elapsed();
        tracing::info!("{}: {summary} in {:.1}s", self.what, took.as_secs_f64());
        took
    }
}

/// "1.2 GiB of 2 GiB (60%)".
pub fn fraction(done: u64, total: u64) -> String {
    let pct = if total == 0 {
        100
    } else {
        (u128::from(done) * 100 / u128::from(total)) as u64
    };
    format!(
        "{} of {} ({pct}%)",
        crate::size::human(done),
        crate::size::human(total)
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn fraction_reads_well() {
        assert_eq!(super::fraction(1 << 30, 2 << 30), "1 GiB of 2 GiB (50%)");
        assert_eq!(super::fraction(0, 0), "0 bytes of 0 bytes (100%)");
    }
}
