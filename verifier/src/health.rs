//! What the verifier shows on its health port: the metrics it keeps, each described (the
//! `# HELP` lines of `/metrics`), and whether it is ready — its keys loaded and every
//! publisher link connected (one per configured endpoint pair, or per address of a followed
//! host name).

use plumbing::health::Readiness;
use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Describes every metric the verifier records and sets the gauges to their starting values.
/// Call once, after the health port has installed the recorder.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        "tasks_verified_total",
        "Verification tasks checked, by verdict status (valid, invalid, error)."
    );
    describe_histogram!(
        "verification_seconds",
        Unit::Seconds,
        "Time one signature check took on a verification thread."
    );
    describe_gauge!(
        "links_up",
        "Publishers this verifier is connected to (of links_configured)."
    );
    describe_gauge!(
        "links_configured",
        "Publisher links this verifier keeps: one per configured endpoint pair, or per address of a followed host name."
    );
    plumbing::resolve::describe_metrics();
    describe_gauge!("keys_loaded", "RSA public keys loaded from KEYS_DIR.");
    describe_counter!(
        "messages_rejected_total",
        "Messages dropped because they were not valid tasks (garbage, a bad tag, another channel's), by endpoint."
    );
    metrics::gauge!("links_up").set(0.0);
    metrics::gauge!("links_configured").set(0.0);
    metrics::gauge!("keys_loaded").set(0.0);
}

/// The state `/readyz` is decided from, shared by the links.
#[derive(Debug, Default)]
pub(crate) struct Status {
    keys: AtomicUsize,
    /// Per link, by number: its task endpoint and whether it is connected.
    links: Mutex<BTreeMap<usize, (String, bool)>>,
}

impl Status {
    /// No keys yet, no link.
    pub fn new() -> Self {
        Status::default()
    }

    /// `n` keys are loaded.
    pub fn keys_loaded(&self, n: usize) {
        self.keys.store(n, Ordering::Relaxed);
        metrics::gauge!("keys_loaded").set(n as f64);
    }

    /// Link number `index`, to the publisher whose task endpoint is `tasks`, starts (down).
    pub fn add(&self, index: usize, tasks: &str) {
        self.change(|links| {
            links.insert(index, (tasks.to_owned(), false));
        });
    }

    /// Link number `index` ended (its address vanished, or the process stops).
    pub fn remove(&self, index: usize) {
        self.change(|links| {
            links.remove(&index);
        });
    }

    /// Link number `index` connected (`true`) or lost its publisher (`false`).
    pub fn link(&self, index: usize, up: bool) {
        self.change(|links| {
            if let Some((_, flag)) = links.get_mut(&index) {
                *flag = up;
            }
        });
    }

    fn change(&self, change: impl FnOnce(&mut BTreeMap<usize, (String, bool)>)) {
        let mut links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        change(&mut links);
        let connected = links.values().filter(|(_, up)| *up).count();
        metrics::gauge!("links_up").set(connected as f64);
        metrics::gauge!("links_configured").set(links.len() as f64);
    }

    /// Ready when keys are loaded and every link is connected; else the reasons.
    pub fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if self.keys.load(Ordering::Relaxed) == 0 {
            reasons.push("no keys loaded from KEYS_DIR yet".to_owned());
        }
        let links = self.links.lock().unwrap_or_else(|p| p.into_inner());
        if links.is_empty() {
            reasons.push("no publisher address to connect to yet".to_owned());
        }
        for (tasks, up) in links.values() {
            if !up {
                reasons.push(format!("not connected to the publisher at {tasks}"));
            }
        }
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(reasons.join("; "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_keys_and_every_link_up() {
        let status = Status::new();
        let reason = status.readiness().expect_err("nothing yet");
        assert!(reason.contains("no keys loaded"), "{reason}");
        assert!(reason.contains("no publisher address"), "{reason}");
        status.add(0, "tcp://p1:4445");
        status.add(1, "tcp://p2:4445");

        status.keys_loaded(2);
        status.link(0, true);
        let reason = status.readiness().expect_err("p2 down");
        assert_eq!(reason, "not connected to the publisher at tcp://p2:4445");

        status.link(1, true);
        assert_eq!(status.readiness(), Ok(()));
        status.link(0, false);
        assert!(status.readiness().is_err());
        status.remove(0);
        assert_eq!(status.readiness(), Ok(()), "p1 is no longer followed");
    }
}
