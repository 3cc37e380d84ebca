//! Signature requests and their outcomes, kept for `GET /signatures/{id}` in a bounded store
//! with an expiry. A request's id is random, so only the client that made it can ask for it.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
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

/// One signature request: its id, the key it is checked against, and where it stands. The
/// results store finds it by id for the API; the dispatcher's entry for its task holds the same
/// record and ends it, so each is stored once and nothing is looked up twice.
#[derive(Debug)]
pub struct Request {
    id: Arc<str>,
    key: String,
    state: watch::Sender<State>,
}

impl Request {
    /// A pending request `id` for key `key`, kept by no store (the store makes its own with
    /// [`Results::insert`]).
    pub fn new(id: &str, key: String) -> Self {
        Request {
            id: Arc::from(id),
            key,
            state: watch::Sender::new(State::Pending),
        }
    }

    /// The request's id, as the client has it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key id the signature is checked against.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Where the request stands now.
    pub fn state(&self) -> State {
        self.state.borrow().clone()
    }

    /// Whether it still waits for a verdict.
    pub fn is_pending(&self) -> bool {
        *self.state.borrow() == State::Pending
    }

    /// Its state, watchable until it ends.
    pub fn watch(&self) -> watch::Receiver<State> {
        self.state.subscribe()
    }

    /// Ends the request; returns false when it had already ended.
    pub fn finish(&self, outcome: State) -> bool {
        self.state.send_if_modified(|state| {
            let first = *state == State::Pending;
            if first {
                *state = outcome;
            }
            first
        })
    }
}

struct Entry {
    request: Arc<Request>,
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
    /// Keyed by the request's own id (shared with it, not copied).
    entries: HashMap<Arc<str>, Entry>,
    /// Ids in insertion order, for expiry and eviction.
    order: VecDeque<Arc<str>>,
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

    /// Adds a pending request and returns it. Expired records go first; when still full, the
    /// oldest ended one makes room. A pending one is never dropped: then the store is [`Full`].
    pub fn insert(&self, id: &str, key: String) -> Result<Arc<Request>, Full> {
        self.insert_made(id, key, Instant::now())
    }

    /// Adds a request read back from the journal, made `age` ago; `None` when it has expired
    /// by now or the store is full. Restored oldest first, they keep the store's order.
    pub fn restore(&self, id: &str, key: String, age: Duration) -> Option<Arc<Request>> {
        if age >= self.ttl {
            return None;
        }
        let made = Instant::now().checked_sub(age).unwrap_or_else(Instant::now);
        self.insert_made(id, key, made).ok()
    }

    fn insert_made(&self, id: &str, key: String, made: Instant) -> Result<Arc<Request>, Full> {
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
                    .is_none_or(|e| !e.request.is_pending())
            });
            let id = ended.and_then(|at| inner.order.remove(at)).ok_or(Full)?;
            inner.entries.remove(&id);
        }
        let request = Arc::new(Request::new(id, key));
        inner.order.push_back(request.id.clone());
        inner.entries.insert(
            request.id.clone(),
            Entry {
                request: request.clone(),
                created: made,
            },
        );
        Ok(request)
    }

    /// The request `id`, unless unknown or expired.
    pub fn get(&self, id: &str) -> Option<Arc<Request>> {
        let inner = self.lock();
        let entry = inner.entries.get(id)?;
        (entry.created.elapsed() < self.ttl).then(|| entry.request.clone())
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
        let request = store.insert("a", "k".into()).unwrap();
        assert_eq!(store.get("a").unwrap().state(), State::Pending);
        assert!(request.finish(valid()));
        assert!(
            !request.finish(State::Pending),
            "a second verdict is ignored"
        );
        assert_eq!(store.get("a").unwrap().state(), valid());
        assert_eq!(store.get("a").unwrap().key(), "k");
        assert!(store.get("b").is_none());
    }

    #[test]
    fn when_full_the_oldest_ended_record_makes_room_and_pending_ones_stay() {
        let store = Results::new(2, Duration::from_secs(60));
        store.insert("a", "k".into()).unwrap();
        let b = store.insert("b", "k".into()).unwrap();
        assert!(store.insert("c", "k".into()).is_err(), "both pending");
        b.finish(valid());
        store.insert("c", "k".into()).unwrap();
        assert!(store.get("a").is_some());
        assert!(store.get("b").is_none());
    }

    #[test]
    fn a_restored_request_keeps_its_age_and_an_expired_one_is_not_restored() {
        let store = Results::new(10, Duration::from_secs(60));
        assert!(
            store
                .restore("old", "k".into(), Duration::from_secs(61))
                .is_none()
        );
        let request = store
            .restore("a", "k".into(), Duration::from_secs(30))
            .unwrap();
        assert!(request.is_pending());
        assert!(store.get("a").is_some());
        assert!(store.get("old").is_none());
    }

    #[test]
    fn records_expire() {
        let store = Results::new(10, Duration::ZERO);
        store.insert("a", "k".into()).unwrap();
        assert!(store.get("a").is_none());
        store.insert("b", "k".into()).unwrap();
        assert_eq!(store.lock().entries.len(), 1, "the expired one was purged");
    }
}
