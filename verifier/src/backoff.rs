//! The pause between two attempts to reach a publisher: short at first, so a publisher that is
//! only restarting is found at once, then doubling up to a cap, so one that stays away is still
//! looked for every second without a busy loop.

use std::time::Duration;

/// Pause after the first failed attempt; it doubles up to [`MAX_RETRY_DELAY`].
pub(crate) const FIRST_RETRY_DELAY: Duration = Duration::from_millis(100);
/// Longest pause between attempts, so a publisher that comes back is found within seconds.
pub(crate) const MAX_RETRY_DELAY: Duration = Duration::from_secs(1);

/// Doubling pauses between attempts, capped; a fresh one for every series of attempts.
#[derive(Debug, Clone)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Pauses from `first`, doubling, never longer than `max`.
    pub fn new(first: Duration, max: Duration) -> Self {
        Backoff {
            next: first.min(max),
            max,
        }
    }

    /// How long to wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        delay
    }
}

impl Default for Backoff {
    /// From [`FIRST_RETRY_DELAY`] up to [`MAX_RETRY_DELAY`].
    fn default() -> Self {
        Backoff::new(FIRST_RETRY_DELAY, MAX_RETRY_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_doubles_from_100ms_and_stays_at_one_second() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = (0..7).map(|_| backoff.next_delay().as_millis()).collect();
        assert_eq!(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
    }

    #[test]
    fn a_first_pause_longer_than_the_cap_is_cut_to_it() {
        let mut backoff = Backoff::new(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
        assert_eq!(backoff.next_delay(), Duration::from_secs(1));
    }
}
