//! Signature requests and their outcomes, kept for `GET /signatures/{id}` in a bounded store
//! with an expiry. A request's id is random, so only the client that made it can ask for it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wire::SignatureStatus;

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Sent to a verifier, no verdict yet.
    Pending,
    /// Ended.
    Done {
        /// `valid`, `invalid` or `error`.
        status: SignatureStatus,
        /// Why, for `invalid` and `error`.
        reason: Option<String>,
        /// The verifier that decided.
        verified_by: Option<String>,
    },
}

/// One request as the API shows it.
#[derive(Debug, Clone)]
pub struct Record {
    /// The key id the signature is checked against.
    pub key: String,
    /// Its state, watchable until it ends.
    pub state: watch::Receiver<State>,
}

struct Entry {
    key: String,
    state: watch::Sender<State>,
    created: Instant,
}

/// The store is full of requests that are all still pending.
#[derive(Debug, thiserror::Error)]
#[error("too many signature requests are pending")]
pub struct Full;

/// Bounded map from request id to its record.
pub struct Results {
    inner: Mutex<Inner>,
    capacity: usize,
    ttl: Duration,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    /// Ids in insertion order, for expiry and eviction.
    order: VecDeque<String>,
}

impl Results {
    /// A store of at most `capacity` records, each kept for `ttl` after it was made.
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Results {
            inner: Mutex::new(Inner::default()),
            capacity,
            ttl,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Adds a pending request. Expired records go first; when still full, the oldest ended
    /// one makes room. A pending one is never dropped: then the store is [`Full`].
    pub fn insert(&self, id: String, key: String) -> Result<(), Full> {
        let mut inner = self.lock();
        let now = Instant::now();
        while let Some(oldest) = inner.order.front() {
            match inner.entries.get(oldest) {
                Some(e) if now.duration_since(e.created) < self.ttl => break,
                _ => {
                    if let Some(id) = inner.order.pop_front() {
                        inner.entries.remove(&id);
                    }
                }
            }
        }
        if inner.entries.len() >= self.capacity {
            let ended = inner.order.iter().position(|id| {
                inner
                    .entries
                    .get(id)
                    .is_none_or(|e| *e.state.borrow() != State::Pending)
            });
            let id = ended.and_then(|at| inner.order.remove(at)).ok_or(Full)?;
            inner.entries.remove(&id);
        }
        let (state, _) = watch::channel(State::Pending);
        inner.order.push_back(id.clone());
        inner.entries.insert(
            id,
            Entry {
                key,
                state,
                created: now,
            },
        );
        Ok(())
    }

    /// The record of `id`, unless unknown or expired.
    pub fn get(&self, id: &str) -> Option<Record> {
        let inner = self.lock();
        let entry = inner.entries.get(id)?;
        (entry.created.elapsed() < self.ttl).then(|| Record {
            key: entry.key.clone(),
            state: entry.state.subscribe(),
        })
    }

    /// Ends request `id`; returns false when it had already ended (or is gone).
    pub fn finish(&self, id: &str, outcome: State) -> bool {
        let inner = self.lock();
        let Some(entry) = inner.entries.get(id) else {
            return false;
        };
        entry.state.send_if_modified(|state| {
            let first = *state == State::Pending;
            if first {
                *state = outcome;
            }
            first
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> State {
        State::Done {
            status: SignatureStatus::Valid,
            reason: None,
            verified_by: Some("v".into()),
        }
    }

    #[test]
    fn a_request_is_pending_until_finished_once() {
        let store = Results::new(10, Duration::from_secs(60));
        store.insert("a".into(), "k".into()).unwrap();
        assert_eq!(*store.get("a").unwrap().state.borrow(), State::Pending);
        assert!(store.finish("a", valid()));
        assert!(
            !store.finish("a", State::Pending),
            "a second verdict is ignored"
        );
        assert_eq!(*store.get("a").unwrap().state.borrow(), valid());
        assert!(store.get("b").is_none());
    }

    #[test]
    fn when_full_the_oldest_ended_record_makes_room_and_pending_ones_stay() {
        let store = Results::new(2, Duration::from_secs(60));
        store.insert("a".into(), "k".into()).unwrap();
        store.insert("b".into(), "k".into()).unwrap();
        assert!(
            store.insert("c".into(), "k".into()).is_err(),
            "both pending"
        );
        store.finish("b", valid());
        store.insert("c".into(), "k".into()).unwrap();
        assert!(store.get("a").is_some());
        assert!(store.get("b").is_none());
    }

    #[test]
    fn records_expire() {
        let store = Results::new(10, Duration::ZERO);
        store.insert("a".into(), "k".into()).unwrap();
        assert!(store.get("a").is_none());
        store.insert("b".into(), "k".into()).unwrap();
        assert_eq!(store.lock().entries.len(), 1, "the expired one was purged");
    }
}
