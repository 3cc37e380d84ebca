//! The verifiers heard from and the keys they hold, learnt from their heartbeats on the results
//! socket. A verifier silent for longer than the timeout is taken as gone and dropped.
//!
//! What the API needs — how many verifiers are there and which keys exist — is kept ready as a
//! [`Snapshot`] behind a `watch`: it is rebuilt only when a heartbeat changes it (a verifier
//! joins or its keys change) or a verifier falls silent, so a request only clones an `Arc`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wire::KeyInfo;

/// The verifiers present right now and the keys they hold.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// How many verifiers were heard from within the timeout.
    pub verifiers: usize,
    /// Key id → signature length in bytes.
    pub keys: HashMap<String, u32>,
}

/// Verifiers by id, with when each was last heard from.
pub struct Registry {
    timeout: Duration,
    verifiers: HashMap<Arc<str>, Heard>,
    /// `(last heard, id)`, oldest first: the first is the next to fall silent.
    by_age: BTreeSet<(Instant, Arc<str>)>,
    snapshot: watch::Sender<Arc<Snapshot>>,
}

struct Heard {
    last: Instant,
    keys: Vec<KeyInfo>,
}

impl Registry {
    /// An empty registry where a verifier silent for `timeout` is gone, and the receiver its
    /// snapshots are published on.
    pub fn new(timeout: Duration) -> (Self, watch::Receiver<Arc<Snapshot>>) {
        let (snapshot, present) = watch::channel(Arc::new(Snapshot::default()));
        let registry = Registry {
            timeout,
            verifiers: HashMap::new(),
            by_age: BTreeSet::new(),
            snapshot,
        };
        (registry, present)
    }

    /// Records a heartbeat from `verifier`, which holds `keys`, at `now`.
    pub fn heard(&mut self, verifier: &str, keys: Vec<KeyInfo>, now: Instant) {
        let changed = match self.verifiers.get_key_value(verifier) {
            Some((id, heard)) => {
                let id = id.clone();
                self.by_age.remove(&(heard.last, id.clone()));
                self.by_age.insert((now, id.clone()));
                let changed = heard.keys != keys;
                self.verifiers.insert(id, Heard { last: now, keys });
                changed
            }
            None => {
                tracing::info!(%verifier, "verifier joined");
                let id: Arc<str> = Arc::from(verifier);
                self.by_age.insert((now, id.clone()));
                self.verifiers.insert(id, Heard { last: now, keys });
                true
            }
        };
        if changed {
            self.publish();
        }
    }

    /// Drops every verifier not heard from within the timeout before `now`.
    pub fn prune(&mut self, now: Instant) {
        let mut changed = false;
        while let Some((last, _)) = self.by_age.first() {
            if *last + self.timeout > now {
                break;
            }
            if let Some((_, id)) = self.by_age.pop_first() {
                tracing::info!(verifier = %id, "verifier gone: not heard from within the timeout");
                self.verifiers.remove(&id);
                changed = true;
            }
        }
        if changed {
            self.publish();
        }
    }

    /// When the next verifier falls silent, if any is there.
    pub fn next_expiry(&self) -> Option<Instant> {
        self.by_age.first().map(|(last, _)| *last + self.timeout)
    }

    fn publish(&self) {
        let mut snapshot = Snapshot {
            verifiers: self.verifiers.len(),
            keys: HashMap::new(),
        };
        for heard in self.verifiers.values() {
            for key in &heard.keys {
                snapshot.keys.insert(key.id.clone(), key.modulus_len);
            }
        }
        self.snapshot.send_replace(Arc::new(snapshot));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(3);

    fn key(id: &str, modulus_len: u32) -> KeyInfo {
        KeyInfo {
            id: id.into(),
            modulus_len,
        }
    }

    #[test]
    fn a_heartbeat_makes_a_verifier_and_its_keys_present() {
        let (mut registry, present) = Registry::new(TIMEOUT);
        assert_eq!(present.borrow().verifiers, 0);
        let t0 = Instant::now();
        registry.heard("v1", vec![key("alice", 256)], t0);
        registry.heard("v2", vec![key("bob", 384)], t0);
        let snapshot = present.borrow().clone();
        assert_eq!(snapshot.verifiers, 2);
        assert_eq!(snapshot.keys["alice"], 256);
        assert_eq!(snapshot.keys["bob"], 384);
    }

    #[test]
    fn an_unchanged_heartbeat_keeps_the_same_snapshot() {
        let (mut registry, present) = Registry::new(TIMEOUT);
        let t0 = Instant::now();
        registry.heard("v1", vec![key("alice", 256)], t0);
        let before = present.borrow().clone();
        registry.heard("v1", vec![key("alice", 256)], t0 + Duration::from_secs(1));
        assert!(Arc::ptr_eq(&before, &present.borrow()), "not rebuilt");
        registry.heard("v1", vec![key("bob", 384)], t0 + Duration::from_secs(2));
        assert!(
            present.borrow().keys.contains_key("bob"),
            "rebuilt on a change"
        );
        assert!(!present.borrow().keys.contains_key("alice"));
    }

    #[test]
    fn a_verifier_silent_past_the_timeout_is_pruned() {
        let (mut registry, present) = Registry::new(TIMEOUT);
        let t0 = Instant::now();
        registry.heard("v1", vec![key("alice", 256)], t0);
        registry.heard("v2", vec![key("bob", 384)], t0 + Duration::from_secs(1));
        registry.heard("v1", vec![key("alice", 256)], t0 + Duration::from_secs(2));
        assert_eq!(registry.next_expiry(), Some(t0 + Duration::from_secs(4)));

        registry.prune(t0 + Duration::from_millis(3999));
        assert_eq!(present.borrow().verifiers, 2);
        registry.prune(t0 + Duration::from_secs(4));
        assert_eq!(present.borrow().verifiers, 1, "v2 is gone");
        assert!(!present.borrow().keys.contains_key("bob"));
        assert_eq!(registry.next_expiry(), Some(t0 + Duration::from_secs(5)));

        registry.prune(t0 + Duration::from_secs(60));
        assert_eq!(*present.borrow().as_ref(), Snapshot::default());
        assert_eq!(registry.next_expiry(), None);
    }
}
