//! Counting messages that had to be dropped (undecodable, or not a task), with a warning at
//! most once per interval, so a flood of garbage cannot flood the log.

use std::time::{Duration, Instant};

/// How often at most a warning about dropped messages is logged.
pub const WARN_EVERY: Duration = Duration::from_secs(10);

/// A running count of dropped messages and when the last warning went out.
#[derive(Debug, Default)]
pub struct Drops {
    total: u64,
    unreported: u64,
    last_warning: Option<Instant>,
}

impl Drops {
    /// Counts one dropped message; logs a warning with `cause` and the counts when the last
    /// one is older than [`WARN_EVERY`]. Returns whether it warned.
    pub fn record(&mut self, endpoint: &str, cause: &dyn std::fmt::Display) -> bool {
        self.total += 1;
        self.unreported += 1;
        let now = Instant::now();
        if self
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            tracing::debug!(endpoint, %cause, "dropped a message");
            return false;
        }
        tracing::warn!(
            endpoint,
            %cause,
            dropped = self.unreported,
            dropped_total = self.total,
            "dropped messages that are not valid tasks"
        );
        self.unreported = 0;
        self.last_warning = Some(now);
        true
    }

    /// Messages dropped since start.
    pub fn total(&self) -> u64 {
        self.total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_of_drops_warns_once_but_counts_all() {
        let mut drops = Drops::default();
        let warned = (0..1000)
            .filter(|_| drops.record("tcp://x:1", &"garbage"))
            .count();
        assert_eq!(warned, 1);
        assert_eq!(drops.total(), 1000);
    }
}
