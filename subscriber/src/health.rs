//! What the subscriber shows on its health port: the metrics it keeps, each described (the
//! `# HELP` lines of `/metrics`), and whether it is ready — every publisher connection open
//! (one per configured endpoint, or per address of a followed name) heard from lately, and no
//! publisher's log being caught up by replay.

use plumbing::health::Readiness;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// An endpoint silent this long is not counted as connected: publishers send a heartbeat
/// every second (by default) while no event flows, and also under load.
pub const SILENT_AFTER: Duration = Duration::from_secs(5);

/// Describes every metric the subscriber records, and shows the unlabelled counters at 0
/// before their first event. Call once, after the health port has installed the recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge};
    describe_counter!(
        "events_written_total",
        "Event lines written to the log, by topic (replayed ones included)."
    );
    describe_counter!(
        "gap_lines_total",
        "Gap lines written to the log (each names a range that will never be in it), by reason."
    );
    describe_counter!(
        "events_lost_total",
        "Event numbers accounted for by gap lines, by reason."
    );
    describe_counter!(
        "gaps_found_total",
        "Holes found in a publisher's numbering (each filled by replay or written as a gap)."
    );
    describe_counter!("gaps_filled_total", "Holes filled entirely by replay.");
    describe_counter!(
        "replay_requests_total",
        "Replay requests sent to publishers."
    );
    describe_counter!(
        "events_replayed_total",
        "Events written from replay answers."
    );
    describe_counter!(
        "events_held_dropped_total",
        "Live events dropped while too many waited for a hole before them (replay brings them again)."
    );
    describe_counter!(
        "messages_rejected_total",
        "Messages dropped because they did not decode (garbage, a bad tag, another channel's), by endpoint."
    );
    describe_counter!(
        "log_reopened_total",
        "Times the log file was reopened by path after SIGHUP (log rotation)."
    );
    describe_counter!(
        "log_rotations_total",
        "Times the subscriber rotated the log itself past LOG_MAX_BYTES."
    );
    describe_counter!(
        "log_rotation_failures_total",
        "Rotations past LOG_MAX_BYTES that a refused rename put off (tried again 10 s later)."
    );
    describe_gauge!(
        "lag_events",
        "Events a publisher is known to have sent that the log does not account for yet, by publisher."
    );
    describe_gauge!("log_bytes", Unit::Bytes, "Length of the open log file.");
    describe_gauge!(
        "publishers_connected",
        "Publisher connections open: one per configured endpoint, or per address of a followed host name."
    );
    metrics::gauge!("publishers_connected").set(0.0);
    plumbing::resolve::describe_metrics();
    for name in [
        "events_held_dropped_total",
        "gaps_found_total",
        "gaps_filled_total",
        "replay_requests_total",
        "events_replayed_total",
        "log_reopened_total",
        "log_rotations_total",
        "log_rotation_failures_total",
    ] {
        metrics::counter!(name).increment(0);
    }
}

/// The writer's view of readiness: when each publisher connection was last heard from. It
/// publishes the verdict on a `watch`, which the health port reads.
#[derive(Debug)]
pub struct Ready {
    /// Per open connection, by number: its event endpoint and when it was last heard from.
    connections: BTreeMap<usize, (String, Option<Instant>)>,
    state: watch::Sender<Readiness>,
}

impl Ready {
    /// Readiness over no connection yet, published on `state`.
    pub fn new(state: watch::Sender<Readiness>) -> Self {
        Ready {
            connections: BTreeMap::new(),
            state,
        }
    }

    /// Connection `endpoint` to the publisher at `events` opened.
    pub fn add(&mut self, endpoint: usize, events: String) {
        self.connections.insert(endpoint, (events, None));
        metrics::gauge!("publishers_connected").set(self.connections.len() as f64);
    }

    /// Connection `endpoint` closed (its address vanished).
    pub fn remove(&mut self, endpoint: usize) {
        self.connections.remove(&endpoint);
        metrics::gauge!("publishers_connected").set(self.connections.len() as f64);
    }

    /// Something arrived on connection `endpoint`.
    pub fn heard(&mut self, endpoint: usize, now: Instant) {
        if let Some((_, at)) = self.connections.get_mut(&endpoint) {
            *at = Some(now);
        }
    }

    /// Decides readiness as of `now`, given the publishers being caught up (with how far
    /// behind each is), and publishes it when it changed.
    pub fn update(&mut self, now: Instant, catching_up: &[(String, u64)]) {
        let mut reasons = Vec::new();
        if self.connections.is_empty() {
            reasons.push("no publisher address to connect to yet".to_owned());
        }
        for (endpoint, heard) in self.connections.values() {
            match heard {
                None => reasons.push(format!("nothing heard from {endpoint} yet")),
                Some(at) if now.duration_since(*at) >= SILENT_AFTER => reasons.push(format!(
                    "nothing heard from {endpoint} for {}s",
                    now.duration_since(*at).as_secs()
                )),
                Some(_) => {}
            }
        }
        for (publisher, behind) in catching_up {
            reasons.push(format!(
                "catching up with {publisher} by replay ({behind} events behind)"
            ));
        }
        let verdict = if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        };
        self.set(verdict);
    }

    /// Publishes `verdict` when it differs from the last one.
    pub fn set(&self, verdict: Readiness) {
        self.state.send_if_modified(|current| {
            let changed = *current != verdict;
            *current = verdict;
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_endpoint_was_heard_lately_and_nothing_is_caught_up() {
        let (state, verdict) = watch::channel(Err("starting".to_owned()));
        let mut ready = Ready::new(state);
        let start = Instant::now();
        ready.update(start, &[]);
        let reason = verdict.borrow().clone().expect_err("no publisher");
        assert!(reason.contains("no publisher address"), "{reason}");
        ready.add(0, "tcp://a:1".into());
        ready.add(1, "tcp://b:1".into());

        ready.heard(0, start);
        ready.update(start, &[]);
        let reason = verdict.borrow().clone().expect_err("b is silent");
        assert!(
            reason.contains("nothing heard from tcp://b:1 yet"),
            "{reason}"
        );

        ready.heard(1, start);
        ready.update(start, &[("pub-1".into(), 40)]);
        let reason = verdict.borrow().clone().expect_err("catching up");
        assert!(
            reason.contains("catching up with pub-1 by replay (40 events behind)"),
            "{reason}"
        );

        ready.update(start, &[]);
        assert_eq!(*verdict.borrow(), Ok(()));

        let later = start + SILENT_AFTER;
        ready.heard(0, later);
        ready.update(later, &[]);
        let reason = verdict.borrow().clone().expect_err("b went silent");
        assert!(
            reason.contains("nothing heard from tcp://b:1 for 5s"),
            "{reason}"
        );

        ready.remove(1);
        ready.update(later, &[]);
        assert_eq!(*verdict.borrow(), Ok(()), "b is no longer followed");
    }
}
