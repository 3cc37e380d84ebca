//! One publisher's catch-up by replay: the request outstanding, when it is sent again (with
//! backoff, never more than a few times a second), when it is given up, and how far it has
//! come, logged about once a second.

use std::time::{Duration, Instant};

/// The shortest pause before a request is sent again, so a publisher gets at most 4 a second.
const MIN_RETRY: Duration = Duration::from_millis(250);
/// How often progress is logged; with a topic filter, also how long a catch-up lasts before
/// it counts as one (shorter ones are the routine filling of filtered-out numbers).
pub(super) const REPORT_EVERY: Duration = Duration::from_secs(1);

/// A hole being filled from replay.
#[derive(Debug)]
pub(super) struct CatchUp {
    /// The `after` of the request outstanding.
    pub after: u64,
    /// When it is sent again if no answer has ended it.
    retry_at: Instant,
    /// How many times it was sent with this `after`.
    attempt: u32,
    /// When the log last advanced by replay; give-up is measured from it.
    moved_at: Instant,
    /// `REPLAY_TIMEOUT`: how long an answer may be silent.
    timeout: Duration,
    /// Whether some of the hole was written as a gap after all.
    pub lost: bool,
    started: Instant,
    start_last: u64,
    replayed: u64,
    reported: Instant,
}

impl CatchUp {
    /// A catch-up of the numbers after `last`; nothing asked yet.
    pub fn new(last: u64, now: Instant, timeout: Duration) -> Self {
        CatchUp {
            after: last,
            retry_at: now,
            attempt: 0,
            moved_at: now,
            timeout,
            lost: false,
            started: now,
            start_last: last,
            replayed: 0,
            reported: now,
        }
    }

    /// A request after `after` is being sent: the next one waits `REPLAY_TIMEOUT`, doubled
    /// for each send of the same request.
    pub fn asked(&mut self, after: u64, now: Instant) {
        if after != self.after {
            self.attempt = 0;
        }
        self.after = after;
        let wait = self.timeout.saturating_mul(1 << self.attempt.min(8));
        self.retry_at = now + wait.max(MIN_RETRY);
        self.attempt += 1;
    }

    /// The request did not leave: send it on the next tick, as if it had not been tried.
    pub fn unsent(&mut self, now: Instant) {
        self.attempt = self.attempt.saturating_sub(1);
        self.retry_at = now;
    }

    /// An answer came and ended without bringing anything: ask again shortly.
    pub fn no_progress(&mut self, now: Instant) {
        self.retry_at = now + MIN_RETRY;
    }

    /// One event was written from replay: the request is being answered, so it is not sent
    /// again until the answer has been silent for `REPLAY_TIMEOUT`.
    pub fn replayed(&mut self, now: Instant) {
        self.replayed += 1;
        self.moved_at = now;
        self.retry_at = self.retry_at.max(now + self.timeout);
    }

    /// The log advanced (an answer ended further than it started).
    pub fn moved(&mut self, now: Instant) {
        self.moved_at = now;
    }

    /// Whether the request is to be sent again now.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.retry_at
    }

    /// How long ago the catch-up began.
    pub fn age(&self, now: Instant) -> Duration {
        now.duration_since(self.started)
    }

    /// Whether replay has made no progress for `give_up`.
    pub fn stalled(&self, now: Instant, give_up: Duration) -> bool {
        now.duration_since(self.moved_at) >= give_up
    }

    /// Logs how far the catch-up is, at most once per [`REPORT_EVERY`].
    pub fn report(&mut self, now: Instant, publisher: &str, last: u64, known: u64) {
        if now.duration_since(self.reported) < REPORT_EVERY {
            return;
        }
        self.reported = now;
        let seconds = now.duration_since(self.started).as_secs_f64();
        tracing::info!(
            publisher,
            replayed = self.replayed,
            of = known - self.start_last,
            at = last,
            per_second = (self.replayed as f64 / seconds.max(0.001)).round(),
            "catching up"
        );
    }

    /// Logs the end of the catch-up.
    pub fn done(&self, now: Instant, publisher: &str, last: u64) {
        let seconds = now.duration_since(self.started).as_secs_f64();
        tracing::info!(
            publisher,
            replayed = self.replayed,
            at = last,
            seconds = (seconds * 1000.0).round() / 1000.0,
            lost = self.lost,
            "caught up; following live"
        );
    }
}
