//! What a guard tells the outside: its metrics, and logs of its cuts rate-limited so that a
//! flood of bad connections cannot become a flood of log lines.

use crate::zmtp::Violation;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How often at most a guard warns about the connections it cut.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Why a guard closed a connection. Its [`as_str`](CutReason::as_str) is the `reason` label of
/// `guard_cut_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CutReason {
    /// What the peer sent broke ZMTP or the limits.
    Violation(Violation),
    /// The peer did not finish its greeting and READY in time.
    HandshakeTimeout,
    /// The peer let more than the outbound budget pile up unread.
    SlowPeer,
    /// The guard already relayed its maximum number of connections.
    OverCapacity,
}

impl CutReason {
    /// The metric label: `bad_greeting`, `mechanism`, `bad_flags`, `oversize_command`,
    /// `oversize_frame`, `oversize_message`, `handshake_timeout`, `slow_peer` or
    /// `over_capacity`.
    pub const fn as_str(self) -> &'static str {
        match self {
            CutReason::Violation(violation) => violation.as_str(),
            CutReason::HandshakeTimeout => "handshake_timeout",
            CutReason::SlowPeer => "slow_peer",
            CutReason::OverCapacity => "over_capacity",
        }
    }
}

impl fmt::Display for CutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The metrics and logs of one guard.
#[derive(Debug)]
pub(crate) struct Report {
    name: &'static str,
    cuts: Throttle,
    failures: Throttle,
    /// This guard's share of `guard_connections_active`, which sums every guard of the name
    /// (a verifier has one `tasks-in` guard per publisher).
    active: AtomicUsize,
}

impl Report {
    pub(crate) fn new(name: &'static str) -> Self {
        describe();
        Self {
            name,
            cuts: Throttle::default(),
            failures: Throttle::default(),
            active: AtomicUsize::new(0),
        }
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn connection_opened(&self) {
        metrics::counter!("guard_connections_total", "socket" => self.name).increment(1);
    }

    /// This guard now relays `connections`: the gauge moves by the change in its share, so
    /// guards of one name add up rather than overwrite each other.
    pub(crate) fn active(&self, connections: usize) {
        let before = self.active.swap(connections, Ordering::Relaxed);
        let gauge = metrics::gauge!("guard_connections_active", "socket" => self.name);
        if connections >= before {
            gauge.increment((connections - before) as f64);
        } else {
            gauge.decrement((before - connections) as f64);
        }
    }

    /// Counts and logs a cut connection; `peer` is `None` for our own socket's connection on
    /// the connect side, cut before its remote was opened.
    pub(crate) fn cut(&self, reason: CutReason, peer: Option<SocketAddr>) {
        let peer = Peer(peer);
        let reason = reason.as_str();
        metrics::counter!("guard_cut_total", "socket" => self.name, "reason" => reason)
            .increment(1);
        tracing::debug!(socket = self.name, %peer, reason, "guard cut a connection");
        if let Some(cuts) = self.cuts.due() {
            tracing::warn!(
                socket = self.name,
                %peer,
                reason,
                cuts,
                "guard is cutting connections (count since the last warning; details at debug)"
            );
        }
    }

    pub(crate) fn connect_failed(&self, target: &str, cause: &std::io::Error) {
        tracing::debug!(socket = self.name, target, %cause, "guard could not connect");
        if let Some(failures) = self.failures.due() {
            tracing::warn!(
                socket = self.name,
                target,
                %cause,
                failures,
                "guard could not connect (count since the last warning)"
            );
        }
    }

    pub(crate) fn accept_failed(&self, cause: &std::io::Error, retry_in: Duration) {
        tracing::debug!(socket = self.name, %cause, ?retry_in, "guard could not accept");
        if let Some(failures) = self.failures.due() {
            tracing::warn!(
                socket = self.name,
                %cause,
                ?retry_in,
                failures,
                "guard could not accept (count since the last warning)"
            );
        }
    }
}

/// Gives each metric its help text (once per recorder; repeating it is harmless).
fn describe() {
    metrics::describe_counter!(
        "guard_connections_total",
        "Connections a socket guard admitted and relayed."
    );
    metrics::describe_gauge!(
        "guard_connections_active",
        "Connections the socket guards of this name are relaying now."
    );
    metrics::describe_counter!(
        "guard_cut_total",
        "Connections a socket guard closed, by reason."
    );
}

/// Counts events and says when a warning about them is due: on the first, then at most once
/// per [`WARN_EVERY`], with how many happened since the last warning.
#[derive(Debug, Default)]
struct Throttle {
    state: Mutex<ThrottleState>,
}

#[derive(Debug, Default)]
struct ThrottleState {
    last_warning: Option<Instant>,
    unreported: u64,
}

impl Throttle {
    fn due(&self) -> Option<u64> {
        // A poisoned lock only means a panic elsewhere mid-update; the counts stay usable.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.unreported += 1;
        let now = Instant::now();
        if state
            .last_warning
            .is_some_and(|last| now.duration_since(last) < WARN_EVERY)
        {
            return None;
        }
        state.last_warning = Some(now);
        Some(std::mem::take(&mut state.unreported))
    }
}

/// A peer's address in the logs, or what stood in for it.
struct Peer(Option<SocketAddr>);

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => addr.fmt(f),
            None => f.write_str("our socket"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_throttle_warns_on_the_first_event_then_holds_back_and_counts() {
        let throttle = Throttle::default();
        assert_eq!(throttle.due(), Some(1));
        for _ in 0..1000 {
            assert_eq!(throttle.due(), None);
        }
        let mut state = throttle.state.lock().unwrap();
        assert_eq!(state.unreported, 1000);
        state.last_warning = Instant::now().checked_sub(WARN_EVERY);
        drop(state);
        assert_eq!(throttle.due(), Some(1001));
    }
}
