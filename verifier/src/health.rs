//! What the verifier shows on its health port: the metrics it keeps, each described (the
//! `# HELP` lines of `/metrics`), and whether it is ready — its keys loaded and every
//! publisher link connected.

use crate::config::PublisherEndpoints;
use plumbing::health::Readiness;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

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
    describe_gauge!("links_configured", "Publishers this verifier is given.");
    describe_gauge!("keys_loaded", "RSA public keys loaded from KEYS_DIR.");
    describe_counter!(
        "messages_rejected_total",
        "Messages dropped because they were not valid tasks (garbage, a bad tag, another channel's), by endpoint."
    );
    metrics::gauge!("links_up").set(0.0);
    metrics::gauge!("keys_loaded").set(0.0);
}

/// The state `/readyz` is decided from, shared by the links.
#[derive(Debug)]
pub(crate) struct Status {
    keys: AtomicUsize,
    /// Per link, in configuration order: its task endpoint and whether it is connected.
    links: Vec<(String, AtomicBool)>,
}

impl Status {
    /// No keys yet, every link of `publishers` down.
    pub fn new(publishers: &[PublisherEndpoints]) -> Self {
        metrics::gauge!("links_configured").set(publishers.len() as f64);
        let links = publishers
            .iter()
            .map(|p| (p.tasks.clone(), AtomicBool::new(false)))
            .collect();
        Status {
            keys: AtomicUsize::new(0),
            links,
        }
    }

    /// `n` keys are loaded.
    pub fn keys_loaded(&self, n: usize) {
        self.keys.store(n, Ordering::Relaxed);
        metrics::gauge!("keys_loaded").set(n as f64);
    }

    /// Link number `index` connected (`true`) or lost its publisher (`false`).
    pub fn link(&self, index: usize, up: bool) {
        if let Some((_, flag)) = self.links.get(index) {
            flag.store(up, Ordering::Relaxed);
        }
        let connected = self
            .links
            .iter()
            .filter(|(_, flag)| flag.load(Ordering::Relaxed))
            .count();
        metrics::gauge!("links_up").set(connected as f64);
    }

    /// Ready when keys are loaded and every link is connected; else the reasons.
    pub fn readiness(&self) -> Readiness {
        let mut reasons = Vec::new();
        if self.keys.load(Ordering::Relaxed) == 0 {
            reasons.push("no keys loaded from KEYS_DIR yet".to_owned());
        }
        for (tasks, up) in &self.links {
            if !up.load(Ordering::Relaxed) {
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
        let endpoints = |n: u16| PublisherEndpoints {
            tasks: format!("tcp://p{n}:4445"),
            results: format!("tcp://p{n}:4446"),
        };
        let status = Status::new(&[endpoints(1), endpoints(2)]);
        let reason = status.readiness().expect_err("nothing yet");
        assert!(reason.contains("no keys loaded"), "{reason}");

        status.keys_loaded(2);
        status.link(0, true);
        let reason = status.readiness().expect_err("p2 down");
        assert_eq!(reason, "not connected to the publisher at tcp://p2:4445");

        status.link(1, true);
        assert_eq!(status.readiness(), Ok(()));
        status.link(0, false);
        assert!(status.readiness().is_err());
    }
}
